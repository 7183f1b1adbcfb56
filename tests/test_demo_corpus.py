"""The synthetic demo corpus: official layouts, decodable media, determinism, class balance, the side
table, face detectability, skip-if-complete, and each artifact family's measurable effect."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
import tarfile
import time
from collections import Counter
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from interceptor_lib.synthetic import (DEMO_ROOTS, FAMILIES, FFPP_METHODS, SCALES, VISUAL_FAMILIES,
                                       make_demo_data, measure_face_detection_rate)
from interceptor_lib.synthetic.artifacts import ArtifactSpec, build_artifact, draw_artifact
from interceptor_lib.synthetic.audio import audio_envelope_per_frame, synth_speech
from interceptor_lib.synthetic.clip import ClipSpec, FrameRenderer, SensorNoise, render_clip, speech_of
from interceptor_lib.synthetic.corpus import _complete_report
from interceptor_lib.synthetic.scene import draw_identity, draw_scene, named_rng

FF, CD, WDF, DF = (DEMO_ROOTS[k] for k in ("ffpp", "celebdf", "wilddeepfake", "dfdc"))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "corpus"
    report = make_demo_data(out, seed=0, scale="tiny", workers=2, progress=False)
    return out, report


def side_table(out: Path) -> list[dict]:
    with open(out / "demo_artifacts.csv", newline="") as f:
        return list(csv.DictReader(f))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def names(folder: Path, pattern: str = "*.mp4") -> list[str]:
    return sorted(p.name for p in folder.glob(pattern))


# -- layouts --------------------------------------------------------------------------------------

def test_ffpp_layout_and_splits(tiny):
    out, _ = tiny
    root = out / FF
    originals = names(root / "original_sequences/youtube/c23/videos")
    assert originals and all(re.fullmatch(r"\d{3}\.mp4", n) for n in originals)
    splits = {s: json.loads((root / "splits" / f"{s}.json").read_text()) for s in ("train", "val", "test")}
    pairs = [tuple(p) for ps in splits.values() for p in ps]
    assert all(len(p) == 2 and all(re.fullmatch(r"\d{3}", i) for i in p) for p in pairs)
    assert all(splits.values()), "every split needs at least one pair"
    ids = [i for p in pairs for i in p]
    assert sorted(f"{i}.mp4" for i in ids) == originals and len(set(ids)) == len(ids)
    expected = sorted(f"{a}_{b}.mp4" for a, b in pairs) + sorted(f"{b}_{a}.mp4" for a, b in pairs)
    assert sorted(p.name for p in (root / "manipulated_sequences").iterdir()) == sorted(FFPP_METHODS)
    for method in FFPP_METHODS:
        assert names(root / "manipulated_sequences" / method / "c23/videos") == sorted(expected)


def test_celebdf_layout_and_test_list(tiny):
    out, _ = tiny
    root = out / CD
    real = names(root / "Celeb-real")
    youtube = names(root / "YouTube-real")
    synth = names(root / "Celeb-synthesis")
    assert real and youtube and synth
    assert all(re.fullmatch(r"id\d+_\d{4}\.mp4", n) for n in real)
    assert all(re.fullmatch(r"\d{5}\.mp4", n) for n in youtube)
    for n in synth:
        m = re.fullmatch(r"id(\d+)_id(\d+)_(\d{4})\.mp4", n)
        assert m and m[1] != m[2], n
        assert f"id{m[1]}_{m[3]}.mp4" in real, f"{n} has no original"
    lines = (root / "List_of_testing_videos.txt").read_text().splitlines()
    listed = {}
    for line in lines:
        label, rel = line.split(" ")
        listed[rel] = label
        assert (root / rel).is_file(), rel
        folder = rel.split("/")[0]
        # the real dataset's polarity: 1 = REAL, 0 = FAKE
        assert (label == "1") == (folder in ("Celeb-real", "YouTube-real")), line
        assert (label == "0") == (folder == "Celeb-synthesis"), line
    assert set(listed.values()) == {"0", "1"} and any(r.startswith("YouTube-real/") for r in listed)
    # chosen by target identity: a fake and its original (and all of an identity's videos) together
    test_ids = {re.match(r"(?:Celeb-real|Celeb-synthesis)/id(\d+)_", r)[1] for r in listed if "Celeb-" in r}
    for n in real + synth:
        folder = "Celeb-real" if n in real else "Celeb-synthesis"
        assert (f"{folder}/{n}" in listed) == (re.match(r"id(\d+)_", n)[1] in test_ids), n
    assert len(listed) < len(real) + len(youtube) + len(synth), "the training set must not be empty"


def test_wilddeepfake_tars(tiny):
    out, _ = tiny
    root = out / WDF
    assert sorted(p.name for p in root.iterdir()) == ["fake_test", "fake_train", "real_test", "real_train"]
    seqs_per_tar = []
    for folder in root.iterdir():
        kind = folder.name.split("_")[0]
        tars = sorted(folder.iterdir())
        assert tars and all(re.fullmatch(r"\d+\.tar\.gz", t.name) for t in tars)
        for t in tars:
            n = t.name.split(".")[0]
            with tarfile.open(t) as tf:
                files = [m for m in tf.getmembers() if m.isfile()]
                assert files
                seqs = set()
                for m in files:
                    match = re.fullmatch(r"\./(\d+)/(real|fake)/(\d+)/(\d+)\.png", m.name)
                    assert match, m.name
                    assert match[1] == n and match[2] == kind, m.name
                    seqs.add(match[3])
                seqs_per_tar.append(len(seqs))
                img = cv2.imdecode(np.frombuffer(tf.extractfile(files[0]).read(), np.uint8), cv2.IMREAD_UNCHANGED)
                assert img.shape == (224, 224, 3)
    assert max(seqs_per_tar) >= 2, "tars hold several sequences"


def test_dfdc_public_test_set_has_its_own_people_and_becomes_the_test_split(tiny):
    from interceptor_lib.data.indexers.dfdc import index_dfdc

    out, _ = tiny
    with open(out / DF / "test" / "labels.csv", newline="") as f:
        labels = {r["filename"]: int(r["label"]) for r in csv.DictReader(f)}
    n_real, n_fake = SCALES["tiny"].dfdc_test
    assert sorted(labels.values()) == [0] * n_real + [1] * n_fake
    assert sorted(labels) == sorted(p.name for p in (out / DF / "test" / "videos").glob("*.mp4"))
    rows = {r["relpath"]: r for r in side_table(out) if r["dataset"] == "dfdc"}
    test_rows = [r for rel, r in rows.items() if "/test/" in rel]
    assert len(test_rows) == n_real + n_fake and all(r["split"] == "test" for r in test_rows)
    part_names = {Path(rel).name for rel in rows if "/test/" not in rel}
    assert not part_names & set(labels)
    # fakes of the test set are made from the test set's own reals, never from a training part's
    assert all(r["original"].startswith("test/videos/") for r in test_rows if r["label"] == "1")
    table = index_dfdc(out / DF)
    test = table[table["split"] == "test"]
    assert sorted(test["video_id"]) == sorted(f"dfdc/test/{Path(n).stem}" for n in labels)
    assert dict(zip(test["video_id"].str.split("/").str[-1] + ".mp4", test["label"])) == labels
    assert set(table[table["chunk"] >= 0]["split"]) <= {"train", "val"}


def test_dfdc_parts_metadata_and_balance(tiny):
    out, _ = tiny
    parts = sorted((out / DF).glob("dfdc_train_part_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    assert [p.name for p in parts] == [f"dfdc_train_part_{k}" for k in range(len(parts))] and len(parts) >= 3
    where, shares, crossing = {}, [], 0
    metas = {}
    for part in parts:
        meta = json.loads((part / "metadata.json").read_text())
        metas[part.name] = meta
        assert sorted(meta) == names(part) and all(re.fullmatch(r"[a-z]{10}\.mp4", n) for n in meta)
        where.update({n: part.name for n in meta})
        labels = [v["label"] for v in meta.values()]
        assert set(labels) <= {"REAL", "FAKE"} and all(v["split"] == "train" for v in meta.values())
        shares.append(labels.count("FAKE") / len(labels))
    for part, meta in metas.items():
        for name, v in meta.items():
            if v["label"] == "REAL":
                assert v["original"] is None
            else:
                assert where[v["original"]] and metas[where[v["original"]]][v["original"]]["label"] == "REAL"
                crossing += where[v["original"]] != part
    assert crossing >= 1, "some fakes' originals must live in another part"
    assert max(shares) - min(shares) >= 0.05, f"parts should differ in class balance: {shares}"


def test_every_video_decodes_as_h264_with_audio_only_in_dfdc(tiny):
    out, _ = tiny
    videos = sorted(out.rglob("*.mp4"))
    assert len(videos) > 50
    for path in videos:
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.name == "h264", path
            audio = [s.codec_context.name for s in c.streams.audio]
            n = sum(1 for _ in c.decode(video=0))
        assert n >= 20, path
        if DF in path.parts:
            assert audio == ["aac"], path
        else:
            assert audio == [], path


def test_class_imbalance_one_real_to_four_to_six_fakes(tiny):
    out, report = tiny
    rows = side_table(out)
    for dataset in DEMO_ROOTS:
        c = Counter(r["label"] for r in rows if r["dataset"] == dataset)
        assert 4 <= c["1"] / c["0"] <= 6, (dataset, c)
        assert report.counts[dataset] == {"real": c["0"], "fake": c["1"]}
    for name, spec in SCALES.items():
        for dataset, c in spec.counts().items():
            assert 4 <= c["fake"] / c["real"] <= 6, (name, dataset, c)


def test_side_table_covers_every_video_with_one_known_family(tiny):
    out, _ = tiny
    rows = side_table(out)
    media = {str(p.relative_to(out)) for p in out.rglob("*.mp4")}
    assert {r["relpath"] for r in rows if r["relpath"].endswith(".mp4")} == media
    tars = {str(p.relative_to(out)) for p in out.rglob("*.tar.gz")}
    assert {r["relpath"].split("::")[0] for r in rows if "::" in r["relpath"]} == tars
    for r in rows:
        if r["label"] == "1":
            assert r["artifact"] in FAMILIES and float(r["strength"]) > 0, r
        else:
            assert r["artifact"] == "none" and float(r["strength"]) == 0, r
        for col in ("brightness", "source_res", "motion", "face_scale", "has_audio"):
            assert r[col] != "", (col, r)
    fams = {d: Counter(r["artifact"] for r in rows if r["dataset"] == d and r["label"] == "1") for d in DEMO_ROOTS}
    assert set(fams["dfdc"]) == set(FAMILIES)
    for d in ("ffpp", "celebdf", "wilddeepfake"):
        assert set(fams[d]) == set(VISUAL_FAMILIES), (d, fams[d])
    for method, (dominant, _) in FFPP_METHODS.items():
        c = Counter(r["artifact"] for r in rows if r["method"] == method)
        assert c.most_common(1)[0][0] == dominant, (method, c)
    # conditions vary among reals too, so that no condition alone marks the fakes
    reals = [r for r in rows if r["label"] == "0" and r["dataset"] != "wilddeepfake"]
    assert len({r["crf"] for r in reals}) >= 3 and len({r["dark"] for r in reals}) == 2


def test_haar_finds_faces_in_reals_and_every_artifact(tiny):
    out, report = tiny
    assert report.face_detection_rate >= 0.9
    manifest = json.loads((out / "demo_manifest.json").read_text())
    assert manifest["face_detection_rate"] == report.face_detection_rate
    wide = measure_face_detection_rate(out, max_videos=60, frames_per_video=3, seed=1)
    assert wide.rate >= 0.9
    assert set(wide.by_artifact) == {"none", *FAMILIES}
    assert min(wide.by_artifact.values()) >= 0.8, wide.by_artifact


def test_wilddeepfake_crops_are_framed_like_the_detected_crops(tiny):
    """WildDeepfake ships face crops; the other datasets' crops come from a detector box widened by
    CropSpec.margin. The face must fill the same share of both, or the framing alone tells a model
    which dataset a face comes from."""
    from interceptor_lib.data.faces import CropSpec, HaarFaceDetector
    from interceptor_lib.data.video import open_source

    out, _ = tiny
    det, shares = HaarFaceDetector(), []
    for r in side_table(out):
        if r["dataset"] == "wilddeepfake" and r["label"] == "0":
            tar, member = r["relpath"].split("::")
            frame = open_source(str(out / tar), f"./{member}/").read([0])[0]  # RGB, as the pipeline reads it
            faces = det.detect(frame)
            assert faces, r["relpath"]
            (x0, _, x1, _), _ = faces[0]
            shares.append((x1 - x0) / frame.shape[1])
    assert shares
    # a detected crop's box fills 1 / margin of it (0.77); before, WildDeepfake's filled 0.60
    assert abs(float(np.median(shares)) - 1 / CropSpec.margin) < 0.1, shares


# -- determinism, manifest, skipping --------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_other_bytes(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    make_demo_data(again, seed=0, scale="tiny", workers=2, progress=False)
    ff = next((out / FF / "original_sequences/youtube/c23/videos").glob("*.mp4")).relative_to(out)
    fake = next((out / FF / "manipulated_sequences/Face2Face/c23/videos").glob("*.mp4")).relative_to(out)
    tar = next((out / WDF / "fake_train").glob("*.tar.gz")).relative_to(out)
    dfdc = next((out / DF / "dfdc_train_part_0").glob("*.mp4")).relative_to(out)
    for rel in (ff, fake, tar, dfdc, Path(CD) / "List_of_testing_videos.txt", Path("demo_artifacts.csv")):
        assert sha(out / rel) == sha(again / rel), rel
    other = tmp_path / "other"
    make_demo_data(other, seed=1, scale="tiny", workers=2, progress=False)
    assert sha(other / "demo_artifacts.csv") != sha(out / "demo_artifacts.csv")
    assert sha(other / tar) != sha(out / tar)  # WildDeepfake tar names do not depend on the seed
    # a missing media file makes the corpus incomplete: the next call regenerates
    (again / dfdc).unlink()
    assert _complete_report(again.resolve(), 0, "tiny", 1.0) is None


def test_second_call_with_same_arguments_skips(tiny):
    out, report = tiny
    manifest, video = out / "demo_manifest.json", next(out.rglob("*.mp4"))
    before = (manifest.stat().st_mtime_ns, video.stat().st_mtime_ns)
    t0 = time.perf_counter()
    again = make_demo_data(out, seed=0, scale="tiny", workers=2, progress=False)
    assert time.perf_counter() - t0 < 2.0
    assert again.skipped and again.counts == report.counts and again.seconds == report.seconds
    assert (manifest.stat().st_mtime_ns, video.stat().st_mtime_ns) == before


def test_bad_arguments_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        make_demo_data(tmp_path, scale="huge", progress=False)
    with pytest.raises(ValueError, match="artifact_strength"):
        make_demo_data(tmp_path, scale="tiny", artifact_strength=-1, progress=False)


def test_foreign_files_are_never_removed_without_overwrite(tmp_path):
    from interceptor_lib.synthetic.corpus import MARKER, _remove_stale
    from interceptor_lib.errors import InterceptorError

    # a folder the generator did not write: refused, nothing touched, the message names the file
    mine = tmp_path / "mine" / FF / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    with pytest.raises(InterceptorError, match="did not write") as e:
        make_demo_data(tmp_path / "mine", scale="tiny", progress=False)
    assert "notes.txt" in str(e.value) and "--overwrite" in str(e.value)
    assert mine.read_text() == "mine" and not (tmp_path / "mine" / MARKER).exists()
    # --out naming a file
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InterceptorError, match="is a file"):
        make_demo_data(tmp_path / "file.txt", scale="tiny", progress=False)
    assert (tmp_path / "file.txt").read_text() == "x"
    # an interrupted run's files (listed in its marker) go; the user's file beside them stays,
    # and one inside the corpus's folders makes it refuse
    out = tmp_path / "run"
    ours = out / DF / "dfdc_train_part_0" / "a.mp4"
    ours.parent.mkdir(parents=True)
    ours.write_bytes(b"partial")
    (out / MARKER).write_text(json.dumps({"files": [f"{DF}/dfdc_train_part_0/a.mp4"]}))
    (out / "README.txt").write_text("user")
    (out / DF / "keep.json").write_text("user")
    with pytest.raises(InterceptorError, match="keep.json"):
        _remove_stale(out, overwrite=False)
    assert ours.exists() and (out / DF / "keep.json").exists()
    (out / DF / "keep.json").unlink()
    _remove_stale(out, overwrite=False)
    assert not ours.exists() and not (out / DF).exists() and (out / "README.txt").read_text() == "user"
    # overwrite: the corpus's folders go whole, other content of the folder stays
    _remove_stale(tmp_path / "mine", overwrite=True)
    assert not mine.exists() and not (tmp_path / "mine" / FF).exists()


def test_cli_make_demo_data_refuses_a_users_folder(tmp_path, capsys):
    from interceptor_lib.cli import main

    (tmp_path / CD).mkdir()
    (tmp_path / CD / "video.mp4").write_bytes(b"user data")
    assert main(["make-demo-data", "--out", str(tmp_path), "--scale", "tiny", "--quiet"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (tmp_path / CD / "video.mp4").read_bytes() == b"user data"


# -- artifact families, each on a synthetic frame ---------------------------------------------------

def _scene(key: str, **over):
    rng = named_rng(0, "test", key)
    ident = draw_identity(rng)
    scene = dataclasses.replace(draw_scene(rng, ident), **{"source_res": 1.0, "motion": 0.0, **over})
    return scene, ident


def _textured_frame(seed=0, size=(192, 256)):
    """A textured float frame (0..255) and a soft elliptical face mask in its middle."""
    rng = np.random.default_rng(seed)
    h, w = size
    frame = cv2.GaussianBlur(rng.uniform(40, 220, (h, w, 3)).astype(np.float32), (0, 0), 1.2)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.sqrt(((xx - w / 2) / 50) ** 2 + ((yy - h / 2) / 65) ** 2)
    return frame, np.clip((1 - r) / 0.2, 0, 1).astype(np.float32)


def _spec(family: str, strength: float = 1.0, seed: int = 0, **params) -> ArtifactSpec:
    spec = draw_artifact(np.random.default_rng(seed), family, strength)
    return dataclasses.replace(spec, params={**spec.params, **params})


def _box(mask):
    ys, xs = np.nonzero(mask > 0.99)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def test_compression_adds_misaligned_8x8_blocks_to_the_face():
    frame, mask = _textured_frame()
    art = build_artifact(_spec("compression", jpeg_quality=30, offset_x=3, offset_y=5))
    out = art.post(frame.copy(), mask, 0)
    assert np.array_equal(out[mask == 0], frame[mask == 0])
    ys, xs = _box(mask)

    def blockiness(img, ox):
        g = img[ys, xs].mean(axis=2)
        col = np.abs(np.diff(g, axis=1)).mean(axis=0)  # column steps; step k lies between x0+k, x0+k+1
        x = np.arange(xs.start, xs.start + len(col)) + 1
        on = (x - ox) % 8 == 0
        return col[on].mean() / col[~on].mean()

    assert blockiness(out, 3) > 1.3 * blockiness(frame, 3)  # block edges on the face's own grid
    assert blockiness(out, 3) > 1.3 * blockiness(out, 0)   # ... which is not the frame's 8x8 grid


def test_resolution_lowers_the_face_high_frequencies():
    frame, mask = _textured_frame()
    out = build_artifact(_spec("resolution", scale=0.5)).post(frame.copy(), mask, 0)
    ys, xs = _box(mask)
    energy = lambda img: cv2.Laplacian(img[ys, xs].mean(axis=2), cv2.CV_32F).var()
    assert energy(out) < 0.5 * energy(frame)
    assert np.array_equal(out[mask == 0], frame[mask == 0])


@pytest.mark.parametrize("mode", ["jitter", "flicker"])
def test_temporal_makes_the_face_change_between_frames(mode):
    frame, mask = _textured_frame()
    params = {"jitter_px": 0.8 if mode == "jitter" else 0.0, "flicker": 0.04 if mode == "flicker" else 0.0}
    art = build_artifact(_spec("temporal", mode=mode, **params), np.random.default_rng(0))
    frames = [art.pre_noise(frame.copy(), mask, i) for i in range(8)]
    ys, xs = _box(mask)
    face_diff = np.mean([np.abs(a[ys, xs] - b[ys, xs]).mean() for a, b in zip(frames, frames[1:])])
    bg_diff = np.mean([np.abs(a[mask == 0] - b[mask == 0]).mean() for a, b in zip(frames, frames[1:])])
    assert face_diff > 1.0 and bg_diff == 0.0


@pytest.mark.parametrize("mode,ratio", [("smooth", 0.4), ("grainy", 1.9)])
def test_low_light_changes_face_to_background_noise_ratio(mode, ratio):
    _, mask = _textured_frame()
    art = build_artifact(_spec("low_light", mode=mode, noise_ratio=ratio))
    noise = SensorNoise(np.random.default_rng(0), 256, 192, sigma=6.0).sample(mask, art.noise_ratio)
    measured = noise[mask > 0.99].std() / noise[mask == 0].std()
    assert abs(measured - ratio) < 0.1
    assert build_artifact(None).noise_ratio == 1.0


def test_low_light_fakes_in_bright_scenes_are_grainy_and_strong_lighting_stays_within_a_half_turn():
    # a denoised face cannot show against nearly clean bright footage: there it is the grainy kind
    draws = {dark: [draw_artifact(np.random.default_rng(i), "low_light", 1.0, dark=dark).params["mode"]
                    for i in range(60)] for dark in (True, False, None)}
    assert set(draws[False]) == {"grainy"}
    assert set(draws[True]) == {"smooth", "grainy"} and draws[True] == draws[None]
    # beyond 180 degrees a larger offset would bring the face's light back towards the room's
    angles = [abs(draw_artifact(np.random.default_rng(i), "lighting", 3.0).params["angle_deg"]) for i in range(60)]
    assert max(angles) <= 165 and min(a for a in angles if a) >= 100


def test_lighting_relights_the_face_but_not_the_room():
    scene, ident = _scene("lighting", light_angle=np.pi / 2)
    real = FrameRenderer(scene, ident, 256, 192, 25, 1, build_artifact(None))
    f_real, mask = real.render(0, 0.1)
    for params in ({"mode": "direction", "angle_deg": 100.0, "tint": 0.0}, {"mode": "color", "angle_deg": 0.0, "tint": 0.8}):
        fake = FrameRenderer(scene, ident, 256, 192, 25, 1, build_artifact(_spec("lighting", **params)))
        f_fake, _ = fake.render(0, 0.1)
        assert np.abs(f_fake[mask == 0] - f_real[mask == 0]).max() < 1e-3  # room and hair unchanged
        face = mask > 0.9
        if params["mode"] == "direction":  # key light swung from above to the side: left-right shading asymmetry
            ys, xs = np.nonzero(face)
            left, right = xs < xs.mean(), xs >= xs.mean()
            asym = lambda f: abs(f[ys[left], xs[left]].mean() - f[ys[right], xs[right]].mean())
            assert asym(f_fake) > asym(f_real) + 5
        else:  # warmer face: red/blue ratio up inside the face only
            rb = lambda f: f[face][:, 0].mean() / f[face][:, 2].mean()
            assert rb(f_fake) > 1.1 * rb(f_real)


def test_av_sync_shifts_the_mouth_against_the_audio():
    scene, ident = _scene("av", brightness=1.0, noise_sigma=0.0)
    n, fps = 90, 30.0
    audio = synth_speech(speech_of(scene.seed, n / fps), n / fps, np.random.default_rng(0))
    env = audio_envelope_per_frame(audio, n, fps)

    def mouth_lag(spec):
        art = build_artifact(spec)
        renderer = FrameRenderer(scene, ident, 256, 192, fps, n, art)
        mouth = art.mouth(speech_of(scene.seed, n / fps), n, fps)
        closed = renderer.render(0, 0.0)[0]
        opening = np.array([np.abs(renderer.render(i, float(mouth[i]))[0] - closed).sum() for i in range(n)])
        a, b = opening - opening.mean(), env - env.mean()
        lags = list(range(-10, 11))
        corr = [np.dot(a[max(0, k):n + min(0, k)], b[max(0, -k):n - max(0, k)]) for k in lags]
        return lags[int(np.argmax(corr))]

    assert abs(mouth_lag(None)) <= 1
    assert abs(mouth_lag(_spec("av_sync", mode="shift", lag_frames=6, foreign_seed=0)) - 6) <= 1
    assert abs(mouth_lag(_spec("av_sync", mode="shift", lag_frames=-5, foreign_seed=0)) + 5) <= 1


def test_fake_differs_from_its_original_only_where_the_artifact_acts():
    scene, ident = _scene("pair")
    real = ClipSpec(scene, ident, 256, 192, 25, 4)
    fake = dataclasses.replace(real, artifact=_spec("resolution", scale=0.5), artifact_key="x")
    for a, b in zip(render_clip(real), render_clip(fake)):
        diff = np.abs(a.astype(int) - b).max(axis=2)
        assert diff.any()
        ys, xs = np.nonzero(diff)
        h, w = diff.shape  # changes stay around the face, never in the frame's corners
        assert ys.min() > 0 and xs.min() > 0 and xs.max() < w - 1


def test_wilddeepfake_faces_are_rendered_small_and_saved_at_224(tiny):
    """WildDeepfake's 224 x 224 crops hold faces cut from smaller video frames: each sequence is
    rendered (noise, artifact, JPEG) at its source size and only then upscaled, so its detail is at
    the scale of the other datasets' crops once the cache resizes it to the face size."""
    out, _ = tiny
    rows = [r for r in side_table(out) if r["dataset"] == "wilddeepfake"]
    assert rows and all(112 <= int(r["source_px"]) <= 157 and r["width"] == r["height"] == "224" for r in rows)
    scene, ident = _scene("crop")
    small = ClipSpec(scene, ident, 128, 128, 25, 3, artifact=_spec("resolution", scale=0.5),
                     artifact_key="x", source_jpeg=True)
    saved = list(render_clip(dataclasses.replace(small, out_size=(224, 224))))
    for frame, ref in zip(saved, render_clip(small), strict=True):
        assert frame.shape == (224, 224, 3) and ref.shape == (128, 128, 3)
        # the artifact and the JPEG act at the source size; the upscale comes last
        assert np.array_equal(frame, cv2.resize(ref, (224, 224), interpolation=cv2.INTER_LINEAR))
