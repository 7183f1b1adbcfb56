"""Fixed forensic high-pass filters and the learnable constrained (Bayar) convolution.

SRM: the 30 linear residual filters of the Spatial Rich Model, J. Fridrich and J. Kodovsky,
"Rich Models for Steganalysis of Digital Images", IEEE TIFS 7(3), 2012 — 1st order (8 directions),
2nd order (4), 3rd order (8), SQUARE 3x3, EDGE 3x3 (4), SQUARE 5x5 (the Ker-Vass "KV" kernel),
EDGE 5x5 (4), each divided by its quantisation step as in the SRM (1, 2, 3, 4, 4, 12, 12).
`ZHOU_SRM` are the three used by Zhou et al., "Learning Rich Features for Image Manipulation
Detection", CVPR 2018 (and most face-forgery two-stream models after it): SQUARE 5x5 / 12,
SQUARE 3x3 / 4 and the horizontal 2nd-order [1, -2, 1] / 2.

Bayar: B. Bayar and M. C. Stamm, "A Deep Learning Approach to Universal Image Manipulation
Detection Using a New Convolutional Layer", ACM IH&MMSec 2016 — a learnable prediction-error
filter with w(centre) = -1 and the other weights summing to 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from interceptor_lib.models.pixel_ops import filter2d

DIRECTIONS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))  # (dy, dx)
AXES = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, two diagonals

SQUARE_3X3 = ((-1, 2, -1), (2, -4, 2), (-1, 2, -1))  # / 4
SQUARE_5X5 = ((-1, 2, -2, 2, -1), (2, -6, 8, -6, 2), (-2, 8, -12, 8, -2), (2, -6, 8, -6, 2),
              (-1, 2, -2, 2, -1))  # / 12: the KV kernel
LAPLACIAN = ((0, 1, 0), (1, -4, 1), (0, 1, 0))  # / 4 here, to match the SRM kernels' scale


def _taps(taps: dict[tuple[int, int], float], scale: float) -> torch.Tensor:
    """{(dy, dx): value} around the centre of a 5x5 kernel -> (5, 5) tensor / scale."""
    k = torch.zeros(5, 5)
    for (dy, dx), v in taps.items():
        k[2 + dy, 2 + dx] = v
    return k / scale


def _pad5(rows, scale: float) -> torch.Tensor:
    k = torch.tensor(rows, dtype=torch.float32) / scale
    p = (5 - k.shape[0]) // 2
    return F.pad(k, (p, p, p, p))


def _rotations(k: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(k, r) for r in range(4)]


def srm_kernels() -> dict[str, torch.Tensor]:
    """The 30 SRM residual kernels as 5x5 tensors, keyed e.g. "first_order_0", "square_5x5"."""
    out = {}
    for i, (dy, dx) in enumerate(DIRECTIONS):  # x[neighbour] - x[centre]
        out[f"first_order_{i}"] = _taps({(0, 0): -1, (dy, dx): 1}, 1)
    for i, (dy, dx) in enumerate(AXES):  # x[-d] - 2 x[0] + x[d]
        out[f"second_order_{i}"] = _taps({(-dy, -dx): 1, (0, 0): -2, (dy, dx): 1}, 2)
    for i, (dy, dx) in enumerate(DIRECTIONS):  # x[-d] - 3 x[0] + 3 x[d] - x[2d]
        out[f"third_order_{i}"] = _taps({(-dy, -dx): 1, (0, 0): -3, (dy, dx): 3, (2 * dy, 2 * dx): -1}, 3)
    out["square_3x3"] = _pad5(SQUARE_3X3, 4)
    edge3 = _pad5(SQUARE_3X3, 4)
    edge3[3] = 0  # EDGE 3x3: the upper two rows of SQUARE 3x3
    for i, k in enumerate(_rotations(edge3)):
        out[f"edge_3x3_{i}"] = k
    out["square_5x5"] = _pad5(SQUARE_5X5, 12)
    edge5 = _pad5(SQUARE_5X5, 12)
    edge5[3:] = 0  # EDGE 5x5: the upper three rows of SQUARE 5x5
    for i, k in enumerate(_rotations(edge5)):
        out[f"edge_5x5_{i}"] = k
    return out


def zhou_srm_kernels() -> torch.Tensor:
    """(3, 1, 5, 5): the three SRM kernels of Zhou et al. 2018 (KV / 12, SQUARE 3x3 / 4, [1 -2 1] / 2)."""
    k = srm_kernels()
    return torch.stack([k["square_5x5"], k["square_3x3"], k["second_order_0"]]).unsqueeze(1)


class ForensicFilterBank(nn.Module):
    """The reference design's fixed forensic filters on each colour channel of a (B, 3, H, W) image in grey levels:
    KV (SQUARE 5x5), SPAM (horizontal and vertical 1st-order differences, Pevny et al. 2010),
    Laplacian, and MinMax (min and max over the 8 1st-order residuals, the SRM's non-linear
    residuals), truncated to [-T, T] like the SRM: that keeps the noise residual and drops image
    edges. Output (B, 3 * 6, H, W)."""

    def __init__(self, truncation: float = 3.0):
        super().__init__()
        k = srm_kernels()
        linear = torch.stack([k["square_5x5"], k["first_order_4"], k["first_order_6"], _pad5(LAPLACIAN, 4)])
        first = torch.stack([k[f"first_order_{i}"] for i in range(8)])
        self.register_buffer("linear", linear.unsqueeze(1), persistent=False)  # (4, 1, 5, 5)
        self.register_buffer("first", first.unsqueeze(1)[..., 1:4, 1:4].contiguous(), persistent=False)  # (8, 1, 3, 3)
        self.truncation = truncation
        self.out_channels = 3 * (4 + 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        lin = filter2d(x, self.linear)  # (B, C*4, H, W)
        first = filter2d(x, self.first).view(B, C, 8, H, W)
        minmax = torch.stack([first.amin(2), first.amax(2)], 2).view(B, C * 2, H, W)
        return torch.cat([lin, minmax], 1).clamp(-self.truncation, self.truncation)


class BayarConv2d(nn.Module):
    """Constrained convolution (Bayar & Stamm 2016): every (out, in) kernel has centre -1 and the
    other weights summing to 1, i.e. it outputs a learned prediction error. The forward pass
    always uses the projected weights, and `project_()` (called by DetectorBase.after_optimizer_step
    after each optimizer step, as in the paper) writes the projection back into the parameter."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, kernel_size: int = 5):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"Bayar kernels need a centre: kernel_size must be odd, got {kernel_size}")
        self.weight = nn.Parameter(torch.rand(out_channels, in_channels, kernel_size, kernel_size) * 0.1)
        centre = torch.zeros(1, 1, kernel_size, kernel_size)
        centre[..., kernel_size // 2, kernel_size // 2] = 1
        self.register_buffer("centre", centre, persistent=False)
        self.padding = kernel_size // 2
        with torch.no_grad():
            self.project_()

    def constrained_weight(self) -> torch.Tensor:
        w = self.weight * (1 - self.centre)
        s = w.sum((2, 3), keepdim=True)
        s = torch.where(s.abs() < 1e-6, torch.full_like(s, 1e-6), s)  # a zero sum has no projection
        return w / s - self.centre

    @torch.no_grad()
    def project_(self) -> None:
        self.weight.copy_(self.constrained_weight())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.padding,) * 4, mode="replicate")
        return F.conv2d(x, self.constrained_weight())
