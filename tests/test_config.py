"""Params files fail before any work, naming the key."""

import textwrap

import pytest

from interceptor_lib import REPO_ROOT
from interceptor_lib.params import load_params
from interceptor_lib.errors import ParamsError


def write(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_demo_and_smoke_profiles_load_and_smoke_extends_demo():
    demo, smoke = load_params("demo"), load_params("smoke")
    assert demo.demo_data.scale == "small" and smoke.demo_data.scale == "tiny"
    assert smoke.device == demo.device == "cpu"                      # inherited
    assert smoke.preprocess.face_size < demo.preprocess.face_size    # overridden
    assert smoke.output_dir == str(REPO_ROOT / "outputs" / "smoke")  # placeholders resolved per profile
    assert smoke.datasets["ffpp"].root == str(REPO_ROOT / "outputs/smoke/demo_data/FaceForensics++")


def test_kaggle_profile_names_the_missing_dataset_root():
    with pytest.raises(ParamsError, match=r"datasets\.ffpp\.root.*/kaggle/input/ff-c23"):
        load_params("kaggle")
    p = load_params("colab", check_paths=False)  # colab extends kaggle
    assert p.preprocess.frames_per_video == 32 and p.datasets["dfdc"].root.startswith("/content/drive")


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    p = write(tmp_path, """
        profile: t
        preprocess:
          frames_per_vidoe: 8
        """)
    with pytest.raises(ParamsError, match=r"'preprocess\.frames_per_vidoe'.*did you mean 'frames_per_video'"):
        load_params(path=p)


def test_wrong_type_is_named(tmp_path):
    p = write(tmp_path, """
        profile: t
        preprocess: {margin: "wide"}
        """)
    with pytest.raises(ParamsError, match=r"'preprocess\.margin' must be float"):
        load_params(path=p)
    p = write(tmp_path, "profile: t\npreprocess: {frames_per_video: true}\n")
    with pytest.raises(ParamsError, match="frames_per_video' must be int"):
        load_params(path=p)


def test_missing_root_and_unknown_indexer_option(tmp_path):
    p = write(tmp_path, f"""
        profile: t
        datasets:
          celebdf: {{root: {tmp_path}/nowhere}}
        """)
    with pytest.raises(ParamsError, match=r"datasets\.celebdf\.root"):
        load_params(path=p)
    p = write(tmp_path, f"""
        profile: t
        datasets:
          celebdf: {{root: {tmp_path}, options: {{val_fraktion: 0.2}}}}
        """)
    with pytest.raises(ParamsError, match=r"datasets\.celebdf\.options\.val_fraktion"):
        load_params(path=p)
    p = write(tmp_path, "profile: t\ndatasets:\n  celebdf: {enabled: false}\n")
    with pytest.raises(ParamsError, match=r"missing params key 'datasets\.celebdf\.root'"):
        load_params(path=p)


def test_overrides_are_validated_like_the_file():
    p = load_params("smoke", overrides={"preprocess.workers": 1})
    assert p.preprocess.workers == 1
    with pytest.raises(ParamsError, match="preprocess.wokers"):
        load_params("smoke", overrides={"preprocess.wokers": 1})


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ParamsError, match="demo.*smoke"):
        load_params("nosuchprofile")


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("INTERCEPTOR_PROFILE", "demo")
    assert load_params().profile == "demo"


def test_augment_and_trainable_stages_params():
    from interceptor_lib.params import load_params
    from interceptor_lib.errors import ParamsError

    p = load_params("demo", overrides={"train.trainable_stages": None, "train.augment.p_jpeg": 0.25})
    assert p.train.trainable_stages is None and p.train.augment.p_jpeg == 0.25
    with pytest.raises(ParamsError, match="p_jpeg"):
        load_params("demo", overrides={"train.augment.p_jpg": 0.0})  # misspelt key named
    with pytest.raises(ParamsError, match="probability"):
        load_params("demo", overrides={"train.augment.p_blur": 1.5})
    with pytest.raises(ParamsError, match="jpeg_quality"):
        load_params("demo", overrides={"train.augment.jpeg_quality": [90, 60]})


def test_stage_balanced_draws_reach_the_trainer_and_replay_needs_them():
    from interceptor_lib.pipeline.stages import train_config
    p = load_params("demo", overrides={"train.stages.stage4.balanced": False, "train.stages.stage4.replay": 0.0})
    assert train_config(p, p.train.stages["stage4"]).balanced_sampling is False
    assert train_config(p, p.train.stages["stage1"]).balanced_sampling is True
    with pytest.raises(ParamsError, match="stage4.replay' needs balanced draws"):
        load_params("demo", overrides={"train.stages.stage4.balanced": False})


