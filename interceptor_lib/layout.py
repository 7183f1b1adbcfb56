"""Where a profile's run writes things, and where it finds an earlier session's: one layout, so
notebooks, the CLI and every module agree.

    <output_dir>/demo_data/                       generated synthetic corpus (demo / smoke)
    <output_dir>/index/<ds>.csv                   index tables (+ all.csv)
    <cache_dir>/<key>/                            face-crop cache (entries/, manifest.csv, failures.csv)
    <output_dir>/runs/<model>/<stage>[/<part>]/   checkpoints/, metrics.csv, done.json (part: a DFDC chunk)
    <output_dir>/eval/                            evaluation tables and predictions (notebooks 06-07)
    <output_dir>/ensemble/ensemble.json           the fitted ensemble (notebook 06)
    <output_dir>/reports/                         tables, figures and JSON summaries the notebooks record
    <output_dir>/notebooks/                       notebooks executed by run_all.sh

A Kaggle campaign spreads one run over several sessions: each session writes a fresh `output_dir`,
and the earlier sessions' outputs are attached read-only (`train.previous_outputs`). `RunPaths.roots`
lists the run's own folder first, then the attached ones; lookups (`find_done`, `attached_caches`)
search them in that order and re-root the absolute paths an earlier session recorded, since an
attached copy lives under another folder (`/kaggle/input/<name>/...`) than where it was written.
Nothing here writes inside an attached folder.

A finished (model, stage), or DFDC chunk, leaves done.json (`write_done`): its best checkpoint, its
history and the settings it was trained with (`stage_settings`). A re-run skips it when those match
the params (`finished_as_configured`) and stops, naming them, when they do not; the settings that
may change between runs are the train.* keys of `RUN_ONLY_TRAIN_KEYS`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from interceptor_lib.config.schema import PSEUDO_OFF, PSEUDO_ONLY, STAGE_NAMES, PreprocessParams
from interceptor_lib.errors import InterceptorError

DONE_FILE = "done.json"  # what a finished (model, stage) or DFDC chunk leaves in its run folder


@dataclass(frozen=True)
class RunPaths:
    root: Path
    cache_root: Path
    previous: tuple[Path, ...] = field(default=())  # earlier sessions' outputs, attached read-only

    @classmethod
    def of(cls, params) -> "RunPaths":
        prev = params.train.previous_outputs or []
        return cls(root=Path(params.output_dir), cache_root=Path(params.preprocess.cache_dir),
                   previous=tuple(Path(p) for p in ([prev] if isinstance(prev, str) else prev)))

    @classmethod
    def at(cls, output_dir: str | Path) -> "RunPaths":
        """The layout of an output folder alone (no params): its default cache place, nothing attached."""
        return cls(root=Path(output_dir), cache_root=Path(output_dir) / "cache")

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def throughput_file(self) -> Path:
        """Throughput measured by this run (interceptor_lib.training.throughput), read by `plan`."""
        return self.reports / "throughput.json"

    @property
    def roots(self) -> tuple[Path, ...]:
        """This run's output folder, then the attached ones, in lookup order."""
        return (self.root, *self.previous)

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def ensemble_dir(self) -> Path:
        return self.root / "ensemble"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    def index_file(self, dataset: str = "all") -> Path:
        return self.index_dir / f"{dataset}.csv"

    def run_dir(self, model: str, stage: str, part: str = "", root: Path | None = None) -> Path:
        """runs/<model>/<stage>[/<part>] under `root` (default: this run's output folder)."""
        d = (RunPaths.at(root).runs if root else self.runs) / model / stage
        return d / part if part else d

    def done_file(self, model: str, stage: str, part: str = "", root: Path | None = None) -> Path:
        return self.run_dir(model, stage, part, root) / DONE_FILE

    def find_done(self, model: str, stage: str, part: str = "") -> tuple[dict, Path] | tuple[None, None]:
        """(done.json record, the run folder it was found in) of a finished (model, stage[, part]),
        searched in `roots` order; the record's checkpoint paths ("best", "export.path") re-rooted to
        where the folder is now. (None, None) when no root has it."""
        for root in self.roots:
            f = self.done_file(model, stage, part, root)
            if f.is_file():
                return reroot_record(json.loads(f.read_text()), f.parent), f.parent
        return None, None

    def attached_run_dirs(self, model: str, stage: str, part: str = "") -> list[Path]:
        """The same run folder in each attached output that has it (an interrupted stage's checkpoints)."""
        return [d for d in (self.run_dir(model, stage, part, r) for r in self.previous) if d.is_dir()]

    def attached_caches(self, key: str) -> list[Path]:
        """Cache folders of configuration `key` found in the attached outputs (a CPU-only session's
        cache, saved as its output), searched in `previous` order."""
        out = []
        for r in self.previous:
            d = r / "cache" / key
            if (d / "manifest.csv").is_file() and d.resolve() != (self.cache_root / key).resolve():
                out.append(d)
        return out

    def ensure(self) -> "RunPaths":
        for p in (self.root, self.index_dir, self.reports, self.cache_root):
            p.mkdir(parents=True, exist_ok=True)
        return self


