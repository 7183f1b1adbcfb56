"""The evaluation stage (notebook 06): score every trained model on every validation and test split,
fit the ensemble on validation, and produce one tidy results table.

    items = item_predictions(params)          # per frame (image models) / per clip (clip models)
    videos = video_predictions(items)         # one row per video, one column per model
    ens = fit_and_save_ensemble(params, videos)   # weights, temperature, threshold: validation only
    videos = add_ensemble(videos, ens)
    results = results_table(items, videos)    # model x test set x level x threshold

Thresholds: each model's "val" threshold is chosen on its pooled validation videos (all datasets'
validation splits, never test) and applied unchanged to every test split, as a deployed detector
would; the ensemble's is the one saved in ensemble.json (chosen on the calibrated validation prob).

Levels: "frame" is the model's own scoring unit (a frame for image models, a clip for clip models);
"video" averages those per video (the mean, as `predict` does). The ensemble combines video-level
member probabilities, so it has video rows only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix, roc_curve

from interceptor_lib.ensemble.combine import Ensemble
from interceptor_lib.ensemble.fit import ensemble_probs, fit_ensemble
from interceptor_lib.ensemble.score import long_item_probs, member_item_probs
from interceptor_lib.ensemble.store import (find_member_checkpoints, load_member, read_ensemble_config,
                                            save_ensemble_config)
from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import RunPaths
from interceptor_lib.metrics.scores import (aggregate_videos, binary_metrics, bootstrap_auc_ci,
                                                choose_threshold, has_both_classes, per_group_metrics)
from interceptor_lib.pipeline.prepare import crop_cache, load_index
from interceptor_lib.training.checkpoint import INDEX, file_sha256
from interceptor_lib.training.device import resolve_device

ENSEMBLE = "ensemble"
TEST_SPLIT = "test"
# How every model's and the ensemble's "val" threshold is chosen on the validation videos: the equal
# error rate point, where the validation real- and fake-detection rates meet, which maximises the
# smaller of the two, the rate a user who needs both to hold acts on. Youden's J (balanced accuracy)
# maximises their sum instead, and with few validation reals against 4-5 times as many fakes one hard
# real video decides it (the comparison on demo runs is in the layered-package log under docs/).
THRESHOLD_RULE = "eer"
META = ["dataset", "split", "video_id", "label", "method"]
AUDIO = "has_audio"  # the video has an audio track (measured at preprocessing); kept after META where known


def _meta(df: pd.DataFrame) -> list[str]:
    return META + ([AUDIO] if AUDIO in df.columns else [])


def eval_dir(params) -> Path:
    return RunPaths.of(params).eval_dir


def eval_device(params, device=None) -> torch.device:
    """Where the evaluation scores: `device` when given, else params.device (auto: the GPU when one is
    visible), so that a GPU session evaluates on its GPU."""
    return resolve_device(device if device is not None else params.device)


def load_members(params, models: list[str] | None = None, device=None):
    """The trained models (best checkpoint of each one's last finished stage) as an Ensemble with
    equal weights, trunks shared where identical, on `eval_device(params, device)`, plus {name:
    checkpoint}."""
    device = eval_device(params, device)
    ckpts = find_member_checkpoints(RunPaths.of(params), models or list(params.train.models), params.profile)
    members = {n: load_member(p, device) for n, p in ckpts.items()}
    return Ensemble(members).eval(), ckpts


def eval_rows(params) -> pd.DataFrame:
    """The index rows of every cached validation and test video."""
    table = crop_cache(params).usable(load_index(params))
    return table[table["split"].isin(["val", TEST_SPLIT])].reset_index(drop=True)


def predictions_stamp(ckpts: dict, rows: pd.DataFrame, cache_dir) -> dict:
    """What saved predictions depend on: every member's checkpoint by content, not only by path (a
    retrained stage writes new weights under the same folder names), and the videos scored. A
    checkpoint folder is fingerprinted by its checkpoint.json, which lists every chunk's sha256;
    any other file or folder by the sha256 of its files."""
    members = {}
    for name, p in ckpts.items():
        p = Path(p)
        index = p / INDEX
        files = [index] if index.is_file() else [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        members[name] = {"path": str(p), "sha256": [file_sha256(f) for f in files]}
    videos = rows[["dataset", "split", "video_id", "label"]].to_csv(index=False).encode()
    return {"members": members, "cache": str(cache_dir), "videos_sha256": hashlib.sha256(videos).hexdigest()}


def item_predictions(params, models: list[str] | None = None, batch_size: int = 32, device=None,
                     reuse: bool = True) -> pd.DataFrame:
    """P(fake) of every model on every frame (image models) or clip (clip models) of every validation
    and test video. Long format: model, dataset, split, video_id, label, method, item, prob.
    Saved to <output_dir>/eval/item_predictions.csv with a stamp of the checkpoints and videos it came
    from (`predictions_stamp`); with `reuse`, a later call with the same checkpoint contents and
    videos reads it instead of scoring again."""
    device = eval_device(params, device)
    ens, ckpts = load_members(params, models, device)
    out_dir = eval_dir(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = eval_rows(params)
    cache = crop_cache(params)
    stamp = predictions_stamp(ckpts, rows, cache.dir)
    cached, meta = out_dir / "item_predictions.csv", out_dir / "item_predictions.json"
    if reuse and cached.is_file() and meta.is_file() and json.loads(meta.read_text()) == stamp:
        saved = pd.read_csv(cached)
        if set(META + [AUDIO]) <= set(saved.columns):  # written by a version with fewer columns: score again
            return saved
    if rows.empty:
        raise InterceptorError("no cached validation or test videos: run notebook 00_prepare_data first")
    # the label is taken from `rows`, with the other video columns
    items = long_item_probs(member_item_probs(ens, rows, cache, batch_size, device=device))
    items = items.merge(rows[META + [AUDIO]], on="video_id", how="left")
    items = items[["model", *META, AUDIO, "item", "prob"]]
    items.to_csv(cached, index=False)
    meta.write_text(json.dumps(stamp, indent=1))
    return items


def video_predictions(items: pd.DataFrame) -> pd.DataFrame:
    """One row per video (dataset, split, video_id, label, method), one P(fake) column per model:
    the mean of the model's frame / clip probabilities."""
    v = items.groupby(["model", "video_id"], sort=False)["prob"].mean().unstack("model")
    models = list(dict.fromkeys(items["model"]))
    cols = _meta(items)
    meta = items.drop_duplicates("video_id").set_index("video_id")[[c for c in cols if c != "video_id"]]
    return meta.join(v[models]).reset_index()[cols + models]


