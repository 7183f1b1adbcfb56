"""Staged freezing of the pretrained backbone, progressive unfreezing, and optimizer parameter groups.

The reference design: freeze the ImageNet backbone, fine-tune its last stages with a small learning rate and
train the new layers with a 100x larger one; optionally unfreeze progressively (new layers only ->
last stage -> last two). A "stage" is one unit of `Backbone.stages` (EfficientNet-B4: 7 MBConv
stages); the head conv (1x1 to num_features) is fine-tuned together with any unfrozen stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from interceptor_lib.models.backbone import Backbone


def _backbone(model: nn.Module) -> Backbone:
    bb = model if isinstance(model, Backbone) else getattr(model, "backbone", None)
    if not isinstance(bb, Backbone):
        raise TypeError(f"{type(model).__name__} has no `backbone` (interceptor_lib.models.Backbone) to freeze")
    return bb


def set_trainable_stages(model: nn.Module, n: int | None) -> None:
    """Make only the last `n` backbone stages (+ the head conv when n > 0) trainable; n = None makes
    the whole backbone trainable, n = 0 freezes all of it (train the new layers only). Parameters
    outside the backbone are not touched."""
    bb = _backbone(model)
    if n is not None and not 0 <= n <= len(bb.stages):
        raise ValueError(f"trainable_stages must be None or in [0, {len(bb.stages)}] for backbone "
                         f"{bb.name!r} ({len(bb.stages)} stages), got {n}")
    for p in bb.parameters():
        p.requires_grad_(n is None)
    if n:
        tail = list(bb.stages[len(bb.stages) - n:]) + ([bb.head] if bb.head is not None else [])
        for unit in tail:
            for p in unit.parameters():
                p.requires_grad_(True)


def trainable_stages(model: nn.Module) -> int | None:
    """Inverse of set_trainable_stages: how many trailing stages are trainable (None: all)."""
    bb = _backbone(model)
    flags = [any(p.requires_grad for p in s.parameters()) for s in bb.stages]
    if all(flags) and all(p.requires_grad for p in bb.parameters()):
        return None
    return len(flags) - next((i for i, f in enumerate(flags) if f), len(flags))


def keep_frozen_in_eval(model: nn.Module) -> None:
    """Put every fully frozen backbone unit, and any BatchNorm whose affine parameters are frozen,
    in eval mode. Called by DetectorBase.train(). Why: a BatchNorm in train mode normalises with the
    batch's statistics and overwrites its running mean/var, so a "frozen" stage would still drift
    away from its ImageNet behaviour (worse with the small batches we train with), and specialists
    trained apart would no longer share an identical trunk. Eval mode also turns off the frozen
    stages' stochastic depth, so the trunk is deterministic."""
    bb = getattr(model, "backbone", None)
    if isinstance(bb, Backbone):
        for unit in bb.units:
            if not any(p.requires_grad for p in unit.parameters()):
                unit.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            own = list(m.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                m.eval()


def param_groups(model: nn.Module, lr_pretrained: float = 1e-5, wd_pretrained: float = 1e-5,
                 lr_new: float = 1e-3, wd_new: float = 1e-4, include_frozen: bool = True) -> list[dict]:
    """Two optimizer groups (the reference design's values): "pretrained" = the backbone, "new" = every other
    parameter (specialist modules, fusion, heads).

    With include_frozen=True (default) the pretrained group also holds the currently frozen backbone
    parameters: they never receive a gradient, so AdamW/SGD skip them (no update, no weight decay),
    and when ProgressiveUnfreezing later unfreezes a stage the existing optimizer trains it without
    being rebuilt. With include_frozen=False only parameters with requires_grad are listed."""
    bb = _backbone(model)
    pre_ids = {id(p) for p in bb.parameters()}
    keep = (lambda p: True) if include_frozen else (lambda p: p.requires_grad)
    pretrained = [p for p in bb.parameters() if keep(p)]
    new = [p for p in model.parameters() if id(p) not in pre_ids and p.requires_grad]
    groups = [{"name": "pretrained", "params": pretrained, "lr": lr_pretrained, "weight_decay": wd_pretrained},
              {"name": "new", "params": new, "lr": lr_new, "weight_decay": wd_new}]
    return [g for g in groups if g["params"]]


@dataclass
class ProgressiveUnfreezing:
    """Epoch-keyed schedule of how many trailing backbone stages are trainable (the reference design, "optional"):
    epochs 0-1 train the new layers only, 2-3 add the last stage (+ head conv), 4+ the last two.

        schedule = ProgressiveUnfreezing()
        for epoch in range(start_epoch, epochs):
            if schedule.apply(model, epoch): log(...)

    `apply` depends on the epoch only, so a resumed run lands in the right phase. Build the optimizer
    with param_groups(..., include_frozen=True) so newly unfrozen stages are already in it."""

    phases: dict[int, int | None] = field(default_factory=lambda: {0: 0, 2: 1, 4: 2})  # start epoch -> stages

    def __post_init__(self):
        if 0 not in self.phases:
            raise ValueError(f"phases must say what happens from epoch 0, got {self.phases}")

    def stages_at(self, epoch: int) -> int | None:
        """Trainable trailing stages during `epoch` (0-based)."""
        return self.phases[max(e for e in self.phases if e <= epoch)]

    def apply(self, model: nn.Module, epoch: int) -> bool:
        """Set the model's trainable stages for `epoch`; True when that changed the trainable set."""
        before = [p.requires_grad for p in model.parameters()]
        set_trainable_stages(model, self.stages_at(epoch))
        model.train(model.training)  # re-apply eval mode to what is frozen now
        return before != [p.requires_grad for p in model.parameters()]
