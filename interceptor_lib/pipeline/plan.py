"""The plan of the whole real-data chain on Kaggle, before any work (`python -m interceptor_lib plan`).

The campaign it describes:

- **Cache sessions** (CPU-only, no GPU quota) preprocess the face-crop cache dataset by dataset in
  stage order (DFDC chunk by chunk in the stage-4 chunk order), each stopping at the session's time
  budget or when its output reaches the storage budget; a step resumes per video in the next one.
  Every cache session's output is attached read-only to the later sessions.
- **GPU sessions** train every model of `train.models` through stage 1, 2, 3, then stage 4 one DFDC
  chunk at a time, then run one `evaluate` step (notebooks 06-08). A training step resumes at any
  step boundary, so one that does not fit the rest of a session continues in the next. Each GPU
  session pays `plan.session_overhead_h` (install, attach, load) besides its GPU work.
- **Storage** per GPU session (attached inputs do not count): the training states of the step
  running ((keep_last + 1) x 3 x the fp32 weights: weights + AdamW's two moments), plus for every
  (model, stage) finished in the session its best fp32 weights and an fp16 export; a finished DFDC
  chunk keeps its best weights until its model's stage 4 finishes.

Hours come from throughput figures in params (`plan.*`), replaced by the measurements a run recorded
(interceptor_lib.training.throughput) in output_dir or train.previous_outputs. Sizes are the datasets'
published ones (`sizes="published"`) or the index table of a prepared run (`sizes="data"`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from interceptor_lib.data.registry import DATASETS
from interceptor_lib.errors import InterceptorError
from interceptor_lib.training.throughput import measured

SPLITS = ("train", "val", "test")
KINDS = ("original", "fake")
STATE_FACTOR = 3.0     # a full training state: fp32 weights + AdamW's two moments
EXPORT_FACTOR = 0.5    # the fp16 export of a finished stage's best weights
EVAL_GB = 0.5          # what the evaluate step writes (tables, predictions, figures)
MIN_PIECE_H = 0.05     # no training step starts in a session's last 3 minutes: the resume costs more
REFERENCE_FACE = 224   # face size at which the params figures hold
REFERENCE_FRAMES = 64  # frames stored per video behind plan.cache_mb_per_video (32 + 4 clips x 8)
# Cache size against JPEG q95 (the figures'): PNG is ~5x larger (README), raw is 3 bytes a pixel
# (~9x at 224 px).
FORMAT_FACTOR = {"jpg": 1.0, "png": 5.0, "raw": 9.2}
EPS = 1e-9

# Published sizes of each dataset: its entry in data.registry.


@dataclass
class Part:
    """The videos of one dataset, or of one DFDC chunk, counted per (split, "original" | "fake")."""

    dataset: str
    chunk: int | None
    counts: dict[tuple[str, str], int]

    def n(self, split: str | None = None, kind: str | None = None) -> int:
        return sum(v for (s, k), v in self.counts.items() if split in (None, s) and kind in (None, k))

    @property
    def label(self) -> str:
        return self.dataset if self.chunk is None else f"{self.dataset} chunk {self.chunk}"


@dataclass
class Step:
    """One unit of the chain: preprocess a dataset (or DFDC chunk), train a (model, stage[, chunk]),
    or evaluate. `items`: videos preprocessed, items drawn for training over all epochs, or videos x
    models scored; `images`: frames stored (preprocess) or through the network (training with its
    validation, evaluation); `gb`: what it leaves in its session's output; `work_gb`: what it holds
    besides while it runs (training states)."""

    name: str
    kind: str                 # preprocess | train | evaluate
    items: int
    images: int
    cpu_h: float = 0.0
    gpu_h: float = 0.0
    gb: float = 0.0
    work_gb: float = 0.0
    splittable: bool = True
    keep: tuple = ()          # (model, stage, part): its output among a session's kept outputs
    releases: bool = False    # the last DFDC chunk: its model's stage 4 is finished, the chunks' weights go

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "items": self.items, "images": self.images,
                "cpu_h": round(self.cpu_h, 4), "gpu_h": round(self.gpu_h, 4), "gb": round(self.gb, 4)}


@dataclass
class Piece:
    """A step, or the part of it, that runs in one session."""

    label: str
    cpu_h: float
    gpu_h: float
    gb: float


@dataclass
class Session:
    """One Kaggle session: a cache (CPU) session's preprocessing, or a GPU session's training and
    evaluation after its fixed overhead. `peak_gb`: the most its output folder holds at once."""

    kind: str                 # cpu | gpu
    overhead_h: float = 0.0
    pieces: list[Piece] = field(default_factory=list)
    peak_gb: float = 0.0
    kept: dict = field(default_factory=dict)  # outputs of finished steps held in this session: key -> GB

    @property
    def gpu_h(self) -> float:
        return sum(p.gpu_h for p in self.pieces)

    @property
    def cpu_h(self) -> float:
        """CPU-session work; for a GPU session its overhead (non-GPU time)."""
        return self.overhead_h + sum(p.cpu_h for p in self.pieces)

    @property
    def hours(self) -> float:
        return self.gpu_h + self.cpu_h

    def to_dict(self) -> dict:
        return {"kind": self.kind, "steps": [p.label for p in self.pieces], "gpu_h": round(self.gpu_h, 4),
                "cpu_h": round(self.cpu_h, 4), "peak_gb": round(self.peak_gb, 4), "hours": round(self.hours, 4)}


@dataclass
class Plan:
    """The chain's steps, their sessions and the problems keeping it from fitting. `total_gpu_h` is the
    GPU work of the steps, `total_cpu_h` the preprocessing of the cache sessions; the GPU sessions'
    overheads count in their hours, in `gpu_share` and against the weekly quota (Kaggle charges a
    session's wall hours), not in these totals."""

    fits: bool
    sessions: list[Session]
    steps: list[Step]
    figures: dict[str, dict]
    problems: list[str]
    profile: str = ""
    sizes: str = "published"
    time_budget_h: float = math.inf
    storage_budget_gb: float = math.inf
    gpus: int = 1

    def _of(self, kind: str) -> list[Session]:
        return [s for s in self.sessions if s.kind == kind]

    @property
    def total_gpu_h(self) -> float:
        return sum(s.gpu_h for s in self.steps)

    @property
    def total_cpu_h(self) -> float:
        return sum(s.cpu_h for s in self.steps)

    @property
    def gpu_session_h(self) -> float:
        """What the GPU sessions charge to the quota: their wall hours, overheads included."""
        return sum(s.hours for s in self._of("gpu"))

    @property
    def gpu_share(self) -> float:
        return self.total_gpu_h / self.gpu_session_h if self.gpu_session_h else 0.0

    def to_dict(self) -> dict:
        return {"fits": self.fits, "sessions": [s.to_dict() for s in self.sessions],
                "steps": [s.to_dict() for s in self.steps], "total_gpu_h": round(self.total_gpu_h, 4),
                "total_cpu_h": round(self.total_cpu_h, 4), "gpu_sessions": len(self._of("gpu")),
                "cpu_sessions": len(self._of("cpu")), "gpu_share": round(self.gpu_share, 4),
                "figures": self.figures, "problems": list(self.problems)}


class _Figures:
    """Throughput figures: a run's measurement where one exists, else the params figure; remembers
    which were used and where they came from."""

    def __init__(self, measured_values: dict[str, float]):
        self.measured = measured_values
        self.used: dict[str, dict] = {}

    def get(self, key: str, from_params: float) -> float:
        if key in self.measured:
            value, source = self.measured[key], "measured"
        else:
            value, source = from_params, "params"
        self.used[key] = {"value": round(value, 6), "source": source}
        return value


def _roots(params) -> list:
    """output_dir, then train.previous_outputs (a folder, a list of folders or None)."""
    prev = params.train.previous_outputs or []
    return [params.output_dir, *([prev] if isinstance(prev, (str, Path)) else prev)]


def _frames_per_item(params, model: str) -> int:
    """1 for image models, clip_len for clip models (tm, av)."""
    from interceptor_lib.models import model_entry  # the registry; load_params has imported it already

    return params.preprocess.clip_len if model_entry(model).input_kind == "clip" else 1


def _check_plan_params(p) -> None:
    for key in ("cpu_cores", "gpus"):
        if getattr(p, key) < 1:
            raise InterceptorError(f"params key 'plan.{key}' must be >= 1, got {getattr(p, key)!r}")
    if not 0 < p.ddp_efficiency <= 1:
        raise InterceptorError(f"params key 'plan.ddp_efficiency' is a share in (0, 1], got {p.ddp_efficiency!r}")
    for key in ("train_images_per_s", "eval_images_per_s"):
        if getattr(p, key) <= 0:
            raise InterceptorError(f"params key 'plan.{key}' must be > 0, got {getattr(p, key)!r}")
    for ds, pair in p.cpu_s_per_video.items():
        if len(pair) != 2:
            raise InterceptorError(f"params key 'plan.cpu_s_per_video.{ds}' is [original, fake] CPU-seconds "
                                   f"per video, got {pair!r}")


# ---------------------------------------------------------------------------------------- sizes


def _planned_datasets(params) -> list[str]:
    """Datasets enabled in params and trained on by train.stages, in stage order."""
    enabled = params.enabled_datasets()
    out = []
    for st in params.train.stages.values():
        if st.dataset in enabled and st.dataset not in out:
            out.append(st.dataset)
    return out


def _split_counts(train: tuple[int, int], val_fraction: float) -> dict[str, tuple[int, int]]:
    """A training set with `val_fraction` of each class held out as val."""
    val = tuple(round(n * val_fraction) for n in train)
    return {"train": (train[0] - val[0], train[1] - val[1]), "val": val}


def _part(dataset: str, chunk: int | None, splits: dict[str, tuple[int, int]]) -> Part:
    return Part(dataset, chunk, {(s, k): n for s, pair in splits.items() for k, n in zip(KINDS, pair)})


def _chunked_stage_order(params) -> list[int] | None:
    """The chunk order the chunked dataset's stage gives (stage 4's DFDC chunks), if any."""
    return next((st.chunk_order for st in params.train.stages.values() if DATASETS[st.dataset].chunked), None)


def published_parts(params, datasets: list[str]) -> tuple[list[Part], list[int]]:
    """Parts from the published sizes, and the DFDC chunk order (stage 4's, else 0, 1, ...)."""
    parts, order = [], []
    for ds in datasets:
        opts = params.datasets[ds].options
        vf = float(opts.get("val_fraction", 0.1))
        e = DATASETS[ds]
        if e.published_splits:
            parts.append(_part(ds, None, e.published_splits))
        elif e.chunked:
            tf = float(opts.get("test_fraction", 0.1))
            chunks = list(opts.get("chunks") or range(e.published_parts))
            order = [c for c in (_chunked_stage_order(params) or chunks) if c in chunks]
            val, test = (tuple(round(n * f) for n in e.published_pool) for f in (vf, tf))
            train = tuple(n - v - t for n, v, t in zip(e.published_pool, val, test))
            parts += [_part(ds, c, {"train": train, "val": val, "test": test}) for c in chunks]
        else:
            parts.append(_part(ds, None, {**_split_counts(e.published_pool, vf), "test": e.published_test}))
    return parts, order


def data_parts(params, datasets: list[str]) -> tuple[list[Part], list[int]]:
    """Parts counted from <output_dir>/index/all.csv, and the DFDC chunk order (stage 4's, else the
    one training computes from the data: most to least balanced)."""
    import pandas as pd

    from interceptor_lib.data.inspection import balanced_chunk_order
    from interceptor_lib.layout import RunPaths

    path = RunPaths.of(params).index_file("all")
    if not path.is_file():
        raise InterceptorError(f"--sizes data reads the index table {path}, which does not exist: index the "
                               f"datasets first (notebook 00, or python -m interceptor_lib prepare --profile "
                               f"{params.profile}), or plan from the published sizes (--sizes published)")
    df = pd.read_csv(path, keep_default_na=False)
    missing = sorted({"dataset", "split", "label", "chunk"} - set(df.columns))
    if missing:
        raise InterceptorError(f"{path} lacks the column(s) {missing}; write it again with notebook 00")
    df = df[df["dataset"].isin(datasets)].copy()
    df["label"] = pd.to_numeric(df["label"], errors="coerce")
    df["chunk"] = pd.to_numeric(df["chunk"], errors="coerce").fillna(-1).astype(int)
    df["kind"] = df["label"].map({0: "original", 1: "fake"})
    if df["kind"].isna().any():
        raise InterceptorError(f"{path}: labels must be 0 (real) or 1 (fake); found {sorted(df['label'].unique())}")
    parts, order = [], []
    for ds in datasets:
        d = df[df["dataset"] == ds]
        keys = sorted(d["chunk"].unique()) if DATASETS[ds].chunked else [None]
        for c in keys:
            rows = d if c is None else d[d["chunk"] == c]
            counts = rows.groupby(["split", "kind"]).size().to_dict()
            parts.append(Part(ds, None if c is None else int(c), {k: int(v) for k, v in counts.items()}))
        if DATASETS[ds].chunked:
            computed = balanced_chunk_order(d.assign(video_id=range(len(d))))["chunk"].tolist()
            order = [int(c) for c in (_chunked_stage_order(params) or computed)]
    return parts, order


# ---------------------------------------------------------------------------------------- steps


def _preprocess_steps(params, parts: list[Part], order: list[int], figures: _Figures) -> list[Step]:
    pp, plan = params.preprocess, params.plan
    frames = pp.frames_per_video + pp.clips_per_video * pp.clip_len
    size_scale = ((pp.face_size / REFERENCE_FACE) ** 2 * frames / REFERENCE_FRAMES
                  * FORMAT_FACTOR.get(pp.image_format, 1.0))
    workers = max(1, min(pp.workers, plan.cpu_cores))  # processes preprocessing at once

    def rank(part: Part) -> int:  # DFDC chunks in stage-4 order, the others after them
        return order.index(part.chunk) if part.chunk in order else len(order) + (part.chunk or 0)

    datasets = list(dict.fromkeys(p.dataset for p in parts))
    ordered = sorted(parts, key=lambda p: (datasets.index(p.dataset), rank(p)))
    steps = []
    for part in ordered:
        ds = part.dataset
        if ds not in plan.cpu_s_per_video or ds not in plan.cache_mb_per_video:
            raise InterceptorError(f"params key 'plan.cpu_s_per_video' / 'plan.cache_mb_per_video' has no figure "
                                   f"for {ds}: add plan.cpu_s_per_video.{ds}: [original, fake] and "
                                   f"plan.cache_mb_per_video.{ds}")
        cpu_s = sum(part.n(kind=k) * figures.get(f"preprocess.cpu_s_per_video.{ds}.{k}", plan.cpu_s_per_video[ds][i])
                    for i, k in enumerate(KINDS))
        mb = figures.get(f"preprocess.cache_mb_per_video.{ds}", plan.cache_mb_per_video[ds] * size_scale)
        videos = part.n()
        steps.append(Step(f"preprocess {part.label}", "preprocess", videos, videos * frames,
                          cpu_h=cpu_s / workers / 3600, gb=videos * mb / 1024))
    return steps


def _train_steps(params, parts: list[Part], order: list[int], figures: _Figures) -> list[Step]:
    t, plan = params.train, params.plan
    by_ds: dict[str, list[Part]] = {}
    for p in parts:
        by_ds.setdefault(p.dataset, []).append(p)
    eval_ips = figures.get("eval.images_per_s", plan.eval_images_per_s * _face_scale(params))
    parallel = plan.gpus * plan.ddp_efficiency if plan.gpus > 1 else 1.0  # DDP; rank 0 alone validates
    steps, seen = [], []
    for stage, st in t.stages.items():
        if st.dataset not in by_ds:
            continue
        seen.append(st.dataset)
        val_sets = seen if t.select_on == "seen" else [st.dataset]
        val_videos = sum(p.n("val") for ds in val_sets for p in by_ds.get(ds, []))
        spe = st.samples_per_epoch if st.samples_per_epoch is not None else t.samples_per_epoch
        chunked = DATASETS[st.dataset].chunked
        if chunked:
            chunks = {p.chunk: p for p in by_ds[st.dataset]}
            units = [(f" chunk {c}", chunks[c]) for c in order if c in chunks]
        else:
            units = [("", by_ds[st.dataset][0])]
        # training skips a part whose training videos hold one class (the model passes through)
        units = [(suffix, part) for suffix, part in units if all(part.n("train", k) for k in KINDS)]
        for model in t.models:
            if model not in plan.model_mb:
                raise InterceptorError(f"params key 'plan.model_mb' has no size for model {model}: add "
                                       f"plan.model_mb.{model} (fp32 MB, python -m interceptor_lib.models.size_report)")
            w_gb = plan.model_mb[model] / 1024
            fpi = _frames_per_item(params, model)
            ips = figures.get(f"train.images_per_s.{model}", plan.train_images_per_s * _face_scale(params))
            for i, (suffix, part) in enumerate(units):
                items = (spe or part.n("train") * t.items_per_video) * st.epochs
                val_images = val_videos * _val_items(params, fpi) * fpi * st.epochs
                seconds = items * fpi / (ips * parallel) + val_images / eval_ips
                last = i == len(units) - 1
                chunk_only = chunked and not last  # its best weights, kept until the stage ends
                steps.append(Step(f"train {model} {stage}{suffix}", "train", items, items * fpi + val_images,
                                  gpu_h=seconds / 3600, gb=w_gb * (1 if chunk_only else 1 + EXPORT_FACTOR),
                                  work_gb=(t.keep_last + 1) * STATE_FACTOR * w_gb,
                                  keep=(model, stage, suffix),
                                  releases=chunked and last))
    return steps


def _val_items(params, frames_per_item: int) -> int:
    """Items scored per validation video after each epoch: train.val_items_per_video, at most (and
    for 0) every cached one (frames_per_video frames, or clips_per_video clips)."""
    pp = params.preprocess
    cached = pp.frames_per_video if frames_per_item == 1 else pp.clips_per_video
    wanted = params.train.val_items_per_video
    return min(wanted, cached) if wanted > 0 else cached


def _evaluate_step(params, parts: list[Part], figures: _Figures) -> Step:
    pp = params.preprocess
    videos = sum(p.n("val") + p.n("test") for p in parts)
    images = sum(videos * (pp.frames_per_video if _frames_per_item(params, m) == 1 else pp.clips_per_video * pp.clip_len)
                 for m in params.train.models)
    eval_ips = figures.get("eval.images_per_s", params.plan.eval_images_per_s * _face_scale(params))
    return Step("evaluate", "evaluate", videos * len(params.train.models), images, gpu_h=images / eval_ips / 3600,
                gb=EVAL_GB, splittable=False, keep=("evaluate",))


def _face_scale(params) -> float:
    """Throughput against the figures' 224 px: the work per image grows with the pixels."""
    return (REFERENCE_FACE / params.preprocess.face_size) ** 2


# ---------------------------------------------------------------------------------------- packing


def _piece_label(name: str, first: bool, more: bool, detail: str = "") -> str:
    notes = (["continued"] if not first else []) + ([detail] if detail else []) + (["continues"] if more else [])
    return f"{name} ({', '.join(notes)})" if notes else name


def _count(room: float, per: float, most: int) -> int:
    """How many units of `per` fit in `room` (at most `most`)."""
    if per <= 0 or room >= per * most:
        return most
    return max(0, math.floor(room / per + EPS))


def _pack_cpu(steps: list[Step], hours: float, gb: float, problems: list[str]) -> list[Session]:
    """Preprocessing into cache sessions, video by video: a session stops at the time budget or when
    its output reaches the storage budget, and the next one resumes the step."""
    sessions: list[Session] = []
    cur: Session | None = None
    for step in steps:
        h_per, gb_per = step.cpu_h / max(step.items, 1), step.gb / max(step.items, 1)
        left, first = step.items, True
        while left > 0:
            if cur is None:
                cur = Session("cpu")
                sessions.append(cur)
            fit = min(left, _count(hours - cur.hours, h_per, left), _count(gb - cur.peak_gb, gb_per, left))
            if fit < 1 and cur.pieces:
                cur = None
                continue
            if fit < 1:  # not even one video fits an empty session: it gets one of its own, over budget
                problems.append(f"{step.name}: one video's cache ({gb_per * 1024:.1f} MB) or time ({h_per * 3600:.0f} s) "
                                f"does not fit a cache session: raise train.storage_budget_gb / train.time_budget_h "
                                f"or lower preprocess.face_size")
                fit = left
            more = left - fit > 0
            detail = f"{fit:,} of {step.items:,} videos" if fit < step.items else ""
            cur.pieces.append(Piece(_piece_label(step.name, first, more, detail), fit * h_per, 0.0, fit * gb_per))
            cur.peak_gb += fit * gb_per
            left -= fit
            first = False
            if more:
                cur = None
    return sessions


def _pack_gpu(steps: list[Step], hours: float, gb: float, overhead: float) -> list[Session]:
    """Training and evaluation into GPU sessions in order. A training step that does not fit the
    rest of a session runs until the session's time budget and continues in the next one; a step
    starts in a new session when this one's outputs plus its training states would pass the storage
    budget. A step too large for any session (a problem, named elsewhere) gets a session of its own."""
    sessions: list[Session] = []
    cur: Session | None = None
    for step in steps:
        left, first = step.gpu_h, True
        while left > EPS or first:
            if cur is None:
                cur = Session("gpu", overhead_h=overhead)
                sessions.append(cur)
            time_left = hours - cur.hours
            kept = sum(cur.kept.values())
            fits_time = (left <= time_left + EPS) if not step.splittable else time_left >= min(left, MIN_PIECE_H) - EPS
            fits_storage = kept + step.work_gb <= gb + EPS and kept + step.gb <= gb + EPS
            if cur.pieces and not (fits_time and fits_storage):
                cur = None
                continue
            piece = min(left, time_left) if step.splittable and time_left >= min(left, MIN_PIECE_H) - EPS else left
            more = left - piece > EPS
            cur.pieces.append(Piece(_piece_label(step.name, first, more), 0.0, piece, 0.0 if more else step.gb))
            cur.peak_gb = max(cur.peak_gb, kept + step.work_gb)
            left -= piece
            first = False
            if more:
                cur = None
        if step.releases:  # its model's stage 4 finished: the chunks' best weights go
            cur.kept = {k: v for k, v in cur.kept.items() if k[:2] != step.keep[:2]}
        cur.kept[step.keep] = step.gb
        cur.peak_gb = max(cur.peak_gb, sum(cur.kept.values()))
    return sessions


# ---------------------------------------------------------------------------------------- plan


def default_sizes(params) -> str | None:
    """What to plan from: the run's index table when it exists ("data"), else the published sizes
    ("published"); None for a profile that generates its corpus (demo, smoke) before it has indexed
    it, where published sizes would describe other data."""
    from interceptor_lib.layout import RunPaths

    if RunPaths.of(params).index_file("all").is_file():
        return "data"
    return None if params.demo_data.generate else "published"


def make_plan(params, sizes: str = "published") -> Plan:
    """The plan of the whole chain for `params`: steps, sessions, totals and the problems that keep
    it from fitting the sessions' budgets or the weekly GPU quota."""
    if sizes not in ("published", "data"):
        raise InterceptorError(f"sizes must be 'published' or 'data', got {sizes!r}")
    p, t = params.plan, params.train
    _check_plan_params(p)
    hours = t.time_budget_h if t.time_budget_h else math.inf
    gb = t.storage_budget_gb if t.storage_budget_gb else math.inf
    problems: list[str] = []
    enabled = params.enabled_datasets()
    for stage, st in t.stages.items():
        if st.dataset not in enabled:
            problems.append(f"train.stages.{stage} trains on {st.dataset}, which is not enabled: set "
                            f"datasets.{st.dataset} (root, enabled: true) or remove train.stages.{stage}")
    datasets = _planned_datasets(params)
    parts, order = (published_parts if sizes == "published" else data_parts)(params, datasets)
    for ds in datasets:
        if not any(part.n() for part in parts if part.dataset == ds):
            problems.append(f"the index table has no {ds} videos, yet train.stages trains on {ds}: index it again "
                            f"(notebook 00) with datasets.{ds} pointing at the dataset")
    figures = _Figures(measured(_roots(params)))
    pre = _preprocess_steps(params, parts, order, figures)
    train = _train_steps(params, parts, order, figures)
    gpu_steps = train + ([_evaluate_step(params, parts, figures)] if train else [])

    if p.session_overhead_h >= hours:
        problems.append(f"plan.session_overhead_h ({p.session_overhead_h} h) leaves no time in a session of "
                        f"train.time_budget_h {hours} h: raise train.time_budget_h")
    too_big: dict[str, list[Step]] = {}
    for s in train:
        if s.work_gb > gb or s.gb > gb:
            too_big.setdefault(s.keep[0], []).append(s)
    for model, bad in too_big.items():
        s = bad[0]
        more = f" (and {len(bad) - 1} more step(s) of {model})" if len(bad) > 1 else ""
        problems.append(f"{s.name}{more} holds {s.work_gb:.2f} GB while it trains ((train.keep_last + 1) = "
                        f"{t.keep_last + 1} training states of 3 x {p.model_mb[model]:.1f} MB fp32 weights), over "
                        f"train.storage_budget_gb {gb}: raise train.storage_budget_gb to at least "
                        f"{math.ceil(s.work_gb * 10) / 10:.1f} or lower train.keep_last")
    ev = gpu_steps[-1] if gpu_steps else None
    if ev is not None and ev.gpu_h + p.session_overhead_h > hours:
        problems.append(f"evaluate takes {ev.gpu_h:.1f} h on one GPU ({ev.images:,} images) and does not resume: "
                        f"more than a session leaves ({hours - p.session_overhead_h:.1f} h); lower "
                        f"preprocess.frames_per_video / preprocess.clips_per_video or raise train.time_budget_h")
    if ev is not None and EVAL_GB > gb:
        problems.append(f"evaluate writes about {EVAL_GB} GB, over train.storage_budget_gb {gb}: raise it")

    sessions = _pack_cpu(pre, hours, gb, problems) + _pack_gpu(gpu_steps, hours, gb, p.session_overhead_h)
    plan = Plan(False, sessions, pre + gpu_steps, dict(sorted(figures.used.items())), problems,
                profile=params.profile, sizes=sizes, time_budget_h=hours, storage_budget_gb=gb, gpus=p.gpus)
    if plan.gpu_session_h > p.weekly_gpu_quota_h:
        by_stage: dict[str, float] = {}
        for s in train:
            stage = s.keep[1]
            by_stage[stage] = by_stage.get(stage, 0.0) + s.gpu_h
        top = max(by_stage, key=by_stage.get) if by_stage else "stage1"
        problems.append(f"the GPU sessions take {plan.gpu_session_h:.1f} h, more than the weekly quota "
                        f"plan.weekly_gpu_quota_h {p.weekly_gpu_quota_h} h; {top} takes the most "
                        f"({by_stage.get(top, 0.0):.1f} h): lower train.stages.{top}.epochs (or "
                        f"samples_per_epoch), raise plan.gpus, or spread the sessions over several weeks")
    plan.fits = not problems
    return plan


_CHUNK_STEP = re.compile(r"^train (\S+) (\S+) chunk (\d+)$")  # a whole DFDC-chunk step (not a piece)


def _condensed(pieces: list[Piece]) -> list[tuple[str, float]]:
    """(label, hours) per line of the text table: a model's consecutive whole DFDC-chunk steps on one
    line ("train ll stage4 chunks 0, 1, 2"), every other piece on its own."""
    lines: list[tuple[str, float]] = []
    run: tuple | None = None  # (model, stage) of the chunk steps being gathered
    chunks: list[str] = []
    hours = 0.0
    for piece in pieces + [None]:
        m = _CHUNK_STEP.match(piece.label) if piece is not None else None
        if run is not None and (m is None or m.groups()[:2] != run):
            word = "chunks" if len(chunks) > 1 else "chunk"
            lines.append((f"train {run[0]} {run[1]} {word} {', '.join(chunks)}", hours))
            run, chunks, hours = None, [], 0.0
        if m is not None:
            run = m.groups()[:2]
            chunks.append(m.group(3))
            hours += piece.gpu_h
        elif piece is not None:
            lines.append((piece.label, piece.gpu_h + piece.cpu_h))
    return lines


def format_plan(plan: Plan) -> str:
    """The plan as a text table: sessions with their steps, the totals, the figures, the problems."""
    d = plan.to_dict()
    out = [f"Plan for profile {plan.profile} ({plan.sizes} sizes): sessions of at most {plan.time_budget_h:g} h "
           f"and {plan.storage_budget_gb:g} GB; GPU sessions on {plan.gpus} GPU(s)", "",
           f"{'session':>7}  {'kind':4}  {'hours':>6}  {'GPU h':>6}  {'peak GB':>7}  steps"]
    for i, s in enumerate(plan.sessions, 1):
        for j, (label, h) in enumerate(_condensed(s.pieces)):
            head = (f"{i:>7}  {s.kind:4}  {s.hours:6.2f}  {s.gpu_h:6.2f}  {s.peak_gb:7.2f}" if j == 0
                    else " " * 39)
            out.append(f"{head}  {label}  [{h:.2f} h]")
    cpu = [s for s in plan.sessions if s.kind == "cpu"]
    out += ["", f"Totals: GPU work {d['total_gpu_h']:.1f} h in {d['gpu_sessions']} GPU session(s) "
                f"({plan.gpu_session_h:.1f} h of quota, GPU share {d['gpu_share']:.2f}); preprocessing "
                f"{d['total_cpu_h']:.1f} h in {d['cpu_sessions']} CPU session(s) ({sum(s.hours for s in cpu):.1f} h); "
                f"peak {max((s.peak_gb for s in plan.sessions), default=0.0):.2f} GB"]
    out.append("Figures (from params plan.*, or measured by a run):")
    out += [f"  {k} = {f['value']:g} ({f['source']})" for k, f in plan.figures.items()]
    if plan.problems:
        out += ["", "Problems:"] + [f"  - {p}" for p in plan.problems]
    out += ["", "FITS" if plan.fits else "DOES NOT FIT"]
    return "\n".join(out)


def _summary(pieces: list[Piece]) -> str:
    """A session's steps in one line: what it preprocesses or trains, from the first to the last."""
    labels = [label for label, _ in _condensed(pieces)]
    if len(labels) <= 2:
        return "; ".join(labels)
    return f"{labels[0]} … {labels[-1]} ({len(labels)} lines of `plan`)"


def format_plan_markdown(plan: Plan) -> str:
    """The plan's sessions and totals as a Markdown table (for the README)."""
    d = plan.to_dict()
    out = [f"Plan of profile `{plan.profile}` ({plan.sizes} sizes; sessions of at most {plan.time_budget_h:g} h "
           f"and {plan.storage_budget_gb:g} GB; {plan.gpus} GPU(s) per GPU session):", "",
           "| session | kind | hours | GPU h | peak GB | steps |", "|---|---|---|---|---|---|"]
    for i, s in enumerate(plan.sessions, 1):
        out.append(f"| {i} | {s.kind} | {s.hours:.1f} | {s.gpu_h:.1f} | {s.peak_gb:.1f} | {_summary(s.pieces)} |")
    out += ["", f"Totals: {d['total_gpu_h']:.1f} GPU-hours of work in {d['gpu_sessions']} GPU session(s) "
                f"({plan.gpu_session_h:.1f} h of quota, {d['gpu_share']:.0%} of it GPU work); preprocessing "
                f"{d['total_cpu_h']:.1f} h in {d['cpu_sessions']} CPU-only session(s). "
                + ("Fits." if plan.fits else "Does not fit: " + "; ".join(plan.problems))]
    return "\n".join(out)
