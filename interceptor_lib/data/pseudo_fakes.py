"""Self-blended pseudo-fakes (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images",
CVPR 2022): a real face crop blended with a transformed copy of itself through a deformed, blurred
face mask. The result carries the traces every face swap leaves (a blending boundary, a colour,
frequency, noise or lighting mismatch, a slight misalignment) without any one generator's
fingerprint, which is why a detector trained on real faces and these generalises across datasets.

    fake, mask = self_blend(crop, blend_rng(seed, epoch, index), SelfBlendParams(), margin=1.3)

Every transform and its range is a params key (`train.pseudo_fakes`, `config.schema.SelfBlendParams`);
a stage trains on them as `train.stages.<stage>.pseudo_fakes` says (`PseudoFakes`, which the training
datasets take: off, a share of the fake draws, or instead of the dataset's fakes).

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

from interceptor_lib.config.schema import PSEUDO_ONLY, PreprocessParams, SelfBlendParams, pseudo_share

#: what a pseudo-fake item's video_id gets appended: its predictions must not be grouped with the
#: real video it was made from (they carry the other label)
PSEUDO_SUFFIX = "#self-blend"
#: where the face box lies in the crop when nothing else is known (preprocess.margin's default)
DEFAULT_MARGIN = PreprocessParams.margin


@dataclass(frozen=True)
class PseudoFakes:
    """How a training (or validation) dataset makes pseudo-fakes: `mode` "only" (its fakes are dropped
    and every real item gets a pseudo-fake twin) or a share in (0, 1) of the fake draws (the real
    items' twins are added beside the dataset's fakes; the sampler gives them that share); the
    transforms; the seed of (seed, epoch, index); the crop margin (where the face is)."""

    mode: str | float
    params: SelfBlendParams = field(default_factory=SelfBlendParams)
    seed: int = 0
    margin: float = DEFAULT_MARGIN

    def __post_init__(self):
        share = isinstance(self.mode, (int, float)) and not isinstance(self.mode, bool) and 0 < self.mode < 1
        if not (self.mode == PSEUDO_ONLY or share):
            raise ValueError(f"PseudoFakes.mode is 'only' or a share in (0, 1), got {self.mode!r}")

    @property
    def only(self) -> bool:
        return self.mode == PSEUDO_ONLY

    @property
    def share(self) -> float:
        """The share of the fake draws that are pseudo-fakes (1 with "only")."""
        return pseudo_share(self.mode)


#: the side the mask is drawn, deformed and blurred at before it is resized to the crop: it is smooth
#: (a blurred, softly deformed ellipse), so a small grid holds it, at a fraction of the work
MASK_GRID = 64
#: the elastic displacement field is drawn on this coarse grid and resized: smooth by construction
FIELD_GRID = 6


def face_mask(shape: tuple[int, int], rng: np.random.Generator, p: SelfBlendParams,
              margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The blending mask (H, W) float32 in [0, 1]: the jittered face ellipse (the face box is the
    crop's side / `margin`), elastically deformed, blurred and scaled by a blend ratio (drawn at
    MASK_GRID px and resized to the crop)."""
    h, w = shape
    k = min(1.0, MASK_GRID / max(h, w))
    gh, gw = max(2, round(h * k)), max(2, round(w * k))
    side = float(min(gh, gw))
    half = side / (2 * margin)  # the face box's half-side on the grid
    cx = gw / 2 + rng.uniform(-1, 1) * p.centre_jitter * side
    cy = gh / 2 + rng.uniform(-1, 1) * p.centre_jitter * side
    ax = half * rng.uniform(*p.axes)
    ay = half * rng.uniform(*p.axes) * p.aspect
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


#: the sharpen's kernels: the crop, and 9 x the crop minus its 3 x 3 neighbourhood's sum (both sum to
#: 1, so a sharpened copy keeps its brightness)
IDENTITY3 = np.pad(np.ones((1, 1)), 1)
SHARPEN3 = 10 * IDENTITY3 - 1
#: how far the noise bank's window moves: (NOISE_PAD + 1)^2 different grains per crop size
NOISE_PAD = 64


@functools.lru_cache(maxsize=8)
def _noise_bank(h: int, w: int) -> np.ndarray:
    """Unit white noise (h + NOISE_PAD, w + NOISE_PAD, 3) float32 from a fixed seed: the same bank in
    every process, so a pseudo-fake stays a function of (seed, epoch, index)."""
    return np.random.default_rng(0x5B1).standard_normal((h + NOISE_PAD, w + NOISE_PAD, 3), dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _grid3(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """_grid with each column three times: the pixel coordinates of an (h, w, 3) image seen as (h, 3 w)."""
    return tuple(np.ascontiguousarray(np.repeat(g, 3, axis=1)) for g in _grid(h, w))


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))


