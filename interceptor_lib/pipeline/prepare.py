"""The data stage of the chain (notebook 00, `python -m interceptor_lib prepare`): generate the demo
corpus when the profile asks for it, index every enabled dataset, check leakage, fill the cache."""

from __future__ import annotations

import json
import time

import pandas as pd

from interceptor_lib.data.cache import FaceCropCache, build_cache, cpu_seconds_per_video
from interceptor_lib.data.indexers import index_dataset, official_test_ids
from interceptor_lib.data.inspection import balanced_chunk_order
from interceptor_lib.data.registry import DATASETS
from interceptor_lib.data.table import check_leakage, read_table, write_table
from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import RunPaths


def generate_demo_data(params, progress: bool = True) -> dict | None:
    """Write the synthetic corpus if the profile asks for it (skipped when already complete)."""
    if not params.demo_data.generate:
        return None
    from interceptor_lib.synthetic import make_demo_data

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
        # a test split given by folder names has nothing external to check (and listing WildDeepfake's
        # test tars again would decompress them)
        ids = official_test_ids(name, d.root, **d.options) if DATASETS[name].test_list else set()
        if ids:
            official[name] = ids
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    report = check_leakage(table, official)
    write_table(table, paths.index_file("all"))
    (paths.reports / "leakage.json").write_text(json.dumps(report, indent=1))
    return table, report


def load_index(params) -> pd.DataFrame:
    """The index table notebook 00 (`prepare`) wrote; a clear error when it has not run for this profile."""
    path = RunPaths.of(params).index_file("all")
    if not path.is_file():
        raise InterceptorError(f"no index table at {path}: the data of profile {params.profile!r} are not prepared "
                               f"yet; run notebook 00_prepare_data (or python -m interceptor_lib prepare "
                               f"--profile {params.profile}) first")
    return read_table(path)


def crop_cache(params) -> FaceCropCache:
    """The run's face-crop cache: its own folder, plus the same configuration's folders in the
    attached earlier outputs (train.previous_outputs), read-only."""
    paths = RunPaths.of(params)
    return FaceCropCache(paths.cache_root, params.preprocess, paths.attached_caches(params.preprocess.cache_key()))


def preprocess_order(params, table: pd.DataFrame) -> pd.DataFrame:
    """`table` in the order the cache is built: the datasets in the order their stages train them
    (datasets without a stage after), DFDC chunk by chunk in stage 4's chunk order, so that a cache
    stopped part-way (time or storage budget) is complete for the first stages."""
    stages = [st.dataset for _, st in sorted(params.train.stages.items())]
    rank_ds = {d: i for i, d in enumerate(dict.fromkeys(stages + sorted(set(table["dataset"]))))}
    chunk_order = next((st.chunk_order for st in params.train.stages.values() if DATASETS[st.dataset].chunked
                        and st.chunk_order), None) or balanced_chunk_order(table)["chunk"].tolist()
    rank_chunk = {int(c): i for i, c in enumerate(chunk_order)}
    key = pd.DataFrame({"ds": table["dataset"].map(rank_ds),
                        "chunk": [rank_chunk.get(int(c), len(rank_chunk)) if DATASETS[d].chunked else 0
                                  for d, c in zip(table["dataset"], table["chunk"])]}, index=table.index)
    return table.loc[key.sort_values(["ds", "chunk"], kind="stable").index]


def build_crop_cache(params, table: pd.DataFrame, progress: bool = True) -> FaceCropCache:
    """Fill the run's cache (build_cache) for `table` in preprocess_order, reading the attached
    earlier sessions' caches, within the session's time budget (train.time_budget_h, the clock shared
    with training) and the output folder's storage budget (train.storage_budget_gb, cache included
    when it lies inside output_dir); stops with PreprocessStopped, keeping every finished video.
    Records the measured CPU seconds per video for `plan`."""
    from interceptor_lib.training import throughput
    from interceptor_lib.training.budget import RunBudget

    paths = RunPaths.of(params)
    t = params.train
    inside = paths.cache_root.resolve().is_relative_to(paths.root.resolve())
    processed: list = []
    with RunBudget(t.time_budget_h * 3600 if t.time_budget_h else None) as budget:
        try:
            cache = build_cache(preprocess_order(params, table), params.preprocess, paths.cache_root, progress,
                                attached=paths.attached_caches(params.preprocess.cache_key()), budget=budget,
                                storage_budget_gb=t.storage_budget_gb, storage_root=paths.root if inside else None,
                                processed=processed)
        finally:  # a stopped session's measurements are kept too: the next plan uses them
            for key, (seconds, n) in cpu_seconds_per_video(processed).items():
                if seconds > 0:
                    throughput.record(paths.root, f"preprocess.cpu_s_per_video.{key}", seconds, n)
    return cache


#: room kept beside what require_room is asked for: the file's header and record, and the reports and
#: tables the session writes after it (a few KiB each)
REPORT_SLACK_BYTES = 256 * 2**10


def require_room(params, nbytes: int, what: str) -> None:
    """Raise PreprocessStopped when writing `nbytes` more would take output_dir past
    train.storage_budget_gb (nothing is written; the next session, with this one's output attached,
    continues from there)."""
    from interceptor_lib.data.cache import PreprocessStopped, _tree_bytes

    budget = params.train.storage_budget_gb
    if budget is None:
        return
    used = _tree_bytes(RunPaths.of(params).root)
    if used + nbytes + REPORT_SLACK_BYTES > budget * 2**30:
        raise PreprocessStopped(
            f"{what} needs {nbytes / 2**20:.1f} MiB but output_dir {params.output_dir} holds {used / 2**20:.1f} of "
            f"its {budget * 1024:.1f} MiB storage budget (train.storage_budget_gb); save this session's output and "
            "continue in a new session with it attached through train.previous_outputs")


def prepare_data(params, progress: bool = True) -> dict:
    """All of the data stage; returns a summary dict (also written to reports/prepare_data.json).
    Missing backbone weights stop it first, not after hours of preprocessing."""
    from interceptor_lib.models.backbone import check_backbone_weights  # late: it imports torch and timm

    check_backbone_weights(params.train, params.profile)
    t0 = time.perf_counter()
    demo = generate_demo_data(params, progress)
    t1 = time.perf_counter()
    table, leakage = index_datasets(params)
    cache = build_crop_cache(params, table, progress)
    t2 = time.perf_counter()
    summary = record_prepare_summary(params, table, cache, demo, leakage,
                                     {"demo_data_s": t1 - t0, "index_and_cache_s": t2 - t1})
    if params.train.pretext.steps > 0:  # the backbone the models start from, on profiles without ImageNet weights
        summary["pretext"] = pretrain_backbone(params, progress)
    return summary


def pretrain_backbone(params, progress: bool = True) -> dict:
    """The pretext backbone of `params` (training.pretext.pretrain_backbone) from the run's real
    training crops, within the output folder's storage budget; returns its record."""
    from interceptor_lib.training import pretext  # late: it imports torch and timm

    crops = pretext.real_training_crops(load_index(params), crop_cache(params))
    return pretext.pretrain_backbone(params.train.pretext, params.train.backbone, params.seed, crops,
                                     lambda nbytes, what: require_room(params, nbytes, what), progress)


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
