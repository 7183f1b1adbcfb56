"""What progressive training gains and forgets (notebook 06): every model's best checkpoint after each
stage scored on every test split, and the ensemble of each stage's checkpoints.

    matrix = stage_matrix(params)     # eval/stage_matrix.csv, one row per model x stage x test set
    gains = stage_gains(matrix)       # eval/stage_gains.csv: each stage's gain on its dataset, loss on the earlier ones
    fig = plot_stage_matrix(matrix)   # one heatmap per model: rows stages, columns test sets

Columns of the matrix: model, stage, dataset (the stage's), test_set, frame_auc (the model's own unit,
a frame or a clip), video_auc (their mean per video), tnr and tpr (real- and fake-detection rates
at the checkpoint's validation threshold), threshold, n_real, n_fake, items_per_video, checkpoint and
weights_sha256 (the tensors scored, `ensemble.combine.state_hash`).

Thresholds. A checkpoint's threshold is chosen (evaluate.THRESHOLD_RULE) on the validation videos of
the datasets trained on up to its stage: what a user deploying that checkpoint would have. So the
stage-1 row is the field's cross-dataset protocol: trained, selected and thresholded on FF++ alone.
The ensemble of a stage combines that stage's checkpoints, fitted (`fit_ensemble`) on the same
validation videos.

Cost. All checkpoints are members of one Ensemble: the frozen trunk they share (every stage keeps the
backbone's frozen stages) runs once per batch, and `evaluation.matrix_items_per_video` evenly spaced
frames / clips per video are scored. The last stage's checkpoints are not scored again when notebook
06's predictions of them (eval/item_predictions.csv, stamped with their checkpoints) are at hand: the
same evenly spaced items are taken from those.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from interceptor_lib.data.datasets import evenly_spaced_slots
from interceptor_lib.ensemble.combine import Ensemble, state_hash
from interceptor_lib.ensemble.fit import ensemble_probs, fit_ensemble
from interceptor_lib.ensemble.score import long_item_probs, member_item_probs
from interceptor_lib.ensemble.store import find_member_checkpoints, load_member, stage_checkpoint
from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import RunPaths, stage_datasets
from interceptor_lib.metrics.scores import binary_metrics, choose_threshold, has_both_classes
from interceptor_lib.pipeline.evaluate import (ENSEMBLE, TEST_SPLIT, THRESHOLD_RULE, eval_device, eval_dir, eval_rows,
                                               predictions_stamp)
from interceptor_lib.pipeline.prepare import crop_cache

COLUMNS = ["model", "stage", "dataset", "test_set", "frame_auc", "video_auc", "tnr", "tpr", "threshold",
           "n_real", "n_fake", "items_per_video", "checkpoint", "weights_sha256"]
SEP = "@"  # member names in the scoring ensemble: <model>@<stage>


def stage_checkpoints(params, models: list[str] | None = None) -> dict[tuple[str, str], Path]:
    """{(model, stage): best checkpoint} of every finished stage of every model, in stage order."""
    paths = RunPaths.of(params)
    out = {}
    for model in models or params.train.models:
        for stage in params.train.stages:
            path = stage_checkpoint(paths, model, stage)
            if path is not None:
                out[(model, stage)] = path
    return out


def seen_datasets(params, stage: str) -> list[str]:
    """The datasets trained on up to and including `stage`, in stage order, each once."""
    return list(dict.fromkeys(stage_datasets(params, stage)))


def evenly_spaced(items: pd.DataFrame, k: int, by: list[str]) -> pd.DataFrame:
    """The rows of a long item table (an `item` number per row within each group of `by`) that the
    datasets would score with `items_per_video=k`: k evenly spaced items of each group (all when it
    has at most k, or when k is 0)."""
    if not k:
        return items
    n = items.groupby(by, sort=False)["item"].transform("size").to_numpy()
    slots = {c: set(evenly_spaced_slots(c, k).tolist()) for c in np.unique(n)}
    return items[np.fromiter((i in slots[c] for i, c in zip(items["item"].to_numpy(), n)), bool, len(items))]


def _saved_last_stage(params, rows: pd.DataFrame, models: list[str]) -> pd.DataFrame | None:
    """Notebook 06's item predictions (model, video_id, item, prob), when they were scored by the
    checkpoints `find_member_checkpoints` gives now on these rows; else None."""
    out = eval_dir(params)
    saved, meta = out / "item_predictions.csv", out / "item_predictions.json"
    if not (saved.is_file() and meta.is_file()):
        return None
    ckpts = find_member_checkpoints(RunPaths.of(params), models, params.profile)
    if json.loads(meta.read_text()) != predictions_stamp(ckpts, rows, crop_cache(params).dir):
        return None
    return pd.read_csv(saved, usecols=["model", "video_id", "item", "prob"])


def score_checkpoints(params, checkpoints: dict[tuple[str, str], Path], items_per_video: int = 0,
                      batch_size: int = 32, device=None, reuse_saved: bool = True,
                      splits: tuple[str, ...] = ("val", TEST_SPLIT)) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every checkpoint's P(fake) on `items_per_video` items of every video of `splits` (validation
    and test): a long table (member "<model>@<stage>", dataset, split, video_id, label, item, prob)
    and {member: state_hash of the weights scored}. With `reuse_saved`, each model's last checkpoint
    is read from notebook 06's predictions when they were made by it (`_saved_last_stage`); keys that
    are not the chain's stages (another run's checkpoints) need it off. `device`: see
    `evaluate.eval_device`."""
    device = eval_device(params, device)
    members = {f"{m}{SEP}{s}": load_member(p, device) for (m, s), p in checkpoints.items()}
    hashes = {name: state_hash(model.state_dict()) for name, model in members.items()}
    rows = eval_rows(params)
    if rows.empty:
        raise InterceptorError("no cached validation or test videos: run notebook 00_prepare_data first")
    models = list(dict.fromkeys(m for m, _ in checkpoints))
    last = {m: [s for mm, s in checkpoints if mm == m][-1] for m in models}
    parts = []
    saved = _saved_last_stage(params, rows, models) if reuse_saved else None  # stamped with every eval row
    rows = rows[rows["split"].isin(splits)]
    if saved is not None:
        saved = evenly_spaced(saved[saved["model"].isin(models)], items_per_video, ["model", "video_id"])
        saved = saved.assign(member=saved["model"] + SEP + saved["model"].map(last)).drop(columns="model")
        parts.append(saved[["video_id", "item", "member", "prob"]])
        members = {n: m for n, m in members.items() if n not in set(saved["member"])}
    if members:
        ens = Ensemble(members).eval()
        parts.append(long_item_probs(member_item_probs(ens, rows, crop_cache(params), batch_size, device=device,
                                                       items_per_video=items_per_video), name="member"))
    items = pd.concat(parts, ignore_index=True).merge(rows[["dataset", "split", "video_id", "label"]], on="video_id")
    return items, hashes


