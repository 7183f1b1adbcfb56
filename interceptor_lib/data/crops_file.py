"""One file per video holding its encoded face crops, boxes, clip layout and audio windows.

Layout: 8-byte magic, 8-byte little-endian header length, a JSON header, then the payload (the
encoded crops one after another, then the int16 audio windows). A reader parses the small header
and seeks straight to the crops it needs, so a training item reads ~one crop, not the whole video;
no pickle is involved. Files are written under a temporary name, fsynced and renamed, so a crash
never leaves a half-written entry behind.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from interceptor_lib.config.schema import IMAGE_FORMATS

MAGIC = b"ICROPS1\n"


def encode_crop(rgb: np.ndarray, fmt: str = "png", jpeg_quality: int = 95) -> bytes:
    """Encode an RGB crop: 'png' (lossless, the default, so the compression specialist sees the
    video's own artifacts and not ours), 'jpg' (about 5x smaller, lossy) or 'raw' (uncompressed:
    largest, no decoding cost at all)."""
    if fmt == "raw":
        return np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    elif fmt == "jpg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        raise ValueError(f"unknown cache image format {fmt!r}; use one of {IMAGE_FORMATS}")
    if not ok:
        raise RuntimeError("OpenCV failed to encode a face crop")
    return buf.tobytes()


def decode_crop(data: bytes, fmt: str, shape) -> np.ndarray:
    """Inverse of `encode_crop` (RGB uint8 of `shape`)."""
    if fmt == "raw":
        return np.frombuffer(data, np.uint8).reshape(shape)
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@dataclass
class CropEntry:
    """What the cache stores for one video. Positions index the stored crops, whose absolute frame
    numbers are `frame_indices`."""

    frame_indices: np.ndarray            # (N,) int64, sorted
    boxes: np.ndarray                    # (N, 4) float32, x0 y0 x1 y1 in frame pixels
    found: np.ndarray                    # (N,) bool: a face was detected in this frame (else filled)
    probed: np.ndarray                   # (N,) bool: the detector ran on this frame
    frame_pos: np.ndarray                # (F,) int64: the evenly spaced frames for frame models
    clip_pos: np.ndarray                 # (C, T) int64: consecutive frames for clip models
    crops: list[bytes]                   # N encoded images (see encode_crop)
    image_format: str = "png"
    crop_shape: tuple = (224, 224, 3)
    audio: np.ndarray | None = None      # (C, S) int16 windows aligned with the clips, or None
    meta: dict = field(default_factory=dict)


def write_entry(path: Path, entry: CropEntry) -> None:
    offsets, pos = [], 0
    for c in entry.crops:
        offsets.append([pos, len(c)])
        pos += len(c)
    audio = None
    if entry.audio is not None:
        audio = {"offset": pos, "shape": list(entry.audio.shape), "dtype": "int16"}
    header = {
        "frame_indices": entry.frame_indices.tolist(), "boxes": np.round(entry.boxes, 2).tolist(),
        "found": entry.found.tolist(), "probed": entry.probed.tolist(), "frame_pos": entry.frame_pos.tolist(),
        "clip_pos": entry.clip_pos.tolist(), "clip_len": int(entry.clip_pos.shape[1]), "crops": offsets, "image_format": entry.image_format,
        "crop_shape": list(entry.crop_shape), "audio": audio, "meta": entry.meta,
    }
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<Q", len(hbytes)) + hbytes)
            for c in entry.crops:
                f.write(c)
            if entry.audio is not None:
                f.write(np.ascontiguousarray(entry.audio, dtype="<i2").tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or an interrupt leaves no half-written file behind
        raise


class CropReader:
    """Random access to one stored entry: `crop(pos)`, `frames()`, `clip(i)`, `audio_window(i)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            magic = f.read(8)
            if magic != MAGIC:
                raise ValueError(f"{self.path} is not a face-crop cache file (bad magic {magic!r})")
            (n,) = struct.unpack("<Q", f.read(8))
            self.header = json.loads(f.read(n))
        self._payload = 16 + n
        h = self.header
        self.frame_indices = np.asarray(h["frame_indices"], dtype=np.int64)
        self.frame_pos = np.asarray(h["frame_pos"], dtype=np.int64)
        self.clip_pos = np.asarray(h["clip_pos"], dtype=np.int64).reshape(len(h["clip_pos"]), h["clip_len"])
        self.boxes = np.asarray(h["boxes"], dtype=np.float32).reshape(-1, 4)
        self.found = np.asarray(h["found"], dtype=bool)
        self.probed = np.asarray(h["probed"], dtype=bool)
        self.meta = h["meta"]

    @property
    def num_clips(self) -> int:
        return len(self.header["clip_pos"])

    @property
    def has_audio(self) -> bool:
        return self.header["audio"] is not None

    def crop_bytes(self, positions) -> list[bytes]:
        out = []
        with open(self.path, "rb") as f:
            for p in positions:
                off, n = self.header["crops"][int(p)]
                f.seek(self._payload + off)
                out.append(f.read(n))
        return out

    def crops(self, positions) -> np.ndarray:
        """Decoded RGB crops at stored positions, (len, H, W, 3) uint8."""
        fmt, shape = self.header["image_format"], self.header["crop_shape"]
        return np.stack([decode_crop(b, fmt, shape) for b in self.crop_bytes(positions)])

    def frames(self) -> np.ndarray:
        return self.crops(self.frame_pos)

    def clip(self, i: int) -> np.ndarray:
        return self.crops(self.clip_pos[i])

    def audio_window(self, i: int) -> np.ndarray | None:
        """The float32 audio window in [-1, 1] aligned with clip `i`, or None."""
        a = self.header["audio"]
        if a is None:
            return None
        c, s = a["shape"]
        with open(self.path, "rb") as f:
            f.seek(self._payload + a["offset"] + i * s * 2)
            raw = np.frombuffer(f.read(s * 2), dtype="<i2")
        return raw.astype(np.float32) / 32768.0
