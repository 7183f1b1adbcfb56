"""Preprocessing cost at real sizes, the tracked boxes (`preprocess.boxes: track`, the default)
against the reference path (`boxes: detect`: a full-frame search of every probed frame), side by
side in one run, with the accuracy of the stored boxes.

Test videos, made here: a real photograph of a face (scikit-image's astronaut) moving slowly over a
textured, panning background, its true face box known in every frame:

  dfdc  1920x1080, 30 fps, 10 s, H.264 + AAC (like DFDC), an original and a fake of it
  ffpp  1280x720,  25 fps, 15 s, H.264 (like FF++ c23), an original and a fake of it
  dfdc-trim  a fake 10 frames shorter than its original (boxes reused by time, not re-detected)

With the kaggle profile's settings (32 frames + 4 clips x 8, 224 px JPEG q95 crops, detection on
frames downscaled to 640 px), prints per video and path the CPU seconds (all threads) of the whole
preprocessing (build_cache, one worker), their split into decode / detect / crop + encode (timed
again component by component), the ratio reference / tracked, and the IoU of the stored boxes with
the true ones (median, share >= 0.8).

    python benchmarks/bench_preprocess.py [--seconds 10] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.cache import build_cache
from interceptor_lib.data.extract import face_detector
from interceptor_lib.data.crops_file import CropReader, encode_crop
from interceptor_lib.data.faces import CropSpec, box_iou, crop_face, track_faces
from interceptor_lib.data.table import make_table
from interceptor_lib.data.video import open_source, sample_clip_starts, sample_frame_indices, write_video

FACE_IN_PATCH = np.array([65, 45, 165, 145], np.float32) / 240  # the face within the 240 px patch below
KAGGLE = PreprocessParams(frames_per_video=32, clips_per_video=4, clip_len=8, face_size=224, margin=1.3,
                          image_format="jpg", jpeg_quality=95, detect_max_side=640, workers=1)


def scene(size, fps, seconds, patch_side, tint=0, n_frames=None):
    """(frames generator, true boxes): the face patch drifting over a panning textured background."""
    w, h = size
    n = n_frames or int(round(fps * seconds))
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (h, w + 2 * n + 8, 3), dtype=np.uint8), (9, 9), 0)
    patch = cv2.resize(skdata.astronaut()[20:260, 110:350], (patch_side, patch_side), interpolation=cv2.INTER_AREA)
    if tint:
        patch = np.clip(patch.astype(int) + tint, 0, 255).astype(np.uint8)
    boxes = []
    for i in range(n):
        x = int(w / 2 - patch_side / 2 + 0.15 * w * np.sin(i / (1.5 * fps)))
        y = int(h / 2 - patch_side / 2 + 0.05 * h * np.sin(i / (2.3 * fps)))
        boxes.append(FACE_IN_PATCH * patch_side + np.array([x, y, x, y], np.float32))

    def frames():
        for i in range(n):
            img = np.ascontiguousarray(texture[:, 2 * i:2 * i + w])
            b = boxes[i]
            x, y = int(round(b[0] - FACE_IN_PATCH[0] * patch_side)), int(round(b[1] - FACE_IN_PATCH[1] * patch_side))
            img[y:y + patch_side, x:x + patch_side] = patch
            yield img
    return frames(), np.stack(boxes)


def make_videos(out: Path, seconds: float) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    specs = {"dfdc": ((1920, 1080), 30, seconds, 420, True), "ffpp": ((1280, 720), 25, 1.5 * seconds, 360, False)}
    videos = {}
    for name, (size, fps, secs, side, audio) in specs.items():
        n = int(round(fps * secs))
        tone = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(secs * 44100)) / 44100)).astype(np.float32) if audio else None
        for kind, tint, frames_n in (("original", 0, n), ("fake", 12, n)) + ((("trim", 12, n - 10),) if name == "dfdc" else ()):
            path = out / f"{name}-{kind}.mp4"
            frames, boxes = scene(size, fps, secs, side, tint, frames_n)
            if not path.exists():
                t = time.perf_counter()
                write_video(path, frames, fps=fps, audio=tone)
                print(f"made {path.name} ({time.perf_counter() - t:.0f} s)", flush=True)
            videos[f"{name}-{kind}"] = (path, boxes, name)
    return videos


def table(videos):
    rows = []
    for key, (path, _, ds) in videos.items():
        kind = key.split("-")[1]
        rows.append({"video_id": f"{ds}/{kind}", "path": str(path), "label": int(kind != "original"), "split": "test",
                     "dataset": ds, "method": "real" if kind == "original" else ds, "group": ds, "chunk": 0,
                     "has_audio": ds == "dfdc", "original_id": "" if kind == "original" else f"{ds}/original",
                     "member": ""})
    return make_table(rows)


def components(path: Path, params: PreprocessParams) -> dict[str, float]:
    """CPU seconds of decode (frames + audio), detect and crop + encode for an original, one path."""
    cpu = time.process_time
    t0 = cpu()
    src = open_source(str(path), "", None, threads=False)
    n = src.info().num_frames
    fidx = sample_frame_indices(n, params.frames_per_video)
    starts = sample_clip_starts(n, params.clips_per_video, params.clip_len)
    union = np.unique(np.concatenate([fidx, (starts[:, None] + np.arange(params.clip_len)).reshape(-1)]))
    imgs = src.read_skipping(union, lazy=True) if params.boxes == "track" else src.read(union)
    src.audio(params.audio_sample_rate)
    t1 = cpu()
    det, probe = face_detector(params), set(fidx.tolist()) | set(starts.tolist())
    if params.boxes == "track":
        boxes = track_faces(det, imgs, [int(f) in probe for f in union], params.full_detect_every)
    else:
        boxes = [det.detect(im)[0][0] if int(f) in probe else None for f, im in zip(union, imgs)]
    t2 = cpu()
    last = next(b for b in boxes if b is not None)
    spec = CropSpec(params.face_size, params.margin)
    for im, b in zip(imgs, boxes):
        last = b if b is not None else last
        encode_crop(crop_face(im, last, spec), params.image_format, params.jpeg_quality)
    t3 = cpu()
    return {"decode": t1 - t0, "detect": t2 - t1, "encode": t3 - t2}


def box_accuracy(cache, videos) -> dict[str, tuple[float, float]]:
    out = {}
    for key, (_, truth, ds) in videos.items():
        rd = CropReader(cache.entry_path(f"{ds}/{key.split('-')[1]}"))
        ious = [box_iou(b, truth[min(int(f), len(truth) - 1)]) for f, b in zip(rd.frame_indices, rd.boxes)]
        out[key] = (float(np.median(ious)), float(np.mean(np.array(ious) >= 0.8)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the DFDC-like videos (FF++: 1.5x)")
    ap.add_argument("--out", default=None, help="folder for the test videos (kept; default: a temporary one)")
    a = ap.parse_args()
    root = Path(a.out or tempfile.mkdtemp(prefix="bench_preprocess_"))
    videos = make_videos(root / "videos", a.seconds)
    t = table(videos)
    results = {}
    for boxes in ("detect", "track"):
        params = replace(KAGGLE, boxes=boxes)
        processed = []
        shutil.rmtree(root / f"cache-{boxes}", ignore_errors=True)  # time every video, not a cache hit
        cache = build_cache(t, params, root / f"cache-{boxes}", progress=False, processed=processed)
        cpu = {f"{r['dataset']}-{r['video_id'].split('/')[1]}": (res["cpu_s"], res["meta"]["box_source"])
               for r, res in processed}
        results[boxes] = {"cpu": cpu, "iou": box_accuracy(cache, videos),
                          "parts": {ds: components(videos[f"{ds}-original"][0], params) for ds in ("dfdc", "ffpp")}}
    print(f"\n{'video':16} {'path':7} {'CPU s':>6} {'boxes from':>17} {'IoU median':>10} {'IoU>=0.8':>8}")
    for key in videos:
        for boxes in ("detect", "track"):
            r = results[boxes]
            s, src = r["cpu"][key]
            med, share = r["iou"][key]
            print(f"{key:16} {boxes:7} {s:6.2f} {src:>17} {med:10.3f} {share:8.2f}")
        ratio = results["detect"]["cpu"][key][0] / results["track"]["cpu"][key][0]
        print(f"{'':16} ratio detect / track: {ratio:.1f}x")
    print("\nCPU seconds of an original by component (timed separately):")
    for ds in ("dfdc", "ffpp"):
        for boxes in ("detect", "track"):
            p = results[boxes]["parts"][ds]
            print(f"  {ds:5} {boxes:7} decode {p['decode']:5.2f}  detect {p['detect']:5.2f}  crop+encode {p['encode']:5.2f}")
    print(f"\nvideos and caches in {root}")


if __name__ == "__main__":
    main()