def member_videos(items: pd.DataFrame) -> pd.DataFrame:
    """`score_checkpoints`' long item table as one row per video (dataset, split, label) with each
    member's mean P(fake) over its items in a column of the member's name."""
    probs = items.groupby(["member", "video_id"], sort=False)["prob"].mean().unstack("member")
    return items.drop_duplicates("video_id").set_index("video_id")[["dataset", "split", "label"]].join(probs)


def stage_matrix(params, batch_size: int = 32, device=None, write: bool = True) -> pd.DataFrame:
    """The stage x test-set matrix of every model and of each stage's ensemble (module docstring);
    written to <output_dir>/eval/stage_matrix.csv with `write`."""
    checkpoints = stage_checkpoints(params)
    if not checkpoints:
        raise InterceptorError(f"no finished training stage under {RunPaths.of(params).runs}: run the stage "
                               "notebooks first")
    k = params.evaluation.matrix_items_per_video
    items, hashes = score_checkpoints(params, checkpoints, k, batch_size, device)
    videos = member_videos(items)
    test_sets = sorted(videos.loc[videos["split"] == TEST_SPLIT, "dataset"].unique())
    rows = []
    for (model, stage), path in checkpoints.items():
        name = f"{model}{SEP}{stage}"
        val = videos[(videos["split"] == "val") & videos["dataset"].isin(seen_datasets(params, stage))]
        threshold = _threshold(val["label"].to_numpy(), val[name].to_numpy(), name)
        for ds in test_sets:
            f = items[(items["member"] == name) & (items["split"] == TEST_SPLIT) & (items["dataset"] == ds)]
            v = videos[(videos["split"] == TEST_SPLIT) & (videos["dataset"] == ds)]
            rows.append(_row(model, stage, params, ds, f["label"], f["prob"], v["label"], v[name], threshold,
                             k, str(path), hashes[name]))
    for stage in params.train.stages:  # the ensemble of each stage every model has finished
        names = [f"{m}{SEP}{stage}" for m in params.train.models if (m, stage) in checkpoints]
        if len(names) < len(params.train.models):
            continue
        val = videos[(videos["split"] == "val") & videos["dataset"].isin(seen_datasets(params, stage))]
        if not has_both_classes(val["label"].to_numpy()):
            continue
        fit = fit_ensemble(val[names], val["label"].to_numpy(), shrink=0.1, rule=THRESHOLD_RULE,
                           groups=val["dataset"].to_numpy())
        for ds in test_sets:
            v = videos[(videos["split"] == TEST_SPLIT) & (videos["dataset"] == ds)]
            prob = ensemble_probs(v[names], fit["weights"], fit["temperature"], fit["combination"],
                                  vote_tau=fit["vote_tau"])["prob"]
            rows.append(_row(ENSEMBLE, stage, params, ds, None, None, v["label"], prob, fit["threshold"], k, "", ""))
    matrix = pd.DataFrame(rows, columns=COLUMNS)
    if write:
        out = eval_dir(params)
        out.mkdir(parents=True, exist_ok=True)
        matrix.to_csv(out / "stage_matrix.csv", index=False)
    return matrix


