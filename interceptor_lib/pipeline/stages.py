"""Progressive training, one stage of one model at a time (what notebooks 02-05 call, through
`launch.launch_stage`).

    run_stage(params, "ll", "stage1")   # FF++; stage2 Celeb-DF, stage3 WildDeepfake, stage4 DFDC

Each stage starts from the previous stage's best checkpoint (chosen on validation): found in
`<output_dir>/runs/<model>/<stage>/`, else under `train.previous_outputs` (earlier sessions'
outputs attached read-only; their recorded paths re-rooted). A finished stage leaves `done.json` and
is skipped on a re-run; an interrupted one resumes from its last checkpoint, also one an earlier
session left in an attached output (the run continues in this run's folder; nothing is written
there). Stage 4 trains DFDC chunk by chunk in the configured order (default: most to least
balanced, as notebook 01 shows), each chunk starting from the previous chunk's best checkpoint.

What a finished stage keeps is what later steps need: its best checkpoint as weights only (the
optimizer state and the other checkpoints are deleted; a DFDC chunk's best until the stage ends),
and an fp16 weights-only export of it (`best-fp16/`, half the size, for sharing and inference),
recorded in done.json. A stage trains only on a complete cache of its dataset.

An epoch draws `samples_per_epoch` items, by default `items_per_video` per training video: a frame (or
clip) drawn afresh each epoch, as the reference design's loader did, instead of every cached frame of
every video (32 times the cost for near-duplicate frames).

This is the one place that unpacks params for training: `build_model`, `make_datasets` and
`train_config` turn them into what the layers below take. Where done.json is read and written and
when a finished stage is stale: `layout`; the replayed rows: `training/replay.py`; the fp16 export:
`training/export_best.py`; several GPUs (torchrun): `launch.py`; training curves: `figures.py`.
"""

from __future__ import annotations

import shutil
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from interceptor_lib.config.schema import PSEUDO_OFF
from interceptor_lib.data.datasets import ClipDataset, FrameDataset, build_transform
from interceptor_lib.data.inspection import balanced_chunk_order
from interceptor_lib.data.pseudo_fakes import PseudoFakes
from interceptor_lib.data.registry import DATASETS
from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import (RunPaths, finished_as_configured, previous_best, stage_datasets, stage_settings,
                                    write_done)
from interceptor_lib.models import create_model, list_models
from interceptor_lib.pipeline.prepare import crop_cache, load_index
from interceptor_lib.training import distributed
from interceptor_lib.training.budget import RunBudget
from interceptor_lib.training.checkpoint import load_checkpoint
from interceptor_lib.training.device import resolve_device
from interceptor_lib.training.engine import Trainer
from interceptor_lib.training.export_best import export_best
from interceptor_lib.training.replay import with_replay
from interceptor_lib.training.retention import CheckpointManager
from interceptor_lib.training.train_config import TrainConfig


class TrainingStopped(InterceptorError):
    """Training stopped early (time budget, SIGTERM) after saving a resumable checkpoint."""


def earlier_datasets(params, stage: str) -> list[str]:
    """Datasets of the configured stages that run before `stage` (stage1 ... stage4 order)."""
    return stage_datasets(params, stage)[:-1]


def build_model(params, model_name: str, init: Path | None):
    """The stage's model: `init`'s weights, or fresh ones whose random part (the head; all of a
    backbone without pretrained weights) is drawn from `params.seed`, so that two runs of a stage
    start alike (the global RNG is left as it was)."""
    t = params.train
    if init is None and t.pretext.steps > 0 and not Path(t.pretext.out).is_file():
        raise InterceptorError(f"train.pretext is on but its backbone {t.pretext.out} does not exist: run "
                               f"notebook 00_prepare_data (or training.pretext.pretrain_backbone) for profile "
                               f"{params.profile!r} first")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        model = create_model(model_name, backbone=t.backbone, pretrained=t.pretrained and init is None,
                             weights=t.weights if init is None else None, trainable_stages=t.trainable_stages,
                             **t.model_config)
    if init is not None:
        model.load_state_dict(load_checkpoint(init)["model"])
    return model


def validated_parts(parts: list[str], chunk_validation: str) -> set[str]:
    """The parts of a stage (DFDC chunks in training order; [""] for a stage in one part) that
    validate after their epochs: all, or with chunk_validation "last" the last one only."""
    return set(parts) if chunk_validation == "every" else set(parts[-1:])


def pseudo_fakes(params, stage_params) -> PseudoFakes | None:
    """The stage's pseudo-fakes (train.stages.<stage>.pseudo_fakes with the train.pseudo_fakes
    transforms, drawn from params.seed), or None when off."""
    if stage_params.pseudo_fakes == PSEUDO_OFF:
        return None
    return PseudoFakes(stage_params.pseudo_fakes, params.train.pseudo_fakes, params.seed, params.preprocess.margin)


