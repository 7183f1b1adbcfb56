"""From a clip description to frames: head motion, blinks, speech-driven mouth, exposure, sensor
noise, source resolution, and the fake's one artifact.

Per frame (float32 RGB in 0..255)::

    exposed background (with torso) + posed head sprite    FrameRenderer.render
    -> artifact.pre_noise                                   (temporal: face jitter / flicker)
    -> sensor noise, face sigma x artifact.noise_ratio      (low_light: ratio != 1)
    -> whole-frame down/up-sampling                         (low-resolution sources, reals and fakes alike)
    -> artifact.post                                        (compression, resolution)
    -> uint8, then JPEG of the whole image for WildDeepfake crops
    -> resized to `out_size` (WildDeepfake: the face, cut from a smaller video frame, saved at 224 x 224)

All randomness of the scene comes from streams keyed by `SceneSpec.seed`, so a fake and its
original share background, motion, blinks, speech and noise exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from interceptor_lib.synthetic.artifacts import Artifact, ArtifactSpec, build_artifact
from interceptor_lib.synthetic.audio import SAMPLE_RATE, Syllables, draw_syllables, synth_speech
from interceptor_lib.synthetic.background import render_background, render_torso
from interceptor_lib.synthetic.face_render import HeadSprite
from interceptor_lib.synthetic.scene import Identity, SceneSpec, named_rng


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one video or frame sequence."""

    scene: SceneSpec                 # the original's conditions (shared by its fakes)
    face: Identity                   # identity drawn: scene.identity, or a swap onto it
    width: int
    height: int
    fps: float
    n_frames: int
    artifact: ArtifactSpec | None = None
    artifact_key: str = ""           # keys the artifact's own per-frame randomness
    mouth_scene_seed: int | None = None  # re-enactment: the mouth follows this scene's speech
    source_jpeg: bool = False        # WildDeepfake: frames come from a JPEG-compressed source
    out_size: tuple[int, int] | None = None  # (w, h) the rendered frames are resized to; None: as rendered


def scene_stream(scene_seed: int, name: str) -> np.random.Generator:
    """One of a scene's random streams ('background', 'motion', 'blink', 'speech', 'noise', ...)."""
    return named_rng(scene_seed, "scene-stream", name)


def speech_of(scene_seed: int, duration: float) -> Syllables:
    return draw_syllables(scene_stream(scene_seed, "speech"), duration)


class FrameRenderer:
    """Renders the exposed, noise-free frames of one clip (float32 RGB in 0..255)."""

    def __init__(self, scene: SceneSpec, face: Identity, width: int, height: int, fps: float,
                 n_frames: int, artifact: Artifact):
        self.w, self.h = width, height
        b = scene.face_scale * min(width, height)
        face_angle, face_tint = artifact.face_light(scene.light_angle)
        self.sprite = HeadSprite(face, b, scene.light_angle, scene.light_contrast,
                                 scene_stream(scene.seed, "texture"), face_angle, face_tint)
        self.head_xy = (scene.face_x * width, scene.face_y * height)
        head_ab = (self.sprite.a, self.sprite.b)
        skin_luma = float(np.dot(scene.identity.skin, (0.299, 0.587, 0.114)))
        bg = render_background(scene_stream(scene.seed, "background"), width, height, scene.light_angle,
                               scene.light_contrast, self.head_xy, head_ab, skin_luma)
        torso_rgb, torso_a = render_torso(width, height, self.head_xy, head_ab, scene.identity.clothes,
                                          scene.light_angle, scene.light_contrast)
        # exposure and colour temperature of the camera, applied once to the static layers
        self.exposure = (255 * scene.brightness * (1 + scene.color_temp * np.array([0.08, 0.0, -0.08]))
                         ).astype(np.float32)
        self.background = ((bg * (1 - torso_a[..., None]) + torso_rgb) * self.exposure).astype(np.float32)
        self.poses = _head_poses(scene_stream(scene.seed, "motion"), n_frames, fps, scene.motion, self.sprite.a)
        self.blinks = _blinks(scene_stream(scene.seed, "blink"), n_frames, fps)

    def render(self, i: int, mouth_open: float) -> tuple[np.ndarray, np.ndarray]:
        """Frame i: (RGB (H, W, 3) float32 in 0..255, inner-face mask (H, W) float32 in 0..1)."""
        sp = self.sprite
        rgba = sp.compose(self.blinks[i], mouth_open)
        dx, dy, rot, scale = self.poses[i]
        m = cv2.getRotationMatrix2D((sp.cx, sp.cy), rot, scale)
        m[:, 2] += (self.head_xy[0] + dx - sp.cx, self.head_xy[1] + dy - sp.cy)
        corners = np.array([[0, 0, 1], [sp.w, 0, 1], [0, sp.h, 1], [sp.w, sp.h, 1]], np.float64) @ m.T
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int), (self.w, self.h))
        frame = self.background.copy()
        mask = np.zeros((self.h, self.w), np.float32)
        if x1 > x0 and y1 > y0:
            m[:, 2] -= (x0, y0)
            size = (int(x1 - x0), int(y1 - y0))
            warped = cv2.warpAffine(rgba, m, size, flags=cv2.INTER_LINEAR, borderValue=0)
            roi = frame[y0:y1, x0:x1]
            roi *= 1 - warped[..., 3:4]
            roi += warped[..., :3] * self.exposure
            mask[y0:y1, x0:x1] = cv2.warpAffine(sp.face_mask, m, size, flags=cv2.INTER_LINEAR, borderValue=0)
        return frame, mask


