"""How many videos each dataset (or DFDC chunk) holds per split and class: from the datasets'
published sizes (data.registry) or from a prepared run's index table."""

from __future__ import annotations

import pandas as pd

from interceptor_lib.data.inspection import balanced_chunk_order
from interceptor_lib.data.registry import DATASETS
from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import RunPaths
from interceptor_lib.pipeline.plan.records import KINDS, Part


def planned_datasets(params) -> list[str]:
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
