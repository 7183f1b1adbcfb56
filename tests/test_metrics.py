"""Evaluation metrics: parity with scikit-learn, EER on hand-computed cases, thresholds chosen on
validation only, aggregation by explicit video id without mutating the input, the cluster
bootstrap, calibration and temperature scaling. Synthetic data only; the file runs in seconds."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from sklearn.calibration import calibration_curve
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score, f1_score,
                             log_loss, recall_score, roc_auc_score, roc_curve)

from interceptor_lib.metrics import (aggregate_videos, apply_temperature, binary_metrics, bootstrap_auc_ci,
                                        choose_threshold, ece, eer, evaluate, fit_temperature,
                                        per_group_metrics, reliability)

SEEDS = (0, 1, 2, 3)


def random_predictions(seed: int, n: int = 300, ties: bool = False):
    """Labels and informative but imperfect P(fake) scores."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, n), 0.01, 0.99)
    return y, (np.clip(np.round(s, 1), 0.1, 0.9) if ties else s)


def frame_table(seed: int = 0, n_videos: int = 40, n_frames: int = 10, fake_shift: float = 0.1,
                frame_noise: float = 0.01) -> pd.DataFrame:
    """Frames of videos whose frames are near-duplicates (one video score plus small noise)."""
    rng = np.random.default_rng(seed)
    label = np.arange(n_videos) % 2
    video_score = np.clip(0.45 + fake_shift * label + rng.normal(0, 0.2, n_videos), 0.02, 0.98)
    vid = np.repeat(np.arange(n_videos), n_frames)
    return pd.DataFrame({
        "video_id": [f"ffpp/{i:03d}" for i in vid],
        "label": label[vid],
        "prob": np.clip(video_score[vid] + rng.normal(0, frame_noise, len(vid)), 0, 1),
        "method": np.where(label[vid] == 1, "Deepfakes", "real"),
        "dataset": "ffpp",
        "frame_index": np.tile(np.arange(n_frames), n_videos),
    })


# ---------------------------------------------------------------------------- binary metrics

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.5, 0.37])
def test_binary_metrics_match_sklearn(seed, threshold):
    y, s = random_predictions(seed, ties=seed % 2 == 1)
    m = binary_metrics(y, s, threshold)
    pred = (s >= threshold).astype(int)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["ap"] == pytest.approx(average_precision_score(y, s))
    assert m["log_loss"] == pytest.approx(log_loss(y, s))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["tpr"] == pytest.approx(recall_score(y, pred))
    assert m["tnr"] == pytest.approx(recall_score(y, pred, pos_label=0))
    assert (m["n"], m["n_fake"], m["n_real"]) == (len(y), y.sum(), len(y) - y.sum())
    assert m["predicted_fake_share"] == pytest.approx(pred.mean())
    assert m["actual_fake_share"] == pytest.approx(y.mean())
    assert m["threshold"] == threshold


def test_log_loss_clips_saturated_probabilities():
    m = binary_metrics([1, 0], [0.0, 1.0])  # both confidently wrong
    assert m["log_loss"] == pytest.approx(-np.log(1e-7))


