"""TM, the temporal specialist (the reference design): frame-by-frame face swaps flicker and jitter, because
each frame is generated on its own. Reads batch["clip"] (B, T, 3, H, W), T >= 2.

The backbone runs on every frame (the detector averages its pooled features over T). The module
works on a quarter-resolution luma/RGB copy of the clip (temporal artifacts are not fine detail):
  frame-to-frame consistency   conv on frame differences Y[t+1] - Y[t], averaged over t        16
  motion flow analyzer         conv on the Lucas-Kanade products (Ix^2, Iy^2, IxIy, IxIt, IyIt):
                               where brightness constancy fails, the optical flow is inconsistent 12
  temporal artifact detector   3-D convolution (3 x 3 x 3) over the RGB clip                    16
  flicker                      temporal std and mean |step| of each grid cell's mean colour      8
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from interceptor_lib.models.base import BatchError
from interceptor_lib.models.pixel_ops import PixelSpace, blur3, filter2d, sobel_kernels
from interceptor_lib.models.specialists.detector import SpecialistConfig, down, register_specialist


class TemporalModule(nn.Module):
    out_channels = 52

    def __init__(self, pixels: PixelSpace, cfg: SpecialistConfig):
        super().__init__()
        self.pixels = pixels
        self.grid = cfg.grid
        self.register_buffer("sobel", sobel_kernels(), persistent=False)
        self.differences = nn.Sequential(ConvNormAct(1, 16, 3, stride=2), down(16, 16))
        self.motion = nn.Sequential(ConvNormAct(5, 12, 3, stride=2), down(12, 12))
        self.temporal = nn.Sequential(nn.Conv3d(3, 16, 3, stride=(1, 2, 2), padding=1, bias=False),
                                      nn.BatchNorm3d(16), nn.ReLU(inplace=True))
        self.flicker = ConvNormAct(6, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)

    def _over_time(self, branch: nn.Module, x: torch.Tensor, B: int) -> torch.Tensor:
        """(B*S, c, h, w) per time step -> branch -> pooled -> mean over the S steps: (B, c', g, g)."""
        f = self.pool(branch(x))
        return f.view(B, -1, *f.shape[1:]).mean(1)

    def forward(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        B, T = x.shape[:2]
        if T < 2:
            raise BatchError(f"the temporal specialist needs clips of at least 2 frames, got T = {T}")
        rgb = F.avg_pool2d(self.pixels.rgb(x).flatten(0, 1), 4)  # (B*T, 3, h, w), h = H/4
        rgb = rgb.view(B, T, *rgb.shape[1:])
        y = self.pixels.luma(rgb) * 255  # (B, T, 1, h, w) grey levels
        it = (y[:, 1:] - y[:, :-1]).flatten(0, 1)  # (B*(T-1), 1, h, w) temporal derivative
        ix, iy = filter2d(y[:, :-1].flatten(0, 1), self.sobel).unbind(1)  # spatial derivatives
        it0 = it[:, 0]
        lk = torch.stack([ix * ix, iy * iy, ix * iy, ix * it0, iy * it0], 1)  # (B*(T-1), 5, h, w)
        lk = blur3(lk)  # local window of the Lucas-Kanade system
        lk = lk.sign() * lk.abs().add(1).log()  # signed log: products span orders of magnitude
        cells = F.adaptive_avg_pool2d(rgb.flatten(0, 1), self.grid).view(B, T, 3, self.grid, self.grid)
        flicker = torch.cat([cells.std(1, unbiased=False), (cells[:, 1:] - cells[:, :-1]).abs().mean(1)], 1) * 10
        temporal = self.temporal(rgb.transpose(1, 2)).mean(2)  # (B, 3, T, h, w) -> (B, 16, h/2, w/2)
        return torch.cat([self._over_time(self.differences, it / 16, B),
                          self._over_time(self.motion, lk, B),
                          self.pool(temporal),
                          self.flicker(flicker)], 1)  # (B, 52, g, g)


register_specialist("tm", TemporalModule, input_kind="clip", artifact_family="temporal",
                    summary="temporal: frame differences, optical-flow consistency, 3-D conv, flicker")
