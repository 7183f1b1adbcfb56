"""Detection metrics at frame and video level, grouped by an explicit video id.

Convention: label 1 = fake, 0 = real; a score is P(fake) in [0, 1] and a prediction is fake when
``score >= threshold`` (scikit-learn's `roc_curve` uses the same rule). Every function is pure and
never writes into its inputs (DeepfakeBench's `training/metrics/utils.py` is the model for the frame
plus video split by an explicit video id, not for its in-place edits of the inputs).

scikit-learn computes every metric it has (AUC, AP, log-loss, accuracy, balanced accuracy, F1, the
ROC curve, the confusion matrix); written here are only the equal error rate, the threshold choice,
the bootstrap and the video aggregation.

AUC, AP and EER need both classes. With one class they are NaN, without an exception: a DFDC
chunk's validation split can hold only fakes, and a results table should still be written for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             confusion_matrix, f1_score, log_loss, roc_auc_score, roc_curve)

#: Probabilities are clipped to [EPS, 1 - EPS] before a log (log-loss, logits), so that a score of
#: exactly 0 or 1 costs a finite ~16 nats instead of infinity.
EPS = 1e-7
THRESHOLD_RULES = ("balanced_accuracy", "youden", "eer")
AGGREGATIONS = ("mean", "logit_mean")


def check_labels(labels) -> np.ndarray:
    """Labels as a 1-D int64 array, or ValueError if empty or not all in {0 (real), 1 (fake)}."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence, got shape {y.shape}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise ValueError(f"labels must be 0 (real) or 1 (fake), found {sorted(set(y[bad].tolist()))[:5]}")
    return y.astype(np.int64)


def check_probs(scores) -> np.ndarray:
    """Scores as a 1-D float64 array, or ValueError if empty, NaN or outside [0, 1]."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise ValueError(f"scores must be a non-empty 1-D sequence, got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError(f"scores contain {int(np.isnan(s).sum())} NaN value(s)")
    if s.min() < 0 or s.max() > 1:
        raise ValueError(f"scores must be probabilities P(fake) in [0, 1], found range "
                         f"[{s.min():.4g}, {s.max():.4g}]; apply a sigmoid/softmax to logits first")
    return s


def check_binary(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) checked by `check_labels` and `check_probs`, and of the same length."""
    y, s = check_labels(labels), check_probs(scores)
    if len(y) != len(s):
        raise ValueError(f"labels and scores differ in length: {len(y)} labels, {len(s)} scores")
    return y, s


def has_both_classes(labels: np.ndarray) -> bool:
    """True when checked labels hold at least one real and one fake."""
    return 0 < labels.sum() < len(labels)


