"""The face-crop cache: sample frames, detect faces, crop, and store them once for every model and stage.

`build_cache(table, params, cache_root)` turns an index table into one crop file per video (see
`crops_file`) under `<cache_root>/<key>/`, where `key` hashes every preprocessing parameter that
changes the crops — a changed parameter never reuses stale crops, and a changed source file (size or
mtime) is processed again. Videos that cannot be decoded or show no face are recorded in
`failures.csv` and skipped; a video that should have audio but has none is recorded and kept (the
audio-visual model masks missing audio). If the share of skipped videos passes
`max_failure_rate`, the run stops with a message — the usual cause is a wrong root or detector.

FaceForensics++ / DFDC / Celeb-DF fakes reuse the face boxes detected on their original video (same
length, same camera; the DFDC winner's approach), so a fake's crop is the same region as its
original's and the detector never sees the manipulated face first.

A cache may be spread over several folders of the same configuration: the writable one of this run
and read-only ones attached from earlier sessions (`attached`; on Kaggle, the outputs of CPU-only
sessions that built the cache part by part). Entries are read from whichever folder holds them, and
`build_cache` only processes the videos none of them has. It works through the table's datasets in
the order given (the stage order) and stops, keeping every finished video, at the session's time
budget, on SIGTERM, or before the run's output folder would pass its storage budget
(`PreprocessStopped`); the next run continues from there.
"""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from interceptor_lib.config.schema import CACHE_FORMAT, PreprocessParams
from interceptor_lib.data.crops_file import CropReader
from interceptor_lib.data.extract import KEPT_REASONS, failure_record, process_video
from interceptor_lib.data.video import read_tar_sequences
from interceptor_lib.errors import MediaError, PreprocessError
from interceptor_lib.progress import progress_bar

MANIFEST_COLUMNS = ["video_id", "dataset", "label", "split", "file", "num_frames", "fps", "width", "height",
                    "duration_s", "bitrate_kbps", "has_audio", "face_rate", "box_source", "brightness",
                    "face_brightness", "sharpness", "motion", "fingerprint"]
FAILURE_COLUMNS = ["video_id", "dataset", "path", "reason", "action", "message", "fingerprint"]


class PreprocessStopped(PreprocessError):
    """Preprocessing stopped early (time budget, SIGTERM, storage budget); every finished video is kept."""


class FaceCropCache:
    """A cache directory for one preprocessing configuration (`dir`, where this run writes), plus
    read-only folders of the same configuration attached from earlier sessions (`attached`)."""

    def __init__(self, root: str | Path, params: PreprocessParams, attached: list | tuple = ()):
        self.params = params
        self.dir = Path(root) / params.cache_key()
        self.attached = [Path(d) for d in attached if Path(d).resolve() != self.dir.resolve()]

    @property
    def dirs(self) -> list[Path]:
        """Every folder of this cache, the writable one first."""
        return [self.dir, *self.attached]

    def own_entry_path(self, video_id: str) -> Path:
        """Where this run writes `video_id`'s entry."""
        return self.dir / "entries" / (video_id.replace("::", "__").replace(":", "_") + ".crops")

    def entry_path(self, video_id: str) -> Path:
        """Where `video_id`'s entry is: the first folder holding it, else where this run writes it."""
        own = self.own_entry_path(video_id)
        if self.attached and not own.exists():
            rel = own.relative_to(self.dir)
            for d in self.attached:
                if (d / rel).exists():
                    return d / rel
        return own

    def reader(self, video_id: str) -> CropReader:
        return CropReader(self.entry_path(video_id))

    def _tables(self, name: str, columns: list[str]) -> pd.DataFrame:
        parts = [pd.read_csv(d / name, keep_default_na=False) for d in self.dirs if (d / name).exists()]
        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.DataFrame(columns=columns)
        return pd.concat(parts, ignore_index=True).drop_duplicates("video_id").reset_index(drop=True)

    def manifest(self) -> pd.DataFrame:
        return self._tables("manifest.csv", MANIFEST_COLUMNS)

    def failures(self) -> pd.DataFrame:
        return self._tables("failures.csv", FAILURE_COLUMNS)

    def pending(self, table: pd.DataFrame) -> pd.DataFrame:
        """Rows of `table` not processed yet: neither cached nor recorded as skipped."""
        f = self.failures()
        done = set(self.manifest()["video_id"]) | set(f.loc[f["action"] == "skipped", "video_id"])
        return table[~table["video_id"].isin(done)]

    def usable(self, table: pd.DataFrame) -> pd.DataFrame:
        """Rows of `table` with a cached entry, with the measured `has_audio` of the manifest."""
        m = self.manifest()[["video_id", "has_audio"]].rename(columns={"has_audio": "audio_ok"})
        out = table.merge(m, on="video_id", how="inner")
        out["has_audio"] = out["audio_ok"].astype(bool)
        return out.drop(columns="audio_ok").reset_index(drop=True)