def resolve_stored_path(stored: str | Path, base: Path) -> Path:
    """A checkpoint path from a config or done.json: relative to `base`; an absolute path that no
    longer exists (outputs copied from Kaggle or Drive, or attached read-only in a later session) is
    re-rooted at its `runs/` part, looking in `base` and its parents."""
    p = Path(stored)
    if not p.is_absolute():
        return (base / p).resolve()
    if p.exists() or "runs" not in p.parts:
        return p
    i = len(p.parts) - 1 - p.parts[::-1].index("runs")
    tail = Path(*p.parts[i:])
    for root in (base, *base.parents):
        if (root / tail).exists():
            return root / tail
    return p


def reroot_record(done: dict, run_dir: Path) -> dict:
    """`done` with its "best" and "export.path" resolved against `run_dir` (resolve_stored_path)."""
    out = dict(done)
    if out.get("best") and out["best"] != "None":
        out["best"] = str(resolve_stored_path(out["best"], run_dir))
    if isinstance(out.get("export"), dict) and out["export"].get("path"):
        out["export"] = {**out["export"], "path": str(resolve_stored_path(out["export"]["path"], run_dir))}
    return out


# ----------------------------------------------------------------------- finished stages and staleness

def done_record(params, model: str, stage: str, part: str = "") -> dict | None:
    """The done.json of a finished stage (or DFDC chunk `part`) of `model`, from this run's outputs
    or else from train.previous_outputs (earlier sessions', attached read-only), its checkpoint
    paths re-rooted to where they are now; None if none has it."""
    return RunPaths.of(params).find_done(model, stage, part)[0]


