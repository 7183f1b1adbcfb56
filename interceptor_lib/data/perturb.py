"""The perturbations of the DeeperForensics-1.0 robustness protocol (Jiang et al., CVPR 2020), each at
levels 1-5 (0 = the input unchanged), for the robustness sweep (`pipeline/robustness.py`).

    saturation          colour saturation: the chroma of YCbCr scaled by 0.4, 0.3, 0.2, 0.1, 0.0
    contrast            colour contrast: every pixel value scaled by 0.85, 0.725, 0.6, 0.475, 0.35
    block               block-wise distortion: 16, 32, 48, 64, 80 grey (128) blocks at random places
    noise               colour Gaussian noise: variance 0.001, 0.002, 0.005, 0.01, 0.05 added to YCbCr in [0, 1]
    blur                Gaussian blur: kernel 7, 9, 13, 17, 21 px, sigma = kernel / 6
    jpeg                the protocol's JPEG level as its reference code implements it: down- and
                        up-sampling by 2, 3, 4, 5, 6 (the loss of detail of heavy JPEG; comparable
                        with published DeeperForensics-protocol figures)
    jpeg_quality        a real JPEG re-encode at quality 90, 70, 50, 30, 10 (not in the protocol)
    video_compression   an H.264 re-encode of the source video at CRF 30, 32, 35, 38, 40 (`recompress_entry`)

Where they apply. Video compression re-encodes the whole source video (up to the last frame the
cache holds) with PyAV's libx264, since its artifacts are temporal (motion prediction) and depend on
the whole frame, then crops the same frames at the same face boxes as the cache. The others are
per-pixel or local, and run on the cached face crops: the models see only the crop, the crops are
already decoded (the sweep costs no decoding or face detection), and per-pixel perturbations
(saturation, contrast, noise) act on the crop as on the frame it came from. Sizes are in crop
pixels (the blur kernel, the 8 px blocks of a 224 px crop, scaled with the crop): for a face about
as large in its frame as the crop (a 720p FF++ face is 200-300 px), their strength matches the
protocol's on the frame; on smaller crops (the demo's 112 px) they are stronger relative to the face.

Random perturbations (block, noise) are deterministic per (seed, video, frame): the sweep seeds each
crop's generator from them, and a frame that is also in a clip gets the same perturbation there.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.crops_file import CropEntry, CropReader, encode_crop, write_entry
from interceptor_lib.data.faces import CropSpec, crop_face
from interceptor_lib.data.video import open_source, write_video

LEVELS = (1, 2, 3, 4, 5)
#: the block side on a 224 px crop (the protocol's 8 px blocks), scaled with the crop size
BLOCK_PX_AT_224 = 8


def _to_ycbcr01(img: np.ndarray) -> np.ndarray:
    """RGB uint8 -> float32 Y, Cr, Cb in [0, 1] (OpenCV's full-range conversion)."""
    return cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32) / 255.0


