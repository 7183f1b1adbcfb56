"""Self-blended pseudo-fakes (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images",
CVPR 2022): a real face crop blended with a transformed copy of itself through a deformed, blurred
face mask. The result carries the traces every face swap leaves (a blending boundary, a colour and
frequency mismatch, a slight misalignment) without any one generator's fingerprint, which is why a
detector trained on real faces and these generalises across datasets.

    fake, mask = self_blend(crop, np.random.default_rng([seed, epoch, index]), SelfBlendParams())

The mask comes from what the cache has: the crop is the face box scaled by `preprocess.margin`
around its centre, so the face is an ellipse of about the box's size in the middle of the crop; that
ellipse (its axes and centre jittered) is elastically deformed and blurred, as the paper deforms the
convex hull of the landmarks, then scaled by a blend ratio. Only the source copy is transformed; the
target is the crop itself, so outside the mask's support the pseudo-fake equals the crop exactly.
Everything is drawn from the generator passed in: the same (seed, epoch, index) gives the same bytes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class SelfBlendParams:
    """The transforms of a self-blended image and their ranges (fractions are of the crop's side)."""

    margin: float = 1.3              # the crop's margin around the face box (preprocess.margin): where the face is
    # the face ellipse's semi-axes as fractions of the face box's half-side: SBI's landmark hull
    # spans about the box's width and from the brows to the chin
    axes: list[float] = field(default_factory=lambda: [0.75, 0.95])
    centre_jitter: float = 0.03      # the ellipse's centre moves this much: masks that are not all centred
    elastic_alpha: list[float] = field(default_factory=lambda: [0.02, 0.06])  # a smooth field moves the edge this much: a wavy outline
    blur_sigma: list[float] = field(default_factory=lambda: [0.01, 0.04])  # soft to sharp blending boundaries
    # the blend ratio, drawn from these (SBI's: a full blend half the time, partial otherwise)
    ratios: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    rgb_shift: int = 20              # per-channel shift in grey levels: the colour mismatch of a swapped face
    saturation: float = 0.1          # saturation change, a fraction (no hue turn: skin colours no swap produces)
    contrast: float = 0.1            # contrast and brightness changes of the copy, as fractions
    brightness: float = 0.1
    p_downscale: float = 0.5         # frequency mismatch: the copy resampled through a smaller size ...
    downscale: list[float] = field(default_factory=lambda: [0.5, 0.9])
    p_sharpen: float = 0.25          # ... or sharpened (the other half of the time, some copies neither)
    shift: float = 0.03              # the copy's translation: the misalignment of a swapped face
    scale: list[float] = field(default_factory=lambda: [0.95, 1.05])  # and its resize

    def check(self) -> None:
        def rng_ok(r, lo, hi):
            return len(r) == 2 and lo <= r[0] <= r[1] <= hi
        problems = []
        if not self.margin >= 1.0:
            problems.append(f"margin {self.margin} < 1")
        for name, r, lo, hi in (("axes", self.axes, 0.1, 2.0), ("elastic_alpha", self.elastic_alpha, 0, 0.5),
                                ("blur_sigma", self.blur_sigma, 0, 0.5), ("downscale", self.downscale, 0.05, 1.0),
                                ("scale", self.scale, 0.5, 2.0)):
            if not rng_ok(r, lo, hi):
                problems.append(f"{name} {r} is not [low, high] within [{lo}, {hi}]")
        if not self.ratios or not all(0 < r <= 1 for r in self.ratios):
            problems.append(f"ratios {self.ratios} must be in (0, 1]")
        for name in ("centre_jitter", "saturation", "contrast", "brightness", "shift"):
            if not 0 <= getattr(self, name) <= 0.5:
                problems.append(f"{name} {getattr(self, name)} must be in [0, 0.5]")
        for name in ("p_downscale", "p_sharpen"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} {getattr(self, name)} must be a probability")
        if self.p_downscale + self.p_sharpen > 1:
            problems.append("p_downscale + p_sharpen must be <= 1 (one frequency change at most)")
        if not 0 <= self.rgb_shift <= 128:
            problems.append(f"rgb_shift {self.rgb_shift} must be in [0, 128]")
        if problems:
            raise ValueError("self-blend params: " + "; ".join(problems))


#: the side the mask is drawn, deformed and blurred at before it is resized to the crop: it is smooth
#: (a blurred, softly deformed ellipse), so a small grid holds it, at a fraction of the work
MASK_GRID = 64
#: the elastic displacement field is drawn on this coarse grid and resized: smooth by construction
FIELD_GRID = 6


def face_mask(shape: tuple[int, int], rng: np.random.Generator, p: SelfBlendParams) -> np.ndarray:
    """The blending mask (H, W) float32 in [0, 1]: the jittered face ellipse, elastically deformed,
    blurred and scaled by a blend ratio (drawn at MASK_GRID px and resized to the crop)."""
    h, w = shape
    k = min(1.0, MASK_GRID / max(h, w))
    gh, gw = max(2, round(h * k)), max(2, round(w * k))
    side = float(min(gh, gw))
    half = side / (2 * p.margin)  # the face box's half-side on the grid
    cx = gw / 2 + rng.uniform(-1, 1) * p.centre_jitter * side
    cy = gh / 2 + rng.uniform(-1, 1) * p.centre_jitter * side
    ax = half * rng.uniform(*p.axes)
    ay = half * rng.uniform(*p.axes) * 1.1  # a face is taller than wide
    shift = 4  # cv2.ellipse's sub-pixel bits: centre and axes in 1/16 px
    mask = np.zeros((gh, gw), np.float32)
    cv2.ellipse(mask, (int(round(cx * 16)), int(round(cy * 16))), (max(16, int(round(ax * 16))), max(16, int(round(ay * 16)))),
                0, 0, 360, 1.0, -1, cv2.LINE_AA, shift)
    # elastic deformation: a smooth random displacement field (coarse noise, resized) moves the edge
    alpha = rng.uniform(*p.elastic_alpha) * side
    dx, dy = (cv2.resize(rng.uniform(-1, 1, (FIELD_GRID, FIELD_GRID)).astype(np.float32), (gw, gh),
                         interpolation=cv2.INTER_CUBIC) * alpha for _ in range(2))
    gx, gy = _grid(gh, gw)
    mask = cv2.remap(mask, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    blur = rng.uniform(*p.blur_sigma) * side
    if blur > 0.3:
        mask = cv2.GaussianBlur(mask, (0, 0), blur)
    if (gh, gw) != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    mask = np.clip(mask, 0, 1)
    mask[mask < 1e-3] = 0.0  # the blur's far tail: no pixel outside the support changes
    return mask * float(rng.choice(p.ratios))


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))


