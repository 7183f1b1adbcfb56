"""Progressive training, one stage of one model at a time (what notebooks 02-05 call).

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

Several GPUs: `launch_stage` (what the notebooks call) runs the stage in-process on one device, or,
when params.device resolves to cuda and more than one GPU is visible, as

    torchrun --standalone --nproc_per_node=<GPUs> -m interceptor_lib train --params <snapshot> ...

(one DDP process per GPU, see `distributed.py`), streaming its output, and returns the summary
from done.json. The subprocess reads a snapshot of the caller's `params` (overrides included).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from interceptor_lib.config.schema import STAGE_NAMES
from interceptor_lib.layout import done_record, stage_settings, stale_stage, stale_stages_message
from interceptor_lib.data.datasets import ClipDataset, FrameDataset, build_transform
from interceptor_lib.data.inspection import balanced_chunk_order
from interceptor_lib.data.registry import DATASETS
from interceptor_lib.pipeline.prepare import crop_cache, load_index
from interceptor_lib.errors import InterceptorError
from interceptor_lib.models import create_model, list_models
from interceptor_lib.layout import DONE_FILE, RunPaths
from interceptor_lib.training import distributed
from interceptor_lib.training.budget import SESSION_START_ENV, RunBudget
from interceptor_lib.training.checkpoint import checkpoint_bytes, export_weights, load_checkpoint
from interceptor_lib.training.engine import Trainer, TrainConfig

DONE = DONE_FILE
EXPORT = "best-fp16"                      # the stage's fp16 weights-only export, next to done.json
LAUNCH_PARAMS = "launch_params.yaml"      # the params snapshot a torchrun launch reads
STATUS_ENV = "INTERCEPTOR_STATUS_FILE"    # where `train` records its InterceptorError for launch_stage


class TrainingStopped(InterceptorError):
    """Training stopped early (time budget, SIGTERM) after saving a resumable checkpoint."""


def run_dir(params, model_name: str, stage: str, root: str | Path | None = None) -> Path:
    return RunPaths.of(params).run_dir(model_name, stage, root=Path(root) if root else None)


def finished(params, model_name: str, stage: str) -> dict | None:
    """The done.json of a finished stage, from this run's outputs or the previous session's."""
    return done_record(params, model_name, stage)


def finished_as_configured(params, model_name: str, stage: str) -> dict | None:
    """`finished`, for skipping the stage: raises an InterceptorError (naming the settings and what to
    do) when the finished stage, or a finished DFDC chunk of an unfinished one, was trained with other
    settings (config.stage_settings) than `params`."""
    done = finished(params, model_name, stage)
    changed = stale_stage(params, model_name, stage, done)
    if changed:
        raise InterceptorError(stale_stages_message(params, changed))
    return done


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
            + (f" or in {', '.join(params.train.previous_outputs)}" if params.train.previous_outputs else "")
            + f"); run notebook {STAGE_NAMES[order[i - 1]]} first")
    return Path(done["best"])


def earlier_datasets(params, stage: str) -> list[str]:
    """Datasets of the configured stages that run before `stage` (stage1 ... stage4 order)."""
    order = [name for name in STAGE_NAMES if name in params.train.stages]
    return [params.train.stages[name].dataset for name in order[:order.index(stage)]]


def with_replay(rows: pd.DataFrame, replay_rows: pd.DataFrame) -> pd.DataFrame:
    """This stage's training rows (stratum 0) followed by the replayed rows (stratum 1); the
    engine's sampler gives stratum 1 `replay` of the draws. Rows of this stage are not repeated."""
    replay_rows = replay_rows[~replay_rows["video_id"].isin(rows["video_id"])]
    return pd.concat([rows.assign(stratum=0), replay_rows.assign(stratum=1)], ignore_index=True)


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


