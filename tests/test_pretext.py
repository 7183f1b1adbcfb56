"""The pretext backbone of profiles without ImageNet weights (training/pretext.py): each degradation
does what its name says, only real training crops are used, the saved file loads as the models'
backbone (one shared frozen trunk), it is reused when nothing changed, and misuse is refused."""

import os

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from interceptor_lib.params import load_params
from interceptor_lib.errors import InterceptorError, ParamsError
from interceptor_lib.models.backbone import create_backbone
from interceptor_lib.pipeline.prepare import pretrain_backbone
from interceptor_lib.training.pretext import DEGRADATIONS, PretextError, degrade, real_training_crops


def smooth_face(size=64, seed=0) -> np.ndarray:
    """A smooth, mid-grey, face-like uint8 RGB image (no noise of its own)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 90 + 80 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.08)
    img = np.stack([base * g for g in rng.uniform(0.85, 1.1, 3)], -1)
    cv2.circle(img, (size // 3, size // 3), size // 12, (40, 40, 40), -1)
    cv2.circle(img, (2 * size // 3, size // 3), size // 12, (40, 40, 40), -1)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.0), 0, 255).astype(np.uint8)


def detail(img) -> float:
    """High-frequency energy: variance of the Laplacian of the luma."""
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64), cv2.CV_64F).var())


def test_each_degradation_changes_the_crop_the_way_its_name_says():
    img = smooth_face()
    rng = lambda: np.random.default_rng(1)  # noqa: E731
    out = {name: degrade(img, k, rng()) for k, name in enumerate(DEGRADATIONS)}
    assert np.array_equal(out["none"], img)
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in out.values())
    assert detail(out["noise"]) > 5 * detail(img)                      # high-frequency energy added
    assert detail(out["blur"]) < 0.7 * detail(img)                     # removed
    assert detail(out["resample"]) < 0.9 * detail(img)
    assert 0 < np.abs(out["jpeg"].astype(int) - img).mean() < 10       # re-encoded, content kept
    ratio = out["underexposure"].mean() / img.mean()
    assert 0.28 < ratio < 0.62
    gains = out["colour_cast"].reshape(-1, 3).mean(0) / img.reshape(-1, 3).mean(0)
    assert np.ptp(gains) > 0.01 and np.all((gains > 0.7) & (gains < 1.3))  # channels scaled apart
    with pytest.raises(ValueError, match="0..6"):
        degrade(img, len(DEGRADATIONS), rng())


def test_a_local_degradation_changes_the_face_region_and_leaves_the_corners():
    img = smooth_face(size=96)
    out = degrade(img, 5, np.random.default_rng(0), local=1.0).astype(int)
    corners = np.concatenate([out[:8, :8], out[:8, -8:], out[-8:, :8], out[-8:, -8:]]).reshape(-1, 3)
    ref = np.concatenate([img[:8, :8], img[:8, -8:], img[-8:, :8], img[-8:, -8:]]).reshape(-1, 3)
    assert np.abs(corners - ref).max() <= 1
    assert out[40:56, 40:56].mean() < 0.7 * img[40:56, 40:56].mean()


class _Reader:
    def __init__(self, crops):
        self._crops = crops
        self.frame_pos = np.arange(len(crops))

    def crops(self, pos):
        return self._crops[np.asarray(pos)]


class _Cache:
    """The FaceCropCache calls the pretext makes; each video's crops are filled with its number."""

    def __init__(self, table, size=32, failed=()):
        self.table, self.failed = table, set(failed)
        self.crops = {v: np.full((3, size, size, 3), i, np.uint8) for i, v in enumerate(table["video_id"])}

    def usable(self, table):
        return table[~table["video_id"].isin(self.failed)]

    def reader(self, video_id):
        return _Reader(self.crops[video_id])


def tiny_table() -> pd.DataFrame:
    rows = [(f"v{i}", label, split) for i, (label, split) in enumerate(
        [(0, "train"), (1, "train"), (0, "val"), (0, "test"), (0, "train"), (1, "test"), (0, "train")])]
    return pd.DataFrame(rows, columns=["video_id", "label", "split"])


