"""The contract every detector keeps: a batch dict in, a prediction dict out (DeepfakeBench's).

In:  batch["image"] (B, 3, H, W) for frame models, or batch["clip"] (B, T, 3, H, W) for clip models
     (TM, AV; AV also reads batch["audio"] (B, S) and batch["has_audio"] (B,)), normalised with
     `model.data_config["mean"/"std"]`.
Out: "logits" (B, 2)  always two columns [real, fake], so cross-entropy / focal loss code is one;
                      a head with one output z returns [0, z] (softmax of it = sigmoid(z)).
     "prob"   (B,)    P(fake) = softmax(logits)[:, 1] = sigmoid(logits[:, 1] - logits[:, 0]).
     "features" (B, D) the vector the classifier reads (D = model.num_features).
     "attention" (B, g, g) where the model has attention (the specialists' fusion), "gate" (B, C)
     for the dual-stream model.

Trunk and the rest: `forward(batch)` is `forward(batch, trunk=forward_trunk(batch))`. The trunk is
`model.backbone`'s leading frozen units (stem + frozen stages, `model.backbone.trunk_depth` of them)
applied to the frames; for clip models the frames are the B*T frames of the clips. A shared-trunk
ensemble computes `t = m.forward_trunk(batch)` once and calls `m_i(batch, trunk=t)` for every model
whose `backbone.trunk_state()` equals m's (same frozen ImageNet weights and depth).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from interceptor_lib.errors import InterceptorError
from interceptor_lib.models.freezing import keep_frozen_in_eval


class BatchError(InterceptorError, ValueError):
    """A batch dict lacks the key a model reads or has the wrong shape; the message says what is expected."""


def two_class_logits(z: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, 1) single logit -> (B, 2) [0, z], whose softmax[:, 1] is sigmoid(z) and whose
    cross-entropy equals binary cross-entropy on z."""
    z = z.reshape(-1)
    return torch.stack([torch.zeros_like(z), z], dim=1)


class DetectorBase(nn.Module):
    """Base of every registered model. Subclasses set `self.backbone` (a Backbone) and implement
    `forward_features(batch, frames, trunk) -> dict` (with "features") and
    `forward_head(features) -> (B, 2) logits`."""

    input_kind: str = "image"  # "image" or "clip": the batch key the model reads
    model_name: str = ""  # set by create_model
    config = None  # the config dataclass, set by create_model

    # ------------------------------------------------------------------ inputs
    def frames(self, batch: dict) -> torch.Tensor:
        """The batch's frames as (N, 3, H, W): N = B for image models, B*T for clip models."""
        key = self.input_kind
        if key not in batch:
            shape = "(B, 3, H, W)" if key == "image" else "(B, T, 3, H, W)"
            raise BatchError(f"{type(self).__name__} ({self.model_name or 'model'}) reads batch[{key!r}] {shape}; "
                             f"the batch has keys {sorted(batch)}")
        x = batch[key]
        want = 4 if key == "image" else 5
        if x.dim() != want or x.shape[-3] != 3:
            raise BatchError(f"batch[{key!r}] must be {'(B, 3, H, W)' if want == 4 else '(B, T, 3, H, W)'}, "
                             f"got {tuple(x.shape)}")
        return x if want == 4 else x.flatten(0, 1)

    # ------------------------------------------------------------------ timm-style API
    @property
    def data_config(self) -> dict:
        """mean / std / input_size / interpolation the backbone was pretrained with (timm's pretrained_cfg)."""
        return dict(self.backbone.data_config)

    @property
    def num_features(self) -> int:
        """Width D of `features`, the vector the classifier head reads."""
        raise NotImplementedError

    @property
    def cam_layer(self) -> nn.Module:
        """Module whose output is the last convolutional feature map (Grad-CAM target)."""
        return self.backbone.last_unit

    def forward_trunk(self, batch: dict) -> torch.Tensor:
        """The frozen trunk's output for the batch's frames: (N, C_k, H_k, W_k)."""
        return self.backbone.forward_trunk(self.frames(batch))

    def forward_features(self, batch: dict, trunk: torch.Tensor | None = None) -> dict:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: dict, trunk: torch.Tensor | None = None) -> dict:
        out = self.forward_features(batch, trunk)
        logits = self.forward_head(out["features"])  # (B, 2)
        out["logits"] = logits
        out["prob"] = torch.sigmoid(logits[:, 1] - logits[:, 0])  # (B,) P(fake)
        return out

    def backbone_map(self, batch: dict, trunk: torch.Tensor | None) -> torch.Tensor:
        """Final backbone feature map (N, C, h, w), from a precomputed trunk when given."""
        if trunk is None:
            trunk = self.forward_trunk(batch)
        return self.backbone.forward_rest(trunk)

    # ------------------------------------------------------------------ training hooks
    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self)  # frozen BatchNorm keeps its ImageNet statistics (freezing.py)
        return self

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Re-project constrained weights (the Bayar convolution) after each optimizer step; the
        trainer calls it. The constraint also holds at forward time without it."""
        for m in self.modules():
            if m is not self and hasattr(m, "project_"):
                m.project_()

    def trunk_state(self) -> dict[str, torch.Tensor]:
        """Weights and statistics of the frozen trunk (see Backbone.trunk_state)."""
        return self.backbone.trunk_state()


def pooled(fmap: torch.Tensor) -> torch.Tensor:
    """Global average pool (N, C, h, w) -> (N, C)."""
    return F.adaptive_avg_pool2d(fmap, 1).flatten(1)
