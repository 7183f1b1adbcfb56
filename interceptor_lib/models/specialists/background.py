"""BG, the background / lighting specialist (the reference design): a swapped face lit from another direction,
with another colour temperature or texture than the scene around it.

Branches (44 channels), on low-resolution copies since lighting is a low-frequency signal:
  background texture     7x7 conv on luma at half resolution                      12
  lighting direction     5x5 conv on [Y, dY/dx, dY/dy] (Sobel) at quarter res         12
  shadow consistency     9x9 conv on luma at quarter res (a wide view of shading)     10
  colour temperature     3x3 conv on [log R/G, log B/G, Y] at quarter res             10
The fusion's attention over the 7 x 7 grid compares face cells with background cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from interceptor_lib.models.pixel_ops import PixelSpace, filter2d, sobel_kernels
from interceptor_lib.models.specialists.detector import SpecialistConfig, down, register_specialist


class BackgroundModule(nn.Module):
    out_channels = 44

    def __init__(self, pixels: PixelSpace, cfg: SpecialistConfig):
        super().__init__()
        self.pixels = pixels
        self.register_buffer("sobel", sobel_kernels(), persistent=False)
        self.texture = nn.Sequential(ConvNormAct(1, 12, 7, stride=2), down(12, 12))
        self.lighting = nn.Sequential(ConvNormAct(3, 12, 5), down(12, 12))
        self.shadow = nn.Sequential(ConvNormAct(1, 10, 9), down(10, 10))
        self.colour = nn.Sequential(ConvNormAct(3, 10, 3), down(10, 10))
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)

    def forward(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        rgb = self.pixels.rgb(x)  # (B, 3, H, W)
        half = self.pixels.luma(F.avg_pool2d(rgb, 2))  # (B, 1, H/2, W/2)
        rgb_q = F.avg_pool2d(rgb, 4)  # (B, 3, H/4, W/4)
        y_q = self.pixels.luma(rgb_q)
        grads = filter2d(y_q, self.sobel) * 4  # (B, 2, H/4, W/4) shading gradient: light direction
        r, g, b = (rgb_q + 1 / 255).log().unbind(1)
        chroma = torch.stack([r - g, b - g], 1)  # (B, 2, H/4, W/4) log chromaticity: white balance
        return torch.cat([self.pool(self.texture(half)),
                          self.pool(self.lighting(torch.cat([y_q, grads], 1))),
                          self.pool(self.shadow(y_q)),
                          self.pool(self.colour(torch.cat([chroma, y_q], 1)))], 1)  # (B, 44, g, g)


register_specialist("bg", BackgroundModule, artifact_family="lighting",
                    summary="background/lighting: texture, light direction, shadows, colour")
