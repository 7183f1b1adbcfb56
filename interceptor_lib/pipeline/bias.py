"""Bias analysis (notebook 07): class bias, calibration, results by measured condition and, on the
demo corpus, by the artifact family each fake carries.

All functions read the video-level predictions of `pipeline.video_predictions` (one P(fake) column
per model) and the per-model thresholds chosen on validation (`pipeline.model_thresholds`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from interceptor_lib.metrics.calibration import apply_temperature, ece, fit_temperature, reliability
from interceptor_lib.metrics.scores import binary_metrics
from interceptor_lib.models.registry import list_models, model_entry
from interceptor_lib.pipeline.prepare import crop_cache, load_index

CONDITIONS = ("brightness", "blockiness", "sharpness", "motion", "has_audio")
# Demo families whose fakes differ from their original only against the audio track: the av_sync fake's
# mouth follows another (or a shifted) voice, every frame and clip on its own is a plausible real one.
AUDIO_ONLY_FAMILIES = ("av_sync",)


def class_bias(videos: pd.DataFrame, thresholds: dict[str, float], split: str = "test") -> pd.DataFrame:
    """Per model x dataset at the model's validation threshold: the share of videos predicted fake
    next to the share actually fake, and TPR - TNR (> 0: leans to "fake", < 0: leans to "real")."""
    rows = []
    for model, t in thresholds.items():
        for ds, g in videos[videos["split"] == split].groupby("dataset"):
            m = binary_metrics(g["label"], g[model], t)
            rows.append({"model": model, "dataset": ds, "predicted_fake_share": m["predicted_fake_share"],
                         "actual_fake_share": m["actual_fake_share"], "tpr": m["tpr"], "tnr": m["tnr"],
                         "tpr_minus_tnr": m["tpr"] - m["tnr"], "threshold": t})
    return pd.DataFrame(rows)


def calibration_table(videos: pd.DataFrame, models: list[str], n_bins: int = 10) -> pd.DataFrame:
    """Per model: ECE on the test videos before and after temperature scaling fitted on the
    validation videos (the temperature never sees test), and the fitted temperature."""
    val, test = videos[videos["split"] == "val"], videos[videos["split"] == "test"]
    rows = []
    for m in models:
        t = fit_temperature(val[m].to_numpy(), val["label"].to_numpy())
        rows.append({"model": m, "temperature": t, "ece_test": ece(test["label"], test[m], n_bins),
                     "ece_test_scaled": ece(test["label"], apply_temperature(test[m].to_numpy(), t), n_bins)})
    return pd.DataFrame(rows)


def plot_reliability(videos: pd.DataFrame, models: list[str], n_bins: int = 10):
    """Reliability diagrams on the test videos (before temperature scaling), one line per model, its
    expected calibration error (ECE) in the legend; below, how many test videos fall in each bin (a
    point over a handful of videos says little)."""
    import matplotlib.pyplot as plt  # slow to import: only where a figure is drawn

    test = videos[videos["split"] == "test"]
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5.2, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = 1 / n_bins / (len(models) + 1)
    for k, m in enumerate(models):
        table = reliability(test["label"], test[m], n_bins)
        r = table.dropna(subset=["mean_score"])
        line, = ax.plot(r["mean_score"], r["fake_rate"], marker="o", ms=3,
                        label=f"{m} (ECE {ece(test['label'], test[m], n_bins):.3f})")
        axn.bar(table["bin_low"] + (k + 0.5) * width, table["n"], width=width, color=line.get_color())
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfectly calibrated")
    ax.set(ylabel="share actually fake", title=f"Reliability on the {len(test)} test videos ({n_bins} bins)",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    axn.set(xlabel="predicted P(fake)", ylabel="videos per bin")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- conditions

def blockiness(gray: np.ndarray, block: int = 8) -> float:
    """JPEG/MPEG blocking: mean absolute luma step across 8x8 block borders divided by the mean
    step inside blocks (1 = no blocking; higher = visible block edges)."""
    g = gray.astype(np.float32)
    dx = np.abs(np.diff(g, axis=1))
    cols = np.arange(dx.shape[1])
    border = (cols % block) == block - 1
    inside = dx[:, ~border].mean()
    return float(dx[:, border].mean() / max(inside, 1e-6))


def video_conditions(params, video_ids) -> pd.DataFrame:
    """Measured conditions per video: brightness of the face crop, blockiness of the face crop,
    sharpness (variance of the Laplacian) and motion (from the cache manifest, measured while
    caching), and whether the video has audio."""
    cache = crop_cache(params)
    man = cache.manifest().set_index("video_id")
    rows = []
    for vid in video_ids:
        crop = cache.reader(vid).crops([0])[0]
        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        m = man.loc[vid]
        rows.append({"video_id": vid, "brightness": float(m["face_brightness"]), "blockiness": blockiness(gray),
                     "sharpness": float(m["sharpness"]), "motion": float(m["motion"]),
                     "has_audio": str(m["has_audio"]).lower() in ("true", "1")})
    return pd.DataFrame(rows)


def condition_bins(cond: pd.DataFrame, n_bins: int = 3) -> pd.DataFrame:
    """Each numeric condition cut into `n_bins` quantile bins (low / mid / high), audio as yes / no."""
    names = {2: ["low", "high"], 3: ["low", "mid", "high"]}.get(n_bins, [f"q{i + 1}" for i in range(n_bins)])
    out = cond[["video_id"]].copy()
    for c in CONDITIONS:
        if c == "has_audio":
            out[c] = np.where(cond[c], "yes", "no")
        else:
            out[c] = pd.qcut(cond[c].rank(method="first"), n_bins, labels=names).astype(str)
    return out


def condition_table(videos: pd.DataFrame, bins: pd.DataFrame, thresholds: dict[str, float],
                    split: str = "test", min_per_class: int = 2) -> pd.DataFrame:
    """Per model x condition x bin on the `split` videos: AUC (needs `min_per_class` of each class,
    else NaN), balanced accuracy at the validation threshold, counts."""
    own = [c for c in bins.columns if c != "video_id" and c in videos.columns]  # e.g. has_audio: the bins' label
    v = videos[videos["split"] == split].drop(columns=own).merge(bins, on="video_id")
    rows = []
    for c in CONDITIONS:
        for b, g in v.groupby(c):
            y = g["label"].to_numpy()
            enough = min((y == 0).sum(), (y == 1).sum()) >= min_per_class
            for model, t in thresholds.items():
                m = binary_metrics(y, g[model], t)
                rows.append({"model": model, "condition": c, "bin": b, "n_real": m["n_real"], "n_fake": m["n_fake"],
                             "auc": m["auc"] if enough else np.nan, "balanced_accuracy": m["balanced_accuracy"],
                             "tnr": m["tnr"], "tpr": m["tpr"]})
    return pd.DataFrame(rows)


def plot_heatmap(table: pd.DataFrame, value: str, columns, title: str, fmt: str = "{:.2f}"):
    """A model x (columns) heatmap of `value` with the numbers written in."""
    import matplotlib.pyplot as plt  # slow to import: only where a figure is drawn

    piv = table.pivot_table(index="model", columns=columns, values=value, sort=False)
    fig, ax = plt.subplots(figsize=(max(4, 0.75 * piv.shape[1] + 1.5), 0.45 * piv.shape[0] + 1.4))
    im = ax.imshow(piv.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    for (i, j), x in np.ndenumerate(piv.to_numpy(dtype=float)):
        ax.text(j, i, "" if np.isnan(x) else fmt.format(x), ha="center", va="center", fontsize=7)
    labels = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in piv.columns]
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(piv.index)), piv.index, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- demo artifact families

def artifact_families(params, videos: pd.DataFrame) -> pd.DataFrame:
    """`videos` with the demo corpus's recorded artifact family ("none" for reals), its variant (the
    family's drawn `mode`, e.g. low light "smooth" / "grainy", temporal "jitter" / "flicker" / "both";
    "" for families without one) and strength, joined from demo_artifacts.csv on the file path.
    Raises if the run does not use the demo corpus."""
    if not (params.demo_data and params.demo_data.generate):
        raise ValueError("artifact families exist only on the synthetic demo corpus (demo_data.generate)")
    root = Path(params.demo_data.out)
    art = pd.read_csv(root / "demo_artifacts.csv")
    index = load_index(params)[["video_id", "path", "member"]]
    # WildDeepfake sequences are members of a tar: the side table writes "<tar path>::<member>"
    index["relpath"] = [Path(p).resolve().relative_to(root.resolve()).as_posix() + (f"::{m.strip('./')}" if isinstance(m, str) and m else "")
                        for p, m in zip(index["path"], index["member"])]
    art["variant"] = art["artifact_params"].map(artifact_variant)
    fam = index.merge(art[["relpath", "artifact", "variant", "strength"]], on="relpath", how="left")
    out = videos.merge(fam[["video_id", "artifact", "variant", "strength"]], on="video_id", how="left")
    # reals carry "none"; a fake the side table does not list stays visible as "unrecorded"
    out["artifact"] = out["artifact"].fillna("unrecorded").where(out["label"] == 1, "none")
    out["variant"] = out["variant"].fillna("").where(out["label"] == 1, "")
    return out


def artifact_variant(described) -> str:
    """The `mode` of an artifact's parameters as demo_artifacts.csv writes them ("k=v;k=v", see
    `ArtifactSpec.describe`), or "" when it has none (or is empty: a real video)."""
    if not isinstance(described, str):
        return ""
    pairs = dict(kv.split("=", 1) for kv in described.split(";") if "=" in kv)
    return pairs.get("mode", "")


def family_table(videos: pd.DataFrame, thresholds: dict[str, float], split: str = "test",
                 by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per model x artifact family (test videos): that family's fakes against the reals — AUC and the
    detection rate (TPR) at the model's validation threshold.

    By default every dataset is pooled: a family's fakes against all test reals. `by` splits further:
    "dataset" compares each dataset's fakes of a family with that dataset's own reals (a family can be
    easy on one dataset and hard on another: the demo's audio-visual fakes are DFDC's only); any other
    column of `videos` (e.g. "variant", see `artifact_families`) splits the fakes of a family.
    """
    by = tuple(by)
    missing = [c for c in by if c not in videos.columns]
    if missing:
        raise KeyError(f"family_table: no column {missing} in the videos (columns: {list(videos.columns)})")
    v = videos[videos["split"] == split]
    fake_keys = ["artifact"] + [c for c in by if c != "dataset"]
    scopes = v.groupby("dataset", sort=True) if "dataset" in by else [(None, v)]
    rows = []
    for ds, scope in scopes:
        real = scope[scope["label"] == 0]
        for key, fakes in scope[scope["label"] == 1].groupby(fake_keys, sort=True, dropna=False):
            g = pd.concat([real, fakes])
            where = ({"dataset": ds} if "dataset" in by else {}) | dict(zip(fake_keys, key))
            for model, t in thresholds.items():
                m = binary_metrics(g["label"], g[model], t)
                rows.append({"model": model, **where, "n_fake": m["n_fake"], "n_real": m["n_real"],
                             "auc": m["auc"], "detection_rate": m["tpr"]})
    return pd.DataFrame(rows)


