"""The face-crop cache on real (small) H.264 videos: sampling, box reuse, audio alignment,
failures, keying and staleness."""

import os

import numpy as np
import pandas as pd
import pytest
from media import face_frames, noise_frames, tone, write_corrupt, write_video

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.cache import FaceCropCache, build_cache
from interceptor_lib.data.table import make_table
from interceptor_lib.data.video import sample_clip_starts, sample_frame_indices
from interceptor_lib.errors import PreprocessError

SR = 16000


def row(vid, path, label, original="", has_audio=False, member=""):
    return {"video_id": vid, "path": str(path), "label": label, "split": "train", "dataset": "dfdc",
            "method": "real" if label == 0 else "dfdc", "group": vid, "chunk": 0, "has_audio": has_audio,
            "original_id": original, "member": member}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    click = np.zeros(int(2.0 * 44100), np.float32)
    click[int(1.0 * 44100):int(1.0 * 44100) + 200] = 0.9  # a click at t = 1.0 s
    frames = face_frames(50)
    fake_frames = [np.clip(f.astype(int) + 8, 0, 255).astype(np.uint8) for f in frames]
    return {
        "real": write_video(d / "real.mp4", frames, audio=click),
        "fake": write_video(d / "fake.mp4", fake_frames, audio=tone(2.0)),
        "silent": write_video(d / "silent.mp4", frames),
        "noface": write_video(d / "noface.mp4", noise_frames(30)),
        "corrupt": write_corrupt(d / "corrupt.mp4"),
    }


def params(**kw):
    base = dict(frames_per_video=6, clips_per_video=2, clip_len=4, face_size=64, audio_window_s=0.5,
                workers=1, max_failure_rate=0.6)
    return PreprocessParams(**{**base, **kw})


def table(videos, names=("real", "fake", "silent", "noface", "corrupt")):
    rows = {"real": row("dfdc/real", videos["real"], 0, has_audio=True),
            "fake": row("dfdc/fake", videos["fake"], 1, original="dfdc/real", has_audio=True),
            "silent": row("dfdc/silent", videos["silent"], 0, has_audio=True),
            "noface": row("dfdc/noface", videos["noface"], 0),
            "corrupt": row("dfdc/corrupt", videos["corrupt"], 1)}
    return make_table([rows[n] for n in names])


def test_sampling_is_even_and_clips_are_consecutive():
    assert sample_frame_indices(300, 32).tolist() == np.linspace(0, 299, 32).round().astype(int).tolist()
    assert sample_frame_indices(5, 32).tolist() == [0, 1, 2, 3, 4]
    starts = sample_clip_starts(50, 3, 8)
    assert starts.tolist() == [0, 21, 42] and starts[-1] + 8 == 50
    assert sample_clip_starts(5, 3, 8).size == 0


def test_cache_contents_failures_and_box_reuse(tmp_path, videos):
    p = params()
    cache = build_cache(table(videos), p, tmp_path, progress=False)
    man = cache.manifest().set_index("video_id")
    fail = cache.failures().set_index("video_id")
    assert set(man.index) == {"dfdc/real", "dfdc/fake", "dfdc/silent"}
    assert fail.loc["dfdc/corrupt", "reason"] == "undecodable" and fail.loc["dfdc/corrupt", "action"] == "skipped"
    assert fail.loc["dfdc/noface", "reason"] == "no_face" and fail.loc["dfdc/noface", "action"] == "skipped"
    assert fail.loc["dfdc/silent", "reason"] == "no_audio" and fail.loc["dfdc/silent", "action"] == "kept"
    assert man.loc["dfdc/fake", "box_source"] == "original" and man.loc["dfdc/real", "box_source"] == "self"
    assert not man.loc["dfdc/silent", "has_audio"] and man.loc["dfdc/real", "has_audio"]

    real, fake = cache.reader("dfdc/real"), cache.reader("dfdc/fake")
    assert (real.boxes == fake.boxes).all()
    frames = real.frames()
    assert frames.shape == (6, 64, 64, 3) and frames.dtype == np.uint8
    assert real.frame_indices[real.frame_pos].tolist() == sample_frame_indices(50, 6).tolist()
    for c in range(real.num_clips):
        idx = real.frame_indices[real.clip_pos[c]]
        assert np.diff(idx).tolist() == [1, 1, 1]
    assert real.clip(1).shape == (4, 64, 64, 3)
    # the face is in the crop: the crop is not the grey background
    assert frames.std() > 20

    # audio window of a clip is centred on the clip's centre: clip starts 0 and 46 (fps 25) ->
    # centres 0.08 s and 1.92 s; the click at 1.0 s is in neither 0.5 s window, so silence there
    assert real.audio_window(0).shape == (8000,)
    assert np.abs(real.audio_window(0)).max() < 0.05


