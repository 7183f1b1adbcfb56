"""One video's face crops: sample frames and clips, find the face (or reuse the original's boxes),
crop it with a margin, cut the audio windows, and write the video's crop entry (`crops_file`).

`build_cache` (data.cache) runs `process_video` for every video of a table in worker processes;
inference runs it for one input.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.crops_file import CropEntry, encode_crop, write_entry
from interceptor_lib.data.faces import CropSpec, create_face_detector, crop_face, fill_missing_boxes, track_faces
from interceptor_lib.data.video import frame_luma_mean, open_source, sample_clip_starts, sample_frame_indices
from interceptor_lib.errors import MediaError

KEPT_REASONS = {"no_audio"}  # recorded, but the video stays usable
_DETECTOR = {}  # one face detector per process and setting


def process_video(item: dict, params: PreprocessParams, frames=None) -> dict:
    """Write one video's crop entry to `item["out"]` (frames and clips sampled, faces detected or
    reused, cropped, audio windows cut); returns its video_id and manifest `meta` (and a kept
    `failure` for missing audio). MediaError when the video cannot be used."""
    r = item["row"]
    # one decoding thread: the cache's parallelism is its worker processes, and extra FFmpeg threads
    # per process cost CPU time without saving any
    src = open_source(r["path"], r["member"], frames, threads=False)
    info = src.info()
    n = info.num_frames
    fidx = sample_frame_indices(n, params.frames_per_video)
    starts = sample_clip_starts(n, params.clips_per_video, params.clip_len)
    clip_idx = (starts[:, None] + np.arange(params.clip_len)[None, :]) if len(starts) else np.zeros((0, params.clip_len), np.int64)
    union = np.unique(np.concatenate([fidx, clip_idx.reshape(-1)]))
    # the tracked path also skips decoding the frames nothing refers to (the same frames, less CPU)
    # and converts to RGB only the regions looked at (YuvFrame: the same pixels)
    imgs = src.read_skipping(union, lazy=True) if params.boxes == "track" and hasattr(src, "read_skipping") \
        else src.read(union)

    box_source = "self"
    if src.precropped:  # face sequences (WildDeepfake) are already cropped: keep the whole image
        h, w = imgs[0].shape[:2]
        boxes = np.tile(np.array([0, 0, w, h], np.float32), (len(imgs), 1))
        found = probed = np.ones(len(imgs), bool)
        face_rate = 1.0
        spec = CropSpec(size=params.face_size, margin=1.0)
    else:
        reuse = item.get("reuse")
        timed = reuse and params.boxes == "track" and reuse["fps"] > 0 and info.fps > 0
        if reuse and reuse["frame_indices"] == union.tolist():
            boxes, found = np.asarray(reuse["boxes"], np.float32), np.asarray(reuse["found"], bool)
            probed = np.asarray(reuse["probed"], bool)
            box_source = "original"
        elif timed:  # another frame count or rate: each frame takes the original's box at its time
            boxes, j = boxes_at_times(union, info.fps, np.asarray(reuse["frame_indices"]), reuse["fps"],
                                      np.asarray(reuse["boxes"], np.float32))
            found, probed = np.asarray(reuse["found"], bool)[j], np.asarray(reuse["probed"], bool)[j]
            box_source = "original_by_time"
        elif params.boxes == "track":
            det, probe = face_detector(params), set(fidx.tolist()) | set(starts.tolist())
            probed = np.array([int(f) in probe for f in union])
            found_boxes = track_faces(det, imgs, probed.tolist(), params.full_detect_every)
            try:
                boxes, found = fill_missing_boxes(found_boxes)
            except ValueError:
                raise MediaError("no_face", f"no face found in {probed.sum()} sampled frames of {r['path']}") from None
        else:
            # Detect on the evenly spaced frames and the first frame of each clip; the other clip
            # frames (a fraction of a second later) take the nearest detected box. Halves the
            # detector's work, which dominates building the cache.
            det, probe = face_detector(params), set(fidx.tolist()) | set(starts.tolist())
            dets = [det.detect(im) if int(f) in probe else None for f, im in zip(union, imgs)]
            probed = np.array([int(f) in probe for f in union])
            try:
                boxes, found = fill_missing_boxes([d[0][0] if d else None for d in dets])
            except ValueError:
                raise MediaError("no_face", f"no face found in {probed.sum()} sampled frames of {r['path']}") from None
        face_rate = float(found[probed].mean())
        if face_rate < params.min_face_rate:
            raise MediaError("no_face", f"faces in only {face_rate:.0%} of sampled frames of {r['path']} "
                             f"(min_face_rate {params.min_face_rate:.0%})")
        spec = CropSpec(size=params.face_size, margin=params.margin)
    crops = [crop_face(im, b, spec) for im, b in zip(imgs, boxes)]

    audio, audio_failure = None, None
    if len(starts):
        wave = src.audio(params.audio_sample_rate) if info.has_audio else None
        if wave is not None and len(wave):
            audio = _audio_windows(wave, starts, params, info.fps)
    if r["has_audio"] and audio is None:
        audio_failure = MediaError("no_audio", f"{r['path']} has no decodable audio track; kept for visual models")

    grays = [cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops]
    pos = {int(f): i for i, f in enumerate(union)}
    motion = [np.abs(grays[pos[int(a)]].astype(np.float32) - grays[pos[int(b)]]).mean()
              for clip in clip_idx for a, b in zip(clip[:-1], clip[1:])]
    meta = {
        "video_id": r["video_id"], "fingerprint": item["fingerprint"], "num_frames": n, "fps": info.fps,
        "width": info.width, "height": info.height, "duration_s": info.duration_s,
        "bitrate_kbps": info.bitrate_kbps, "has_audio": audio is not None,
        "face_rate": face_rate, "box_source": box_source,
        # mean grey level of the whole frames, from every 4th pixel each way (within a fraction of a
        # grey level of all of them, for 1/16 of the work)
        "brightness": float(np.mean([frame_luma_mean(im) for im in imgs])),
        "face_brightness": float(np.mean([g.mean() for g in grays])),
        "sharpness": float(np.mean([cv2.Laplacian(g, cv2.CV_32F).var() for g in grays])),
        "motion": float(np.mean(motion)) if motion else 0.0,
    }
    entry = CropEntry(frame_indices=union, boxes=boxes, found=found, probed=probed,
                      frame_pos=np.searchsorted(union, fidx), clip_pos=np.searchsorted(union, clip_idx),
                      crops=[encode_crop(c, params.image_format, params.jpeg_quality) for c in crops],
                      image_format=params.image_format, crop_shape=crops[0].shape,
                      audio=audio, meta=meta)
    write_entry(Path(item["out"]), entry)
    res = {"video_id": r["video_id"], "meta": meta}
    if audio_failure:
        res["failure"] = failure_record(item, audio_failure)["failure"]
    return res


def nearest_in_time(frames: np.ndarray, fps: float, source_frames: np.ndarray, source_fps: float) -> np.ndarray:
    """For each frame index of a video at `fps`, the position in `source_frames` (sorted frame indices
    of another video at `source_fps`, e.g. a fake's original) of the frame nearest in time."""
    t, ts = np.asarray(frames, np.float64) / fps, np.asarray(source_frames, np.float64) / source_fps
    k = np.clip(np.searchsorted(ts, t), 1, max(1, len(ts) - 1))
    left = np.clip(k - 1, 0, len(ts) - 1)
    right = np.clip(k, 0, len(ts) - 1)
    return np.where(np.abs(ts[left] - t) <= np.abs(ts[right] - t), left, right)


def boxes_at_times(frames: np.ndarray, fps: float, source_frames: np.ndarray, source_fps: float,
                   source_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The boxes of another video (its sorted stored frame indices at `source_fps` and their boxes)
    at the times of `frames` (at `fps`): interpolated linearly between the two stored frames around
    each time (held at the ends), and the position of the nearest stored frame in time."""
    t, ts = np.asarray(frames, np.float64) / fps, np.asarray(source_frames, np.float64) / source_fps
    boxes = np.stack([np.interp(t, ts, source_boxes[:, k]) for k in range(4)], axis=1).astype(np.float32)
    return boxes, nearest_in_time(frames, fps, source_frames, source_fps)


def _audio_windows(wave: np.ndarray, starts: np.ndarray, params: PreprocessParams, fps: float) -> np.ndarray:
    """int16 windows of `audio_window_s` centred on each clip's centre, zero-padded at the ends."""
    sr = params.audio_sample_rate
    s = int(round(params.audio_window_s * sr))
    out = np.zeros((len(starts), s), np.int16)
    for i, st in enumerate(starts):
        centre = int(round((st + params.clip_len / 2) / fps * sr))
        a = centre - s // 2
        lo, hi = max(0, a), min(len(wave), a + s)
        if hi > lo:
            out[i, lo - a:hi - a] = np.clip(wave[lo:hi] * 32767, -32768, 32767).astype(np.int16)
    return out


def face_detector(params: PreprocessParams):
    """The face detector `params` name (detector, model file, size limit), built once per process."""
    key = (params.detector, params.detector_model, params.detect_max_side)
    if key not in _DETECTOR:
        _DETECTOR[key] = create_face_detector(params.detector, params.detector_model, max_side=params.detect_max_side)
    return _DETECTOR[key]


def failure_record(item: dict, e: MediaError) -> dict:
    """The failures.csv row of a video that cannot be used (or, for missing audio, is kept)."""
    r = item["row"]
    return {"video_id": r["video_id"], "failure": {
        "video_id": r["video_id"], "dataset": r["dataset"], "path": r["path"] + (f"::{r['member']}" if r["member"] else ""),
        "reason": e.reason, "action": "kept" if e.reason in KEPT_REASONS else "skipped", "message": str(e),
        "fingerprint": item["fingerprint"]}}
