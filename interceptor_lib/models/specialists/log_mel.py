"""Log-mel spectrogram in plain torch (torchaudio is not a dependency): torch.stft + a triangular
mel filterbank on the HTK mel scale, the same construction as torchaudio's
`melscale_fbanks(norm=None, mel_scale="htk")` and Kaldi's fbank features.
"""

from __future__ import annotations

import torch
from torch import nn


def hz_to_mel(f):
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """(n_freqs, n_mels) triangular filters: filter m rises from mel point m to m+1 and falls to m+2,
    the n_mels + 2 points spaced evenly on the mel scale between f_min and f_max (default Nyquist)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)  # (n_freqs,) STFT bin centres
    pts = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64))
    width = pts[1:] - pts[:-1]  # (n_mels + 1,)
    slopes = pts[None, :] - freqs[:, None]  # (n_freqs, n_mels + 2)
    rise = -slopes[:, :-2] / width[:-1]
    fall = slopes[:, 2:] / width[1:]
    return torch.clamp(torch.minimum(rise, fall), min=0).float()


class LogMel(nn.Module):
    """(B, S) waveform -> (B, n_mels, F) log mel power, F = S // hop + 1 frames (centred windows)."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 512, win_length: int = 400,
                 hop_length: int = 160, n_mels: int = 64):
        super().__init__()
        if win_length > n_fft:
            raise ValueError(f"win_length {win_length} must not exceed n_fft {n_fft}")
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.register_buffer("fbank", mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.shape[-1] <= self.n_fft // 2:
            raise ValueError(f"audio windows must be longer than {self.n_fft // 2} samples, got {wave.shape[-1]}")
        spec = torch.stft(wave.float(), self.n_fft, self.hop_length, self.win_length, self.window,
                          center=True, return_complex=True).abs().square()  # (B, n_freqs, F)
        return torch.log(torch.einsum("fm,bft->bmt", self.fbank, spec) + 1e-6)
