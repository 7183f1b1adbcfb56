"""Fitting the ensemble on VALIDATION video-level member probabilities: the member weights
(`fit_weights`), a temperature and the decision threshold (`choose_threshold`), or all of them at once
(`fit_ensemble`, whose result `store.save_ensemble_config` writes). `ensemble_probs` combines
video-level member probabilities as the Ensemble module does, in numpy.

By default (`fit_ensemble(method="logit")`) the members vote in log-odds: P(fake) = sigmoid(sum_j w_j
logit(p_j) / T), the weights being the non-negative coefficients of a logistic regression on the
validation log-odds; `combination="prob"` (the other weight methods) takes the weighted mean of the
probabilities instead.

The soft OR. Specialists each see one family of artifacts, so a fake is often shown by one member
alone; the weighted mean of the votes averages that member away. `fit_ensemble` therefore also
chooses a vote temperature tau (`combine.soft_or_vote`: tau log sum_j w_j exp(logit(p_j) / tau),
the weighted mean in the limit tau -> infinity, the most confident member as tau -> 0) from
VOTE_TAUS, the one whose ensemble ranks the validation videos best on the dataset where it ranks them
worst (`choose_vote_tau`): a detector is judged by the dataset it does worst on, and the OR matters
exactly where one specialist alone sees the fakes (e.g. DFDC's audio-only fakes, which only the
audio-visual member hears). The plain mean (tau None) is kept unless a sharper vote does better.

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

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.metrics import log_loss, roc_auc_score

import torch

from interceptor_lib.ensemble.combine import COMBINATIONS, VOTE_EPS, check_vote_tau, normalise_weights, soft_or_vote
from interceptor_lib.metrics import scores as _metrics
from interceptor_lib.metrics.calibration import apply_temperature, fit_temperature
from interceptor_lib.metrics.scores import EPS, check_binary, check_labels, has_both_classes

WEIGHT_METHODS = ("logit", "log_loss", "auc", "equal")
#: fewest validation videos of each class with audio (and of each without) for a weight set of their own:
#: a set and temperature fitted to a handful of real videos follow those videos rather than the inputs
#: with audio, and then score worse than the one set fitted on all videos (the measurement behind the
#: number is in the layered-package log under docs/)
MIN_AUDIO_VAL = 20
#: each kind's weights are its own fit mixed with the fit on all videos as n : AUDIO_PRIOR_VIDEOS
#: (n = its validation videos): a few dozen videos with audio pull their set only part of the way
AUDIO_PRIOR_VIDEOS = 50
#: the vote temperatures `choose_vote_tau` tries, from the weighted mean of the log-odds (None) to a vote
#: close to the most confident member's (at 0.2 a vote 1 logit below the largest adds e^-5 of its weight)
VOTE_TAUS = (None, 2.0, 1.0, 0.5, 0.3, 0.2)


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
                   audio_temperature: float | None = None, vote_tau: float | None = None) -> pd.DataFrame:
    """Ensemble prob, prob_uncalibrated and uncertainty (weighted std) of video-level member
    probabilities (one column per member, as for `fit_weights`), as the Ensemble module computes
    them (`combination`: see COMBINATIONS; `vote_tau`: the soft OR of the log-odds votes, see
    `combine.soft_or_vote`). With `audio_weights`, the rows where `has_audio` (one bool per row) is
    True use them and `audio_temperature`. Returns a DataFrame with the input's index."""
    if combination not in COMBINATIONS:
        raise ValueError(f"unknown combination {combination!r}; expected one of {COMBINATIONS}")
    check_vote_tau(vote_tau, combination)
    if audio_weights is not None and has_audio is not None:
        has = np.asarray(has_audio, dtype=bool).reshape(-1)
        if len(has) != len(member_probs):
            raise ValueError(f"has_audio has {len(has)} entries for {len(member_probs)} rows")
        plain = ensemble_probs(member_probs, weights, temperature, combination, vote_tau=vote_tau)
        audio = ensemble_probs(member_probs, audio_weights, audio_temperature, combination, vote_tau=vote_tau)
        rows = np.flatnonzero(has)
        plain.iloc[rows] = audio.iloc[rows].to_numpy()
        return plain
    names = [str(c) for c in member_probs.columns]
    w = np.array([normalise_weights(weights, names)[n] for n in names])
    P = np.stack([_metrics.check_probs(member_probs[c].to_numpy()) for c in member_probs.columns], axis=1)
    mean = P @ w
    unc = np.sqrt(np.clip(((P - mean[:, None]) ** 2) @ w, 0, None))
    if combination == "logit":
        z = soft_or_vote(torch.from_numpy(_votes(P)), torch.from_numpy(w), vote_tau).numpy()
        raw = _metrics.sigmoid(z)
        prob = _metrics.sigmoid(z / temperature) if temperature is not None else raw
    else:
        raw = mean
        prob = apply_temperature(mean, temperature) if temperature is not None else np.clip(mean, 0, 1)
    return pd.DataFrame({"prob": prob, "prob_uncalibrated": raw, "uncertainty": unc}, index=member_probs.index)


def choose_threshold(labels, ensemble_probs_, rule: str = "balanced_accuracy") -> float:
    """Decision threshold on VALIDATION ensemble probabilities (`metrics.scores.choose_threshold`:
    Youden's J by default). Choose it on the probabilities the ensemble will report (after the
    temperature when one is used), then apply it unchanged to test and to `predict`."""
    return _metrics.choose_threshold(labels, ensemble_probs_, rule)


def _combination(method: str) -> str:
    """The combination a weight method's weights are for: "logit" for method="logit", else "prob"."""
    return "logit" if method == "logit" else "prob"


