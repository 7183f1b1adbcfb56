"""RR, the resolution specialist (the reference design): a face generated at low resolution and upscaled into
a sharper frame lacks fine detail and carries the periodic traces of interpolation.

Branches (36 channels):
  multi-scale analysis    log energy of 3 Laplacian-pyramid bands at quarter resolution      10
  upscaling artifacts     8x8 / stride-4 conv on |second derivatives| at full resolution:
                          interpolation leaves periodic zeros in them (Popescu & Farid 2005)   10
  edge sharpness          log ratio of fine-scale to coarse-scale gradient magnitude           8
  pixel interpolation     conv on the linear-prediction residual Y - mean(4 neighbours)      8
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from interceptor_lib.models.pixel_ops import PixelSpace, filter2d, kernel_tensor, sobel_kernels
from interceptor_lib.models.specialists.detector import SpecialistConfig, down, register_specialist

SECOND_DERIVATIVE = ((0, 0, 0), (1, -2, 1), (0, 0, 0))
NEIGHBOUR_RESIDUAL = ((0, -1, 0), (-1, 4, -1), (0, -1, 0))  # /4: pixel minus the mean of its 4 neighbours


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _magnitude(g: torch.Tensor) -> torch.Tensor:
    return (g.square().sum(1, keepdim=True) + 1e-6).sqrt()  # eps: finite gradient at 0


def pyramid_energies(y: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 3, H/4, W/4): log mean squared value of the Laplacian-pyramid bands
    at scales 1, 1/2 and 1/4, each averaged down to a quarter of the resolution."""
    y2 = F.avg_pool2d(y, 2)
    y4 = F.avg_pool2d(y2, 2)
    y8 = F.avg_pool2d(y4, 2)
    b1 = y - _up(y2, y.shape[-2:])
    b2 = y2 - _up(y4, y2.shape[-2:])
    b3 = y4 - _up(y8, y4.shape[-2:])
    size = y4.shape[-2:]
    e = [F.adaptive_avg_pool2d(b.square(), size) for b in (b1, b2, b3)]
    return torch.log(torch.cat(e, 1) + 1e-2)


class ResolutionModule(nn.Module):
    out_channels = 36

    def __init__(self, pixels: PixelSpace, cfg: SpecialistConfig):
        super().__init__()
        self.pixels = pixels
        d2 = kernel_tensor(SECOND_DERIVATIVE)
        self.register_buffer("second", torch.cat([d2, d2.transpose(-1, -2)]), persistent=False)
        self.register_buffer("residual", kernel_tensor(NEIGHBOUR_RESIDUAL, 4.0), persistent=False)
        self.register_buffer("sobel", sobel_kernels(), persistent=False)
        self.multiscale = nn.Sequential(ConvNormAct(3, 10, 3), down(10, 10))
        self.upscaling = nn.Sequential(ConvNormAct(2, 10, 8, stride=4), down(10, 10))
        self.sharpness = nn.Sequential(ConvNormAct(2, 8, 3, stride=2), down(8, 8))
        self.interpolation = nn.Sequential(ConvNormAct(2, 8, 5, stride=4), down(8, 8))
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)

    def forward(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        y = self.pixels.luma(self.pixels.rgb(x)) * 255  # (B, 1, H, W) grey levels
        curv = filter2d(y, self.second).abs()  # (B, 2, H, W) |d2/dx2|, |d2/dy2|
        grad = _magnitude(filter2d(y, self.sobel))  # (B, 1, H, W)
        y2 = F.avg_pool2d(y, 2)
        grad2 = _magnitude(filter2d(y2, self.sobel)) / 2  # per full-res pixel, like grad
        fine = F.adaptive_avg_pool2d(grad, y2.shape[-2:])
        sharp = torch.cat([torch.log((fine + 1) / (grad2 + 1)), torch.log1p(grad2)], 1)  # (B, 2, H/2, W/2)
        e = filter2d(y, self.residual)  # (B, 1, H, W) linear-prediction residual
        return torch.cat([self.pool(self.multiscale(pyramid_energies(y))),
                          self.pool(self.upscaling(torch.log1p(curv))),
                          self.pool(self.sharpness(sharp)),
                          self.pool(self.interpolation(torch.cat([e, e.abs()], 1)))], 1)  # (B, 36, g, g)


register_specialist("rr", ResolutionModule, artifact_family="resolution",
                    summary="resolution: multi-scale energy, upscaling, sharpness, interpolation")
