"""The data stage of the chain (notebook 00, `python -m interceptor_lib prepare`): generate the demo
corpus when the profile asks for it, index every enabled dataset, check leakage, fill the cache."""

from __future__ import annotations

import json
import time

import pandas as pd

from interceptor_lib.data.cache import FaceCropCache, build_cache
from interceptor_lib.data.indexers import index_dataset, official_test_ids
from interceptor_lib.data.table import check_leakage, read_table, write_table
from interceptor_lib.paths import RunPaths


def generate_demo_data(params, progress: bool = True) -> dict | None:
    """Write the synthetic corpus if the profile asks for it (skipped when already complete)."""
    if not params.demo_data.generate:
        return None
    from interceptor_lib.data.demo import make_demo_data

    d = params.demo_data
    report = make_demo_data(d.out, seed=d.seed, scale=d.scale, artifact_strength=d.artifact_strength,
                            workers=params.preprocess.workers, progress=progress)
    return report.to_dict() if hasattr(report, "to_dict") else dict(report)


def index_datasets(params) -> tuple[pd.DataFrame, dict]:
    """Index every enabled dataset, write index/<name>.csv and index/all.csv, check leakage.
    Returns (table, leakage report)."""
    paths = RunPaths.of(params).ensure()
    tables, official = [], {}
    for name, d in params.enabled_datasets().items():
        df = index_dataset(name, d.root, **d.options)
        write_table(df, paths.index_file(name))
        tables.append(df)
        # WildDeepfake's test split is its folder names (nothing external to check, and listing its
        # test tars again would decompress them); the others have a test list file.
        ids = official_test_ids(name, d.root, **d.options) if name != "wilddeepfake" else set()
        if ids:
            official[name] = ids
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    report = check_leakage(table, official)
    write_table(table, paths.index_file("all"))
    (paths.reports / "leakage.json").write_text(json.dumps(report, indent=1))
    return table, report


def load_index(params) -> pd.DataFrame:
    return read_table(RunPaths.of(params).index_file("all"))


def crop_cache(params) -> FaceCropCache:
    return FaceCropCache(RunPaths.of(params).cache_root, params.preprocess)


def prepare_data(params, progress: bool = True) -> dict:
    """All of the data stage; returns a summary dict (also written to reports/prepare_data.json)."""
    t0 = time.perf_counter()
    demo = generate_demo_data(params, progress)
    t1 = time.perf_counter()
    table, leakage = index_datasets(params)
    cache = build_cache(table, params.preprocess, RunPaths.of(params).cache_root, progress=progress)
    t2 = time.perf_counter()
    summary = record_prepare_summary(params, table, cache, demo, leakage,
                                     {"demo_data_s": t1 - t0, "index_and_cache_s": t2 - t1})
    if params.train.pretext.steps > 0:  # the backbone the models start from, on profiles without ImageNet weights
        from interceptor_lib.training.pretext import pretrain_backbone
        summary["pretext"] = pretrain_backbone(params, progress)
    return summary


def record_prepare_summary(params, table, cache, demo, leakage, timings) -> dict:
    man, fail = cache.manifest(), cache.failures()
    summary = {
        "profile": params.profile, "videos_indexed": int(len(table)), "videos_cached": int(len(man)),
        "failures": fail.groupby(["reason", "action"]).size().rename("n").reset_index().to_dict("records"),
        "face_rate_mean": float(man["face_rate"].astype(float).mean()) if len(man) else None,
        "cache_dir": str(cache.dir), "leakage": leakage, "demo_data": demo,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    (RunPaths.of(params).ensure().reports / "prepare_data.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