def _threshold(y: np.ndarray, p: np.ndarray, name: str) -> float:
    if not has_both_classes(y):
        raise InterceptorError(f"{name}: the validation videos of the datasets trained so far hold one class only; "
                               "no threshold can be chosen")
    return choose_threshold(y, p, THRESHOLD_RULE)


def _row(model, stage, params, test_set, frame_y, frame_p, video_y, video_p, threshold, k, path, sha) -> dict:
    video_y, video_p = np.asarray(video_y, int), np.asarray(video_p, float)
    both = has_both_classes(video_y)
    m = binary_metrics(video_y, video_p, threshold) if both else {}
    frame_auc = (float(roc_auc_score(np.asarray(frame_y, int), np.asarray(frame_p, float)))
                 if frame_y is not None and both else np.nan)
    return {"model": model, "stage": stage, "dataset": params.train.stages[stage].dataset, "test_set": test_set,
            "frame_auc": frame_auc, "video_auc": float(roc_auc_score(video_y, video_p)) if both else np.nan,
            "tnr": m.get("tnr", np.nan), "tpr": m.get("tpr", np.nan), "threshold": float(threshold),
            "n_real": int((video_y == 0).sum()), "n_fake": int((video_y == 1).sum()), "items_per_video": int(k),
            "checkpoint": path, "weights_sha256": sha}


def stage_gains(matrix: pd.DataFrame, write_to: Path | None = None) -> pd.DataFrame:
    """Per model and stage after the first: the video AUC on the stage's own dataset before and after
    it (`gain` = after - before), and the mean video AUC on the earlier stages' datasets before and
    after it (`forgetting` = before - after: positive when the stage lost what the earlier ones learned)."""
    rows = []
    order = list(dict.fromkeys(matrix["stage"]))
    for model, g in matrix.groupby("model", sort=False):
        auc = g.pivot_table(index="stage", columns="test_set", values="video_auc").reindex(order)
        datasets = g.drop_duplicates("stage").set_index("stage")["dataset"].reindex(order)
        for i in range(1, len(order)):
            before, after, new = order[i - 1], order[i], datasets.iloc[i]
            earlier = [d for d in dict.fromkeys(datasets.iloc[:i]) if d != new and d in auc.columns]
            row = {"model": model, "stage": after, "dataset": new,
                   "auc_new_before": auc.at[before, new] if new in auc.columns else np.nan,
                   "auc_new_after": auc.at[after, new] if new in auc.columns else np.nan,
                   "auc_earlier_before": auc.loc[before, earlier].mean() if earlier else np.nan,
                   "auc_earlier_after": auc.loc[after, earlier].mean() if earlier else np.nan}
            row["gain"] = row["auc_new_after"] - row["auc_new_before"]
            row["forgetting"] = row["auc_earlier_before"] - row["auc_earlier_after"]
            rows.append(row)
    out = pd.DataFrame(rows)
    if write_to is not None:
        out.to_csv(Path(write_to) / "stage_gains.csv", index=False)
    return out


