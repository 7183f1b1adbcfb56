"""The ensemble on disk: the config JSON (`save_ensemble_config`, `read_ensemble_config`,
`ensemble_path`), the members' checkpoints (`find_member_checkpoints`: the best of each model's last
finished stage; `load_member`: a model rebuilt from one), and `load_ensemble`, the Ensemble a config
describes (the `predict` command uses it).

The config lives in `<output_dir>/ensemble/ensemble.json`: each member's checkpoint (relative to the
JSON's folder when possible, so an output folder can be moved), its weight and input kind, the
threshold, temperature and combination fitted on validation (`ensemble/fit.py`), the weight set for
inputs with audio, and the run's preprocessing, so that `predict` crops faces as training did.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import torch

from interceptor_lib import __version__
from interceptor_lib.config.schema import STAGE_NAMES
from interceptor_lib.ensemble.combine import COMBINATIONS, Ensemble, EnsembleError, check_vote_tau, normalise_weights
from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import RunPaths, resolve_stored_path
from interceptor_lib.models import create_model, model_entry
from interceptor_lib.models.base import DetectorBase
from interceptor_lib.training.checkpoint import INDEX, load_checkpoint

ENSEMBLE_FORMAT = 1
ENSEMBLE_DIR = "ensemble"
ENSEMBLE_FILE = "ensemble.json"
EVALUATION_NOTEBOOK = "06_evaluation"


def ensemble_path(output_dir: str | Path) -> Path:
    """Where the ensemble config lives by convention: `<output_dir>/ensemble/ensemble.json`."""
    return Path(output_dir) / ENSEMBLE_DIR / ENSEMBLE_FILE


def _plain(obj):
    if is_dataclass(obj):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_ensemble_config(path: str | Path, members: dict[str, str | Path], weights: dict[str, float] | None,
                         threshold: float, temperature: float | None = None, metadata: dict | None = None,
                         preprocess=None, combination: str = "prob", audio: dict | None = None,
                         vote_tau: float | None = None) -> Path:
    """Write the ensemble config JSON (atomically) and return its path.

    `path`: the JSON file, or an output dir (then `<path>/ensemble/ensemble.json`). `members`: name ->
    checkpoint folder (the best of its last stage, see `find_member_checkpoints`). Paths are stored
    relative to the JSON's folder when possible, so a whole output folder can be moved or downloaded.
    `weights` (None = equal) and `threshold` (on the reported, temperature-scaled prob) come from
    validation (`fit_ensemble`). `preprocess`: the PreprocessParams of the run (pass
    `params.preprocess`), so that `predict` crops faces exactly as training did without the params
    file. `metadata`: anything else worth keeping (profile, validation metrics, ...). `audio`: the
    weight set for inputs with audio, {"weights", "temperature"} (`fit_ensemble(...)["audio"]`), or
    None for one set. `vote_tau`: the soft OR's temperature of the "logit" combination (None: the
    weighted mean of the votes; `combine.soft_or_vote`).
    """
    path = Path(path)
    if path.suffix != ".json":
        path = ensemble_path(path)
    if not members:
        raise EnsembleError("save_ensemble_config needs at least one member")
    names = list(members)
    w = normalise_weights(weights, names)
    if not 0 <= float(threshold) <= 1:
        raise EnsembleError(f"threshold must be a probability in [0, 1], got {threshold}")
    if temperature is not None and not (np.isfinite(temperature) and temperature > 0):
        raise EnsembleError(f"temperature must be a positive number or None, got {temperature}")
    if combination not in COMBINATIONS:
        raise EnsembleError(f"unknown combination {combination!r}; expected one of {COMBINATIONS}")
    check_vote_tau(vote_tau, combination)
    if audio is not None:
        a_temp = audio.get("temperature")
        if a_temp is not None and not (np.isfinite(a_temp) and a_temp > 0):
            raise EnsembleError(f"audio temperature must be a positive number or None, got {a_temp}")
        audio = {"weights": normalise_weights(audio.get("weights"), names),
                 "temperature": None if a_temp is None else float(a_temp)}
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, ckpt in members.items():
        ckpt = Path(ckpt)
        try:
            stored = os.path.relpath(ckpt.resolve(), path.parent.resolve())
        except ValueError:  # another drive (Windows)
            stored = str(ckpt.resolve())
        try:
            kind = model_entry(name).input_kind
        except InterceptorError:
            kind = None
        entries[name] = {"checkpoint": stored, "weight": w[name], "input_kind": kind}
    doc = {"format": ENSEMBLE_FORMAT, "library_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "members": entries, "threshold": float(threshold),
           "temperature": None if temperature is None else float(temperature),
           "combination": combination,  # members -> ensemble: see COMBINATIONS
           "vote_tau": None if vote_tau is None else float(vote_tau),  # null: the weighted mean of the votes
           "audio": audio,  # the weight set and temperature for inputs with audio; null: `members` serve all
           "aggregation": "mean",  # frames / clips -> video by the mean of each member's P(fake)
           "preprocess": _plain(preprocess) if preprocess is not None else None,
           "metadata": _plain(metadata or {})}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
    return path


def read_ensemble_config(run_dir_or_json: str | Path) -> tuple[dict, Path]:
    """The ensemble config dict and its path, from the JSON file or an output dir holding
    `ensemble/ensemble.json`. Raises EnsembleError (naming the notebook to run) when it is absent."""
    p = Path(run_dir_or_json)
    path = p if p.suffix == ".json" else ensemble_path(p)
    if not path.is_file():
        where = f"{p} is not a folder" if p.suffix != ".json" and not p.is_dir() else f"{path} does not exist"
        raise EnsembleError(
            f"no ensemble config: {where}. The ensemble's weights and threshold are fitted on validation by "
            f"notebook {EVALUATION_NOTEBOOK} (it writes <output_dir>/{ENSEMBLE_DIR}/{ENSEMBLE_FILE}); run it for "
            "this profile first, or pass --run the output folder of a run that has it")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EnsembleError(f"{path} is not valid JSON: {e}") from e
    if doc.get("format") != ENSEMBLE_FORMAT or not isinstance(doc.get("members"), dict) or not doc["members"]:
        raise EnsembleError(f"{path} is not an ensemble config (format {ENSEMBLE_FORMAT} with members); "
                            "write it with interceptor_lib.ensemble.store.save_ensemble_config")
    return doc, path


def resolve_checkpoint(stored: str | Path, base: Path) -> Path:
    """A checkpoint path from a config or done.json, resolved against `base` (layout.resolve_stored_path)."""
    return resolve_stored_path(stored, base)


def load_member(checkpoint: str | Path, device: str | torch.device = "cpu") -> DetectorBase:
    """Rebuild a model from a training checkpoint: `create_model(config["model_name"], **config["model"])`
    without ImageNet weights (the checkpoint holds every weight), then its state dict; eval mode.
    A stage's fp16 weights-only export (`best-fp16/`, model name and config in its metadata) works too."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise EnsembleError(f"checkpoint {checkpoint} does not exist")
    state = load_checkpoint(checkpoint, map_location="cpu")
    config = state.get("config") or {}
    name, model_config = config.get("model_name"), config.get("model")
    if not name:  # a weights-only export keeps them in the index's metadata
        meta = json.loads((checkpoint / INDEX).read_text()).get("metadata") or {}
        name, model_config = meta.get("model_name"), meta.get("model_config")
    if "model" not in state or not name:
        raise EnsembleError(f"{checkpoint} is not a training checkpoint: it needs 'model' weights and a 'config' "
                            "with 'model_name' and 'model' (as the trainer saves them)")
    kwargs = dict(model_config or {})
    if "pretrained" in kwargs:  # the checkpoint overwrites every weight: never look for ImageNet files
        kwargs.update(pretrained=False, weights=None)
    model = create_model(name, **kwargs)
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def load_ensemble(run_dir_or_json: str | Path, device: str | torch.device = "cpu",
                  share_trunk: bool = True) -> Ensemble:
    """The ensemble described by an ensemble config (a JSON file, or an output dir holding
    `ensemble/ensemble.json`), each member rebuilt from its checkpoint, in eval mode on `device`.
    The returned Ensemble carries `threshold`, `temperature`, and `config` (the JSON document)
    and `config_path`."""
    doc, path = read_ensemble_config(run_dir_or_json)
    members, weights = {}, {}
    for name, entry in doc["members"].items():
        ckpt = resolve_checkpoint(entry["checkpoint"], path.parent)
        if not ckpt.exists():
            raise EnsembleError(f"{path}: checkpoint of member {name!r} not found at {ckpt}")
        model = load_member(ckpt, device)
        if model.model_name != name:
            raise EnsembleError(f"{path}: member {name!r} points at a checkpoint of model "
                                f"{model.model_name!r} ({ckpt})")
        members[name], weights[name] = model, float(entry.get("weight", 1.0))
    combination = doc.get("combination", "prob")  # configs written before it existed combined probabilities
    if combination not in COMBINATIONS:
        raise EnsembleError(f"{path}: unknown combination {combination!r}; expected one of {COMBINATIONS}")
    audio = doc.get("audio")  # absent in configs written before it existed
    if audio is not None and (not isinstance(audio, dict) or not isinstance(audio.get("weights"), dict)):
        raise EnsembleError(f"{path}: 'audio' must be null or "
                            "{\"weights\": {member: weight}, \"temperature\": ...}")
    try:
        ens = Ensemble(members, weights, share_trunk=share_trunk, temperature=doc.get("temperature"),
                       threshold=float(doc["threshold"]), combination=combination,
                       audio_weights=audio["weights"] if audio else None,
                       audio_temperature=audio.get("temperature") if audio else None,
                       vote_tau=doc.get("vote_tau"))  # absent in configs written before it existed: the mean
    except EnsembleError as e:
        raise EnsembleError(f"{path}: {e}") from e
    ens.config, ens.config_path = doc, path
    return ens.to(device).eval()


