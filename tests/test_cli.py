"""The command line: real work on a small tree, and clean errors (exit 2, no traceback)."""

import subprocess
import sys

import pandas as pd
from test_indexers import make_celebdf, make_dfdc

from interceptor_lib.data.table import read_table


def cli(*args):
    return subprocess.run([sys.executable, "-m", "interceptor_lib", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_index_writes_the_common_table(tmp_path):
    make_celebdf(tmp_path / "celeb")
    out = tmp_path / "idx" / "celebdf.csv"
    r = cli("index", "--dataset", "celebdf", "--root", tmp_path / "celeb", "--out", out, "--option", "val_fraction=0.3")
    assert r.returncode == 0, r.stderr
    df = read_table(out)
    assert set(df["split"]) == {"train", "val", "test"}
    assert df.loc[df["video_id"] == "celebdf/YouTube-real/00003", "label"].item() == 0  # listed as "1" = real


def test_dfdc_chunk_option_is_parsed_as_json(tmp_path):
    make_dfdc(tmp_path / "dfdc", nested=True)
    out = tmp_path / "dfdc.csv"
    r = cli("index", "--dataset", "dfdc", "--root", tmp_path / "dfdc", "--out", out, "--option", "chunks=[0]")
    assert r.returncode == 0, r.stderr
    assert set(pd.read_csv(out)["chunk"]) == {0}


def test_wrong_root_exits_nonzero_with_the_expected_layout_and_no_traceback(tmp_path):
    make_celebdf(tmp_path / "celeb")
    r = cli("index", "--dataset", "ffpp", "--root", tmp_path / "celeb", "--out", tmp_path / "x.csv")
    assert r.returncode == 2
    assert "original_sequences" in r.stderr and "Traceback" not in r.stderr
    r = cli("index", "--dataset", "dfdc", "--root", tmp_path / "missing", "--out", tmp_path / "x.csv")
    assert r.returncode == 2 and "dfdc_train_part_" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.csv").exists()


def test_bad_option_and_bad_profile_are_user_errors(tmp_path):
    make_celebdf(tmp_path / "celeb")
    r = cli("index", "--dataset", "celebdf", "--root", tmp_path / "celeb", "--out", tmp_path / "x.csv",
            "--option", "val_fraktion=0.2")
    assert r.returncode == 2 and "val_fraktion" in r.stderr and "Traceback" not in r.stderr
    r = cli("params", "--profile", "kaggle")
    assert r.returncode == 2 and "datasets.ffpp.root" in r.stderr and "Traceback" not in r.stderr


def test_make_demo_data_then_index_it(tmp_path):
    r = cli("make-demo-data", "--out", tmp_path / "demo", "--scale", "tiny", "--seed", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "face_detection_rate" in r.stdout
    out = tmp_path / "ffpp.csv"
    r = cli("index", "--dataset", "ffpp", "--root", tmp_path / "demo" / "FaceForensics++", "--out", out)
    assert r.returncode == 0, r.stderr
    df = read_table(out)
    assert set(df["split"]) == {"train", "val", "test"}
    assert df["label"].mean() == 5 / 6  # two originals and ten fakes per pair


def test_first_hour_probes_exit_nonzero_in_the_projects_words(tmp_path):
    """What a new user tries with wrong input: each gets a message naming the input and what was
    expected, exit 2, no traceback."""
    make_celebdf(tmp_path / "celeb")
    for f in (tmp_path / "celeb").rglob("*.mp4"):
        f.unlink()  # the layout's folders, no videos
    r = cli("index", "--dataset", "celebdf", "--root", tmp_path / "celeb", "--out", tmp_path / "x.csv")
    assert r.returncode == 2 and "no videos found" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.csv").exists()
    r = cli("checkpoint", "verify", tmp_path / "nothing")
    assert r.returncode == 2 and "does not exist" in r.stderr and "interrupted" not in r.stderr
    (tmp_path / "a.png").write_bytes(b"x")
    r = cli("predict", tmp_path / "v.mp4", "--run", tmp_path, "--explain", tmp_path / "a.png")
    assert r.returncode == 2 and "--explain expects a folder" in r.stderr
    r = cli("predict", tmp_path / "v.mp4")
    assert r.returncode == 2 and "--run" in r.stderr and "Traceback" not in r.stderr
    r = cli("make-demo-data", "--out", tmp_path / "a.png", "--scale", "tiny", "--quiet")
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr


def test_params_ranges_and_extends_are_checked_naming_the_key_and_the_file(tmp_path):
    from interceptor_lib.params import load_params
    from interceptor_lib.errors import ParamsError
    import pytest

    for key, value, want in (("train.batch_size", -3, ">= 1"), ("preprocess.frames_per_video", 0, ">= 1"),
                             ("train.stages.stage2.replay", 1.0, "[0, 1)"), ("train.warmup_frac", 1.0, "< 1"),
                             ("preprocess.min_face_rate", 1.5, "<= 1"), ("train.stages.stage1.lr", -1e-3, "> 0"),
                             ("preprocess.boxes", "fast", "track or detect")):
        with pytest.raises(ParamsError, match=key.replace(".", r"\.")) as e:
            load_params("smoke", overrides={key: value}, check_paths=False)
        assert want in str(e.value), (key, str(e.value))
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: smoke\ntrain: {batch_size: 2}\n")
    assert load_params(path=mine, check_paths=False).train.batch_size == 2  # found in params/
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: nosuchprofile\n")
    with pytest.raises(ParamsError, match="bad.yaml") as e:
        load_params(path=bad, check_paths=False)
    assert "nosuchprofile" in str(e.value)
    r = cli("params", "--profile", "smoke")
    assert r.returncode == 0
    (tmp_path / "neg.yaml").write_text("extends: smoke\ntrain: {batch_size: -3}\n")
    r = cli("params", "--params", tmp_path / "neg.yaml")
    assert r.returncode == 2 and "train.batch_size" in r.stderr and "params OK" not in r.stderr


def test_corrupt_and_truncated_videos_are_named_in_our_words(tmp_path):
    from media import face_frames, write_video

    from interceptor_lib.data.video import VideoSource
    from interceptor_lib.errors import MediaError
    import pytest

    (tmp_path / "text.mp4").write_text("not a video")
    good = write_video(tmp_path / "good.mp4", face_frames(20))
    (tmp_path / "cut.mp4").write_bytes(good.read_bytes()[:600])
    for name in ("text.mp4", "cut.mp4", "missing.mp4"):
        with pytest.raises(MediaError) as e:
            src = VideoSource(tmp_path / name)
            src.info()
            src.read([0, 10])
        msg = str(e.value)
        assert name in msg and "Errno" not in msg, msg
        assert any(w in msg for w in ("truncated", "does not exist")), msg