def test_single_class_gives_nan_auc_without_error():
    y, s = np.ones(20, dtype=int), np.linspace(0.1, 0.9, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sklearn "only one class" warning leaks out either
        m = binary_metrics(y, s)
    assert np.isnan(m["auc"]) and np.isnan(m["ap"]) and np.isnan(m["eer"]) and np.isnan(m["tnr"])
    assert m["tpr"] == pytest.approx((s >= 0.5).mean())
    assert all(np.isnan(eer(y, s)))
    assert all(np.isnan(bootstrap_auc_ci(y, s, n_boot=20)))


@pytest.mark.parametrize("labels, scores, match", [
    ([0, 1, 1], [0.2, 0.8], "differ in length"),
    ([0, 2], [0.2, 0.8], "0 \\(real\\) or 1 \\(fake\\)"),
    ([0, 1], [0.2, 1.5], "in \\[0, 1\\]"),
    ([0, 1], [0.2, np.nan], "NaN"),
    ([], [], "non-empty"),
])
def test_invalid_inputs_raise_clear_errors(labels, scores, match):
    with pytest.raises(ValueError, match=match):
        binary_metrics(labels, scores)


def test_metrics_do_not_mutate_inputs():
    y, s = random_predictions(0)
    y0, s0 = y.copy(), s.copy()
    binary_metrics(y, s, 0.4)
    eer(y, s)
    bootstrap_auc_ci(y, s, n_boot=20)
    fit_temperature(s, y)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(s, s0)


# ---------------------------------------------------------------------------- EER and thresholds

def test_eer_perfect_separation_is_zero():
    rate, threshold = eer([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9])
    assert rate == 0.0
    assert 0.3 < threshold <= 0.7


def test_eer_identical_distributions_is_one_half():
    rng = np.random.default_rng(0)
    s = rng.random(20000)
    assert eer(rng.integers(0, 2, 20000), s)[0] == pytest.approx(0.5, abs=0.02)
    assert eer([0, 1] * 50, [0.5] * 100)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("labels, scores, expected_rate, expected_threshold", [
    # one of three reals (0.9) outranks the only fake (0.7): at t = 0.7 FNR = 0, FPR = 1/3; just
    # above it FNR = 1, FPR = 1/3. The rates cross at 1/3 on that vertical ROC segment.
    ([0, 0, 0, 1], [0.1, 0.5, 0.9, 0.7], 1 / 3, 0.7),
    # one of three fakes (0.9) is above the real (0.7); FNR stays 2/3 while FPR runs 0 -> 1
    ([0, 1, 1, 1], [0.7, 0.1, 0.5, 0.9], 2 / 3, 0.7),
])
def test_eer_hand_computed(labels, scores, expected_rate, expected_threshold):
    rate, threshold = eer(labels, scores)
    assert rate == pytest.approx(expected_rate)
    assert threshold == pytest.approx(expected_threshold)


@pytest.mark.parametrize("seed", SEEDS)
def test_eer_matches_the_common_brentq_formula(seed):
    y, s = random_predictions(seed, n=500)
    fpr, tpr, _ = roc_curve(y, s)
    reference = brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0, xtol=1e-12)
    assert eer(y, s)[0] == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_choose_threshold_maximises_balanced_accuracy(seed):
    y, s = random_predictions(seed, ties=True)
    t = choose_threshold(y, s)
    best = max(balanced_accuracy_score(y, s >= c) for c in np.unique(s))
    assert balanced_accuracy_score(y, s >= t) == pytest.approx(best)
    assert choose_threshold(y, s, rule="youden") == t
    assert choose_threshold(y, s, rule="eer") == eer(y, s)[1]


def test_choose_threshold_rejects_one_class_and_unknown_rule():
    with pytest.raises(ValueError, match="one class"):
        choose_threshold([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="unknown threshold rule"):
        choose_threshold([0, 1], [0.2, 0.9], rule="f1")


# ---------------------------------------------------------------------------- video aggregation

def test_aggregation_groups_by_id_not_position_and_keeps_input():
    table = frame_table(n_videos=6, n_frames=5)
    # interleave: row order alternates between videos, so any position-based grouping breaks
    shuffled = table.sample(frac=1.0, random_state=3)
    before = copy.deepcopy(shuffled)
    videos = aggregate_videos(shuffled)
    pd.testing.assert_frame_equal(shuffled, before)
    pd.testing.assert_frame_equal(videos, aggregate_videos(table))
    expected = table.groupby("video_id")["prob"].mean()
    np.testing.assert_allclose(videos.set_index("video_id")["prob"], expected.loc[videos["video_id"]])
    assert list(videos.columns) == ["video_id", "label", "prob", "n_frames", "method", "dataset"]
    assert (videos["n_frames"] == 5).all()
    assert videos.set_index("video_id").loc["ffpp/001", "method"] == "Deepfakes"


def test_logit_mean_averages_log_odds():
    table = pd.DataFrame({"video_id": ["a", "a", "b"], "label": [1, 1, 0], "prob": [0.5, 0.9, 0.2]})
    videos = aggregate_videos(table, how="logit_mean").set_index("video_id")
    assert videos.loc["a", "prob"] == pytest.approx(0.75)  # odds sqrt(1 * 9) = 3 -> 3 / 4
    assert videos.loc["b", "prob"] == pytest.approx(0.2)
    assert aggregate_videos(table).set_index("video_id").loc["a", "prob"] == pytest.approx(0.7)


def test_video_with_mixed_labels_raises_naming_it():
    table = pd.DataFrame({"video_id": ["ok", "ok", "celebdf/id3_0007", "celebdf/id3_0007"],
                          "label": [0, 0, 0, 1], "prob": [0.1, 0.2, 0.3, 0.4]})
    with pytest.raises(ValueError, match="celebdf/id3_0007"):
        aggregate_videos(table)


def test_aggregation_rejects_missing_columns_and_unknown_how():
    table = frame_table(n_videos=2, n_frames=2)
    with pytest.raises(ValueError, match="lacks columns"):
        aggregate_videos(table.drop(columns="label"))
    with pytest.raises(ValueError, match="how="):
        aggregate_videos(table, how="max")


# ---------------------------------------------------------------------------- bootstrap

def test_bootstrap_matches_resampling_with_sklearn():
    """The fast weighted Mann-Whitney AUC equals roc_auc_score on the same resamples (ties included)."""
    y, s = random_predictions(5, n=120, ties=True)
    rng = np.random.default_rng(7)
    reference = []
    for _ in range(200):
        idx = np.repeat(np.arange(len(y)), np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)))
        if 0 < y[idx].sum() < len(idx):
            reference.append(roc_auc_score(y[idx], s[idx]))
    expected = np.quantile(reference, [0.05, 0.95])
    np.testing.assert_allclose(bootstrap_auc_ci(y, s, n_boot=200, alpha=0.1, seed=7), expected)