def logit(probs) -> np.ndarray:
    """log(p / (1 - p)) of probabilities clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))  # 1 / (1 + e^-z) without overflow


# ---------------------------------------------------------------------------- video aggregation

def aggregate_videos(frame_table: pd.DataFrame, score: str = "prob", by: str = "video_id",
                     how: str = "mean") -> pd.DataFrame:
    """One row per video: `by`, `label`, the aggregated `score`, `n_frames`, and every other column
    that is constant within each video (dataset, method, split, ...), sorted by `by`.

    Frames are grouped by the explicit id column, never by row position, so shuffled or interleaved
    frame tables give the same result. `how="mean"` averages frame probabilities (DeepfakeBench's
    video AUC); `how="logit_mean"` averages logits and applies the sigmoid (a geometric mean of the
    odds, less dominated by a few saturated frames). The input is not modified.
    """
    missing = [c for c in (by, score, "label") if c not in frame_table.columns]
    if missing:
        raise ValueError(f"frame table lacks columns {missing}; expected at least "
                         f"{[by, 'label', score]}")
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation how={how!r}; expected one of {AGGREGATIONS}")
    if frame_table[by].isna().any():
        raise ValueError(f"{int(frame_table[by].isna().sum())} frame(s) have no {by!r}; every frame "
                         "needs the id of its video")
    check_binary(frame_table["label"].to_numpy(), frame_table[score].to_numpy())

    groups = frame_table.groupby(by, sort=True, observed=True)
    n_labels = groups["label"].nunique()
    mixed = n_labels[n_labels > 1]
    if len(mixed):
        raise ValueError(f"{len(mixed)} video(s) have frames with both labels, e.g. {by}="
                         f"{mixed.index[0]!r}; a video is either real or fake")

    if how == "logit_mean":
        logits = pd.Series(logit(frame_table[score].to_numpy()), index=frame_table.index)
        agg = sigmoid(logits.groupby(frame_table[by], sort=True, observed=True).mean())
    else:
        agg = groups[score].mean().to_numpy(dtype=np.float64)
    out = pd.DataFrame({by: groups.size().index, "label": groups["label"].first().to_numpy().astype(np.int64),
                        score: agg, "n_frames": groups.size().to_numpy()})
    exclude = {by, score, "label", "n_frames"}
    for col, first in _constant_columns(frame_table, groups, exclude).items():
        out[col] = first
    return out


def _constant_columns(frame_table, groups, exclude) -> dict[str, np.ndarray]:
    """Columns whose value is the same for every frame of every video (first value per video)."""
    kept = {}
    for col in frame_table.columns:
        if col in exclude:
            continue
        try:
            constant = bool((groups[col].nunique(dropna=False) <= 1).all())
        except TypeError:  # unhashable cells (lists, arrays) cannot be compared; leave the column out
            continue
        if constant:
            kept[col] = groups[col].first().to_numpy()
    return kept


# ---------------------------------------------------------------------------- EER and thresholds

def eer(labels, scores) -> tuple[float, float]:
    """Equal error rate and its threshold: the point of the ROC curve where FPR = FNR = 1 - TPR.

    The crossing is linearly interpolated between the two ROC vertices around it (the same point as
    the common `brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)` of deepfake and speaker
    verification papers). The threshold is that of the nearer vertex (a score; predict fake when
    ``score >= threshold``). One class: (NaN, NaN).
    """
    y, s = check_binary(labels, scores)
    if not has_both_classes(y):
        return float("nan"), float("nan")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    gap = (1 - tpr) - fpr  # FNR - FPR: 1 at the (0, 0) vertex, -1 at (1, 1), non-increasing between
    i = int(np.argmax(gap <= 0))  # first vertex at or past the crossing; i >= 1 since gap[0] = 1
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    rate = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    # nearer vertex; |gap| <= 1 everywhere and gap[0] = 1, so j >= 1: an observed score, never the
    # +inf threshold of vertex 0
    j = i if abs(gap[i]) <= abs(gap[i - 1]) else i - 1
    return float(rate), float(thr[j])


def choose_threshold(labels, scores, rule: str = "balanced_accuracy") -> float:
    """Decision threshold chosen on VALIDATION predictions, then applied unchanged to test.

    Choosing it on the test set would report an optimistic accuracy (the threshold would be fitted to
    the data it is scored on). Rules: ``"balanced_accuracy"`` (default) and its synonym ``"youden"``
    maximise Youden's J = TPR - FPR = 2 * balanced accuracy - 1 over the ROC thresholds (the highest
    such threshold on ties); ``"eer"`` takes the threshold of `eer`. Returns a score in [0, 1];
    raises ValueError when the predictions hold one class, since no threshold separates it.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; expected one of {THRESHOLD_RULES}")
    y, s = check_binary(labels, scores)
    if not has_both_classes(y):
        raise ValueError(f"cannot choose a threshold from one class (all labels are {y[0]}); the "
                         "validation predictions need real and fake videos")
    if rule == "eer":
        return eer(y, s)[1]
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    j = 1 + int(np.argmax((tpr - fpr)[1:]))  # skip vertex 0: its threshold +inf predicts no fake
    return float(thr[j])


# ---------------------------------------------------------------------------- point metrics

def binary_metrics(labels, scores, threshold: float = 0.5) -> dict:
    """Threshold-free (auc, ap, eer, log_loss) and thresholded metrics of one set of predictions.

    tpr is the fake-detection rate, tnr the real-detection rate; balanced_accuracy is their mean.
    log_loss clips probabilities to [1e-7, 1 - 1e-7]. NaN, not an error, for what one class leaves
    undefined: auc, ap, eer, balanced_accuracy, and tpr / tnr / f1 when their denominator is 0.
    """
    y, s = check_binary(labels, scores)
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    pred = (s >= threshold).astype(np.int64)
    both = has_both_classes(y)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    nan = float("nan")
    return {
        "auc": float(roc_auc_score(y, s)) if both else nan,
        "ap": float(average_precision_score(y, s)) if both else nan,
        "eer": eer(y, s)[0],
        "log_loss": float(log_loss(y, np.clip(s, EPS, 1 - EPS), labels=[0, 1])),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if both else nan,
        "tnr": float(tn / (tn + fp)) if tn + fp else nan,
        "tpr": float(tp / (tp + fn)) if tp + fn else nan,
        "f1": float(f1_score(y, pred, zero_division=np.nan)),
        "n": int(len(y)), "n_real": int(len(y) - y.sum()), "n_fake": int(y.sum()),
        "threshold": float(threshold),
        "predicted_fake_share": float(pred.mean()), "actual_fake_share": float(y.mean()),
    }


# ---------------------------------------------------------------------------- bootstrap

