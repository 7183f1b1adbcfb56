"""Params files (`params/<profile>.yaml`): typed sections, validated before any work starts.

A profile may start with `extends: <other profile>` and override only what differs (smoke extends
demo, colab extends kaggle) instead of copying whole files. Strings may use `{repo}`, `{profile}`,
`{output_dir}` and `{demo_data}`. Loading fails with a `ParamsError` naming the key for an unknown
key (with the closest valid name), a wrong type, or a dataset root that does not exist.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from interceptor_lib import REPO_ROOT
from interceptor_lib.data.cache import PreprocessParams
from interceptor_lib.data.crops_file import IMAGE_FORMATS
from interceptor_lib.errors import InterceptorError, ParamsError
from interceptor_lib.paths import DONE_FILE, RunPaths

PARAMS_DIR = REPO_ROOT / "params"
PROFILE_ENV = "INTERCEPTOR_PROFILE"
#: Notebook of each progressive-training stage, in chain order.
STAGE_NAMES = {"stage1": "02_stage1_faceforensics", "stage2": "03_stage2_celebdf",
               "stage3": "04_stage3_wilddeepfake", "stage4": "05_stage4_dfdc"}  # lets nbval run the notebooks on the smoke profile


def done_record(params, model: str, stage: str, part: str = "") -> dict | None:
    """The done.json of a finished stage (or DFDC chunk `part`) of `model`, from this run's outputs
    or else from train.previous_outputs (earlier sessions', attached read-only), its checkpoint
    paths re-rooted to where they are now; None if none has it."""
    return RunPaths.of(params).find_done(model, stage, part)[0]


#: train.* settings that do not change what a stage learns (where files are, how fast, what is kept);
#: every other train.* setting, the stage's own, the seed and the crop settings are recorded in done.json
RUN_ONLY_TRAIN_KEYS = ("models", "weights", "num_workers", "time_budget_h", "storage_budget_gb",
                       "checkpoint_chunk_mb", "keep_last", "previous_outputs", "parallel_models", "models_per_notebook",
                       "stages")


def stage_settings(params, stage: str) -> dict:
    """What the result of `stage` depends on, as done.json records it ("settings"): {params key:
    value} over seed, train.* (less RUN_ONLY_TRAIN_KEYS and file locations), train.stages.<stage>.*
    and the preprocess keys that change the stored crops."""
    train = {k: v for k, v in dataclasses.asdict(params.train).items() if k not in RUN_ONLY_TRAIN_KEYS}
    train["pretext"].pop("out")
    flat = {"seed": params.seed}
    for key, value in train.items():
        if key in ("augment", "pretext"):
            flat.update({f"train.{key}.{k}": v for k, v in value.items()})
        else:
            flat[f"train.{key}"] = value
    if stage in params.train.stages:
        flat.update({f"train.stages.{stage}.{k}": v for k, v in dataclasses.asdict(params.train.stages[stage]).items()})
    flat.update({f"preprocess.{k}": getattr(params.preprocess, k) for k in PreprocessParams.KEY_FIELDS
                 if k != "detector_model"})  # a path; the detector itself is preprocess.detector
    return json.loads(json.dumps(flat))  # as done.json holds it (tuples as lists, keys as strings)


def _recorded_settings(done: dict, stage: str) -> dict:
    if "settings" in done:
        return done["settings"]
    # done.json written before 2026-12-02 recorded train.stages.<stage> alone
    return {f"train.stages.{stage}.{k}": v for k, v in (done.get("stage_params") or {}).items()}


def changed_stage_settings(params, model: str, stage: str, done: dict | None = None) -> dict[str, tuple]:
    """The settings (stage_settings) that a finished stage of `model` was trained with and that differ
    from `params` now, as {params key: (recorded, now)}; {} when the stage has not finished. Only keys
    its done.json records are compared (one written before a key was recorded is not flagged for it).
    `done`: that done.json (or a DFDC chunk's) when the caller has read it already."""
    done = done_record(params, model, stage) if done is None else done
    recorded = _recorded_settings(done or {}, stage)
    if not recorded:
        return {}
    now = stage_settings(params, stage)
    return {k: (recorded[k], now[k]) for k in sorted(recorded.keys() & now.keys()) if recorded[k] != now[k]}


def changed_part_settings(params, model: str, stage: str) -> dict[str, dict[str, tuple]]:
    """For a stage still in progress: its finished parts (DFDC chunks, runs/<model>/<stage>/<part>/
    done.json in this run's outputs or an attached earlier session's) trained with other settings than
    `params`, as {"runs/<model>/<stage>/<part>": changed settings}. A resumed stage skips finished
    parts, so they must match too."""
    paths, out = RunPaths.of(params), {}
    for root in reversed(paths.roots):  # this run's own record of a part wins
        for done in sorted(paths.run_dir(model, stage, root=root).glob(f"*/{DONE_FILE}")):
            changed = changed_stage_settings(params, model, stage, json.loads(done.read_text()))
            key = f"runs/{model}/{stage}/{done.parent.name}"
            out.pop(key, None)
            if changed:
                out[key] = changed
    return out


def stale_stage(params, model: str, stage: str, done: dict | None) -> dict[str, dict[str, tuple]]:
    """{"runs/<model>/<stage>[/<part>]": changed settings} for the stage when it finished (`done`, its
    done.json) with other settings than `params` give now, else for its finished parts."""
    if done is None:
        return changed_part_settings(params, model, stage)
    changed = changed_stage_settings(params, model, stage, done)
    return {f"runs/{model}/{stage}": changed} if changed else {}


def stale_runs(params) -> dict[str, dict[str, tuple]]:
    """stale_stage over every model x stage of params."""
    return {run: changed for model in params.train.models for stage in params.train.stages
            for run, changed in stale_stage(params, model, stage, done_record(params, model, stage)).items()}


def stale_stages_message(params, changed: dict[str, dict] | None = None) -> str | None:
    """A message naming every finished stage (or DFDC chunk) trained with other settings than `params`
    give now, and what to do; None when there is none. `changed`: {"runs/<model>/<stage>[/<part>]":
    changed settings} (default: stale_runs). A re-run skips finished work, so without this its results
    would pass for the new settings'."""
    changed = {k: d for k, d in (stale_runs(params) if changed is None else changed).items() if d}
    if not changed:
        return None
    lines = [f"  {run}: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in d.items()) for run, d in changed.items()]
    order = list(params.train.stages)
    first = min((run.split("/")[2] for run in changed), key=lambda s: order.index(s) if s in order else len(order))
    return ("finished stages were trained with other settings than params/" + f"{params.profile}.yaml gives now "
            "(recorded -> now):\n" + "\n".join(lines) + "\n"
            f"A re-run would skip them and report their results as these settings'. To train them again, delete "
            f"those stage folders and the later stages of the same models under {params.output_dir}/runs/ "
            f"(e.g. rm -r {params.output_dir}/runs/*/{first} and the stages after it); or set the params back.")


def start_order(models: list[str], parallel: int = 1) -> list[str]:
    """The order in which ./run_all.sh starts the models' notebooks of a stage. With `parallel` > 1
    (several notebooks at once on a CPU) the clip models start first: they read T frames per item and
    take the longest, and started last one of them ran alone on one core for minutes at the end of
    each stage (longest first). Sequentially, `models` as given. Each stage's result does not depend on
    the order (every model draws its randomness from params.seed)."""
    models = list(models)
    if parallel <= 1:
        return models
    from interceptor_lib.models import model_entry  # the registry: seconds to import, so only here

    def is_clip(name: str) -> bool:
        try:
            return model_entry(name).input_kind == "clip"
        except InterceptorError:  # not a registered model: keeps its place
            return False

    return [m for m in models if is_clip(m)] + [m for m in models if not is_clip(m)]


@dataclass
class DemoDataParams:
    """The synthetic corpus (`python -m interceptor_lib make-demo-data`)."""

    generate: bool = False           # make the corpus before indexing (demo / smoke profiles)
    out: str = "{output_dir}/demo_data"
    scale: str = "small"             # tiny (tests) | small (demo, < 1 min) | medium
    seed: int = 0
    artifact_strength: float = 1.0   # 1.0 = the default difficulty; 0 = fakes without artifacts


@dataclass
class DatasetParams:
    """Where one dataset lives and the options its indexer takes (see `interceptor_lib.data.indexers`)."""

    root: str
    enabled: bool = True
    options: dict[str, typing.Any] = field(default_factory=dict)


@dataclass
class InspectionParams:
    """Notebook 01."""

    seed_chunk_order: list[int] = field(default_factory=lambda: [9, 8, 3, 5, 7, 2, 6, 4, 1, 0])  # the seeds' order
    grid_faces: int = 16             # faces per sample grid
    stats_sample: int = 0            # videos per dataset for the per-video statistics (0 = all)


@dataclass
class StageParams:
    """One progressive-training stage (the `train.stages.<name>` entries)."""

    dataset: str                     # ffpp | celebdf | wilddeepfake | dfdc
    epochs: int = 1                  # for dfdc: epochs per chunk
    lr: float = 1e-4                 # new layers; pretrained layers get lr * train.pretrained_lr_ratio
    loss: str = "ce"                 # ce | weighted_ce | focal
    # Draw real and fake videos equally often (default). The class weights of weighted_ce and focal
    # follow the draws: 1 : 1 on balanced draws, inverse class frequency with balanced: false (natural
    # draws, the imbalance countered by the loss alone). Replay needs balanced draws.
    balanced: bool = True
    chunk_order: list[int] | None = None  # dfdc: chunks in training order (None: most to least balanced)
    samples_per_epoch: int | None = None  # this stage's balanced draws per epoch (None: train.samples_per_epoch)
    # Share of each epoch's draws taken from the training videos of the earlier stages (and of the
    # DFDC chunks already trained), balanced real / fake; 0 = fine-tune on this stage's data alone.
    # Rehearsal against forgetting: without it, each stage overwrites what the earlier ones learned.
    replay: float = 0.0


@dataclass
class AugmentParams:
    """Training augmentation (data.datasets.build_transform): probabilities per item. The defaults
    are the usual robustness augmentations for real footage; they re-compress, blur and downscale
    faces, so they also wash out compression / resolution artifacts of the same size."""

    p_jpeg: float = 0.3
    jpeg_quality: list[int] = field(default_factory=lambda: [60, 95])
    p_blur: float = 0.2
    p_downscale: float = 0.3
    p_color: float = 0.5


@dataclass
class PretextParams:
    """`train.pretext` (training.pretext): a backbone pretrained on a degradation pretext with the real
    training faces, for profiles without ImageNet weights. 0 steps = off."""

    steps: int = 0                  # optimizer steps; > 0: every model starts from this backbone (train.weights)
    batch_size: int = 32
    lr: float = 3.0e-3              # peak of a one-cycle schedule (AdamW, weight decay 1e-4)
    local: float = 0.5              # share of degraded crops where only a soft ellipse over the face changes
    out: str = "{output_dir}/pretext/backbone.safetensors"


@dataclass
class TrainParams:
    """Progressive training (notebooks 02-05), shared by every model and stage."""

    models: list[str] = field(default_factory=lambda: ["ll", "bg", "av", "cm", "rr", "tm"])
    backbone: str = "efficientnet_b4"   # timm name; the demo uses the tiny test_efficientnet
    pretrained: bool = True             # ImageNet weights from `weights` or the local cache, never downloaded
    weights: str | None = None          # local backbone weight file
    trainable_stages: int | None = 2    # backbone stages fine-tuned (seed 000); null = the whole backbone
    # Progressive unfreezing, per stage run: {first epoch (0-based): trainable backbone stages, null = all},
    # e.g. {0: 0, 2: 1, 4: 2} (new layers only, then + the last stage, then + the last two). null: off
    # (trainable_stages throughout). Epochs count from 0 in every stage (and every DFDC chunk).
    unfreeze_schedule: dict[int, int | None] | None = None
    batch_size: int = 16
    num_workers: int = 0
    grad_accum: int = 1
    grad_clip: float = 1.0
    warmup_frac: float = 0.1
    pretrained_lr_ratio: float = 0.1    # pretrained layers at lr x ratio (differential learning rates)
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    # Balanced draws per epoch; 0 = items_per_video x the stage's (DFDC chunk's) training videos.
    samples_per_epoch: int = 0
    # Draws per training video and epoch when samples_per_epoch is 0: a frame (image models) or a clip
    # (clip models), a fresh random one each epoch. Consecutive frames of one video are near-duplicates,
    # so an epoch of every cached frame (32 per video) costs 32x for little more; over the epochs the
    # draws still cover a video's frames.
    items_per_video: int = 1
    # Items scored per validation video after each epoch (evenly spaced frames, or clips); 0 = every
    # cached one. Selection stays on validation videos; this bounds its cost (DFDC: ~2,400 videos).
    val_items_per_video: int = 0
    amp: str = "auto"                   # auto | off | fp16 | bf16 (CUDA only)
    time_budget_h: float | None = None  # stop (resumably) before the session ends (Kaggle: 11.5 of 12 h)
    storage_budget_gb: float | None = None  # checkpoints + outputs under output_dir (Kaggle: 20)
    checkpoint_chunk_mb: float = 100
    keep_last: int = 2
    # Earlier sessions' output folders, attached read-only (Kaggle: /kaggle/input/<name>/...), newest
    # first: finished stages, interrupted stages' checkpoints and caches are found there; a single
    # folder may be given as a string. Nothing is ever written inside them.
    previous_outputs: list[str] | None = None
    # Which validation videos choose each stage's best checkpoint: "stage" = the stage's own dataset;
    # "seen" = every dataset trained so far (this stage's and the earlier stages'), so a checkpoint
    # that forgot the earlier datasets is not picked. Test videos are never used.
    select_on: str = "stage"
    augment: AugmentParams = field(default_factory=lambda: AugmentParams())
    # ./run_all.sh runs the stage notebooks of this many models at once, sharing the CPU cores out
    # between them (the demo's tiny models on a 2-core CPU); 1 on a GPU, where one model fills it.
    parallel_models: int = 1
    # ./run_all.sh runs a stage notebook for this many models one after another in one kernel: each
    # kernel's start and imports cost seconds, which add up over 6 models x 4 stages on a small CPU
    models_per_notebook: int = 1
    # Options of every trained model's config (models.create_model), e.g. {hidden: [64], dropout: [0.3]}
    # for a head sized to a tiny backbone; {} = the registry's defaults (the seeds' 1024-512-256 head).
    model_config: dict = field(default_factory=dict)
    pretext: PretextParams = field(default_factory=lambda: PretextParams())
    stages: dict[str, StageParams] = field(default_factory=dict)


@dataclass
class PlanParams:
    """`python -m interceptor_lib plan` (interceptor_lib.plan): throughput and size figures for planning
    the real-data chain before any work. A figure measured by a run (interceptor_lib.throughput, in
    output_dir or train.previous_outputs) replaces the one given here."""

    cpu_cores: int = 4               # Kaggle's 4 vCPUs: preprocessing runs at most this many workers at once
    # Per dataset [original, fake]: CPU-seconds to preprocess one video. Fakes reuse their original's
    # face boxes, so they only decode; WildDeepfake is PNG face sequences, no detection.
    cpu_s_per_video: dict[str, list[float]] = field(default_factory=lambda: {
        "ffpp": [1.0, 0.4], "celebdf": [0.6, 0.3], "wilddeepfake": [0.5, 0.5], "dfdc": [1.4, 0.8]})
    # MB of cache per video at 224 px JPEG q95 with 32 frames + 4 clips x 8 (scaled for other settings)
    cache_mb_per_video: dict[str, float] = field(default_factory=lambda: {
        "ffpp": 1.0, "celebdf": 0.8, "wilddeepfake": 0.6, "dfdc": 1.0})
    train_images_per_s: float = 120.0  # per GPU at 224 px, AMP, T4, EfficientNet-B4 fwd+bwd (50-70 at 380 px)
    eval_images_per_s: float = 360.0   # per GPU, forward only: about 3x training
    gpus: int = 2                    # Kaggle's T4 x2, trained with DDP
    ddp_efficiency: float = 0.9      # share of N x one GPU's throughput that DDP over N GPUs keeps
    session_overhead_h: float = 0.25  # per GPU session: install, attach inputs, load models
    weekly_gpu_quota_h: float = 30.0  # Kaggle's weekly GPU quota (it floats around 30 h)
    # fp32 weights in MB per model at efficientnet_b4 (python -m interceptor_lib.models.size_report)
    model_mb: dict[str, float] = field(default_factory=lambda: {
        "ll": 98.5, "bg": 93.6, "av": 94.6, "cm": 92.8, "rr": 92.0, "tm": 95.2,
        "effnet_b4": 74.6, "xception": 83.5, "dual_stream_v3": 14.3})


@dataclass
class Params:
    profile: str
    description: str = ""
    seed: int = 0
    device: str = "auto"             # auto | cpu | cuda
    output_dir: str = "{repo}/outputs/{profile}"
    demo_data: DemoDataParams = field(default_factory=DemoDataParams)
    datasets: dict[str, DatasetParams] = field(default_factory=dict)
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    inspection: InspectionParams = field(default_factory=InspectionParams)
    train: TrainParams = field(default_factory=TrainParams)
    plan: PlanParams = field(default_factory=PlanParams)

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    def enabled_datasets(self) -> dict[str, DatasetParams]:
        return {k: v for k, v in self.datasets.items() if v.enabled}


def load_params(profile: str | None = None, path: str | Path | None = None, overrides: dict | None = None,
                check_paths: bool = True) -> Params:
    """Load a profile by name (from params/) or a file by path, apply dotted `overrides`
    ({"preprocess.frames_per_video": 8}), resolve placeholders, validate. With neither name nor path,
    the profile comes from $INTERCEPTOR_PROFILE, else 'demo'."""
    if path is None:
        profile = profile or os.environ.get(PROFILE_ENV) or "demo"
        path = PARAMS_DIR / f"{profile}.yaml"
    raw = _read_with_extends(Path(path), seen=())
    raw.setdefault("profile", Path(path).stem)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, last = dotted.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    prev = (raw.get("train") or {}).get("previous_outputs") if isinstance(raw.get("train"), dict) else None
    if isinstance(prev, str):  # one attached folder may be given as a string
        raw["train"]["previous_outputs"] = [prev]
    params = _build(Params, raw, "")
    _resolve(params)
    _check(params, check_paths)
    return params


def _read_with_extends(path: Path, seen: tuple) -> dict:
    """The mapping of params file `path` merged over the file it `extends` (recursively). `extends:
    <name>` is looked up beside `path` first, then in params/ (so a params file anywhere can extend a
    profile); the asking file itself is skipped, so `my/kaggle.yaml` may extend the kaggle profile.
    `seen`: the resolved files asking so far (a cycle is an error)."""
    if not path.is_file():
        avail = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise ParamsError(f"params file {path} not found; profiles in {PARAMS_DIR}: {avail}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ParamsError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ParamsError(f"{path}: 'extends' must name a profile (e.g. extends: kaggle), got {base!r}")
    here = path.resolve()
    fname = base if base.endswith((".yaml", ".yml")) else f"{base}.yaml"
    places = list(dict.fromkeys(d / fname for d in (path.parent, PARAMS_DIR)))
    found = next((c for c in places if c.is_file() and c.resolve() != here), None)
    if found is None:
        avail = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        looked = ", ".join(str(c) for c in places)
        raise ParamsError(f"{path}: 'extends: {base}' names no params file; looked for {looked}; "
                          f"profiles in {PARAMS_DIR}: {avail}")
    if found.resolve() in seen + (here,):
        raise ParamsError(f"{path}: 'extends' cycle through {base!r} ({found})")
    parent = _read_with_extends(found, seen + (here,))
    parent.pop("profile", None)
    return _merge(parent, data)


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _build(cls, data, where: str):
    """Instantiate dataclass `cls` from a mapping, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise ParamsError(f"{where or 'params'}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {sorted(fields)}"
            raise ParamsError(f"unknown params key {name!r}{hint}")
        kwargs[key] = _coerce(hints[key], value, name)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ParamsError(f"missing params key {(where + '.' if where else '') + missing[0]!r}")
    return cls(**kwargs)


def _coerce(tp, value, name):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, name)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, name)
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"params key {name!r} must be a mapping, got {value!r}")
        return {k: _coerce(args[1], v, f"{name}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"params key {name!r} must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ParamsError(f"params key {name!r} must be {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _resolve(p: Params) -> None:
    ctx = {"repo": str(REPO_ROOT), "profile": p.profile}
    p.output_dir = p.output_dir.format(**ctx)
    ctx["output_dir"] = p.output_dir
    p.demo_data.out = p.demo_data.out.format(**ctx)
    ctx["demo_data"] = p.demo_data.out
    p.preprocess.cache_dir = p.preprocess.cache_dir.format(**ctx)
    p.train.pretext.out = p.train.pretext.out.format(**ctx)
    if p.train.previous_outputs:
        p.train.previous_outputs = [d.format(**ctx) for d in p.train.previous_outputs]
        p.train.pretext.out = _attached_copy(p.train.pretext.out, p.output_dir, p.train.previous_outputs)
    if p.train.pretext.steps > 0 and p.train.weights is None:
        p.train.weights = p.train.pretext.out  # made by notebook 00 (training.pretext), before any stage
    if p.train.weights:
        p.train.weights = p.train.weights.format(**ctx)
    for d in p.datasets.values():
        d.root = d.root.format(**ctx)
        d.options = {k: v.format(**ctx) if isinstance(v, str) else v for k, v in d.options.items()}


def _attached_copy(path: str, output_dir: str, previous: list[str]) -> str:
    """`path` (a file under output_dir) or, when this run has not made it, the same file in the first
    attached earlier output that has it (e.g. the pretext backbone a first session trained)."""
    p, out = Path(path), Path(output_dir)
    if p.is_file() or not p.is_relative_to(out):
        return path
    rel = p.relative_to(out)
    return next((str(Path(d) / rel) for d in previous if (Path(d) / rel).is_file()), path)


# Value ranges: (dotted key, lowest, highest, whether the lowest / highest is allowed); None = unbounded.
_RANGES = [
    ("preprocess.frames_per_video", 1, None), ("preprocess.clips_per_video", 0, None),
    ("preprocess.clip_len", 1, None), ("preprocess.face_size", 16, None), ("preprocess.margin", 1.0, None),
    ("preprocess.detect_max_side", 64, None), ("preprocess.min_face_rate", 0, 1),
    ("preprocess.audio_sample_rate", 1000, None), ("preprocess.audio_window_s", 0, None, False),
    ("preprocess.jpeg_quality", 1, 100), ("preprocess.workers", 1, None), ("preprocess.max_failure_rate", 0, 1),
    ("demo_data.artifact_strength", 0, None), ("inspection.grid_faces", 1, None), ("inspection.stats_sample", 0, None),
    ("train.batch_size", 1, None), ("train.num_workers", 0, None), ("train.grad_accum", 1, None),
    ("train.grad_clip", 0, None), ("train.warmup_frac", 0, 1, True, False), ("train.pretrained_lr_ratio", 0, None),
    ("train.label_smoothing", 0, 1, True, False), ("train.focal_gamma", 0, None), ("train.samples_per_epoch", 0, None),
    ("train.time_budget_h", 0, None, False), ("train.storage_budget_gb", 0, None, False),
    ("train.checkpoint_chunk_mb", 0, None, False), ("train.keep_last", 1, None),
]


def _check_ranges(p: Params) -> None:
    """Numbers outside what they can mean (a batch of -3, no frames per video, a share of 1.5) stop
    here, naming the key, instead of failing deep inside a run or, worse, running."""
    def get(key):
        v = p
        for part in key.split("."):
            v = v[part] if isinstance(v, dict) else getattr(v, part)
        return v

    checks = list(_RANGES)
    for name, st in p.train.stages.items():
        checks += [(f"train.stages.{name}.epochs", 0, None), (f"train.stages.{name}.lr", 0, None, False),
                   (f"train.stages.{name}.samples_per_epoch", 0, None)]
    for key, lo, hi, *incl in checks:
        lo_ok, hi_ok = (list(incl) + [True, True])[:2]
        v = get(key)
        if v is None:
            continue
        bad = (lo is not None and (v < lo if lo_ok else v <= lo)) or (hi is not None and (v > hi if hi_ok else v >= hi))
        if bad:
            lo_s = "" if lo is None else f"{'>=' if lo_ok else '>'} {lo}"
            hi_s = "" if hi is None else f"{'<=' if hi_ok else '<'} {hi}"
            want = " and ".join(x for x in (lo_s, hi_s) if x)
            raise ParamsError(f"params key {key!r} must be {want}, got {v!r}")


def _check(p: Params, check_paths: bool) -> None:
    from interceptor_lib.data.indexers import INDEXERS  # late: indexers are heavier than params

    if p.device not in ("auto", "cpu", "cuda"):
        raise ParamsError(f"params key 'device' must be auto, cpu or cuda, got {p.device!r}")
    if p.demo_data.scale not in ("tiny", "small", "medium"):
        raise ParamsError(f"params key 'demo_data.scale' must be tiny, small or medium, got {p.demo_data.scale!r}")
    if p.preprocess.image_format not in IMAGE_FORMATS:
        raise ParamsError(f"params key 'preprocess.image_format' must be one of {IMAGE_FORMATS}, "
                          f"got {p.preprocess.image_format!r}")
    _check_ranges(p)
    if p.preprocess.boxes not in ("track", "detect"):
        raise ParamsError(f"params key 'preprocess.boxes' must be track or detect, got {p.preprocess.boxes!r}")
    if p.preprocess.full_detect_every < 1:
        raise ParamsError(f"params key 'preprocess.full_detect_every' must be >= 1, got {p.preprocess.full_detect_every!r}")
    if p.preprocess.detector not in ("haar", "yunet", "mtcnn", "mediapipe"):
        raise ParamsError(f"params key 'preprocess.detector' must be haar, yunet, mtcnn or mediapipe, "
                          f"got {p.preprocess.detector!r}")
    if p.preprocess.detector in ("mtcnn", "mediapipe"):  # optional packages: say how to install them
        from interceptor_lib.data.faces import optional_detector_missing

        missing = optional_detector_missing(p.preprocess.detector)
        if missing:
            raise ParamsError(f"params key 'preprocess.detector': {missing}")
    if p.preprocess.detector == "yunet" and not (p.preprocess.detector_model and Path(p.preprocess.detector_model).is_file()):
        raise ParamsError(f"params key 'preprocess.detector_model' must name an existing YuNet ONNX file "
                          f"when detector is yunet, got {p.preprocess.detector_model!r}")
    from interceptor_lib.models import list_models, model_entry

    unknown = [m for m in p.train.models if m not in list_models()]
    if unknown:
        raise ParamsError(f"params key 'train.models': unknown model(s) {unknown}; known: {list_models()}")
    if p.train.unfreeze_schedule is not None:
        p.train.unfreeze_schedule = _unfreeze_schedule(p.train.unfreeze_schedule)
    a = p.train.augment
    for key in ("p_jpeg", "p_blur", "p_downscale", "p_color"):
        if not 0 <= getattr(a, key) <= 1:
            raise ParamsError(f"params key 'train.augment.{key}' is a probability in [0, 1], got {getattr(a, key)!r}")
    if len(a.jpeg_quality) != 2 or not 1 <= a.jpeg_quality[0] <= a.jpeg_quality[1] <= 100:
        raise ParamsError(f"params key 'train.augment.jpeg_quality' is [low, high] with 1 <= low <= high <= 100, "
                          f"got {a.jpeg_quality!r}")
    for name, st in p.train.stages.items():
        if name not in STAGE_NAMES:
            raise ParamsError(f"unknown params key 'train.stages.{name}'; stages are {list(STAGE_NAMES)}")
        if st.dataset not in INDEXERS:
            raise ParamsError(f"params key 'train.stages.{name}.dataset' must be one of {sorted(INDEXERS)}, got {st.dataset!r}")
        if not 0.0 <= st.replay < 1.0:
            raise ParamsError(f"params key 'train.stages.{name}.replay' is a share in [0, 1), got {st.replay!r}")
        if st.replay and not st.balanced:
            raise ParamsError(f"params key 'train.stages.{name}.replay' needs balanced draws; "
                              f"train.stages.{name}.balanced is false")
        if st.loss not in ("ce", "weighted_ce", "focal"):
            raise ParamsError(f"params key 'train.stages.{name}.loss' must be ce, weighted_ce or focal, got {st.loss!r}")
    owned = sorted(set(p.train.model_config) & {"backbone", "pretrained", "weights", "trainable_stages"})
    if owned:
        raise ParamsError(f"params key 'train.model_config' must not set {owned}: use train.{owned[0]}")
    for name in p.train.models:
        try:
            model_entry(name).make_config(**p.train.model_config)
        except Exception as e:  # ModelConfigError or a config's own check (e.g. hidden vs dropout)
            raise ParamsError(f"params key 'train.model_config': {e}") from None
    if p.train.items_per_video < 1:
        raise ParamsError(f"params key 'train.items_per_video' must be >= 1, got {p.train.items_per_video!r}")
    if p.train.val_items_per_video < 0:
        raise ParamsError(f"params key 'train.val_items_per_video' must be >= 0 (0 = every cached item), "
                          f"got {p.train.val_items_per_video!r}")
    if p.train.models_per_notebook < 1:
        raise ParamsError(f"params key 'train.models_per_notebook' must be >= 1, got {p.train.models_per_notebook!r}")
    if p.train.parallel_models < 1:
        raise ParamsError(f"params key 'train.parallel_models' must be >= 1, got {p.train.parallel_models!r}")
    if p.train.select_on not in ("stage", "seen"):
        raise ParamsError(f"params key 'train.select_on' must be stage or seen, got {p.train.select_on!r}")
    pt = p.train.pretext
    if pt.steps < 0 or pt.batch_size < 2 or not 0 <= pt.local <= 1 or pt.lr <= 0:
        raise ParamsError(f"params key 'train.pretext' needs steps >= 0, batch_size >= 2, lr > 0 and local in "
                          f"[0, 1], got {pt}")
    if pt.steps > 0 and (not p.train.pretrained or p.train.weights != pt.out):
        raise ParamsError("params key 'train.pretext.steps' > 0 makes the pretext backbone every model's "
                          "starting weights: set train.pretrained: true and leave train.weights unset "
                          f"(got pretrained={p.train.pretrained}, weights={p.train.weights!r})")
    if check_paths and p.train.weights and p.train.weights != pt.out and not Path(p.train.weights).is_file():
        raise ParamsError(f"params key 'train.weights': file {p.train.weights} does not exist")
    for prev in p.train.previous_outputs or []:
        if check_paths and not Path(prev).is_dir():
            raise ParamsError(f"params key 'train.previous_outputs': folder {prev} does not exist (attach the "
                              "earlier session's output and give the folder that holds its runs/, cache/, index/)")
        a, b = Path(prev).resolve(), Path(p.output_dir).resolve()
        if a == b or a.is_relative_to(b) or b.is_relative_to(a):
            raise ParamsError(f"params key 'train.previous_outputs': {prev} overlaps output_dir {p.output_dir}; "
                              "an attached earlier output is read-only, so each session needs an output_dir of its own")
    for name, d in p.datasets.items():
        if name not in INDEXERS:
            raise ParamsError(f"unknown dataset 'datasets.{name}'; known: {sorted(INDEXERS)}")
        sig = inspect.signature(INDEXERS[name])
        allowed = [k for k in sig.parameters if k != "root"]
        for opt, value in d.options.items():
            if opt not in allowed:
                raise ParamsError(f"unknown params key 'datasets.{name}.options.{opt}'; {name} takes {allowed}")
            if check_paths and d.enabled and isinstance(value, str) and opt.endswith(("_dir", "_path")) \
                    and not Path(value).exists():
                raise ParamsError(f"params key 'datasets.{name}.options.{opt}': path {value} does not exist")
        generated = p.demo_data.generate and Path(d.root).is_relative_to(p.demo_data.out)
        if check_paths and d.enabled and not generated and not Path(d.root).exists():
            raise ParamsError(f"params key 'datasets.{name}.root': folder {d.root} does not exist "
                              f"(set it to where {name} is, or enabled: false)")


def _unfreeze_schedule(schedule: dict) -> dict[int, int | None]:
    """train.unfreeze_schedule with int epochs (JSON, e.g. a launch snapshot or --overrides, makes
    them strings), sorted; checks epochs >= 0, a phase for epoch 0, and stages >= 0 or null."""
    key = "params key 'train.unfreeze_schedule'"
    out = {}
    for epoch, stages in schedule.items():
        e = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else \
            int(epoch) if isinstance(epoch, str) and epoch.strip().isdigit() else None
        if e is None or e < 0:
            raise ParamsError(f"{key} maps epochs (integers >= 0) to trainable backbone stages, got epoch {epoch!r}")
        if stages is not None and stages < 0:
            raise ParamsError(f"{key}: epoch {e} must map to a number of stages >= 0 or null (all), got {stages}")
        out[e] = stages
    if 0 not in out:
        raise ParamsError(f"{key} must say what trains from epoch 0 (e.g. {{0: 0, 2: 1, 4: 2}}), got {schedule}")
    return dict(sorted(out.items()))
