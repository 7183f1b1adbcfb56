"""Static backgrounds: a room wall lit from the scene's key-light direction, with furniture,
pictures, windows and shelves (sharp edges and fine texture, so that a blurred face stands out
against a sharp frame), the head's soft shadow on the wall, and the torso in front of it.

Everything here is lit by the same light as the head (`light_angle`): the `lighting` artifact
is the face disagreeing with this.
"""

from __future__ import annotations

import cv2
import numpy as np

from interceptor_lib.synthetic.face_render import shading, soft_ellipse


def render_background(rng: np.random.Generator, width: int, height: int, light_angle: float,
                      contrast: float, head_xy: tuple[float, float], head_ab: tuple[float, float],
                      skin_luma: float) -> np.ndarray:
    """Background (height, width, 3) float32 in 0..1, including the head's shadow on the wall.

    The wall's luminance is drawn relative to the skin's (0.6-1.5x): a camera exposes for the face,
    and a face far darker than its surroundings loses the contrast a face detector needs."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    lx, ly = np.cos(light_angle), -np.sin(light_angle)
    proj = ((xs - width / 2) * lx + (ys - height / 2) * ly) / max(width, height)
    wall = rng.uniform(0.3, 1.0, 3).astype(np.float32)
    wall *= np.clip(skin_luma * rng.uniform(0.6, 1.5), 0.15, 0.9) / _luma(wall)
    img = wall[None, None] * (1 + contrast * 0.9 * proj)[..., None]
    if rng.uniform() < 0.6:  # floor or desk along the bottom
        top = int(height * rng.uniform(0.72, 0.9))
        img[top:] = rng.uniform(0.2, 0.6, 3).astype(np.float32) * (1 + contrast * 0.6 * proj[top:])[..., None]
        img[top:top + 2] *= 0.7
    for _ in range(int(rng.integers(2, 6))):
        _add_object(rng, img, width, height, lx, ly, contrast)
    img *= 1 + _texture(rng, height, width)[..., None]
    # head shadow on the wall, cast away from the light
    hx, hy = head_xy
    ha, hb = head_ab
    off = 0.45 * ha
    shadow = soft_ellipse(xs, ys, hx - off * lx, hy - off * ly, 1.15 * ha, 1.25 * hb, 6.0)
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(2.0, 0.15 * ha))
    img *= (1 - 0.35 * contrast * shadow)[..., None]
    return np.clip(img, 0, 1.2).astype(np.float32)


def render_torso(width: int, height: int, head_xy, head_ab, clothes, light_angle: float,
                 contrast: float) -> tuple[np.ndarray, np.ndarray]:
    """Shoulders in front of the neck: (premultiplied rgb (h, w, 3), alpha (h, w))."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    hx, hy = head_xy
    ha, hb = head_ab
    cx, cy, rx, ry = hx, hy + 2.6 * hb, 2.3 * ha, 1.35 * hb
    alpha = soft_ellipse(xs, ys, cx, cy, rx, ry, min(rx, ry))
    nx, ny = np.clip((xs - cx) / rx, -1, 1), np.clip((ys - cy) / ry, -1, 1)
    nz = np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0.05, 1))
    shade = shading(nx, ny, nz, light_angle, contrast)
    rgb = np.asarray(clothes, np.float32)[None, None] * shade[..., None]
    return (rgb * alpha[..., None]).astype(np.float32), alpha


def _add_object(rng, img, width, height, lx, ly, contrast):
    """One rectangle-shaped object (window, picture, shelf, cabinet) with a lit edge and a drop
    shadow consistent with the light direction."""
    w = int(width * rng.uniform(0.12, 0.4))
    h = int(height * rng.uniform(0.15, 0.5))
    x0 = int(rng.uniform(-0.1, 1.0) * width)
    y0 = int(rng.uniform(-0.1, 0.75) * height)
    x1, y1 = min(width, x0 + w), min(height, y0 + h)
    x0, y0 = max(0, x0), max(0, y0)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return
    # drop shadow: offset away from the light
    sx, sy = int(round(-lx * 4)), int(round(-ly * 4))
    sh_x0, sh_y0 = max(0, x0 + sx), max(0, y0 + sy)
    img[sh_y0:min(height, y1 + sy), sh_x0:min(width, x1 + sx)] *= 1 - 0.3 * contrast
    kind = rng.integers(4)
    color = rng.uniform(0.1, 0.9, 3).astype(np.float32)
    region = img[y0:y1, x0:x1]
    rh, rw = region.shape[:2]
    if kind == 0:  # window: bright, with a frame
        region[:] = np.array([0.85, 0.9, 1.0], np.float32) * rng.uniform(0.9, 1.15)
        region[:, rw // 2 - 1:rw // 2 + 1] = color * 0.5
        region[:2], region[-2:], region[:, :2], region[:, -2:] = color * 0.5, color * 0.5, color * 0.5, color * 0.5
    elif kind == 1:  # shelf with books: fine vertical stripes
        region[:] = color * 0.5
        x = 0
        while x < rw:
            bw = int(rng.integers(2, 6))
            region[int(rh * rng.uniform(0, 0.25)):, x:x + bw] = rng.uniform(0.1, 0.9, 3)
            x += bw + int(rng.integers(0, 2))
    elif kind == 2:  # picture: frame around a smooth gradient
        g = np.linspace(0, 1, rw, dtype=np.float32)[None, :, None]
        region[:] = color * (1 - g) + rng.uniform(0.1, 0.9, 3).astype(np.float32) * g
        region[:3], region[-3:], region[:, :3], region[:, -3:] = 0.15, 0.15, 0.15, 0.15
    else:  # cabinet: flat panel with a lit edge
        region[:] = color * 0.8
    edge = 2
    if lx > 0.3:
        region[:, -edge:] *= 1 + 0.4 * contrast
    elif lx < -0.3:
        region[:, :edge] *= 1 + 0.4 * contrast
    if ly < -0.3:
        region[:edge] *= 1 + 0.4 * contrast


def _luma(rgb) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _texture(rng, h, w):
    """Wall texture: coarse blotches plus fine grain, zero-mean, a few percent."""
    coarse = cv2.resize(rng.uniform(-0.04, 0.04, (h // 16 + 2, w // 16 + 2)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    fine = rng.uniform(-0.025, 0.025, (h, w)).astype(np.float32)
    return coarse + cv2.GaussianBlur(fine, (0, 0), 0.7)