def write_done(run_dir: Path, record: dict) -> None:
    """Write `run_dir`/done.json atomically (a temporary file renamed over it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (DONE_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(run_dir / DONE_FILE)


def previous_best(params, model: str, stage: str) -> Path | None:
    """Best checkpoint of the stage before `stage` (None for stage 1). Raises if that stage has not run."""
    order = list(STAGE_NAMES)
    i = order.index(stage)
    if i == 0:
        return None
    done = done_record(params, model, order[i - 1])
    if done is None:
        raise InterceptorError(
            f"{model} {stage} starts from {order[i - 1]}'s best checkpoint, but {order[i - 1]} has not finished "
            f"(no {DONE_FILE} under {RunPaths.of(params).run_dir(model, order[i - 1])}"
            + (f" or in {', '.join(params.train.previous_outputs)}" if params.train.previous_outputs else "")
            + f"); run notebook {STAGE_NAMES[order[i - 1]]} first")
    return Path(done["best"])


#: The settings that may change between runs: train.* keys that do not change what a stage learns
#: (where files are, how fast, what is kept). Every other train.* setting, the stage's own, the seed
#: and the crop settings are recorded in done.json, and a finished stage trained with others is
#: stale. The one list: an interrupted run also resumes its checkpoint with these changed
#: (training.train_config.RESUMABLE_CHANGES takes the TrainConfig fields among them).
RUN_ONLY_TRAIN_KEYS = ("models", "weights", "num_workers", "time_budget_h", "storage_budget_gb",
                       "checkpoint_chunk_mb", "keep_last", "previous_outputs", "parallel_models", "models_per_notebook",
                       "stages")


def stage_datasets(params, stage: str) -> list[str]:
    """The dataset of each configured stage up to and including `stage`, in stage1 ... stage4 order."""
    order = [name for name in STAGE_NAMES if name in params.train.stages]
    return [params.train.stages[name].dataset for name in order[:order.index(stage) + 1]]


def first_stage(params) -> str:
    """The first configured stage (stage 1: the cross-dataset protocol's single training dataset)."""
    stages = [s for s in STAGE_NAMES if s in params.train.stages]
    if not stages:
        raise InterceptorError("params have no train.stages")
    return stages[0]


#: the two training sources of the first stage that notebook 10 compares, and the stage's
#: `pseudo_fakes` that trains on each: self-blended pseudo-fakes only, or the dataset's fakes
PSEUDO_SOURCES = {"pseudo": PSEUDO_ONLY, "fakes": PSEUDO_OFF}


def variant_params(params, source: str):
    """A copy of `params` whose first stage trains on `source` (PSEUDO_SOURCES)."""
    if source not in PSEUDO_SOURCES:
        raise ValueError(f"source is one of {list(PSEUDO_SOURCES)}, got {source!r}")
    out = copy.deepcopy(params)
    out.train.stages[first_stage(params)].pseudo_fakes = PSEUDO_SOURCES[source]
    return out


def variant_folder(params, source: str) -> str:
    """The run folder (under runs/<model>/) of the first stage trained on `source`: the chain's own
    stage when it trains on that source, else <stage>-<source>."""
    stage = first_stage(params)
    return stage if params.train.stages[stage].pseudo_fakes == PSEUDO_SOURCES[source] else f"{stage}-{source}"


def stage_settings(params, stage: str) -> dict:
    """What the result of `stage` depends on, as done.json records it ("settings"): {params key:
    value} over seed, train.* (less RUN_ONLY_TRAIN_KEYS and file locations), train.stages.<stage>.*,
    the preprocess keys that change the stored crops, and the indexer options (less paths) of the
    datasets trained on up to `stage`, which set their splits: the stage trains, replays and selects on
    them."""
    train = {k: v for k, v in dataclasses.asdict(params.train).items() if k not in RUN_ONLY_TRAIN_KEYS}
    train["pretext"].pop("out")
    st = params.train.stages.get(stage)
    if st is None or st.pseudo_fakes == PSEUDO_OFF:  # the transforms matter only where they are used
        train.pop("pseudo_fakes")
    flat = {"seed": params.seed}
    for key, value in train.items():
        if key in ("augment", "pretext", "pseudo_fakes"):
            flat.update({f"train.{key}.{k}": v for k, v in value.items()})
        else:
            flat[f"train.{key}"] = value
    if stage in params.train.stages:
        flat.update({f"train.stages.{stage}.{k}": v for k, v in dataclasses.asdict(params.train.stages[stage]).items()})
    flat.update({f"preprocess.{k}": getattr(params.preprocess, k) for k in PreprocessParams.KEY_FIELDS
                 if k != "detector_model"})  # a path; the detector itself is preprocess.detector
    for name in dict.fromkeys(stage_datasets(params, stage) if stage in params.train.stages else []):
        d = params.datasets.get(name)
        flat.update({f"datasets.{name}.options.{k}": v for k, v in sorted((d.options if d else {}).items())
                     if not k.endswith(("_dir", "_path"))})  # where a file lies does not change the split
    return json.loads(json.dumps(flat))  # as done.json holds it (tuples as lists, keys as strings)


def _recorded_settings(done: dict, stage: str) -> dict:
    if "settings" in done:
        return done["settings"]
    # an older done.json records train.stages.<stage> alone
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


def changed_part_settings(params, model: str, stage: str, folder: str | None = None) -> dict[str, dict[str, tuple]]:
    """For a stage still in progress: its finished parts (DFDC chunks, runs/<model>/<stage>/<part>/
    done.json in this run's outputs or an attached earlier session's) trained with other settings than
    `params`, as {"runs/<model>/<stage>/<part>": changed settings}. A resumed stage skips finished
    parts, so they must match too. `folder`: the run folder's name when it is not the stage's."""
    paths, out, folder = RunPaths.of(params), {}, folder or stage
    for root in reversed(paths.roots):  # this run's own record of a part wins
        for done in sorted(paths.run_dir(model, folder, root=root).glob(f"*/{DONE_FILE}")):
            changed = changed_stage_settings(params, model, stage, json.loads(done.read_text()))
            key = f"runs/{model}/{folder}/{done.parent.name}"
            out.pop(key, None)
            if changed:
                out[key] = changed
    return out


def stale_stage(params, model: str, stage: str, done: dict | None, folder: str | None = None
                ) -> dict[str, dict[str, tuple]]:
    """{"runs/<model>/<stage>[/<part>]": changed settings} for the stage when it finished (`done`, its
    done.json) with other settings than `params` give now, else for its finished parts. `folder`: the
    run folder's name when it is not the stage's (a variant of the stage, e.g. "stage1-pseudo")."""
    if done is None:
        return changed_part_settings(params, model, stage, folder)
    changed = changed_stage_settings(params, model, stage, done)
    return {f"runs/{model}/{folder or stage}": changed} if changed else {}


def stale_runs(params) -> dict[str, dict[str, tuple]]:
    """stale_stage over every model x stage of params, and over the first stage's runs on the other
    source that notebook 10 trains (evaluation.pseudo_fakes.models, runs/<model>/<stage>-<source>)."""
    out = {run: changed for model in params.train.models for stage in params.train.stages
           for run, changed in stale_stage(params, model, stage, done_record(params, model, stage)).items()}
    if params.train.stages:
        first = first_stage(params)
        for model in params.evaluation.pseudo_fakes.models:
            for source in PSEUDO_SOURCES:
                folder = variant_folder(params, source)
                if folder != first:
                    out.update(stale_stage(variant_params(params, source), model, first,
                                           done_record(params, model, folder), folder))
    return out


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


def finished_as_configured(params, model: str, stage: str, folder: str | None = None) -> dict | None:
    """`done_record`, for skipping the stage: raises an InterceptorError (naming the settings and what
    to do) when the finished stage, or a finished DFDC chunk of an unfinished one, was trained with
    other settings (stage_settings) than `params`. `folder`: see `stale_stage`."""
    done = done_record(params, model, folder or stage)
    changed = stale_stage(params, model, stage, done, folder)
    if changed:
        raise InterceptorError(stale_stages_message(params, changed))
    return done