def test_only_the_real_training_crops_are_used():
    table = tiny_table()
    cache = _Cache(table, failed={"v6"})  # a cached-out video is skipped, not an error
    crops = real_training_crops(table, cache)
    assert sorted(set(crops[:, 0, 0, 0].tolist())) == [0, 4]  # v0, v4: the real training videos
    assert len(crops) == 6
    with pytest.raises(PretextError, match="real training videos"):
        real_training_crops(table[table["label"] == 1], cache)


@pytest.fixture
def smoke(tmp_path, monkeypatch):
    """Smoke params whose index and crop cache are the tiny fakes above."""
    table = tiny_table()
    cache = _Cache(table, size=32)
    monkeypatch.setattr("interceptor_lib.pipeline.prepare.load_index", lambda params: table)
    monkeypatch.setattr("interceptor_lib.pipeline.prepare.crop_cache", lambda params: cache)
    return load_params("smoke", overrides={"output_dir": str(tmp_path),
                                           "train.pretext": {"steps": 3, "batch_size": 4}})


def test_the_pretext_backbone_loads_as_every_models_backbone_with_one_shared_trunk(smoke):
    from interceptor_lib.pipeline.stages import build_model

    assert smoke.train.weights == smoke.train.pretext.out and smoke.train.pretrained
    rec = pretrain_backbone(smoke, progress=False)
    assert not rec["reused"] and rec["real_training_crops"] == 9 and rec["curve"][-1]["step"] == 3
    from safetensors.torch import load_file
    saved = load_file(smoke.train.pretext.out)
    bb = create_backbone(smoke.train.backbone, True, smoke.train.weights)
    state = bb.model.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in state)  # everything but the pretext classifier
    assert set(saved) - set(state) == {"classifier.weight", "classifier.bias"}
    random = create_backbone(smoke.train.backbone, False).model.state_dict()
    assert any(not torch.equal(state[k], random[k]) for k in state if state[k].is_floating_point())
    ll, tm = build_model(smoke, "ll", None), build_model(smoke, "tm", None)
    a, b = ll.trunk_state(), tm.trunk_state()
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the ensemble runs it once


def test_the_pretext_is_reused_when_nothing_changed_and_redone_when_something_did(smoke, tmp_path):
    first = pretrain_backbone(smoke, progress=False)
    mtime = os.stat(smoke.train.pretext.out).st_mtime_ns
    again = pretrain_backbone(smoke, progress=False)
    assert again["reused"] and again["fingerprint"] == first["fingerprint"]
    assert os.stat(smoke.train.pretext.out).st_mtime_ns == mtime
    longer = load_params("smoke", overrides={"output_dir": str(tmp_path), "train.pretext": {"steps": 4, "batch_size": 4}})
    redone = pretrain_backbone(longer, progress=False)
    assert not redone["reused"] and redone["fingerprint"] != first["fingerprint"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_pretext_settings_that_cannot_work_are_refused_naming_the_key(tmp_path):
    base = {"output_dir": str(tmp_path)}
    with pytest.raises(ParamsError, match="train.pretext.steps.*train.pretrained: true"):
        load_params("smoke", overrides={**base, "train.pretrained": False})
    with pytest.raises(ParamsError, match="leave train.weights unset"):
        load_params("smoke", overrides={**base, "train.weights": str(tmp_path / "other.safetensors")},
                    check_paths=False)
    with pytest.raises(ParamsError, match="train.pretext"):
        load_params("smoke", overrides={**base, "train.pretext": {"local": 1.5}})
    off = load_params("kaggle", check_paths=False)
    assert off.train.pretext.steps == 0 and off.train.weights != off.train.pretext.out
    with pytest.raises(PretextError, match="steps is 0"):
        pretrain_backbone(off)


def test_a_stage_without_the_pretext_backbone_says_to_run_notebook_00(tmp_path):
    from interceptor_lib.pipeline.stages import build_model

    params = load_params("smoke", overrides={"output_dir": str(tmp_path)})
    with pytest.raises(InterceptorError, match="00_prepare_data"):
        build_model(params, "ll", None)