def make_datasets(params, model, rows: pd.DataFrame, val_rows: pd.DataFrame, pseudo: PseudoFakes | None = None):
    """(training, validation) datasets of `rows` / `val_rows` over the crop cache, in `model`'s input
    kind and normalisation; the training one augmented as train.augment says. With `pseudo` the
    training set makes pseudo-fakes; with pseudo-fakes only, the validation set too (its reals and
    their pseudo-fakes, the same every epoch, its fakes left out): such a stage never sees a fake."""
    cache = crop_cache(params)
    cls = FrameDataset if model.input_kind == "image" else ClipDataset
    dc = model.data_config
    a = params.train.augment
    train_tf = build_transform(True, dc["mean"], dc["std"], jpeg_quality=tuple(a.jpeg_quality), p_color=a.p_color,
                               p_blur=a.p_blur, p_jpeg=a.p_jpeg, p_downscale=a.p_downscale)
    return (cls(rows, cache, train_tf, pseudo=pseudo),
            cls(val_rows, cache, build_transform(False, dc["mean"], dc["std"]),
                items_per_video=params.train.val_items_per_video, pseudo=pseudo if pseudo and pseudo.only else None))


def train_config(params, stage_params, train_videos: int = 0) -> TrainConfig:
    """The Trainer's settings for one stage (or DFDC chunk) with `train_videos` training videos:
    samples_per_epoch 0 (unset) draws train.items_per_video items per video and epoch."""
    t = params.train
    per_epoch = t.samples_per_epoch if stage_params.samples_per_epoch is None else stage_params.samples_per_epoch
    return TrainConfig(
        epochs=stage_params.epochs, lr=stage_params.lr, pretrained_lr_ratio=t.pretrained_lr_ratio,
        loss=stage_params.loss, focal_gamma=t.focal_gamma, label_smoothing=t.label_smoothing,
        batch_size=t.batch_size, grad_accum=t.grad_accum, grad_clip=t.grad_clip, warmup_frac=t.warmup_frac,
        samples_per_epoch=per_epoch or train_videos * t.items_per_video,
        amp=t.amp, num_workers=t.num_workers, seed=params.seed,
        keep_last=t.keep_last, storage_budget_gb=t.storage_budget_gb, storage_root=params.output_dir,
        checkpoint_chunk_mb=t.checkpoint_chunk_mb, unfreeze_schedule=t.unfreeze_schedule, replay=stage_params.replay,
        balanced_sampling=stage_params.balanced, pseudo_fakes=stage_params.pseudo_fakes)