def notebook_models(params, model: str | None) -> list[str]:
    """The models a stage notebook trains: `model` (one name, or several separated by commas, as
    ./run_all.sh passes them) or, when None, every model of train.models in turn."""
    if not model:
        return list(params.train.models)
    names = [m.strip() for m in str(model).split(",") if m.strip()]
    unknown = [m for m in names if m not in params.train.models]
    if unknown:
        raise InterceptorError(f"notebook parameter model={model!r}: {unknown} not in train.models "
                               f"{params.train.models} of profile {params.profile!r}")
    return names


def make_datasets(params, model, rows: pd.DataFrame, val_rows: pd.DataFrame):
    cache = crop_cache(params)
    cls = FrameDataset if model.input_kind == "image" else ClipDataset
    dc = model.data_config
    a = params.train.augment
    train_tf = build_transform(True, dc["mean"], dc["std"], jpeg_quality=tuple(a.jpeg_quality), p_color=a.p_color,
                               p_blur=a.p_blur, p_jpeg=a.p_jpeg, p_downscale=a.p_downscale)
    return (cls(rows, cache, train_tf),
            cls(val_rows, cache, build_transform(False, dc["mean"], dc["std"]),
                items_per_video=params.train.val_items_per_video))


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
        balanced_sampling=stage_params.balanced)


def run_stage(params, model_name: str, stage: str, progress: bool = True) -> dict:
    """Train `model_name` through `stage` (skipped when already done). Returns the stage summary.

    Runs as one process, or as every rank of a DDP group started by torchrun (`run_stage_process`):
    each rank trains its share, rank 0 alone writes done.json and the fp16 export."""
    if model_name not in list_models():
        raise InterceptorError(f"unknown model {model_name!r}; models: {list_models()}")
    if stage not in params.train.stages:
        raise InterceptorError(f"params have no train.stages.{stage}; stages configured: {list(params.train.stages)}")
    done = finished_as_configured(params, model_name, stage)
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
    device = _device(params.device)
    if device == "cuda" and distributed.is_distributed():
        device = f"cuda:{distributed.local_rank()}"
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
    with budget:
        for name, rows in parts:
            rdir = paths.run_dir(model_name, stage, name)
            part_done, _ = paths.find_done(model_name, stage, name) if name else (None, None)
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
            train_set, val_set = make_datasets(params, model, rows, val)
            trainer = Trainer(model, train_set, val_set, train_config(params, sp, n_videos), rdir, budget, device,
                              progress, metadata={"stage": stage, "part": name, "dataset": sp.dataset},
                              resume_from=_attached_latest(paths.attached_run_dirs(model_name, stage, name)))
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
               "stage_params": asdict(sp), "settings": settings}
    rdir = paths.run_dir(model_name, stage)
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
    from interceptor_lib.training.retention import CheckpointManager

    for d in run_dirs:
        latest = CheckpointManager.read_only(d / "checkpoints").latest()
        if latest is not None:
            return latest
    return None


def prune_parts(stage_dir: Path, parts: list[str], keep: Path | None) -> list[str]:
    """Once a stage has finished, delete its parts' checkpoints (DFDC chunks) in this run's folder,
    except the one holding `keep` (the stage's best); their done.json records stay. Returns the
    folders deleted."""
    import shutil

    gone = []
    for name in parts:
        ckpts = Path(stage_dir) / name / "checkpoints"
        if ckpts.is_dir() and not (keep and Path(keep).resolve().is_relative_to(ckpts.resolve())):
            shutil.rmtree(ckpts)
            gone.append(str(ckpts))
    return gone


def export_best(best: Path, rdir: Path, metadata: dict | None = None, max_chunk_mb: float = 100) -> dict:
    """Write `rdir/best-fp16/`: the weights of checkpoint `best` in fp16, weights only (export_weights).
    Returns what done.json records of it: path, bytes, dtype, source."""
    state = load_checkpoint(best)
    config = state.get("config", {})
    path = export_weights(state["model"], Path(rdir) / EXPORT, max_chunk_mb=max_chunk_mb, metadata={
        "source": str(best), "model_config": config.get("model", {}), **(metadata or {})})
    return {"path": str(path), "bytes": checkpoint_bytes(path), "dtype": "float16", "source": str(best)}


