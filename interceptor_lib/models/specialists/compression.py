"""CM, the compression specialist (the reference design): double compression and block artifacts, e.g. a face
encoded once by the generator's pipeline and again with the video.

Everything starts from a real 8 x 8 block DCT of the luma (the orthonormal DCT-II that JPEG and the
H.264 8x8 transform approximate), computed as a stride-8 convolution with the 64 basis images; it
equals scipy.fft.dctn(block, norm="ortho") on every block.

Branches (40 channels), on the grid of 8 x 8 blocks:
  DCT coefficient analyzer   1x1 + 3x3 convs on log(1 + |coefficient|) of the 64 frequencies   12
  quantisation artifacts     cos(2 pi c / q) for JPEG's luminance table q at 3 qualities:
                             close to 1 everywhere when c was quantised with step q            10
  block boundaries           log ratio of the pixel step across block edges to within blocks  8
  compression level          log energy of 8 zig-zag frequency bands                          10
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from interceptor_lib.models.pixel_ops import PixelSpace
from interceptor_lib.models.specialists.detector import SpecialistConfig, register_specialist

BLOCK = 8
# ITU-T T.81 (JPEG) Annex K, Table K.1: luminance quantisation table for quality 50.
JPEG_LUMA_Q50 = (
    (16, 11, 10, 16, 24, 40, 51, 61), (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56), (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77), (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101), (72, 92, 95, 98, 112, 100, 103, 99))
QUANT_SCALES = (0.5, 1.0, 2.0)  # ~ JPEG quality 75, 50, 25


def dct_matrix(n: int = BLOCK) -> torch.Tensor:
    """(n, n) orthonormal DCT-II matrix D: D @ x is scipy.fft.dct(x, norm="ortho")."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


class BlockDCT(nn.Module):
    """(B, 1, H, W) -> (B, 64, H // 8, W // 8) orthonormal 2-D DCT-II of every 8 x 8 block;
    channel u * 8 + v is frequency (u vertical, v horizontal). Rows/columns past a multiple of 8
    are dropped (a partial block has no DCT)."""

    def __init__(self, n: int = BLOCK):
        super().__init__()
        d = dct_matrix(n)
        basis = torch.einsum("ui,vj->uvij", d, d).reshape(n * n, 1, n, n)  # basis image of (u, v)
        self.n = n
        self.register_buffer("basis", basis.float(), persistent=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        H, W = y.shape[-2] // self.n * self.n, y.shape[-1] // self.n * self.n
        return F.conv2d(y[..., :H, :W], self.basis.to(y.dtype), stride=self.n)


def block_boundary_ratio(y: torch.Tensor, n: int = BLOCK) -> torch.Tensor:
    """(B, 1, H, W), H and W multiples of n -> (B, 2, H/n, W/n): log of the mean absolute pixel step
    across each block's right (bottom) edge over the mean step inside it; > 0 where blocking shows."""
    B, _, H, W = y.shape
    out = []
    for img in (y, y.transpose(-1, -2)):  # horizontal steps, then vertical ones
        h, w = img.shape[-2:]
        step = F.pad((img[..., 1:] - img[..., :-1]).abs(), (0, 1, 0, 0), mode="replicate")  # (B, 1, h, w)
        blocks = step.view(B, h // n, n, w // n, n)  # (B, block row, row, block col, col)
        across = blocks[..., n - 1].mean(2)  # step between column n-1 and the next block's column 0
        within = blocks[..., : n - 1].mean((2, 4))
        ratio = torch.log((across + 0.5) / (within + 0.5))  # +0.5 grey level: flat blocks give 0
        out.append(ratio if img is y else ratio.transpose(-1, -2))
    return torch.stack(out, 1)


def zigzag_bands(n: int = BLOCK, bands: int = 8) -> torch.Tensor:
    """(bands, n*n) averaging matrix: band 0 is the DC coefficient, bands 1.. group the AC
    frequencies by u + v (the zig-zag order's diagonals), low to high."""
    u, v = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    d = (u + v).flatten()
    band = torch.where(d == 0, 0, 1 + (d - 1) * (bands - 1) // (2 * n - 2))
    m = F.one_hot(band, bands).T.float()
    return m / m.sum(1, keepdim=True)


class CompressionModule(nn.Module):
    out_channels = 40

    def __init__(self, pixels: PixelSpace, cfg: SpecialistConfig):
        super().__init__()
        self.pixels = pixels
        self.dct = BlockDCT()
        q = torch.tensor(JPEG_LUMA_Q50, dtype=torch.float32).flatten()
        self.register_buffer("steps", torch.cat([q * s for s in QUANT_SCALES]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("bands", zigzag_bands(), persistent=False)
        self.coefficients = nn.Sequential(ConvNormAct(64, 12, 1), ConvNormAct(12, 12, 3))
        self.quantisation = nn.Sequential(ConvNormAct(64 * len(QUANT_SCALES), 10, 1), ConvNormAct(10, 10, 3))
        self.boundaries = nn.Sequential(ConvNormAct(2, 8, 3), ConvNormAct(8, 8, 3))
        self.level = nn.Sequential(ConvNormAct(8, 10, 3), ConvNormAct(10, 10, 3))
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)

    def forward(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        y = self.pixels.luma(self.pixels.rgb(x)) * 255  # (B, 1, H, W) grey levels, as codecs see them
        H, W = y.shape[-2] // BLOCK * BLOCK, y.shape[-1] // BLOCK * BLOCK
        if H == 0 or W == 0:
            raise ValueError(f"the compression specialist needs images of at least 8 x 8 px, got {tuple(x.shape)}")
        y = y[..., :H, :W]
        c = self.dct(y - 128)  # (B, 64, H/8, W/8), JPEG's level shift
        periodic = torch.cos(2 * math.pi * c.repeat(1, len(QUANT_SCALES), 1, 1) / self.steps)  # (B, 192, ...)
        energy = torch.einsum("kf,bfhw->bkhw", self.bands, c.square())  # (B, 8, H/8, W/8)
        return torch.cat([self.pool(self.coefficients(torch.log1p(c.abs()))),
                          self.pool(self.quantisation(periodic)),
                          self.pool(self.boundaries(block_boundary_ratio(y))),
                          self.pool(self.level(torch.log1p(energy)))], 1)  # (B, 40, g, g)


register_specialist("cm", CompressionModule, artifact_family="compression",
                    summary="compression: block DCT, quantisation, block edges, level")
