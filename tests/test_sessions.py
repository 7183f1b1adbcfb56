"""What lets a run continue over several sessions (the whole campaign is test_campaign.py): attached
earlier outputs re-rooted, caches read from them and never written, a complete cache left untouched,
a stage that refuses a partly cached dataset, finished runs slimmed to their best weights, and the
order the cache is built in."""

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from media import face_frames, write_video

from interceptor_lib.layout import done_record, previous_best
from interceptor_lib.params import load_params
from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.cache import FaceCropCache, PreprocessStopped, build_cache
from interceptor_lib.pipeline.prepare import preprocess_order
from interceptor_lib.data.table import make_table
from interceptor_lib.errors import InterceptorError, ParamsError
from interceptor_lib.training.budget import RunBudget
from interceptor_lib.training.checkpoint import load_checkpoint
from interceptor_lib.training.retention import CheckpointManager
from interceptor_lib.pipeline.stages import require_cached


def _tree(root):
    return {str(f.relative_to(root)): (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
            for f in sorted(root.rglob("*")) if f.is_file()}


def _row(vid, path, label, original="", dataset="dfdc", chunk=0):
    return {"video_id": vid, "path": str(path), "label": label, "split": "train", "dataset": dataset,
            "method": "real" if label == 0 else dataset, "group": original or vid, "chunk": chunk,
            "has_audio": False, "original_id": original, "member": ""}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    frames = face_frames(20)
    return [write_video(d / f"v{i}.mp4", [np.roll(f, 3 * i, axis=1) for f in frames]) for i in range(4)]


def _pp():
    return PreprocessParams(frames_per_video=3, clips_per_video=1, clip_len=2, face_size=32, workers=1)


def _table(clips):
    return make_table([_row("dfdc/r0", clips[0], 0), _row("dfdc/f0", clips[1], 1, "dfdc/r0"),
                       _row("dfdc/r1", clips[2], 0), _row("dfdc/f1", clips[3], 1, "dfdc/r1")])


def test_an_attached_output_moved_elsewhere_is_re_rooted(tmp_path):
    """done.json records absolute paths of the session that wrote it; attached in a later session it
    lives elsewhere (/kaggle/working/... -> /kaggle/input/<name>/...)."""
    written = tmp_path / "kaggle" / "working" / "out"
    ckpt = written / "runs" / "ll" / "stage1" / "checkpoints" / "epoch-003"
    ckpt.mkdir(parents=True)
    (ckpt / "checkpoint.json").write_text("{}")
    (written / "runs" / "ll" / "stage1" / "done.json").write_text(json.dumps({"best": str(ckpt)}))
    attached = tmp_path / "kaggle" / "input" / "session-1" / "out"
    shutil.copytree(written, attached)
    shutil.rmtree(written)
    params = load_params("smoke", overrides={"output_dir": str(tmp_path / "new"),
                                             "train.previous_outputs": str(attached)})  # a string: one folder
    assert params.train.previous_outputs == [str(attached)]
    want = attached / "runs" / "ll" / "stage1" / "checkpoints" / "epoch-003"
    assert done_record(params, "ll", "stage1")["best"] == str(want)
    assert previous_best(params, "ll", "stage2") == want


def test_previous_outputs_must_not_overlap_the_output_dir(tmp_path):
    (tmp_path / "out" / "inner").mkdir(parents=True)
    for prev in (tmp_path / "out", tmp_path / "out" / "inner"):
        with pytest.raises(ParamsError, match="train.previous_outputs"):
            load_params("smoke", overrides={"output_dir": str(tmp_path / "out"), "train.previous_outputs": [str(prev)]})


def test_a_complete_cache_is_left_untouched_and_an_attached_one_is_read_not_rebuilt(tmp_path, clips):
    table = _table(clips)
    first = build_cache(table, _pp(), tmp_path / "s1", progress=False)
    before = _tree(tmp_path / "s1")
    # the same cache again: nothing to do, nothing written (it may be a read-only attached copy)
    build_cache(table, _pp(), tmp_path / "s1", progress=False)
    assert _tree(tmp_path / "s1") == before
    # a later session with s1 attached: reads its entries, writes nothing in it or of its own
    second = build_cache(table, _pp(), tmp_path / "s2", progress=False, attached=[first.dir])
    assert _tree(tmp_path / "s1") == before and not (tmp_path / "s2").exists()
    assert set(second.manifest()["video_id"]) == set(table["video_id"])
    assert second.entry_path("dfdc/f0").is_relative_to(first.dir)
    assert len(second.pending(table)) == 0


def test_a_stopped_cache_keeps_its_videos_and_a_stage_refuses_the_partial_dataset(tmp_path, clips, monkeypatch):
    table = _table(clips)
    calls = {"n": 0}

    def stop_after_two(self):
        calls["n"] += 1
        return "time budget" if calls["n"] >= 2 else None

    monkeypatch.setattr(RunBudget, "should_stop", stop_after_two)
    with pytest.raises(PreprocessStopped, match="previous_outputs"):
        build_cache(table, _pp(), tmp_path / "s1", progress=False, budget=RunBudget(None))
    part = FaceCropCache(tmp_path / "s1", _pp())
    assert len(part.manifest()) == 2  # both finished videos are kept and listed
    with pytest.raises(InterceptorError, match="2 of its 4 indexed videos are not preprocessed"):
        require_cached(part, table, "dfdc", "stage4")
    monkeypatch.undo()
    # the next session continues from there, reading the first one's part
    rest = build_cache(table, _pp(), tmp_path / "s2", progress=False, attached=[part.dir])
    assert len(FaceCropCache(tmp_path / "s2", _pp()).manifest().drop_duplicates("video_id")) == 2
    require_cached(rest, table, "dfdc", "stage4")  # complete over both folders


def test_the_storage_budget_stops_the_cache_before_it_passes(tmp_path, clips):
    table = _table(clips)
    with pytest.raises(PreprocessStopped, match="storage budget"):
        build_cache(table, _pp(), tmp_path / "out" / "cache", progress=False,
                    storage_budget_gb=30_000 / 2**30, storage_root=tmp_path / "out")
    used = sum(f.stat().st_size for f in (tmp_path / "out").rglob("*") if f.is_file())
    assert 0 < used <= 30_000


def test_finalize_keeps_the_best_as_weights_only(tmp_path):
    m = CheckpointManager(tmp_path / "ckpts")
    for i, metric in enumerate([0.7, 0.9, 0.8]):
        state = {"model": {"w": torch.full((4,), float(i))}, "optimizer": {"m": torch.ones(4)},
                 "progress": {"epoch": i + 1}, "config": {"x": 1}}
        m.save(f"epoch-{i + 1:03d}", state, metric=metric)
    kept = m.finalize()
    assert kept.name == "epoch-002"
    assert sorted(p.name for p in (tmp_path / "ckpts").iterdir() if p.is_dir()) == ["epoch-002"]
    state = load_checkpoint(kept)
    assert "optimizer" not in state and torch.equal(state["model"]["w"], torch.full((4,), 1.0))
    assert m.best() == kept and m.entries()[0]["kind"] == "weights"


def test_a_run_continued_from_an_attached_session_competes_with_its_best(tmp_path):
    old = CheckpointManager(tmp_path / "old")
    old.save("epoch-001", {"model": {"w": torch.ones(2)}}, metric=0.9)
    old.save("epoch-002", {"model": {"w": torch.zeros(2)}}, metric=0.5)
    before = _tree(tmp_path / "old")
    new = CheckpointManager(tmp_path / "new")
    assert new.adopt_best(tmp_path / "old").name == "epoch-001"
    assert new.latest() is None  # an adopted best is no resume point
    new.save("epoch-003", {"model": {"w": torch.full((2,), 3.0)}}, metric=0.7)
    assert new.best().name == "epoch-001" and new.latest().name == "epoch-003"
    assert _tree(tmp_path / "old") == before


def test_the_cache_is_built_in_stage_order_and_chunk_order():
    params = load_params("smoke", check_paths=False)
    params.train.stages["stage4"].chunk_order = [2, 0, 1]
    rows = [_row(f"dfdc/c{c}", "x", 0, chunk=c) for c in (0, 1, 2)] + \
           [_row("wd/a", "x", 0, dataset="wilddeepfake", chunk=-1), _row("ff/a", "x", 0, dataset="ffpp", chunk=-1),
            _row("cd/a", "x", 0, dataset="celebdf", chunk=-1)]
    order = preprocess_order(params, pd.DataFrame(rows))["video_id"].tolist()
    assert order == ["ff/a", "cd/a", "wd/a", "dfdc/c2", "dfdc/c0", "dfdc/c1"]


def test_sigterm_stops_preprocessing_after_the_video_in_hand(tmp_path, clips, monkeypatch):
    """Kaggle sends SIGTERM when a session is stopped: the video being processed is finished and
    kept, the cache tables are written, and the run says how to continue."""
    import os
    import signal

    from interceptor_lib.data import cache as cache_module

    real = cache_module._process_task

    def process_then_sigterm(task):
        out = real(task)
        os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(cache_module, "_process_task", process_then_sigterm)
    with RunBudget(None) as budget:
        with pytest.raises(PreprocessStopped, match="SIGTERM"):
            build_cache(_table(clips), _pp(), tmp_path, progress=False, budget=budget)
    assert FaceCropCache(tmp_path, _pp()).manifest()["video_id"].tolist() == ["dfdc/r0"]
