"""How the six specialists combine backbone and specialist features (the reference design).

AttentionFusion: the backbone's pooled vector is the query of an 8-head attention over the
specialist's g x g grid tokens (+ the backbone token itself, so a head can ignore the specialist);
the fused vector is [backbone (C), attended (d), specialist map flattened (C_s * g * g)], the
reference design's "~5128 features (backbone + specialist)" plus the attention read-out.
MLPHead: 1024 -> 512 -> 256 -> 2 with batch norm and dropout 0.3 / 0.2 / 0.1 (the reference design).
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionFusion(nn.Module):
    """(g (B, C), s (B, C_s, g, g)) -> fused (B, C + dim + C_s*g*g), attention (B, g, g)."""

    def __init__(self, global_dim: int, token_channels: int, grid: int, dim: int = 256, heads: int = 8):
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion_dim {dim} must be divisible by heads {heads}")
        self.grid = grid
        self.query = nn.Linear(global_dim, dim)
        self.tokens = nn.Linear(token_channels, dim)
        self.pos = nn.Parameter(torch.zeros(1, grid * grid, dim))  # where on the face a token sits
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = global_dim + dim + token_channels * grid * grid

    def forward(self, g: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, _, gh, gw = s.shape
        if (gh, gw) != (self.grid, self.grid):
            raise ValueError(f"specialist map must be {self.grid}x{self.grid}, got {gh}x{gw}")
        q = self.query(g).unsqueeze(1)  # (B, 1, d)
        kv = torch.cat([q, self.tokens(s.flatten(2).transpose(1, 2)) + self.pos], 1)  # (B, 1 + g*g, d)
        a, w = self.attn(q, kv, kv, need_weights=True, average_attn_weights=True)  # (B, 1, d), (B, 1, 1+g*g)
        a = self.norm(a.squeeze(1) + q.squeeze(1))  # (B, d)
        fused = torch.cat([g, a, s.flatten(1)], 1)  # (B, out_dim)
        return fused, w[:, 0, 1:].reshape(B, gh, gw)  # attention on each grid cell, averaged over heads


class MLPHead(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Dropout per hidden width, then Linear to `num_classes`.
    BatchNorm1d needs more than one sample per batch in train mode (use drop_last in loaders)."""

    def __init__(self, in_dim: int, hidden=(1024, 512, 256), dropout=(0.3, 0.2, 0.1), num_classes: int = 2):
        super().__init__()
        if len(hidden) != len(dropout):
            raise ValueError(f"hidden {tuple(hidden)} and dropout {tuple(dropout)} must have the same length")
        layers, d = [], in_dim
        for h, p in zip(hidden, dropout):
            layers += [nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(p)]
            d = h
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
