"""Preprocess an input exactly as training preprocessed its videos, and find the settings it used.

Each input goes through the face-crop cache's own per-video function (`data.cache.process_video`:
the same frame and clip sampling, face detector, box filling, margin, crop size, minimum face rate,
audio windows, and the crop encoding round trip for a JPEG cache), which writes a temporary crop
entry that is read back with `CropReader`. The preprocessing parameters come, in order, from
--params / --profile, from the ensemble config (`preprocess`, written by notebook 06), or from the
run folder (`reports/prepare_data.json` -> the crop cache's `config.json`, else the profile it
names); without any of these the command asks for --profile or --params.

Images are detected and cropped like a video frame; `precropped=True` takes the whole image as the
face (as for face-sequence datasets' crops).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from interceptor_lib.config.load import PARAMS_DIR
from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.extract import face_detector, process_video
from interceptor_lib.data.crops_file import CropReader, decode_crop, encode_crop
from interceptor_lib.data.faces import CropSpec, crop_face
from interceptor_lib.data.video import IMAGE_SUFFIXES
from interceptor_lib.errors import InterceptorError, MediaError
from interceptor_lib.layout import RunPaths
from interceptor_lib.params import load_params


@dataclasses.dataclass
class Prepared:
    """One input's face crops, as the training datasets would read them from the cache."""

    kind: str                      # "video" or "image"
    frames: np.ndarray             # (F, S, S, 3) uint8 RGB crops of the evenly spaced frames
    clips: np.ndarray              # (C, T, S, S, 3) uint8 RGB crops of the clips (C may be 0)
    audio: np.ndarray | None       # (C, samples) float32 windows aligned with the clips, or None
    faces_found: int               # frames in which the detector found a face
    frames_probed: int             # frames the detector ran on
    num_frames: int                # frames in the source


# ----------------------------------------------------------------------------------------- settings

def _from_dict(d: dict) -> PreprocessParams:
    names = {f.name for f in dataclasses.fields(PreprocessParams)}
    return PreprocessParams(**{k: v for k, v in d.items() if k in names})


def resolve_preprocess(run: str | Path | None, profile: str | None = None, params_file: str | Path | None = None,
                       ensemble_config: dict | None = None) -> tuple[PreprocessParams, str]:
    """The preprocessing parameters training used, and where they came from. Order: --params /
    --profile; the ensemble config's `preprocess`; the run's `reports/prepare_data.json` (the crop
    cache's config.json, else its profile when params/<profile>.yaml resolves to the same run)."""
    stored = (ensemble_config or {}).get("preprocess")
    if profile or params_file:
        pp = load_params(profile, params_file, check_paths=False).preprocess
        if stored:
            differ = [k for k in PreprocessParams.KEY_FIELDS if k in stored and stored[k] != getattr(pp, k)]
            if differ:
                warnings.warn(f"the params given differ from the ensemble's training preprocessing in {differ}; "
                              "using the params given (crops may not match what the models were trained on)")
        return pp, f"params file {params_file}" if params_file else f"profile {profile}"
    if stored:
        return _from_dict(stored), "ensemble config"
    if run is not None:
        summary = RunPaths.at(run).reports / "prepare_data.json"
        if summary.is_file():
            info = json.loads(summary.read_text())
            cfg = Path(str(info.get("cache_dir", ""))) / "config.json"
            if info.get("cache_dir") and cfg.is_file():
                return _from_dict(json.loads(cfg.read_text())), f"crop cache {cfg}"
            prof = info.get("profile")
            if prof:
                if (PARAMS_DIR / f"{prof}.yaml").is_file():
                    params = load_params(prof, check_paths=False)
                    if Path(params.output_dir).resolve() == Path(run).resolve():
                        return params.preprocess, f"profile {prof} (from {summary})"
    raise InterceptorError(
        f"cannot tell how run {run} preprocessed its faces (no 'preprocess' in its ensemble config, no crop cache "
        "config from reports/prepare_data.json); pass --profile <name> or --params <file> of the run")


# ----------------------------------------------------------------------------------------- crops

def prepare_input(path: Path, pp: PreprocessParams, work_dir: Path, precropped: bool = False) -> Prepared:
    """Face crops of one video or image, preprocessed like the training cache (see the module docstring)."""
    is_image = path.suffix.lower() in IMAGE_SUFFIXES
    if is_image and not precropped:
        return _prepare_image(path, pp)
    # The cache's own per-video function writes a crop entry; reading it back gives exactly the
    # crops (and audio windows) the training datasets read.
    out = work_dir / f"{path.stem[:40]}-{time.monotonic_ns()}.crops"
    row = {"video_id": path.name, "path": str(path), "member": "", "has_audio": False, "original_id": "",
           "dataset": "predict"}
    process_video({"row": row, "out": str(out), "fingerprint": "", "reuse": None}, pp)
    rd = CropReader(out)
    clips = np.stack([rd.clip(i) for i in range(rd.num_clips)]) if rd.num_clips else \
        np.zeros((0, pp.clip_len, *rd.header["crop_shape"]), np.uint8)
    audio = np.stack([rd.audio_window(i) for i in range(rd.num_clips)]) if rd.num_clips and rd.has_audio else None
    probed = rd.probed
    prep = Prepared("image" if is_image else "video", rd.frames(), clips, audio,
                    int(rd.found[probed].sum()), int(probed.sum()), int(rd.meta["num_frames"]))
    out.unlink()
    return prep


def _prepare_image(path: Path, pp: PreprocessParams) -> Prepared:
    """An image as one video frame: the largest face found by the training detector, cropped with the
    training margin and size, through the cache's encoding round trip."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError("undecodable", f"cannot decode image {path}")
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    faces = face_detector(pp).detect(rgb)
    if not faces:
        raise MediaError("no_face", f"no face found in image {path} (detector {pp.detector}); if the image is "
                         "already a face crop, use --precropped")
    crop = crop_face(rgb, faces[0][0], CropSpec(size=pp.face_size, margin=pp.margin))
    crop = decode_crop(encode_crop(crop, pp.image_format, pp.jpeg_quality), pp.image_format, crop.shape)
    return Prepared("image", crop[None], np.zeros((0, pp.clip_len, *crop.shape), np.uint8), None, 1, 1, 1)
