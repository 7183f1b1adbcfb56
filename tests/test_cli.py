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
