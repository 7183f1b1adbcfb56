"""The evaluation stage's table functions (`evaluation.pipeline`) and the bias analysis
(`evaluation.bias`) on synthetic prediction tables: no model, no cache, no params."""

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from interceptor_lib.pipeline.bias import (artifact_variant, blockiness, calibration_table, class_bias,
                                             condition_bins, condition_table, family_table,
                                             own_family_check, perceivable_rates, reads_audio)
from interceptor_lib.metrics.calibration import ece
from interceptor_lib.metrics.scores import choose_threshold
from interceptor_lib.pipeline.evaluate import (ENSEMBLE, META, add_ensemble, cross_dataset_table, model_thresholds,
                                                 predictions_stamp,
                                                 per_method_table, results_table, video_predictions)

MODELS = ["good", "rand"]
DATASETS = {"ffpp": ["Deepfakes", "FaceSwap"], "celebdf": ["celeb_synthesis"]}
N_BOOT = 30


def make_items(seed: int = 0) -> pd.DataFrame:
    """Long item table: 2 models x 2 datasets x (val, test), 8 reals + 8 fakes per split, 2-4 frames
    per video. "good" scores fakes high and reals low (with noise); "rand" is uniform noise. The rows
    are shuffled so that nothing may rely on their order."""
    rng = np.random.default_rng(seed)
    rows = []
    for ds, methods in DATASETS.items():
        for split in ("val", "test"):
            for i in range(16):
                label = int(i >= 8)
                method = methods[i % len(methods)] if label else "real"
                vid = f"{ds}/{split}/{i:02d}"
                n_frames = 2 + i % 3
                for model in MODELS:
                    for k in range(n_frames):
                        if model == "good":
                            p = np.clip(0.3 + 0.35 * label + rng.normal(0, 0.15), 0.01, 0.99)
                        else:
                            p = rng.uniform(0.0, 1.0)
                        rows.append({"model": model, "dataset": ds, "split": split, "video_id": vid,
                                     "label": label, "method": method, "item": k, "prob": float(p)})
    items = pd.DataFrame(rows)
    return items.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def items():
    return make_items()


@pytest.fixture(scope="module")
def videos(items):
    return video_predictions(items)


def manual_videos(items: pd.DataFrame) -> pd.DataFrame:
    """The per-video mean of each model's probabilities, by a plain pivot."""
    return items.pivot_table(index="video_id", columns="model", values="prob", aggfunc="mean")


def with_ensemble(videos: pd.DataFrame) -> pd.DataFrame:
    return videos.assign(**{ENSEMBLE: 0.7 * videos["good"] + 0.3 * videos["rand"]})


# ---------------------------------------------------------------------------- video_predictions

def test_video_predictions_averages_per_video_and_model_and_keeps_the_metadata(items, videos):
    assert list(videos.columns) == META + MODELS
    assert videos["video_id"].is_unique and len(videos) == items["video_id"].nunique()
    expected = manual_videos(items)
    got = videos.set_index("video_id")
    for m in MODELS:
        pd.testing.assert_series_equal(got[m].sort_index(), expected[m].sort_index(), check_names=False)
    # the two models differ, so a mix-up of the columns would show
    assert not np.allclose(got["good"], got["rand"])
    meta = items.drop_duplicates("video_id").set_index("video_id")[["dataset", "split", "label", "method"]]
    pd.testing.assert_frame_equal(got[["dataset", "split", "label", "method"]].sort_index(), meta.sort_index())


def test_video_predictions_does_not_modify_its_input_nor_depend_on_row_order(items, videos):
    copy = items.copy()
    video_predictions(items)
    pd.testing.assert_frame_equal(items, copy)
    shuffled = video_predictions(items.sample(frac=1.0, random_state=7))
    a = videos.set_index("video_id").sort_index()
    b = shuffled.set_index("video_id").sort_index()[a.columns]
    pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------------------------- model_thresholds