def build_cache(table: pd.DataFrame, params: PreprocessParams, cache_root: str | Path,
                progress: bool = True, attached: list | tuple = (), budget=None,
                storage_budget_gb: float | None = None, storage_root: str | Path | None = None,
                processed: list | None = None) -> FaceCropCache:
    """Fill the cache for every row of `table` (skipping rows already cached from the same source,
    here or in an `attached` read-only folder) and write `manifest.csv` and `failures.csv`. Returns
    the cache. The rows are processed dataset by dataset (and DFDC chunk by chunk) in the order they
    first appear in `table`. Raises PreprocessError when the failure ceiling is passed, and
    PreprocessStopped when `budget` (a training.budget.RunBudget) asks to stop or the next videos
    would take `storage_root` past `storage_budget_gb`; both after saving what was done. `processed`,
    when given, receives a (row, result) pair per video processed (for cpu_seconds_per_video)."""
    cache = FaceCropCache(cache_root, params, attached)
    rows = {r.video_id: r._asdict() for r in table.itertuples(index=False)}
    manifest: dict[str, dict] = {}
    failures: dict[str, dict] = {}
    previous = _read_table(cache.dir / "failures.csv", FAILURE_COLUMNS)
    old_fail = previous.set_index("video_id").to_dict("index") if len(previous) else {}
    elsewhere = {d: (_read_table(d / "manifest.csv", MANIFEST_COLUMNS), _read_table(d / "failures.csv", FAILURE_COLUMNS))
                 for d in cache.attached}
    done_elsewhere = {}  # video_id -> fingerprint, for videos an attached folder has cached or skipped
    for man, fail in elsewhere.values():
        for df in (man, fail[fail["action"] == "skipped"]):
            for vid, fp in zip(df["video_id"], df["fingerprint"]):
                done_elsewhere.setdefault(vid, str(fp))

    todo = []
    for vid, r in rows.items():
        fp = _fingerprint(r["path"], r["member"])
        path = cache.own_entry_path(vid)
        if path.exists():
            try:
                meta = CropReader(path).meta
            except (ValueError, OSError, json.JSONDecodeError):
                meta = {}
            if meta.get("fingerprint") == fp:
                manifest[vid] = _manifest_row(r, meta, path, cache.dir)
                if vid in old_fail and old_fail[vid]["reason"] in KEPT_REASONS:
                    failures[vid] = {"video_id": vid, **old_fail[vid]}
                continue
        if vid in old_fail and old_fail[vid]["fingerprint"] == fp and old_fail[vid]["action"] == "skipped":
            failures[vid] = {"video_id": vid, **old_fail[vid]}
            continue
        if vid in done_elsewhere and _same_source(done_elsewhere[vid], fp):
            continue
        todo.append(r)
    if not todo and _tables_unchanged(cache, manifest, failures):
        return cache  # nothing to do: write nothing (the folder may be read-only)
    (cache.dir / "entries").mkdir(parents=True, exist_ok=True)
    (cache.dir / "config.json").write_text(json.dumps(
        {k: getattr(params, k) for k in params.KEY_FIELDS} | {"format": CACHE_FORMAT}, indent=1))
    cached_elsewhere = {vid for man, _ in elsewhere.values() for vid in man["video_id"]}

    # Per dataset (and DFDC chunk), in table order: pass 1, everything that detects its own faces;
    # pass 2, fakes that reuse their original's boxes.
    groups: dict[tuple, list] = {}
    for r in todo:
        groups.setdefault((r["dataset"], r.get("chunk")), []).append(r)
    total = len(todo)
    state = {"done": 0}
    processed = [] if processed is None else processed
    storage = _StorageGuard(storage_root, storage_budget_gb, params.workers)

    def run(tasks, pool, bar):
        results = pool.imap_unordered(_process_task, tasks) if pool else map(_process_task, tasks)
        for res_list in results:
            bar.update(len(res_list))
            for res in res_list:
                state["done"] += 1
                if res.get("meta") is not None:
                    path = cache.own_entry_path(res["video_id"])
                    manifest[res["video_id"]] = _manifest_row(rows[res["video_id"]], res["meta"], path, cache.dir)
                    storage.add(path)
                    processed.append((rows[res["video_id"]], res))
                if res.get("failure"):
                    failures[res["video_id"]] = res["failure"]
            _check_ceiling(cache, manifest, failures, state["done"], total, params, final=False)
            reason = (budget.should_stop() if budget is not None else None) or storage.should_stop()
            if reason:
                raise PreprocessStopped(
                    f"preprocessing stopped ({reason}) after {state['done']} of {total} videos to do; every "
                    f"finished video is kept in {cache.dir}. Run it again to continue; on Kaggle, save this "
                    "session's output and attach it to the next session through train.previous_outputs "
                    "(its cache is read from there), with a fresh output_dir.")

    try:
        # one pool of workers for every pass (starting one costs each worker its imports), one bar
        with worker_pool(params.workers) as pool, \
                progress_bar(total=total, desc="face crops", disable=not progress, unit="video") as bar:
            for group in groups.values():
                first = [r for r in group if not _reuses(r, rows, params)]
                second = [r for r in group if _reuses(r, rows, params)]
                run(_tasks(first, cache, params, None), pool, bar)
                run(_tasks(second, cache, params, set(manifest) | cached_elsewhere), pool, bar)
        _check_ceiling(cache, manifest, failures, state["done"], total, params, final=True)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise PreprocessError(
            f"disk full while writing the face-crop cache in {cache.dir} ({len(manifest)} videos are cached "
            "and kept; a re-run continues from there). Free space, move preprocess.cache_dir, or use "
            "preprocess.image_format: jpg (about 5x smaller than png).") from e
    finally:
        _save_tables(cache, manifest, failures)
    return cache


