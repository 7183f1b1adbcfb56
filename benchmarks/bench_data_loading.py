"""Data-loading throughput, measured side by side in one run:

  (a) plain PyAV decoding of the sampled frames (what a loader without a cache does every epoch),
  (b) decode + face detection + crop + encode, i.e. building the cache (paid once),
  (c) reading crops from the cache through FrameDataset with training augmentation; and (c') the
      same with pseudo-fakes only (`train.stages.<stage>.pseudo_fakes: only`: half the items a
      self-blended twin of a real one, made as it is read, then augmented),
  (d) per cached crop: the training augmentation against a self-blended pseudo-fake
      (`data.pseudo_fakes.self_blend`).

Prints frames/s of each and the ratios (c)/(a), (c')/(a), (b)/(a) and (d). Goals: (c) and (c') >= 10x
(a), so that training never waits on video decoding, pseudo-fakes or not; a pseudo-fake costs at most
one augmentation (d <= 1). Absolute numbers depend on the machine; the ratios are the result.

The videos are synthetic but sized like the real datasets (default 1920x1080, 30 fps, 10 s like most
DFDC clips; FF++ c23 and Celeb-DF are mostly 480p-720p: try --height 720), H.264 at CRF 23 with a moving,
textured background so that the encoder has real work and the decoder too. A real photographed face
(scikit-image's astronaut) drifts over it so that the Haar detector has a face to find.

    python benchmarks/bench_data_loading.py [--videos 4] [--seconds 10] [--height 1080] [--frames 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data as skdata
from torch.utils.data import DataLoader

from interceptor_lib.config.schema import PSEUDO_ONLY, PreprocessParams
from interceptor_lib.data.cache import build_cache
from interceptor_lib.data.datasets import FrameDataset, build_transform
from interceptor_lib.data.pseudo_fakes import PseudoFakes, blend_rng, self_blend
from interceptor_lib.data.table import make_table
from interceptor_lib.data.video import VideoSource, sample_frame_indices, write_video


def synthetic_video(path: Path, seconds: float, fps: int, width: int, height: int, seed: int) -> Path:
    """A real photograph (scikit-image's coffee / rocket) panning behind the astronaut's face, with
    sensor-like noise so that every frame carries new detail for the codec."""
    rng = np.random.default_rng(seed)
    scene = (skdata.coffee(), skdata.rocket())[seed % 2]
    bg = cv2.resize(scene, (width * 2, height), interpolation=cv2.INTER_CUBIC)
    side = height // 3
    face = cv2.resize(skdata.astronaut()[20:260, 110:350], (side, side), interpolation=cv2.INTER_AREA)

    def frames():
        for i in range(int(seconds * fps)):
            off = i * 3 % width
            img = bg[:, off:off + width].copy()  # panning camera
            x = width // 3 + int(width / 12 * np.sin(i / 15))
            y = height // 4 + int(height / 30 * np.cos(i / 11))
            img[y:y + side, x:x + side] = face
            noise = rng.normal(0, 3, (height // 4, width // 4, 1)).astype(np.float32)
            img = np.clip(img + cv2.resize(noise, (width, height))[..., None], 0, 255).astype(np.uint8)
            yield img

    return write_video(path, frames(), fps=fps, crf=23)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--height", type=int, default=1080, help="1080: DFDC, the bulk of the training data")
    ap.add_argument("--frames", type=int, default=32, help="sampled frames per video")
    ap.add_argument("--face-size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=3, help="passes over the cache for (c)")
    ap.add_argument("--formats", nargs="+", default=["png", "jpg", "raw"], help="cache image formats to compare")
    ap.add_argument("--loader-workers", type=int, nargs="+", default=[0, 2],
                    help="DataLoader workers for (c); 2 uses both cores, as FFmpeg's threads may in (a)")
    a = ap.parse_args(argv)
    width = a.height * 16 // 9 // 2 * 2
    torch.set_num_threads(1)  # the loader's work is per image; intra-op threads only add overhead
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        paths = [synthetic_video(tmp / f"v{i}.mp4", a.seconds, a.fps, width, a.height, i) for i in range(a.videos)]
        print(f"generated {a.videos} videos {width}x{a.height}, {a.seconds:.0f} s at {a.fps} fps "
              f"in {time.perf_counter() - t:.1f} s")

        # (a) plain decoding of the sampled frames (FFmpeg may use both cores here; (c) uses one)
        t = time.perf_counter()
        n_a = 0
        for p in paths:
            src = VideoSource(p)
            n_a += len(src.read(sample_frame_indices(src.info().num_frames, a.frames)))
        fps_a = n_a / (time.perf_counter() - t)

        table = make_table([{"video_id": f"bench/v{i}", "path": str(p), "label": i % 2, "split": "train",
                             "dataset": "dfdc", "method": "x", "group": f"g{i}"} for i, p in enumerate(paths)])
        result = {"decode_fps": fps_a}
        print(f"(a) PyAV decode of sampled frames     : {fps_a:8.1f} frames/s")
        for fmt in a.formats:
            # (b) decode + detect + crop + encode into the cache (single process, like (a))
            params = PreprocessParams(frames_per_video=a.frames, clips_per_video=0, face_size=a.face_size,
                                      workers=1, image_format=fmt)
            t = time.perf_counter()
            cache = build_cache(table, params, tmp / "cache", progress=False)
            fps_b = n_a / (time.perf_counter() - t)
            if len(cache.manifest()) != a.videos:
                raise RuntimeError(f"cache incomplete: {cache.failures().to_dict('records')}")

            # (c) cache -> FrameDataset with training augmentation -> batches of 16
            print(f"(b) decode + detect + crop, {fmt} cache : {fps_b:8.1f} frames/s   (b)/(a) = {fps_b / fps_a:.2f}")
            result[fmt] = {"build_fps": fps_b}
            pseudo = PseudoFakes(PSEUDO_ONLY, margin=params.margin)
            for name, ds in (("c", FrameDataset(table, cache, transform=build_transform(train=True))),
                             ("c'", FrameDataset(table, cache, transform=build_transform(train=True), pseudo=pseudo))):
                for workers in a.loader_workers:
                    fps_c = _loader_fps(ds, workers, a.epochs)
                    result[fmt][f"dataset_fps_{workers}w" + ("_pseudo" if name == "c'" else "")] = fps_c
                    what = "augmentation" if name == "c" else "pseudo-fakes only + augmentation"
                    print(f"({name}) {fmt} cache + {what}, {workers} loader worker(s): {fps_c:8.1f} frames/s   "
                          f"({name})/(a) = {fps_c / fps_a:.1f}x (goal >= 10x: "
                          f"{'met' if fps_c / fps_a >= 10 else 'NOT met'})")
        # (d) on the last format's crops: augmentation vs self-blend, one crop at a time, one thread
        crops = [c for v in table["video_id"] for c in cache.reader(v).frames()]
        augment = build_transform(train=True)
        torch.manual_seed(0)
        t = time.perf_counter()
        for c in crops:
            augment(torch.from_numpy(c).permute(2, 0, 1))
        aug_s = (time.perf_counter() - t) / len(crops)
        t = time.perf_counter()
        for i, c in enumerate(crops):
            self_blend(c, blend_rng(0, 0, i), margin=params.margin)
        blend_s = (time.perf_counter() - t) / len(crops)
        result["augment_ms_per_crop"], result["self_blend_ms_per_crop"] = aug_s * 1e3, blend_s * 1e3
        print(f"(d) per {a.face_size} px crop: augmentation {aug_s * 1e3:.2f} ms, self-blended pseudo-fake "
              f"{blend_s * 1e3:.2f} ms   ratio {blend_s / aug_s:.2f} (goal <= 1: "
              f"{'met' if blend_s <= aug_s else 'NOT met'})")
    return result


def _loader_fps(ds, workers: int, epochs: int) -> float:
    """Frames per second through a DataLoader over `ds` (batches of 16, shuffled), its workers started
    before the clock."""
    loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    next(iter(loader))
    t = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for batch in loader:
            n += len(batch["label"])
    return n / (time.perf_counter() - t)


if __name__ == "__main__":
    main()