def test_model_thresholds_come_from_the_validation_videos_only(videos):
    thr = model_thresholds(videos, MODELS)
    assert set(thr) == set(MODELS)
    val = videos[videos["split"] == "val"]
    for m in MODELS:
        assert thr[m] == choose_threshold(val["label"], val[m], rule="eer")
        # the equal error rate point: validation real- and fake-detection rates meet (up to a video)
        real, fake = val.loc[val["label"] == 0, m], val.loc[val["label"] == 1, m]
        tnr, tpr = (real < thr[m]).mean(), (fake >= thr[m]).mean()
        assert abs(tnr - tpr) <= 1 / len(real) + 1 / len(fake) + 1e-12

    # any change of the test probabilities leaves the thresholds alone
    test = videos["split"] == "test"
    changed_test = videos.copy()
    changed_test.loc[test, MODELS] = np.random.default_rng(1).uniform(0, 1, (int(test.sum()), len(MODELS)))
    assert model_thresholds(changed_test, MODELS) == thr

    # a change of the validation probabilities moves them
    changed_val = videos.copy()
    changed_val.loc[~test, MODELS] = changed_val.loc[~test, MODELS] ** 3
    moved = model_thresholds(changed_val, MODELS)
    assert all(moved[m] != thr[m] for m in MODELS)


def test_model_thresholds_add_the_ensemble_threshold_as_given(videos):
    thr = model_thresholds(videos, MODELS, ensemble_threshold=0.42)
    assert thr[ENSEMBLE] == 0.42 and set(thr) == {*MODELS, ENSEMBLE}
    assert ENSEMBLE not in model_thresholds(videos, MODELS)


def test_add_ensemble_appends_the_weighted_calibrated_prob_and_the_spread(videos):
    fit = {"models": MODELS, "weights": {"good": 1.0, "rand": 0.0}, "temperature": None}
    out = add_ensemble(videos, fit)
    assert ENSEMBLE not in videos.columns  # the input is not modified
    np.testing.assert_allclose(out[ENSEMBLE], videos["good"])
    np.testing.assert_allclose(out["uncertainty"], 0.0, atol=1e-12)
    even = add_ensemble(videos, {**fit, "weights": {"good": 1.0, "rand": 1.0}})
    np.testing.assert_allclose(even[ENSEMBLE], (videos["good"] + videos["rand"]) / 2)
    np.testing.assert_allclose(even["uncertainty"], (videos["good"] - videos["rand"]).abs() / 2)


def test_videos_with_audio_are_scored_by_the_ensembles_audio_weights(items):
    """has_audio rides along as metadata (never taken for a model), and add_ensemble combines the
    videos with audio by the audio weight set, the others by the plain one."""
    ds = sorted(items["dataset"].unique())[0]
    v = video_predictions(items.assign(has_audio=items["dataset"] == ds))
    assert list(v.columns) == META + ["has_audio"] + MODELS
    fit = {"models": MODELS, "weights": {"good": 1.0, "rand": 0.0}, "temperature": None, "combination": "prob",
           "audio": {"weights": {"good": 0.0, "rand": 1.0}, "temperature": None}}
    out = add_ensemble(v, fit)
    has = v["has_audio"].to_numpy()
    np.testing.assert_allclose(out.loc[has, ENSEMBLE], v.loc[has, "rand"])
    np.testing.assert_allclose(out.loc[~has, ENSEMBLE], v.loc[~has, "good"])
    np.testing.assert_allclose(add_ensemble(v, {**fit, "audio": None})[ENSEMBLE], v["good"])


# ---------------------------------------------------------------------------- results_table

@pytest.fixture(scope="module")
def thresholds(videos):
    return model_thresholds(with_ensemble(videos), MODELS, ensemble_threshold=0.45)


@pytest.fixture(scope="module")
def results(items, videos, thresholds):
    return results_table(items, with_ensemble(videos), thresholds, n_boot=N_BOOT)


def test_results_table_has_one_row_per_model_test_set_level_and_threshold(results):
    key = ["model", "dataset", "level", "threshold_name"]
    assert not results.duplicated(key).any()
    members = results[results["model"] != ENSEMBLE]
    assert len(members) == len(MODELS) * len(DATASETS) * 2 * 2
    assert set(members["level"]) == {"frame", "video"}
    assert set(results["threshold_name"]) == {"0.5", "val"}
    assert set(results["dataset"]) == set(DATASETS)
    ens = results[results["model"] == ENSEMBLE]
    assert len(ens) == len(DATASETS) * 2 and set(ens["level"]) == {"video"}
    for col in ("auc", "auc_low", "auc_high", "tpr", "tnr", "balanced_accuracy", "n"):
        assert col in results.columns