def choose_vote_tau(member_probs: pd.DataFrame, labels, weights: dict[str, float], groups=None,
                    taus=VOTE_TAUS) -> tuple[float | None, dict[str, float]]:
    """The vote temperature of the "logit" combination (`combine.soft_or_vote`), chosen on VALIDATION:
    of `taus`, in order, the first whose ensemble reaches the highest worst-group AUC, i.e. the
    lowest AUC over the `groups` (one label per video, e.g. its dataset) that hold both classes;
    the pooled AUC when `groups` is None or no group holds both classes. Taking the first of equals
    keeps the plain weighted mean (None, first in VOTE_TAUS) unless a sharper vote ranks better.
    Returns (tau, {str(tau): that AUC})."""
    y = check_labels(labels)
    masks = []
    if groups is not None:
        g = np.asarray(groups).reshape(-1)
        if len(g) != len(y):
            raise ValueError(f"{len(g)} groups for {len(y)} validation videos")
        masks = [g == k for k in dict.fromkeys(g.tolist()) if has_both_classes(y[g == k])]
    masks = masks or [np.ones(len(y), dtype=bool)]
    taus, scores = list(taus), {}
    for tau in taus:
        raw = ensemble_probs(member_probs, weights, combination="logit", vote_tau=tau)["prob_uncalibrated"].to_numpy()
        scores[str(tau)] = min(float(roc_auc_score(y[m], raw[m])) for m in masks)
    best = max(range(len(taus)), key=lambda i: (round(scores[str(taus[i])], 12), -i))
    return taus[best], scores


def _fit_set(P: pd.DataFrame, y: np.ndarray, method: str, shrink: float, calibrate: bool,
             prior: dict[str, float], own_fit: bool, vote_tau: float | None = None) -> tuple[dict, float | None]:
    """One weight set and its temperature on the validation rows P (labels y). `prior`: the weights
    fitted on all videos; with `own_fit` the set is n / (n + AUDIO_PRIOR_VIDEOS) its own fit on P and
    the rest the prior, else the prior itself (P are all the videos)."""
    weights = prior
    if own_fit:
        own = len(y) / (len(y) + AUDIO_PRIOR_VIDEOS)
        weights = {n: own * w + (1 - own) * prior[n] for n, w in fit_weights(P, y, method, shrink).items()}
    raw = ensemble_probs(P, weights, combination=_combination(method), vote_tau=vote_tau)["prob_uncalibrated"].to_numpy()
    return weights, (fit_temperature(raw, y) if calibrate else None)


def fit_ensemble(val_member_probs: pd.DataFrame, labels, method: str = "logit", rule: str = "balanced_accuracy",
                 calibrate: bool = True, shrink: float = 0.0, has_audio=None,
                 min_audio: int = MIN_AUDIO_VAL, groups=None, vote_taus=VOTE_TAUS) -> dict:
    """Everything `save_ensemble_config` needs, fitted on validation only: weights (`fit_weights`),
    a temperature of the ensemble prob (`fit_temperature`, when `calibrate`), and the threshold
    (`choose_threshold`) on the calibrated validation prob. method="logit" gives the "logit"
    combination, the other methods "prob".

    `has_audio` (one bool per validation video, optional): when the videos with audio and those
    without each hold at least `min_audio` real and `min_audio` fake videos, each kind gets its own
    weights and temperature, fitted on its videos and shrunk towards the fit on all of them (see the
    module docstring); the threshold is chosen on the calibrated probs of all of them together.

    method="logit" also chooses the vote temperature (`choose_vote_tau` over `vote_taus`, on the
    weights fitted on all validation videos, judged per `groups`, e.g. each video's dataset); pass
    `vote_taus=(None,)` for the plain weighted mean of the votes.

    Returns {"weights", "temperature", "combination", "vote_tau", "vote_tau_scores" (the worst-group
    validation AUC of each tau tried; {} for the "prob" combination), "threshold", "audio": {"weights",
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
    pooled = fit_weights(val_member_probs, y, method, shrink)
    vote_tau, tau_scores = (choose_vote_tau(val_member_probs, y, pooled, groups, vote_taus)
                            if combination == "logit" else (None, {}))
    if has is None or note:
        weights, temperature = _fit_set(val_member_probs, y, method, shrink, calibrate, pooled, False, vote_tau)
        kwargs = {}
    else:
        weights, temperature = _fit_set(val_member_probs[~has], y[~has], method, shrink, calibrate, pooled, True,
                                        vote_tau)
        a_weights, a_temperature = _fit_set(val_member_probs[has], y[has], method, shrink, calibrate, pooled, True,
                                            vote_tau)
        audio = {"weights": a_weights, "temperature": a_temperature,
                 "n_real": int((y[has] == 0).sum()), "n_fake": int((y[has] == 1).sum())}
        kwargs = {"has_audio": has, "audio_weights": a_weights, "audio_temperature": a_temperature}
    prob = ensemble_probs(val_member_probs, weights, temperature, combination, vote_tau=vote_tau,
                          **kwargs)["prob"].to_numpy()
    threshold = choose_threshold(y, prob, rule)
    y, s = check_binary(y, prob)
    members = {str(c): {"auc": float(roc_auc_score(y, val_member_probs[c])),
                        "log_loss": float(log_loss(y, np.clip(val_member_probs[c], EPS, 1 - EPS), labels=[0, 1])),
                        "weight": weights[str(c)],
                        **({"audio_weight": audio["weights"][str(c)]} if audio else {})}
               for c in val_member_probs.columns}
    return {"weights": weights, "temperature": temperature, "threshold": threshold, "combination": combination,
            "vote_tau": vote_tau, "vote_tau_scores": tau_scores, "audio": audio, "audio_note": note, "val": _metrics.binary_metrics(y, s, threshold), "members": members}