def test_grouped_bootstrap_is_wider_on_near_duplicate_frames():
    table = frame_table(n_videos=40, n_frames=20)
    y, s = table["label"].to_numpy(), table["prob"].to_numpy()
    auc = roc_auc_score(y, s)
    low, high = bootstrap_auc_ci(y, s, n_boot=500)
    g_low, g_high = bootstrap_auc_ci(y, s, n_boot=500, groups=table["video_id"])
    assert low <= auc <= high and g_low <= auc <= g_high
    assert g_high - g_low >= 2 * (high - low)  # ~40 independent videos, not 800 frames
    assert bootstrap_auc_ci(y, s, n_boot=100, seed=1) == bootstrap_auc_ci(y, s, n_boot=100, seed=1)


# ---------------------------------------------------------------------------- evaluate

def test_evaluate_uses_validation_threshold_only():
    # validation: reals score 0.60-0.75, fakes 0.85-0.95, so the best threshold is far above 0.5
    val = frame_table(seed=1, n_videos=20, n_frames=4)
    val["prob"] = np.where(val["label"] == 1, 0.85, 0.60) + 0.1 * np.random.default_rng(0).random(len(val))
    test = frame_table(seed=2)
    results = evaluate(test, val, n_boot=50).set_index(["level", "threshold_name"])
    assert set(results.index) == {("frame", "0.5"), ("frame", "val"), ("video", "0.5"), ("video", "val")}

    t_frame = choose_threshold(val["label"], val["prob"])
    t_video = choose_threshold(aggregate_videos(val)["label"], aggregate_videos(val)["prob"])
    assert results.loc[("frame", "val"), "threshold"] == pytest.approx(t_frame)
    assert results.loc[("video", "val"), "threshold"] == pytest.approx(t_video)
    assert t_frame > 0.75 and t_video > 0.75
    expected = binary_metrics(test["label"], test["prob"], t_frame)
    assert results.loc[("frame", "val"), "accuracy"] == pytest.approx(expected["accuracy"])

    other_test = test.assign(prob=1 - test["prob"])  # a different test table, same validation
    again = evaluate(other_test, val, n_boot=50).set_index(["level", "threshold_name"])
    assert again.loc[("frame", "val"), "threshold"] == results.loc[("frame", "val"), "threshold"]
    assert again.loc[("video", "val"), "threshold"] == results.loc[("video", "val"), "threshold"]


