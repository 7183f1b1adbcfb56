"""Dataset report for notebook 01: counts, class balance, DFDC chunk order, face-detection rate,
per-video statistics and sample face grids. Tables are pandas DataFrames; figures are matplotlib."""

from __future__ import annotations

import numpy as np
import pandas as pd

from interceptor_lib.data.pseudo_fakes import blend_rng, self_blend
from interceptor_lib.data.registry import DATASETS
from interceptor_lib.data.table import class_counts

STAT_COLUMNS = ["brightness", "face_brightness", "sharpness", "motion", "width", "height", "bitrate_kbps",
                "duration_s", "fps"]


def balanced_chunk_order(table: pd.DataFrame) -> pd.DataFrame:
    """Per training part of the chunked dataset (DFDC): real / fake counts, fake share and balance =
    minority / majority class count; ordered most to least balanced (ties by part number), the order
    stage 4 trains in by default. The reference design hard-codes [9, 8, 3, 5, 7, 2, 6, 4, 1, 0] for
    its copy; this computes the order from the data."""
    chunked = [name for name, e in DATASETS.items() if e.chunked]
    d = table[table["dataset"].isin(chunked) & (table["chunk"] >= 0) & (table["split"] == "train")]
    if d.empty:
        return pd.DataFrame(columns=["chunk", "real", "fake", "total", "fake_share", "balance", "rank"])
    c = class_counts(d, ["chunk"])
    c["balance"] = (c[["real", "fake"]].min(axis=1) / c[["real", "fake"]].max(axis=1).clip(lower=1)).round(3)
    c = c.sort_values(["balance", "chunk"], ascending=[False, True]).reset_index(drop=True)
    c["rank"] = np.arange(1, len(c) + 1)
    return c


def chunk_order_comparison(order: pd.DataFrame, reference_order: list[int]) -> pd.DataFrame:
    """The computed order next to the reference design's, position by position."""
    n = max(len(order), len(reference_order))
    computed = order["chunk"].tolist() + [None] * (n - len(order))
    reference = list(reference_order) + [None] * (n - len(reference_order))
    return pd.DataFrame({"position": range(1, n + 1), "computed (this data)": computed, "reference design": reference})


