"""Dataset indexers on tiny trees of empty placeholder files (indexers never decode media)."""

from __future__ import annotations

import io
import json
import tarfile
import warnings

import pytest

from interceptor_lib.data.indexers import (DATASET_LAYOUTS, INDEXERS, IndexerWarning, index_dataset,
                                           official_test_ids)
from interceptor_lib.data.sequences import sequence_files
from interceptor_lib.data.table import check_leakage
from interceptor_lib.errors import DatasetLayoutError, ParamsError

# --------------------------------------------------------------------------- tree builders


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


FFPP_PAIRS = {"train": [["000", "001"], ["002", "003"]], "val": [["004", "005"]],
              "test": [["007", "006"]]}


def make_ffpp(root, mirror=False, methods=("Deepfakes", "Face2Face"), splits=True, extra_ids=()):
    """FF++ tree: originals and both fakes of every pair for `methods`; split JSONs in <root>/splits
    (official) or <root>/../ffpp_splits (mirror, returned)."""
    ids = [v for pairs in FFPP_PAIRS.values() for pair in pairs for v in pair] + list(extra_ids)
    orig_dir = root / "original" if mirror else root / "original_sequences/youtube/c23/videos"
    for vid in ids:
        touch(orig_dir / f"{vid}.mp4")
    for method in methods:
        folder = root / method if mirror else root / f"manipulated_sequences/{method}/c23/videos"
        for pairs in FFPP_PAIRS.values():
            for a, b in pairs:
                touch(folder / f"{a}_{b}.mp4")
                touch(folder / f"{b}_{a}.mp4")
    if mirror:
        (root / "csv").mkdir(parents=True, exist_ok=True)
    splits_dir = root.parent / f"{root.name}_splits" if mirror else root / "splits"
    if splits:
        splits_dir.mkdir(parents=True, exist_ok=True)
        for split, pairs in FFPP_PAIRS.items():
            (splits_dir / f"{split}.json").write_text(json.dumps(pairs))
    return splits_dir


CELEB_TEST_LIST = ["1 Celeb-real/id0_0001.mp4", "1 YouTube-real/00003.mp4",
                   "0 Celeb-synthesis/id1_id2_0000.mp4", "0 Celeb-synthesis/id9_id8_0000.mp4"]


def make_celebdf(root, videos_subdir=False, test_list=CELEB_TEST_LIST):
    """Celeb-DF tree: identities id0..id5 with two real videos each, fakes targeting each identity,
    four YouTube videos; the test list's last entry has no file on disk."""
    sub = "videos/" if videos_subdir else ""
    for i in range(6):
        for n in ("0000", "0001"):
            touch(root / f"Celeb-real/{sub}id{i}_{n}.mp4")
        touch(root / f"Celeb-synthesis/{sub}id{i}_id{(i + 1) % 6}_0000.mp4")
    touch(root / f"Celeb-synthesis/{sub}id3_id4_0007.mp4")  # its original id3_0007 does not exist
    for n in range(4):
        touch(root / f"YouTube-real/{sub}{n:05d}.mp4")
    (root / "List_of_testing_videos.txt").write_text("\n".join(test_list) + "\n")