def transformed_copy(img: np.ndarray, rng: np.random.Generator, p: SelfBlendParams) -> np.ndarray:
    """The source: the crop with a colour and a frequency change, perhaps a lighting ramp and grain,
    slightly moved and resized."""
    h, w = img.shape[:2]
    # colour: per-channel shift, contrast about the mean, brightness, then saturation (a blend with the
    # grey level), as one affine colour transform (3 x 4 matrix), rounded and saturated to 0..255
    shift = rng.uniform(-p.rgb_shift, p.rgb_shift, 3)
    c, b = 1 + rng.uniform(-p.contrast, p.contrast), rng.uniform(-p.brightness, p.brightness) * 255
    mean = np.array(cv2.mean(img)[:3]) + shift
    sat = 1 + rng.uniform(-p.saturation, p.saturation)
    grey = np.array([0.299, 0.587, 0.114])  # RGB
    mix = sat * np.eye(3) + (1 - sat) * grey[None, :]
    offset = mix @ ((shift - mean) * c + mean + b)
    out = cv2.transform(img, np.hstack([mix * c, offset[:, None]]))
    u = rng.uniform()
    if u < p.p_downscale:
        f = rng.uniform(*p.downscale)
        small = cv2.resize(out, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_LINEAR)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    elif u < p.p_downscale + p.p_sharpen:
        a = rng.uniform(*p.sharpen)  # a 3 x 3 sharpening kernel, as albumentations' Sharpen (lightness 1)
        out = cv2.filter2D(out, -1, ((1 - a) * IDENTITY3 + a * SHARPEN3).astype(np.float32))
    if p.shading and p.p_shading and rng.uniform() < p.p_shading:
        # gain 1 + g * (position along a random direction, -1..1): one side of the face lit more
        g, theta = rng.uniform(-p.shading, p.shading), rng.uniform(0, 2 * np.pi)
        gx, gy = _grid3(h, w)
        r = np.hypot(h, w) / 2  # the half-diagonal: the ramp stays within 1 +- g in the corners
        kx, ky = g * np.cos(theta) / r, g * np.sin(theta) / r
        ramp = cv2.addWeighted(gx, kx, gy, ky, 1 - kx * w / 2 - ky * h / 2)  # (h, 3 w): one gain per value
        out = cv2.multiply(out.reshape(h, 3 * w), ramp, dtype=cv2.CV_8U).reshape(h, w, 3)  # rounded, saturated
    if p.p_noise and rng.uniform() < p.p_noise:
        # a window of a fixed bank of white noise at a random place: drawing fresh normals for every
        # pixel would cost more than the whole pseudo-fake
        bank = _noise_bank(h, w)
        y, x = rng.integers(0, NOISE_PAD + 1, 2)
        noise = cv2.multiply(bank[y:y + h, x:x + w], float(rng.uniform(*p.noise_sigma)))
        out = cv2.add(out, noise, dtype=cv2.CV_8U)
    s = rng.uniform(*p.scale)
    tx, ty = rng.uniform(-p.shift, p.shift, 2) * np.array([w, h])
    if s == 1 and tx == 0 and ty == 0:
        return out
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, s)
    m[:, 2] += (tx, ty)
    return cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def self_blend(img: np.ndarray, rng: np.random.Generator, p: SelfBlendParams | None = None,
               margin: float = DEFAULT_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended pseudo-fake of `img` (H, W, 3 RGB uint8, a face crop with `margin`) and its mask
    (H, W float32 in [0, 1]): mask * transformed copy + (1 - mask) * img, rounded; where the mask is 0
    the pixels are img's."""
    p = p or SelfBlendParams()
    mask = face_mask(img.shape[:2], rng, p, margin)
    source = transformed_copy(img, rng, p)
    out = cv2.blendLinear(source, img, mask, 1.0 - mask)
    return out, mask


def blend_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one pseudo-fake: a function of (seed, epoch, index) alone, so that a resumed
    epoch draws the same pseudo-fakes as the run it continues."""
    return np.random.default_rng([int(seed), int(epoch), int(index), 0x5B1])


def self_blend_clip(frames: np.ndarray, seed: int, epoch: int, index: int,
                    p: SelfBlendParams | None = None, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """A pseudo-fake clip (T, H, W, 3): every frame blended with the same mask and the same transform
    (each frame's draws come from the same generator state), as a face swap is over a clip: frame t
    is self_blend(frames[t], blend_rng(seed, epoch, index), ...)'s, with the mask drawn once."""
    p = p or SelfBlendParams()
    rng = blend_rng(seed, epoch, index)
    mask = face_mask(frames.shape[1:3], rng, p, margin)
    inverse, after_mask = 1.0 - mask, rng.bit_generator.state
    out = []
    for f in frames:
        rng.bit_generator.state = after_mask  # the same transform for every frame
        out.append(cv2.blendLinear(transformed_copy(f, rng, p), f, mask, inverse))
    return np.stack(out)