def run_stage_process(params, model_name: str, stage: str, progress: bool = True) -> dict:
    """What `python -m interceptor_lib train` runs, alone or as one torchrun worker: join the process
    group torchrun describes (none outside torchrun), run the stage, leave the group. On an
    InterceptorError, rank 0 records it in $INTERCEPTOR_STATUS_FILE (when set, by launch_stage)
    before re-raising, so the launcher can raise the same error (e.g. TrainingStopped)."""
    distributed.init_from_env(_device(params.device))
    try:
        return run_stage(params, model_name, stage, progress=progress and distributed.is_main())
    except InterceptorError as e:
        status = os.environ.get(STATUS_ENV)
        if status and distributed.is_main():
            Path(status).write_text(json.dumps({"error": type(e).__name__, "message": str(e)}))
        if isinstance(e, TrainingStopped):
            # Every rank stopped at the same step: leave together, so that torchrun (which ends the
            # other workers as soon as one exits non-zero) cannot cut rank 0 short while it reports.
            distributed.barrier()
        raise
    finally:
        distributed.shutdown()


def processes_for(params) -> int:
    """How many DDP processes a stage uses: the visible GPUs when params.device resolves to cuda, else 1."""
    if _device(params.device) != "cuda":
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def torchrun_command(nproc: int, model_name: str, stage: str, params_path: str | Path,
                     progress: bool = True) -> list[str]:
    """The torchrun command line of one stage (torchrun = `python -m torch.distributed.run`; this
    Python's, so the same environment runs the workers)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "interceptor_lib", "train", "--params", str(params_path), "--model", model_name,
            "--stage", stage] + ([] if progress else ["--quiet"])


def launch_stage(params, model_name: str, stage: str, params_file: str | Path | None = None,
                 profile: str | None = None, progress: bool = True, nproc: int | None = None) -> dict:
    """Run a stage on every visible GPU: in-process (`run_stage`) for one device, else under torchrun
    with one DDP process per GPU; returns the stage summary either way.

    The torchrun workers load a snapshot of `params` as it is now (`<run_dir>/launch_params.yaml`),
    so notebook overrides and edits reach them; `params_file` / `profile` (where `params` came from)
    are only noted in it. `nproc` overrides the number of processes (processes_for(params)); more
    than one on CPU uses gloo (for tests). Output streams through as it comes; SIGTERM / SIGINT sent
    to this process are forwarded to torchrun, whose workers then save and stop at a step boundary.
    Raises what the workers raised (TrainingStopped after a stop, InterceptorError for a user error),
    or an InterceptorError with the end of the output if they crashed."""
    n = processes_for(params) if nproc is None else nproc
    if n <= 1:
        return run_stage(params, model_name, stage, progress)
    if model_name not in list_models():
        raise InterceptorError(f"unknown model {model_name!r}; models: {list_models()}")
    done = finished_as_configured(params, model_name, stage)
    if done is not None:
        return {**done, "skipped": True}
    rdir = run_dir(params, model_name, stage)
    rdir.mkdir(parents=True, exist_ok=True)
    snapshot, status = rdir / LAUNCH_PARAMS, rdir / "launch_status.json"
    source = f"params file {params_file}" if params_file else f"profile {profile or params.profile}"
    snapshot.write_text(f"# params for torchrun, snapshot of {source} with overrides, resolved\n"
                        + json.dumps(asdict(params), indent=1, default=str) + "\n")  # JSON is YAML
    status.unlink(missing_ok=True)
    env = {**os.environ, STATUS_ENV: str(status),
           "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "900"),
           SESSION_START_ENV: os.environ.get(SESSION_START_ENV, str(time.time()))}
    cmd = torchrun_command(n, model_name, stage, snapshot, progress)
    print(f"launching {n} processes: {' '.join(cmd)}", flush=True)
    rc, tail = _run_streaming(cmd, env)
    if rc != 0:
        if status.is_file():
            err = json.loads(status.read_text())
            raise (TrainingStopped if err["error"] == TrainingStopped.__name__ else InterceptorError)(err["message"])
        raise InterceptorError(f"torchrun ({n} processes) of {model_name} {stage} failed with exit status {rc}; "
                               f"the end of its output:\n{tail}")
    done = finished(params, model_name, stage)
    if done is None:
        raise InterceptorError(f"torchrun of {model_name} {stage} exited 0 but wrote no {DONE} in {rdir}")
    return {**done, "skipped": False}


def _run_streaming(cmd: list[str], env: dict) -> tuple[int, str]:
    """Run `cmd`, copying its output (stdout and stderr, progress bars included) to ours as it comes.
    Returns the exit status and the last 4000 characters of output."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    tail: deque[str] = deque(maxlen=64)
    with _forward_signals(proc):
        fd = proc.stdout.fileno()
        while chunk := os.read(fd, 1 << 16):
            text = chunk.decode(errors="replace")
            sys.stdout.write(text)
            sys.stdout.flush()
            tail.append(text)
        rc = proc.wait()
    proc.stdout.close()
    return rc, "".join(tail)[-4000:]