def test_audio_window_is_aligned_with_its_clip(tmp_path, videos):
    # 3 clips of 4 frames in 50 frames start at 0, 23, 46: the middle clip's centre is (23 + 2) / 25 = 1.0 s
    cache = build_cache(table(videos, ["real"]), params(clips_per_video=3), tmp_path, progress=False)
    w = cache.reader("dfdc/real").audio_window(1)
    peak = int(np.argmax(np.abs(w)))
    assert abs(peak - len(w) // 2) < 0.03 * SR  # within 30 ms of the window centre (AAC delay included)


def test_unchanged_params_reuse_entries_changed_params_do_not(tmp_path, videos):
    t = table(videos, ["real"])
    c1 = build_cache(t, params(), tmp_path, progress=False)
    mtime = os.stat(c1.entry_path("dfdc/real")).st_mtime_ns
    c2 = build_cache(t, params(workers=2, max_failure_rate=0.3), tmp_path, progress=False)  # not in the key
    assert c2.dir == c1.dir and os.stat(c2.entry_path("dfdc/real")).st_mtime_ns == mtime
    c3 = build_cache(t, params(margin=1.5), tmp_path, progress=False)
    assert c3.dir != c1.dir and c3.entry_path("dfdc/real").exists()


def test_a_changed_source_video_is_processed_again(tmp_path, videos):
    src = tmp_path / "v.mp4"
    src.write_bytes(videos["real"].read_bytes())
    t = make_table([row("dfdc/v", src, 0)])
    c = build_cache(t, params(), tmp_path / "cache", progress=False)
    before = c.reader("dfdc/v").meta["num_frames"]
    write_video(src, face_frames(30))
    after = build_cache(t, params(), tmp_path / "cache", progress=False).reader("dfdc/v").meta["num_frames"]
    assert (before, after) == (50, 30)


def test_failure_ceiling_stops_with_a_message_and_keeps_the_tables(tmp_path, videos):
    with pytest.raises(PreprocessError, match="max_failure_rate"):
        build_cache(table(videos, ["real", "noface", "corrupt"]), params(max_failure_rate=0.5), tmp_path,
                    progress=False)
    cache = FaceCropCache(tmp_path, params(max_failure_rate=0.5))
    assert set(cache.failures()["reason"]) == {"no_face", "undecodable"}
    assert cache.manifest()["video_id"].tolist() == ["dfdc/real"]


def test_parallel_workers_give_the_same_crops(tmp_path, videos):
    t = table(videos, ["real", "fake"])
    a = build_cache(t, params(workers=1), tmp_path / "a", progress=False)
    b = build_cache(t, params(workers=2), tmp_path / "b", progress=False)
    for vid in ("dfdc/real", "dfdc/fake"):
        assert (a.reader(vid).frames() == b.reader(vid).frames()).all()


def test_image_formats_round_trip(tmp_path, videos):
    t = table(videos, ["real"])
    png = build_cache(t, params(image_format="png"), tmp_path, progress=False).reader("dfdc/real").frames()
    raw = build_cache(t, params(image_format="raw"), tmp_path, progress=False).reader("dfdc/real").frames()
    jpg = build_cache(t, params(image_format="jpg"), tmp_path, progress=False).reader("dfdc/real").frames()
    assert np.array_equal(png, raw)  # both lossless
    assert not np.array_equal(png, jpg) and np.abs(png.astype(int) - jpg).mean() < 3


def test_wilddeepfake_tar_sequences_are_read_in_one_pass_without_detection(tmp_path):
    import io
    import tarfile

    import cv2

    tar_path = tmp_path / "fake_train" / "3.tar.gz"
    tar_path.parent.mkdir()
    rng = np.random.default_rng(0)
    with tarfile.open(tar_path, "w:gz") as tar:
        for seq in ("7", "8"):
            for frame in range(9, 13):  # numbering past 9: frames must sort numerically
                img = np.full((40, 40, 3), 10 * frame, np.uint8) + rng.integers(0, 5, (40, 40, 3), dtype=np.uint8)
                data = cv2.imencode(".png", img)[1].tobytes()
                info = tarfile.TarInfo(f"./3/fake/{seq}/{frame}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    rows = [{**row(f"wilddeepfake/fake_train/3/{s}", tar_path, 1, member=f"./3/fake/{s}/"),
             "dataset": "wilddeepfake", "chunk": -1} for s in ("7", "8")]
    cache = build_cache(make_table(rows), params(frames_per_video=4, clips_per_video=1), tmp_path / "c", progress=False)
    man = cache.manifest().set_index("video_id")
    assert len(man) == 2 and (man["face_rate"] == 1.0).all() and not man["has_audio"].any()
    frames = cache.reader("wilddeepfake/fake_train/3/7").frames()
    assert frames.shape == (4, 64, 64, 3)
    # the whole 40x40 face image is resized (no detection, no margin); brightness rises with frame number
    assert list(np.argsort(frames.reshape(4, -1).mean(1))) == [0, 1, 2, 3]