def stage_checkpoint(paths: RunPaths, model: str, stage: str) -> Path | None:
    """The best checkpoint of `model`'s finished `stage` (done.json's "best"; its fp16 "export" when
    the full checkpoint no longer exists), or None when the stage has not finished."""
    info, _ = paths.find_done(model, stage)
    if info is None or not info.get("best") or info["best"] == "None":
        return None
    path = Path(info["best"])
    export = (info.get("export") or {}).get("path")
    if not path.exists() and export:  # the full checkpoint was removed; its fp16 export is kept
        path = Path(export)
    return path


def find_member_checkpoints(paths: RunPaths, models: list[str] | None = None,
                            profile: str | None = None) -> dict[str, Path]:
    """Each model's best checkpoint of its LAST finished stage (stage4 > stage3 > stage2 > stage1),
    read from `<output_dir>/runs/<model>/<stage>/done.json` ("best"; its fp16 "export" when the full
    checkpoint no longer exists). `paths`: the run's layout; `RunPaths.of(params)` also looks in
    `train.previous_outputs` (earlier sessions' outputs, paths re-rooted), `RunPaths.at(output_dir)`
    in that folder alone. `models` defaults to every model with a folder under `paths.runs`.
    `profile`: the profile that should have trained them, named in the error. Raises EnsembleError
    naming a model without any finished stage."""
    if models is None:
        runs = paths.runs
        models = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    if not models:
        raise EnsembleError(f"no trained models under {paths.runs}; run the training notebooks "
                            f"({', '.join(STAGE_NAMES.values())}) first")
    found: dict[str, Path] = {}
    for model in models:
        for stage in reversed(list(STAGE_NAMES)):
            path = stage_checkpoint(paths, model, stage)
            if path is not None:
                found[model] = path
                break
        if model not in found:
            which = (f" of profile {profile!r}" if profile else "")
            pick = (" (or choose the profile that trained it: the notebook's `profile` parameter, "
                    "$INTERCEPTOR_PROFILE, or ./run_all.sh <profile>)" if profile else "")
            raise EnsembleError(f"model {model!r}{which} has no finished training stage (no done.json with a best "
                                f"checkpoint under {' or '.join(str(RunPaths.at(r).runs / model) for r in paths.roots)}); "
                                f"run notebook {STAGE_NAMES['stage1']} for it first{pick}")
    return found