def transformed_copy(img: np.ndarray, rng: np.random.Generator, p: SelfBlendParams) -> np.ndarray:
    """The source: the crop with a colour and a frequency change, slightly moved and resized."""
    h, w = img.shape[:2]
    # colour: per-channel shift, contrast about the mean and brightness, as one lookup table per channel
    shift = rng.uniform(-p.rgb_shift, p.rgb_shift, 3)
    c, b = 1 + rng.uniform(-p.contrast, p.contrast), rng.uniform(-p.brightness, p.brightness) * 255
    mean = np.array(cv2.mean(img)[:3]) + shift
    levels = np.arange(256, dtype=np.float64)[:, None]
    lut = np.clip(np.rint((levels + shift - mean) * c + mean + b), 0, 255).astype(np.uint8)
    out = cv2.LUT(img, lut.reshape(256, 1, 3))
    sat = 1 + rng.uniform(-p.saturation, p.saturation)
    if p.saturation:
        grey = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        out = cv2.addWeighted(out, sat, grey, 1 - sat, 0)
    u = rng.uniform()
    if u < p.p_downscale:
        f = rng.uniform(*p.downscale)
        small = cv2.resize(out, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_LINEAR)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    elif u < p.p_downscale + p.p_sharpen:
        blurred = cv2.GaussianBlur(out, (0, 0), 1.0)
        out = cv2.addWeighted(out, 1.5, blurred, -0.5, 0)
    s = rng.uniform(*p.scale)
    tx, ty = rng.uniform(-p.shift, p.shift, 2) * np.array([w, h])
    if s == 1 and tx == 0 and ty == 0:
        return out
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, s)
    m[:, 2] += (tx, ty)
    return cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def self_blend(img: np.ndarray, rng: np.random.Generator, p: SelfBlendParams | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended pseudo-fake of `img` (H, W, 3 RGB uint8) and its mask (H, W float32 in [0, 1]):
    mask * transformed copy + (1 - mask) * img, rounded; where the mask is 0 the pixels are img's."""
    p = p or SelfBlendParams()
    mask = face_mask(img.shape[:2], rng, p)
    source = transformed_copy(img, rng, p)
    out = cv2.blendLinear(source, img, mask, 1.0 - mask)
    return out, mask


def blend_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one pseudo-fake: a function of (seed, epoch, index) alone, so that a resumed
    epoch draws the same pseudo-fakes as the run it continues."""
    return np.random.default_rng([int(seed), int(epoch), int(index), 0x5B1])


def self_blend_clip(frames: np.ndarray, seed: int, epoch: int, index: int,
                    p: SelfBlendParams | None = None) -> np.ndarray:
    """A pseudo-fake clip (T, H, W, 3): every frame blended with the same mask and the same transform
    (each frame's draws come from the same generator state), as a face swap is over a clip."""
    return np.stack([self_blend(f, blend_rng(seed, epoch, index), p)[0] for f in frames])