def bootstrap_auc_ci(labels, scores, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                     groups=None) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) confidence interval of the AUC.

    With `groups` (e.g. the video id of each frame) whole groups are resampled (a cluster bootstrap):
    frames of one video are near-duplicates, and resampling them one by one would treat them as
    independent evidence and give too narrow an interval. Resamples with one class are skipped;
    (NaN, NaN) when the input has one class or no resample has two.
    """
    y, s = check_binary(labels, scores)
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1, got n_boot={n_boot}, alpha={alpha}")
    if not has_both_classes(y):
        return float("nan"), float("nan")
    if groups is None:
        cluster, n_clusters = np.arange(len(y)), len(y)
    else:
        groups = np.asarray(groups)
        if len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries for {len(y)} labels")
        _, cluster = np.unique(groups, return_inverse=True)
        n_clusters = int(cluster.max()) + 1
    _, level = np.unique(s, return_inverse=True)  # tied scores share a level: ties count one half
    n_levels = int(level.max()) + 1
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)
        w = counts[cluster].astype(np.float64)  # how often each sample is drawn
        neg = np.bincount(level, weights=w * (1 - y), minlength=n_levels)
        pos = np.bincount(level, weights=w * y, minlength=n_levels)
        n_neg, n_pos = neg.sum(), pos.sum()
        if n_neg == 0 or n_pos == 0:
            continue
        below = np.cumsum(neg) - neg  # negatives scored strictly lower than each level
        aucs.append(float(pos @ (below + 0.5 * neg)) / (n_pos * n_neg))  # Mann-Whitney U / (n1 n0)
    if not aucs:
        return float("nan"), float("nan")
    low, high = np.quantile(aucs, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# ---------------------------------------------------------------------------- results tables

def evaluate(frame_table: pd.DataFrame, val_frame_table: pd.DataFrame | None = None,
             score: str = "prob", by: str = "video_id", thresholds=(0.5,), *,
             rule: str = "balanced_accuracy", how: str = "mean", n_boot: int = 1000,
             alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Tidy results of one test frame table: a row per level in (frame, video) and threshold.

    Threshold rows: each fixed value of `thresholds` (named e.g. "0.5"), and, when
    `val_frame_table` is given, "val": `choose_threshold(rule=rule)` on the validation predictions
    at the same level (frames for the frame rows, videos aggregated with `how` for the video rows).
    The test table never influences that threshold. Columns: level, threshold_name, every key of
    `binary_metrics`, and the bootstrap interval auc_low / auc_high (at frame level videos are
    resampled whole, see `bootstrap_auc_ci`).
    """
    levels = {"frame": frame_table, "video": aggregate_videos(frame_table, score, by, how)}
    val_levels = None
    if val_frame_table is not None:
        val_levels = {"frame": val_frame_table, "video": aggregate_videos(val_frame_table, score, by, how)}
    rows = []
    for level, table in levels.items():
        y, s = table["label"].to_numpy(), table[score].to_numpy()
        groups = table[by].to_numpy() if level == "frame" else None
        low, high = bootstrap_auc_ci(y, s, n_boot=n_boot, alpha=alpha, seed=seed, groups=groups)
        named = [(f"{t:g}", float(t)) for t in thresholds]
        if val_levels is not None:
            val = val_levels[level]
            named.append(("val", choose_threshold(val["label"].to_numpy(), val[score].to_numpy(), rule)))
        for name, t in named:
            rows.append({"level": level, "threshold_name": name, **binary_metrics(y, s, t),
                         "auc_low": low, "auc_high": high})
    return pd.DataFrame(rows)


def per_group_metrics(table: pd.DataFrame, group_col: str = "method", score: str = "prob",
                      threshold: float = 0.5, real_name: str = "real") -> pd.DataFrame:
    """Per-manipulation-method results, as FaceForensics++ papers report them.

    One row per fake method: that method's fakes against ALL reals of the table (auc, ap, eer of
    method vs real) and its detection rate TPR at `threshold`. One row named `real_name` for the
    reals: their detection rate TNR (auc, ap, eer NaN). Reals are found by label 0, whatever their
    `group_col` value. Works on frame or video tables alike.
    Columns: group_col, label, n_fake, n_real, auc, ap, eer, detection_rate, threshold.
    """
    missing = [c for c in (group_col, score, "label") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    y, s = check_binary(table["label"].to_numpy(), table[score].to_numpy())
    real = y == 0
    groups = table[group_col].to_numpy()
    rows = []
    for method in sorted(set(groups[~real].tolist()), key=str):
        mask = real | (groups == method)
        m = binary_metrics(y[mask], s[mask], threshold)
        rows.append({group_col: method, "label": 1, "n_fake": m["n_fake"], "n_real": m["n_real"],
                     "auc": m["auc"], "ap": m["ap"], "eer": m["eer"], "detection_rate": m["tpr"]})
    if real.any():
        m = binary_metrics(y[real], s[real], threshold)
        rows.append({group_col: real_name, "label": 0, "n_fake": 0, "n_real": m["n_real"],
                     "detection_rate": m["tnr"]})
    out = pd.DataFrame(rows, columns=[group_col, "label", "n_fake", "n_real", "auc", "ap", "eer",
                                      "detection_rate"])
    out["threshold"] = float(threshold)
    return out
