"""The training engine every stage notebook uses: one loop, resumable at any step boundary.

`Trainer(model, train_set, val_set, cfg, run_dir).fit()` trains with AdamW over the model's
parameter groups (differential learning rates), a cosine schedule with warmup, class-balanced
sampling, gradient accumulation and clipping, mixed precision on CUDA (bf16 on compute capability
8.0 and above, else fp16 with a GradScaler; off on CPU), validates every epoch (frame and video AUC,
real- and fake-detection rates) and keeps checkpoints through a `CheckpointManager`: the best by
validation video AUC (never by test) plus the last ones.

It stops at a step boundary when the `RunBudget` says so (time nearly up, SIGTERM/SIGINT), after
saving the full state — model, optimizer, scheduler, scaler, RNG states and the position in the
epoch — so that `fit()` on the same `run_dir` continues exactly where it stopped: on CPU with
`num_workers=0`, a run killed and resumed ends with the same weights as one that never stopped.

Progressive unfreezing (`TrainConfig.unfreeze_schedule`, epoch -> trainable backbone stages) is
applied at the start of every epoch, resumed epochs included; the optimizer holds the frozen
backbone parameters from the start (they get no gradient, so AdamW leaves them and their state
alone) and trains them once unfrozen.

Under torchrun (see `distributed.py`) the same loop runs data-parallel: each rank trains on its
share of the epoch's draws through DistributedDataParallel, validation is sharded and gathered,
rank 0 alone writes checkpoints and metrics.csv, and a stop on any rank stops every rank at the
same step; every rank's RNG state is saved, so a DDP run also resumes exactly.

Beside it: its options (`train_config.py`, with what a resume may change), the per-epoch
validation (`validation.py`), the device and its autocast dtype (`device.py`), the replayed share
of the draws (`replay.py`).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from interceptor_lib import __version__
from interceptor_lib.data.datasets import BalancedSampler
from interceptor_lib.errors import InterceptorError
from interceptor_lib.models.freezing import ProgressiveUnfreezing, param_groups
from interceptor_lib.progress import progress_bar
from interceptor_lib.training import distributed, throughput
from interceptor_lib.training.budget import RunBudget
from interceptor_lib.training.checkpoint import load_checkpoint
from interceptor_lib.training.device import autocast_dtype, batch_to_device, loader_options
from interceptor_lib.training.losses import build_loss
from interceptor_lib.training.replay import pseudo_draws, replay_strata
from interceptor_lib.training.retention import CheckpointManager, RetentionPolicy
from interceptor_lib.training.train_config import TrainConfig, changed_settings
from interceptor_lib.training.validation import validate


@dataclass
class FitResult:
    status: str                  # "done" | "stopped"
    reason: str | None           # why it stopped early
    best: Path | None            # best checkpoint by validation video AUC
    last: Path | None
    history: pd.DataFrame        # one row per finished epoch


class Trainer:
    def __init__(self, model, train_set, val_set, cfg: TrainConfig, run_dir: str | Path,
                 budget: RunBudget | None = None, device: str | torch.device = "cpu", progress: bool = True,
                 metadata: dict | None = None, resume_from: str | Path | None = None):
        self.model, self.train_set, self.val_set, self.cfg = model, train_set, val_set, cfg
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.budget = budget or RunBudget(None)
        self.progress = progress
        self.metadata = metadata or {}
        # A checkpoint outside run_dir to resume from when run_dir has none yet: the same run, stopped
        # in an earlier session whose output is attached read-only. Later saves go to run_dir.
        self.resume_from = Path(resume_from) if resume_from else None
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        # Rank 0 alone writes (and reads the registry of) checkpoints; the others get its answers.
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", RetentionPolicy(
            keep_last=cfg.keep_last, storage_budget_gb=cfg.storage_budget_gb, max_chunk_mb=cfg.checkpoint_chunk_mb),
            budget_root=cfg.storage_root) if self.is_main else None
        self.unfreezing = _unfreezing(model, cfg.unfreeze_schedule)
        self.model.to(self.device)
        if cfg.channels_last and self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(param_groups(
            model, lr_pretrained=cfg.lr * cfg.pretrained_lr_ratio, wd_pretrained=cfg.weight_decay_pretrained,
            lr_new=cfg.lr, wd_new=cfg.weight_decay))
        # Same seeded draw on every rank, each taking its rank-strided share (all of it for one process).
        self.sampler = distributed.ShardedSampler(
            BalancedSampler(train_set.labels, cfg.samples_per_epoch or None, seed=cfg.seed,
                            balanced=cfg.balanced_sampling,
                            **replay_strata(train_set, cfg.replay, cfg.balanced_sampling),
                            **pseudo_draws(train_set, cfg.pseudo_fakes)),
            self.rank, self.world_size)
        # Class weights for the classes as drawn: balanced draws already counter the dataset's imbalance,
        # weights from the dataset's class frequencies would counter it a second time.
        self.loss_fn = build_loss(cfg.loss, train_set.labels if cfg.loss != "ce" else None,
                                  cfg.focal_gamma, cfg.label_smoothing,
                                  draw_weights=self.sampler.base.weights).to(self.device)
        if len(self.sampler) < cfg.batch_size:
            per = f" per process ({self.sampler.base.num_samples} over {self.world_size})" \
                if self.world_size > 1 else ""
            raise ValueError(f"an epoch of {len(self.sampler)} items{per} is smaller than one batch ({cfg.batch_size})")
        # Full batches only: the heads' BatchNorm cannot train on a batch of one.
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        total = max(1, cfg.epochs * math.ceil(self.steps_per_epoch / cfg.grad_accum))
        warm = int(cfg.warmup_frac * total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: _warmup_cosine(s, warm, total))
        self.amp_dtype = autocast_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self._frames_per_item = 1  # frames per training item: 1 for images, T for (B, T, 3, H, W) clips
        self.net: torch.nn.Module | None = None  # what the training forward runs: the model, DDP-wrapped under torchrun
        # The augmentations and dropout draw from the global RNGs: seeded here, so that two runs of the
        # same config (two processes, two chains) train alike; each rank draws its own, saved per rank.
        _seed_all(cfg.seed * 1_000_003 + self.rank)

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a resume needs. Under DDP every rank must call it (it gathers each rank's RNG
        state: `rng` is this rank's, `rng_ranks` every rank's); the model is the unwrapped module."""
        rng = _rng_state()
        s = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": rng,
            "progress": {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step},
            "history": self.history,
            "config": {"train": dataclasses.asdict(self.cfg), "model_name": getattr(self.model, "model_name", ""),
                       "model": dataclasses.asdict(self.model.config) if dataclasses.is_dataclass(
                           getattr(self.model, "config", None)) else {},
                       "library_version": __version__, "world_size": self.world_size, **self.metadata},
        }
        if self.world_size > 1:
            s["rng_ranks"] = distributed.all_gather_object(rng)
        return s

    def resume(self) -> bool:
        """Continue from the latest checkpoint in run_dir, if any. Returns whether it resumed."""
        latest = distributed.run_on_main(lambda: self.ckpt.latest())  # rank 0's choice, on every rank
        if latest is None and self.resume_from is not None:
            distributed.run_on_main(lambda: self.ckpt.adopt_best(self.resume_from.parent))
            latest = self.resume_from
        if latest is None:
            return False
        s = load_checkpoint(latest, map_location="cpu")
        if "optimizer" in s:  # (a weights-only fallback save restarts the stage from its weights)
            changed = changed_settings(s.get("config", {}).get("train"), self.cfg)
            if changed:
                raise InterceptorError(
                    f"{latest} was saved mid-run with other training settings than this run's (saved -> now: "
                    + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()) + "); resuming would "
                    f"train the rest of the run with other settings than its start. To train it again with "
                    f"these settings delete {self.run_dir}, or set the params back to resume it.")
        self.model.load_state_dict(s["model"])
        if "optimizer" not in s:
            return True
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.scaler.load_state_dict(s["scaler"])
        saved_world = s.get("config", {}).get("world_size", 1)
        per_rank = s.get("rng_ranks")
        if per_rank and len(per_rank) == self.world_size:
            _set_rng_state(per_rank[self.rank])
        elif self.rank == 0:
            _set_rng_state(s["rng"])  # ranks > 0 keep their own seeded streams
        p = s["progress"]
        self.epoch, self.step_in_epoch, self.global_step = p["epoch"], p["step_in_epoch"], p["global_step"]
        if saved_world != self.world_size:
            if self.step_in_epoch and self.is_main:
                warnings.warn(f"{latest} was saved by {saved_world} process(es) and resumes with {self.world_size}: "
                              "the rest of its epoch is not the exact continuation (other items per step)")
            self.step_in_epoch = min(self.step_in_epoch, self.steps_per_epoch)
        self.history = list(s.get("history", []))
        return True

    # -- loop -------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train (resuming from run_dir's latest checkpoint) until `cfg.epochs` or a stop request."""
        self.resume()
        cfg = self.cfg
        while self.epoch < cfg.epochs:
            self._start_epoch()
            self.sampler.set_epoch(self.epoch, skip=self.step_in_epoch * cfg.batch_size)
            if hasattr(self.train_set, "set_epoch"):  # its pseudo-fakes are drawn from (seed, epoch, index)
                self.train_set.set_epoch(self.epoch)
            # The loader's own generator: creating an iterator then draws its worker seed from it,
            # not from the global RNG, so a resumed epoch replays the same augmentations.
            # A new loader (new workers) per epoch, never persistent_workers: the workers' seeds then come
            # from this epoch's generator, which is what keeps a resumed run exact.
            loader = DataLoader(self.train_set, batch_size=cfg.batch_size, sampler=self.sampler,
                                num_workers=cfg.num_workers, drop_last=True,
                                **loader_options(self.device, cfg.num_workers),
                                generator=torch.Generator().manual_seed(cfg.seed * 7919 + self.epoch
                                                                        + 104_729 * self.rank))
            self.net.train()
            losses, t0 = [], time.perf_counter()
            bar = progress_bar(loader, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", initial=self.step_in_epoch,
                       total=self.steps_per_epoch, leave=False, disable=not (self.progress and self.is_main))
            for batch in bar:
                losses.append(self._train_step(batch))
                self.step_in_epoch += 1
                self.global_step += 1
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
                reason = self._should_stop()
                if reason and self.step_in_epoch < self.steps_per_epoch:
                    path, best, _ = self._save(f"step-{self.global_step:07d}")
                    return FitResult("stopped", reason, best, path, pd.DataFrame(self.history))
            seconds = time.perf_counter() - t0
            self.history.append(self._epoch_row(losses, seconds))
            distributed.run_on_main(self._write_metrics)
            distributed.run_on_main(lambda: self._record_throughput(len(losses), seconds))
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
            metric = self.history[-1].get("video_auc")
            _, best, last = self._save(f"epoch-{self.epoch:03d}",
                                       metric=None if metric is None or math.isnan(metric) else float(metric))
            reason = self._should_stop()
            if reason and self.epoch < cfg.epochs:
                return FitResult("stopped", reason, best, last, pd.DataFrame(self.history))
        best, last = distributed.run_on_main(lambda: (self.ckpt.best(), self.ckpt.latest()))
        return FitResult("done", None, best, last, pd.DataFrame(self.history))

    def _start_epoch(self) -> None:
        """Apply the unfreezing phase of this epoch; (re)wrap the model for DDP when the set of
        trainable parameters changed (DDP registers them when it is built)."""
        changed = self.unfreezing.apply(self.model, self.epoch) if self.unfreezing else False
        if self.net is None or changed:
            self.net = distributed.wrap(self.model, self.device, self.cfg.find_unused_parameters, previous=self.net)

    def _should_stop(self) -> str | None:
        """The budget's answer on this rank, agreed over all ranks (one asks: all stop, same step)."""
        return distributed.agree_on_stop(self.budget.should_stop())

    def _epoch_row(self, losses: list[float], seconds: float) -> dict:
        loss = float(np.mean(losses)) if losses else float("nan")
        distributed.sync_buffers(self.model)  # every rank validates (and rank 0 saves) the same weights
        t0 = time.perf_counter()
        val = validate(self.model, self.val_set, self.cfg, self.device, self.amp_dtype, self.rank, self.world_size)
        row = {"epoch": self.epoch + 1, "train_loss": distributed.mean(loss),
               "lr": self.optimizer.param_groups[-1]["lr"], "seconds": seconds, **val,
               "val_seconds": time.perf_counter() - t0}
        return distributed.broadcast_object(row)  # rank 0's row: the same history (and best) on every rank

    def _record_throughput(self, steps: int, seconds: float) -> None:
        """Training images per second per process (a clip counts its frames), data loading included,
        and the validation's, kept in <storage_root>/reports/throughput.json for `plan`."""
        if self.cfg.storage_root is None or steps == 0 or seconds <= 0:
            return
        name = getattr(self.model, "model_name", "") or type(self.model).__name__
        images = steps * self.cfg.batch_size * self._frames_per_item
        throughput.record(self.cfg.storage_root, f"train.images_per_s.{name}", images / seconds, images)
        val = self.history[-1].get("val_seconds") if self.history else None
        if val and self.val_set is not None and len(self.val_set):
            frames = len(self.val_set) * self._frames_per_item
            throughput.record(self.cfg.storage_root, "eval.images_per_s", frames / self.world_size / val, frames)

    def _write_metrics(self) -> None:
        pd.DataFrame(self.history).to_csv(self.run_dir / "metrics.csv", index=False)  # one row per epoch

    def _save(self, name: str, metric: float | None = None) -> tuple[Path, Path | None, Path | None]:
        """Save a checkpoint on rank 0 (every rank takes part in gathering the state); returns
        (saved, best, latest) on every rank once the save is complete."""
        state = self.state()

        def save():
            saved = self.ckpt.save(name, state, metric=metric)
            return saved.path, self.ckpt.best(), self.ckpt.latest()

        out = distributed.run_on_main(save)
        distributed.barrier()
        return out

    def _train_step(self, batch: dict) -> float:
        cfg = self.cfg
        batch = batch_to_device(batch, self.device, cfg.channels_last)
        if "clip" in batch:
            self._frames_per_item = batch["clip"].shape[1]
        boundary = (self.step_in_epoch + 1) % cfg.grad_accum == 0 or self.step_in_epoch + 1 == self.steps_per_epoch
        with distributed.no_sync(self.net, sync=boundary):  # accumulate locally, all-reduce on the last micro-batch
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                out = self.net(batch)
                loss = self.loss_fn(out["logits"].float(), batch["label"]) / cfg.grad_accum
            self.scaler.scale(loss).backward()
        if boundary:
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            if hasattr(self.model, "after_optimizer_step"):
                self.model.after_optimizer_step()
        return float(loss.detach()) * cfg.grad_accum


def _unfreezing(model, schedule: dict | None) -> ProgressiveUnfreezing | None:
    """The ProgressiveUnfreezing of `TrainConfig.unfreeze_schedule`, checked against the model's
    backbone (None when there is no schedule)."""
    if not schedule:
        return None
    phases = {int(k): v for k, v in schedule.items()}
    backbone = getattr(distributed.unwrap(model), "backbone", None)
    n = len(getattr(backbone, "stages", ()))
    if not n:
        raise ValueError(f"unfreeze_schedule needs a model with a staged `backbone`; "
                         f"{type(model).__name__} has none")
    bad = {e: v for e, v in phases.items() if e < 0 or (v is not None and not 0 <= v <= n)}
    if bad:
        raise ValueError(f"unfreeze_schedule maps epochs >= 0 to None or a number of stages in [0, {n}] "
                         f"(backbone {getattr(backbone, 'name', '')!r} has {n} stages); got {bad}")
    return ProgressiveUnfreezing(phases)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
