"""One stage's training options (`TrainConfig`, resolved from params by the pipeline's stage step),
and which of them a run may resume with changed (`RESUMABLE_CHANGES`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from interceptor_lib.config.schema import PSEUDO_OFF
from interceptor_lib.layout import RUN_ONLY_TRAIN_KEYS


@dataclass
class TrainConfig:
    """One stage's training options (resolved from params by pipeline.stages.train_config)."""

    epochs: int = 1
    lr: float = 1e-4                  # new layers (specialist modules, fusion, head)
    pretrained_lr_ratio: float = 0.1  # pretrained layers train at lr * ratio (reference design: 1e-5 vs 1e-4..1e-3)
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
    # "off", "only" or the share of fake draws that are the training set's pseudo-fakes (its
    # `pseudo_items`, made by the dataset: data.pseudo_fakes); recorded so that a resume cannot change it
    pseudo_fakes: str | float = PSEUDO_OFF
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


#: TrainConfig fields that no train.* params key sets and that change how a run goes, not what it
#: learns: the folder its storage budget covers, the memory layout, DDP's unused-parameter search
RUN_ONLY_FIELDS = ("storage_root", "channels_last", "find_unused_parameters")

#: TrainConfig fields a run may resume with changed: where and how fast it runs, what is kept. The
#: train.* settings among them are layout.RUN_ONLY_TRAIN_KEYS, the ones a finished stage's done.json
#: does not record either (one list for both), plus RUN_ONLY_FIELDS.
RESUMABLE_CHANGES = tuple(f.name for f in dataclasses.fields(TrainConfig)
                          if f.name in RUN_ONLY_TRAIN_KEYS or f.name in RUN_ONLY_FIELDS)


def changed_settings(saved: dict | None, cfg: TrainConfig) -> dict[str, tuple]:
    """{field: (saved, now)} of the TrainConfig fields outside RESUMABLE_CHANGES that differ between a
    checkpoint's config and `cfg` (fields the checkpoint predates are not compared)."""
    if not saved:
        return {}
    saved, now = json.loads(json.dumps(saved)), json.loads(json.dumps(dataclasses.asdict(cfg)))
    return {k: (saved[k], now[k]) for k in now if k in saved and k not in RESUMABLE_CHANGES and saved[k] != now[k]}