def test_results_table_auc_matches_sklearn_on_the_manually_aggregated_test_videos(items, results):
    test = items[items["split"] == "test"]
    for (m, ds), g in test.groupby(["model", "dataset"]):
        v = g.groupby("video_id").agg(label=("label", "first"), prob=("prob", "mean"))
        r = results[(results["model"] == m) & (results["dataset"] == ds)].set_index(["level", "threshold_name"])
        assert r.loc[("video", "val"), "auc"] == pytest.approx(roc_auc_score(v["label"], v["prob"]))
        assert r.loc[("video", "0.5"), "auc"] == pytest.approx(roc_auc_score(v["label"], v["prob"]))
        assert r.loc[("frame", "val"), "auc"] == pytest.approx(roc_auc_score(g["label"], g["prob"]))
        # no validation row leaks in: n counts the test videos / items of that set only
        assert r.loc[("video", "val"), "n"] == len(v) == 16
        assert r.loc[("frame", "val"), "n"] == len(g)
        low, high = r.loc[("video", "val"), ["auc_low", "auc_high"]]
        assert low <= high
    good = results[(results["model"] == "good") & (results["level"] == "video")]
    assert (good["auc"] > 0.9).all()


def test_results_table_applies_the_validation_threshold_to_the_val_rows(videos, results, thresholds):
    test = with_ensemble(videos)
    test = test[test["split"] == "test"]
    for m, t in thresholds.items():
        r = results[results["model"] == m]
        assert (r.loc[r["threshold_name"] == "val", "threshold"] == t).all()
        assert (r.loc[r["threshold_name"] == "0.5", "threshold"] == 0.5).all()
        for ds, g in test.groupby("dataset"):
            row = r[(r["dataset"] == ds) & (r["level"] == "video") & (r["threshold_name"] == "val")].iloc[0]
            fakes, reals = g[g["label"] == 1][m], g[g["label"] == 0][m]
            assert row["tpr"] == pytest.approx((fakes >= t).mean())
            assert row["tnr"] == pytest.approx((reals < t).mean())


def test_results_table_ensemble_rows_score_the_ensemble_column(videos, results):
    v = with_ensemble(videos)
    v = v[v["split"] == "test"]
    for ds, g in v.groupby("dataset"):
        row = results[(results["model"] == ENSEMBLE) & (results["dataset"] == ds)
                      & (results["threshold_name"] == "val")].iloc[0]
        assert row["auc"] == pytest.approx(roc_auc_score(g["label"], g[ENSEMBLE]))
        assert row["n"] == len(g) and row["threshold"] == 0.45


def test_results_table_ignores_the_validation_predictions(items, videos, thresholds, results):
    val = items["split"] == "val"
    changed = items.copy()
    changed.loc[val, "prob"] = 1.0 - changed.loc[val, "prob"]
    changed_videos = videos.copy()
    changed_videos.loc[changed_videos["split"] == "val", MODELS] = 0.5
    again = results_table(changed, with_ensemble(changed_videos), thresholds, n_boot=N_BOOT)
    pd.testing.assert_frame_equal(again, results)


def test_results_table_skips_a_model_without_test_items_in_a_dataset(items, videos):
    """A model scored on one test set only gets rows for that set (no crash on the empty one)."""
    some = items[~((items["model"] == "rand") & (items["dataset"] == "celebdf"))]
    out = results_table(some, videos, {"good": 0.5, "rand": 0.5}, n_boot=N_BOOT)
    assert set(out.loc[out["model"] == "rand", "dataset"]) == {"ffpp"}
    assert set(out.loc[out["model"] == "good", "dataset"]) == set(DATASETS)


# ---------------------------------------------------------------------------- summary tables

def test_cross_dataset_table_lays_out_models_by_test_set_with_the_mean(results):
    t = cross_dataset_table(results)
    assert set(t.index) == {*MODELS, ENSEMBLE}
    assert sorted(t.columns[:-1]) == sorted(DATASETS) and t.columns[-1] == "mean"
    r = results[(results["level"] == "video") & (results["threshold_name"] == "val")]
    for _, row in r.iterrows():
        assert t.loc[row["model"], row["dataset"]] == pytest.approx(row["auc"])
    for m in t.index:
        assert t.loc[m, "mean"] == pytest.approx(r.loc[r["model"] == m, "auc"].mean())
    frame = cross_dataset_table(results, metric="tpr", level="frame")
    assert ENSEMBLE not in frame.index  # the ensemble has no frame rows
    fr = results[(results["level"] == "frame") & (results["threshold_name"] == "val")
                 & (results["model"] == "good") & (results["dataset"] == "ffpp")]
    assert frame.loc["good", "ffpp"] == pytest.approx(fr["tpr"].iloc[0])


