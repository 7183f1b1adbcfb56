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
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset
from interceptor_lib.progress import progress_bar

from interceptor_lib import __version__
from interceptor_lib.data.datasets import BalancedSampler
from interceptor_lib.errors import InterceptorError
from interceptor_lib.metrics.scores import aggregate_videos, binary_metrics
from interceptor_lib.models.freezing import ProgressiveUnfreezing, param_groups
from interceptor_lib.training import distributed
from interceptor_lib.training.budget import RunBudget
from interceptor_lib.training.checkpoint import load_checkpoint
from interceptor_lib.training.losses import build_loss
from interceptor_lib.training.retention import CheckpointManager, RetentionPolicy


@dataclass
class TrainConfig:
    """One stage's training options (resolved from params by the stage notebook)."""

    epochs: int = 1
    lr: float = 1e-4                  # new layers (specialist modules, fusion, head)
    pretrained_lr_ratio: float = 0.1  # pretrained backbone layers train at lr * ratio (seeds: 1e-5 vs 1e-4..1e-3)
    weight_decay: float = 1e-4        # new layers
    weight_decay_pretrained: float = 1e-5
    loss: str = "ce"                  # ce | weighted_ce | focal
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    batch_size: int = 16              # per process: under DDP a step takes batch_size x world_size items
    grad_accum: int = 1               # optimizer step every `grad_accum` batches
    grad_clip: float = 1.0            # max gradient norm (0 = off)
    warmup_frac: float = 0.1          # share of optimizer steps spent warming up linearly
    samples_per_epoch: int = 0        # balanced draws per epoch over all processes (0 = the number of training items)
    balanced_sampling: bool = True
    replay: float = 0.0               # share of draws from items of stratum 1 (earlier stages' data), if any
    amp: str = "auto"                 # auto | off | fp16 | bf16 (auto on CUDA: bf16 from capability 8.0, else fp16)
    channels_last: bool = True        # CUDA only
    num_workers: int = 0
    seed: int = 0
    keep_last: int = 2
    storage_budget_gb: float | None = None
    storage_root: str | None = None   # the folder the budget covers (the run's output_dir); None: the checkpoints
    checkpoint_chunk_mb: float = 100
    # Progressive unfreezing: {first epoch (0-based): trainable trailing backbone stages (None = all)},
    # e.g. {0: 0, 2: 1, 4: 2}; must say what happens from epoch 0. None: keep the model's own setting.
    unfreeze_schedule: dict[int, int | None] | None = None
    find_unused_parameters: bool | None = None  # DDP only; None: only for models that may skip a branch (av)


#: TrainConfig fields a run may resume with changed: where and how fast it runs, what is kept
RESUMABLE_CHANGES = ("num_workers", "keep_last", "storage_budget_gb", "storage_root", "checkpoint_chunk_mb",
                     "channels_last", "find_unused_parameters")


