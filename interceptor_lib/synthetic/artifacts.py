"""The six artifact families a demo fake can carry, one per fake (MISSION.md section 2).

Each family touches the clip pipeline (clip.py) at one point and nowhere else:

=============  =====================  ==================================================================
family         hook                   what differs from the original
=============  =====================  ==================================================================
low_light      ``noise_ratio``        sensor noise inside the face is weaker (a denoised, generated face;
                                      dark scenes only) or stronger than in the background
lighting       ``face_light``         the inner face is lit from another direction and/or with another
                                      colour temperature than the head, neck and room
compression    ``post``               the face was JPEG-compressed on an 8x8 grid misaligned with the
                                      frame's, before the frame was encoded (double compression)
resolution     ``post``               the face was rendered at low resolution and upscaled into the frame
temporal       ``pre_noise``          the inner face jitters (sub-pixel shifts) and/or flickers in
                                      brightness from frame to frame
av_sync        ``mouth``              the mouth follows a delayed/advanced or a foreign speech envelope
                                      (only where there is audio, i.e. DFDC)
=============  =====================  ==================================================================

`strength` scales every family (0 = no artifact). At 1.0 the artifacts are meant to be visible to a
detector but not trivially so; the per-video strength is drawn around the corpus-wide knob.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from interceptor_lib.synthetic.audio import Syllables, draw_syllables, mouth_track

FAMILIES = ("low_light", "lighting", "compression", "resolution", "temporal", "av_sync")
VISUAL_FAMILIES = FAMILIES[:5]


@dataclass(frozen=True)
class ArtifactSpec:
    """One fake's artifact: family, strength and the family's drawn parameters."""

    family: str
    strength: float
    params: dict = field(default_factory=dict)

    def describe(self) -> str:
        return ";".join(f"{k}={v}" for k, v in sorted(self.params.items()))


_REGISTRY: dict[str, type[Artifact]] = {}


def register(cls):
    """Class decorator: make an `Artifact` subclass available under its `family` name."""
    _REGISTRY[cls.family] = cls
    return cls


def draw_artifact(rng: np.random.Generator, family: str, strength: float, dark: bool | None = None) -> ArtifactSpec:
    """Random parameters of `family` at `strength` (0 disables the artifact, 1 is the default);
    `dark`: whether the fake's scene is a low-light one (None: unknown)."""
    if family not in _REGISTRY:
        raise ValueError(f"unknown artifact family {family!r}; choose one of {FAMILIES}")
    s = float(strength)
    return ArtifactSpec(family, round(s, 4), _REGISTRY[family].draw(rng, s, dark))


def build_artifact(spec: ArtifactSpec | None, rng: np.random.Generator | None = None) -> Artifact:
    """The pipeline hooks for `spec` (None or strength 0: a plain `Artifact`, i.e. no change).
    `rng` feeds per-frame randomness (temporal jitter)."""
    if spec is None or spec.strength <= 0:
        return Artifact()
    if spec.family not in _REGISTRY:
        raise ValueError(f"unknown artifact family {spec.family!r}; choose one of {FAMILIES}")
    return _REGISTRY[spec.family](spec.params, rng if rng is not None else np.random.default_rng(0))


class Artifact:
    """The no-artifact pipeline (a real video); each family overrides one hook."""

    family = "none"
    noise_ratio = 1.0  # face-noise sigma / background-noise sigma

    @staticmethod
    def draw(rng: np.random.Generator, s: float, dark: bool | None = None) -> dict:
        """The family's parameters at strength `s` for a scene that is `dark` or not (None: unknown)."""
        return {}

    def face_light(self, angle: float) -> tuple[float | None, float]:
        """(light angle for the inner face or None = the scene's, relative face colour tint)."""
        return None, 0.0

    def mouth(self, syl: Syllables, n_frames: int, fps: float) -> np.ndarray:
        return mouth_track(syl, n_frames, fps)

    def pre_noise(self, frame: np.ndarray, mask: np.ndarray, i: int) -> np.ndarray:
        """Change the exposed, noise-free frame (H, W, 3) float32 in 0..255; `mask` (H, W) is the
        inner face (0..1)."""
        return frame

    def post(self, frame: np.ndarray, mask: np.ndarray, i: int) -> np.ndarray:
        """Change the noisy frame (H, W, 3) float32 in 0..255 before it is encoded."""
        return frame


@register
class LowLight(Artifact):
    family = "low_light"

    @staticmethod
    def draw(rng, s, dark=None):
        # a generated face is usually cleaner than the camera's noisy dark frame, sometimes grainier;
        # bright footage is nearly clean, so a denoised face shows nothing there: grainy only
        mode = "smooth" if rng.uniform() < 0.6 and dark is not False else "grainy"
        ratio = max(0.1, 1 - 0.6 * s) if mode == "smooth" else 1 + 0.9 * s
        return {"mode": mode, "noise_ratio": round(ratio, 3)}

    def __init__(self, params: dict, rng):
        self.noise_ratio = float(params["noise_ratio"])


@register
class Lighting(Artifact):
    family = "lighting"

    @staticmethod
    def draw(rng, s, dark=None):
        mode = ("direction", "color", "both")[int(rng.integers(3))]
        # at most 165 degrees: past a half turn a "stronger" artifact would turn the light back
        angle = min(165.0, s * rng.uniform(70, 130)) * rng.choice([-1, 1]) if mode != "color" else 0.0
        tint = s * rng.uniform(0.6, 1.0) * rng.choice([-1, 1]) if mode != "direction" else 0.0
        return {"mode": mode, "angle_deg": round(float(angle), 1), "tint": round(float(tint), 3)}

    def __init__(self, params: dict, rng):
        self.angle = np.radians(params["angle_deg"])
        self.tint = float(params["tint"])

    def face_light(self, angle):
        return (angle + self.angle if self.angle else None), self.tint


