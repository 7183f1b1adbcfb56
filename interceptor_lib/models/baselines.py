"""Single-backbone detectors: `effnet_b4` (the reference design) and `xception` (the FaceForensics++ reference).

effnet_b4: EfficientNet-B4 with the reference design's head, dropout 0.3 -> 512 -> ReLU -> dropout 0.15 -> 128
           -> ReLU -> dropout 0.09 -> 1 logit (returned as [0, z]).
xception:  timm `legacy_xception` (the ImageNet Xception FF++ used) with its classifier replaced by
           dropout 0.5 -> Linear(2048, 2), as in Rossler et al., "FaceForensics++", ICCV 2019
           (github.com/ondyari/FaceForensics, TransferModel). FF++ trains the new layer for 3 epochs,
           then the whole network: ProgressiveUnfreezing({0: 0, 3: None}); default is all trainable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interceptor_lib.models.backbone import create_backbone
from interceptor_lib.models.base import DetectorBase, pooled, two_class_logits
from interceptor_lib.models.freezing import set_trainable_stages
from interceptor_lib.models.registry import register_model


class PooledClassifier(DetectorBase):
    """Backbone -> global average pool -> `head` ((B, C) -> (B, 1) or (B, 2) logits)."""

    def __init__(self, backbone: str, pretrained: bool, weights: str | None, trainable: int | None,
                 head_fn):
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained, weights)
        set_trainable_stages(self, trainable)
        self.head = head_fn(self.backbone.num_features)
        self.train()

    @property
    def num_features(self) -> int:
        return self.backbone.num_features

    def forward_features(self, batch: dict, trunk: torch.Tensor | None = None) -> dict:
        self.frames(batch)  # checks the key and shape
        return {"features": pooled(self.backbone_map(batch, trunk))}  # (B, C)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        z = self.head(features)
        return z if z.shape[1] == 2 else two_class_logits(z)


@dataclass
class EffNetConfig:
    backbone: str = "efficientnet_b4"  # the reference design; tests pass test_efficientnet
    pretrained: bool = True  # ImageNet weights from a local file or cache; never a silent random init
    weights: str | None = None  # explicit backbone weight file, else the local caches
    trainable_stages: int | None = 2  # same staged fine-tuning as the specialists (the reference design)
    dropout: float = 0.3  # the reference design's dropout_rate (then x0.5 and x0.3 deeper in the head)


@register_model("effnet_b4", config=EffNetConfig, input_kind="image", group="baseline",
                summary="the reference design: EfficientNet-B4 with a 512-128-1 head")
def effnet_b4(cfg: EffNetConfig) -> PooledClassifier:
    p = cfg.dropout

    def head(c: int) -> nn.Module:
        return nn.Sequential(nn.Dropout(p), nn.Linear(c, 512), nn.ReLU(inplace=True), nn.Dropout(p * 0.5),
                             nn.Linear(512, 128), nn.ReLU(inplace=True), nn.Dropout(p * 0.3), nn.Linear(128, 1))

    return PooledClassifier(cfg.backbone, cfg.pretrained, cfg.weights, cfg.trainable_stages, head)


@dataclass
class XceptionConfig:
    backbone: str = "legacy_xception"  # the FF++ reference network; tests pass a tiny timm model
    pretrained: bool = True  # ImageNet weights from a local file or cache; never a silent random init
    weights: str | None = None  # explicit backbone weight file, else the local caches
    trainable_stages: int | None = None  # FF++ fine-tunes the whole network (after a 3-epoch warm-up)
    dropout: float = 0.5  # FF++ TransferModel dropout before the new classifier


@register_model("xception", config=XceptionConfig, input_kind="image", group="baseline",
                summary="FaceForensics++ reference: Xception with a new 2-way classifier")
def xception(cfg: XceptionConfig) -> PooledClassifier:
    def head(c: int) -> nn.Module:
        return nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(c, 2))

    return PooledClassifier(cfg.backbone, cfg.pretrained, cfg.weights, cfg.trainable_stages, head)