def fit_and_save_ensemble(params, videos: pd.DataFrame, models: list[str] | None = None,
                          method: str = "logit", shrink: float = 0.1, rule: str = THRESHOLD_RULE) -> dict:
    """Fit the ensemble on the pooled validation videos of every dataset (weights, the vote temperature
    by the worst dataset's validation AUC, temperature, threshold by `rule`;
    `interceptor_lib.ensemble.fit.fit_ensemble`, with a weight set of their own for the videos with
    audio when validation holds enough of them) and write
    <output_dir>/ensemble/ensemble.json for `predict`. Returns the fit (weights, temperature,
    threshold, audio, val metrics, path)."""
    models = models or [c for c in videos.columns if c not in _meta(videos) and c != ENSEMBLE]
    val = videos[videos["split"] == "val"].dropna(subset=models)
    if not has_both_classes(val["label"].to_numpy()):
        raise InterceptorError("the validation splits hold one class only; the ensemble cannot be fitted")
    fit = fit_ensemble(val[models], val["label"].to_numpy(), method=method, rule=rule, shrink=shrink,
                       has_audio=val[AUDIO].astype(bool).to_numpy() if AUDIO in val.columns else None,
                       groups=val["dataset"].to_numpy())
    ckpts = find_member_checkpoints(RunPaths.of(params), models, params.profile)
    path = save_ensemble_config(params.output_dir, ckpts, fit["weights"], fit["threshold"], fit["temperature"],
                                preprocess=params.preprocess, combination=fit["combination"], audio=fit["audio"],
                                vote_tau=fit["vote_tau"],
                                metadata={"profile": params.profile, "weight_method": method, "shrink": shrink,
                                          "threshold_rule": rule, "audio_note": fit["audio_note"],
                                          "vote_tau_worst_dataset_val_auc": fit["vote_tau_scores"],
                                          "fitted_on": f"{len(val)} validation videos of "
                                                       f"{sorted(val['dataset'].unique())}",
                                          "val": fit["val"]})
    return {**fit, "path": str(path), "models": models}


