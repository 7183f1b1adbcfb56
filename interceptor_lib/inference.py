"""Score videos and images with a trained ensemble (`python -m interceptor_lib predict`, or a notebook).

    results = predict_paths(["clip.mp4", "photos/"], run="outputs/kaggle")
    results[0]["prob"], results[0]["label"], results[0]["members"]

Each input is preprocessed exactly as training preprocessed its videos: the face-crop cache's own
per-video function (`data.cache._process_video`: the same frame and clip sampling, face detector,
box filling, margin, crop size, minimum face rate, audio windows, and the crop encoding round trip
for a JPEG cache) writes a temporary crop entry that is read back with `CropReader`, and the crops
are normalised with `build_transform(train=False)`. The preprocessing parameters come, in order,
from --params / --profile, from the ensemble config (`preprocess`, written by notebook 06), or
from the run folder (`reports/prepare_data.json` -> the crop cache's `config.json`, else the
profile it names); without any of these the command asks for --profile or --params.

Scoring: image members score each evenly spaced frame, clip members each clip (AV with the audio
window of the clip, or marked as without audio, as in training). Each member's scores are averaged
over the video (the mean, as the validation metrics and the fitted weights use), then combined
with the ensemble's weights: P(fake) (temperature-scaled when the config has a temperature), the
label at the ensemble's validation threshold, and the weighted standard deviation of the members
as uncertainty.

Decisions:
  * No ensemble config (`<run>/ensemble/ensemble.json`): an error naming notebook 06_evaluation.
    Without fitted weights and a validation threshold a label would be a guess at 0.5 on
    uncalibrated scores, so no silent fallback.
  * Images: detected and cropped like a video frame (`precropped=True` takes the whole image as
    the face, as for WildDeepfake's crops). Only image members score them; clip members are
    skipped with a note (a still image repeated into a clip is a frozen video, a condition the
    temporal and audio-visual models never saw in training and would judge on that alone). The
    weights are renormalised over the members that scored, and the same happens for a video
    shorter than one clip.
  * Bad inputs (missing path, not a video or image, empty or corrupt file, no face) give a result
    with `ok=False` and a one-line `error`; the other inputs are still scored.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np
import torch

from interceptor_lib.data.cache import PreprocessParams, _detector, _process_video
from interceptor_lib.data.crops_file import CropReader, decode_crop, encode_crop
from interceptor_lib.data.datasets import build_transform
from interceptor_lib.data.faces import CropSpec, crop_face
from interceptor_lib.data.video import IMAGE_SUFFIXES
from interceptor_lib.ensemble import Ensemble, load_ensemble, read_ensemble_config
from interceptor_lib.errors import InterceptorError, MediaError
from interceptor_lib.models.explain import grad_cam
from interceptor_lib.layout import RunPaths
from interceptor_lib.training.device import resolve_device

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES


#: Keys of every result dict (None where they do not apply, e.g. for an input that failed).
RESULT_KEYS = ("path", "kind", "ok", "error", "prob", "prob_uncalibrated", "label", "threshold", "uncertainty",
               "members", "weights", "skipped", "faces_found", "frames_probed", "frames_sampled", "clips",
               "has_audio", "preprocess_source", "explain", "explain_error", "seconds")
#: What makes one input fail without stopping the others (a bug elsewhere keeps its traceback).
INPUT_ERRORS = (InterceptorError, OSError, av.FFmpegError, cv2.error)


class PredictError(InterceptorError, ValueError):
    """One input cannot be scored (missing, not a video or image); the message says what was expected."""


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


# ----------------------------------------------------------------------------------------- inputs

def collect_inputs(paths) -> list[tuple[Path, str | None]]:
    """(path, error) per input: files as given, folders expanded recursively to the videos and images
    inside (sorted; other files ignored). A missing path, a file that is not a video or image, or a
    folder without any becomes an entry with an error message."""
    out: list[tuple[Path, str | None]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MEDIA_SUFFIXES)
            if not found:
                out.append((p, f"folder {p} holds no videos or images ({', '.join(MEDIA_SUFFIXES)})"))
            out += [(f, None if f.stat().st_size else f"{f} is empty (0 bytes)") for f in found]
        elif not p.exists():
            out.append((p, f"{p} does not exist"))
        elif p.suffix.lower() not in MEDIA_SUFFIXES:
            out.append((p, f"{p} is not a video or image (expected one of {', '.join(MEDIA_SUFFIXES)})"))
        elif p.is_file() and p.stat().st_size == 0:
            out.append((p, f"{p} is empty (0 bytes)"))
        else:
            out.append((p, None))
    return out


# ----------------------------------------------------------------------------------------- params

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
        from interceptor_lib.params import load_params

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
                from interceptor_lib.config.load import PARAMS_DIR
                from interceptor_lib.params import load_params

                if (PARAMS_DIR / f"{prof}.yaml").is_file():
                    params = load_params(prof, check_paths=False)
                    if Path(params.output_dir).resolve() == Path(run).resolve():
                        return params.preprocess, f"profile {prof} (from {summary})"
    raise InterceptorError(
        f"cannot tell how run {run} preprocessed its faces (no 'preprocess' in its ensemble config, no crop cache "
        "config from reports/prepare_data.json); pass --profile <name> or --params <file> of the run")


# ----------------------------------------------------------------------------------------- preprocessing

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
    _process_video({"row": row, "out": str(out), "fingerprint": "", "reuse": None}, pp)
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
    faces = _detector(pp).detect(rgb)
    if not faces:
        raise MediaError("no_face", f"no face found in image {path} (detector {pp.detector}); if the image is "
                         "already a face crop, use --precropped")
    crop = crop_face(rgb, faces[0][0], CropSpec(size=pp.face_size, margin=pp.margin))
    crop = decode_crop(encode_crop(crop, pp.image_format, pp.jpeg_quality), pp.image_format, crop.shape)
    return Prepared("image", crop[None], np.zeros((0, pp.clip_len, *crop.shape), np.uint8), None, 1, 1, 1)


# ----------------------------------------------------------------------------------------- scoring

def _to_tensor(x: np.ndarray, transform) -> torch.Tensor:
    """uint8 (..., S, S, 3) -> normalised float (..., 3, S, S)."""
    t = torch.from_numpy(np.ascontiguousarray(x)).movedim(-1, -3)
    return transform(t)


def _clip_batch(prep: Prepared, transform, pp_audio_len: int, sel=slice(None)) -> dict:
    clips = _to_tensor(prep.clips[sel], transform)
    n = clips.shape[0]
    if prep.audio is not None:
        audio, has = torch.from_numpy(prep.audio[sel]).float(), torch.ones(n, dtype=torch.bool)
    else:
        audio, has = torch.zeros(n, pp_audio_len), torch.zeros(n, dtype=torch.bool)
    return {"clip": clips, "audio": audio, "has_audio": has}


def score_prepared(ens: Ensemble, prep: Prepared, pp: PreprocessParams, device: torch.device,
                   batch_size: int = 16) -> dict:
    """Member scores per row, averaged per member over the input, combined with the ensemble weights."""
    transform = build_transform(False, ens.data_config["mean"], ens.data_config["std"])
    audio_len = int(round(pp.audio_window_s * pp.audio_sample_rate))
    kinds = {n: ens.members[n].input_kind for n in ens.names}
    skipped = {}
    if not len(prep.frames):
        skipped.update({n: "no frames" for n, k in kinds.items() if k == "image"})
    if not len(prep.clips):
        why = ("an image has no clip (only image models score images)" if prep.kind == "image" else
               f"the video is shorter than one clip ({prep.num_frames} frames < clip_len {pp.clip_len})")
        skipped.update({n: why for n, k in kinds.items() if k == "clip"})
    run = [n for n in ens.names if n not in skipped]
    if not run:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise PredictError(f"no ensemble member can score this input: {why}")
    scores: dict[str, list[torch.Tensor]] = {n: [] for n in run}
    image_members = [n for n in run if kinds[n] == "image"]
    clip_members = [n for n in run if kinds[n] == "clip"]
    with torch.inference_mode():
        for i in range(0, len(prep.frames) if image_members else 0, batch_size):
            x = _to_tensor(prep.frames[i:i + batch_size], transform).to(device)
            for n, p in ens.run_members({"image": x}, image_members).items():
                scores[n].append(p.float().cpu())
        step = max(1, batch_size // max(1, pp.clip_len))
        for i in range(0, len(prep.clips) if clip_members else 0, step):
            b = {k: v.to(device) for k, v in _clip_batch(prep, transform, audio_len, slice(i, i + step)).items()}
            for n, p in ens.run_members(b, clip_members).items():
                scores[n].append(p.float().cpu())
        member = torch.stack([torch.cat(scores[n]).mean() for n in run])[None]  # (1, M')
        audio = prep.audio is not None  # an input with audio takes the ensemble's weights for audio, if any
        out = ens.combine(member, run, has_audio=torch.tensor([audio]))
    return {"prob": float(out["prob"][0]), "prob_uncalibrated": float(out["prob_uncalibrated"][0]),
            "uncertainty": float(out["uncertainty"][0]),
            "members": {n: float(member[0, j]) for j, n in enumerate(run)},
            "weights": ens.weights_for(run, audio), "skipped": skipped}


# ----------------------------------------------------------------------------------------- explanation

EXPLAIN_TILE_PX = 224  # each face tile of a Grad-CAM figure, at least this many pixels a side


def explain_input(ens: Ensemble, prep: Prepared, pp: PreprocessParams, scored: dict, device: torch.device,
                  out_path: Path, max_tiles: int = 4, members: str | list[str] = "all",
                  title: str = "") -> Path | None:
    """Grad-CAM of the members that scored the input on up to `max_tiles` evenly spaced face crops
    (clip members: each clip's middle frame), written as a PNG figure: the crops on the top row, one
    row of overlays per member (its weight in the ensemble and its P(fake) beside it), a colour bar of
    the relevance scale, and `title` (the input's full name) with the ensemble's P(fake) on top.
    `members`: "all" (every member that scored it), "best" (the one with the largest weight), or
    names. Each tile is at least EXPLAIN_TILE_PX pixels a side."""
    import matplotlib
    import matplotlib.cm
    import matplotlib.colors
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ran = list(scored["members"])
    if not ran:
        return None
    weights = scored.get("weights", {})
    if members == "best":
        chosen = [max(ran, key=lambda n: weights.get(n, 0.0))]
    elif members == "all":
        chosen = sorted(ran, key=lambda n: -weights.get(n, 0.0))
    else:
        chosen = [m for m in ([members] if isinstance(members, str) else members) if m in ran]
        if not chosen:
            raise InterceptorError(f"Grad-CAM members {members!r}: none of them scored this input (scored by {ran})")
    transform = build_transform(False, ens.data_config["mean"], ens.data_config["std"])
    rows = []  # (member, tiles (n, S, S, 3), cams (n, S, S))
    for name in chosen:
        model = ens.members[name]
        if model.input_kind == "image":
            sel = np.unique(np.linspace(0, len(prep.frames) - 1, min(max_tiles, len(prep.frames))).round().astype(int))
            batch = {"image": _to_tensor(prep.frames[sel], transform).to(device)}
            crops = prep.frames[sel]
        else:
            sel = np.unique(np.linspace(0, len(prep.clips) - 1, min(max_tiles, len(prep.clips))).round().astype(int))
            audio_len = int(round(pp.audio_window_s * pp.audio_sample_rate))
            batch = {k: v.to(device) for k, v in _clip_batch(prep, transform, audio_len, sel).items()}
            crops = prep.clips[sel, prep.clips.shape[1] // 2]
        rows.append((name, crops, grad_cam(model, batch).cpu().numpy()))
    n_cols = max(len(c) for _, c, _ in rows)
    tile_in, dpi = EXPLAIN_TILE_PX / 100, 100
    fig = Figure(figsize=(tile_in * n_cols + 2.4, tile_in * (len(rows) + 1) + 0.8), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(rows) + 1, n_cols + 1, width_ratios=[1] * n_cols + [0.08],
                            left=1.6 / (tile_in * n_cols + 2.4), right=0.95, top=1 - 0.6 / fig.get_figheight(),
                            bottom=0.02, wspace=0.03, hspace=0.06)
    cmap = matplotlib.colormaps["jet"]
    first_crops = rows[0][1]
    for r, (name, crops, cams) in enumerate([("face crops", first_crops, None)] + rows):
        for c in range(n_cols):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(crops):
                ax.axis("off")
                continue
            ax.imshow(crops[c], interpolation="bicubic")
            if cams is not None:
                ax.imshow(np.clip(cams[c], 0, 1), cmap=cmap, vmin=0, vmax=1, alpha=0.45,
                               interpolation="bilinear", extent=(-0.5, crops[c].shape[1] - 0.5, crops[c].shape[0] - 0.5, -0.5))
            if c == 0:
                label = name if cams is None else (f"{name}\nweight {weights.get(name, 0.0):.2f}\n"
                                                   f"P(fake) {scored['members'][name]:.2f}")
                ax.set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center", labelpad=8)
    scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap)
    fig.colorbar(scale, cax=fig.add_subplot(grid[1:, n_cols]), label="Grad-CAM relevance for 'fake' (0-1)")
    verdict = "fake" if scored["prob"] >= ens.threshold else "real"
    fig.suptitle(f"{title or out_path.stem}\nensemble P(fake) {scored['prob']:.3f} -> {verdict} "
                 f"(threshold {ens.threshold:.3f})", fontsize=10)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    return out_path


def _explain_name(path: Path, used: set) -> str:
    """`<file name with its extension>.gradcam.png` (a.mp4 and a.jpg do not collide), made unique."""
    stem = re.sub(r"[^\w.-]+", "_", path.name) or "input"
    name, k = f"{stem}.gradcam.png", 2
    while name in used:
        name, k = f"{stem}-{k}.gradcam.png", k + 1
    used.add(name)
    return name


# ----------------------------------------------------------------------------------------- entry point

def predict_paths(paths, run: str | Path | None = None, *, profile: str | None = None,
                  params_file: str | Path | None = None, frames: int | None = None,
                  explain_dir: str | Path | None = None, explain_members: str | list[str] = "all",
                  device: str = "auto", precropped: bool = False, batch_size: int = 16,
                  ensemble: Ensemble | None = None, preprocess: PreprocessParams | None = None,
                  log: Callable[[str], None] | None = None) -> list[dict]:
    """Score every video / image in `paths` (files or folders, searched recursively) with the ensemble
    of run folder `run` (`<run>/ensemble/ensemble.json`; default: the output_dir of --profile/--params).

    `frames` overrides the number of evenly spaced frames per video (preprocess.frames_per_video).
    `explain_dir`: write a Grad-CAM PNG per input there. `ensemble` / `preprocess`: already loaded
    ones (a notebook calling repeatedly). Returns one dict per input, in input order:
      path, kind, ok, error (None or a one-line message), prob (P(fake), calibrated when the ensemble
      has a temperature), label ("fake" / "real" at `threshold`), threshold, uncertainty (weighted
      std of the members), members (member -> video-level P(fake)), weights (used, renormalised),
      skipped (member -> why it did not score), faces_found (of frames_probed: the detector runs on
      the evenly spaced frames and each clip's first frame, as in training), frames_sampled (frames
      the image members scored), clips (clips the clip members scored), has_audio, preprocess_source,
      explain (PNG path or None), explain_error, seconds. Every result has all of `RESULT_KEYS`.
    Raises InterceptorError only for problems of the whole call (no ensemble config, unknown params).
    """
    log = log or (lambda msg: None)
    if run is None and (ensemble is None or (preprocess is None and not getattr(ensemble, "config", None))):
        if not (profile or params_file):
            raise InterceptorError("predict needs --run <output folder of a trained profile> or --profile / --params")
        from interceptor_lib.params import load_params

        run = load_params(profile, params_file, check_paths=False).output_dir
    dev = resolve_device(device, "--device")
    if ensemble is None:
        doc, _ = read_ensemble_config(run)  # fails first, before any model is loaded
        ensemble = load_ensemble(run, dev)
    else:
        doc = getattr(ensemble, "config", None) or {}
        ensemble = ensemble.to(dev).eval()
    if ensemble.threshold is None:
        raise InterceptorError("the ensemble has no threshold; load it with load_ensemble from an ensemble config")
    if preprocess is None:
        preprocess, source = resolve_preprocess(run, profile, params_file, doc)
    else:
        source = "given"
    if frames is not None:
        if frames < 1:
            raise InterceptorError(f"--frames must be at least 1, got {frames}")
        preprocess = dataclasses.replace(preprocess, frames_per_video=int(frames))
    explain_dir = Path(explain_dir) if explain_dir else None
    if explain_dir is not None and explain_dir.exists() and not explain_dir.is_dir():
        raise InterceptorError(f"--explain expects a folder for the Grad-CAM images; {explain_dir} is a file")
    used_names: set = set()
    inputs = collect_inputs(paths)
    results = []
    with tempfile.TemporaryDirectory(prefix="interceptor-predict-") as tmp:
        for i, (path, error) in enumerate(inputs, 1):
            t0 = time.perf_counter()
            res: dict = {**dict.fromkeys(RESULT_KEYS), "path": str(path), "ok": False, "error": error}
            if error is None:
                try:
                    prep = prepare_input(path, preprocess, Path(tmp), precropped)
                    scored = score_prepared(ensemble, prep, preprocess, dev, batch_size)
                    res.update(kind=prep.kind, ok=True, **scored,
                               label="fake" if scored["prob"] >= ensemble.threshold else "real",
                               threshold=float(ensemble.threshold), faces_found=prep.faces_found,
                               frames_probed=prep.frames_probed, frames_sampled=int(len(prep.frames)),
                               clips=int(len(prep.clips)), has_audio=prep.audio is not None,
                               preprocess_source=source)
                except INPUT_ERRORS as e:
                    res.update(ok=False, error=_message(path, e))
                if res["ok"] and explain_dir is not None:
                    try:
                        png = explain_dir / _explain_name(path, used_names)
                        res["explain"] = str(explain_input(ensemble, prep, preprocess, scored, dev, png,
                                                           members=explain_members, title=str(path)))
                    except INPUT_ERRORS as e:  # the score stands; only the picture is missing
                        res["explain_error"] = _message(path, e)
            res["seconds"] = round(time.perf_counter() - t0, 3)
            if res["ok"]:
                log(f"[{i}/{len(inputs)}] {path}: P(fake) {res['prob']:.3f} -> {res['label']} ({res['seconds']:.1f} s)")
            else:
                log(f"[{i}/{len(inputs)}] {path}: not scored")
            results.append(res)
    return results


def _message(path: Path, e: Exception) -> str:
    """One line naming the input."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if str(path) in text else f"{path}: {text}"


def format_table(results: list[dict]) -> str:
    """The readable report of `predict_paths` results: one row per scored input (faces = found / probed
    frames, then each member's P(fake)), skipped-member notes and Grad-CAM files. Errors are not in it."""
    ok = [r for r in results if r["ok"]]
    lines = []
    if ok:
        members = list(dict.fromkeys(n for r in ok for n in (*r["members"], *r["skipped"])))
        head = f"{'input':32s} {'P(fake)':>7s} {'label':>5s} {'thr':>5s} {'+/-':>5s} {'faces':>7s} {'frames':>6s} " \
               f"{'clips':>5s} {'s':>6s}  " + " ".join(f"{n:>5s}" for n in members)
        lines.append(head)
        for r in ok:
            name = r["path"] if len(r["path"]) <= 32 else "..." + r["path"][-29:]
            cells = " ".join(f"{r['members'][n]:5.2f}" if n in r["members"] else f"{'-':>5s}" for n in members)
            lines.append(f"{name:32s} {r['prob']:7.3f} {r['label']:>5s} {r['threshold']:5.2f} {r['uncertainty']:5.2f} "
                         f"{r['faces_found']:>3d}/{r['frames_probed']:<3d} {r['frames_sampled']:6d} {r['clips']:5d} "
                         f"{r['seconds']:6.1f}  {cells}")
        notes = sorted({f"{n}: {why}" for r in ok for n, why in r["skipped"].items()})
        lines += [f"skipped {n}" for n in notes]
        lines += [f"Grad-CAM: {r['explain']}" for r in ok if r.get("explain")]
    return "\n".join(lines)
