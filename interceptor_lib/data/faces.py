"""Face detection and cropping.

The offline default is OpenCV's Haar cascade (shipped inside opencv-python < 5, so nothing is
downloaded). A stronger detector plugs in through a model file: `YuNetFaceDetector` runs OpenCV's
YuNet ONNX model (`face_detection_yunet_2023mar.onnx` from the OpenCV model zoo) when given its path.
Detectors are built by name with `create_face_detector`, and every detector returns boxes as
float arrays (x0, y0, x1, y1) in the coordinates of the frame it was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

Box = np.ndarray  # (4,) float32: x0, y0, x1, y1 in pixels


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (Viola & Jones 2001), run on a frame scaled so that its
    longer side is at most `max_side` pixels (detection cost grows with area; faces in the datasets
    are large), then mapped back to full resolution."""

    name = "haar"

    def __init__(self, max_side: int = 640, min_face_frac: float = 0.08, min_neighbors: int = 5,
                 scale_factor: float = 1.1, cascade: str = "haarcascade_frontalface_default.xml"):
        path = Path(cv2.data.haarcascades) / cascade
        if not path.is_file():
            raise FileNotFoundError(
                f"OpenCV Haar cascade not found at {path}; install opencv-python-headless<5 "
                "(OpenCV 5 no longer ships the cascades)")
        self._cascade = cv2.CascadeClassifier(str(path))
        self.max_side, self.min_face_frac = max_side, min_face_frac
        self.min_neighbors, self.scale_factor = min_neighbors, scale_factor
        # Local (CLAHE) rather than global histogram equalisation: in a dark scene a global
        # equalisation saturates a lit face and the cascade misses it.
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))

    def detect(self, frame_rgb: np.ndarray) -> list[tuple[Box, float]]:
        """All faces in an RGB uint8 frame (H, W, 3) as (box, score), largest first."""
        small, scale = _downscale(frame_rgb, self.max_side)
        gray = self._clahe.apply(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_side = max(16, int(self.min_face_frac * min(gray.shape)))
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side), outputRejectLevels=True)
        out = []
        for (x, y, w, h), score in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            box = np.array([x, y, x + w, y + h], dtype=np.float32) / scale
            out.append((box, float(score)))
        return sorted(out, key=lambda bs: -_area(bs[0]))


class YuNetFaceDetector:
    """OpenCV's YuNet CNN face detector (Wu et al. 2023) from a local ONNX model file."""

    name = "yunet"

    def __init__(self, model_path: str | Path, max_side: int = 640, score_threshold: float = 0.7):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(
                f"YuNet model file not found: {model_path}. Download face_detection_yunet_2023mar.onnx "
                "from the OpenCV model zoo and set preprocess.detector_model to its path, or use "
                "detector: haar")
        self._net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold)
        self.max_side = max_side

    def detect(self, frame_rgb: np.ndarray) -> list[tuple[Box, float]]:
        small, scale = _downscale(frame_rgb, self.max_side)
        h, w = small.shape[:2]
        self._net.setInputSize((w, h))
        _, faces = self._net.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        out = []
        for f in (faces if faces is not None else []):
            x, y, bw, bh = f[:4]
            out.append((np.array([x, y, x + bw, y + bh], dtype=np.float32) / scale, float(f[-1])))
        return sorted(out, key=lambda bs: -_area(bs[0]))


_DETECTORS = {"haar": HaarFaceDetector, "yunet": YuNetFaceDetector}


def create_face_detector(name: str = "haar", model_path: str | None = None, **kwargs):
    """Build a detector by name ('haar' or 'yunet'); YuNet needs `model_path`."""
    if name not in _DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {sorted(_DETECTORS)}")
    if name == "yunet":
        return YuNetFaceDetector(model_path, **kwargs)
    return HaarFaceDetector(**kwargs)


@dataclass(frozen=True)
class CropSpec:
    """How a face box becomes a crop: the box side is scaled by `margin` around its centre
    (1.3 as in FaceForensics++ / DeepfakeBench), made square, clipped to the frame, resized."""

    size: int = 224
    margin: float = 1.3


def square_box(box: Box, margin: float, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Square box of side max(w, h) * margin around the box centre, as integer pixel bounds
    (x0, y0, x1, y1). Parts outside the frame are padded by `crop_face`, not shifted, so the face
    stays centred."""
    x0, y0, x1, y1 = [float(v) for v in box]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(x1 - x0, y1 - y0) * margin
    half = side / 2
    return np.array([round(cx - half), round(cy - half), round(cx + half), round(cy + half)], dtype=np.int64)


def crop_face(frame_rgb: np.ndarray, box: Box, spec: CropSpec) -> np.ndarray:
    """Crop the square margin box (zero-padded where it leaves the frame), resize to spec.size."""
    h, w = frame_rgb.shape[:2]
    x0, y0, x1, y1 = square_box(box, spec.margin, frame_rgb.shape)
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        frame_rgb = cv2.copyMakeBorder(frame_rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = frame_rgb[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if crop.shape[0] > spec.size else cv2.INTER_LINEAR
    return cv2.resize(crop, (spec.size, spec.size), interpolation=interp)


def fill_missing_boxes(boxes: list[Box | None]) -> tuple[np.ndarray, np.ndarray]:
    """Give frames without a detection the box of the nearest frame with one (faces move little
    between sampled frames). Returns (boxes (N, 4) float32, found (N,) bool); raises ValueError
    if no frame has a face."""
    found = np.array([b is not None for b in boxes], dtype=bool)
    if not found.any():
        raise ValueError("no face in any sampled frame")
    idx = np.flatnonzero(found)
    out = np.zeros((len(boxes), 4), dtype=np.float32)
    for i in range(len(boxes)):
        j = idx[np.argmin(np.abs(idx - i))]
        out[i] = boxes[j]
    return out, found


def _downscale(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return frame, scale


def _area(box: Box) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))