def test_stage_pseudo_fakes_is_off_only_or_a_share_and_its_transforms_are_checked(tmp_path):
    from interceptor_lib.layout import stage_settings
    from interceptor_lib.pipeline.stages import pseudo_fakes, train_config
    f = write(tmp_path, """
        extends: demo
        train:
          stages:
            stage1: {dataset: ffpp, pseudo_fakes: off}
            stage2: {dataset: celebdf, pseudo_fakes: only}
            stage3: {dataset: wilddeepfake, pseudo_fakes: 0.25}
    """)
    p = load_params(path=f)
    st = p.train.stages
    assert [st[s].pseudo_fakes for s in ("stage1", "stage2", "stage3")] == ["off", "only", 0.25]  # YAML's off is false
    assert pseudo_fakes(p, st["stage1"]) is None and pseudo_fakes(p, st["stage2"]).only
    made = pseudo_fakes(p, st["stage3"])
    assert made.share == 0.25 and made.margin == p.preprocess.margin and made.params == p.train.pseudo_fakes
    assert train_config(p, st["stage3"]).pseudo_fakes == 0.25
    # the transforms are a stage's setting only where it makes pseudo-fakes
    assert "train.pseudo_fakes.rgb_shift" in stage_settings(p, "stage2")
    assert "train.pseudo_fakes.rgb_shift" not in stage_settings(p, "stage1")
    for bad, match in ((1.5, "share"), ("yes", "share"), (-0.1, "share")):
        with pytest.raises(ParamsError, match=f"stage1.pseudo_fakes.*{match}"):
            load_params("demo", overrides={"train.stages.stage1.pseudo_fakes": bad})
    with pytest.raises(ParamsError, match="needs balanced draws"):
        load_params("demo", overrides={"train.stages.stage1.pseudo_fakes": 0.5, "train.stages.stage1.balanced": False})
    with pytest.raises(ParamsError, match="train.pseudo_fakes': ratios"):
        load_params("demo", overrides={"train.pseudo_fakes.ratios": [0.5, 1.5]})
    with pytest.raises(ParamsError, match="p_downscale \\+ p_sharpen"):
        load_params("demo", overrides={"train.pseudo_fakes.p_sharpen": 0.8})
    with pytest.raises(ParamsError, match="evaluation.pseudo_fakes.models"):
        load_params("demo", overrides={"evaluation.pseudo_fakes.models": ["effnet"]})


def test_export_formats_are_known_and_distinct():
    assert load_params("demo").export.formats == ["torchscript"]  # ONNX opt in on the demo
    assert load_params("kaggle", check_paths=False).export.formats == ["torchscript", "onnx"]
    assert load_params("demo", overrides={"export.formats": []}).export.formats == []
    for bad in (["tflite"], ["onnx", "onnx"]):
        with pytest.raises(ParamsError, match="export.formats"):
            load_params("demo", overrides={"export.formats": bad})


def test_extends_is_looked_up_beside_the_file_first(tmp_path):
    write(tmp_path, "description: the base beside it\nseed: 7\n", name="base.yaml")
    p = write(tmp_path, "extends: base\nseed: 9\n", name="mine.yaml")
    params = load_params(path=p, check_paths=False)
    assert params.description == "the base beside it" and params.seed == 9 and params.profile == "mine"
    # beside wins over params/: a local smoke.yaml shadows the smoke profile
    write(tmp_path, "extends: demo\ndescription: local smoke\n", name="smoke.yaml")
    assert load_params(path=write(tmp_path, "extends: smoke\n", name="other.yaml"),
                       check_paths=False).description == "local smoke"


def test_a_user_file_anywhere_extends_a_profile_from_params(tmp_path):
    p = write(tmp_path, "extends: smoke\npreprocess: {frames_per_video: 3}\n", name="my_session.yaml")
    params, smoke = load_params(path=p, check_paths=False), load_params("smoke", check_paths=False)
    assert params.preprocess.frames_per_video == 3
    assert params.preprocess.face_size == smoke.preprocess.face_size   # from params/smoke.yaml
    assert params.demo_data.scale == "tiny" and params.profile == "my_session"
    # a file named like the profile it extends gets the profile, not itself
    p = write(tmp_path, "extends: smoke\nseed: 5\n", name="smoke.yaml")
    assert load_params(path=p, check_paths=False).demo_data.scale == "tiny"


def test_a_missing_base_names_the_asking_file_the_places_and_the_profiles(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "extends: nowhere\n", name="base.yaml")
    p = write(tmp_path, "extends: sub/base.yaml\n", name="top.yaml")
    with pytest.raises(ParamsError) as e:
        load_params(path=p, check_paths=False)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'sub' / 'base.yaml'}: 'extends: nowhere'")   # the file that asked
    assert str(tmp_path / "sub" / "nowhere.yaml") in msg and str(REPO_ROOT / "params" / "nowhere.yaml") in msg
    assert "'kaggle'" in msg and "'smoke'" in msg


def test_an_extends_cycle_is_refused(tmp_path):
    write(tmp_path, "extends: b\n", name="a.yaml")
    write(tmp_path, "extends: a\n", name="b.yaml")
    with pytest.raises(ParamsError, match="cycle"):
        load_params(path=tmp_path / "a.yaml", check_paths=False)
