"""Calibration of P(fake): reliability table, expected calibration error, temperature scaling.

Calibration here is of the fake probability itself (the class-1 reliability diagram of
scikit-learn's `calibration_curve`, equal-width bins), not of the top-label confidence: a detector
that says 0.8 should be right about 80 % of the time that it says so.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) divides the
fake logit by one scalar T > 0 fitted on validation by minimising the negative log-likelihood. For the
two-logit heads of `interceptor_lib.models` the fake logit is ``logits[:, 1] - logits[:, 0]``, so
dividing it by T is the same as dividing both logits by T. T > 1 softens an overconfident model; the
ranking of scores, hence AUC, AP and EER, does not change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from interceptor_lib.metrics.scores import (check_binary, check_labels, check_probs, has_both_classes,
                                                logit, sigmoid)

#: Search interval of log T: T in [e^-5, e^5] ~ [0.007, 148], far wider than any useful temperature.
LOG_T_BOUNDS = (-5.0, 5.0)


def reliability(labels, scores, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table over `n_bins` equal-width bins of P(fake) on [0, 1].

    Columns: bin, bin_low, bin_high, n, mean_score (mean predicted P(fake)), fake_rate (observed share
    of fakes), gap (fake_rate - mean_score; < 0 where the model over-predicts fake). Every bin is a row;
    empty bins have n = 0 and NaN rates. Bins are assigned as in `sklearn.calibration.calibration_curve`
    (right-closed, the first bin also holds 0), so its non-empty rows equal that function's output.
    """
    y, s = check_binary(labels, scores)
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_id = np.searchsorted(edges[1:-1], s)
    n = np.bincount(bin_id, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(bin_id, weights=s, minlength=n_bins) / n
        fake_rate = np.bincount(bin_id, weights=y, minlength=n_bins) / n
    return pd.DataFrame({"bin": np.arange(n_bins), "bin_low": edges[:-1], "bin_high": edges[1:], "n": n,
                         "mean_score": mean_score, "fake_rate": fake_rate, "gap": fake_rate - mean_score})


def ece(labels, scores, n_bins: int = 10) -> float:
    """Expected calibration error: sum over equal-width bins of (bin share) * |fake_rate - mean_score|
    (Naeini et al. 2015; Guo et al. 2017), on P(fake) as in `reliability`."""
    table = reliability(labels, scores, n_bins)
    filled = table[table["n"] > 0]
    return float((filled["n"] / filled["n"].sum() * filled["gap"].abs()).sum())


def _as_logits(values, kind: str) -> np.ndarray:
    """Fake logits from probabilities (checked, clipped) or from logits (checked finite)."""
    if kind == "prob":
        return logit(check_probs(values))
    if kind == "logit":
        z = np.asarray(values, dtype=np.float64)
        if z.ndim != 1 or len(z) == 0:
            raise ValueError(f"logits must be a non-empty 1-D sequence, got shape {z.shape}")
        if not np.isfinite(z).all():
            raise ValueError("logits contain NaN or infinite values")
        return z
    raise ValueError(f"unknown kind {kind!r}; expected 'prob' (P(fake) in [0, 1]) or 'logit' (fake logit)")


def fit_temperature(val_values, val_labels, kind: str = "prob") -> float:
    """Temperature T > 0 minimising the validation NLL of sigmoid(z / T), z the fake logit.

    `val_values` are validation probabilities P(fake) (`kind="prob"`, clipped to [1e-7, 1 - 1e-7]
    before the logit) or fake logits (`kind="logit"`). The search is over log T (bounded, scipy's
    `minimize_scalar`), which keeps T positive. Fit on validation only, then `apply_temperature` to
    test. Raises ValueError for one class: its NLL keeps falling as T goes to 0 or infinity.
    """
    y = check_labels(val_labels)
    z = _as_logits(val_values, kind)
    if len(z) != len(y):
        raise ValueError(f"{len(z)} validation values for {len(y)} labels")
    if not has_both_classes(y):
        raise ValueError(f"cannot fit a temperature on one class (all labels are {y[0]}); "
                         "the validation predictions need real and fake videos")
    sign = 2.0 * y - 1.0  # +1 fake, -1 real: NLL = mean log(1 + exp(-sign * z / T))

    def nll(log_t: float) -> float:
        return float(np.logaddexp(0.0, -sign * z * np.exp(-log_t)).mean())

    result = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded")
    return float(np.exp(result.x))


def apply_temperature(probs, temperature: float, kind: str = "prob") -> np.ndarray:
    """Calibrated P(fake) = sigmoid(z / T) for probabilities (`kind="prob"`) or fake logits
    (`kind="logit"`). Returns a new array; the input is not modified."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    return sigmoid(_as_logits(probs, kind) / temperature)
