"""LL, the low-light specialist (the reference design): luminance and noise statistics that face swaps
rendered in bright conditions and pasted into dark footage get wrong.

Branches (68 channels = the reference design's 68 x 7 x 7 = 3332 features):
  multi-scale luminance  3x3 / 5x5 / 7x7 convs on [Y, log Y] at half resolution  3 x 8
  noise pattern          5x5 conv on the full-resolution noise residual Y - blur(Y)    24
  shadow / highlight     7x7 conv on [Y, highlight mask, shadow mask], quarter res    20
  attention              squeeze-excitation over channels x a spatial attention map
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct, SEModule
from torch import nn

from interceptor_lib.models.pixel_ops import PixelSpace, blur3
from interceptor_lib.models.specialists.detector import SpecialistConfig, down, register_specialist


class LowLightModule(nn.Module):
    out_channels = 68

    def __init__(self, pixels: PixelSpace, cfg: SpecialistConfig):
        super().__init__()
        self.pixels = pixels
        self.luminance = nn.ModuleList([nn.Sequential(ConvNormAct(2, 8, k, stride=2), down(8, 8)) for k in (3, 5, 7)])
        self.noise = nn.Sequential(ConvNormAct(1, 24, 5, stride=2), down(24, 24), down(24, 24))
        self.shadow = nn.Sequential(ConvNormAct(3, 20, 7), down(20, 20))
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)
        self.mix = ConvNormAct(68, 68, 1)
        self.channel_attention = SEModule(68, rd_ratio=0.25)
        self.spatial_attention = nn.Conv2d(68, 1, 3, padding=1)

    def forward(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        y = self.pixels.luma(self.pixels.rgb(x))  # (B, 1, H, W) in [0, 1]
        half = F.avg_pool2d(y, 2)  # (B, 1, H/2, W/2)
        quarter = F.avg_pool2d(half, 2)  # (B, 1, H/4, W/4)
        # log Y spreads the dark range where low-light footage lives and a linear scale squashes it
        lum_in = torch.cat([half, torch.log(half + 1 / 255)], 1)
        lum = [self.pool(branch(lum_in)) for branch in self.luminance]  # 3 x (B, 8, g, g)
        noise = self.pool(self.noise((y - blur3(y)) * 255))  # residual in grey levels -> (B, 24, g, g)
        masks = torch.cat([quarter, F.relu(quarter - 0.75) * 4, F.relu(0.25 - quarter) * 4], 1)
        shadow = self.pool(self.shadow(masks))  # (B, 20, g, g)
        f = self.channel_attention(self.mix(torch.cat([*lum, noise, shadow], 1)))  # (B, 68, g, g)
        return f * torch.sigmoid(self.spatial_attention(f))


register_specialist("ll", LowLightModule, artifact_family="low_light",
                    summary="low-light: luminance, sensor noise, shadows and highlights")