def fit_from_config(doc: dict) -> dict:
    """The ensemble fit that `add_ensemble` takes, from a saved ensemble.json document
    (`read_ensemble_config`): models, weights, temperature, threshold, combination, vote_tau, audio."""
    return {"models": list(doc["members"]), "weights": {n: e["weight"] for n, e in doc["members"].items()},
            "temperature": doc.get("temperature"), "threshold": doc["threshold"],
            "combination": doc.get("combination", "prob"), "vote_tau": doc.get("vote_tau"), "audio": doc.get("audio")}


def add_ensemble(videos: pd.DataFrame, fit: dict) -> pd.DataFrame:
    """`videos` with the ensemble's prob (calibrated) and uncertainty columns."""
    audio = fit.get("audio")
    e = ensemble_probs(videos[fit["models"]], fit["weights"], fit["temperature"], fit.get("combination", "prob"),
                       has_audio=videos[AUDIO].astype(bool).to_numpy() if audio else None,
                       audio_weights=audio["weights"] if audio else None,
                       audio_temperature=audio["temperature"] if audio else None, vote_tau=fit.get("vote_tau"))
    return videos.assign(**{ENSEMBLE: e["prob"].to_numpy(), "uncertainty": e["uncertainty"].to_numpy()})


def model_thresholds(videos: pd.DataFrame, models: list[str], ensemble_threshold: float | None = None,
                     rule: str = THRESHOLD_RULE) -> dict[str, float]:
    """Each model's decision threshold, chosen by `rule` on its pooled VALIDATION videos only."""
    val = videos[videos["split"] == "val"]
    out = {m: choose_threshold(val["label"].to_numpy(), val[m].to_numpy(), rule) for m in models}
    if ensemble_threshold is not None:
        out[ENSEMBLE] = float(ensemble_threshold)
    return out


def results_table(items: pd.DataFrame, videos: pd.DataFrame, thresholds: dict[str, float],
                  n_boot: int = 1000) -> pd.DataFrame:
    """The tidy results: one row per model x test dataset x level (frame, video) x threshold
    ("0.5" and "val" = `thresholds[model]`, chosen on validation), with every metric of
    `binary_metrics` and the bootstrap 95 % interval of the AUC (auc_low, auc_high)."""
    rows = []
    test_items = items[items["split"] == TEST_SPLIT]
    test_videos = videos[videos["split"] == TEST_SPLIT]
    for model, t in thresholds.items():
        for ds in sorted(test_videos["dataset"].unique()):
            if model == ENSEMBLE:
                v = test_videos[test_videos["dataset"] == ds].rename(columns={ENSEMBLE: "prob"})
                levels = {"video": v[["video_id", "label", "prob"]]}
            else:
                f = test_items[(test_items["model"] == model) & (test_items["dataset"] == ds)]
                if f.empty:  # not scored on this test set (aggregate_videos rejects an empty table)
                    continue
                levels = {"frame": f, "video": aggregate_videos(f[["video_id", "label", "prob"]], "prob")}
            for level, table in levels.items():
                y, s = table["label"].to_numpy(), table["prob"].to_numpy()
                if len(y) == 0:
                    continue
                groups = table["video_id"].to_numpy() if level == "frame" else None
                low, high = bootstrap_auc_ci(y, s, n_boot=n_boot, groups=groups)
                for name, thr in (("0.5", 0.5), ("val", t)):
                    rows.append({"model": model, "dataset": ds, "level": level, "threshold_name": name,
                                 **binary_metrics(y, s, thr), "auc_low": low, "auc_high": high})
    return pd.DataFrame(rows)


