"""The common video table every indexer returns, deterministic group splits and leakage checks.

One row per video (or, for WildDeepfake, per face sequence). Labels follow the project convention
**fake = 1, real = 0** whatever the dataset's own files say (Celeb-DF's test list uses 1 = real).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import pandas as pd

from interceptor_lib.data.registry import DATASETS as REGISTRY
from interceptor_lib.errors import LeakageError

#: Column -> meaning. Every indexer returns exactly these columns, in this order.
COLUMNS: dict[str, str] = {
    "video_id": "unique over all datasets: '<dataset>/<relative id>'",
    "path": "absolute path of the video file, tar archive or image folder",
    "label": "1 = fake, 0 = real",
    "split": "train | val | test",
    "dataset": "ffpp | celebdf | wilddeepfake | dfdc",
    "method": "manipulation method of a fake ('real' for real videos)",
    "group": "leakage-control group: no group may appear in two splits",
    "chunk": "DFDC part number (-1 elsewhere)",
    "has_audio": "the dataset ships an audio track for this video (checked again at preprocessing)",
    "original_id": "video_id of the real video a fake was made from, '' when unknown or real",
    "member": "inside `path`: tar member prefix or file-name key of a frame sequence, '' for videos",
}
SPLITS = ("train", "val", "test")
DATASETS = tuple(REGISTRY)  # in the progressive-training order

_DTYPES = {"label": "int64", "chunk": "int64", "has_audio": "bool"}


def make_table(rows: Iterable[Mapping]) -> pd.DataFrame:
    """Build a table from row dicts, fill optional columns, order columns and check values."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        df = pd.DataFrame(columns=list(COLUMNS))
    defaults = {"chunk": -1, "has_audio": False, "original_id": "", "member": "", "method": "real"}
    for col, value in defaults.items():
        if col not in df.columns:
            df[col] = value
        else:
            df[col] = df[col].fillna(value) if col != "method" else df[col]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"table rows lack columns {missing}; expected {list(COLUMNS)}")
    df = df[list(COLUMNS)].astype(_DTYPES)
    for col in ("video_id", "path", "split", "dataset", "method", "group", "original_id", "member"):
        df[col] = df[col].astype(str)
    validate_table(df)
    return df.sort_values(["dataset", "split", "video_id"], kind="stable").reset_index(drop=True)


def validate_table(df: pd.DataFrame) -> None:
    """Raise ValueError if a table breaks the schema (labels, splits, duplicate ids)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    bad_labels = set(df["label"].unique()) - {0, 1}
    if bad_labels:
        raise ValueError(f"labels must be 0 (real) or 1 (fake), found {sorted(bad_labels)}")
    bad_splits = set(df["split"].unique()) - set(SPLITS)
    if bad_splits:
        raise ValueError(f"splits must be one of {SPLITS}, found {sorted(bad_splits)}")
    dup = df["video_id"][df["video_id"].duplicated()]
    if len(dup):
        raise ValueError(f"duplicate video_id values, e.g. {dup.iloc[:3].tolist()}")


def read_table(path) -> pd.DataFrame:
    """Read a table written by `write_table` (CSV), restoring dtypes; empty strings stay strings."""
    df = pd.read_csv(path, dtype={c: str for c in COLUMNS if c not in _DTYPES}, keep_default_na=False)
    df = df.astype(_DTYPES)
    validate_table(df)
    return df


def write_table(df: pd.DataFrame, path) -> None:
    validate_table(df)
    df.to_csv(path, index=False)


def group_split(group: str, fractions: Mapping[str, float], seed: int = 0) -> str:
    """Assign a group to a split by hashing it: deterministic, independent of row order and of
    which other groups exist (so a DFDC group spread over chunks lands in one split everywhere).

    `fractions` maps split name -> share, e.g. {"train": 0.8, "val": 0.1, "test": 0.1}.
    """
    total = sum(fractions.values())
    if total <= 0:
        raise ValueError(f"split fractions must sum to > 0, got {dict(fractions)}")
    h = int.from_bytes(hashlib.sha256(f"{seed}:{group}".encode()).digest()[:8], "big")
    u = h / 2**64 * total
    acc = 0.0
    for name, share in fractions.items():
        acc += share
        if u < acc:
            return name
    return list(fractions)[-1]


def hold_out_groups(groups: Iterable[str], fraction: float, seed: int = 0,
                    held: str = "val", rest: str = "train") -> dict[str, str]:
    """Split a set of groups into `held` (about `fraction` of the groups, at least one when there
    are two or more) and `rest`, deterministically from the seed."""
    uniq = sorted(set(groups))
    if not 0 <= fraction < 1:
        raise ValueError(f"hold-out fraction must be in [0, 1), got {fraction}")
    ranked = sorted(uniq, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    n_held = int(round(fraction * len(ranked)))
    if fraction > 0 and n_held == 0 and len(ranked) >= 2:
        n_held = 1
    held_set = set(ranked[:n_held])
    return {g: (held if g in held_set else rest) for g in uniq}


def group_leaks(df: pd.DataFrame, splits: Iterable[str] = SPLITS) -> pd.DataFrame:
    """Groups that appear in more than one of `splits`: one row per (dataset, group) with its splits."""
    sub = df[df["split"].isin(list(splits))]
    per = sub.groupby(["dataset", "group"])["split"].agg(lambda s: sorted(set(s)))
    leaks = per[per.map(len) > 1]
    return leaks.rename("splits").reset_index()


def check_leakage(df: pd.DataFrame, official_test: Mapping[str, Iterable[str]] | None = None) -> dict:
    """Raise LeakageError if any group spans two splits, or a video of an official test list is not
    in `test`. Returns a small report (counts per dataset) for notebooks.

    Celeb-DF's official test list is a fixed, published split whose identities also occur in its
    training videos; its groups are identities, so for Celeb-DF only train/val are checked for group
    overlap and the test list is checked for containment (see `index_celebdf`).
    """
    report = {}
    for dataset, sub in df.groupby("dataset"):
        splits = ("train", "val") if dataset in REGISTRY and REGISTRY[dataset].test_shares_groups else SPLITS
        leaks = group_leaks(sub, splits)
        if len(leaks):
            ex = leaks.iloc[0]
            raise LeakageError(
                f"{dataset}: {len(leaks)} group(s) appear in more than one split, e.g. group "
                f"{ex['group']!r} in {ex['splits']}; a fake and its original (or one identity) must "
                "stay in one split")
        report[dataset] = {"groups": int(sub["group"].nunique()), "videos": int(len(sub)),
                           "groups_checked_over": list(splits)}
    for dataset, ids in (official_test or {}).items():
        ids = set(ids)
        sub = df[df["dataset"] == dataset]
        outside = sub[sub["video_id"].isin(ids) & (sub["split"] != "test")]
        if len(outside):
            raise LeakageError(
                f"{dataset}: {len(outside)} video(s) of the official test list are not in the test "
                f"split, e.g. {outside['video_id'].iloc[0]!r} in {outside['split'].iloc[0]!r}")
        report.setdefault(dataset, {})["official_test_videos"] = len(ids)
    return report


def class_counts(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Real / fake counts and the fake share per `by` columns (e.g. ['dataset', 'split'])."""
    out = df.pivot_table(index=by, columns="label", values="video_id", aggfunc="count", fill_value=0)
    out = out.rename(columns={0: "real", 1: "fake"}).reindex(columns=["real", "fake"], fill_value=0)
    out["total"] = out["real"] + out["fake"]
    out["fake_share"] = (out["fake"] / out["total"]).round(3)
    out.columns.name = None
    return out.reset_index()