def reads_audio(model: str, models: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether `model` reads the audio track: a registered model by its registry entry; "ensemble"
    when any of `models` (its members) does. Unknown names do not."""
    if model == "ensemble":
        return any(reads_audio(m) for m in models if m != "ensemble")
    return model in list_models() and model_entry(model).reads_audio


def perceivable_rates(videos: pd.DataFrame, thresholds: dict[str, float], split: str = "test") -> pd.DataFrame:
    """Per model x dataset at the model's validation threshold: the fake-detection rate (TPR) over all
    fakes and over the fakes its inputs can show — without the audio-only families
    (`AUDIO_ONLY_FAMILIES`) for a model that does not read audio (`reads_audio`) — and the TNR.

    `videos`: `artifact_families` output (an "artifact" column). The demo's DFDC is the one dataset
    with audio, so there a frame or clip model's TPR over all fakes is capped by the share of
    audio-visual fakes; the second rate says how it does on what it can see."""
    if "artifact" not in videos.columns:
        raise KeyError("perceivable_rates needs the 'artifact' column of artifact_families(params, videos)")
    v = videos[videos["split"] == split]
    hears = {m: reads_audio(m, list(thresholds)) for m in thresholds}
    rows = []
    for ds, g in v.groupby("dataset", sort=True):
        fakes = g[g["label"] == 1]
        for model, t in thresholds.items():
            m = binary_metrics(g["label"], g[model], t)
            seen = fakes if hears[model] else fakes[~fakes["artifact"].isin(AUDIO_ONLY_FAMILIES)]
            rows.append({"model": model, "dataset": ds, "n_real": m["n_real"], "n_fake": m["n_fake"],
                         "tnr": m["tnr"], "tpr": m["tpr"], "n_fake_perceivable": len(seen),
                         "tpr_perceivable": float((seen[model] >= t).mean()) if len(seen) else np.nan,
                         "threshold": t})
    return pd.DataFrame(rows)


def own_family_check(families: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """For each specialist: its `metric` on its own artifact family, the best other model's, and
    whether it is the best (the corpus is built so that this can fail)."""
    rows = []
    for model in list_models("specialist"):  # each built for one artifact family (its registry entry)
        fam = model_entry(model).artifact_family
        g = families[families["artifact"] == fam]
        if model not in set(g["model"]):
            continue
        own = float(g.loc[g["model"] == model, metric].iloc[0])
        others = g[(g["model"] != model) & (g["model"] != "ensemble")]
        best_other = others.loc[others[metric].idxmax()] if others[metric].notna().any() else None
        rows.append({"specialist": model, "artifact": fam, metric: own,
                     "best_other": None if best_other is None else best_other["model"],
                     f"best_other_{metric}": np.nan if best_other is None else float(best_other[metric]),
                     "beats_others": bool(best_other is None or own > float(best_other[metric]))})
    return pd.DataFrame(rows)
