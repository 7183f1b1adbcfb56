"""Score one prepared input with the ensemble.

The crops are normalised with `build_transform(train=False)`. Image members score each evenly
spaced frame, clip members each clip (with the audio window of the clip, or marked as without
audio, as in training). Each member's scores are averaged over the input (the mean, as the
validation metrics and the fitted weights use), then combined with the ensemble's weights: P(fake)
(temperature-scaled when the config has a temperature) and the weighted standard deviation of the
members as uncertainty.

Only image members score an image: a still image repeated into a clip is a frozen video, a condition
the clip models never saw in training and would judge on that alone, so they are skipped with a
note. The weights are renormalised over the members that scored, and the same happens for a video
shorter than one clip.
"""

from __future__ import annotations

import numpy as np
import torch

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.datasets import build_transform
from interceptor_lib.ensemble.combine import Ensemble
from interceptor_lib.errors import InterceptorError
from interceptor_lib.inference.preprocess import Prepared


class PredictError(InterceptorError, ValueError):
    """One input cannot be scored (missing, not a video or image); the message says what was expected."""


def to_tensor(x: np.ndarray, transform) -> torch.Tensor:
    """uint8 (..., S, S, 3) -> normalised float (..., 3, S, S)."""
    t = torch.from_numpy(np.ascontiguousarray(x)).movedim(-1, -3)
    return transform(t)


def clip_batch(prep: Prepared, transform, pp_audio_len: int, sel=slice(None)) -> dict:
    """The clip members' batch of the clips `sel`: clip, audio (zeros when the input has none) and has_audio."""
    clips = to_tensor(prep.clips[sel], transform)
    n = clips.shape[0]
    if prep.audio is not None:
        audio, has = torch.from_numpy(prep.audio[sel]).float(), torch.ones(n, dtype=torch.bool)
    else:
        audio, has = torch.zeros(n, pp_audio_len), torch.zeros(n, dtype=torch.bool)
    return {"clip": clips, "audio": audio, "has_audio": has}


def score_prepared(ens: Ensemble, prep: Prepared, pp: PreprocessParams, device: torch.device,
                   batch_size: int = 16) -> dict:
    """Member scores per row, averaged per member over the input, combined with the ensemble weights."""
    transform = build_transform(False, ens.data_config["mean"], ens.data_config["std"])
    audio_len = int(round(pp.audio_window_s * pp.audio_sample_rate))
    kinds = {n: ens.members[n].input_kind for n in ens.names}
    skipped = {}
    if not len(prep.frames):
        skipped.update({n: "no frames" for n, k in kinds.items() if k == "image"})
    if not len(prep.clips):
        why = ("an image has no clip (only image models score images)" if prep.kind == "image" else
               f"the video is shorter than one clip ({prep.num_frames} frames < clip_len {pp.clip_len})")
        skipped.update({n: why for n, k in kinds.items() if k == "clip"})
    run = [n for n in ens.names if n not in skipped]
    if not run:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise PredictError(f"no ensemble member can score this input: {why}")
    scores: dict[str, list[torch.Tensor]] = {n: [] for n in run}
    image_members = [n for n in run if kinds[n] == "image"]
    clip_members = [n for n in run if kinds[n] == "clip"]
    with torch.inference_mode():
        for i in range(0, len(prep.frames) if image_members else 0, batch_size):
            x = to_tensor(prep.frames[i:i + batch_size], transform).to(device)
            for n, p in ens.run_members({"image": x}, image_members).items():
                scores[n].append(p.float().cpu())
        step = max(1, batch_size // max(1, pp.clip_len))
        for i in range(0, len(prep.clips) if clip_members else 0, step):
            b = {k: v.to(device) for k, v in clip_batch(prep, transform, audio_len, slice(i, i + step)).items()}
            for n, p in ens.run_members(b, clip_members).items():
                scores[n].append(p.float().cpu())
        member = torch.stack([torch.cat(scores[n]).mean() for n in run])[None]  # (1, M')
        audio = prep.audio is not None  # an input with audio takes the ensemble's weights for audio, if any
        out = ens.combine(member, run, has_audio=torch.tensor([audio]))
    return {"prob": float(out["prob"][0]), "prob_uncalibrated": float(out["prob_uncalibrated"][0]),
            "uncertainty": float(out["uncertainty"][0]),
            "members": {n: float(member[0, j]) for j, n in enumerate(run)},
            "weights": ens.weights_for(run, audio), "skipped": skipped}
