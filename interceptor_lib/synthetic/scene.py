"""Identities and scene conditions of the synthetic corpus, drawn from named random streams.

Every random draw comes from `named_rng(seed, name)`: a NumPy generator keyed by the corpus seed
and a string (a video's path, an identity's name), so a video's content never depends on which
worker renders it or in which order. A fake is rendered from its original's `SceneSpec` (same
background, light, motion, blinks, noise realisation, codec quality); only its artifact and, for
face swaps, the inner-face features of its source identity differ. Conditions are drawn
independently of the label, so no condition alone tells a fake from a real.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]

#: Features a face swap carries over from the source identity; head shape, skin, hair stay the
#: target's (face-swap pipelines colour-correct the swapped face to the target's skin).
INNER_FEATURES = ("eye_spacing", "eye_size", "iris", "brow_weight", "brow_arch", "nose_length",
                  "mouth_width", "lip")

_HAIR = ((0.07, 0.06, 0.05), (0.18, 0.12, 0.08), (0.33, 0.22, 0.13), (0.62, 0.48, 0.28),
         (0.48, 0.22, 0.10), (0.55, 0.55, 0.55))
_IRIS = ((0.25, 0.15, 0.08), (0.12, 0.08, 0.05), (0.25, 0.35, 0.45), (0.30, 0.35, 0.20))


def named_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator keyed by (seed, names): stable across processes and Python runs (SHA-256, not
    Python's salted `hash`)."""
    digest = hashlib.sha256("\x1f".join(names).encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def sub_seed(rng: np.random.Generator) -> int:
    """A 63-bit integer seed drawn from `rng`, to key further streams of one video."""
    return int(rng.integers(0, 2**63 - 1))


@dataclass(frozen=True)
class Identity:
    """Appearance of one synthetic person (sizes are fractions of the face's half-width/-height)."""

    skin: RGB
    aspect: float        # face half-height / half-width
    chin: float          # how much the jaw narrows towards the chin (0 = plain ellipse)
    eye_spacing: float   # eye centre offset from the midline, in half-widths
    eye_size: float      # scale of the eyes
    iris: RGB
    brow_weight: float   # eyebrow thickness scale
    brow_arch: float     # eyebrow arch height
    nose_length: float
    mouth_width: float   # mouth half-width in face half-widths
    lip: RGB
    hair: RGB
    hair_style: int      # 0 short, 1 long, 2 cropped, 3 voluminous
    ears: bool
    clothes: RGB


def draw_identity(rng: np.random.Generator) -> Identity:
    """A random identity: skin tones from light to dark, varied face shape and features."""
    tone = rng.uniform(0, 1)
    light, dark = np.array([0.93, 0.76, 0.64]), np.array([0.40, 0.26, 0.18])
    skin = (1 - tone) * light + tone * dark + rng.normal(0, 0.02, 3)
    hair = np.array(_HAIR[rng.integers(len(_HAIR))]) * rng.uniform(0.85, 1.1)
    lip = skin * np.array([0.82, 0.55, 0.55]) + rng.normal(0, 0.02, 3)
    return Identity(
        skin=_rgb(skin), aspect=float(rng.uniform(1.18, 1.42)), chin=float(rng.uniform(0.0, 0.35)),
        eye_spacing=float(rng.uniform(0.36, 0.45)), eye_size=float(rng.uniform(0.85, 1.15)),
        iris=_rgb(np.array(_IRIS[rng.integers(len(_IRIS))])), brow_weight=float(rng.uniform(0.8, 1.3)),
        brow_arch=float(rng.uniform(0.02, 0.08)), nose_length=float(rng.uniform(0.85, 1.15)),
        mouth_width=float(rng.uniform(0.30, 0.42)), lip=_rgb(lip), hair=_rgb(hair),
        hair_style=int(rng.integers(4)), ears=bool(rng.uniform() < 0.8),
        clothes=_rgb(rng.uniform(0.1, 0.85, 3)))


def swap_inner(target: Identity, source: Identity) -> Identity:
    """The face a swap produces: `source`'s inner features on `target`'s head."""
    return dataclasses.replace(target, **{f: getattr(source, f) for f in INNER_FEATURES})


@dataclass(frozen=True)
class SceneSpec:
    """Conditions of one real (original) video; every fake made from it shares them."""

    identity: Identity
    light_angle: float      # radians, image-plane direction the key light comes from (0 = right)
    light_contrast: float   # share of the key light in the shading (rest is ambient)
    color_temp: float       # -1 cool ... +1 warm tint of the whole scene
    brightness: float       # global exposure gain; < 0.5 is a dark (low-light) scene
    noise_sigma: float      # sensor noise, 8-bit units (higher in dark scenes)
    face_scale: float       # face half-height / frame height
    face_x: float           # face centre, fraction of the frame width
    face_y: float           # face centre, fraction of the frame height
    motion: float           # head-motion amplitude, 0 (still) ... 1 (lively)
    source_res: float       # 1 = native; < 1: the whole frame was shot at this scale and upscaled
    quality: int            # H.264 CRF for videos, JPEG quality of the source for WildDeepfake
    seed: int               # keys background, motion, blinks, speech and noise streams

    @property
    def dark(self) -> bool:
        return self.brightness < 0.5


def draw_scene(rng: np.random.Generator, identity: Identity, *, crop: bool = False) -> SceneSpec:
    """Random conditions. `crop=True` draws a WildDeepfake-style face crop (face filling most of
    the image, JPEG source quality instead of a CRF)."""
    dark = rng.uniform() < 0.3
    brightness = rng.uniform(0.28, 0.45) if dark else rng.uniform(0.8, 1.08)
    noise = rng.uniform(4.0, 8.0) if dark else rng.uniform(1.5, 3.5)
    if crop:
        # framed like the other datasets' detected crops (detector box = 1 / 1.3 of the crop; see
        # tests/test_demo_corpus.py); at 0.33-0.37 the box filled 0.60, a framing no other dataset has
        face_scale, fx, fy = rng.uniform(0.42, 0.46), rng.uniform(0.47, 0.53), rng.uniform(0.48, 0.53)
        quality = int(rng.integers(60, 96))
    else:
        face_scale, fx, fy = rng.uniform(0.23, 0.3), rng.uniform(0.36, 0.64), rng.uniform(0.40, 0.46)
        quality = int(rng.integers(18, 31))
    low_res = rng.uniform() < 0.25
    return SceneSpec(
        identity=identity, light_angle=float(rng.uniform(0, 2 * np.pi)),
        light_contrast=float(rng.uniform(0.35, 0.6)), color_temp=float(rng.uniform(-1, 1)),
        brightness=float(brightness), noise_sigma=float(noise), face_scale=float(face_scale),
        face_x=float(fx), face_y=float(fy), motion=float(rng.choice([0.15, 0.5, 1.0]) * rng.uniform(0.8, 1.2)),
        source_res=float(rng.uniform(0.45, 0.7)) if low_res else 1.0, quality=quality,
        seed=sub_seed(rng))


def scene_conditions(scene: SceneSpec) -> dict:
    """The condition columns of the side table (demo_artifacts.csv)."""
    return {"brightness": round(scene.brightness, 3), "dark": scene.dark,
            "noise_sigma": round(scene.noise_sigma, 2), "face_scale": round(scene.face_scale, 3),
            "source_res": round(scene.source_res, 3), "motion": round(scene.motion, 3),
            "light_angle_deg": round(float(np.degrees(scene.light_angle)) % 360, 1),
            "color_temp": round(scene.color_temp, 3), "skin_tone": round(float(np.mean(scene.identity.skin)), 3)}


def _rgb(v) -> RGB:
    v = np.clip(np.asarray(v, dtype=float), 0.0, 1.0)
    return (float(v[0]), float(v[1]), float(v[2]))
