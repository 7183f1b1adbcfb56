"""Score videos and images with a trained ensemble (`python -m interceptor_lib predict`, or a notebook).

    results = predict_paths(["clip.mp4", "photos/"], run="outputs/kaggle")
    results[0]["prob"], results[0]["label"], results[0]["members"]

The steps, one file each: `inputs` (which files), `preprocess` (the training preprocessing settings,
and the face crops of one input), `score` (the ensemble's P(fake) of one input), `explain` (its
Grad-CAM figure). This file runs them over every input; the label is taken at the ensemble's
validation threshold.

Decisions:
  * No ensemble config (`<run>/ensemble/ensemble.json`): an error naming notebook 06_evaluation.
    Without fitted weights and a validation threshold a label would be a guess at 0.5 on
    uncalibrated scores, so no silent fallback.
  * Bad inputs (missing path, not a video or image, empty or corrupt file, no face) give a result
    with `ok=False` and a one-line `error`; the other inputs are still scored.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Callable

import av
import cv2

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.ensemble.combine import Ensemble
from interceptor_lib.ensemble.store import load_ensemble, read_ensemble_config
from interceptor_lib.errors import InterceptorError
from interceptor_lib.inference.explain import explain_file_name, explain_input
from interceptor_lib.inference.inputs import collect_inputs
from interceptor_lib.inference.preprocess import prepare_input, resolve_preprocess
from interceptor_lib.inference.score import score_prepared
from interceptor_lib.params import load_params
from interceptor_lib.training.device import resolve_device

#: Keys of every result dict (None where they do not apply, e.g. for an input that failed).
RESULT_KEYS = ("path", "kind", "ok", "error", "prob", "prob_uncalibrated", "label", "threshold", "uncertainty",
               "members", "weights", "skipped", "faces_found", "frames_probed", "frames_sampled", "clips",
               "has_audio", "preprocess_source", "explain", "explain_error", "seconds")
#: What makes one input fail without stopping the others (a bug elsewhere keeps its traceback).
INPUT_ERRORS = (InterceptorError, OSError, av.FFmpegError, cv2.error)


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
                        png = explain_dir / explain_file_name(path, used_names)
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