def test_a_full_disk_stops_with_a_message_and_keeps_finished_entries(tmp_path, videos, monkeypatch):
    import errno

    from interceptor_lib.data import extract as extract_mod
    from interceptor_lib.data import crops_file

    real_write = crops_file.write_entry
    calls = []

    def write_or_fill_disk(path, entry):
        calls.append(path)
        if len(calls) > 1:  # the second video hits a full disk half-way through its file
            with open(path.with_name(path.name + ".tmp"), "wb") as f:
                f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, entry)

    monkeypatch.setattr(extract_mod, "write_entry", write_or_fill_disk)
    with pytest.raises(PreprocessError, match="disk full.*1 videos are cached"):
        build_cache(table(videos, ["real", "silent"]), params(), tmp_path, progress=False)
    cache = FaceCropCache(tmp_path, params())
    assert cache.manifest()["video_id"].tolist() == ["dfdc/real"]
    monkeypatch.setattr(extract_mod, "write_entry", real_write)
    again = build_cache(table(videos, ["real", "silent"]), params(), tmp_path, progress=False)
    assert sorted(again.manifest()["video_id"]) == ["dfdc/real", "dfdc/silent"]


def test_a_fake_of_another_length_takes_its_originals_boxes_by_time(tmp_path, videos):
    """A fake with other frame counts than its original (a trimmed or re-timed copy) still gets the
    original's boxes, each frame the one nearest in time; the reference path detected on the fake."""
    short = write_video(tmp_path / "short_fake.mp4", face_frames(40))
    t = make_table([row("dfdc/real", videos["real"], 0), row("dfdc/short", short, 1, original="dfdc/real")])
    cache = build_cache(t, params(), tmp_path / "track", progress=False)
    m = cache.manifest().set_index("video_id")
    assert m.loc["dfdc/short", "box_source"] == "original_by_time"
    real, fake = cache.reader("dfdc/real"), cache.reader("dfdc/short")
    for f, box in zip(fake.frame_indices, fake.boxes):  # the original's box at the same time (same fps)
        k = np.searchsorted(real.frame_indices, f)
        if real.frame_indices[min(k, len(real.frame_indices) - 1)] == f:
            assert np.allclose(box, real.boxes[k])     # a frame the original stored: its box
        else:                                          # between two stored frames: between their boxes
            lo, hi = real.boxes[k - 1], real.boxes[k]
            assert np.all(box >= np.minimum(lo, hi) - 1e-3) and np.all(box <= np.maximum(lo, hi) + 1e-3)
    legacy = build_cache(t, params(boxes="detect"), tmp_path / "detect", progress=False)
    assert legacy.manifest().set_index("video_id").loc["dfdc/short", "box_source"] == "self"
    alone = build_cache(t[t["video_id"] == "dfdc/short"], params(), tmp_path / "alone", progress=False)
    assert alone.manifest()["box_source"].tolist() == ["self"]  # its original is missing: detected on its own
