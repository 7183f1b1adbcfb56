"""Missing backbone weights stop a run before any preprocessing (check_backbone_weights, called by
prepare_data and ./run_all.sh), with a message naming train.weights and how to get the file."""

import huggingface_hub
import pytest

from interceptor_lib.params import load_params
from interceptor_lib.pipeline import prepare
from interceptor_lib.errors import ParamsError
from interceptor_lib.models.backbone import check_backbone_weights

B4 = {"train.backbone": "efficientnet_b4", "train.pretext.steps": 0, "train.pretrained": True,
      "train.weights": None}


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    """Empty Hugging Face and timm/torch-hub caches (the constant is read at import, so set too)."""
    hf = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return hf / "hub"


def kaggle_like(tmp_path, **overrides):
    return load_params("smoke", overrides={**B4, "output_dir": str(tmp_path / "out"), **overrides},
                       check_paths=False)


def check(params) -> None:
    check_backbone_weights(params.train, params.profile)   # as prepare_data and ./run_all.sh call it


def test_kaggle_like_params_without_weights_are_refused_naming_train_weights(empty_cache, tmp_path):
    with pytest.raises(ParamsError) as e:
        check(kaggle_like(tmp_path))
    msg = str(e.value)
    assert "train.weights" in msg and "model.weights" not in msg
    assert "/kaggle/input/<dataset>/model.safetensors" in msg and "timm/efficientnet_b4.ra2_in1k" in msg
    assert str(empty_cache) in msg   # where it looked


def test_a_weights_file_that_does_not_exist_is_refused(empty_cache, tmp_path):
    with pytest.raises(ParamsError, match=r"train\.weights.*does not exist"):
        check(kaggle_like(tmp_path, **{"train.weights": str(tmp_path / "nope.safetensors")}))


def test_an_existing_weights_file_or_cached_weights_pass(empty_cache, tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")   # existence is what is checked here; the model checks the contents
    check(kaggle_like(tmp_path, **{"train.weights": str(weights)}))
    repo = empty_cache / "models--timm--efficientnet_b4.ra2_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"x")
    check(kaggle_like(tmp_path))


@pytest.mark.parametrize("profile", ["demo", "smoke"])
def test_pretext_profiles_and_random_initialisation_pass(empty_cache, tmp_path, profile):
    check(load_params(profile, check_paths=False))   # the pretext backbone, made by notebook 00
    check(kaggle_like(tmp_path, **{"train.pretrained": False}))


def test_prepare_data_checks_the_weights_before_any_work(empty_cache, tmp_path, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("preprocessing started")

    monkeypatch.setattr(prepare, "generate_demo_data", no_work)
    monkeypatch.setattr(prepare, "index_datasets", no_work)
    with pytest.raises(ParamsError, match="train.weights"):
        prepare.prepare_data(kaggle_like(tmp_path), progress=False)
    assert not (tmp_path / "out").exists()
