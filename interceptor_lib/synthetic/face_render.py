"""Procedural faces: a shaded head sprite with blinking eyes and a speaking mouth.

A face is drawn once per clip as a small RGBA sprite in face coordinates (X in face half-widths,
Y in face half-heights, origin at the face centre, Y down): Lambert shading of an ellipsoid under
the scene's key light, a relief map (eye sockets, nose ridge, cheekbones, shadows under nose and
lip), skin texture, eyes, brows, nostrils, ears, neck and hair. Per frame only the eyelids and the
mouth change; `HeadSprite.compose` returns that frame's sprite and `clip.FrameRenderer` poses it.

`face_light_angle` / `face_tint` light the inner face differently from the rest of the head: that
is the `lighting` artifact, the only way a fake's sprite differs from its original's beyond the
swapped inner features.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from interceptor_lib.synthetic.scene import Identity

_EXTENT_X, _TOP, _BOTTOM = 1.45, 1.45, 1.7  # sprite extent in face units around the face centre
NECK_END = 1.6  # the neck fades out here, below the top of the torso (background.render_torso)


@dataclass(frozen=True)
class FaceLayout:
    """Where the features sit and how strong the relief is, in face units.

    Tuned by a search that maximised the share of frames in which OpenCV's default Haar cascade
    (the project's offline detector) finds the face, over random identities, scenes and lighting
    fakes: the cascade wants a dark eye band (sockets, irises, brows close above), a bright nose
    ridge and cheekbones, and darker bands under the nose and the lower lip. With these values it
    finds about 97% of faces before encoding.
    """

    eye_y: float = -0.135     # eye centre height
    eye_rx: float = 0.22      # eye half-width (x eye_size)
    eye_ry: float = 0.116     # eye half-height (x eye_size)
    iris: float = 0.16        # iris radius (x eye_size)
    sclera_mix: float = 0.15  # 0: sclera the colour of shadowed skin ... 1: bright white
    brow_y: float = -0.22     # eyebrow centre-line height
    brow_thick: float = 0.045
    brow_hair_mix: float = 0.7  # brow colour: darkened hair (1) or darkened skin (0)
    nose_y: float = 0.21      # nostril height (x nose_length)
    mouth_y: float = 0.45
    hairline: float = -0.82   # hair cap boundary at the midline
    socket: float = 0.52      # eye-socket darkening
    cheek_hi: float = 0.14    # cheekbone highlight
    nose_hi: float = 0.4      # nose-ridge highlight
    forehead_hi: float = 0.03
    under_nose: float = 0.19  # shadow under the nose
    side_nose: float = 0.02   # shadow beside the nose
    under_lip: float = 0.1    # shadow under the lower lip


LAYOUT = FaceLayout()


def shading(nx: np.ndarray, ny: np.ndarray, nz: np.ndarray, angle: float, contrast: float) -> np.ndarray:
    """Lambert shading (mean about 1) of unit normals under a key light from image-plane `angle`
    (0 = from the right, pi/2 = from above) at 40 degrees elevation, plus ambient light."""
    elev = np.radians(40)
    lx, ly, lz = np.cos(angle) * np.cos(elev), -np.sin(angle) * np.cos(elev), np.sin(elev)
    lambert = np.clip(nx * lx + ny * ly + nz * lz, 0, 1)
    return ((1 - contrast) + contrast * 1.45 * lambert).astype(np.float32)


def soft_ellipse(X, Y, cx, cy, rx, ry, px):
    """Anti-aliased ellipse coverage (0..1); `px` is the radius in pixels (edge softness ~1 px)."""
    r = np.sqrt(((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2)
    return np.clip((1 - r) * px + 0.5, 0, 1).astype(np.float32)


class HeadSprite:
    """One clip's head: static layers built once, eyelids and mouth drawn per frame.

    Attributes used by the renderer: `w`, `h` (sprite size), `cx`, `cy` (face centre in sprite
    pixels), `a`, `b` (face half-width / half-height in pixels) and `face_mask` (h, w): the inner
    face a swap replaces, feathered, where artifacts act.
    """

    def __init__(self, ident: Identity, half_height: float, light_angle: float, contrast: float,
                 texture_rng: np.random.Generator, face_light_angle: float | None = None,
                 face_tint: float = 0.0, layout: FaceLayout = LAYOUT):
        self.ident, self.lay = ident, layout
        self.b = float(half_height)
        self.a = self.b / ident.aspect
        a, b = self.a, self.b
        self.w, self.h = int(np.ceil(2 * _EXTENT_X * a)), int(np.ceil((_TOP + _BOTTOM) * b))
        self.cx, self.cy = self.w / 2, _TOP * b
        X = ((np.arange(self.w, dtype=np.float32) + 0.5 - self.cx) / a)[None, :].repeat(self.h, 0)
        Y = ((np.arange(self.h, dtype=np.float32) + 0.5 - self.cy) / b)[:, None].repeat(self.w, 1)
        self._X, self._Y = X, Y

        r = np.sqrt((X / 0.82) ** 2 + ((Y - 0.08) / 0.95) ** 2)
        m = np.clip((1 - r) / 0.18, 0, 1)
        self.face_mask = (m * m * (3 - 2 * m)).astype(np.float32)  # smoothstep feather

        skin = np.array(ident.skin, np.float32)
        hair = np.array(ident.hair, np.float32)
        tex = _value_noise(texture_rng, self.h, self.w, 3, 0.035) + _value_noise(texture_rng, self.h, self.w, 12, 0.03)
        rgb = np.zeros((self.h, self.w, 3), np.float32)
        alpha = np.zeros((self.h, self.w), np.float32)

        def lit(nx, ny, nz):
            return shading(nx, ny, nz, light_angle, contrast)

        zero = np.zeros_like(X)
        if ident.hair_style in (1, 3):  # hair behind the head
            vol = 1.28 if ident.hair_style == 3 else 1.16
            bottom = 1.05 if ident.hair_style == 1 else 0.35
            back = soft_ellipse(X, Y, 0, -0.08, vol, 1.14, vol * a) * np.clip((bottom - Y) * b / 3, 0, 1)
            nz = np.sqrt(np.clip(1 - (X / vol) ** 2, 0, 1))
            _over(rgb, alpha, hair * (0.7 * lit(X / vol, zero, nz))[..., None], back)
        neck = (np.clip((0.4 - np.abs(X)) * a + 0.5, 0, 1) * np.clip((Y - 0.5) * b, 0, 1)
                * np.clip((NECK_END - Y) * b / 2, 0, 1))  # ends inside the collar of the torso
        nx = np.clip(X / 0.4, -1, 1)
        jaw_shadow = 0.62 + 0.38 * np.clip((Y - 0.95) / 0.45, 0, 1)
        _over(rgb, alpha, skin * 0.9 * (lit(nx, zero, np.sqrt(1 - nx ** 2)) * jaw_shadow)[..., None], neck)
        if ident.ears:
            for side in (-1, 1):
                ear = soft_ellipse(X, Y, side * 0.97, 0.0, 0.15, 0.22, 0.15 * a)
                _over(rgb, alpha, skin * 0.88 * lit(zero + side * 0.8, zero, zero + 0.6)[..., None], ear)

        # the face: an ellipse narrowing towards the chin
        Xw = X * (1 + ident.chin * np.clip(Y, 0, None) ** 2)
        self._face_alpha = soft_ellipse(Xw, Y, 0, 0, 1, 1, a)
        nxf, nyf = np.clip(Xw, -1, 1), np.clip(Y, -1, 1)
        nzf = np.sqrt(np.clip(1 - nxf ** 2 - nyf ** 2, 0, 1))
        shade = lit(nxf, nyf, nzf)
        if face_light_angle is not None:
            fake = shading(nxf, nyf, nzf, face_light_angle, contrast)
            shade = shade * (1 - self.face_mask) + fake * self.face_mask
        self._face_shade = shade
        self._tint = 1 + face_tint * self.face_mask[..., None] * np.array([0.09, 0.0, -0.09], np.float32)
        albedo = self._features(skin[None, None] * (1 + tex)[..., None], X, Y)
        _over(rgb, alpha, albedo * shade[..., None] * self._tint, self._face_alpha)

        # front hair: a cap above the hairline (thin for the cropped style)
        vol = (1.07, 1.1, 1.03, 1.2)[ident.hair_style]
        line = layout.hairline + 0.32 * X ** 2 - (0.07 * X if ident.hair_style == 1 else 0)
        cap = soft_ellipse(X, Y, 0, -0.06, vol, 1.1, vol * a) * np.clip((line - Y) * b + 0.5, 0, 1)
        cap *= 0.6 if ident.hair_style == 2 else 1.0
        strands = 1 + _value_noise(texture_rng, self.h, self.w, 2, 0.12)
        nz = np.sqrt(np.clip(1 - (X / vol) ** 2 - ((Y + 0.06) / 1.1) ** 2, 0.05, 1))
        _over(rgb, alpha, hair * (lit(X / vol, (Y + 0.06) / 1.1, nz) * strands)[..., None], cap)

        self.rgb, self.alpha = rgb, alpha
        self._eye_boxes = self._closed_eyes(rgb, X, Y, skin, tex)
        m0, m1 = int(self.cy + (layout.mouth_y - 0.2) * b), int(np.ceil(self.cy + (layout.mouth_y + 0.25) * b))
        n0, n1 = int(self.cx - 0.5 * a), int(np.ceil(self.cx + 0.5 * a))
        self._mouth_roi = (slice(max(0, m0), m1), slice(max(0, n0), n1))

    def _features(self, albedo, X, Y):
        """Relief, nostrils, brows and eyes painted onto the face albedo."""
        idt, lay, a, b = self.ident, self.lay, self.a, self.b
        skin = np.array(idt.skin, np.float32)
        es, s, nl = idt.eye_spacing, idt.eye_size, idt.nose_length

        def g(cx, cy, sx, sy):
            return np.exp(-(((X - cx) / sx) ** 2 + ((Y - cy) / sy) ** 2))

        socket = np.maximum(g(-es, lay.eye_y - 0.04, 0.27, 0.15), g(es, lay.eye_y - 0.04, 0.27, 0.15))
        ridge = (np.exp(-((X / 0.09) ** 2)) * np.clip((Y - lay.eye_y) / (lay.nose_y * nl - lay.eye_y), 0, 1)
                 * (Y < lay.nose_y * nl + 0.05))
        relief = (1 - lay.socket * socket
                  + lay.cheek_hi * (g(-0.45, 0.16, 0.22, 0.12) + g(0.45, 0.16, 0.22, 0.12))
                  + lay.nose_hi * ridge + lay.forehead_hi * g(0, -0.62, 0.45, 0.18)
                  - lay.under_nose * g(0, lay.nose_y * nl + 0.07, 0.22, 0.05)
                  - lay.side_nose * (g(-0.14, 0.12 * nl, 0.05, 0.16) + g(0.14, 0.12 * nl, 0.05, 0.16))
                  - lay.under_lip * g(0, lay.mouth_y + 0.17, 0.2, 0.05))
        blush = g(-0.5, 0.25, 0.2, 0.15) + g(0.5, 0.25, 0.2, 0.15)
        albedo = albedo * relief[..., None] * (1 + blush[..., None] * np.array([0.04, -0.03, -0.03], np.float32))
        for side in (-1, 1):
            nostril = soft_ellipse(X, Y, side * 0.09, lay.nose_y * nl, 0.055, 0.035, 0.035 * b)
            albedo = _paint(albedo, skin * 0.35, nostril * 0.85)
        brow_col = lay.brow_hair_mix * np.array(idt.hair, np.float32) * 0.45 + (1 - lay.brow_hair_mix) * skin * 0.3
        sclera = np.minimum(np.array([0.86, 0.84, 0.8], np.float32), np.mean(skin) * 0.62 + 0.08)
        sclera = lay.sclera_mix * sclera + (1 - lay.sclera_mix) * skin * 0.8
        for side in (-1, 1):
            ex = side * es
            u = (X - ex) / 0.24
            curve = lay.brow_y - idt.brow_arch * (1 - u ** 2) + 0.02 * side * u
            thick = lay.brow_thick * idt.brow_weight
            brow = np.clip((thick - np.abs(Y - curve)) * b + 0.5, 0, 1) * np.clip((1 - np.abs(u)) * 0.24 * a + 0.5, 0, 1)
            albedo = _paint(albedo, brow_col, brow)
            rx, ry = lay.eye_rx * s, lay.eye_ry * s
            white = soft_ellipse(X, Y, ex, lay.eye_y, rx, ry, ry * b)
            albedo = _paint(albedo, sclera, white)
            ri = lay.iris * s
            iris = soft_ellipse(X, Y, ex, lay.eye_y, ri, ri * idt.aspect, ri * a) * white
            albedo = _paint(albedo, np.array(idt.iris, np.float32), iris)
            pupil = soft_ellipse(X, Y, ex, lay.eye_y, ri * 0.45, ri * 0.45 * idt.aspect, ri * 0.45 * a) * white
            albedo = _paint(albedo, np.zeros(3, np.float32) + 0.03, pupil)
            r = np.sqrt(((X - ex) / rx) ** 2 + ((Y - lay.eye_y) / ry) ** 2)
            lid = np.clip((0.2 - np.abs(r - 1.0)) * ry * b * 3, 0, 1) * (Y < lay.eye_y + 0.01)
            albedo = _paint(albedo, skin * 0.22, lid)
        return albedo

    def _closed_eyes(self, rgb, X, Y, skin, tex):
        """Per eye: (box slices, sprite colours of the box with the eye shut, box height)."""
        idt, lay, b = self.ident, self.lay, self.b
        boxes = []
        for side in (-1, 1):
            ex, s = side * idt.eye_spacing, idt.eye_size
            rx, ry = (lay.eye_rx + 0.03) * s, (lay.eye_ry + 0.05) * s
            x0, x1 = int(self.cx + (ex - rx) * self.a), int(np.ceil(self.cx + (ex + rx) * self.a))
            y0, y1 = int(self.cy + (lay.eye_y - ry) * b), int(np.ceil(self.cy + (lay.eye_y + ry) * b))
            sl = (slice(y0, y1), slice(x0, x1))
            Xs, Ys = X[sl], Y[sl]
            socket = np.exp(-(((Xs - ex) / 0.27) ** 2 + ((Ys - lay.eye_y + 0.04) / 0.15) ** 2))
            lid = skin * 0.95 * (1 + tex[sl])[..., None] * (1 - lay.socket * 0.8 * socket)[..., None]
            r = np.sqrt(((Xs - ex) / (lay.eye_rx * s)) ** 2 + ((Ys - lay.eye_y - 0.03) / 0.05) ** 2)
            lash = np.clip((1 - r) * 3, 0, 1) * (np.abs(Ys - lay.eye_y - 0.03) < 0.02)
            lid = _paint(lid, skin * 0.22, lash.astype(np.float32))
            lid = lid * self._face_shade[sl][..., None] * self._tint[sl]
            cover = soft_ellipse(Xs, Ys, ex, lay.eye_y, (lay.eye_rx + 0.02) * s, (lay.eye_ry + 0.03) * s, 0.1 * b)
            boxes.append((sl, rgb[sl] * (1 - cover[..., None]) + lid * cover[..., None], y1 - y0))
        return boxes

    def compose(self, blink: float, mouth_open: float) -> np.ndarray:
        """Premultiplied RGBA sprite (h, w, 4) with the eyes `blink` shut (0 open .. 1 closed) and
        the mouth `mouth_open` (0 closed .. 1 wide)."""
        rgb = self.rgb.copy()
        if blink > 0.05:
            for sl, closed_rgb, height in self._eye_boxes:
                rows = int(round(min(1.0, blink) * height))
                rgb[sl][:rows] = closed_rgb[:rows]
        self._draw_mouth(rgb, float(np.clip(mouth_open, 0, 1)))
        out = np.empty((self.h, self.w, 4), np.float32)
        out[..., :3] = rgb * self.alpha[..., None]
        out[..., 3] = self.alpha
        return out

    def _draw_mouth(self, rgb, o):
        """Lips whose opening (dark interior, teeth when wide) grows with `o`; the jaw drops a little."""
        idt, b = self.ident, self.b
        sl = self._mouth_roi
        X, Y = self._X[sl], self._Y[sl]
        mw = idt.mouth_width * (1 - 0.1 * o)
        cy = self.lay.mouth_y + 0.03 * o
        lips = soft_ellipse(X, Y, 0, cy, mw, 0.065 + 0.075 * o, 0.065 * b)
        hi = max(0.012, 0.085 * o)
        inner = soft_ellipse(X, Y, 0, cy + 0.01 * o, mw * 0.78, hi, max(hi * b, 0.8))
        teeth = inner * np.clip((cy - 0.35 * hi - Y) * b + 0.5, 0, 1) * float(o > 0.25)
        col = np.broadcast_to(np.array(idt.lip, np.float32), X.shape + (3,))
        col = _paint(col, np.array([0.16, 0.05, 0.05], np.float32), inner)
        col = _paint(col, np.array([0.82, 0.8, 0.74], np.float32), teeth.astype(np.float32))
        col = col * self._face_shade[sl][..., None] * self._tint[sl]
        cover = (lips * self._face_alpha[sl])[..., None]
        rgb[sl] = rgb[sl] * (1 - cover) + col * cover


def _over(dst_rgb, dst_a, rgb, a):
    """Paint a straight-alpha layer (rgb broadcastable to (h, w, 3), a (h, w)) over the sprite."""
    a = np.asarray(a, np.float32)
    out_a = a + dst_a * (1 - a)
    num = rgb * a[..., None] + dst_rgb * (dst_a * (1 - a))[..., None]
    dst_rgb[:] = np.where(out_a[..., None] > 1e-6, num / np.maximum(out_a, 1e-6)[..., None], 0)
    dst_a[:] = out_a


def _paint(base, color, cover):
    """Blend `color` over `base` with coverage `cover` (h, w)."""
    c = cover[..., None]
    return base * (1 - c) + np.asarray(color, np.float32) * c


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: int, amp: float) -> np.ndarray:
    """Smooth random texture: uniform noise on a coarse grid, upsampled bilinearly."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.uniform(-amp, amp, (gh, gw)).astype(np.float32)
    return cv2.resize(grid, (gw * cell, gh * cell), interpolation=cv2.INTER_LINEAR)[:h, :w]
