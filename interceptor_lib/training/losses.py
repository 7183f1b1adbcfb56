"""Losses over two-class logits (B, 2), fake = class 1, and class weights for imbalanced data.

Stage defaults (params, not code): stage 1 cross-entropy, stage 2 focal loss, stage 4 weighted
cross-entropy. Class weights counter the 1 real : 4-6 fakes of every dataset, which made the
earlier attempt call almost everything fake (5.8% of real videos recognised) -- the imbalance of
what the model is trained on, i.e. of the sampler's draws: the trainer passes the sampler's
per-item draw weights, so that class-balanced draws get weight 1 per class and the imbalance is not
corrected twice (inverse-frequency weights on balanced batches weigh a real 4-6 times a fake).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def class_weights(labels, num_classes: int = 2, draw_weights=None) -> torch.Tensor:
    """Inverse-frequency weights normalised so that a balanced set gets 1.0 per class:
    w_c = N / (num_classes * N_c). With `draw_weights` (each item's relative chance of being drawn,
    e.g. a class-balanced sampler's), N_c is the expected share of draws of class c instead of the
    count of items, so that balanced draws give 1.0 per class."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes,
                         weights=None if draw_weights is None else np.asarray(draw_weights, dtype=np.float64)
                         ).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"class weights need every class present; counts = {counts.tolist()}")
    return torch.tensor(counts.sum() / (num_classes * counts), dtype=torch.float32)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t, averaged over the
    batch. `alpha` is an optional per-class weight tensor; gamma = 0 and alpha = None give
    cross-entropy. Label smoothing mixes the one-hot target with the uniform distribution."""

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma, self.label_smoothing = gamma, label_smoothing
        self.register_buffer("alpha", alpha if alpha is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)                                  # (B, C)
        n_cls = logits.shape[1]
        onehot = F.one_hot(target, n_cls).float()
        soft = onehot * (1 - self.label_smoothing) + self.label_smoothing / n_cls     # (B, C)
        focal = (1 - logp.exp()).pow(self.gamma)                                     # (B, C)
        per_class = -soft * focal * logp
        if self.alpha is not None:
            per_class = per_class * self.alpha.to(per_class.device)[None, :]
        return per_class.sum(1).mean()


def build_loss(name: str, labels=None, gamma: float = 2.0, label_smoothing: float = 0.0,
               draw_weights=None) -> nn.Module:
    """'ce' (cross-entropy), 'weighted_ce' (class weights from `labels`, and the items' `draw_weights`
    when the training draws are not uniform) or 'focal' (class-weighted when `labels` are given)."""
    if name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    weights = class_weights(labels, draw_weights=draw_weights) if labels is not None else None
    if name == "weighted_ce":
        if weights is None:
            raise ValueError("weighted_ce needs the training labels to compute class weights")
        return nn.CrossEntropyLoss(weight=weights, label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(gamma, weights, label_smoothing)
    raise ValueError(f"unknown loss {name!r}; choose ce, weighted_ce or focal")
