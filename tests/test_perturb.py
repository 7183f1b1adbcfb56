"""The DeeperForensics perturbations: level 0 is the identity, the distortion (PSNR against the
original) grows with the level, random ones are reproducible, and the video re-encode keeps the
cache's frames, boxes, clips and audio."""

import cv2
import numpy as np
import pandas as pd
import pytest
from media import face_frames, tone, write_video

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.cache import build_cache
from interceptor_lib.data.crops_file import CropReader
from interceptor_lib.data.datasets import ClipDataset, FrameDataset
from interceptor_lib.data.perturb import (LEVELS, PERTURBATIONS, PerturbedCache, Recompressed, crop_perturbation,
                                          crop_rng, parameter, perturb_crop, psnr, recompress_entry)
from interceptor_lib.data.table import make_table
from interceptor_lib.data.video import open_source

CROP_PERTURBATIONS = [p for p in PERTURBATIONS if p != "video_compression"]


@pytest.fixture(scope="module")
def faces():
    """Two face crops (RGB uint8, 112 px): the astronaut at two positions."""
    return [f[30:142, 50:162].copy() for f in face_frames(12)[::6]]


@pytest.mark.parametrize("name", CROP_PERTURBATIONS)
def test_level_zero_is_the_identity_and_psnr_falls_with_the_level(name, faces):
    for i, img in enumerate(faces):
        rng = lambda: crop_rng(0, "v", i, name)  # noqa: E731  the same draws at every level
        assert np.array_equal(perturb_crop(img, name, 0, rng()), img)
        scores = [psnr(img, perturb_crop(img, name, level, rng())) for level in LEVELS]
        assert all(np.isfinite(scores)), (name, scores)
        assert all(a > b for a, b in zip(scores, scores[1:])), (name, scores)


def test_random_perturbations_are_reproducible_per_frame_and_parameters_are_the_protocols(faces):
    img = faces[0]
    for name in ("block", "noise"):
        a = perturb_crop(img, name, 3, crop_rng(7, "ffpp/x", 12, name))
        assert np.array_equal(a, perturb_crop(img, name, 3, crop_rng(7, "ffpp/x", 12, name)))
        assert not np.array_equal(a, perturb_crop(img, name, 3, crop_rng(7, "ffpp/x", 13, name)))
        with pytest.raises(ValueError, match="rng"):
            perturb_crop(img, name, 3)
    assert [parameter("blur", k) for k in range(6)] == [None, 7, 9, 13, 17, 21]
    assert parameter("video_compression", 5) == 40 and parameter("saturation", 5) == 0.0
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb_crop(img, "rain", 1)
    with pytest.raises(ValueError, match="level"):
        perturb_crop(img, "blur", 6)
    with pytest.raises(ValueError, match="re-encodes"):
        perturb_crop(img, "video_compression", 1)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    d = tmp_path_factory.mktemp("robust")
    video = write_video(d / "real.mp4", face_frames(40), fps=25, crf=18, audio=tone(1.6))
    row = {"video_id": "dfdc/real", "path": str(video), "label": 0, "split": "test", "dataset": "dfdc",
           "method": "real", "group": "dfdc/real", "chunk": 0, "has_audio": True, "original_id": "", "member": ""}
    params = PreprocessParams(frames_per_video=6, clips_per_video=2, clip_len=4, face_size=64, audio_window_s=0.5,
                              workers=1)
    table = make_table([row])
    return build_cache(table, params, d / "cache", progress=False), table, params, d


def test_video_compression_keeps_the_layout_and_distorts_more_at_higher_crf(cached):
    cache, table, params, d = cached
    reader = cache.reader("dfdc/real")
    scores = []
    for level in (1, 3, 5):
        out = recompress_entry(reader, table["path"][0], "", params, parameter("video_compression", level),
                               d / f"vc{level}.crops")
        coded = CropReader(out)
        assert np.array_equal(coded.frame_indices, reader.frame_indices)
        assert np.array_equal(coded.clip_pos, reader.clip_pos) and np.array_equal(coded.boxes, reader.boxes)
        assert np.allclose(coded.audio_window(1), reader.audio_window(1))  # the picture changes, not the sound
        scores.append(np.mean([psnr(a, b) for a, b in zip(reader.frames(), coded.frames())]))
        assert not (d / f"vc{level}.crops.mp4").exists()  # the re-encoded video is not kept
    assert scores[0] > scores[1] > scores[2], scores
    # the datasets read the re-encoded entry through PerturbedCache, with the cache's rows
    frames = FrameDataset(table, PerturbedCache(cache, Recompressed({"dfdc/real": d / "vc5.crops"})))
    assert len(frames) == len(reader.frame_pos)


def test_the_sweeps_h264_encode_gives_the_same_bytes_whatever_was_decoded_before(tmp_path):
    # 224 x 224 face frames: with x264's macroblock tree on, their bytes changed with the process's
    # earlier decodes; the sweep re-encodes without it (recompress_entry)
    frames = [cv2.resize(f[20:220, 60:260], (224, 224)) for f in face_frames(19)]
    coded = set()
    for i in range(8):
        path = write_video(tmp_path / f"v{i}.mp4", frames, fps=25, crf=30, x264_params="no-mbtree=1")
        coded.add(path.read_bytes())
        open_source(str(path), "", threads=False).read(np.arange(len(frames)))
    assert len(coded) == 1


def test_video_compression_gives_the_same_crops_on_every_call(tmp_path):
    video = write_video(tmp_path / "face.mp4", [cv2.resize(f, (224, 224)) for f in face_frames(20)], fps=25, crf=18)
    row = {"video_id": "ffpp/face", "path": str(video), "label": 0, "split": "test", "dataset": "ffpp",
           "method": "real", "group": "ffpp/face", "chunk": 0, "has_audio": False, "original_id": "", "member": ""}
    params = PreprocessParams(frames_per_video=6, clips_per_video=1, clip_len=4, face_size=64, workers=1)
    reader = build_cache(make_table([row]), params, tmp_path / "cache", progress=False).reader("ffpp/face")
    coded = {CropReader(recompress_entry(reader, str(video), "", params, 30, tmp_path / f"vc{i}.crops")).frames()
             .tobytes() for i in range(4)}  # each call decodes the source and its re-encoding
    assert len(coded) == 1


def test_a_perturbed_cache_serves_the_same_perturbed_frame_to_frame_and_clip_models(cached):
    cache, table, _, _ = cached
    pc = PerturbedCache(cache, crop_perturbation("noise", 4, seed=3))
    reader, perturbed = cache.reader("dfdc/real"), pc.reader("dfdc/real")
    shared = sorted(set(reader.frame_pos.tolist()) & set(reader.clip_pos.reshape(-1).tolist()))
    assert shared, "the fixture's frames and clips share a frame"
    pos = shared[0]
    slot = int(np.argwhere(reader.frame_pos == pos)[0, 0])
    c, t = np.argwhere(reader.clip_pos == pos)[0]
    assert np.array_equal(perturbed.frames()[slot], perturbed.clip(int(c))[int(t)])
    assert not np.array_equal(perturbed.frames()[slot], reader.frames()[slot])
    items = ClipDataset(table, pc)
    assert items[0]["clip"].shape[0] == reader.clip_pos.shape[1] and bool(items[0]["has_audio"])
    assert isinstance(pc.usable(table), pd.DataFrame) and len(pc.usable(table)) == 1