def make_tar(path, members):
    """A real tar.gz whose `members` (names as stored) are tiny files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in members:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))


def make_wilddeepfake(root):
    """Six tars (enough to use the parallel listing); 4.tar.gz stores names without the './'."""
    make_tar(root / "real_train/1.tar.gz", ["./1/real/0/0.png", "./1/real/0/1.png", "./1/real/5/0.png"])
    make_tar(root / "real_train/2.tar.gz", ["./2/real/0/0.png"])
    make_tar(root / "fake_train/3.tar.gz", ["./3/fake/0/0.png", "./3/fake/1/0.png"])
    make_tar(root / "fake_train/4.tar.gz", ["4/fake/7/0.png", "4/fake/7/1.png"])
    make_tar(root / "real_test/5.tar.gz", ["./5/real/2/0.png"])
    make_tar(root / "fake_test/6.tar.gz", ["./6/fake/3/0.png", "./6/fake/3/1.png"])


DFDC_PARTS = {
    0: {"r1.mp4": ("REAL", None), "f1.mp4": ("FAKE", "r1.mp4")},
    1: {"f2.mp4": ("FAKE", "r1.mp4"), "r2.mp4": ("REAL", None), "f3.mp4": ("FAKE", "gone.mp4")},
    2: {"r3.mp4": ("REAL", None), "listed_missing.mp4": ("REAL", None)},
}


def make_dfdc(root, nested=False, parts=DFDC_PARTS):
    """DFDC parts (flat or nested Kaggle); 'listed_missing.mp4' has no file, 'stray.mp4' no entry."""
    for k, entries in parts.items():
        folder = root / (f"dfdc_train_part_{k:02d}/dfdc_train_part_{k}" if nested
                         else f"dfdc_train_part_{k}")
        folder.mkdir(parents=True)
        meta = {name: {"label": label, "split": "train", "original": orig}
                for name, (label, orig) in entries.items()}
        (folder / "metadata.json").write_text(json.dumps(meta))
        for name in entries:
            if name != "listed_missing.mp4":
                touch(folder / name)
    touch(root / ("dfdc_train_part_02/dfdc_train_part_2" if nested else "dfdc_train_part_2")
          / "stray.mp4")


def index_quietly(name, root, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IndexerWarning)
        return index_dataset(name, root, **options)


def by_id(df):
    return df.set_index("video_id")


# --------------------------------------------------------------------------- FaceForensics++


def test_ffpp_pair_shares_split_and_group_and_fakes_point_to_target(tmp_path):
    make_ffpp(tmp_path)
    df = by_id(index_quietly("ffpp", tmp_path))
    pair = ["ffpp/original/006", "ffpp/original/007", "ffpp/Deepfakes/006_007",
            "ffpp/Deepfakes/007_006", "ffpp/Face2Face/006_007", "ffpp/Face2Face/007_006"]
    assert set(df.loc[pair, "split"]) == {"test"}
    assert set(df.loc[pair, "group"]) == {"ffpp/pair/006_007"}
    assert df.loc["ffpp/Deepfakes/007_006", "original_id"] == "ffpp/original/007"
    assert df.loc["ffpp/Face2Face/006_007", "original_id"] == "ffpp/original/006"
    assert df.loc["ffpp/original/006", "label"] == 0 and df.loc["ffpp/original/006", "method"] == "real"
    assert df.loc["ffpp/Deepfakes/006_007", "label"] == 1
    assert df.loc["ffpp/Deepfakes/006_007", "method"] == "Deepfakes"
    assert df.loc[["ffpp/original/004", "ffpp/original/000"], "split"].tolist() == ["val", "train"]
    assert len(df) == 8 + 8 * 2 and df["path"].str.startswith(str(tmp_path)).all()
    assert official_test_ids("ffpp", tmp_path, methods=("Deepfakes", "Face2Face")) == \
        set(df.index[df["split"] == "test"])


def test_ffpp_flat_mirror_with_splits_dir_matches_official(tmp_path):
    make_ffpp(tmp_path / "official")
    splits_dir = make_ffpp(tmp_path / "mirror", mirror=True)
    official = index_quietly("ffpp", tmp_path / "official").drop(columns="path")
    mirror = index_quietly("ffpp", tmp_path / "mirror", splits_dir=splits_dir).drop(columns="path")
    assert mirror.equals(official)


@pytest.mark.parametrize("mirror", [False, True])
def test_ffpp_missing_splits_say_where_to_get_them(tmp_path, mirror):
    make_ffpp(tmp_path, mirror=mirror, splits=False)
    with pytest.raises(DatasetLayoutError, match="splits_dir") as err:
        index_quietly("ffpp", tmp_path)
    assert "train.json" in str(err.value) and "FaceForensics" in str(err.value)


def test_ffpp_warns_about_unlisted_videos_and_absent_methods(tmp_path):
    make_ffpp(tmp_path, extra_ids=["999"])
    with pytest.warns(IndexerWarning) as record:
        df = index_dataset("ffpp", tmp_path)
    messages = " ".join(str(w.message) for w in record)
    assert "1 video(s) whose ids are in no split JSON" in messages
    assert "FaceSwap" in messages  # requested by default, absent from this copy
    assert "ffpp/original/999" not in set(df["video_id"])


def test_ffpp_actors_grouped_by_connected_components(tmp_path):
    make_ffpp(tmp_path)
    actors = tmp_path / "original_sequences/actors/c23/videos"
    fakes = tmp_path / "manipulated_sequences/DeepFakeDetection/c23/videos"
    for actor in ("01", "02", "03", "04", "05"):
        touch(actors / f"{actor}__walking_outside.mp4")
    touch(fakes / "01_02__walking_outside__ABCD1234.mp4")
    touch(fakes / "02_03__walking_outside__EFGH5678.mp4")
    touch(fakes / "04_05__walking_outside__IJKL9012.mp4")
    df = by_id(index_quietly("ffpp", tmp_path, include_actors=True))
    first = ["ffpp/actors/01__walking_outside", "ffpp/actors/03__walking_outside",
             "ffpp/DeepFakeDetection/02_03__walking_outside__EFGH5678"]  # 01-02-03 connected
    assert set(df.loc[first, "group"]) == {"ffpp/actors/01"}
    assert len(set(df.loc[first, "split"])) == 1
    assert df.loc["ffpp/actors/05__walking_outside", "group"] == "ffpp/actors/04"
    fake = df.loc["ffpp/DeepFakeDetection/01_02__walking_outside__ABCD1234"]
    assert (fake["label"], fake["original_id"]) == (1, "ffpp/actors/01__walking_outside")
    assert "ffpp/actors/01__walking_outside" not in set(index_quietly("ffpp", tmp_path)["video_id"])
    check_leakage(df.reset_index())


def test_ffpp_rejects_a_celebdf_tree(tmp_path):
    make_celebdf(tmp_path)
    with pytest.raises(DatasetLayoutError, match="original_sequences") as err:
        index_dataset("ffpp", tmp_path)
    assert "Celeb-synthesis/" in str(err.value)  # shows what is actually there


# --------------------------------------------------------------------------- Celeb-DF


def test_celebdf_test_list_polarity_and_train_excludes_test_list(tmp_path):
    make_celebdf(tmp_path)
    with pytest.warns(IndexerWarning, match="1 video"):  # id9_id8_0000 is listed but absent
        df = index_dataset("celebdf", tmp_path)
    rows = by_id(df)
    assert rows.loc["celebdf/Celeb-real/id0_0001", ["label", "split"]].tolist() == [0, "test"]
    assert rows.loc["celebdf/YouTube-real/00003", ["label", "split"]].tolist() == [0, "test"]
    assert rows.loc["celebdf/Celeb-synthesis/id1_id2_0000", ["label", "split"]].tolist() == [1, "test"]
    test_ids = official_test_ids("celebdf", tmp_path)
    assert "celebdf/Celeb-synthesis/id9_id8_0000" in test_ids
    assert not df[df["split"] != "test"]["video_id"].isin(test_ids).any()
    on_disk = test_ids - {"celebdf/Celeb-synthesis/id9_id8_0000"}
    assert set(df.loc[df["split"] == "test", "video_id"]) == on_disk
    assert {"train", "val"} <= set(df["split"])
    check_leakage(df, {"celebdf": test_ids})


def test_celebdf_groups_and_originals(tmp_path):
    make_celebdf(tmp_path)
    rows = by_id(index_quietly("celebdf", tmp_path))
    fake = rows.loc["celebdf/Celeb-synthesis/id2_id3_0000"]
    assert (fake["group"], fake["original_id"]) == ("celebdf/id2", "celebdf/Celeb-real/id2_0000")
    assert fake["method"] == "Celeb-synthesis"
    assert rows.loc["celebdf/Celeb-synthesis/id3_id4_0007", "original_id"] == ""
    assert rows.loc["celebdf/YouTube-real/00002", "group"] == "celebdf/yt00002"
    assert rows.loc["celebdf/Celeb-real/id2_0001", "group"] == "celebdf/id2"


def test_celebdf_videos_subfolder_gives_the_same_table(tmp_path):
    make_celebdf(tmp_path / "plain")
    make_celebdf(tmp_path / "nested", videos_subdir=True)
    plain = index_quietly("celebdf", tmp_path / "plain")
    nested = index_quietly("celebdf", tmp_path / "nested")
    assert nested.drop(columns="path").equals(plain.drop(columns="path"))
    assert nested["path"].str.contains("/videos/").all()


def test_celebdf_label_disagreeing_with_folder_raises(tmp_path):
    make_celebdf(tmp_path, test_list=["0 Celeb-real/id0_0000.mp4"])  # 0 = fake, but a real folder
    with pytest.raises(DatasetLayoutError, match="disagree"):
        index_dataset("celebdf", tmp_path)


def test_celebdf_missing_test_list_raises(tmp_path):
    make_celebdf(tmp_path)
    (tmp_path / "List_of_testing_videos.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="List_of_testing_videos.txt"):
        index_dataset("celebdf", tmp_path)


# --------------------------------------------------------------------------- WildDeepfake


def test_wilddeepfake_one_row_per_tar_sequence(tmp_path):
    make_wilddeepfake(tmp_path)
    df = index_dataset("wilddeepfake", tmp_path)
    rows = by_id(df)
    assert len(df) == 8
    seq = rows.loc["wilddeepfake/real_train/1/5"]
    assert (seq["member"], seq["label"], seq["path"]) == \
        ("./1/real/5/", 0, str(tmp_path / "real_train/1.tar.gz"))
    assert rows.loc["wilddeepfake/fake_train/4/7", "member"] == "4/fake/7/"  # no './' stored
    assert rows.loc["wilddeepfake/fake_train/4/7", "method"] == "wilddeepfake"
    assert rows.loc["wilddeepfake/fake_test/6/3", ["label", "split"]].tolist() == [1, "test"]
    assert rows.loc["wilddeepfake/real_test/5/2", ["label", "split"]].tolist() == [0, "test"]
    train_like = df[df["split"] != "test"]
    assert set(train_like["split"]) == {"train", "val"}
    same_tar = rows.loc[["wilddeepfake/real_train/1/0", "wilddeepfake/real_train/1/5"], "split"]
    assert same_tar.nunique() == 1
    assert official_test_ids("wilddeepfake", tmp_path) == set(df.loc[df["split"] == "test", "video_id"])


def test_wilddeepfake_inner_folder_disagreeing_with_subset_raises(tmp_path):
    make_tar(tmp_path / "fake_train/9.tar.gz", ["./9/real/0/0.png"])
    with pytest.raises(DatasetLayoutError, match="9.tar.gz"):
        index_dataset("wilddeepfake", tmp_path)


def test_wilddeepfake_mirror_with_sequence_keys(tmp_path):
    for name in ("1_0000.png", "1_0001.png", "1_2_0000.png", "1_2_0001.png", "8_0000.png"):
        touch(tmp_path / "train/fake" / name)
    for frame in ("0.png", "1.png"):
        touch(tmp_path / "valid/real/clipA" / frame)
        touch(tmp_path / "test/real/clipB" / frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IndexerWarning)
        df = index_dataset("wilddeepfake", tmp_path)
    rows = by_id(df)
    key = rows.loc["wilddeepfake/train/fake/1"]
    assert (key["member"], key["path"], key["split"]) == ("1_*", str(tmp_path / "train/fake"), "train")
    assert [p.name for p in sequence_files(key["path"], key["member"])] == ["1_0000.png", "1_0001.png"]
    assert rows.loc["wilddeepfake/train/fake/1_2", "member"] == "1_2_*"
    folder = rows.loc["wilddeepfake/valid/real/clipA"]
    assert (folder["member"], folder["split"], folder["label"]) == ("clipA/", "val", 0)
    assert len(sequence_files(folder["path"], folder["member"])) == 2
    assert rows.loc["wilddeepfake/test/real/clipB", "split"] == "test"


def test_wilddeepfake_mirror_without_sequence_keys_warns(tmp_path):
    for name in ("a.png", "b.png", "c.jpg"):
        touch(tmp_path / "train/real" / name)
    touch(tmp_path / "test/fake/z.png")
    with pytest.warns(IndexerWarning, match="sequence-level grouping"):
        df = index_dataset("wilddeepfake", tmp_path)
    row = by_id(df).loc["wilddeepfake/train/real/c.jpg"]
    assert (row["member"], row["path"]) == ("", str(tmp_path / "train/real/c.jpg"))
    assert len(df) == 4


# --------------------------------------------------------------------------- DFDC


def test_dfdc_flat_and_nested_give_the_same_rows(tmp_path):
    make_dfdc(tmp_path / "flat")
    make_dfdc(tmp_path / "nested", nested=True)
    flat = index_quietly("dfdc", tmp_path / "flat")
    nested = index_quietly("dfdc", tmp_path / "nested")
    assert nested.drop(columns="path").equals(flat.drop(columns="path"))
    assert sorted(flat["chunk"].unique()) == [0, 1, 2]


def test_dfdc_groups_follow_originals_across_parts(tmp_path):
    make_dfdc(tmp_path)
    with pytest.warns(IndexerWarning) as record:
        df = index_dataset("dfdc", tmp_path)
    messages = " ".join(str(w.message) for w in record)
    assert "1 file(s) listed in metadata.json but missing" in messages
    assert "1 mp4(s) listed in no metadata.json" in messages
    rows = by_id(df)
    family = ["dfdc/r1", "dfdc/f1", "dfdc/f2"]  # f2 sits in part 1, its original r1 in part 0
    assert set(rows.loc[family, "group"]) == {"dfdc/r1"}
    assert len(set(rows.loc[family, "split"])) == 1
    assert rows.loc["dfdc/f2", ["original_id", "chunk", "label", "method"]].tolist() == \
        ["dfdc/r1", 1, 1, "dfdc"]
    assert rows.loc["dfdc/f3", ["group", "original_id"]].tolist() == ["dfdc/gone", ""]
    assert rows.loc["dfdc/r3", ["group", "original_id", "label", "method"]].tolist() == \
        ["dfdc/r3", "", 0, "real"]
    assert rows["has_audio"].all()
    # Indexing one part keeps groups and splits (hash-based), drops the absent original's id.
    only = by_id(index_quietly("dfdc", tmp_path, chunks=[1]))
    assert only.loc["dfdc/f2", ["group", "split", "original_id"]].tolist() == \
        ["dfdc/r1", rows.loc["dfdc/r1", "split"], ""]
    with pytest.raises(DatasetLayoutError, match="chunks \\[7\\]"):
        index_dataset("dfdc", tmp_path, chunks=[7])


def test_dfdc_root_that_is_one_part(tmp_path):
    make_dfdc(tmp_path)
    df = index_quietly("dfdc", tmp_path / "dfdc_train_part_1")
    assert set(df["video_id"]) == {"dfdc/f2", "dfdc/r2", "dfdc/f3"}


def test_dfdc_public_test_set_takes_the_test_split(tmp_path):
    parts = {0: {f"r{i}.mp4": ("REAL", None) for i in range(60)}}
    make_dfdc(tmp_path / "no_test", parts=parts)
    assert "test" in set(index_quietly("dfdc", tmp_path / "no_test")["split"])
    make_dfdc(tmp_path / "with_test", parts=parts)
    touch(tmp_path / "with_test/test/videos/t1.mp4")
    touch(tmp_path / "with_test/test/videos/t2.mp4")
    (tmp_path / "with_test/test/labels.csv").write_text("filename,label\nt1.mp4,1\nt2.mp4,0\n")
    df = index_quietly("dfdc", tmp_path / "with_test")
    test = df[df["split"] == "test"]
    assert set(test["video_id"]) == {"dfdc/test/t1", "dfdc/test/t2"}
    t1 = by_id(test).loc["dfdc/test/t1"]
    assert [t1["label"], t1["chunk"], t1["group"]] == [1, -1, "dfdc/test/t1"]
    assert by_id(test).loc["dfdc/test/t2", "label"] == 0
    assert official_test_ids("dfdc", tmp_path / "with_test") == {"dfdc/test/t1", "dfdc/test/t2"}
    assert official_test_ids("dfdc", tmp_path / "no_test") == set()


# --------------------------------------------------------------------------- all indexers


def build(name, root):
    """A valid tree for dataset `name` under `root` (no options needed to index it)."""
    if name == "ffpp":
        make_ffpp(root)
    elif name == "celebdf":
        make_celebdf(root)
    elif name == "wilddeepfake":
        make_wilddeepfake(root)
    else:
        make_dfdc(root)


@pytest.mark.parametrize("name", sorted(INDEXERS))
def test_every_index_passes_leakage_check_with_prefixed_ids(tmp_path, name):
    build(name, tmp_path)
    df = index_quietly(name, tmp_path)
    check_leakage(df, {name: official_test_ids(name, tmp_path)})
    assert df["video_id"].str.startswith(f"{name}/").all() and (df["dataset"] == name).all()
    assert set(df["label"]) == {0, 1}


@pytest.mark.parametrize("name", sorted(INDEXERS))
@pytest.mark.parametrize("root_kind", ["empty", "missing", "other_dataset"])
def test_wrong_root_shows_expected_layout(tmp_path, name, root_kind):
    root = tmp_path / "root"
    if root_kind == "empty":
        root.mkdir()
    elif root_kind == "other_dataset":
        build("celebdf" if name != "celebdf" else "dfdc", root)
    with pytest.raises(DatasetLayoutError) as err:
        index_quietly(name, root)
    message = str(err.value)
    assert "Expected layout" in message
    assert DATASET_LAYOUTS[name].splitlines()[0].strip() in message
    assert f"Found at {root}" in message


def test_unknown_option_and_dataset_are_rejected(tmp_path):
    with pytest.raises(ParamsError, match="val_fracton") as err:
        index_dataset("celebdf", tmp_path, val_fracton=0.2)
    assert "val_fraction" in str(err.value)
    with pytest.raises(ParamsError, match="split_dir"):
        official_test_ids("ffpp", tmp_path, split_dir="x")
    with pytest.raises(ParamsError, match="ffpp"):
        index_dataset("faceforensics", tmp_path)


def test_wilddeepfake_validation_is_held_out_per_class(tmp_path):
    # 2 real and 9 fake training tars: val takes tars of both classes and training keeps both
    for subset, n in (("real_train", 2), ("fake_train", 9), ("real_test", 1), ("fake_test", 1)):
        cls = subset.split("_")[0]
        for i in range(1, n + 1):
            make_tar(tmp_path / subset / f"{i}.tar.gz", [f"./{i}/{cls}/0/0.png", f"./{i}/{cls}/0/1.png"])
    df = index_quietly("wilddeepfake", tmp_path, val_fraction=0.3)
    for split in ("train", "val"):
        assert set(df.loc[df["split"] == split, "label"]) == {0, 1}, split
