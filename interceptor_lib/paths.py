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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

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
        """Throughput measured by this run (interceptor_lib.throughput), read by `plan`."""
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