def face_detection_rates(manifest: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: videos cached, skipped for no face, mean share of sampled frames with a face
    (detected on the video itself), and how fakes got their boxes: from their original (same frames, or
    nearest in time), or detected on their own (original missing)."""
    rows = []
    for ds in sorted(set(manifest["dataset"]) | set(failures.get("dataset", pd.Series(dtype=str)))):
        m = manifest[manifest["dataset"] == ds]
        f = failures[failures["dataset"] == ds] if len(failures) else failures
        own = m[m["box_source"] == "self"]
        rows.append({"dataset": ds, "cached": len(m),
                     "no_face": int((f["reason"] == "no_face").sum()) if len(f) else 0,
                     "undecodable": int((f["reason"] == "undecodable").sum()) if len(f) else 0,
                     "no_audio_kept": int((f["reason"] == "no_audio").sum()) if len(f) else 0,
                     "face_rate_own_detection": round(float(own["face_rate"].astype(float).mean()), 3) if len(own) else None,
                     "boxes_from_original": int((m["box_source"] == "original").sum()),
                     # another frame count or rate: the original's boxes nearest in time
                     "boxes_from_original_by_time": int((m["box_source"] == "original_by_time").sum()),
                     # fakes whose original is missing: their own faces were detected
                     "fakes_detected_on_their_own": int(((m["box_source"] == "self")
                                                         & (m["label"].astype(int) == 1)).sum())})
    return pd.DataFrame(rows)


def video_stats(manifest: pd.DataFrame) -> pd.DataFrame:
    """Median per dataset x label of the per-video statistics measured while caching."""
    m = manifest.copy()
    m[STAT_COLUMNS] = m[STAT_COLUMNS].astype(float)
    m["has_audio"] = m["has_audio"].astype(str).str.lower().isin(["true", "1"])
    out = m.groupby(["dataset", "label"]).agg(
        videos=("video_id", "count"), audio_share=("has_audio", "mean"),
        **{c: (c, "median") for c in STAT_COLUMNS})
    return out.round(2).reset_index()


#: x-axis labels (with units) of the per-video statistics in the cache manifest
STAT_LABELS = {
    "brightness": "frame brightness (mean grey level, 0-255)",
    "face_brightness": "face brightness (mean grey level, 0-255)",
    "sharpness": "face sharpness (variance of the Laplacian)",
    "motion": "face motion (mean |frame difference|, grey levels)",
    "bitrate_kbps": "bitrate (kbit/s)",
    "duration_s": "duration (s)",
    "height": "frame height (px)",
}


def plot_video_stats(manifest: pd.DataFrame, columns=("brightness", "sharpness", "motion", "bitrate_kbps", "duration_s", "height")):
    """Histograms of per-video statistics, real vs fake, one row per dataset. Each class's bars sum to
    1 (share of that class's videos per bin), so real and fake compare despite the 1 : 5 imbalance. A
    statistic that is the same for every video of a dataset is stated in words instead of drawn as a
    spike, and one the dataset does not have (no bitrate for image sequences) says so."""
    import matplotlib.pyplot as plt  # slow to import: only where a figure is drawn

    m = manifest.copy()
    datasets = sorted(m["dataset"].unique())
    fig, axes = plt.subplots(len(datasets), len(columns), figsize=(3.2 * len(columns), 2.6 * len(datasets)),
                             squeeze=False)
    colors = {0: "tab:blue", 1: "tab:orange"}
    for i, ds in enumerate(datasets):
        d = m[m["dataset"] == ds]
        for j, col in enumerate(columns):
            ax = axes[i, j]
            ax.set_title(ds, fontsize=8)
            ax.set_xlabel(STAT_LABELS.get(col, col), fontsize=7)
            ax.tick_params(labelsize=7)
            v_all = d[col].astype(float) if col in d else pd.Series(dtype=float)
            if not len(v_all) or (v_all == 0).all():
                ax.text(0.5, 0.5, "not measured for this dataset\n(e.g. no bitrate for image sequences)",
                        ha="center", va="center", fontsize=7, transform=ax.transAxes)
                ax.set_xticks([]), ax.set_yticks([])
                continue
            if np.ptp(v_all) <= 1e-6 * max(1.0, abs(float(v_all.mean()))):  # one value (up to rounding)
                ax.text(0.5, 0.5, f"every video: {v_all.mean():.4g}", ha="center", va="center", fontsize=8,
                        transform=ax.transAxes)
                ax.set_xticks([]), ax.set_yticks([])
                continue
            bins = np.histogram_bin_edges(v_all, bins=15)
            for label, name in ((0, "real"), (1, "fake")):
                v = d[d["label"] == label][col].astype(float)
                if len(v):
                    ax.hist(v, bins=bins, alpha=0.55, color=colors[label], weights=np.full(len(v), 1 / len(v)),
                            label=f"{name} (n={len(v)})")
            ax.set_ylabel("share of videos", fontsize=7)
            ax.legend(fontsize=6, loc="best", framealpha=0.7)
    fig.suptitle("Per-video statistics of the cached videos, real vs fake", fontsize=10)
    fig.tight_layout()
    return fig


def pseudo_fake_grid(cache, table: pd.DataFrame, n: int = 8, seed: int = 0, blend=None) -> np.ndarray:
    """A grid image of `n` real training crops (top row), a self-blended pseudo-fake of each (middle,
    `data.pseudo_fakes.self_blend` with `blend`, the train.pseudo_fakes params; the face where the
    cache's margin puts it) and its mask (bottom). RGB array for `plt.imshow`."""
    usable = cache.usable(table)
    ids = usable.loc[(usable["label"] == 0) & (usable["split"] == "train"), "video_id"].to_numpy()
    if not len(ids):
        raise ValueError("no cached real training video to blend")
    pick = np.random.default_rng(seed).choice(ids, size=min(n, len(ids)), replace=False)
    rows = [[], [], []]
    for i, v in enumerate(pick):
        r = cache.reader(v)
        crop = r.crops([r.frame_pos[0]])[0]
        fake, mask = self_blend(crop, blend_rng(seed, 0, i), blend, cache.params.margin)
        rows[0].append(crop)
        rows[1].append(fake)
        rows[2].append(np.repeat((mask[..., None] * 255).astype(np.uint8), 3, axis=2))
    return np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)


def face_grid(cache, table: pd.DataFrame, n: int = 16, seed: int = 0) -> np.ndarray:
    """A grid image of `n` cached face crops (first frame of random videos), reals on the top half,
    fakes on the bottom half. Returns an RGB array for `plt.imshow`."""
    usable = cache.usable(table)
    rng = np.random.default_rng(seed)
    half = max(1, n // 2)
    tiles = []
    for label in (0, 1):
        ids = usable.loc[usable["label"] == label, "video_id"].to_numpy()
        pick = rng.choice(ids, size=min(half, len(ids)), replace=False) if len(ids) else []
        readers = [cache.reader(v) for v in pick]
        crops = [r.crops([r.frame_pos[0]])[0] for r in readers]
        size = cache.params.face_size
        crops += [np.zeros((size, size, 3), np.uint8)] * (half - len(crops))
        tiles.append(np.concatenate(crops, axis=1))
    return np.concatenate(tiles, axis=0)