def test_per_method_table_detection_rates_match_a_manual_count(videos, thresholds):
    v = with_ensemble(videos)
    table = per_method_table(v, thresholds)
    test = v[v["split"] == "test"]
    n_rows = sum(len(methods) + 1 for methods in DATASETS.values()) * len(thresholds)
    assert len(table) == n_rows
    for _, row in table.iterrows():
        g = test[test["dataset"] == row["dataset"]]
        t = thresholds[row["model"]]
        assert row["threshold"] == t
        reals = g[g["label"] == 0]
        assert row["n_real"] == len(reals) == 8
        if row["label"] == 1:
            fakes = g[(g["label"] == 1) & (g["method"] == row["method"])]
            assert row["n_fake"] == len(fakes)
            assert row["detection_rate"] == pytest.approx((fakes[row["model"]] >= t).mean())
            both = pd.concat([reals, fakes])
            assert row["auc"] == pytest.approx(roc_auc_score(both["label"], both[row["model"]]))
        else:
            assert row["method"] == "real"
            assert row["detection_rate"] == pytest.approx((reals[row["model"]] < t).mean())


# ---------------------------------------------------------------------------- bias: class bias

def hand_table() -> pd.DataFrame:
    """Test: 4 reals, 4 fakes of one dataset. "a" leans to fake, "b" to real. Val rows that would
    change every number if they were counted."""
    test = pd.DataFrame({"dataset": "d", "split": "test", "video_id": [f"t{i}" for i in range(8)],
                         "label": [0, 0, 0, 0, 1, 1, 1, 1],
                         "a": [0.1, 0.6, 0.7, 0.8, 0.6, 0.7, 0.9, 0.95],
                         "b": [0.1, 0.2, 0.3, 0.4, 0.2, 0.3, 0.4, 0.6]})
    val = pd.DataFrame({"dataset": "d", "split": "val", "video_id": ["v0", "v1"], "label": [1, 1],
                        "a": [0.0, 0.0], "b": [1.0, 1.0]})
    return pd.concat([test, val], ignore_index=True)


def test_class_bias_reports_shares_and_the_lean_of_each_model():
    out = class_bias(hand_table(), {"a": 0.5, "b": 0.5}).set_index("model")
    assert out.loc["a", "predicted_fake_share"] == pytest.approx(7 / 8)
    assert out.loc["b", "predicted_fake_share"] == pytest.approx(1 / 8)
    assert (out["actual_fake_share"] == 0.5).all()
    assert out.loc["a", "tpr_minus_tnr"] == pytest.approx(1.0 - 0.25)   # tpr 1, tnr 1/4
    assert out.loc["b", "tpr_minus_tnr"] == pytest.approx(0.25 - 1.0)   # tpr 1/4, tnr 1
    # a higher threshold removes a's lean
    hi = class_bias(hand_table(), {"a": 0.85}).set_index("model")
    assert hi.loc["a", "predicted_fake_share"] == pytest.approx(2 / 8) and hi.loc["a", "threshold"] == 0.85
    assert hi.loc["a", "tpr_minus_tnr"] == pytest.approx(0.5 - 1.0)


def test_class_bias_splits_by_dataset_and_reads_the_requested_split():
    t = hand_table()
    other = t[t["split"] == "test"].assign(dataset="e", label=1, video_id=lambda d: "e" + d["video_id"])
    out = class_bias(pd.concat([t, other]), {"a": 0.5})
    assert list(out["dataset"]) == ["d", "e"]
    assert out.set_index("dataset").loc["e", "actual_fake_share"] == 1.0
    val = class_bias(t, {"a": 0.5}, split="val").iloc[0]
    assert val["predicted_fake_share"] == 0.0 and val["actual_fake_share"] == 1.0


# ---------------------------------------------------------------------------- bias: calibration

