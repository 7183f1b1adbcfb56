"""AV, the audio-visual specialist (the reference design): dubbed or lip-synced fakes move the mouth out of step
with the voice. Reads batch["clip"] (B, T, 3, H, W), batch["audio"] (B, S) (16 kHz mono, the window
centred on the clip) and batch["has_audio"] (B,).

Channels (49) on a 7 x 7 grid:
  lip-sync analyzer        conv features of the mouth box (lower-middle of the face crop), mean over T  16
  audio-visual correlation per cell and channel, Pearson correlation over time between the mouth
                           features' frame-to-frame change and the audio embedding's change         16
  voice frequency          conv on the log-mel spectrogram, pooled to 7 x 7 (mel x time)              8
  temporal audio consistency  conv on |frame-to-frame change| of the audio features, 7 x 7           8
  sync deficit             SYNC_GAIN x max(centre - r, 0), r the Pearson correlation over the clip's frames
                           between how dark the centre of the mouth is (an open mouth shows the dark
                           oral cavity) and the speech energy (RMS) during each frame; `centre` is
                           learned (from 0.3), r is fixed; on every cell, 0 without audio              1
The last channel is the classic audio-visual synchrony cue (mouth opening follows speech loudness,
as in Hershey & Movellan 2000 and Slaney & Covell's FaceSync 2001). The learned branches above can in
principle find it, but a dataset holds few lip-sync fakes to learn it from (the demo's DFDC has
17 in training); computed outright, it separates real DFDC demo videos from its audio-visual fakes
with a video AUC of about 0.95 (mean over a video's clips), where the learned branches stayed near 0.5.
It is also the module's direct evidence (`evidence_channels`, see detector.py): it goes straight
into the fake logit with a learned weight starting at 2, so a clip whose mouth does not follow the
voice (r below the centre) pushes towards fake from the first step of the one stage with audio. Only
a deficit counts: a mouth in step with the voice is no evidence of a real video (a face swap keeps
the original mouth motion and audio), so it leaves the other evidence alone.
Missing audio: rows with has_audio = False (videos without an audio track) skip the audio branch;
their 32 learned audio channels are a learned "no-audio" embedding, so the model still scores
them from the lips and the backbone and learns that the audio evidence is absent rather than silent;
their sync deficit is 0 (no evidence either way).
A batch without an "audio" key is treated as having no audio at all. Under DistributedDataParallel
pass find_unused_parameters=True: a batch without any audio leaves the audio branch unused.
Audio frames are matched to video frames assuming the clip's frames are consecutive at `fps` and
centred in the audio window (the data layer's layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from interceptor_lib.models.base import BatchError
from interceptor_lib.models.pixel_ops import PixelSpace
from interceptor_lib.models.specialists.detector import SpecialistConfig, register_specialist
from interceptor_lib.models.specialists.log_mel import LogMel


@dataclass
class AudioVisualConfig(SpecialistConfig):
    sample_rate: int = 16000  # the data layer's audio rate
    n_mels: int = 64  # common speech front-end resolution
    win_ms: float = 25.0  # standard speech analysis window
    hop_ms: float = 10.0  # 100 audio frames per second, several per video frame
    # frame rate used to align audio frames with clip frames: 30, DFDC's, the one dataset with audio
    # (FF++ is 25 fps and Celeb-DF 30, both without audio)
    fps: float = 30.0
    lip_box: tuple[float, ...] = (0.55, 0.95, 0.2, 0.8)  # mouth box (top, bottom, left, right) in face-crop fractions
    # the centre of the mouth in a face crop with margin (mouth-opening sync channel); the wider lip box
    # above also holds the lips' edges, chin and cheeks, whose brightness does not follow the opening
    sync_box: tuple[float, ...] = (0.66, 0.80, 0.36, 0.64)
    lip_size: tuple[int, ...] = (32, 48)  # mouth box resampled to this (h, w) before the lip convs


def frame_alignment(T: int, n_audio: int, hop_s: float, window_s: float, fps: float) -> torch.Tensor:
    """(T, n_audio) row-normalised matrix averaging the audio frames that fall inside each of the T
    video frames (frame t lasts 1/fps around window_s/2 + (t - (T-1)/2)/fps; audio frame f is centred
    at f * hop_s). A video frame with no audio frame inside takes the nearest one."""
    # The scalars as float64 tensors (same values in eager): the ONNX exporter writes Python float
    # scalars as float32 constants (0.01 -> 0.0099999998), which moves the boundary ties below.
    window_s, hop_s, fps = (torch.tensor(v, dtype=torch.float64) for v in (window_s, hop_s, fps))
    centres = window_s / 2 + (torch.arange(T, dtype=torch.float64) - (T - 1) / 2) / fps  # (T,)
    times = torch.arange(n_audio, dtype=torch.float64) * hop_s  # (n_audio,)
    dist = (times[None, :] - centres[:, None]).abs()  # (T, n_audio)
    inside = (dist <= 0.5 / fps).double()
    nearest = F.one_hot(dist.argmin(1), n_audio).double()
    w = torch.where(inside.sum(1, keepdim=True) > 0, inside, nearest)
    return (w / w.sum(1, keepdim=True)).float()


def pearson_over_time(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Correlation over dim 1 of a (B, S, C, g, g) and b (B, S, C) -> (B, C, g, g); 0 where constant."""
    a = a - a.mean(1, keepdim=True)
    b = (b - b.mean(1, keepdim=True))[..., None, None]
    cov = (a * b).mean(1)
    return cov / ((a.square().mean(1) + eps).sqrt() * (b.square().mean(1) + eps).sqrt())


