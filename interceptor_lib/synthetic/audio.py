"""Speech-like audio and the mouth movement it drives.

Speech is a train of syllables (4-6 per second, grouped in phrases with pauses): each syllable
is a voiced vowel (harmonics of a slowly gliding pitch, weighted by two formant resonances) with
an optional noise-burst consonant at its onset, under a smooth amplitude envelope. The same
envelope opens the mouth of the rendered face, so in a real video the mouth follows the audio;
the `av_sync` artifact shifts or replaces that envelope in the video only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 44100  # DFDC clips carry 44.1/48 kHz AAC audio


@dataclass(frozen=True)
class Syllables:
    """A syllable schedule: arrays of equal length, times in seconds."""

    onset: np.ndarray      # start time
    length: np.ndarray     # duration
    peak: np.ndarray       # loudness 0..1
    f1: np.ndarray         # first formant, Hz
    f2: np.ndarray         # second formant, Hz
    burst: np.ndarray      # bool: a noisy consonant starts the syllable
    f0: float              # speaker's base pitch, Hz


def draw_syllables(rng: np.random.Generator, duration: float) -> Syllables:
    """Phrases of 3-8 syllables (120-260 ms each) separated by 0.15-0.5 s pauses."""
    onsets, lengths = [], []
    t = rng.uniform(0.0, 0.25)
    while t < duration:
        for _ in range(int(rng.integers(3, 9))):
            length = rng.uniform(0.12, 0.26)
            onsets.append(t)
            lengths.append(length)
            t += length + rng.uniform(0.02, 0.07)
            if t >= duration:
                break
        t += rng.uniform(0.15, 0.5)
    n = len(onsets)
    return Syllables(
        onset=np.array(onsets), length=np.array(lengths), peak=rng.uniform(0.45, 1.0, n),
        f1=rng.uniform(300, 850, n), f2=rng.uniform(900, 2400, n), burst=rng.uniform(size=n) < 0.4,
        f0=float(rng.uniform(95, 230)))


def envelope(syl: Syllables, times: np.ndarray) -> np.ndarray:
    """Amplitude envelope (0..1) at `times`: a quick-attack, slower-decay bump per syllable."""
    env = np.zeros(len(times), dtype=np.float64)
    for on, ln, pk in zip(syl.onset, syl.length, syl.peak):
        u = (times - on) / ln
        inside = (u > 0) & (u < 1)
        shape = np.sin(np.pi * np.clip(u, 0, 1) ** 0.7)
        env = np.maximum(env, np.where(inside, pk * shape, 0.0))
    return env


def mouth_track(syl: Syllables, n_frames: int, fps: float, delay_s: float = 0.0) -> np.ndarray:
    """Mouth opening (0..1) per video frame: the envelope averaged over each frame's interval,
    `delay_s` seconds late (negative: early) with respect to the audio."""
    sub = 4  # samples per frame, so short syllables are not missed between frame instants
    times = (np.arange(n_frames * sub) + 0.5) / (fps * sub) - delay_s
    return envelope(syl, times).reshape(n_frames, sub).mean(axis=1).astype(np.float32)


def synth_speech(syl: Syllables, duration: float, rng: np.random.Generator,
                 sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 waveform in [-1, 1] of `duration` seconds for the syllable schedule."""
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    ctrl_t = np.arange(0, duration + 0.01, 0.01)  # formants and pitch at a 100 Hz control rate
    idx = np.clip(np.searchsorted(syl.onset, ctrl_t) - 1, 0, max(len(syl.onset) - 1, 0))
    f1 = np.interp(t, ctrl_t, syl.f1[idx]) if len(syl.onset) else np.full(n, 500.0)
    f2 = np.interp(t, ctrl_t, syl.f2[idx]) if len(syl.onset) else np.full(n, 1500.0)
    f0 = syl.f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t + rng.uniform(0, 6.3)))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = np.zeros(n)
    for k in range(1, int(4000 // syl.f0) + 1):
        fk = k * f0
        weight = (np.exp(-((fk - f1) / 160) ** 2) + 0.6 * np.exp(-((fk - f2) / 220) ** 2) + 0.08 / k)
        voiced += weight * np.sin(k * phase)
    env = envelope(syl, t)
    out = env * voiced / max(1e-6, np.abs(voiced).max())
    noise = np.diff(rng.standard_normal(n + 1))  # differentiated white noise: a hissy consonant
    bursts = np.zeros(n)
    for on, burst, pk in zip(syl.onset, syl.burst, syl.peak):
        if burst:
            u = (t - on) / 0.05
            bursts += np.where((u > 0) & (u < 1), pk * np.sin(np.pi * np.clip(u, 0, 1)), 0.0)
    out = out + 0.25 * bursts * noise / 2 + 0.003 * rng.standard_normal(n)  # + faint room noise
    return (0.6 * out / max(1e-6, np.abs(out).max())).astype(np.float32)


def audio_envelope_per_frame(wave: np.ndarray, n_frames: int, fps: float,
                             sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """RMS of the waveform over each video frame's interval (analysis and tests)."""
    per = sample_rate / fps
    edges = np.round(np.arange(n_frames + 1) * per).astype(int)
    return np.array([np.sqrt(np.mean(wave[a:b] ** 2)) if b > a else 0.0
                     for a, b in zip(edges[:-1], np.minimum(edges[1:], len(wave)))], dtype=np.float32)
