"""Face detection and cropping.

The offline default is OpenCV's Haar cascade (shipped inside opencv-python < 5, so nothing is
downloaded). A stronger detector plugs in through a model file: `YuNetFaceDetector` runs OpenCV's
YuNet ONNX model (`face_detection_yunet_2023mar.onnx` from the OpenCV model zoo) when given its path;
MTCNN (facenet-pytorch) and BlazeFace (mediapipe 0.10.21) are optional packages with bundled weights.
Detectors are built by name with `create_face_detector`, and every detector returns boxes as
float arrays (x0, y0, x1, y1) in the coordinates of the frame it was given.
"""

from __future__ import annotations

import importlib.util
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


    def detect_near(self, frame_rgb: np.ndarray, prev: Box) -> list[tuple[Box, float]]:
        """Faces near `prev` (the same face a moment earlier): the cascade runs on a region of
        ROI_CONTEXT x the box around it, scaled so the face is about ROI_FACE_PX pixels, for sizes
        from half to twice that. Faces move and grow little between sampled frames, so this finds
        the face for a fraction of a full-frame search (its cost grows with area and scale range)."""
        return self._sized(*_roi(frame_rgb, prev), _side(prev), NEAR_RANGE)

    def detect_sized(self, frame_rgb: np.ndarray, prev: Box) -> list[tuple[Box, float]]:
        """Faces anywhere in the frame of about `prev`'s size (half to twice): the whole frame scaled
        so that such a face is SIZED_FACE_PX pixels, the detection scale chosen from the face size."""
        return self._sized(*_scaled(frame_rgb, prev), _side(prev), SIZED_RANGE)

    def _sized(self, image: np.ndarray, origin: np.ndarray, scale: float, side: float,
               size_range: float) -> list[tuple[Box, float]]:
        """Faces of `side` / `size_range` to `side` x `size_range` (full-resolution pixels) in `image`,
        a region of the frame at `origin` resized by `scale`, mapped back to the frame."""
        gray = self._clahe.apply(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        lo, hi = max(20, int(side * scale / size_range)), max(40, int(side * scale * size_range))
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minSize=(lo, lo), maxSize=(hi, hi),
            minNeighbors=self.min_neighbors, outputRejectLevels=True)
        return _from_roi(boxes, weights, origin, scale)


# Optional detectors: a package to install, with its own bundled weights (nothing is downloaded).
OPTIONAL_DETECTORS = {
    "mtcnn": ("facenet_pytorch",
              "pip install facenet-pytorch==2.6.0 --no-deps (its bundled MTCNN weights run on current "
              "torch; --no-deps because its metadata pins torch<2.3)"),
    "mediapipe": ("mediapipe",
                  "pip install mediapipe==0.10.21 (the last release that bundles the BlazeFace models; it "
                  "needs numpy<2 and protobuf<5, which pandas>=3 and onnx do not accept, so use it in an "
                  "environment with pandas<3 and without the ONNX export)"),
}


def optional_detector_missing(name: str) -> str | None:
    """For an optional detector whose package is not installed, the message saying how to install it."""
    if name not in OPTIONAL_DETECTORS:
        return None
    module, how = OPTIONAL_DETECTORS[name]
    if importlib.util.find_spec(module) is None:
        return f"face detector {name!r} needs the package {module!r}, which is not installed: {how}; or use detector: haar"
    return None


class _ArrayDetector:
    """A detector of faces in an RGB array (`_faces(image) -> (xywh boxes, scores)`), searched on the
    downscaled frame, near a previous box, or at a previous face's size, like the others."""

    max_side = 640

    def detect(self, frame_rgb: np.ndarray) -> list[tuple[Box, float]]:
        small, scale = _downscale(frame_rgb, self.max_side)
        return _from_roi(*self._faces(small), np.zeros(4, np.float32), scale)

    def detect_near(self, frame_rgb: np.ndarray, prev: Box) -> list[tuple[Box, float]]:
        region, origin, scale = _roi(frame_rgb, prev)
        return _from_roi(*self._faces(region), origin, scale)

    def detect_sized(self, frame_rgb: np.ndarray, prev: Box) -> list[tuple[Box, float]]:
        image, origin, scale = _scaled(frame_rgb, prev)
        return _from_roi(*self._faces(image), origin, scale)


