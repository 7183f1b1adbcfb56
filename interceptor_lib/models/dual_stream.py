"""`dual_stream_v3`: the reference design's dual-stream gated detector, rebuilt in PyTorch.

  visual stream    MobileNetV2 (timm mobilenetv2_100, ImageNet) -> squeeze-excitation -> pool  (B, C)
  forensic stream  fixed filters (KV, SPAM, MinMax, Laplacian; forensic_filters.py) + a learnable
                   Bayar convolution on the image in grey levels -> small CNN -> pool       (B, F)
  gated fusion     gate = sigmoid(Linear(forensic)) (B, C); fused = [visual * gate, forensic]:
                   the forensic stream decides which visual channels count, and reaches the head
                   directly too (the skip connection)
  head             512 -> BN -> dropout 0.3 -> 256 -> BN -> dropout 0.3 -> 1 logit (as [0, z])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import ConvNormAct, SEModule
from torch import nn

from interceptor_lib.models.backbone import create_backbone
from interceptor_lib.models.base import DetectorBase, pooled, two_class_logits
from interceptor_lib.models.forensic_filters import BayarConv2d, ForensicFilterBank
from interceptor_lib.models.freezing import set_trainable_stages
from interceptor_lib.models.pixel_ops import PixelSpace
from interceptor_lib.models.registry import register_model


@dataclass
class DualStreamConfig:
    backbone: str = "mobilenetv2_100"  # the reference design's visual stream; tests pass a tiny timm model
    pretrained: bool = True  # ImageNet weights from a local file or cache; never a silent random init
    weights: str | None = None  # explicit backbone weight file, else the local caches
    trainable_stages: int | None = 2  # the reference design's phase 2 fine-tunes the top of the visual stream
    srm_truncation: float = 3.0  # SRM's truncation of residuals (grey levels): noise kept, edges dropped
    bayar_filters: int = 3  # Bayar & Stamm 2016 use 3 constrained 5x5 filters
    forensic_widths: tuple[int, ...] = (16, 32, 64, 128)  # stride-2 CNN on the residuals; cheaper than the visual stream
    hidden: tuple[int, ...] = (512, 256)  # the reference design's head
    dropout: float = 0.3  # the reference design's head dropout


class ForensicStream(nn.Module):
    """(B, 3, H, W) normalised image -> (B, forensic_widths[-1]) noise-residual features."""

    def __init__(self, pixels: PixelSpace, cfg: DualStreamConfig):
        super().__init__()
        self.pixels = pixels
        self.filters = ForensicFilterBank(cfg.srm_truncation)
        self.bayar = BayarConv2d(3, cfg.bayar_filters, 5)
        layers, c = [], self.filters.out_channels + cfg.bayar_filters
        for w in cfg.forensic_widths:
            layers.append(ConvNormAct(c, w, 3, stride=2))
            c = w
        self.cnn = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = self.pixels.rgb(x) * 255  # (B, 3, H, W) grey levels, the scale SRM kernels were made for
        residuals = torch.cat([self.filters(grey), self.bayar(grey)], 1)  # (B, 18 + bayar, H, W)
        return pooled(self.cnn(residuals))


class DualStreamDetector(DetectorBase):
    def __init__(self, cfg: DualStreamConfig):
        super().__init__()
        self.backbone = create_backbone(cfg.backbone, cfg.pretrained, cfg.weights)
        set_trainable_stages(self, cfg.trainable_stages)
        C, dc = self.backbone.num_features, self.backbone.data_config
        self.se = SEModule(C, rd_ratio=1 / 16)
        self.forensic = ForensicStream(PixelSpace(dc["mean"], dc["std"]), cfg)
        self.gate = nn.Sequential(nn.Linear(self.forensic.out_dim, C), nn.Sigmoid())
        layers, d = [], C + self.forensic.out_dim
        for h in cfg.hidden:
            layers += [nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
            d = h
        self.head = nn.Sequential(*layers, nn.Linear(d, 1))
        self._num_features = C + self.forensic.out_dim
        self.train()

    @property
    def num_features(self) -> int:
        return self._num_features

    def forward_features(self, batch: dict, trunk: torch.Tensor | None = None) -> dict:
        x = self.frames(batch)  # (B, 3, H, W)
        visual = pooled(self.se(self.backbone_map(batch, trunk)))  # (B, C)
        with torch.autocast(device_type=x.device.type, enabled=False):  # grey-level residuals: keep fp32
            forensic = self.forensic(x.float())  # (B, F)
        gate = self.gate(forensic)  # (B, C) in (0, 1)
        return {"features": torch.cat([visual * gate, forensic], 1), "gate": gate}

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return two_class_logits(self.head(features))


@register_model("dual_stream_v3", config=DualStreamConfig, input_kind="image", group="baseline",
                summary="the reference design: MobileNetV2 + SRM/Bayar forensic stream, sigmoid-gated fusion")
def dual_stream_v3(cfg: DualStreamConfig) -> DualStreamDetector:
    return DualStreamDetector(cfg)