@register
class Compression(Artifact):
    family = "compression"

    @staticmethod
    def draw(rng, s, dark=None):
        # offset_x >= 1: the face's JPEG grid never coincides with the codec's 8x8 grid
        return {"jpeg_quality": int(np.clip(round(80 - 42 * s + rng.normal(0, 4)), 5, 95)),
                "offset_x": int(rng.integers(1, 8)), "offset_y": int(rng.integers(0, 8))}

    def __init__(self, params: dict, rng):
        self.quality = int(params["jpeg_quality"])
        self.offset = (int(params["offset_x"]), int(params["offset_y"]))

    def post(self, frame, mask, i):
        box = _mask_box(mask)
        if box is None:
            return frame
        x0, y0, x1, y1 = box
        # start the JPEG grid `offset` pixels after a multiple of 8: misaligned with the codec's grid
        x0 = max(0, (x0 // 8) * 8 + self.offset[0] - (8 if self.offset[0] else 0))
        y0 = max(0, (y0 // 8) * 8 + self.offset[1] - (8 if self.offset[1] else 0))
        roi = np.clip(np.rint(frame[y0:y1, x0:x1]), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", roi, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("OpenCV failed to JPEG-encode a face region")
        jpeg = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).astype(np.float32)
        return _blend_roi(frame, jpeg, mask, (x0, y0, x1, y1))


@register
class Resolution(Artifact):
    family = "resolution"

    @staticmethod
    def draw(rng, s, dark=None):
        return {"scale": round(1 / (1 + 0.85 * s * rng.uniform(0.8, 1.2)), 3),
                "interp": ("linear", "cubic")[int(rng.integers(2))]}

    def __init__(self, params: dict, rng):
        self.scale = float(params["scale"])
        self.interp = cv2.INTER_CUBIC if params["interp"] == "cubic" else cv2.INTER_LINEAR

    def post(self, frame, mask, i):
        box = _mask_box(mask)
        if box is None or self.scale >= 0.999:
            return frame
        x0, y0, x1, y1 = box
        roi = frame[y0:y1, x0:x1]
        h, w = roi.shape[:2]
        small = cv2.resize(roi, (max(2, round(w * self.scale)), max(2, round(h * self.scale))),
                           interpolation=cv2.INTER_AREA)
        return _blend_roi(frame, cv2.resize(small, (w, h), interpolation=self.interp), mask, box)


@register
class Temporal(Artifact):
    family = "temporal"

    @staticmethod
    def draw(rng, s, dark=None):
        mode = ("jitter", "flicker", "both")[int(rng.integers(3))]
        return {"mode": mode, "jitter_px": round(0.75 * s, 3) if mode != "flicker" else 0.0,
                "flicker": round(0.035 * s, 4) if mode != "jitter" else 0.0}

    def __init__(self, params: dict, rng):
        self.jitter = float(params["jitter_px"])
        self.flicker = float(params["flicker"])
        self.rng = rng  # per-frame draws, in frame order (clips are rendered sequentially)

    def pre_noise(self, frame, mask, i):
        dx, dy = self.rng.normal(0, 1, 2) * self.jitter
        gain = 1 + self.rng.normal(0, 1) * self.flicker
        box = _mask_box(mask, pad=4)
        if box is None:
            return frame
        x0, y0, x1, y1 = box
        roi = frame[y0:y1, x0:x1]
        if self.jitter:
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            roi = cv2.warpAffine(roi, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
        return _blend_roi(frame, roi * np.float32(gain), mask, box)


@register
class AVSync(Artifact):
    family = "av_sync"

    @staticmethod
    def draw(rng, s, dark=None):
        mode = "shift" if rng.uniform() < 0.7 else "foreign"
        lag = int(round(s * rng.uniform(3, 7))) * int(rng.choice([-1, 1]))
        if mode == "shift" and s > 0 and lag == 0:
            lag = 1
        return {"mode": mode, "lag_frames": lag if mode == "shift" else 0,
                "foreign_seed": int(rng.integers(0, 2**31)) if mode == "foreign" else 0}

    def __init__(self, params: dict, rng):
        self.lag = int(params["lag_frames"])
        self.foreign_seed = int(params["foreign_seed"])
        self.mode = params["mode"]

    def mouth(self, syl, n_frames, fps):
        if self.mode == "foreign":
            other = draw_syllables(np.random.default_rng(self.foreign_seed), n_frames / fps)
            return mouth_track(other, n_frames, fps)
        return mouth_track(syl, n_frames, fps, delay_s=self.lag / fps)


def _mask_box(mask: np.ndarray, thresh: float = 0.01, pad: int = 0):
    """Bounding box (x0, y0, x1, y1) of mask > thresh, or None when the mask is empty."""
    rows, cols = np.flatnonzero(mask.max(axis=1) > thresh), np.flatnonzero(mask.max(axis=0) > thresh)
    if not len(rows):
        return None
    h, w = mask.shape
    return (max(0, cols[0] - pad), max(0, rows[0] - pad), min(w, cols[-1] + 1 + pad), min(h, rows[-1] + 1 + pad))


def _blend_roi(frame, new_roi, mask, box):
    """frame with `new_roi` blended into `box` by the soft face mask."""
    x0, y0, x1, y1 = box
    out = frame.copy()
    m = mask[y0:y1, x0:x1, None]
    out[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1 - m) + new_roi * m
    return out