def cross_dataset_table(results: pd.DataFrame, metric: str = "auc", level: str = "video") -> pd.DataFrame:
    """DeepfakeBench's layout: rows models, columns test sets, cells `metric` (video AUC by
    default), plus the mean over test sets."""
    r = results[(results["level"] == level) & (results["threshold_name"] == "val")]
    t = r.pivot_table(index="model", columns="dataset", values=metric, sort=False)
    t["mean"] = t.mean(axis=1)
    return t


def per_method_table(videos: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    """Per manipulation method (video level, test): each method's fakes against all reals of its
    dataset, per model, at the model's validation threshold."""
    test = videos[videos["split"] == TEST_SPLIT]
    rows = []
    for model, t in thresholds.items():
        for ds, g in test.groupby("dataset"):
            r = per_group_metrics(g.rename(columns={model: "prob"}), "method", "prob", threshold=t)
            rows.append(r.assign(model=model, dataset=ds))
    return pd.concat(rows, ignore_index=True)[["model", "dataset", "method", "label", "n_fake", "n_real", "auc",
                                               "ap", "eer", "detection_rate", "threshold"]]


def write_results(params, results: pd.DataFrame, **tables: pd.DataFrame) -> dict[str, str]:
    """results.csv (the one tidy table) and any named extra tables under <output_dir>/eval/."""
    out = eval_dir(params)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False)
    return {"results": str(out / "results.csv"), **write_tables(params, **tables)}


def write_tables(params, **tables: pd.DataFrame | None) -> dict[str, str]:
    """Each named table as <output_dir>/eval/<name>.csv (its index too unless it is a plain range; a
    table that is None, e.g. the artifact-family tables off the demo corpus, is skipped)."""
    out = eval_dir(params)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, t in tables.items():
        if t is not None:
            paths[name] = out / f"{name}.csv"
            t.to_csv(paths[name], index=not isinstance(t.index, pd.RangeIndex))
    return {k: str(v) for k, v in paths.items()}


# ---------------------------------------------------------------------------- figures