def _from_ycbcr01(ycc: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(ycc * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)


def saturation(img: np.ndarray, factor: float, rng=None) -> np.ndarray:
    ycc = _to_ycbcr01(img)
    ycc[..., 1:] = 0.5 + (ycc[..., 1:] - 0.5) * factor
    return _from_ycbcr01(ycc)


def contrast(img: np.ndarray, factor: float, rng=None) -> np.ndarray:
    return (img.astype(np.float32) * factor).astype(np.uint8)  # truncated, as the protocol does


def block(img: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` grey blocks at places drawn for the highest level and taken in order, so that a higher
    level covers every block of a lower one."""
    h, w = img.shape[:2]
    side = max(1, round(BLOCK_PX_AT_224 * min(h, w) / 224))
    most = max(REGISTRY["block"].values)
    ys = rng.integers(0, max(h - side, 0) + 1, size=most)
    xs = rng.integers(0, max(w - side, 0) + 1, size=most)
    out = img.copy()
    for y, x in zip(ys[:n], xs[:n]):
        out[y:y + side, x:x + side] = 128
    return out


def noise(img: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """The same standard-normal field at every level, scaled by sqrt(variance)."""
    ycc = _to_ycbcr01(img)
    return _from_ycbcr01(ycc + np.sqrt(variance) * rng.standard_normal(ycc.shape, dtype=np.float32))


def blur(img: np.ndarray, kernel: int, rng=None) -> np.ndarray:
    return cv2.GaussianBlur(img, (kernel, kernel), kernel / 6.0)


def pixelate(img: np.ndarray, factor: int, rng=None) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // factor), max(1, h // factor)))
    return cv2.resize(small, (w, h))


def jpeg_quality(img: np.ndarray, quality: int, rng=None) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Perturbation:
    """One perturbation: its parameter at levels 1-5 (the protocol's values, see the module
    docstring), what that parameter is (figure axes), the function that applies it to a crop (None:
    it re-encodes the source video, `recompress_entry`) and whether it draws random numbers."""

    values: tuple
    parameter_name: str
    apply: Callable | None
    random: bool = False


#: every perturbation, in the protocol's order (jpeg_quality, not in the protocol, last)
REGISTRY: dict[str, Perturbation] = {
    "saturation": Perturbation((0.4, 0.3, 0.2, 0.1, 0.0), "chroma scale", saturation),
    "contrast": Perturbation((0.85, 0.725, 0.6, 0.475, 0.35), "value scale", contrast),
    "block": Perturbation((16, 32, 48, 64, 80), "grey blocks", block, random=True),
    "noise": Perturbation((0.001, 0.002, 0.005, 0.01, 0.05), "noise variance", noise, random=True),
    "blur": Perturbation((7, 9, 13, 17, 21), "Gaussian kernel, px", blur),
    "jpeg": Perturbation((2, 3, 4, 5, 6), "down-sampling factor", pixelate),
    "video_compression": Perturbation((30, 32, 35, 38, 40), "H.264 CRF", None),
    "jpeg_quality": Perturbation((90, 70, 50, 30, 10), "JPEG quality", jpeg_quality),
}
PERTURBATIONS = tuple(REGISTRY)
#: the perturbations that re-encode the source video instead of changing the cached crops
VIDEO_PERTURBATIONS = tuple(n for n, p in REGISTRY.items() if p.apply is None)


def parameter(name: str, level: int):
    """The perturbation's parameter at `level` (1-5); None at level 0 (no perturbation)."""
    check(name, level)
    return None if level == 0 else REGISTRY[name].values[level - 1]


def check(name: str, level: int) -> None:
    if name not in REGISTRY:
        raise ValueError(f"unknown perturbation {name!r}; expected one of {PERTURBATIONS}")
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 0 <= level <= len(LEVELS):
        raise ValueError(f"perturbation level must be an integer 0-{len(LEVELS)}, got {level!r}")


def crop_rng(seed: int, video_id: str, frame: int, name: str) -> np.random.Generator:
    """The generator of one crop's random perturbation: the same (seed, video, frame, perturbation),
    the same draws, at every level."""
    return np.random.default_rng([int(seed), zlib.crc32(video_id.encode()), int(frame), zlib.crc32(name.encode())])


def perturb_crop(img: np.ndarray, name: str, level: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """`img` (H, W, 3 RGB uint8) under perturbation `name` at `level` (0 returns it unchanged).
    `rng`: for block and noise (`crop_rng`)."""
    check(name, level)
    if name in VIDEO_PERTURBATIONS:
        raise ValueError(f"{name} re-encodes the source video (recompress_entry); it is not a crop perturbation")
    if level == 0:
        return img
    if REGISTRY[name].random and rng is None:
        raise ValueError(f"{name} is random: pass rng (crop_rng) so that it is reproducible")
    return REGISTRY[name].apply(np.ascontiguousarray(img), REGISTRY[name].values[level - 1], rng)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of b against a in dB (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


# --------------------------------------------------------------------------- readers for the sweep

class PerturbedReader:
    """A CropReader whose crops come out perturbed by `fn(crop, position)`; everything else (frame
    and clip layout, audio) is the wrapped reader's."""

    def __init__(self, reader: CropReader, fn: Callable[[np.ndarray, int], np.ndarray]):
        self._reader, self._fn = reader, fn

    def crops(self, positions) -> np.ndarray:
        return np.stack([self._fn(c, int(p)) for c, p in zip(self._reader.crops(positions), positions)])

    def frames(self) -> np.ndarray:
        return self.crops(self.frame_pos)

    def clip(self, i: int) -> np.ndarray:
        return self.crops(self.clip_pos[i])

    def __getattr__(self, name):
        return getattr(self._reader, name)


class PerturbedCache:
    """A FaceCropCache as the training datasets read it (`usable`, `reader`, `params`), whose readers
    are `make_reader(cached reader, video_id)`."""

    def __init__(self, cache, make_reader: Callable[[CropReader, str], object]):
        self._cache, self._make = cache, make_reader
        self.params = cache.params

    def usable(self, table):
        return self._cache.usable(table)

    def reader(self, video_id: str):
        return self._make(self._cache.reader(video_id), video_id)


def crop_perturbation(name: str, level: int, seed: int = 0) -> Callable[[CropReader, str], PerturbedReader]:
    """`make_reader` for PerturbedCache: the cached crops under `name` at `level`, seeded per frame."""
    check(name, level)

    def make(reader: CropReader, video_id: str) -> PerturbedReader:
        frames = reader.frame_indices
        return PerturbedReader(reader, lambda img, pos: perturb_crop(
            img, name, level, crop_rng(seed, video_id, int(frames[pos]), name) if REGISTRY[name].random else None))
    return make


def recompress_entry(reader: CropReader, path: str, member: str, params: PreprocessParams, crf: int,
                     out: Path) -> Path:
    """Re-encode the source video (`path`, `member` as in the index) with H.264 at `crf`, from its
    first frame to the last one the cache holds, and write to `out` a crop entry like the cached one
    (`reader`): the same frames, cropped at the same boxes, the same clips and audio windows (the
    protocol changes the picture only). Returns `out`."""
    src = open_source(path, member, threads=False)
    info = src.info()
    frames = src.read(np.arange(int(reader.frame_indices.max()) + 1))
    h, w = (min(f.shape[0] for f in frames) // 2) * 2, (min(f.shape[1] for f in frames) // 2) * 2  # x264's 4:2:0
    if src.precropped:  # face images, possibly of several sizes: one even size for the encoder
        frames = [f if f.shape[:2] == (h, w) else cv2.resize(np.asarray(f), (w, h)) for f in frames]
    else:  # at most one row / column dropped: the face boxes stay where they were
        frames = [np.asarray(f)[:h, :w] for f in frames]
    tmp = out.with_name(out.name + ".mp4")
    try:
        # without the macroblock tree: with it, x264's bytes for the same frames can depend on what the
        # worker decoded before, and the sweep's figures would change from run to run
        write_video(tmp, frames, fps=info.fps or 25.0, crf=crf, x264_params="no-mbtree=1")
        coded = open_source(str(tmp), "", threads=False).read(reader.frame_indices)
    finally:
        tmp.unlink(missing_ok=True)
    shape = tuple(reader.header["crop_shape"])
    spec = CropSpec(size=shape[0], margin=1.0 if src.precropped else params.margin)
    boxes = (np.tile(np.array([0, 0, w, h], np.float32), (len(coded), 1)) if src.precropped else reader.boxes)
    crops = [crop_face(np.asarray(im), b, spec) for im, b in zip(coded, boxes)]
    audio = None
    if reader.has_audio:
        audio = np.round(np.stack([reader.audio_window(i) for i in range(reader.num_clips)]) * 32768).astype(np.int16)
    fmt = reader.header["image_format"]
    write_entry(out, CropEntry(frame_indices=reader.frame_indices, boxes=reader.boxes, found=reader.found,
                               probed=reader.probed, frame_pos=reader.frame_pos, clip_pos=reader.clip_pos,
                               crops=[encode_crop(c, fmt, params.jpeg_quality) for c in crops], image_format=fmt,
                               crop_shape=crops[0].shape, audio=audio, meta={**reader.meta, "crf": int(crf)}))
    return out


def _recompress_job(job: tuple) -> tuple[str, Path]:
    video_id, entry, path, member, params, crf, out = job
    return video_id, recompress_entry(CropReader(entry), path, member, params, crf, Path(out))


def recompress_all(jobs: list[tuple[str, Path, str, str]], params: PreprocessParams, crf: int, folder: Path,
                   pool=None) -> dict[str, Path]:
    """`recompress_entry` for each (video_id, cached entry path, source path, member) of `jobs`, into
    `folder`; in the worker processes of `pool` (`data.cache.worker_pool`) when given. Returns
    {video_id: the re-encoded entry}."""
    tasks = [(v, str(entry), path, member, params, int(crf), str(Path(folder) / f"{i:06d}.crops"))
             for i, (v, entry, path, member) in enumerate(jobs)]
    results = pool.imap_unordered(_recompress_job, tasks) if pool is not None else map(_recompress_job, tasks)
    return dict(results)


@dataclass
class Recompressed:
    """`make_reader` for PerturbedCache at one video-compression level: each video's entry written by
    `recompress_entry` into `entries` (video_id -> path)."""

    entries: dict[str, Path]

    def __call__(self, reader: CropReader, video_id: str) -> CropReader:
        return CropReader(self.entries[video_id])