@contextmanager
def _forward_signals(proc: subprocess.Popen):
    """While the block runs, pass SIGTERM / SIGINT on to `proc` instead of dying (main thread only)."""
    def forward(signum, frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    old = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            old[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


_CURVE_LABELS = {"frame_auc": "frame AUC", "video_auc": "video AUC",
                 "video_tnr": "real-detection rate (TNR)", "video_tpr": "fake-detection rate (TPR)"}


def plot_history(summary: dict):
    """Training curves of a stage summary: training loss and validation scores per epoch, or, for
    DFDC's stage, per chunk in training order (each chunk's epochs side by side)."""
    import matplotlib.pyplot as plt

    h = pd.DataFrame(summary["history"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    title = f"{summary['model']} · {summary['stage']} ({summary.get('dataset', '')})"
    if h.empty:
        axes[0].text(0.5, 0.5, "nothing trained in this run (finished earlier)", ha="center", va="center",
                     transform=axes[0].transAxes)
        return fig
    x = np.arange(1, len(h) + 1)
    chunks = "part" in h and h["part"].astype(str).str.startswith("chunk-").any()
    if chunks:
        parts = h["part"].astype(str).str.replace("chunk-", "", regex=False).str.lstrip("0").replace("", "0")
        per_chunk = h.groupby("part", sort=False).size().max()
        ticks = [f"{c}" if per_chunk == 1 else f"{c}.{e}" for c, e in zip(parts, h.get("epoch", x))]
        xlabel = "DFDC chunk, in training order" + ("" if per_chunk == 1 else " (chunk.epoch)")
    else:
        ticks, xlabel = [str(int(e)) for e in h.get("epoch", x)], "epoch"
    loss = (summary.get("stage_params") or {}).get("loss", "")
    axes[0].plot(x, h["train_loss"], marker="o")
    axes[0].set(title=f"{title}: training loss", xlabel=xlabel, ylabel=f"mean training loss{f' ({loss})' if loss else ''}")
    for col, label in _CURVE_LABELS.items():
        if col in h:
            axes[1].plot(x, h[col], marker="o", label=label)
    axes[1].set(title=f"{title}: validation", xlabel=xlabel, ylabel="score on validation videos", ylim=(0, 1.02))
    for ax in axes:
        ax.set_xticks(x, ticks, fontsize=7 if len(x) > 12 else 8)
        ax.set_xlim(0.5, len(x) + 0.5)  # a single epoch is one point in the middle, not a zoomed axis
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def _write_done(rdir: Path, summary: dict) -> None:
    """Write done.json atomically, on rank 0 only; every rank returns once it is written."""
    def write():
        rdir.mkdir(parents=True, exist_ok=True)
        tmp = rdir / (DONE + ".tmp")
        tmp.write_text(json.dumps(summary, indent=1, default=str))
        tmp.replace(rdir / DONE)

    distributed.run_on_main(write)
    distributed.barrier()


def _device(name: str):
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InterceptorError("params device is cuda but no GPU is visible; use device: auto or cpu")
    return name