def plot_roc(videos: pd.DataFrame, models: list[str]):
    """Video-level ROC curves on each test set, one line per model (and the ensemble)."""
    import matplotlib.pyplot as plt  # here: slow to import, and only the figures need it

    test = videos[videos["split"] == TEST_SPLIT]
    sets = sorted(test["dataset"].unique())
    fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.2), squeeze=False)
    for ax, ds in zip(axes[0], sets):
        g = test[test["dataset"] == ds]
        for m in models:
            if has_both_classes(g["label"].to_numpy()):
                fpr, tpr, _ = roc_curve(g["label"], g[m])
                ax.plot(fpr, tpr, lw=2.2 if m == ENSEMBLE else 1, label=m)
        ax.plot([0, 1], [0, 1], "k:", lw=0.7)
        ax.set(title=f"{ds} test (video)", xlabel="false-positive rate", ylabel="true-positive rate")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_confusions(videos: pd.DataFrame, model: str, threshold: float):
    """Video-level confusion matrix of `model` on each test set at `threshold` (stated in the title):
    counts with the share of each actual class, the cell colour that share (so every test set reads
    alike whatever its size), the text dark on light cells and light on dark ones."""
    import matplotlib.pyplot as plt  # here: slow to import, and only the figures need it

    test = videos[videos["split"] == TEST_SPLIT]
    sets = sorted(test["dataset"].unique())
    fig, axes = plt.subplots(1, len(sets), figsize=(3.0 * len(sets), 3.2), squeeze=False)
    for ax, ds in zip(axes[0], sets):
        g = test[test["dataset"] == ds]
        cm = confusion_matrix(g["label"], (g[model] >= threshold).astype(int), labels=[0, 1])
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), n in np.ndenumerate(cm):
            ax.text(j, i, f"{n}\n({share[i, j]:.0%})", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.55 else "black")
        ax.set(title=ds, xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "fake"],
               yticklabels=["real", "fake"], xlabel="predicted", ylabel="actual")
    fig.suptitle(f"{model}: test videos, fake when P(fake) >= {threshold:.3f} (threshold chosen on validation)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def headline(results: pd.DataFrame) -> pd.DataFrame:
    """The numbers the README and the closing note quote: video level at the validation threshold,
    per model x test set: auc (with interval), real-detection (tnr) and fake-detection (tpr) rates."""
    r = results[(results["level"] == "video") & (results["threshold_name"] == "val")]
    return r[["model", "dataset", "n_real", "n_fake", "auc", "auc_low", "auc_high", "tnr", "tpr",
              "balanced_accuracy", "threshold"]].reset_index(drop=True)


def ensemble_vs_best(results: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """Per test set: the ensemble's video-level `metric` next to the best single member's (chosen
    per test set, i.e. with hindsight, which favours the member)."""
    r = results[(results["level"] == "video") & (results["threshold_name"] == "val")]
    rows = []
    for ds, g in r.groupby("dataset"):
        members = g[g["model"] != ENSEMBLE]
        best = members.loc[members[metric].idxmax()] if members[metric].notna().any() else None
        ens = g.loc[g["model"] == ENSEMBLE, metric]
        rows.append({"dataset": ds, f"ensemble_{metric}": float(ens.iloc[0]) if len(ens) else np.nan,
                     "best_member": None if best is None else best["model"],
                     f"best_member_{metric}": np.nan if best is None else float(best[metric])})
    return pd.DataFrame(rows)


def plot_uncertainty(videos: pd.DataFrame, threshold: float):
    """Ensemble uncertainty (weighted spread of member probabilities) of the test videos, split by
    whether the ensemble's decision at `threshold` was right: useful uncertainty is higher on errors."""
    import matplotlib.pyplot as plt  # here: slow to import, and only the figures need it

    test = videos[videos["split"] == TEST_SPLIT]
    right = (test[ENSEMBLE] >= threshold).astype(int) == test["label"]
    fig, ax = plt.subplots(figsize=(4.5, 3))
    bins = np.linspace(0, max(0.05, float(test["uncertainty"].max())), 15)
    ax.hist(test.loc[right, "uncertainty"], bins=bins, alpha=0.6, label=f"correct ({int(right.sum())})")
    ax.hist(test.loc[~right, "uncertainty"], bins=bins, alpha=0.6, label=f"wrong ({int((~right).sum())})")
    ax.set(xlabel="ensemble uncertainty (weighted std of members)", ylabel="test videos")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def evaluation_state(params, device=None) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict[str, float]]:
    """What notebook 06 computed, for notebook 07: (items, videos with the ensemble columns, the
    ensemble fit as saved in ensemble.json, per-model validation thresholds). Reuses the saved
    predictions when the checkpoints are unchanged."""
    doc, _ = read_ensemble_config(params.output_dir)
    items = item_predictions(params, list(doc["members"]), device=device)
    videos = video_predictions(items)
    fit = fit_from_config(doc)
    videos = add_ensemble(videos, fit)
    return items, videos, fit, model_thresholds(videos, fit["models"], fit["threshold"])