def test_evaluate_table_without_validation():
    test = frame_table(seed=3)
    before = copy.deepcopy(test)
    results = evaluate(test, thresholds=(0.3, 0.5), n_boot=50)
    pd.testing.assert_frame_equal(test, before)
    assert list(results["threshold_name"]) == ["0.3", "0.5", "0.3", "0.5"]
    assert list(results["level"]) == ["frame", "frame", "video", "video"]
    video = results[results["level"] == "video"].iloc[0]
    assert video["n"] == 40 and video["auc"] == pytest.approx(
        roc_auc_score(aggregate_videos(test)["label"], aggregate_videos(test)["prob"]))
    assert (results["auc_low"] <= results["auc"]).all() and (results["auc"] <= results["auc_high"]).all()


def test_evaluate_single_class_test_table_gives_nan_auc():
    test = frame_table(seed=4)
    test = test[test["label"] == 1]
    results = evaluate(test, n_boot=20)
    assert results["auc"].isna().all() and results["auc_low"].isna().all()
    assert results["tpr"].notna().all()


# ---------------------------------------------------------------------------- per method

def test_per_group_metrics_compares_each_method_with_all_reals():
    table = pd.DataFrame({
        "method": ["real"] * 4 + ["Deepfakes"] * 2 + ["NeuralTextures"] * 2,
        "label": [0, 0, 0, 0, 1, 1, 1, 1],
        "prob": [0.1, 0.2, 0.3, 0.6, 0.8, 0.9, 0.15, 0.55],
    })
    rows = per_group_metrics(table).set_index("method")
    assert list(rows.index) == ["Deepfakes", "NeuralTextures", "real"]
    assert rows.loc["Deepfakes", "auc"] == pytest.approx(1.0)
    assert rows.loc["NeuralTextures", "auc"] == pytest.approx(roc_auc_score([0, 0, 0, 0, 1, 1],
                                                                            [0.1, 0.2, 0.3, 0.6, 0.15, 0.55]))
    assert rows.loc["NeuralTextures", "detection_rate"] == pytest.approx(0.5)  # 0.55 >= 0.5, 0.15 not
    assert rows.loc["real", "detection_rate"] == pytest.approx(0.75)  # 0.6 is called fake
    assert (rows.loc[["Deepfakes", "NeuralTextures"], "n_real"] == 4).all()
    assert np.isnan(rows.loc["real", "auc"])


# ---------------------------------------------------------------------------- calibration

def calibrated_data(n: int = 20000, seed: int = 0):
    """z ~ N(0, 2^2), y ~ Bernoulli(sigmoid(z)): sigmoid(z) is calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    p = 1 / (1 + np.exp(-z))
    return (rng.random(n) < p).astype(int), p, z


def test_reliability_matches_sklearn_calibration_curve():
    y, s = random_predictions(0, n=400)
    table = reliability(y, s, n_bins=10)
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10)
    filled = table[table["n"] > 0]
    np.testing.assert_allclose(filled["fake_rate"], prob_true)
    np.testing.assert_allclose(filled["mean_score"], prob_pred)
    assert len(table) == 10 and table["n"].sum() == len(y)


def test_ece_small_when_calibrated_and_large_when_overconfident():
    y, p, z = calibrated_data()
    overconfident = 1 / (1 + np.exp(-3 * z))
    assert ece(y, p) < 0.02
    assert ece(y, overconfident) > 0.08


def test_temperature_recovers_the_overconfidence_factor():
    y, p, z = calibrated_data()
    overconfident = 1 / (1 + np.exp(-2 * z))
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(2.0, rel=0.08)
    assert fit_temperature(2 * z, y, kind="logit") == pytest.approx(t, rel=1e-3)
    assert fit_temperature(p, y) == pytest.approx(1.0, rel=0.08)
    calibrated = apply_temperature(overconfident, t)
    assert ece(y, calibrated) < ece(y, overconfident) / 2
    assert roc_auc_score(y, calibrated) == pytest.approx(roc_auc_score(y, overconfident))


def test_temperature_rejects_bad_input():
    with pytest.raises(ValueError, match="one class"):
        fit_temperature([0.2, 0.4], [1, 1])
    with pytest.raises(ValueError, match="positive"):
        apply_temperature([0.2, 0.4], 0.0)
    with pytest.raises(ValueError, match="kind"):
        fit_temperature([0.2, 0.4], [0, 1], kind="logits")
