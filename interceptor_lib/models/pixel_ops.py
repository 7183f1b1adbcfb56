"""Fixed pixel-domain operations shared by the specialist modules and the forensic stream.

The specialists look at low-level signals (noise, luminance, blocks, interpolation) that the
backbone's deep features lose, so they first undo the input normalisation. Fixed kernels are
non-persistent buffers: constants of the code, not of a checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LUMA_BT601 = (0.299, 0.587, 0.114)  # Y of JPEG/BT.601, the luminance codecs compress

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
BLUR_3 = ((1.0, 2.0, 1.0), (2.0, 4.0, 2.0), (1.0, 2.0, 1.0))  # /16: binomial low-pass


class PixelSpace(nn.Module):
    """Normalised input (..., 3, H, W) -> RGB in [0, 1] (`rgb`) and BT.601 luma (`luma`)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("luma_w", torch.tensor(LUMA_BT601).view(3, 1, 1), persistent=False)

    def rgb(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.std + self.mean).clamp(0.0, 1.0)

    def luma(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb * self.luma_w).sum(-3, keepdim=True)  # (..., 1, H, W)


def kernel_tensor(rows, scale: float = 1.0) -> torch.Tensor:
    """Nested lists -> (1, 1, k, k) float kernel divided by `scale`."""
    k = torch.tensor(rows, dtype=torch.float32) / scale
    return k.view(1, 1, *k.shape)


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each channel of (N, C, H, W) correlated with each (K, 1, k, k) kernel -> (N, C*K, H, W),
    output channel c*K + j = channel c through kernel j. Replicate padding: zero padding would make
    every high-pass filter fire along the image border."""
    N, C, H, W = x.shape
    K, _, kh, kw = kernel.shape
    x = F.pad(x, (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2), mode="replicate")
    return F.conv2d(x, kernel.repeat(C, 1, 1, 1).to(x.dtype), groups=C)


class FixedFilters(nn.Module):
    """A bank of fixed 2-D kernels applied to every input channel (see filter2d)."""

    def __init__(self, kernels: torch.Tensor):
        super().__init__()
        self.register_buffer("kernels", kernels, persistent=False)  # (K, 1, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return filter2d(x, self.kernels)


def sobel_kernels() -> torch.Tensor:
    """(2, 1, 3, 3): horizontal and vertical Sobel derivatives."""
    gx = kernel_tensor(SOBEL_X, 8.0)
    return torch.cat([gx, gx.transpose(-1, -2)], 0)


def blur3(x: torch.Tensor) -> torch.Tensor:
    """3x3 binomial low-pass of every channel (x - blur3(x) is a cheap noise residual)."""
    return filter2d(x, kernel_tensor(BLUR_3, 16.0).to(x.device))