class SensorNoise:
    """Gaussian sensor noise (luma plus coarser chroma), sigma in 8-bit units.

    Drawing fresh full-frame normals costs more than rendering a frame, so each clip draws a small
    bank of noise fields once and takes a randomly placed window of one per frame: the noise of
    every frame is still white and unrelated to the previous frame's at the same pixel."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, sigma: float, bank: int = 3, pad: int = 24):
        self.w, self.h, self.pad, self.rng = width, height, pad, rng
        self.sigma = np.float32(sigma)
        self.luma = rng.standard_normal((bank, height + pad, width + pad), dtype=np.float32)
        self.chroma = 0.5 * rng.standard_normal((bank, height // 2 + pad, width // 2 + pad, 3), dtype=np.float32)

    def sample(self, face_mask: np.ndarray | None = None, face_ratio: float = 1.0) -> np.ndarray:
        """Noise (H, W, 3) for one frame; inside `face_mask` its sigma is scaled by `face_ratio`."""
        k, j, dy, dx, cy, cx = self.rng.integers(0, [len(self.luma), len(self.chroma)] + [self.pad] * 4)
        chroma = self.chroma[j, cy:cy + self.h // 2, cx:cx + self.w // 2]
        noise = cv2.resize(chroma, (self.w, self.h), interpolation=cv2.INTER_LINEAR)
        noise += self.luma[k, dy:dy + self.h, dx:dx + self.w, None]
        if face_mask is not None and face_ratio != 1.0:
            noise *= (self.sigma * (1 + (face_ratio - 1) * face_mask))[..., None]
        else:
            noise *= self.sigma
        return noise


def render_clip(spec: ClipSpec) -> Iterator[np.ndarray]:
    """The clip's frames as RGB uint8 arrays (H, W, 3), in order."""
    scene = spec.scene
    artifact = build_artifact(spec.artifact, named_rng(scene.seed, "artifact", spec.artifact_key))
    renderer = FrameRenderer(scene, spec.face, spec.width, spec.height, spec.fps, spec.n_frames, artifact)
    duration = spec.n_frames / spec.fps
    mouth_seed = scene.seed if spec.mouth_scene_seed is None else spec.mouth_scene_seed
    mouth = artifact.mouth(speech_of(mouth_seed, duration), spec.n_frames, spec.fps)
    noise = SensorNoise(scene_stream(scene.seed, "noise"), spec.width, spec.height, scene.noise_sigma)
    w, h = spec.width, spec.height
    for i in range(spec.n_frames):
        frame, mask = renderer.render(i, 0.04 + 0.96 * float(mouth[i]))
        frame = artifact.pre_noise(frame, mask, i)
        frame += noise.sample(mask, artifact.noise_ratio)
        if scene.source_res < 1.0:
            small = cv2.resize(frame, (round(w * scene.source_res), round(h * scene.source_res)),
                               interpolation=cv2.INTER_AREA)
            frame = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        frame = artifact.post(frame, mask, i)
        out = to_uint8(frame)
        if spec.source_jpeg:
            ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(scene.quality)])
            if not ok:
                raise RuntimeError("OpenCV failed to JPEG-encode a frame")
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if spec.out_size is not None and spec.out_size != (w, h):
            out = cv2.resize(out, spec.out_size, interpolation=cv2.INTER_LINEAR)
        yield out


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """Round and saturate a float frame in 0..255 to uint8."""
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def clip_audio(spec: ClipSpec, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The original's speech for the clip (a fake keeps its original's audio)."""
    duration = spec.n_frames / spec.fps
    return synth_speech(speech_of(spec.scene.seed, duration), duration,
                        scene_stream(spec.scene.seed, "voice"), sample_rate)


def _head_poses(rng, n, fps, motion, a):
    """(dx, dy, rotation deg, scale) per frame: smooth sums of slow sinusoids, scaled by motion."""
    t = np.arange(n) / fps
    out = np.zeros((n, 4))
    amp = np.array([0.3 * a, 0.15 * a, 5.0, 0.03]) * motion
    for k in range(4):
        f = rng.uniform(0.15, 0.8, 2)
        ph = rng.uniform(0, 2 * np.pi, 2)
        out[:, k] = amp[k] * (0.65 * np.sin(2 * np.pi * f[0] * t + ph[0]) + 0.35 * np.sin(2 * np.pi * f[1] * t + ph[1]))
    out[:, 3] += 1
    return out


def _blinks(rng, n, fps):
    """Eyelid closure (0..1) per frame: blinks of ~0.15 s, every 2-6 s."""
    t = np.arange(n) / fps
    closed = np.zeros(n)
    tb = rng.uniform(0.3, 4.0)
    while n and tb < t[-1] + 0.2:
        closed = np.maximum(closed, np.clip(1 - np.abs(t - tb) / 0.08, 0, 1))
        tb += rng.uniform(2.0, 6.0)
    return closed