def _changed_settings(saved: dict | None, cfg: TrainConfig) -> dict[str, tuple]:
    """{field: (saved, now)} of the TrainConfig fields outside RESUMABLE_CHANGES that differ between a
    checkpoint's config and `cfg` (fields the checkpoint predates are not compared)."""
    if not saved:
        return {}
    saved, now = json.loads(json.dumps(saved)), json.loads(json.dumps(dataclasses.asdict(cfg)))
    return {k: (saved[k], now[k]) for k in now if k in saved and k not in RESUMABLE_CHANGES and saved[k] != now[k]}


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
                            **_replay_strata(train_set, cfg.replay, cfg.balanced_sampling)),
            self.rank, self.world_size)
        # Class weights for the classes as drawn: balanced draws already counter the dataset's imbalance
        # (weighting a real 4-6 times a fake on top of them pushed every stage-2 to 4 model towards "real").
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
        self.amp_dtype = _amp_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        self._frames_per_item = 1  # frames per training item: 1 for images, T for (B, T, 3, H, W) clips
        self.net: torch.nn.Module | None = None  # what the training forward runs: the model, DDP-wrapped under torchrun
        # The augmentations and dropout draw from the global RNGs: seeded here, so that two runs of the
        # same config (two processes, two chains) train alike; each rank draws its own, saved per rank.
        # (Left to the caller's stream before, a fresh process drew other augmentations every run.)
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
            changed = _changed_settings(s.get("config", {}).get("train"), self.cfg)
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
            # The loader's own generator: creating an iterator then draws its worker seed from it,
            # not from the global RNG, so a resumed epoch replays the same augmentations.
            # A new loader (new workers) per epoch, never persistent_workers: the workers' seeds then come
            # from this epoch's generator, which is what keeps a resumed run exact. On CUDA, pinned
            # memory and deeper prefetching keep the GPU fed; prefetching does not change what is drawn.
            cuda = self.device.type == "cuda"
            loader = DataLoader(self.train_set, batch_size=cfg.batch_size, sampler=self.sampler,
                                num_workers=cfg.num_workers, pin_memory=cuda, drop_last=True,
                                **({"prefetch_factor": 4} if cuda and cfg.num_workers > 0 else {}),
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
        val = self.validate()
        row = {"epoch": self.epoch + 1, "train_loss": distributed.mean(loss),
               "lr": self.optimizer.param_groups[-1]["lr"], "seconds": seconds, **val,
               "val_seconds": time.perf_counter() - t0}
        return distributed.broadcast_object(row)  # rank 0's row: the same history (and best) on every rank

    def _record_throughput(self, steps: int, seconds: float) -> None:
        """Training images per second per process (a clip counts its frames), data loading included,
        and the validation's, kept in <storage_root>/reports/throughput.json for `plan`."""
        from interceptor_lib.training import throughput

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
        batch = _to_device(batch, self.device, cfg.channels_last)
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

    @torch.no_grad()
    def predict(self, dataset) -> pd.DataFrame:
        """Frame-level (or clip-level) predictions: video_id, label, prob (this process, all of `dataset`)."""
        self.model.eval()
        cuda = self.device.type == "cuda"
        loader = DataLoader(dataset, batch_size=self.cfg.batch_size, shuffle=False, num_workers=self.cfg.num_workers,
                            pin_memory=cuda, **({"prefetch_factor": 4} if cuda and self.cfg.num_workers > 0 else {}),
                            generator=torch.Generator().manual_seed(0))
        rows = []
        for batch in loader:
            b = _to_device(batch, self.device, self.cfg.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                prob = self.model(b)["prob"].float().cpu().numpy()
            rows.append(pd.DataFrame({"video_id": batch["video_id"], "label": batch["label"].numpy(), "prob": prob}))
        return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["video_id", "label", "prob"])

    def validate(self) -> dict:
        """Validation metrics (frame and video level). Under DDP each rank predicts its share of the
        validation set and the predictions are gathered, so every rank computes the same metrics."""
        if self.val_set is None or len(self.val_set) == 0:
            return {}
        if self.world_size > 1:
            share = Subset(self.val_set, range(self.rank, len(self.val_set), self.world_size))
            frames = pd.concat(distributed.all_gather_object(self.predict(share)), ignore_index=True)
        else:
            frames = self.predict(self.val_set)
        videos = aggregate_videos(frames, score="prob")
        f = binary_metrics(frames["label"], frames["prob"])
        v = binary_metrics(videos["label"], videos["prob"])  # the aggregated column keeps its name
        return {"frame_auc": f["auc"], "video_auc": v["auc"], "video_tnr": v["tnr"], "video_tpr": v["tpr"],
                "video_balanced_accuracy": v["balanced_accuracy"], "val_log_loss": f["log_loss"]}


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


def _amp_dtype(amp: str, device: torch.device):
    """The autocast dtype for `amp` on `device` (None: full precision). `torch.cuda.is_bf16_supported()`
    is also true where bf16 is only emulated (T4, P100: compute capability below 8.0) and slow, so
    "auto" asks the device's capability: bf16 from 8.0 (Ampere) on, fp16 (with a GradScaler) below."""
    if device.type != "cuda" or amp == "off":
        return None
    major, minor = torch.cuda.get_device_capability(device)
    native_bf16 = (major, minor) >= (8, 0)
    if amp == "bf16":
        if not native_bf16:
            warnings.warn(f"amp: bf16 on a GPU of compute capability {major}.{minor} (below 8.0) is emulated "
                          f"and slow there; amp: auto (or fp16) trains in fp16 on this GPU", stacklevel=2)
        return torch.bfloat16
    if amp == "auto" and native_bf16:
        return torch.bfloat16
    return torch.float16


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and device.type == "cuda" and v.dim() == 4 and k == "image":
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def _replay_strata(train_set, replay: float, balanced: bool = True) -> dict:
    """BalancedSampler arguments that give the replayed items (stratum 1) `replay` of the draws;
    none when the set has no strata (every item then counts as this stage's), or when the draws are
    natural (not balanced) and nothing is to be replayed."""
    strata = getattr(train_set, "strata", None)
    if not balanced:
        if replay:
            raise ValueError(f"replay ({replay}) needs balanced draws (balanced_sampling is off)")
        return {}
    if strata is None:
        return {}
    if not 0.0 <= replay < 1.0:
        raise ValueError(f"replay must be in [0, 1), got {replay}")
    return {"strata": np.minimum(strata, 1), "shares": [1.0 - replay, replay]}
