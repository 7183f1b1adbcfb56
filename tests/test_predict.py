"""Prediction on real media files with a tiny trained-run folder (LL, TM and AV on test_efficientnet):
scores, per-member results, the CLI's JSON and table, Grad-CAM files, and clean errors for bad inputs."""

import json
import subprocess
import sys
from dataclasses import asdict

import cv2
from pathlib import Path
import pandas as pd
import pytest
import torch
from media import face_frames, noise_frames, tone, write_corrupt, write_video

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.ensemble.score import member_video_probs
from interceptor_lib.ensemble.store import find_member_checkpoints, load_ensemble, save_ensemble_config
from interceptor_lib.errors import InterceptorError
from interceptor_lib.inference.format import format_table, results_table, write_results
from interceptor_lib.inference.inputs import collect_inputs, sample_test_videos
from interceptor_lib.inference.predict import predict_paths
from interceptor_lib.layout import RunPaths
from interceptor_lib.models import create_model
from interceptor_lib.training.checkpoint import save_checkpoint

MEMBERS = ("ll", "tm", "av")
PREPROCESS = PreprocessParams(frames_per_video=4, clips_per_video=2, clip_len=4, face_size=64, audio_window_s=0.5)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """<out>/runs/<m>/stage1/{checkpoints/epoch-001, done.json} + ensemble/ensemble.json, and media files."""
    out = tmp_path_factory.mktemp("run")
    for i, name in enumerate(MEMBERS):
        torch.manual_seed(i)
        m = create_model(name, backbone="test_efficientnet", pretrained=False)
        ckpt = out / "runs" / name / "stage1" / "checkpoints" / "epoch-001"
        save_checkpoint(ckpt, {"model": m.state_dict(), "config": {"model_name": name, "model": asdict(m.config)}})
        (ckpt.parent.parent / "done.json").write_text(json.dumps({"best": str(ckpt)}))
    save_ensemble_config(out, find_member_checkpoints(RunPaths.at(out)), {"ll": 0.5, "tm": 0.3, "av": 0.2},
                         threshold=0.5, preprocess=PREPROCESS, metadata={"profile": "test"},
                         audio={"weights": {"ll": 0.1, "tm": 0.2, "av": 0.7}, "temperature": None})
    media = out / "media"
    files = {
        "face": write_video(media / "face.mp4", face_frames(24)),
        "voice": write_video(media / "sub" / "voice.mp4", face_frames(24, seed=1), audio=tone(1.0)),
        "noface": write_video(out / "bad" / "noface.mp4", noise_frames(24)),
        "corrupt": write_corrupt(out / "bad" / "corrupt.mp4"),
        "empty": out / "bad" / "empty.mp4",
        "text": out / "bad" / "notes.txt",
        "image": out / "photo" / "face.png",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("not a video\n")
    files["image"].parent.mkdir()
    cv2.imwrite(str(files["image"]), cv2.cvtColor(face_frames(1)[0], cv2.COLOR_RGB2BGR))
    return out, files


@pytest.fixture(scope="module")
def scored(run):
    out, f = run
    return predict_paths([f["face"], f["voice"], f["image"]], out, explain_dir=out / "explain")


def test_video_scores_members_and_faces(scored):
    for r in scored[:2]:
        assert r["ok"] and r["error"] is None and r["kind"] == "video"
        assert 0 <= r["prob"] <= 1 and r["label"] in ("fake", "real") and r["threshold"] == 0.5
        assert set(r["members"]) == set(MEMBERS) and all(0 <= p <= 1 for p in r["members"].values())
        assert r["faces_found"] > 0 and r["frames_sampled"] == 4 and r["clips"] == 2
        expected = sum(r["weights"][n] * r["members"][n] for n in MEMBERS)
        assert r["prob"] == pytest.approx(expected, abs=1e-5)
        assert r["uncertainty"] >= 0 and r["seconds"] > 0
        assert r["preprocess_source"] == "ensemble config"
    assert not scored[0]["has_audio"] and scored[1]["has_audio"]
    # the video with audio is combined by the ensemble's weights for inputs with audio
    assert scored[0]["weights"] == pytest.approx({"ll": 0.5, "tm": 0.3, "av": 0.2})
    assert scored[1]["weights"] == pytest.approx({"ll": 0.1, "tm": 0.2, "av": 0.7})


def test_image_is_scored_by_image_members_only(scored):
    r = scored[2]
    assert r["ok"] and r["kind"] == "image" and list(r["members"]) == ["ll"]
    assert set(r["skipped"]) == {"tm", "av"} and "image" in r["skipped"]["tm"]
    assert r["prob"] == pytest.approx(r["members"]["ll"], abs=1e-6) and r["uncertainty"] == pytest.approx(0, abs=1e-6)


def test_explain_writes_a_png_per_input(scored):
    """One figure per input, named after the whole file name (face.mp4 and face.png do not collide),
    every member that scored it in a row, tiles of at least 224 px."""
    from interceptor_lib.inference.explain import EXPLAIN_TILE_PX

    paths = [r["explain"] for r in scored]
    assert len(set(paths)) == 3
    assert sorted(Path(p).name for p in paths) == ["face.mp4.gradcam.png", "face.png.gradcam.png",
                                                     "voice.mp4.gradcam.png"]
    for r in scored:
        img = cv2.imread(r["explain"])
        rows = 1 + len(r["members"])
        assert img is not None and img.shape[0] >= rows * EXPLAIN_TILE_PX and img.shape[1] >= 2 * EXPLAIN_TILE_PX


def test_results_table_and_record(scored, tmp_path):
    """The notebook's table: one row per scored input with each member's P(fake); the record is that
    table in <run>/reports/inference.csv."""
    table = results_table(scored)
    assert list(table["input"]) == ["face.mp4", "voice.mp4", "face.png"]
    assert list(table.columns[:6]) == ["input", "prob", "label", "uncertainty", "faces", "seconds"]
    assert set(table.columns[6:]) == set(MEMBERS) and table.loc[2, "tm"] != table.loc[2, "tm"]  # NaN: skipped
    path = write_results(scored, tmp_path)
    assert path == tmp_path / "reports" / "inference.csv"
    assert list(pd.read_csv(path)["input"]) == list(table["input"])
    assert "face.mp4" in format_table(scored) and format_table([]) == ""


def test_sample_test_videos_takes_video_files_of_each_class():
    """Two real then two fake test videos, none from a dataset of face-image sequences."""
    rows = [{"dataset": ds, "split": split, "label": label, "path": f"{ds}/{split}/{label}/{i}.mp4"}
            for ds in ("ffpp", "wilddeepfake") for split in ("train", "test") for label in (0, 1) for i in range(3)]
    index = pd.DataFrame(rows)
    picked = sample_test_videos(index, per_class=2, seed=0)
    assert len(picked) == 4 and all(p.startswith("ffpp/test/") for p in picked)
    assert [p.split("/")[2] for p in picked] == ["0", "0", "1", "1"]
    assert picked == sample_test_videos(index, per_class=2, seed=0)


def test_folders_are_searched_recursively(run):
    out, f = run
    found = [p for p, err in collect_inputs([out / "media"])]
    assert sorted(p.name for p in found) == ["face.mp4", "voice.mp4"]
    assert collect_inputs([out / "runs"])[0][1].startswith("folder")  # no media inside


def test_frames_option_and_missing_ensemble(run, tmp_path):
    out, f = run
    r = predict_paths([f["face"]], out, frames=6)[0]
    assert r["ok"] and r["frames_sampled"] == 6
    with pytest.raises(InterceptorError, match="06_evaluation"):
        predict_paths([f["face"]], tmp_path)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "interceptor_lib", "predict", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_json_with_bad_inputs_reports_the_good_ones_and_exits_2(run):
    out, f = run
    missing = out / "missing.mp4"
    r = cli(f["face"], f["text"], f["empty"], f["noface"], f["corrupt"], missing, "--run", out, "--json")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    results = json.loads(r.stdout)
    assert [x["ok"] for x in results] == [True, False, False, False, False, False]
    assert 0 <= results[0]["prob"] <= 1 and results[0]["faces_found"] > 0
    errors = {x["path"]: x["error"] for x in results[1:]}
    assert "not a video or image" in errors[str(f["text"])]
    assert "no face" in errors[str(f["noface"])] or "faces in only" in errors[str(f["noface"])]
    assert "does not exist" in errors[str(missing)]
    assert "empty" in errors[str(f["empty"])] and "corrupt.mp4" in errors[str(f["corrupt"])]
    for x in results[1:]:
        assert "\n" not in x["error"]
        assert f"error: {x['error']}" in r.stderr


def test_cli_table_and_clean_error_without_an_ensemble(run, tmp_path):
    out, f = run
    r = cli(f["face"], "--run", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "P(fake)" in r.stdout and "face.mp4" in r.stdout and "ll" in r.stdout
    r = cli(f["face"], "--run", tmp_path)
    assert r.returncode == 2 and "06_evaluation" in r.stderr and "Traceback" not in r.stderr


def test_predict_preprocesses_exactly_like_the_training_cache(run, tmp_path):
    """Member scores from predict equal those from the training datasets over the crop cache."""
    import dataclasses

    import pandas as pd

    from interceptor_lib.data.cache import build_cache
    from interceptor_lib.data.datasets import ClipDataset, FrameDataset, build_transform

    out, f = run
    pp = dataclasses.replace(PREPROCESS, workers=1)
    table = pd.DataFrame([{"video_id": "t/voice", "path": str(f["voice"]), "member": "", "label": 0, "split": "val",
                           "dataset": "dfdc", "has_audio": True, "original_id": ""}])
    cache = build_cache(table, pp, tmp_path / "cache", progress=False)
    ens = load_ensemble(out)
    r = predict_paths([f["voice"]], ensemble=ens, preprocess=pp)[0]
    tf = build_transform(False, ens.data_config["mean"], ens.data_config["std"])
    video = member_video_probs(ens, table, cache, batch_size=3)  # the validation-side helper
    assert video.loc[0, "video_id"] == "t/voice" and video.loc[0, "label"] == 0
    with torch.inference_mode():
        for name, m in ens.members.items():
            ds = (FrameDataset if m.input_kind == "image" else ClipDataset)(table, cache, tf)
            items = [ds[i] for i in range(len(ds))]
            batch = {k: torch.stack([it[k] for it in items]) for k in ("image", "clip", "audio", "has_audio")
                     if k in items[0]}
            assert r["members"][name] == pytest.approx(m(batch)["prob"].mean().item(), abs=1e-5), name
            assert video.loc[0, name] == pytest.approx(r["members"][name], abs=1e-5), name