def run_stage(params, model_name: str, stage: str, progress: bool = True, folder: str | None = None) -> dict:
    """Train `model_name` through `stage` (skipped when already done). Returns the stage summary.

    Runs as one process, or as every rank of a DDP group started by torchrun
    (`launch.run_stage_process`): each rank trains its share, rank 0 alone writes done.json and the
    fp16 export. `folder`: the run folder under runs/<model>/ when it is not `stage` (a variant of
    the stage trained beside the chain's, e.g. stage 1 on pseudo-fakes: `pipeline.pseudo_fakes`)."""
    if model_name not in list_models():
        raise InterceptorError(f"unknown model {model_name!r}; models: {list_models()}")
    if stage not in params.train.stages:
        raise InterceptorError(f"params have no train.stages.{stage}; stages configured: {list(params.train.stages)}")
    folder = folder or stage
    done = finished_as_configured(params, model_name, stage, folder)
    if done is not None:
        return {**done, "skipped": True}
    sp, settings = params.train.stages[stage], stage_settings(params, stage)
    init = previous_best(params, model_name, stage)  # fails first, naming the notebook to run
    cache, index = crop_cache(params), load_index(params)
    require_cached(cache, index, sp.dataset, stage)
    table = cache.usable(index)
    data = table[table["dataset"] == sp.dataset]
    if data.empty:
        raise InterceptorError(f"{stage} trains on {sp.dataset}, but the cached index has no {sp.dataset} videos; "
                               "run notebook 00 with that dataset enabled")
    budget = RunBudget(params.train.time_budget_h * 3600 if params.train.time_budget_h else None)
    device = resolve_device(params.device)
    if device.type == "cuda" and distributed.is_distributed():
        device = torch.device("cuda", distributed.local_rank())
    paths = RunPaths.of(params)
    t0 = time.perf_counter()
    if DATASETS[sp.dataset].chunked:
        order = sp.chunk_order or balanced_chunk_order(data)["chunk"].tolist()
        parts = [(f"chunk-{k:02d}", data[(data["chunk"] == k) & (data["split"] == "train")]) for k in order]
    else:
        parts = [("", data[data["split"] == "train"])]
    earlier = table[table["dataset"].isin(earlier_datasets(params, stage)) & (table["split"] == "train")]
    seen = set(earlier_datasets(params, stage)) | {sp.dataset} if params.train.select_on == "seen" else {sp.dataset}
    val = table[table["dataset"].isin(seen) & (table["split"] == "val")]
    histories, best = [], init
    validated = validated_parts([n for n, _ in parts], params.train.chunk_validation)
    with budget:
        for name, rows in parts:
            rdir = paths.run_dir(model_name, folder, name)
            part_done, _ = paths.find_done(model_name, folder, name) if name else (None, None)
            if part_done is not None:  # a DFDC chunk finished here or in an attached earlier session
                best = Path(part_done["best"])
                continue
            if rows["label"].nunique() < 2:
                if distributed.is_main():
                    warnings.warn(f"{model_name} {stage} {name or sp.dataset}: the training rows hold one class "
                                  f"({len(rows)} videos); skipped, the model passes through unchanged")
                continue
            n_videos = len(rows)
            if sp.replay > 0:  # the earlier stages' training videos, and this stage's chunks already trained
                trained = [r for _, r in parts[:[n for n, _ in parts].index(name)]]
                rows = with_replay(rows, pd.concat([earlier, *trained]))
            model = build_model(params, model_name, best)
            train_set, val_set = make_datasets(params, model, rows, val if name in validated else val.iloc[:0],
                                               pseudo_fakes(params, sp))
            trainer = Trainer(model, train_set, val_set, train_config(params, sp, n_videos), rdir, budget, device,
                              progress, metadata={"stage": stage, "part": name, "dataset": sp.dataset},
                              resume_from=_attached_latest(paths.attached_run_dirs(model_name, folder, name)))
            result = trainer.fit()
            if result.status == "stopped":
                raise TrainingStopped(
                    f"{model_name} {stage}{' ' + name if name else ''} stopped ({result.reason}) after saving "
                    f"{result.last}; re-run the same command (./run_all.sh {params.profile}) to resume from there"
                    + ("; in a new Kaggle session, attach this session's output and list it first in "
                       "train.previous_outputs" if params.train.time_budget_h else ""))
            best = distributed.run_on_main(lambda: trainer.ckpt.finalize())  # the best, weights only
            distributed.barrier()
            _write_done(rdir, {"best": str(best), "history": result.history.to_dict("records"),
                               "settings": settings})
            histories.append(result.history.assign(part=name or sp.dataset))
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    summary = {"model": model_name, "stage": stage, "dataset": sp.dataset, "best": str(best),
               "init": str(init) if init else None, "parts": [n for n, _ in parts],
               "skipped_parts": [n for n, r in parts if r["label"].nunique() < 2],
               "history": history.to_dict("records"), "seconds": round(time.perf_counter() - t0, 1),
               "stage_params": asdict(sp), "settings": settings, "chunk_validation": params.train.chunk_validation}
    rdir = paths.run_dir(model_name, folder)
    summary["export"] = distributed.run_on_main(
        lambda: export_best(best, rdir, {"model_name": model_name, "stage": stage}) if best else None)
    _write_done(rdir, summary)
    distributed.run_on_main(lambda: prune_parts(rdir, [n for n, _ in parts if n], keep=best))
    return {**summary, "skipped": False}


def require_cached(cache, index: pd.DataFrame, dataset: str, stage: str) -> None:
    """Raise unless every indexed video of `dataset` is cached or recorded as skipped: a stage must not
    train (and select its best checkpoint) on the part of a dataset a stopped preprocessing reached."""
    rows = index[index["dataset"] == dataset]
    pending = cache.pending(rows)
    if len(pending):
        raise InterceptorError(
            f"{stage} trains on {dataset}, but {len(pending)} of its {len(rows)} indexed videos are not preprocessed "
            f"yet (e.g. {pending['video_id'].iloc[0]}; cache {cache.dir}" + (f" and {len(cache.attached)} attached"
                                                                                   if cache.attached else "")
            + "). Run notebook 00_prepare_data (or `python -m interceptor_lib prepare`) until it finishes; on "
            "Kaggle in CPU-only sessions, each session's output attached to the next through train.previous_outputs.")


def _attached_latest(run_dirs: list[Path]) -> Path | None:
    """The latest checkpoint an interrupted run left in an attached earlier output (first folder that
    has one), to resume from; None when there is none."""
    for d in run_dirs:
        latest = CheckpointManager.read_only(d / "checkpoints").latest()
        if latest is not None:
            return latest
    return None


def prune_parts(stage_dir: Path, parts: list[str], keep: Path | None) -> list[str]:
    """Once a stage has finished, delete its parts' checkpoints (DFDC chunks) in this run's folder,
    except the one holding `keep` (the stage's best); their done.json records stay. Returns the
    folders deleted."""
    gone = []
    for name in parts:
        ckpts = Path(stage_dir) / name / "checkpoints"
        if ckpts.is_dir() and not (keep and Path(keep).resolve().is_relative_to(ckpts.resolve())):
            shutil.rmtree(ckpts)
            gone.append(str(ckpts))
    return gone


def _write_done(rdir: Path, summary: dict) -> None:
    """Write done.json (layout.write_done) on rank 0 only; every rank returns once it is written."""
    distributed.run_on_main(lambda: write_done(rdir, summary))
    distributed.barrier()
