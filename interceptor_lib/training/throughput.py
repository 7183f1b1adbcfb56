"""Measured throughput, kept beside a run's outputs so that the plan (interceptor_lib.pipeline.plan) uses what
a session really achieved instead of the estimates in params (`plan.*`).

`<output_dir>/reports/throughput.json` holds {key: {"value": v, "n": n}}, e.g.

    preprocess.cpu_s_per_video.<dataset>.original   CPU-seconds to preprocess one original video
    preprocess.cpu_s_per_video.<dataset>.fake       ... one fake (it reuses its original's boxes)
    preprocess.cache_mb_per_video.<dataset>         MB of cache per video
    train.images_per_s.<model>                      training images per second per GPU (the run's
                                                    total over its number of GPUs)
    eval.images_per_s                               inference images per second on one GPU

measured at the run's own preprocessing settings (face size, frames). `n` is how many units the
value was measured over (videos, images); recording a key again keeps the running mean over all
the measurements, weighted by `n`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from pathlib import Path

from interceptor_lib.errors import InterceptorError

from interceptor_lib.layout import RunPaths


@contextlib.contextmanager
def _locked(folder: Path):
    """Hold an exclusive lock on `folder` (models trained in parallel record into the same file)."""
    try:
        import fcntl  # POSIX (Kaggle, Colab, Linux); elsewhere records are not serialised
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        warnings.warn(f"{path} is unreadable ({e}); its measurements are ignored (delete it to start afresh)")
        return {}
    return data if isinstance(data, dict) else {}


def record(output_dir, key: str, value: float, n: int) -> None:
    """Merge the measurement `value` of `key` over `n` units into <output_dir>/reports/throughput.json,
    atomically (a killed run leaves the previous file whole)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InterceptorError(f"throughput {key!r}: a measurement must be a positive number, got {value!r}")
    if not (isinstance(n, int) and n >= 1):
        raise InterceptorError(f"throughput {key!r}: n (units measured) must be an integer >= 1, got {n!r}")
    path = RunPaths.at(output_dir).throughput_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        data = _read(path) if path.is_file() else {}
        old = data.get(key)
        if isinstance(old, dict) and old.get("n", 0) >= 1 and old.get("value", 0) > 0:
            total = old["n"] + n
            value, n = (old["value"] * old["n"] + value * n) / total, total
        data[key] = {"value": float(value), "n": int(n)}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


def measured(roots: list) -> dict[str, float]:
    """{key: value} from <root>/reports/throughput.json of each root that has one (None roots are
    skipped); the first root holding a key wins (this run's folder before the attached ones)."""
    out: dict[str, float] = {}
    for root in roots:
        path = RunPaths.at(root).throughput_file if root else None
        if path is None or not path.is_file():
            continue
        for key, entry in _read(path).items():
            value = entry.get("value") if isinstance(entry, dict) else None
            if key not in out and isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
                out[key] = float(value)
    return out
