"""Small real media files for tests: H.264 videos of a real photographed face (scikit-image's
astronaut) or of no face, optionally with an AAC track, and corrupt files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

from interceptor_lib.data.video import write_video  # noqa: F401  (re-exported for the tests)


def face_frames(n: int = 24, size: tuple[int, int] = (320, 240), seed: int = 0) -> list[np.ndarray]:
    """Frames of the astronaut's face drifting slowly over a plain background (RGB uint8)."""
    w, h = size
    face = cv2.resize(skdata.astronaut()[20:260, 110:350], (150, 150), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        img = np.full((h, w, 3), 90, np.uint8)
        x, y = 60 + int(10 * np.sin(i / 5)), 40 + int(rng.integers(-2, 3))
        img[y:y + 150, x:x + 150] = face
        frames.append(img)
    return frames


def noise_frames(n: int = 24, size: tuple[int, int] = (320, 240), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), (31, 31), 0)
    return [np.roll(base, i, axis=1) for i in range(n)]


def tone(seconds: float, sample_rate: int = 44100, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def write_corrupt(path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return path


# The astronaut's face within face_patch(): x 175-275, y 65-165 of the photograph, cut at [20:260, 110:350]
FACE_IN_PATCH = np.array([65, 45, 165, 145], np.float32) / 240


def face_patch(side: int, mirror: bool = False) -> np.ndarray:
    """The astronaut's head and shoulders (240 px of the photograph), resized to `side`, mirrored."""
    patch = skdata.astronaut()[20:260, 110:350]
    patch = patch[:, ::-1] if mirror else patch
    return cv2.resize(np.ascontiguousarray(patch), (side, side), interpolation=cv2.INTER_AREA)


def two_face_frames(n: int = 16, size: tuple[int, int] = (640, 360)):
    """Frames with two faces: A (left) shrinks from 220 to 130 px patches while B (right, mirrored)
    grows from 110 to 240, so B is the larger one in the second half. Returns (frames, true boxes of
    A, true boxes of B), boxes (x0, y0, x1, y1) of the faces in pixels."""
    w, h = size
    frames, a_boxes, b_boxes = [], [], []
    for i in range(n):
        t = i / max(1, n - 1)
        img = np.full((h, w, 3), 70, np.uint8)
        sa, sb = int(220 - 90 * t), int(110 + 130 * t)
        ya, yb = (h - sa) // 2, (h - sb) // 2
        xa, xb = 20, w - 20 - sb
        img[ya:ya + sa, xa:xa + sa] = face_patch(sa)
        img[yb:yb + sb, xb:xb + sb] = face_patch(sb, mirror=True)
        fa = FACE_IN_PATCH * sa + np.array([xa, ya, xa, ya])
        fb = np.array([1 - FACE_IN_PATCH[2], FACE_IN_PATCH[1], 1 - FACE_IN_PATCH[0], FACE_IN_PATCH[3]]) * sb \
            + np.array([xb, yb, xb, yb])
        frames.append(img)
        a_boxes.append(fa)
        b_boxes.append(fb)
    return frames, a_boxes, b_boxes