class YuNetFaceDetector(_ArrayDetector):
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

    def _faces(self, image: np.ndarray):
        h, w = image.shape[:2]
        self._net.setInputSize((w, h))
        _, faces = self._net.detect(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
        faces = np.zeros((0, 15), np.float32) if faces is None else faces
        return faces[:, :4], faces[:, -1]


class MTCNNFaceDetector(_ArrayDetector):
    """MTCNN (Zhang et al. 2016; the detector of the DFDC winning entry) from facenet-pytorch, with
    the weights that package bundles. Optional: see OPTIONAL_DETECTORS."""

    name = "mtcnn"

    def __init__(self, max_side: int = 640, score_threshold: float = 0.9, device: str = "cpu"):
        missing = optional_detector_missing(self.name)
        if missing:
            raise ImportError(missing)
        from facenet_pytorch import MTCNN  # optional package: imported only when this detector is chosen

        self._net = MTCNN(keep_all=True, device=device)
        self.max_side, self.score_threshold = max_side, score_threshold

    def _faces(self, image: np.ndarray):
        boxes, probs = self._net.detect(np.ascontiguousarray(image))
        if boxes is None:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        keep = np.asarray(probs) >= self.score_threshold
        b = np.asarray(boxes, np.float32)[keep]
        return np.column_stack([b[:, :2], b[:, 2:] - b[:, :2]]), np.asarray(probs, np.float32)[keep]


class MediaPipeFaceDetector(_ArrayDetector):
    """MediaPipe's BlazeFace (Bazarevsky et al. 2019), its full-range model bundled with mediapipe
    0.10.21 (faces near and far). Optional: see OPTIONAL_DETECTORS."""

    name = "mediapipe"

    def __init__(self, max_side: int = 640, score_threshold: float = 0.5):
        missing = optional_detector_missing(self.name)
        if missing:
            raise ImportError(missing)
        import mediapipe as mp  # optional package: imported only when this detector is chosen

        self._net = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                              min_detection_confidence=score_threshold)
        self.max_side = max_side

    def _faces(self, image: np.ndarray):
        h, w = image.shape[:2]
        found = self._net.process(np.ascontiguousarray(image)).detections or []
        boxes = [(d.location_data.relative_bounding_box.xmin * w, d.location_data.relative_bounding_box.ymin * h,
                  d.location_data.relative_bounding_box.width * w, d.location_data.relative_bounding_box.height * h)
                 for d in found]
        return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray([d.score[0] for d in found], np.float32)


_DETECTORS = {"haar": HaarFaceDetector, "yunet": YuNetFaceDetector, "mtcnn": MTCNNFaceDetector,
              "mediapipe": MediaPipeFaceDetector}

ROI_CONTEXT = 2.2   # side of the search region around the previous box, in box sides
ROI_FACE_PX = 72    # the previous face's side in the scaled search region (the cascade's window is 24 px)
SIZED_FACE_PX = 48  # its side in the scaled whole frame: a whole frame costs more, and 48 px still finds it
NEAR_RANGE = 1.4    # the nearby search looks for faces of 1/NEAR_RANGE to NEAR_RANGE x the previous side
SIZED_RANGE = 1.5   # the whole-frame search at the face's size, likewise (a face that grew or shrank
                    # more between probes is found by the search at every size that follows a miss)


def track_faces(detector, frames: list[np.ndarray], probe: list[bool], full_every: int = 8) -> list[Box | None]:
    """One face's box in each probed frame (None where it was not found; frames not probed get None).

    The face followed is the same person throughout: the largest face of the first frame where one is
    found, then in each probed frame the candidate closest to the previous box (not whichever face is
    largest there). Probed frames are searched near the previous box (`detector.detect_near`); every
    `full_every` probes, and wherever the nearby search finds nothing, the whole frame is searched for
    faces of the previous one's size (`detect_sized`, at a scale chosen from that size), and at every
    size until a first face is found or when that finds nothing either. `full_every` <= 1 searches
    every frame in full at every size (the reference search)."""
    out: list[Box | None] = [None] * len(frames)
    prev, since_full = None, 0
    tracks = full_every > 1 and hasattr(detector, "detect_near")
    for i, (frame, p) in enumerate(zip(frames, probe)):
        if not p:
            continue
        cands = []
        if prev is not None and tracks and since_full < full_every - 1:
            cands = detector.detect_near(frame, prev)
            since_full += 1
        if not cands and prev is not None and tracks:
            cands = detector.detect_sized(frame, prev)
            since_full = 0
        if not cands:
            cands = detector.detect(frame)
            since_full = 0
        chosen = _closest(cands, prev)
        if chosen is not None:
            out[i] = prev = chosen
    return out


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = _area(a) + _area(b) - inter
    return float(inter / union) if union > 0 else 0.0