def cpu_seconds_per_video(processed: list) -> dict[str, tuple[float, int]]:
    """Mean CPU seconds per video of `build_cache`'s processed videos ((row, result) pairs), as {"<dataset>.original" | "<dataset>.fake": (seconds, videos)}; a fake
    that detected its own faces counts as an original (detection is what costs)."""
    acc: dict[str, list[float]] = {}
    for r, res in processed:
        kind = "fake" if res["meta"].get("box_source") == "original" else "original"
        acc.setdefault(f"{r['dataset']}.{kind}", []).append(res.get("cpu_s", 0.0))
    return {k: (float(np.mean(v)), len(v)) for k, v in acc.items()}


def _reuses(r: dict, rows: dict, params: PreprocessParams) -> bool:
    return bool(params.reuse_original_boxes and r["original_id"] in rows and not r["member"])


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False) if path.exists() else pd.DataFrame(columns=columns)


def _tables_unchanged(cache: FaceCropCache, manifest: dict, failures: dict) -> bool:
    """Whether the cache folder's own manifest and failures already list exactly these videos."""
    own_m = _read_table(cache.dir / "manifest.csv", MANIFEST_COLUMNS)
    own_f = _read_table(cache.dir / "failures.csv", FAILURE_COLUMNS)
    return set(own_m["video_id"]) == set(manifest) and set(own_f["video_id"]) == set(failures)


def _same_source(recorded: str, now: str) -> bool:
    """Whether a fingerprint recorded by another session names the same source file as `now`: the
    same size (and tar member); the modification time differs once a dataset is attached anew."""
    def parts(fp: str):
        head, _, member = fp.partition("::")
        return head.split("-")[0], member
    return recorded == now or (now != "missing" and parts(recorded) == parts(now))


class _StorageGuard:
    """Stops preprocessing before `root` passes `budget_gb`: the bytes under `root` are counted once,
    then each written entry is added; the next `workers` entries (in flight) are reserved at the
    size of the largest one so far."""

    def __init__(self, root, budget_gb: float | None, workers: int):
        self.limit = None if budget_gb is None or root is None else budget_gb * 2**30
        self.used = tree_bytes(Path(root)) if self.limit is not None else 0
        self.largest, self.workers = 0, max(1, workers)

    def add(self, path: Path) -> None:
        if self.limit is not None:
            size = path.stat().st_size
            self.used += size
            self.largest = max(self.largest, size)

    def should_stop(self) -> str | None:
        if self.limit is not None and self.used + 2 * self.workers * self.largest > self.limit:
            return f"storage budget: {self.used / 2**30:.2f} of {self.limit / 2**30:.2f} GiB used"
        return None


