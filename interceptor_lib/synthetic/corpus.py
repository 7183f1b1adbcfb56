"""`make_demo_data`: plan, render in a process pool, write metadata, measure, write the manifest.

The manifest (`demo_manifest.json`) is written last: its presence with the same seed / scale /
strength and `"complete": true` means the corpus is whole, and a second call returns the stored
report without touching any file. Anything else (no manifest, other arguments, a missing file)
regenerates: before writing, a marker (`.interceptor_demo.json`) lists every file the corpus will
write, and only files listed by an earlier marker or manifest are removed. A file in the corpus's
folders that no marker lists is the user's: the call refuses, naming it, unless `overwrite=True`.
Other content of `out_dir` is never touched.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from interceptor_lib import __version__
from interceptor_lib.errors import InterceptorError
from interceptor_lib.progress import progress_bar
from interceptor_lib.synthetic.detect_rate import SIDE_TABLE, measure_face_detection_rate
from interceptor_lib.synthetic.jobs import init_worker, run_job
from interceptor_lib.synthetic.layouts import DEMO_ROOTS, PLANNERS, DatasetPlan
from interceptor_lib.synthetic.scales import get_scale

MANIFEST = "demo_manifest.json"
MARKER = ".interceptor_demo.json"  # the files this corpus wrote (or is writing): what it may remove
NOTE = ("Synthetic demo corpus: procedurally rendered faces with injected artifacts. A test harness "
        "for the pipeline; numbers measured on it say nothing about real-world accuracy.")
_FIRST_COLUMNS = ["dataset", "relpath", "label", "method", "artifact", "strength", "artifact_params", "original",
                  "has_audio", "frames", "fps", "width", "height", "crf", "jpeg_quality"]


@dataclass
class DemoReport:
    """What `make_demo_data` produced (or found already complete)."""

    out_dir: str
    seed: int
    scale: str
    artifact_strength: float
    counts: dict                    # dataset -> {"real": n, "fake": n} (sequences for WildDeepfake)
    seconds: float                  # generation time (of the run that generated the corpus)
    face_detection_rate: float
    face_detection: dict = field(default_factory=dict)
    roots: dict = field(default_factory=dict)  # dataset key -> absolute root folder
    files: int = 0
    version: str = __version__
    skipped: bool = False           # True when an existing complete corpus was reused
    note: str = NOTE

    def to_dict(self) -> dict:
        return asdict(self)


def make_demo_data(out_dir: str | Path, seed: int = 0, scale: str = "small", artifact_strength: float = 1.0,
                   workers: int = 2, progress: bool = True, overwrite: bool = False) -> DemoReport:
    """Generate the synthetic FF++ / Celeb-DF v2 / WildDeepfake / DFDC corpus under `out_dir` in
    the datasets' official layouts (roots in `DEMO_ROOTS`), plus `demo_artifacts.csv` (one row
    per video or sequence: label, artifact family and strength, scene conditions) and
    `demo_manifest.json`. Deterministic: same seed, scale and strength give byte-identical media.
    Returns the stored report without work when a complete corpus with the same arguments exists.
    Refuses (InterceptorError) when `out_dir` is a file, or when the corpus's folders hold files it
    did not write, unless `overwrite` (which then removes those folders whole).
    """
    spec = get_scale(scale)
    if not artifact_strength >= 0:
        raise ValueError(f"artifact_strength must be >= 0 (0 = fakes without artifacts), got {artifact_strength}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise InterceptorError(f"the demo corpus goes into a folder; {out_dir} is a file")
    existing = _complete_report(out_dir, seed, scale, artifact_strength)
    if existing is not None:
        return existing
    t0 = time.perf_counter()
    plans = {name: planner(int(seed), spec, float(artifact_strength)) for name, planner in PLANNERS.items()}
    planned = sorted({j.relpath for p in plans.values() for j in p.jobs} | {r for p in plans.values() for r in p.files}
                     | {SIDE_TABLE, MANIFEST})
    _remove_stale(out_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text(json.dumps({"note": "written by interceptor_lib make-demo-data: the files it "
                                              "may replace", "files": planned}, indent=0))
    _render(out_dir, plans, int(workers), progress)
    rows = [r for p in plans.values() for r in p.rows]
    for plan in plans.values():
        for rel, text in plan.files.items():
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / rel).write_text(text)
    _write_side_table(out_dir / SIDE_TABLE, rows)
    detection = measure_face_detection_rate(out_dir, seed=int(seed))
    report = DemoReport(
        out_dir=str(out_dir), seed=int(seed), scale=scale, artifact_strength=float(artifact_strength),
        counts=_counts(rows), seconds=round(time.perf_counter() - t0, 2), face_detection_rate=detection.rate,
        face_detection=detection.to_dict(), roots={k: str(out_dir / v) for k, v in DEMO_ROOTS.items()},
        files=sum(len(p.jobs) + len(p.files) for p in plans.values()))
    manifest = {**report.to_dict(), "complete": True, "scale_spec": asdict(spec),
                "media": sorted(j.relpath for p in plans.values() for j in p.jobs)}
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out_dir / MANIFEST)
    if progress:
        print(f"demo corpus ({scale}, seed {seed}) written to {out_dir} in {report.seconds:.1f} s; "
              f"Haar face detection rate {report.face_detection_rate:.3f}")
    return report


def _render(out_dir: Path, plans: dict[str, DatasetPlan], workers: int, progress: bool) -> None:
    jobs = sorted((j for p in plans.values() for j in p.jobs), key=lambda j: (-j.cost, j.relpath))
    bar = None
    if progress:
        bar = progress_bar(total=len(jobs), desc="demo corpus", unit="file")
    try:
        if workers == 1:
            init_worker()
            for job in jobs:
                run_job((out_dir, job))
                if bar is not None:
                    bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")  # safe beside torch/OpenMP and in notebooks
            with ctx.Pool(workers, initializer=init_worker) as pool:
                for _ in pool.imap_unordered(run_job, [(out_dir, j) for j in jobs], chunksize=1):
                    if bar is not None:
                        bar.update()
    finally:
        if bar is not None:
            bar.close()


def _write_side_table(path: Path, rows: list[dict]) -> None:
    extra = sorted({k for r in rows for k in r} - set(_FIRST_COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_FIRST_COLUMNS + extra, restval="", lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r["relpath"]):
        writer.writerow(row)
    path.write_text(buf.getvalue())


def _counts(rows: list[dict]) -> dict:
    counts = {k: {"real": 0, "fake": 0} for k in DEMO_ROOTS}
    for r in rows:
        counts[r["dataset"]]["fake" if r["label"] == 1 else "real"] += 1
    return counts


def _complete_report(out_dir: Path, seed, scale, strength) -> DemoReport | None:
    """The stored report if `out_dir` holds a complete corpus made with these arguments."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = (manifest.get("complete") is True and manifest.get("seed") == int(seed)
            and manifest.get("scale") == scale and manifest.get("artifact_strength") == float(strength)
            and manifest.get("version") == __version__)
    if not same or not (out_dir / SIDE_TABLE).is_file():
        return None
    if not all((out_dir / rel).is_file() for rel in manifest.get("media", [])):
        return None
    fields = {k: manifest[k] for k in DemoReport.__dataclass_fields__ if k in manifest}
    return DemoReport(**{**fields, "skipped": True})