#: published cross-dataset anchors (trained on FF++ c23), as their sources report them
ANCHORS = pd.DataFrame([
    {"detector": "EfficientNet-B4 (DeepfakeBench)", "level": "frame", "celebdf": 0.749, "dfdc": 0.696,
     "source": "Yan et al., DeepfakeBench, NeurIPS 2023 Datasets and Benchmarks"},
    {"detector": "SBI, EfficientNet-B4", "level": "video", "celebdf": 0.938, "dfdc": np.nan,
     "source": "Shiohara & Yamasaki, Self-Blended Images, CVPR 2022"},
    {"detector": "Effort, CLIP ViT-L/14", "level": "as published", "celebdf": 0.956, "dfdc": 0.843,
     "source": "Yan et al., Effort, ICML 2025"},
])


def cross_dataset_protocol(matrix: pd.DataFrame, synthetic: bool, one_level: bool = False) -> pd.DataFrame:
    """The stage-1 row (trained on FF++ only) in DeepfakeBench's layout, one row per model and level
    (frame, video), columns the test sets, beside the published ANCHORS; `synthetic` (the demo
    corpus) labels our rows as not comparable. `one_level`: each model at frame level only, as
    DeepfakeBench reports, and the ensemble (which has no frames) at video level."""
    first = matrix[matrix["stage"] == matrix["stage"].iloc[0]]
    label = " (synthetic demo, not comparable)" if synthetic else ""
    rows = []
    for model, g in first.groupby("model", sort=False):
        for level in ("frame", "video"):
            values = g.set_index("test_set")[f"{level}_auc"]
            if values.notna().any() and not (one_level and model != ENSEMBLE and level == "video"):
                rows.append({"detector": f"ours: {model}{label}", "level": level, **values.to_dict(),
                             "source": "this run"})
    return pd.concat([ANCHORS, pd.DataFrame(rows)], ignore_index=True)


def plot_stage_matrix(matrix: pd.DataFrame, value: str = "video_auc"):
    """One heatmap per model (rows stages, columns test sets), each cell its `value` (AUC in [0.5, 1]
    coloured from chance to perfect)."""
    import matplotlib.pyplot as plt  # slow to import: only where a figure is drawn

    models = list(dict.fromkeys(matrix["model"]))
    cols = min(4, len(models))
    rows = int(np.ceil(len(models) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False, constrained_layout=True)
    for ax in axes.flat[len(models):]:
        ax.axis("off")
    image = None
    stages = list(dict.fromkeys(matrix["stage"]))
    trained = matrix.drop_duplicates("stage").set_index("stage")["dataset"]
    # test sets in training order (the diagonal is each stage's own dataset), then any others
    order = list(dict.fromkeys([d for d in trained if d in set(matrix["test_set"])] + sorted(set(matrix["test_set"]))))
    for ax, model in zip(axes.flat, models):
        t = matrix[matrix["model"] == model].pivot_table(index="stage", columns="test_set", values=value)
        t = t.reindex(index=stages, columns=order)
        image = ax.imshow(t.to_numpy(), vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(t.to_numpy()):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="black" if v > 0.8 else "white")
        ax.set_xticks(range(t.shape[1]), t.columns, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(t.shape[0]), [f"{st} ({trained[st]})" for st in t.index], fontsize=8)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("test set", fontsize=8)
        ax.set_ylabel("after stage", fontsize=8)
    label = value.replace("_auc", " AUC").replace("_", " ")
    fig.colorbar(image, ax=axes, shrink=0.8, label=f"{label} (0.5 = chance)")
    fig.suptitle(f"{label[0].upper() + label[1:]} of each stage's best checkpoint on every test set")
    return fig