def tree_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.is_dir() else 0


def _tasks(rows, cache, params, manifest):
    """Videos are one task each; the sequences of one tar archive form one task (one read pass)."""
    p = asdict(params)
    tars: dict[str, list] = {}
    tasks = []
    for r in rows:
        item = {"row": r, "out": str(cache.own_entry_path(r["video_id"])),
                "fingerprint": _fingerprint(r["path"], r["member"]), "reuse": None}
        if manifest is not None and r["original_id"] in manifest:  # original cached (here or attached)
            orig = CropReader(cache.entry_path(r["original_id"]))
            item["reuse"] = {"frame_indices": orig.frame_indices.tolist(), "boxes": orig.boxes.tolist(),
                             "found": orig.found.tolist(), "probed": orig.probed.tolist(),
                             "fps": float(orig.meta.get("fps") or 0.0), "source": r["original_id"]}
        if r["member"] and os.path.isfile(r["path"]):
            tars.setdefault(r["path"], []).append(item)
        else:
            tasks.append({"params": p, "items": [item], "tar": None})
    tasks += [{"params": p, "items": items, "tar": path} for path, items in tars.items()]
    return tasks


def _process_task(task) -> list[dict]:
    params = PreprocessParams(**task["params"])
    t0 = time.process_time()
    frames_by_member = None
    if task["tar"]:
        try:
            frames_by_member = read_tar_sequences(task["tar"], [i["row"]["member"] for i in task["items"]])
        except MediaError as e:
            return [failure_record(i, e) for i in task["items"]]
    out = []
    for item in task["items"]:
        frames = frames_by_member[item["row"]["member"]] if frames_by_member is not None else None
        try:
            out.append(process_video(item, params, frames))
        except MediaError as e:
            out.append(failure_record(item, e))
    cpu = (time.process_time() - t0) / max(1, len(out))  # a tar archive's sequences share one read
    return [{**o, "cpu_s": cpu} for o in out]


def _check_ceiling(cache, manifest, failures, done, total, params, final):
    skipped = [f for f in failures.values() if f["action"] == "skipped"]
    seen = len(manifest) + len(skipped)
    if not seen or (not final and done < min(total, 20)):
        return
    rate = len(skipped) / seen
    if rate > params.max_failure_rate:
        _save_tables(cache, manifest, failures)
        reasons = dict(Counter(f["reason"] for f in skipped))
        raise PreprocessError(
            f"{len(skipped)} of {seen} videos could not be used ({rate:.0%} > max_failure_rate "
            f"{params.max_failure_rate:.0%}); reasons {reasons}; first: {skipped[0]['message']}. "
            f"All failures are listed in {cache.dir / 'failures.csv'}. Check the dataset roots and the face "
            "detector settings, or raise preprocess.max_failure_rate.")


def _save_tables(cache, manifest, failures):
    for name, rows, cols in (("manifest.csv", manifest.values(), MANIFEST_COLUMNS),
                             ("failures.csv", failures.values(), FAILURE_COLUMNS)):
        df = pd.DataFrame(list(rows), columns=cols).sort_values("video_id") if rows else pd.DataFrame(columns=cols)
        tmp = cache.dir / (name + ".tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, cache.dir / name)


def _manifest_row(r: dict, meta: dict, path: Path, root: Path) -> dict:
    row = {c: meta.get(c) for c in MANIFEST_COLUMNS}
    row.update(video_id=r["video_id"], dataset=r["dataset"], label=r["label"], split=r["split"],
               file=str(path.relative_to(root)))
    return row


def _fingerprint(path: str, member: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}-{st.st_mtime_ns}" + (f"::{member}" if member else "")


class worker_pool:
    """A pool of `n` spawned workers, or none (in-process) for n <= 1. Spawn, not fork: forking a
    process whose OpenCV / FFmpeg thread pools are running can deadlock the children."""

    def __init__(self, n: int):
        self.n = n
        self.pool = None

    def __enter__(self):
        if self.n > 1:
            self.pool = mp.get_context("spawn").Pool(self.n, initializer=cv2.setNumThreads, initargs=(1,))
        return self.pool

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()
        return False