def _closest(cands: list[tuple[Box, float]], prev: Box | None) -> Box | None:
    """The largest candidate without a previous box; else the one overlapping it most, or, when none
    overlaps, the nearest by centre distance in units of the previous box's side, if within one side
    (a face farther than that is someone else: no box rather than a jump to another person)."""
    if not cands:
        return None
    if prev is None:
        return cands[0][0]  # detectors return the largest first
    ious = [box_iou(b, prev) for b, _ in cands]
    if max(ious) > 0:
        return cands[int(np.argmax(ious))][0]
    side = max(prev[2] - prev[0], prev[3] - prev[1])
    c0 = np.array([(prev[0] + prev[2]) / 2, (prev[1] + prev[3]) / 2])
    dist = [np.linalg.norm(np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]) - c0) / side for b, _ in cands]
    k = int(np.argmin(dist))
    return cands[k][0] if dist[k] <= 1.0 else None


def _roi(frame: np.ndarray, prev: Box) -> tuple[np.ndarray, np.ndarray, float]:
    """The region of ROI_CONTEXT x `prev`'s side around its centre (clipped to the frame), resized so
    that `prev`'s side becomes ROI_FACE_PX; returns (region, its top-left corner, scale)."""
    h, w = frame.shape[:2]
    side = max(float(prev[2] - prev[0]), float(prev[3] - prev[1]), 1.0)
    cx, cy, half = (prev[0] + prev[2]) / 2, (prev[1] + prev[3]) / 2, side * ROI_CONTEXT / 2
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
    region = frame[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    scale = ROI_FACE_PX / side
    size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(region, size, interpolation=interp), np.array([x0, y0, x0, y0], np.float32), scale


def _side(box: Box) -> float:
    return max(float(box[2] - box[0]), float(box[3] - box[1]), 1.0)


def _scaled(frame: np.ndarray, prev: Box) -> tuple[np.ndarray, np.ndarray, float]:
    """The whole frame resized so that `prev`'s side becomes SIZED_FACE_PX (at most 1:1), its origin
    (0) and the scale."""
    scale = min(1.0, SIZED_FACE_PX / _side(prev))
    frame = np.asarray(frame)
    h, w = frame.shape[:2]
    image = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) \
        if scale < 1 else frame
    return image, np.zeros(4, np.float32), scale


def _from_roi(boxes, scores, origin: np.ndarray, scale: float) -> list[tuple[Box, float]]:
    out = [(np.array([x, y, x + bw, y + bh], np.float32) / scale + origin, float(sc))
           for (x, y, bw, bh), sc in zip(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores).reshape(-1))]
    return sorted(out, key=lambda bs: -_area(bs[0]))


def create_face_detector(name: str = "haar", model_path: str | None = None, **kwargs):
    """Build a detector by name: 'haar' (offline default), 'yunet' (needs `model_path`), or the
    optional 'mtcnn' / 'mediapipe' (ImportError naming how to install their package)."""
    if name not in _DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {sorted(_DETECTORS)}")
    if name == "yunet":
        return YuNetFaceDetector(model_path, **kwargs)
    return _DETECTORS[name](**kwargs)


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
    """Crop the square margin box (zero-padded where it leaves the frame), resize to spec.size. Only
    the box's part inside the frame is read (`frame_rgb[y0:y1, x0:x1]`), so a lazily converted
    frame (video.YuvFrame) converts just that region."""
    h, w = frame_rgb.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in square_box(box, spec.margin, frame_rgb.shape))
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        crop = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    else:
        crop = frame_rgb[cy0:cy1, cx0:cx1]
        pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
        if any(pads):
            crop = cv2.copyMakeBorder(np.ascontiguousarray(crop), *pads, cv2.BORDER_CONSTANT, value=0)
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
    frame = np.asarray(frame)  # the whole frame (a lazily converted one converts here)
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return frame, scale


def _area(box: Box) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))