def _owned(out_dir: Path) -> set[str]:
    """Relative paths an earlier run listed as its own (its marker, or its manifest's media)."""
    owned: set[str] = set()
    for name, key in ((MARKER, "files"), (MANIFEST, "media")):
        try:
            owned |= set(json.loads((out_dir / name).read_text()).get(key, []))
        except (OSError, ValueError, AttributeError):
            continue
    return owned | ({SIDE_TABLE, MANIFEST, MANIFEST + ".tmp", MARKER} if owned else set())


def _remove_stale(out_dir: Path, overwrite: bool) -> None:
    """Remove what a previous (possibly interrupted) run wrote, and only that: the manifest first,
    then the listed files, then folders left empty. Raise, removing nothing, when the corpus's
    folders or file names hold anything else (unless `overwrite`: then its folders go whole)."""
    if not out_dir.is_dir():
        return
    owned = _owned(out_dir)
    ours = [out_dir / r for r in DEMO_ROOTS.values()] + [out_dir / n for n in (SIDE_TABLE, MANIFEST)]
    present = [f for p in ours for f in ([p] if p.is_file() else sorted(p.rglob("*")) if p.is_dir() else [])
               if not f.is_dir()]
    foreign = [f for f in present if f.relative_to(out_dir).as_posix() not in owned]
    if foreign and not overwrite:
        shown = "\n  ".join(str(f) for f in foreign[:5]) + (f"\n  ... and {len(foreign) - 5} more"
                                                              if len(foreign) > 5 else "")
        raise InterceptorError(
            f"{out_dir} holds {len(foreign)} file(s) in the demo corpus's folders that make-demo-data did not "
            f"write:\n  {shown}\nNothing was changed. Choose an empty or new --out folder, or pass --overwrite "
            f"(overwrite=True) to replace the folders {sorted(DEMO_ROOTS.values())} in {out_dir}.")
    for name in (MANIFEST, MANIFEST + ".tmp"):
        (out_dir / name).unlink(missing_ok=True)
    if overwrite:
        for p in ours:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        return
    for f in present:
        f.unlink(missing_ok=True)
    for root in DEMO_ROOTS.values():
        for d in sorted((out_dir / root).rglob("*"), key=lambda p: -len(p.parts)) if (out_dir / root).is_dir() else []:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        if (out_dir / root).is_dir() and not any((out_dir / root).iterdir()):
            (out_dir / root).rmdir()
