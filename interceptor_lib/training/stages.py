"""Progressive training, one stage of one model at a time (what notebooks 02-05 call).

    run_stage(params, "ll", "stage1")   # FF++; stage2 Celeb-DF, stage3 WildDeepfake, stage4 DFDC

Each stage starts from the previous stage's best checkpoint (chosen on validation): found in
`<output_dir>/runs/<model>/<stage>/`, else under `train.previous_outputs` (an earlier session's
outputs attached read-only). A finished stage leaves `done.json` and is skipped on a re-run; an
interrupted one resumes from its last checkpoint. Stage 4 trains DFDC chunk by chunk in the
configured order (default: most to least balanced, as notebook 01 shows), each chunk starting from
the previous chunk's best checkpoint.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from interceptor_lib.config import STAGE_NAMES
from interceptor_lib.data.datasets import ClipDataset, FrameDataset, build_transform
from interceptor_lib.data.inspection import dfdc_chunk_order
from interceptor_lib.data.prepare import crop_cache, load_index
from interceptor_lib.errors import InterceptorError
from interceptor_lib.models import create_model
from interceptor_lib.training.budget import RunBudget
from interceptor_lib.training.checkpoint import load_checkpoint
from interceptor_lib.training.engine import Trainer, TrainConfig

DONE = "done.json"


class TrainingStopped(InterceptorError):
    """Training stopped early (time budget, SIGTERM) after saving a resumable checkpoint."""


def run_dir(params, model_name: str, stage: str, root: str | Path | None = None) -> Path:
    return Path(root or params.output_dir) / "runs" / model_name / stage


def finished(params, model_name: str, stage: str) -> dict | None:
    """The done.json of a finished stage, from this run's outputs or the previous session's."""
    for root in (params.output_dir, params.train.previous_outputs):
        if root and (run_dir(params, model_name, stage, root) / DONE).is_file():
            return json.loads((run_dir(params, model_name, stage, root) / DONE).read_text())
    return None


def previous_best(params, model_name: str, stage: str) -> Path | None:
    """Best checkpoint of the stage before `stage` (None for stage 1). Raises if that stage has not run."""
    order = list(STAGE_NAMES)
    i = order.index(stage)
    if i == 0:
        return None
    done = finished(params, model_name, order[i - 1])
    if done is None:
        raise InterceptorError(
            f"{model_name} {stage} starts from {order[i - 1]}'s best checkpoint, but {order[i - 1]} has not finished "
            f"(no {DONE} under {run_dir(params, model_name, order[i - 1])}"
            + (f" or {params.train.previous_outputs}" if params.train.previous_outputs else "")
            + f"); run notebook {STAGE_NAMES[order[i - 1]]} first")
    return Path(done["best"])


def build_model(params, model_name: str, init: Path | None):
    t = params.train
    model = create_model(model_name, backbone=t.backbone, pretrained=t.pretrained and init is None,
                         weights=t.weights if init is None else None, trainable_stages=t.trainable_stages)
    if init is not None:
        model.load_state_dict(load_checkpoint(init)["model"])
    return model


def make_datasets(params, model, rows: pd.DataFrame, val_rows: pd.DataFrame):
    cache = crop_cache(params)
    cls = FrameDataset if model.input_kind == "image" else ClipDataset
    dc = model.data_config
    return (cls(rows, cache, build_transform(True, dc["mean"], dc["std"])),
            cls(val_rows, cache, build_transform(False, dc["mean"], dc["std"])))


def train_config(params, stage_params) -> TrainConfig:
    t = params.train
    return TrainConfig(
        epochs=stage_params.epochs, lr=stage_params.lr, pretrained_lr_ratio=t.pretrained_lr_ratio,
        loss=stage_params.loss, focal_gamma=t.focal_gamma, label_smoothing=t.label_smoothing,
        batch_size=t.batch_size, grad_accum=t.grad_accum, grad_clip=t.grad_clip, warmup_frac=t.warmup_frac,
        samples_per_epoch=t.samples_per_epoch, amp=t.amp, num_workers=t.num_workers, seed=params.seed,
        keep_last=t.keep_last, storage_budget_gb=t.storage_budget_gb, storage_root=params.output_dir,
        checkpoint_chunk_mb=t.checkpoint_chunk_mb)


def run_stage(params, model_name: str, stage: str, progress: bool = True) -> dict:
    """Train `model_name` through `stage` (skipped when already done). Returns the stage summary."""
    if stage not in params.train.stages:
        raise InterceptorError(f"params have no train.stages.{stage}; stages configured: {list(params.train.stages)}")
    done = finished(params, model_name, stage)
    if done is not None:
        return {**done, "skipped": True}
    sp = params.train.stages[stage]
    init = previous_best(params, model_name, stage)  # fails first, naming the notebook to run
    table = crop_cache(params).usable(load_index(params))
    data = table[table["dataset"] == sp.dataset]
    if data.empty:
        raise InterceptorError(f"{stage} trains on {sp.dataset}, but the cached index has no {sp.dataset} videos; "
                               "run notebook 00 with that dataset enabled")
    budget = RunBudget(params.train.time_budget_h * 3600 if params.train.time_budget_h else None)
    device = _device(params.device)
    t0 = time.perf_counter()
    if sp.dataset == "dfdc":
        order = sp.chunk_order or dfdc_chunk_order(data)["chunk"].tolist()
        parts = [(f"chunk-{k:02d}", data[(data["chunk"] == k) & (data["split"] == "train")]) for k in order]
    else:
        parts = [("", data[data["split"] == "train"])]
    val = data[data["split"] == "val"]
    histories, best = [], init
    with budget:
        for name, rows in parts:
            rdir = run_dir(params, model_name, stage) / name
            if (rdir / DONE).is_file():
                best = Path(json.loads((rdir / DONE).read_text())["best"])
                continue
            if rows["label"].nunique() < 2:
                warnings.warn(f"{model_name} {stage} {name or sp.dataset}: the training rows hold one class "
                              f"({len(rows)} videos); skipped, the model passes through unchanged")
                continue
            model = build_model(params, model_name, best)
            train_set, val_set = make_datasets(params, model, rows, val)
            trainer = Trainer(model, train_set, val_set, train_config(params, sp), rdir, budget, device, progress,
                              metadata={"stage": stage, "part": name, "dataset": sp.dataset})
            result = trainer.fit()
            if result.status == "stopped":
                raise TrainingStopped(
                    f"{model_name} {stage}{' ' + name if name else ''} stopped ({result.reason}) after saving "
                    f"{result.last}; re-run the same command (./run_all.sh {params.profile}) to resume from there")
            best = result.best or result.last
            _write_done(rdir, {"best": str(best), "history": result.history.to_dict("records")})
            histories.append(result.history.assign(part=name or sp.dataset))
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    summary = {"model": model_name, "stage": stage, "dataset": sp.dataset, "best": str(best),
               "init": str(init) if init else None, "parts": [n for n, _ in parts],
               "skipped_parts": [n for n, r in parts if r["label"].nunique() < 2],
               "history": history.to_dict("records"), "seconds": round(time.perf_counter() - t0, 1),
               "stage_params": asdict(sp)}
    _write_done(run_dir(params, model_name, stage), summary)
    return {**summary, "skipped": False}


def plot_history(summary: dict):
    """Training curves of a stage summary: loss and validation AUC per epoch (per chunk for DFDC)."""
    import matplotlib.pyplot as plt

    h = pd.DataFrame(summary["history"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    if h.empty:
        return fig
    x = range(1, len(h) + 1)
    axes[0].plot(x, h["train_loss"], marker="o")
    axes[0].set(title=f"{summary['model']} {summary['stage']}: training loss", xlabel="epoch")
    for col in ("frame_auc", "video_auc", "video_tnr", "video_tpr"):
        if col in h:
            axes[1].plot(x, h[col], marker="o", label=col)
    axes[1].set(title="validation", xlabel="epoch", ylim=(0, 1.02))
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _write_done(rdir: Path, summary: dict) -> None:
    rdir.mkdir(parents=True, exist_ok=True)
    tmp = rdir / (DONE + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    tmp.replace(rdir / DONE)


def _device(name: str):
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InterceptorError("params device is cuda but no GPU is visible; use device: auto or cpu")
    return name
