"""The detector all six specialists share: backbone + specialist module + attention fusion + MLP head.

    frames --backbone--> (N, C, h, w) --pool (and mean over T for clips)--> g (B, C)
    batch  --specialist module--> s (B, C_s, 7, 7)   (looks at pixels / clip / audio itself)
    (g, s) --AttentionFusion--> features (B, C + 256 + C_s*49) --MLPHead--> logits (B, 2)

Direct evidence: a module whose last `evidence_channels` (k) channels are hand-built scalar cues
(constant over the grid, 0 where the cue cannot be measured) also feeds them straight into the fake
logit through a k -> 1 linear map without bias, initialised to the module's `evidence_init`. The head
sees them too; the direct path keeps a cue that only a few training videos exercise (the audio-visual
one: only the last, short stage has audio) from being drowned among thousands of learned features.

Each specialist file defines its module and registers `<name>` with `register_specialist`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from interceptor_lib.models.backbone import create_backbone
from interceptor_lib.models.base import DetectorBase, pooled
from interceptor_lib.models.freezing import set_trainable_stages
from interceptor_lib.models.fusion import AttentionFusion, MLPHead
from interceptor_lib.models.pixel_ops import PixelSpace
from interceptor_lib.models.registry import register_model


@dataclass
class SpecialistConfig:
    backbone: str = "efficientnet_b4"  # MISSION §4 backbone; tests/demo pass a tiny timm model (test_efficientnet)
    pretrained: bool = True  # ImageNet weights from a local file or cache; never a silent random init
    weights: str | None = None  # explicit backbone weight file (.safetensors/.pth/.bin), else the local caches
    trainable_stages: int | None = 2  # the reference design: fine-tune the last 2 stages + head conv; None = whole backbone
    grid: int = 7  # the reference design: specialist maps are C x 7 x 7
    fusion_dim: int = 256  # attention width: 8 heads of 32
    heads: int = 8  # the reference design: 8-head attention
    hidden: tuple[int, ...] = (1024, 512, 256)  # the reference design's classifier widths
    dropout: tuple[float, ...] = (0.3, 0.2, 0.1)  # the reference design's progressive dropout


def down(c_in: int, c_out: int) -> nn.Sequential:
    """Cheap stride-2 step: depthwise 3x3 then pointwise, each with BN + ReLU."""
    return nn.Sequential(ConvNormAct(c_in, c_in, 3, stride=2, groups=c_in), ConvNormAct(c_in, c_out, 1))


class SpecialistDetector(DetectorBase):
    """Backbone + `module_factory(pixels, cfg)` (a specialist module with `out_channels`) + fusion + head."""

    def __init__(self, cfg: SpecialistConfig, module_factory: Callable[[PixelSpace, SpecialistConfig], nn.Module],
                 input_kind: str):
        super().__init__()
        self.input_kind = input_kind
        self.backbone = create_backbone(cfg.backbone, cfg.pretrained, cfg.weights)
        set_trainable_stages(self, cfg.trainable_stages)
        dc = self.backbone.data_config
        self.specialist = module_factory(PixelSpace(dc["mean"], dc["std"]), cfg)
        self.fusion = AttentionFusion(self.backbone.num_features, self.specialist.out_channels, cfg.grid,
                                      cfg.fusion_dim, cfg.heads)
        self.head = MLPHead(self.fusion.out_dim, cfg.hidden, cfg.dropout, num_classes=2)
        self.evidence_channels = int(getattr(self.specialist, "evidence_channels", 0))
        if self.evidence_channels:
            self.evidence = nn.Linear(self.evidence_channels, 1, bias=False)
            nn.init.constant_(self.evidence.weight, float(self.specialist.evidence_init))
        self.train()

    @property
    def num_features(self) -> int:
        """The fused vector, then the k direct-evidence values (see the module docstring)."""
        return self.fusion.out_dim + self.evidence_channels

    def forward_features(self, batch: dict, trunk: torch.Tensor | None = None) -> dict:
        self.frames(batch)  # checks the key and shape, with a message naming what is expected
        x = batch[self.input_kind]  # (B, 3, H, W) or (B, T, 3, H, W)
        g = pooled(self.backbone_map(batch, trunk))  # (N, C)
        if self.input_kind == "clip":
            g = g.view(x.shape[0], x.shape[1], -1).mean(1)  # (B, T, C) -> (B, C): the clip's appearance
        # float32 even under mixed precision: pixel-scale signals (DCT energies ~1e6, squared
        # gradients) overflow fp16, and the module is a few percent of the step's cost.
        with torch.autocast(device_type=x.device.type, enabled=False):
            s = self.specialist(x.float(), batch)  # (B, C_s, grid, grid)
        fused, attn = self.fusion(g, s)
        if self.evidence_channels:
            fused = torch.cat([fused, s[:, -self.evidence_channels:].mean((2, 3))], 1)
        return {"features": fused, "attention": attn, "specialist_map": s}

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        if not self.evidence_channels:
            return self.head(features)
        d = self.fusion.out_dim
        logits = self.head(features[:, :d])
        return logits + F.pad(self.evidence(features[:, d:]), (1, 0))  # (B, 2): onto the fake logit only


def register_specialist(name: str, module_factory, *, input_kind: str = "image",
                        config: type = SpecialistConfig, summary: str = "", reads_audio: bool = False,
                        artifact_family: str | None = None, optional_branch: bool = False):
    """Register specialist `name` built from `module_factory(pixels, cfg)`, with the registry facts
    of `register_model`."""

    def build(cfg):
        return SpecialistDetector(cfg, module_factory, input_kind)

    build.__name__ = name
    register_model(name, config=config, input_kind=input_kind, group="specialist", summary=summary,
                   reads_audio=reads_audio, artifact_family=artifact_family, optional_branch=optional_branch)(build)
    return module_factory
