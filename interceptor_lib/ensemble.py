"""The weighted ensemble of the specialists: one P(fake), its spread over the members, a shared trunk.

    members = {name: model for name, model in ...}           # DetectorBase instances (image or clip)
    ens = Ensemble(members, weights={"ll": 0.3, ...})
    out = ens({"image": frames, "clip": clips, "audio": a, "has_audio": h})
    out["prob"] (B,), out["member_probs"] (B, M), out["uncertainty"] (B,), out["logits"] (B, 2)

Shared trunk. Every specialist runs the same frozen ImageNet stem and leading stages (see
`models/base.py`); only the last stages, the specialist module and the head differ. Members whose
`trunk_state()` (weights and BatchNorm statistics), trunk depth and input kind are equal form a
group; the group computes `forward_trunk` once and every member continues from it
(`member(batch, trunk=t)`). Groups of both kinds with the same trunk reuse one computation when the
frames are the same tensor content (an image batch that is the clips' frames, as in the benchmark).
Grouping is decided from the weights themselves (a sha256), never from names, so members trained
apart with a drifted trunk are simply not grouped, and results equal running the members one by
one (tested to 1e-5).

Weights and threshold are fitted on VALIDATION video-level member probabilities (`fit_weights`,
`choose_threshold`, or both plus a temperature with `fit_ensemble`) and stored with the members'
checkpoints in `<output_dir>/ensemble/ensemble.json` (`save_ensemble_config`), from which
`load_ensemble` rebuilds the ensemble (the `predict` command uses it). The evaluation notebook:

    ckpts = find_member_checkpoints(params)                      # best of each model's last stage
    ens = Ensemble({n: load_member(p) for n, p in ckpts.items()})
    val = member_video_probs(ens, val_rows, crop_cache(params))  # video_id, label, one column per member
    fit = fit_ensemble(val[ens.names], val["label"])             # weights, temperature, threshold
    save_ensemble_config(params.output_dir, ckpts, fit["weights"], fit["threshold"], fit["temperature"],
                         metadata={"profile": params.profile, "val": fit["val"]}, preprocess=params.preprocess,
                         combination=fit["combination"])

By default (`fit_ensemble(method="logit")`) the members vote in log-odds: P(fake) = sigmoid(sum_j w_j
logit(p_j) / T), the weights being the non-negative coefficients of a logistic regression on the
validation log-odds; `combination="prob"` (the other weight methods) takes the weighted mean of the
probabilities instead.

Inputs with audio. The audio-visual member's main evidence exists only where a video has an audio
track, and in the usual corpora one dataset has audio (DFDC) and the others none, so weights fitted
on all validation videos judge it mostly where it is blind. `fit_ensemble(..., has_audio=...)`
therefore fits a second weight set and temperature on the validation videos with audio, when they
hold at least MIN_AUDIO_VAL videos of each class (else one set serves all; the fit says why). Each
set is shrunk towards the fit on all videos (weight n / (n + AUDIO_PRIOR_VIDEOS) on its own fit, n
its videos), since a validation set rarely holds many videos with audio. The
ensemble then combines each input with the set of its kind: `Ensemble(..., audio_weights=...,
audio_temperature=...)` reads `has_audio` from the batch (per item, as for the probs); one
threshold, chosen on the calibrated validation probs of both kinds together, serves both.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn

from interceptor_lib import __version__
from interceptor_lib.errors import InterceptorError
from interceptor_lib.metrics import scores as _metrics
from interceptor_lib.metrics.calibration import apply_temperature, fit_temperature
from interceptor_lib.metrics.scores import EPS, check_binary, check_labels, has_both_classes
from interceptor_lib.models.base import BatchError, DetectorBase, two_class_logits

ENSEMBLE_FORMAT = 1
ENSEMBLE_DIR = "ensemble"
ENSEMBLE_FILE = "ensemble.json"
WEIGHT_METHODS = ("logit", "log_loss", "auc", "equal")
#: how member P(fake) are combined: "prob", the weighted mean of the probabilities; "logit", the weighted
#: mean of their log-odds (weighted voting in log-odds: a confident member is not averaged away)
COMBINATIONS = ("prob", "logit")
#: in log-odds voting each member's P(fake) is clipped to [VOTE_EPS, 1 - VOTE_EPS] (a vote of at most
#: +-6.9): no member can veto the others, and the log-odds stay well-conditioned for float32 exports
VOTE_EPS = 1e-3
EVALUATION_NOTEBOOK = "06_evaluation"
#: fewest validation videos of each class with audio (and of each without) for a weight set of their own.
#: With 8, the demo's 9 real / 38 fake DFDC validation videos got a set and a temperature of their own,
#: fitted to 9 real videos: on two demo runs the ensemble's DFDC test AUC was 0.916 and 0.912 with it,
#: 0.920 and 0.916 with one set, and once its DFDC fake-detection rate at the shared threshold 0.64, not 0.76
MIN_AUDIO_VAL = 20
#: each kind's weights are its own fit mixed with the fit on all videos as n : AUDIO_PRIOR_VIDEOS
#: (n = its validation videos): a few dozen videos with audio pull their set only part of the way
AUDIO_PRIOR_VIDEOS = 50


class EnsembleError(InterceptorError, ValueError):
    """An ensemble cannot be built or loaded (no config file, a missing checkpoint, bad weights)."""


# ----------------------------------------------------------------------------------------- trunk

def trunk_hash(model: DetectorBase) -> str:
    """sha256 of the model's frozen trunk: sorted state names, dtypes, shapes and tensor bytes.
    Equal hashes (with equal depth and input kind) mean the trunk computes the same function."""
    h = hashlib.sha256()
    for name, t in sorted(model.trunk_state().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _same_frames(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when two frame batches hold the same values (a view of the same memory is checked first)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    return bool(torch.equal(a, b))


# ----------------------------------------------------------------------------------------- module

class Ensemble(nn.Module):
    """Weighted mean of the members' P(fake), with their weighted spread as uncertainty.

    `members`: name -> DetectorBase (image and clip models can be mixed: each reads its own batch key).
    `weights`: name -> weight >= 0 (normalised to sum 1; default equal). `share_trunk`: run each
    trunk group's frozen trunk once (see the module docstring). `temperature` (T > 0, optional)
    rescales the ensemble's fake logit: prob = sigmoid(logit(weighted mean) / T); `threshold` is the
    decision threshold on that prob (both fitted on validation, set by `load_ensemble`).
    `audio_weights` / `audio_temperature` (optional): the weight set and temperature for inputs with
    audio (see the module docstring); without `audio_weights` every input uses `weights`.

    Items: every member's prob is averaged per item before combining. By default an item is a row of
    the member's input; when a batch holds `image` (N, 3, H, W) and `clip` (B, T, 3, H, W) with
    N = B * T, the image rows are taken to be the clips' frames and averaged per clip. An explicit
    `image_item` / `clip_item` (long, one item number per row) groups rows into items, e.g. all
    frames and clips of one video into item 0 (frame-to-video aggregation by the mean).

    The grouping is computed from the weights when the ensemble is built; call `regroup()` after
    changing a member's trunk weights in place (`load_state_dict` on the ensemble does it).
    """

    def __init__(self, members: dict[str, DetectorBase], weights: dict[str, float] | None = None,
                 share_trunk: bool = True, temperature: float | None = None, threshold: float | None = None,
                 combination: str = "prob", audio_weights: dict[str, float] | None = None,
                 audio_temperature: float | None = None):
        super().__init__()
        if combination not in COMBINATIONS:
            raise EnsembleError(f"unknown combination {combination!r}; expected one of {COMBINATIONS}")
        self.combination = combination
        if not members:
            raise EnsembleError("an ensemble needs at least one member")
        bad = [n for n, m in members.items() if not isinstance(m, DetectorBase)]
        if bad:
            raise EnsembleError(f"ensemble members must be DetectorBase models (create_model); not: {bad}")
        self.members = nn.ModuleDict(members)
        self.share_trunk = share_trunk
        self.temperature = temperature
        self.threshold = threshold
        norms = {(tuple(m.data_config["mean"]), tuple(m.data_config["std"])) for m in members.values()}
        if len(norms) > 1:
            raise EnsembleError(f"ensemble members normalise their input differently ({sorted(norms)}); one batch "
                                "cannot serve them all")
        self.set_weights(weights, audio_weights)
        self.audio_temperature = audio_temperature
        self.regroup()

    # -------------------------------------------------------------- configuration
    @property
    def names(self) -> list[str]:
        return list(self.members.keys())

    @property
    def data_config(self) -> dict:
        """mean / std / input_size of the members' backbone (equal for all members, checked)."""
        return next(iter(self.members.values())).data_config

    def set_weights(self, weights: dict[str, float] | None, audio_weights: dict[str, float] | None = None) -> None:
        """Set the member weights (normalised to sum 1; None = equal) and those for inputs with audio
        (None: the same as for the others)."""
        self.weights = normalise_weights(weights, self.names)
        self.audio_weights = None if audio_weights is None else normalise_weights(audio_weights, self.names)

    def regroup(self) -> list[dict]:
        """Recompute the trunk groups from the members' current weights. Returns `trunk_groups()`."""
        groups: dict[tuple, list[str]] = {}
        for name, m in self.members.items():
            depth = m.backbone.trunk_depth
            if not self.share_trunk or depth == 0:  # depth 0: no frozen trunk to share
                key = ("alone", name, m.input_kind, depth)
            else:
                key = (trunk_hash(m), m.input_kind, depth)
            groups.setdefault(key, []).append(name)
        self._groups = [(k, v) for k, v in groups.items()]
        return self.trunk_groups()

    def trunk_groups(self) -> list[dict]:
        """The grouping: one dict per group with members, input_kind, trunk_depth, trunk_hash
        (first 12 hex digits; None for members that run alone) and shared (more than one member)."""
        out = []
        for key, names in self._groups:
            alone = key[0] == "alone"
            m = self.members[names[0]]
            out.append({"members": list(names), "input_kind": m.input_kind, "trunk_depth": m.backbone.trunk_depth,
                        "trunk_hash": None if alone else key[0][:12], "shared": not alone and len(names) > 1})
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.regroup()
        return result

    # -------------------------------------------------------------- forward
    def run_members(self, batch: dict, names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Per-row P(fake) of each member in `names` (default all): (N,) for image members (one per
        image row), (B,) for clip members (one per clip). Trunks are shared within groups."""
        wanted = self.names if names is None else list(names)
        unknown = [n for n in wanted if n not in self.members]
        if unknown:
            raise EnsembleError(f"no ensemble member(s) {unknown}; members are {self.names}")
        probs: dict[str, torch.Tensor] = {}
        computed: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # (hash, depth) -> [(frames, trunk)]
        for key, group in self._groups:
            group = [n for n in group if n in wanted]
            if not group:
                continue
            if key[0] == "alone":
                for n in group:
                    probs[n] = self.members[n](batch)["prob"]
                continue
            first = self.members[group[0]]
            frames = first.frames(batch)  # checks the batch key and shape
            trunk = None
            for seen, t in computed.get((key[0], key[2]), []):
                if _same_frames(seen, frames):  # e.g. image members on the clips' own frames
                    trunk = t
                    break
            if trunk is None:
                trunk = first.forward_trunk(batch)
                computed.setdefault((key[0], key[2]), []).append((frames, trunk))
            for n in group:
                probs[n] = self.members[n](batch, trunk=trunk)["prob"]
        return {n: probs[n] for n in wanted}

    def forward(self, batch: dict) -> dict:
        """prob (B,), member_probs (B, M) in member order, uncertainty (B,), logits (B, 2) and
        prob_uncalibrated (B,) (equal to prob without a temperature)."""
        raw = self.run_members(batch)
        items = {n: self._item_probs(batch, self.members[n].input_kind, p) for n, p in raw.items()}
        sizes = {n: p.shape[0] for n, p in items.items()}  # no len()/set(): torch.export traces symbolic sizes
        if any(s != sizes[self.names[0]] for s in sizes.values()):
            raise BatchError(f"ensemble members scored different numbers of items {sizes}; give the batch "
                             "'image_item' / 'clip_item' (the item of each row) so that they can be aligned")
        member_probs = torch.stack([items[n] for n in self.names], dim=1)  # (B, M)
        has_audio = None
        if self.audio_weights is not None and "has_audio" in batch and "clip" in batch:
            has = batch["has_audio"].to(member_probs.device).reshape(-1).to(member_probs.dtype)
            has_audio = self._item_probs(batch, "clip", has) > 0.5  # (B,): the item's clips mostly have audio
        return self.combine(member_probs, has_audio=has_audio)

    def weights_for(self, names: list[str] | None = None, audio: bool = False) -> dict[str, float]:
        """The weights that combine `names` (default all members) for an input with or without audio,
        renormalised over those members."""
        names = self.names if names is None else list(names)
        src = self.audio_weights if audio and self.audio_weights is not None else self.weights
        total = sum(src[n] for n in names)
        if total <= 0:
            raise EnsembleError(f"members {names} all have weight 0{' for inputs with audio' if audio else ''}; "
                                "no ensemble score can be formed")
        return {n: src[n] / total for n in names}

    def combine(self, member_probs: torch.Tensor, names: list[str] | None = None,
                has_audio: torch.Tensor | None = None) -> dict:
        """Combine (B, M') member probabilities of `names` (default all members, in order) with the
        ensemble's weights renormalised over those members; rows where `has_audio` (B,) is True use the
        weight set and temperature for inputs with audio when the ensemble has one. See `forward`
        for the keys."""
        names = self.names if names is None else list(names)
        out = self._combine(member_probs, names, audio=False)
        if self.audio_weights is None or has_audio is None:
            return out
        with_audio = self._combine(member_probs, names, audio=True)
        has = torch.as_tensor(has_audio, device=member_probs.device).reshape(-1).bool()
        for k in ("prob", "prob_uncalibrated", "uncertainty"):
            out[k] = torch.where(has, with_audio[k], out[k])
        out["logits"] = torch.where(has[:, None], with_audio["logits"], out["logits"])
        return out

    def _combine(self, member_probs: torch.Tensor, names: list[str], audio: bool) -> dict:
        weights = self.weights_for(names, audio)  # on the Python weights: no data-dependent branch
        w = torch.tensor([weights[n] for n in names], dtype=member_probs.dtype, device=member_probs.device)
        temperature = self.audio_temperature if audio else self.temperature
        mean = member_probs @ w
        spread = ((member_probs - mean[:, None]) ** 2) @ w
        uncertainty = spread.clamp_min(0).sqrt()
        if self.combination == "logit":
            pm = member_probs.clamp(VOTE_EPS, 1 - VOTE_EPS)
            z = (torch.log(pm) - torch.log1p(-pm)) @ w
            raw = torch.sigmoid(z)
        else:
            p = mean.clamp(EPS, 1 - EPS)
            z = torch.log(p) - torch.log1p(-p)
            raw = mean
        if temperature is not None:
            z = z / float(temperature)
        prob = torch.sigmoid(z) if temperature is not None else raw
        return {"prob": prob, "prob_uncalibrated": raw, "member_probs": member_probs,
                "uncertainty": uncertainty, "logits": two_class_logits(z)}

    @staticmethod
    def _item_probs(batch: dict, kind: str, p: torch.Tensor) -> torch.Tensor:
        """Average a member's per-row probs per item (see the class docstring)."""
        index = batch.get(f"{kind}_item")
        if index is None and kind == "image" and "clip" in batch and batch["clip"].dim() == 5:
            b, t = batch["clip"].shape[:2]
            if p.shape[0] == b * t and p.shape[0] != b:
                return p.view(b, t).mean(1)
        if index is None:
            return p
        index = torch.as_tensor(index, device=p.device).long().reshape(-1)
        if len(index) != len(p):
            raise BatchError(f"batch[{kind + '_item'!r}] has {len(index)} entries for {len(p)} {kind} rows")
        n = int(index.max()) + 1
        sums = torch.zeros(n, dtype=p.dtype, device=p.device).index_add_(0, index, p)
        counts = torch.zeros(n, dtype=p.dtype, device=p.device).index_add_(0, index, torch.ones_like(p))
        if bool((counts == 0).any()):
            empty = torch.nonzero(counts == 0).flatten().tolist()
            raise BatchError(f"batch[{kind + '_item'!r}] leaves item(s) {empty} "
                             f"without a {kind} row")
        return sums / counts


def normalise_weights(weights: dict[str, float] | None, names: list[str]) -> dict[str, float]:
    """Weights for exactly `names`, >= 0 and summing to 1 (None: equal weights)."""
    if weights is None:
        return {n: 1.0 / len(names) for n in names}
    missing, extra = [n for n in names if n not in weights], [n for n in weights if n not in names]
    if missing or extra:
        raise EnsembleError(f"weights must name exactly the members {names}; missing {missing}, unknown {extra}")
    w = np.array([float(weights[n]) for n in names])
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise EnsembleError(f"weights must be finite, >= 0 and not all 0, got {dict(zip(names, w.tolist()))}")
    return {n: float(v) for n, v in zip(names, w / w.sum())}


# ----------------------------------------------------------------------------------------- fitting

def _member_matrix(val_member_probs: pd.DataFrame, labels) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if not isinstance(val_member_probs, pd.DataFrame) or val_member_probs.shape[1] == 0:
        raise ValueError("val_member_probs must be a DataFrame with one column of video-level P(fake) per member")
    names = [str(c) for c in val_member_probs.columns]
    cols = [_metrics.check_probs(val_member_probs[c].to_numpy()) for c in val_member_probs.columns]
    y = check_labels(labels)
    if len(y) != len(val_member_probs):
        raise ValueError(f"{len(y)} labels for {len(val_member_probs)} validation videos")
    return np.stack(cols, axis=1), y, names


def _auc_weights(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights proportional to each member's validation AUC above chance (max(AUC - 0.5, 0));
    equal weights when no member beats chance."""
    skill = np.array([max(roc_auc_score(y, P[:, j]) - 0.5, 0.0) for j in range(P.shape[1])])
    return skill / skill.sum() if skill.sum() > 0 else np.full(P.shape[1], 1.0 / P.shape[1])


def _log_loss_weights(P: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Simplex weights minimising the log-loss of P @ w (None when the optimiser fails)."""
    m = P.shape[1]
    P = np.clip(P, EPS, 1 - EPS)

    def loss_grad(w):
        p = np.clip(P @ w, EPS, 1 - EPS)
        loss = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
        dp = -(y / p - (1 - y) / (1 - p)) / len(y)
        return loss, P.T @ dp

    res = minimize(loss_grad, np.full(m, 1.0 / m), jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * m,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(m)}],
                   options={"maxiter": 500, "ftol": 1e-10})
    if not res.success or not np.isfinite(res.x).all():
        return None
    w = np.clip(res.x, 0.0, None)
    w[w < 1e-6] = 0.0  # the solver's round-off around 0
    return w / w.sum() if w.sum() > 0 else None


def _votes(P: np.ndarray) -> np.ndarray:
    """The members' log-odds votes: P(fake) clipped to [VOTE_EPS, 1 - VOTE_EPS], then logit (numpy
    twin of the clamp in `Ensemble.combine`)."""
    return _metrics.logit(np.clip(P, VOTE_EPS, 1 - VOTE_EPS))


def _logit_weights(P: np.ndarray, y: np.ndarray, l2: float = 0.1) -> np.ndarray | None:
    """Non-negative weights of the members' log-odds from a logistic regression on VALIDATION
    (class-balanced, an intercept, a small L2 penalty), scaled to sum 1 (None when all are 0)."""
    X = _votes(P)
    m = X.shape[1]
    sw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean())) / len(y)  # each class weighs half

    def loss_grad(theta):
        c, b = theta[:m], theta[m]
        z = X @ c + b
        r = sw * (_metrics.sigmoid(z) - y)
        loss = float(np.sum(sw * (np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * c @ c / len(y))
        return loss, np.concatenate([X.T @ r + l2 * c / len(y), [r.sum()]])

    res = minimize(loss_grad, np.concatenate([np.full(m, 1.0 / m), [0.0]]), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * m + [(None, None)])
    c = np.clip(res.x[:m], 0.0, None) if np.isfinite(res.x).all() else np.zeros(m)
    c[c < 1e-6 * max(c.max(), 1e-12)] = 0.0
    return c / c.sum() if c.sum() > 0 else None


def fit_weights(val_member_probs: pd.DataFrame, labels, method: str = "log_loss",
                shrink: float = 0.0) -> dict[str, float]:
    """Member weights (>= 0, sum 1) fitted on VALIDATION video-level member probabilities.

    `val_member_probs`: one row per validation video, one column of P(fake) per member (the
    members' frame or clip probabilities averaged per video, as `predict` does); `labels` 1 = fake.

    method="log_loss" (default): the weights on the probability simplex that minimise the log-loss
    (maximise the likelihood) of the weighted mean sum_j w_j p_j — exactly the score the ensemble
    reports, so the fitted weights optimise what is used. The negative log-likelihood of a linear
    mixture is convex in w, so SLSQP from equal weights finds the global optimum; a member that adds
    nothing gets weight 0, and a member better everywhere takes the weight. Accuracy-based criteria
    (AUC, balanced accuracy) are piecewise constant in w and give no usable gradient. If the solver
    fails, it falls back to method="auc". Log-loss judges calibration as well as ranking: a member
    whose probabilities are far off (e.g. mostly < 0.5 on a validation set of fakes) is down-weighted
    even with a good AUC — right for a mean of raw probabilities, which that member would pull off —
    so look at the members' validation AUC and log-loss (`fit_ensemble(...)["members"]`) before
    trusting the weights of a small validation set; method="auc" ignores calibration.
    method="logit": weights for the "logit" combination (a weighted mean of the members' log-odds):
    the non-negative coefficients of a class-balanced logistic regression of the label on the members'
    validation log-odds (small L2 penalty), scaled to sum 1 — the scale goes into the temperature that
    `fit_ensemble` fits next. Log-odds voting lets a specialist that is sure about its own artifact
    outvote members that see nothing; a mean of probabilities averages its vote away. Falls back to
    method="auc" when every coefficient is 0.
    method="auc": weights proportional to max(AUC_j - 0.5, 0), each member's skill above chance
    (equal weights if none beats chance). method="equal": 1 / M each.
    `shrink` in [0, 1] mixes the result with equal weights, w = (1 - shrink) w* + shrink / M: with
    a few hundred validation videos the log-loss optimum can put all weight on one member, and a
    little shrinkage keeps the ensemble's diversity. Raises ValueError when the labels hold one
    class (the fit would reward confidence, not discrimination).
    """
    if method not in WEIGHT_METHODS:
        raise ValueError(f"unknown weight method {method!r}; expected one of {WEIGHT_METHODS}")
    if not 0 <= shrink <= 1:
        raise ValueError(f"shrink must be in [0, 1], got {shrink}")
    P, y, names = _member_matrix(val_member_probs, labels)
    if not has_both_classes(y):
        raise ValueError(f"cannot fit ensemble weights on one class (all labels are {y[0]}); the validation "
                         "videos need real and fake ones")
    m = P.shape[1]
    if method == "equal":
        w = np.full(m, 1.0 / m)
    elif method == "auc":
        w = _auc_weights(P, y)
    elif method == "logit":
        w = _logit_weights(P, y)
        if w is None:
            w = _auc_weights(P, y)
    else:
        w = _log_loss_weights(P, y)
        if w is None:
            w = _auc_weights(P, y)
    w = (1 - shrink) * w + shrink / m
    return {n: float(v) for n, v in zip(names, w / w.sum())}


def ensemble_probs(member_probs: pd.DataFrame, weights: dict[str, float],
                   temperature: float | None = None, combination: str = "prob", *, has_audio=None,
                   audio_weights: dict[str, float] | None = None,
                   audio_temperature: float | None = None) -> pd.DataFrame:
    """Ensemble prob, prob_uncalibrated and uncertainty (weighted std) of video-level member
    probabilities (one column per member, as for `fit_weights`), as the Ensemble module computes
    them (`combination`: see COMBINATIONS). With `audio_weights`, the rows where `has_audio` (one
    bool per row) is True use them and `audio_temperature`. Returns a DataFrame with the input's
    index."""
    if combination not in COMBINATIONS:
        raise ValueError(f"unknown combination {combination!r}; expected one of {COMBINATIONS}")
    if audio_weights is not None and has_audio is not None:
        has = np.asarray(has_audio, dtype=bool).reshape(-1)
        if len(has) != len(member_probs):
            raise ValueError(f"has_audio has {len(has)} entries for {len(member_probs)} rows")
        plain = ensemble_probs(member_probs, weights, temperature, combination)
        audio = ensemble_probs(member_probs, audio_weights, audio_temperature, combination)
        rows = np.flatnonzero(has)
        plain.iloc[rows] = audio.iloc[rows].to_numpy()
        return plain
    names = [str(c) for c in member_probs.columns]
    w = np.array([normalise_weights(weights, names)[n] for n in names])
    P = np.stack([_metrics.check_probs(member_probs[c].to_numpy()) for c in member_probs.columns], axis=1)
    mean = P @ w
    unc = np.sqrt(np.clip(((P - mean[:, None]) ** 2) @ w, 0, None))
    if combination == "logit":
        z = _votes(P) @ w
        raw = _metrics.sigmoid(z)
        prob = _metrics.sigmoid(z / temperature) if temperature is not None else raw
    else:
        raw = mean
        prob = apply_temperature(mean, temperature) if temperature is not None else np.clip(mean, 0, 1)
    return pd.DataFrame({"prob": prob, "prob_uncalibrated": raw, "uncertainty": unc}, index=member_probs.index)


def member_video_probs(ens: Ensemble, table: pd.DataFrame, cache, batch_size: int = 32, num_workers: int = 0,
                       device: str | torch.device | None = None) -> pd.DataFrame:
    """Video-level P(fake) of every member over the crop cache, the input of `fit_weights`: one row per
    video of `table` that the cache holds, columns video_id, label and one per member (the mean over
    the video's frames for image members, over its clips for clip members, as `predict` does). The
    frames and clips are read by the training datasets with the evaluation transform; members of a
    trunk group share the trunk. Videos without clips have NaN for the clip members."""
    from torch.utils.data import DataLoader

    from interceptor_lib.data.datasets import ClipDataset, FrameDataset, build_transform

    device = torch.device(device) if device is not None else next(ens.parameters()).device
    dc = ens.data_config
    transform = build_transform(False, dc["mean"], dc["std"])
    kinds = {"image": [n for n in ens.names if ens.members[n].input_kind == "image"],
             "clip": [n for n in ens.names if ens.members[n].input_kind == "clip"]}
    parts, labels = [], {}
    was_training = ens.training
    ens.eval()
    try:
        for kind, names in kinds.items():
            if not names:
                continue
            ds = (FrameDataset if kind == "image" else ClipDataset)(table, cache, transform)
            labels.update(zip(ds.table["video_id"], ds.table["label"].astype(int)))
            loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
            rows: dict[str, list] = {"video_id": [], **{n: [] for n in names}}
            with torch.inference_mode():
                for b in loader:
                    x = {k: v.to(device) for k, v in b.items() if k in ("image", "clip", "audio", "has_audio")}
                    for n, p in ens.run_members(x, names).items():
                        rows[n] += p.float().cpu().tolist()
                    rows["video_id"] += list(b["video_id"])
            parts.append(pd.DataFrame(rows).groupby("video_id", sort=True).mean())
    finally:
        ens.train(was_training)
    out = pd.concat(parts, axis=1) if parts else pd.DataFrame()
    out = out.reindex(columns=ens.names)
    out.insert(0, "label", [labels[v] for v in out.index])
    return out.rename_axis("video_id").reset_index()


def choose_threshold(labels, ensemble_probs_, rule: str = "balanced_accuracy") -> float:
    """Decision threshold on VALIDATION ensemble probabilities (evaluation.metrics.choose_threshold:
    Youden's J by default). Choose it on the probabilities the ensemble will report (after the
    temperature when one is used), then apply it unchanged to test and to `predict`."""
    return _metrics.choose_threshold(labels, ensemble_probs_, rule)


def _combination(method: str) -> str:
    """The combination a weight method's weights are for: "logit" for method="logit", else "prob"."""
    return "logit" if method == "logit" else "prob"


def _fit_set(P: pd.DataFrame, y: np.ndarray, method: str, shrink: float, calibrate: bool,
             prior: dict[str, float] | None = None) -> tuple[dict, float | None]:
    """One weight set and its temperature, fitted on the validation rows P (labels y); with `prior`
    (the weights fitted on all videos) the set is n / (n + AUDIO_PRIOR_VIDEOS) its own fit and the
    rest the prior."""
    weights = fit_weights(P, y, method, shrink)
    if prior is not None:
        own = len(y) / (len(y) + AUDIO_PRIOR_VIDEOS)
        weights = {n: own * w + (1 - own) * prior[n] for n, w in weights.items()}
    raw = ensemble_probs(P, weights, combination=_combination(method))["prob_uncalibrated"].to_numpy()
    return weights, (fit_temperature(raw, y) if calibrate else None)


def fit_ensemble(val_member_probs: pd.DataFrame, labels, method: str = "logit", rule: str = "balanced_accuracy",
                 calibrate: bool = True, shrink: float = 0.0, has_audio=None,
                 min_audio: int = MIN_AUDIO_VAL) -> dict:
    """Everything `save_ensemble_config` needs, fitted on validation only: weights (`fit_weights`),
    a temperature of the ensemble prob (`fit_temperature`, when `calibrate`), and the threshold
    (`choose_threshold`) on the calibrated validation prob. method="logit" gives the "logit"
    combination, the other methods "prob".

    `has_audio` (one bool per validation video, optional): when the videos with audio and those
    without each hold at least `min_audio` real and `min_audio` fake videos, each kind gets its own
    weights and temperature, fitted on its videos and shrunk towards the fit on all of them (see the
    module docstring); the threshold is chosen on the calibrated probs of all of them together.

    Returns {"weights", "temperature", "combination", "threshold", "audio": {"weights",
    "temperature", "n_real", "n_fake"} or None, "audio_note": why there is no audio set (or ""),
    "val": the ensemble's validation metrics at that threshold, "members": each member's
    validation auc, log_loss and weight}."""
    y = check_labels(labels)
    combination = _combination(method)
    audio, note, has = None, "one weight set for all inputs (no has_audio given)", None
    if has_audio is not None:
        note = ""
        has = np.asarray(has_audio, dtype=bool).reshape(-1)
        if len(has) != len(y):
            raise ValueError(f"has_audio has {len(has)} entries for {len(y)} validation videos")
        counts = {kind: (int((y[m] == 0).sum()), int((y[m] == 1).sum()))
                  for kind, m in (("with", has), ("without", ~has))}
        short = [f"{kind} audio: {r} real, {f} fake" for kind, (r, f) in counts.items() if min(r, f) < min_audio]
        if short:
            note = (f"one weight set for all inputs: a set for inputs with audio needs at least {min_audio} real and "
                    f"{min_audio} fake validation videos with audio and as many without ({'; '.join(short)})")
    if has is None or note:
        weights, temperature = _fit_set(val_member_probs, y, method, shrink, calibrate)
        kwargs = {}
    else:
        pooled = fit_weights(val_member_probs, y, method, shrink)
        weights, temperature = _fit_set(val_member_probs[~has], y[~has], method, shrink, calibrate, pooled)
        a_weights, a_temperature = _fit_set(val_member_probs[has], y[has], method, shrink, calibrate, pooled)
        audio = {"weights": a_weights, "temperature": a_temperature,
                 "n_real": int((y[has] == 0).sum()), "n_fake": int((y[has] == 1).sum())}
        kwargs = {"has_audio": has, "audio_weights": a_weights, "audio_temperature": a_temperature}
    prob = ensemble_probs(val_member_probs, weights, temperature, combination, **kwargs)["prob"].to_numpy()
    threshold = choose_threshold(y, prob, rule)
    y, s = check_binary(y, prob)
    members = {str(c): {"auc": float(roc_auc_score(y, val_member_probs[c])),
                        "log_loss": float(log_loss(y, np.clip(val_member_probs[c], EPS, 1 - EPS), labels=[0, 1])),
                        "weight": weights[str(c)],
                        **({"audio_weight": audio["weights"][str(c)]} if audio else {})}
               for c in val_member_probs.columns}
    return {"weights": weights, "temperature": temperature, "threshold": threshold, "combination": combination,
            "audio": audio, "audio_note": note, "val": _metrics.binary_metrics(y, s, threshold), "members": members}


# ----------------------------------------------------------------------------------------- saving, loading

def ensemble_path(output_dir: str | Path) -> Path:
    """Where the ensemble config lives by convention: `<output_dir>/ensemble/ensemble.json`."""
    return Path(output_dir) / ENSEMBLE_DIR / ENSEMBLE_FILE


def _plain(obj):
    if is_dataclass(obj):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_ensemble_config(path: str | Path, members: dict[str, str | Path], weights: dict[str, float] | None,
                         threshold: float, temperature: float | None = None, metadata: dict | None = None,
                         preprocess=None, combination: str = "prob", audio: dict | None = None) -> Path:
    """Write the ensemble config JSON (atomically) and return its path.

    `path`: the JSON file, or an output dir (then `<path>/ensemble/ensemble.json`). `members`: name ->
    checkpoint folder (the best of its last stage, see `find_member_checkpoints`). Paths are stored
    relative to the JSON's folder when possible, so a whole output folder can be moved or downloaded.
    `weights` (None = equal) and `threshold` (on the reported, temperature-scaled prob) come from
    validation (`fit_ensemble`). `preprocess`: the PreprocessParams of the run (pass
    `params.preprocess`), so that `predict` crops faces exactly as training did without the params
    file. `metadata`: anything else worth keeping (profile, validation metrics, ...). `audio`: the
    weight set for inputs with audio, {"weights", "temperature"} (`fit_ensemble(...)["audio"]`), or
    None for one set.
    """
    path = Path(path)
    if path.suffix != ".json":
        path = ensemble_path(path)
    if not members:
        raise EnsembleError("save_ensemble_config needs at least one member")
    names = list(members)
    w = normalise_weights(weights, names)
    if not 0 <= float(threshold) <= 1:
        raise EnsembleError(f"threshold must be a probability in [0, 1], got {threshold}")
    if temperature is not None and not (np.isfinite(temperature) and temperature > 0):
        raise EnsembleError(f"temperature must be a positive number or None, got {temperature}")
    if combination not in COMBINATIONS:
        raise EnsembleError(f"unknown combination {combination!r}; expected one of {COMBINATIONS}")
    if audio is not None:
        a_temp = audio.get("temperature")
        if a_temp is not None and not (np.isfinite(a_temp) and a_temp > 0):
            raise EnsembleError(f"audio temperature must be a positive number or None, got {a_temp}")
        audio = {"weights": normalise_weights(audio.get("weights"), names),
                 "temperature": None if a_temp is None else float(a_temp)}
    path.parent.mkdir(parents=True, exist_ok=True)
    from interceptor_lib.models import model_entry

    entries = {}
    for name, ckpt in members.items():
        ckpt = Path(ckpt)
        try:
            stored = os.path.relpath(ckpt.resolve(), path.parent.resolve())
        except ValueError:  # another drive (Windows)
            stored = str(ckpt.resolve())
        try:
            kind = model_entry(name).input_kind
        except InterceptorError:
            kind = None
        entries[name] = {"checkpoint": stored, "weight": w[name], "input_kind": kind}
    doc = {"format": ENSEMBLE_FORMAT, "library_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "members": entries, "threshold": float(threshold),
           "temperature": None if temperature is None else float(temperature),
           "combination": combination,  # members -> ensemble: see COMBINATIONS
           "audio": audio,  # the weight set and temperature for inputs with audio; null: `members` serve all
           "aggregation": "mean",  # frames / clips -> video by the mean of each member's P(fake)
           "preprocess": _plain(preprocess) if preprocess is not None else None,
           "metadata": _plain(metadata or {})}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
    return path


def read_ensemble_config(run_dir_or_json: str | Path) -> tuple[dict, Path]:
    """The ensemble config dict and its path, from the JSON file or an output dir holding
    `ensemble/ensemble.json`. Raises EnsembleError (naming the notebook to run) when it is absent."""
    p = Path(run_dir_or_json)
    path = p if p.suffix == ".json" else ensemble_path(p)
    if not path.is_file():
        where = f"{p} is not a folder" if p.suffix != ".json" and not p.is_dir() else f"{path} does not exist"
        raise EnsembleError(
            f"no ensemble config: {where}. The ensemble's weights and threshold are fitted on validation by "
            f"notebook {EVALUATION_NOTEBOOK} (it writes <output_dir>/{ENSEMBLE_DIR}/{ENSEMBLE_FILE}); run it for "
            "this profile first, or pass --run the output folder of a run that has it")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EnsembleError(f"{path} is not valid JSON: {e}") from e
    if doc.get("format") != ENSEMBLE_FORMAT or not isinstance(doc.get("members"), dict) or not doc["members"]:
        raise EnsembleError(f"{path} is not an ensemble config (format {ENSEMBLE_FORMAT} with members); "
                            "write it with interceptor_lib.ensemble.save_ensemble_config")
    return doc, path


def resolve_checkpoint(stored: str | Path, base: Path) -> Path:
    """A checkpoint path from a config or done.json, resolved against `base` (paths.resolve_stored_path)."""
    from interceptor_lib.layout import resolve_stored_path

    return resolve_stored_path(stored, base)


def load_member(checkpoint: str | Path, device: str | torch.device = "cpu") -> DetectorBase:
    """Rebuild a model from a training checkpoint: `create_model(config["model_name"], **config["model"])`
    without ImageNet weights (the checkpoint holds every weight), then its state dict; eval mode.
    A stage's fp16 weights-only export (`best-fp16/`, model name and config in its metadata) works too."""
    from interceptor_lib.models import create_model
    from interceptor_lib.training.checkpoint import INDEX, load_checkpoint

    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise EnsembleError(f"checkpoint {checkpoint} does not exist")
    state = load_checkpoint(checkpoint, map_location="cpu")
    config = state.get("config") or {}
    name, model_config = config.get("model_name"), config.get("model")
    if not name:  # a weights-only export keeps them in the index's metadata
        meta = json.loads((checkpoint / INDEX).read_text()).get("metadata") or {}
        name, model_config = meta.get("model_name"), meta.get("model_config")
    if "model" not in state or not name:
        raise EnsembleError(f"{checkpoint} is not a training checkpoint: it needs 'model' weights and a 'config' "
                            "with 'model_name' and 'model' (as the trainer saves them)")
    kwargs = dict(model_config or {})
    if "pretrained" in kwargs:  # the checkpoint overwrites every weight: never look for ImageNet files
        kwargs.update(pretrained=False, weights=None)
    model = create_model(name, **kwargs)
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def load_ensemble(run_dir_or_json: str | Path, device: str | torch.device = "cpu",
                  share_trunk: bool = True) -> Ensemble:
    """The ensemble described by an ensemble config (a JSON file, or an output dir holding
    `ensemble/ensemble.json`), each member rebuilt from its checkpoint, in eval mode on `device`.
    The returned Ensemble carries `threshold`, `temperature`, and `config` (the JSON document)
    and `config_path`."""
    doc, path = read_ensemble_config(run_dir_or_json)
    members, weights = {}, {}
    for name, entry in doc["members"].items():
        ckpt = resolve_checkpoint(entry["checkpoint"], path.parent)
        if not ckpt.exists():
            raise EnsembleError(f"{path}: checkpoint of member {name!r} not found at {ckpt}")
        model = load_member(ckpt, device)
        if model.model_name != name:
            raise EnsembleError(f"{path}: member {name!r} points at a checkpoint of model "
                                f"{model.model_name!r} ({ckpt})")
        members[name], weights[name] = model, float(entry.get("weight", 1.0))
    combination = doc.get("combination", "prob")  # configs written before it existed combined probabilities
    if combination not in COMBINATIONS:
        raise EnsembleError(f"{path}: unknown combination {combination!r}; expected one of {COMBINATIONS}")
    audio = doc.get("audio")  # absent in configs written before it existed
    if audio is not None and (not isinstance(audio, dict) or not isinstance(audio.get("weights"), dict)):
        raise EnsembleError(f"{path}: 'audio' must be null or "
                            "{\"weights\": {member: weight}, \"temperature\": ...}")
    try:
        ens = Ensemble(members, weights, share_trunk=share_trunk, temperature=doc.get("temperature"),
                       threshold=float(doc["threshold"]), combination=combination,
                       audio_weights=audio["weights"] if audio else None,
                       audio_temperature=audio.get("temperature") if audio else None)
    except EnsembleError as e:
        raise EnsembleError(f"{path}: {e}") from e
    ens.config, ens.config_path = doc, path
    return ens.to(device).eval()


def find_member_checkpoints(params_or_output_dir, models: list[str] | None = None) -> dict[str, Path]:
    """Each model's best checkpoint of its LAST finished stage (stage4 > stage3 > stage2 > stage1),
    read from `<output_dir>/runs/<model>/<stage>/done.json` ("best"; its fp16 "export" when the full
    checkpoint no longer exists). Given params, also looks in `train.previous_outputs` (earlier
    sessions' outputs, paths re-rooted) and defaults `models` to `train.models`; given a folder,
    defaults to every model with a runs/ folder. Raises EnsembleError naming a model without any
    finished stage."""
    from interceptor_lib.config.schema import STAGE_NAMES
    from interceptor_lib.layout import RunPaths

    if isinstance(params_or_output_dir, (str, Path)):
        paths = RunPaths.at(params_or_output_dir)
        if models is None:
            runs = paths.runs
            models = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    else:
        paths = RunPaths.of(params_or_output_dir)
        models = list(params_or_output_dir.train.models) if models is None else models
    if not models:
        raise EnsembleError(f"no trained models under {paths.runs}; run the training notebooks "
                            f"({', '.join(STAGE_NAMES.values())}) first")
    found: dict[str, Path] = {}
    for model in models:
        for stage in reversed(list(STAGE_NAMES)):
            info, _ = paths.find_done(model, stage)
            if info is not None and info.get("best") and info["best"] != "None":
                path = Path(info["best"])
                export = (info.get("export") or {}).get("path")
                if not path.exists() and export:  # the full checkpoint was removed; its fp16 export is kept
                    path = Path(export)
                found[model] = path
                break
        if model not in found:
            profile = getattr(params_or_output_dir, "profile", None)
            which = (f" of profile {profile!r}" if profile else "")
            pick = (" (or choose the profile that trained it: the notebook's `profile` parameter, "
                    "$INTERCEPTOR_PROFILE, or ./run_all.sh <profile>)" if profile else "")
            raise EnsembleError(f"model {model!r}{which} has no finished training stage (no done.json with a best "
                                f"checkpoint under {' or '.join(str(RunPaths.at(r).runs / model) for r in paths.roots)}); "
                                f"run notebook {STAGE_NAMES['stage1']} for it first{pick}")
    return found