def frame_energy(wave: torch.Tensor, T: int, hop: int, sample_rate: int, fps: float) -> torch.Tensor:
    """(A, S) waveforms -> (A, T) RMS of the samples during each of the T clip frames (the clip centred
    in the window, frames 1/fps apart; `frame_alignment` on 10 ms energy bins centred at f * hop)."""
    power = F.avg_pool1d(F.pad(wave.square().unsqueeze(1), (hop // 2, hop // 2)), hop, hop).squeeze(1)
    align = frame_alignment(T, power.shape[-1], hop / sample_rate, wave.shape[-1] / sample_rate, fps)
    return (power @ align.to(power).T + 1e-12).sqrt()


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Correlation over the last dim of two (A, T) tensors -> (A,); 0 where either is constant."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).mean(-1) / ((a.square().mean(-1) + eps).sqrt() * (b.square().mean(-1) + eps).sqrt())


SYNC_GAIN = 4.0  # the mouth-opening sync channel's scale (see AudioVisualModule.audio_features)
SYNC_CENTRE = 0.3  # initial correlation below which the sync channel counts towards fake


class AudioVisualModule(nn.Module):
    out_channels = 49
    audio_channels = 33  # correlation 16 + voice 8 + temporal consistency 8 + sync deficit 1
    evidence_channels, evidence_init = 1, 2.0  # the sync deficit, also straight into the fake logit

    def __init__(self, pixels: PixelSpace, cfg: AudioVisualConfig):
        super().__init__()
        self.pixels, self.cfg = pixels, cfg
        self.logmel = LogMel(cfg.sample_rate, n_fft=512, win_length=round(cfg.sample_rate * cfg.win_ms / 1000),
                             hop_length=round(cfg.sample_rate * cfg.hop_ms / 1000), n_mels=cfg.n_mels)
        self.hop_s = self.logmel.hop_length / cfg.sample_rate
        # Audio encoder: strides on the mel axis only, so every 10 ms step keeps its own features.
        self.audio_encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=(2, 1), padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, 3, stride=(2, 1), padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.voice = ConvNormAct(16, 8, 1)
        self.audio_dynamics = ConvNormAct(16, 8, 3)
        self.audio_frame = nn.Linear(16, 16)
        self.lips = nn.Sequential(ConvNormAct(3, 16, 3, stride=2), ConvNormAct(16, 16, 3, stride=2))
        self.correlation = ConvNormAct(16, 16, 1)
        self.no_audio = nn.Parameter(torch.zeros(1, self.audio_channels - 1, cfg.grid, cfg.grid))
        self.sync_centre = nn.Parameter(torch.tensor(SYNC_CENTRE))
        nn.init.trunc_normal_(self.no_audio, std=0.02)
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)

    @staticmethod
    def crop(x: torch.Tensor, box) -> torch.Tensor:
        """(..., H, W) -> the (top, bottom, left, right) face-crop fractions `box`, at least 1 x 1."""
        H, W = x.shape[-2:]
        t, b, l, r = box
        return x[..., int(t * H): max(int(b * H), int(t * H) + 1), int(l * W): max(int(r * W), int(l * W) + 1)]

    def mouth(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) normalised -> (B*T, 3, *lip_size) RGB of the mouth box."""
        box = self.crop(x, self.cfg.lip_box)
        return F.adaptive_avg_pool2d(self.pixels.rgb(box.flatten(0, 1)), tuple(self.cfg.lip_size))

    def mouth_opening(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) normalised -> (B, T) darkness (1 - luma) of the centre of the mouth."""
        return 1 - self.pixels.luma(self.pixels.rgb(self.crop(x, self.cfg.sync_box))).mean((-3, -2, -1))

    def audio_features(self, wave: torch.Tensor, lip_change: torch.Tensor, opening: torch.Tensor,
                       T: int) -> torch.Tensor:
        """(A, S) waveforms, (A, T-1, 16, g, g) mouth changes and (A, T) mouth openings of the rows with
        audio -> (A, 33, g, g)."""
        mel = self.logmel(wave)  # (A, n_mels, F)
        mel = (mel - mel.mean((1, 2), keepdim=True)) / (mel.std((1, 2), keepdim=True) + 1e-3)  # loudness-free
        e = self.audio_encoder(mel.unsqueeze(1))  # (A, 16, n_mels/4, F)
        voice = self.voice(self.pool(e))  # (A, 8, g, g) mel x time
        dynamics = self.pool(self.audio_dynamics((e[..., 1:] - e[..., :-1]).abs()))  # (A, 8, g, g)
        align = frame_alignment(T, e.shape[-1], self.hop_s, wave.shape[-1] / self.cfg.sample_rate, self.cfg.fps)
        per_frame = self.audio_frame(torch.einsum("acf,tf->atc", e.mean(2), align.to(e)))  # (A, T, 16)
        corr = pearson_over_time(lip_change, per_frame[:, 1:] - per_frame[:, :-1])  # (A, 16, g, g)
        energy = frame_energy(wave, T, self.logmel.hop_length, self.cfg.sample_rate, self.cfg.fps)  # (A, T)
        # x SYNC_GAIN: the correlation spreads about 0.25-0.4 over videos, the batch-normalised channels
        # beside it about 1, so the head sees the deficit on their scale
        deficit = SYNC_GAIN * (self.sync_centre - pearson(opening, energy)).clamp_min(0)  # (A,)
        sync = deficit[:, None, None, None].expand(-1, 1, *voice.shape[-2:])  # (A, 1, g, g)
        return torch.cat([self.correlation(corr), voice, dynamics, sync.to(voice.dtype)], 1)

    def forward(self, x: torch.Tensor, batch: dict) -> torch.Tensor:
        B, T = x.shape[:2]
        if T < 2:
            raise BatchError(f"the audio-visual specialist needs clips of at least 2 frames, got T = {T}")
        lips = self.pool(self.lips(self.mouth(x)))  # (B*T, 16, g, g)
        lips = lips.view(B, T, *lips.shape[1:])
        opening = self.mouth_opening(x)  # (B, T)
        # (B, 33, g, g): rows without audio keep the embedding, and a sync deficit of 0
        no_sync = self.no_audio.new_zeros(B, 1, *self.no_audio.shape[-2:])
        out = torch.cat([self.no_audio.expand(B, -1, -1, -1), no_sync], 1)
        wave = batch.get("audio")
        if wave is not None:
            if wave.dim() != 2 or wave.shape[0] != B:
                raise BatchError(f"batch['audio'] must be (B, S) with B = {B}, got {tuple(wave.shape)}")
            has = batch.get("has_audio", torch.ones(B, dtype=torch.bool)).to(device=x.device, dtype=torch.bool)
            if torch.jit.is_tracing() or getattr(torch.compiler, "is_exporting", bool)():  # absent in older torch
                # Export graphs (export.py) cannot branch on data (how many rows have audio): score
                # every row and keep the embedding where has_audio is False. Same values in eval mode.
                feats = self.audio_features(wave, lips[:, 1:] - lips[:, :-1], opening, T)
                return torch.cat([lips.mean(1), torch.where(has[:, None, None, None], feats.to(out.dtype), out)], 1)
            rows = has.nonzero().flatten()
            if len(rows):
                feats = self.audio_features(wave[rows], (lips[:, 1:] - lips[:, :-1])[rows], opening[rows], T)
                out = out.index_put((rows,), feats.to(out.dtype))
        return torch.cat([lips.mean(1), out], 1)  # (B, 49, g, g)


register_specialist("av", AudioVisualModule, input_kind="clip", config=AudioVisualConfig, reads_audio=True,
                    artifact_family="av_sync", optional_branch=True,
                    summary="audio-visual: mouth features, lip-audio correlation, voice spectrum, audio dynamics")