def overconfident(seed: int, n: int = 400, sharpen: float = 3.0) -> pd.DataFrame:
    """Labels drawn from sigmoid(z); the model reports sigmoid(sharpen * z): overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(int)
    return pd.DataFrame({"label": y, "m": 1 / (1 + np.exp(-sharpen * z)), "calm": 1 / (1 + np.exp(-z))})


def test_calibration_table_fits_the_temperature_on_validation_and_it_helps():
    val = overconfident(0).assign(split="val")
    test = overconfident(1).assign(split="test")
    videos = pd.concat([val, test], ignore_index=True)
    out = calibration_table(videos, ["m", "calm"]).set_index("model")
    assert out.loc["m", "temperature"] == pytest.approx(3.0, rel=0.35)
    assert out.loc["calm", "temperature"] == pytest.approx(1.0, rel=0.35)
    assert out.loc["m", "ece_test_scaled"] <= out.loc["m", "ece_test"]
    assert out.loc["m", "ece_test"] == pytest.approx(ece(test["label"], test["m"]))
    assert out.loc["m", "ece_test"] > 0.05  # the overconfidence is visible before scaling

    # test labels never reach the temperature; validation labels do
    flipped_test = videos.copy()
    flipped_test.loc[flipped_test["split"] == "test", "label"] ^= 1
    again = calibration_table(flipped_test, ["m"]).set_index("model")
    assert again.loc["m", "temperature"] == out.loc["m", "temperature"]
    assert again.loc["m", "ece_test"] != out.loc["m", "ece_test"]
    noisy_val = videos.copy()
    idx = noisy_val.index[noisy_val["split"] == "val"][::3]
    noisy_val.loc[idx, "label"] ^= 1
    assert calibration_table(noisy_val, ["m"])["temperature"].iloc[0] != out.loc["m", "temperature"]


# ---------------------------------------------------------------------------- bias: conditions

def smooth_noise(size: int = 128, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).normal(0, 1, (size, size)).astype(np.float32)
    s = cv2.GaussianBlur(n, (0, 0), 3)
    return np.clip((s - s.mean()) / s.std() * 30 + 128, 0, 255).astype(np.uint8)


def test_blockiness_is_one_without_blocks_and_high_with_8x8_steps():
    smooth = smooth_noise()
    assert blockiness(smooth) == pytest.approx(1.0, abs=0.15)
    ok, buf = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 5])
    assert ok
    jpeg = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    assert blockiness(jpeg) > 2.0
    rng = np.random.default_rng(0)
    blocky = np.kron(rng.integers(0, 255, (16, 16)), np.ones((8, 8))) + rng.normal(0, 2, (128, 128))
    assert blockiness(blocky) > 10
    # the same steps off the 8-pixel grid are not JPEG blocking: they fall inside blocks
    assert blockiness(np.roll(blocky, 4, axis=1)) < 1
    # a flat image: no steps anywhere, no division by zero
    assert np.isfinite(blockiness(np.full((32, 32), 100, np.uint8)))


def conditions(n: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"video_id": [f"v{i}" for i in range(n)], "brightness": rng.permutation(n) * 10.0,
                         "blockiness": np.ones(n), "sharpness": rng.uniform(0, 1, n), "motion": np.arange(n)[::-1],
                         "has_audio": [i % 2 == 0 for i in range(n)]})


def test_condition_bins_are_balanced_ordered_quantiles_and_audio_yes_no():
    cond = conditions()
    bins = condition_bins(cond)
    assert list(bins.columns) == ["video_id", "brightness", "blockiness", "sharpness", "motion", "has_audio"]
    for c in ("brightness", "blockiness", "sharpness", "motion"):
        assert bins[c].value_counts().to_dict() == {"low": 3, "mid": 3, "high": 3}  # ties too (blockiness)
        order = cond[c].rank(method="first").to_numpy()
        lowest, highest = order <= 3, order > 6
        assert (bins.loc[lowest, c] == "low").all() and (bins.loc[highest, c] == "high").all()
    assert list(bins["has_audio"]) == ["yes" if i % 2 == 0 else "no" for i in range(9)]
    assert set(condition_bins(conditions(8), n_bins=2)["motion"]) == {"low", "high"}
    assert condition_bins(conditions(8), n_bins=4)["motion"].value_counts().to_dict() == {
        "q1": 2, "q2": 2, "q3": 2, "q4": 2}
    pd.testing.assert_frame_equal(cond, conditions())  # input untouched


def test_condition_table_is_nan_where_a_bin_lacks_a_class():
    n = 12
    cond = conditions(n)
    cond["brightness"] = np.arange(n, dtype=float)  # low: v0-3, mid: v4-7, high: v8-11
    labels = [1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1]   # low: fakes only
    rng = np.random.default_rng(5)
    videos = pd.DataFrame({"video_id": cond["video_id"], "split": "test", "label": labels,
                           "m": rng.uniform(0, 1, n)})
    # a val video with the same id pattern must not enter
    videos = pd.concat([videos, pd.DataFrame({"video_id": ["v0"], "split": ["val"], "label": [0], "m": [0.5]})])
    bins = condition_bins(cond)
    out = condition_table(videos, bins, {"m": 0.5})
    b = out[out["condition"] == "brightness"].set_index("bin")
    assert set(b.index) == {"low", "mid", "high"}
    assert np.isnan(b.loc["low", "auc"]) and b.loc["low", "n_real"] == 0 and b.loc["low", "n_fake"] == 4
    test = videos[videos["split"] == "test"].reset_index(drop=True)
    for name, sl in (("mid", slice(4, 8)), ("high", slice(8, 12))):
        g = test.iloc[sl]
        assert b.loc[name, "auc"] == pytest.approx(roc_auc_score(g["label"], g["m"]))
        assert b.loc[name, "n_real"] + b.loc[name, "n_fake"] == 4
    # no bin holds 3 of each class
    strict = condition_table(videos, bins, {"m": 0.5}, min_per_class=3)
    assert strict.loc[strict["condition"] == "brightness", "auc"].isna().all()
    assert set(out["condition"]) == {"brightness", "blockiness", "sharpness", "motion", "has_audio"}
    assert out.groupby("condition")["n_real"].sum().eq(4).all()  # every test video in one bin per condition
    # video predictions carry has_audio too (notebook 06's metadata): the bins' yes / no label is used
    with_audio = condition_table(videos.assign(has_audio=True), bins, {"m": 0.5})
    pd.testing.assert_frame_equal(with_audio, out)


# ---------------------------------------------------------------------------- bias: artifact families

def family_videos() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    rows = []
    for split in ("val", "test"):
        for ds in ("d1", "d2"):
            for i in range(5):
                rows.append({"video_id": f"{split}/{ds}/r{i}", "dataset": ds, "split": split, "label": 0,
                             "artifact": "none"})
            for fam in ("low_light", "compression"):
                for i in range(3):
                    rows.append({"video_id": f"{split}/{ds}/{fam}{i}", "dataset": ds, "split": split, "label": 1,
                                 "artifact": fam})
    v = pd.DataFrame(rows)
    v["ll"] = np.where(v["artifact"] == "low_light", 0.9, 0.2) + rng.uniform(0, 0.05, len(v))
    v["cm"] = rng.uniform(0, 1, len(v))
    return v


def test_family_table_compares_each_family_with_all_test_reals():
    v = family_videos()
    out = family_table(v, {"ll": 0.5, "cm": 0.5})
    assert set(out["artifact"]) == {"low_light", "compression"}  # "none" (the reals) is no family
    assert len(out) == 4
    test = v[v["split"] == "test"]
    reals = test[test["label"] == 0]
    assert len(reals) == 10 and (out["n_real"] == 10).all()   # reals of both datasets, test only
    assert (out["n_fake"] == 6).all()
    for _, row in out.iterrows():
        fakes = test[(test["label"] == 1) & (test["artifact"] == row["artifact"])]
        both = pd.concat([reals, fakes])
        assert row["auc"] == pytest.approx(roc_auc_score(both["label"], both[row["model"]]))
        assert row["detection_rate"] == pytest.approx((fakes[row["model"]] >= 0.5).mean())
    ll = out[out["model"] == "ll"].set_index("artifact")
    assert ll.loc["low_light", "auc"] == 1.0 and ll.loc["low_light", "detection_rate"] == 1.0
    assert ll.loc["compression", "detection_rate"] == 0.0


def test_family_table_by_dataset_compares_with_that_datasets_reals_and_splits_variants():
    v = family_videos()
    v["variant"] = np.where(v["artifact"] == "low_light", np.where(v["video_id"].str.endswith("0"), "smooth", "grainy"), "")
    v.loc[(v["dataset"] == "d2") & (v["label"] == 0), "cm"] = 0.0   # d2's reals: cm never flags them
    out = family_table(v, {"ll": 0.5, "cm": 0.5}, by=("dataset", "variant"))
    assert list(out.columns[:4]) == ["model", "dataset", "artifact", "variant"]
    # per dataset: compression (one variant), low_light smooth (1 fake) and grainy (2 fakes)
    assert len(out) == 2 * 2 * 3 and (out["n_real"] == 5).all()
    test = v[v["split"] == "test"]
    for _, row in out.iterrows():
        g = test[test["dataset"] == row["dataset"]]
        fakes = g[(g["label"] == 1) & (g["artifact"] == row["artifact"]) & (g["variant"] == row["variant"])]
        assert row["n_fake"] == len(fakes)
        both = pd.concat([g[g["label"] == 0], fakes])
        assert row["auc"] == pytest.approx(roc_auc_score(both["label"], both[row["model"]]))
        assert row["detection_rate"] == pytest.approx((fakes[row["model"]] >= 0.5).mean())
    cm_d2 = out[(out["model"] == "cm") & (out["dataset"] == "d2")]
    assert (cm_d2["auc"] == 1.0).all()   # against d2's reals only: d1's reals score anywhere
    pooled = family_table(v, {"ll": 0.5, "cm": 0.5}, by=("variant",))
    assert (pooled.loc[pooled["model"] == "cm", "auc"] < 1.0).all()
    assert set(pooled.columns) >= {"artifact", "variant"} and "dataset" not in pooled.columns
    assert (pooled["n_real"] == 10).all()
    with pytest.raises(KeyError, match="variant"):
        family_table(v.drop(columns="variant"), {"ll": 0.5}, by=("variant",))


def test_artifact_variant_reads_the_mode_of_the_side_tables_parameters():
    assert artifact_variant("flicker=0.0;jitter_px=2.73;mode=jitter") == "jitter"
    assert artifact_variant("jpeg_quality=12;offset_x=3;offset_y=0") == ""
    assert artifact_variant(float("nan")) == "" and artifact_variant("") == ""


def test_own_family_check_marks_whether_each_specialist_wins_its_family():
    fams = pd.DataFrame([
        {"model": "ll", "artifact": "low_light", "auc": 0.95},
        {"model": "cm", "artifact": "low_light", "auc": 0.70},
        {"model": "ensemble", "artifact": "low_light", "auc": 0.99},   # the ensemble is no rival
        {"model": "ll", "artifact": "compression", "auc": 0.80},
        {"model": "cm", "artifact": "compression", "auc": 0.60},
        {"model": "bg", "artifact": "lighting", "auc": 0.75},
        {"model": "ll", "artifact": "lighting", "auc": 0.75},          # a tie is not a win
    ])
    out = own_family_check(fams).set_index("specialist")
    assert set(out.index) == {"ll", "cm", "bg"}   # rr, tm, av have no rows: skipped
    assert out.loc["ll", "artifact"] == "low_light" and bool(out.loc["ll", "beats_others"])
    assert out.loc["ll", "best_other"] == "cm" and out.loc["ll", "best_other_auc"] == 0.70
    assert not out.loc["cm", "beats_others"] and out.loc["cm", "best_other"] == "ll"
    assert out.loc["cm", "auc"] == 0.60
    assert not out.loc["bg", "beats_others"]
    alone = own_family_check(fams[fams["artifact"] == "lighting"].iloc[:1]).iloc[0]
    assert alone["best_other"] is None and alone["beats_others"]


def test_perceivable_rates_leave_audio_only_fakes_out_for_models_that_do_not_read_audio():
    # one dataset with audio: 4 reals, 2 compression fakes, 4 lip-sync fakes; a val row must be ignored
    rows = [("r", 0, "none")] * 4 + [("c", 1, "compression")] * 2 + [("a", 1, "av_sync")] * 4
    v = pd.DataFrame({"video_id": [f"{k}{i}" for i, (k, _, _) in enumerate(rows)], "split": "test", "dataset": "dfdc",
                      "label": [y for _, y, _ in rows], "artifact": [a for _, _, a in rows]})
    v["cm"] = [0.1, 0.2, 0.3, 0.9] + [0.8, 0.7] + [0.1, 0.1, 0.9, 0.1]   # sees compression; one real over 0.5
    v["av"] = [0.1] * 4 + [0.2, 0.2] + [0.9, 0.9, 0.9, 0.1]
    v["ensemble"] = [0.1] * 4 + [0.9, 0.2] + [0.9, 0.2, 0.2, 0.2]
    v = pd.concat([v, v.iloc[:1].assign(split="val", label=1, artifact="compression", cm=0.0)], ignore_index=True)
    out = perceivable_rates(v, {"cm": 0.5, "av": 0.5, "ensemble": 0.5}).set_index("model")
    assert (out["n_real"] == 4).all() and (out["n_fake"] == 6).all()
    cm, av, ens = out.loc["cm"], out.loc["av"], out.loc["ensemble"]
    assert cm["tnr"] == 0.75 and cm["tpr"] == pytest.approx(3 / 6)
    assert cm["n_fake_perceivable"] == 2 and cm["tpr_perceivable"] == 1.0     # the lip-sync fakes left out
    assert av["n_fake_perceivable"] == 6 and av["tpr_perceivable"] == av["tpr"] == pytest.approx(3 / 6)
    assert ens["n_fake_perceivable"] == 6 and ens["tpr_perceivable"] == pytest.approx(2 / 6)  # av is a member
    alone = perceivable_rates(v, {"cm": 0.5, "ensemble": 0.5}).set_index("model")
    assert alone.loc["ensemble", "n_fake_perceivable"] == 2   # no member hears the audio
    assert reads_audio("av") and not reads_audio("tm") and not reads_audio("ll") and not reads_audio("nope")
    with pytest.raises(KeyError, match="artifact"):
        perceivable_rates(v.drop(columns="artifact"), {"cm": 0.5})


# ---------------------------------------------------------------------------- reuse of saved predictions

def test_saved_predictions_are_keyed_on_checkpoint_contents_and_videos(tmp_path, videos):
    """A retrained stage writes new weights under the same folder names: the stamp that decides whether
    notebook 06 may reuse its saved predictions must change with them, and with the videos scored."""
    ckpt = tmp_path / "runs" / "ll" / "stage4" / "checkpoints" / "epoch-001"
    ckpt.mkdir(parents=True)
    (ckpt / "checkpoint.json").write_text('{"files": {"tensors.safetensors": {"sha256": "aaa"}}}')
    weights = tmp_path / "tm.safetensors"
    weights.write_bytes(b"first")
    rows = videos[videos["split"].isin(["val", "test"])]
    stamp = predictions_stamp({"ll": ckpt, "tm": weights}, rows, tmp_path / "cache")
    assert stamp == predictions_stamp({"ll": ckpt, "tm": weights}, rows.copy(), tmp_path / "cache")

    (ckpt / "checkpoint.json").write_text('{"files": {"tensors.safetensors": {"sha256": "bbb"}}}')  # retrained
    assert predictions_stamp({"ll": ckpt, "tm": weights}, rows, tmp_path / "cache") != stamp
    (ckpt / "checkpoint.json").write_text('{"files": {"tensors.safetensors": {"sha256": "aaa"}}}')
    weights.write_bytes(b"second")
    assert predictions_stamp({"ll": ckpt, "tm": weights}, rows, tmp_path / "cache") != stamp
    weights.write_bytes(b"first")
    assert predictions_stamp({"ll": ckpt, "tm": weights}, rows, tmp_path / "cache") == stamp
    assert predictions_stamp({"ll": ckpt, "tm": weights}, rows.iloc[1:], tmp_path / "cache") != stamp
    assert predictions_stamp({"ll": ckpt, "tm": weights}, rows, tmp_path / "other-cache") != stamp


def test_the_evaluation_scores_on_the_params_device_unless_told_otherwise():
    from interceptor_lib.errors import InterceptorError
    from interceptor_lib.params import load_params
    from interceptor_lib.pipeline.evaluate import eval_device

    params = load_params("smoke", check_paths=False)
    params.device = "auto"  # a GPU session's default: its GPU when one is visible
    assert eval_device(params).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert eval_device(params, "cpu").type == "cpu"
    if not torch.cuda.is_available():
        params.device = "cuda"
        with pytest.raises(InterceptorError, match="no GPU is visible"):
            eval_device(params)
