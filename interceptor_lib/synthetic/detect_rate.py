"""How often the project's default face detector finds the demo corpus's faces.

The demo corpus is only useful if preprocessing finds its faces like it would real ones; this
measures the share of sampled frames in which `HaarFaceDetector()` (default arguments) returns at
least one face, over a sample stratified by dataset and artifact family (so that every family and
the reals are represented), decoding the mp4 files that were actually written.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np

from interceptor_lib.data.faces import HaarFaceDetector

SIDE_TABLE = "demo_artifacts.csv"


@dataclass(frozen=True)
class DetectionRate:
    """Share of sampled frames with a detected face, overall and per dataset / artifact."""

    rate: float
    frames: int
    videos: int
    by_dataset: dict = field(default_factory=dict)
    by_artifact: dict = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.rate)

    def to_dict(self) -> dict:
        return asdict(self)


def measure_face_detection_rate(out_dir: str | Path, max_videos: int = 30, frames_per_video: int = 4,
                                seed: int = 0) -> DetectionRate:
    """Detection rate on up to `max_videos` mp4 files of a demo corpus in `out_dir`,
    `frames_per_video` evenly spaced frames each. Uses the corpus's side table to stratify by
    (dataset, artifact) when present, else samples all mp4 files under `out_dir`."""
    out_dir = Path(out_dir)
    entries = _candidates(out_dir)
    if not entries:
        raise FileNotFoundError(f"no mp4 videos found under {out_dir}; generate the demo corpus first")
    sample = _stratified(entries, max_videos, np.random.default_rng(seed))
    detector = HaarFaceDetector()
    hits: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for dataset, artifact, path in sample:
        for frame in _even_frames(path, frames_per_video):
            hits[(dataset, artifact)].append(bool(detector.detect(frame)))
    every = [h for hs in hits.values() for h in hs]
    if not every:
        raise ValueError(f"no frame could be decoded from the {len(sample)} sampled videos under {out_dir}")

    def rates(index: int) -> dict:
        grouped: dict[str, list[bool]] = defaultdict(list)
        for key, hs in hits.items():
            grouped[key[index]].extend(hs)
        return {k: round(float(np.mean(v)), 4) for k, v in sorted(grouped.items())}

    return DetectionRate(rate=round(float(np.mean(every)), 4), frames=len(every), videos=len(sample),
                         by_dataset=rates(0), by_artifact=rates(1))


def _candidates(out_dir: Path) -> list[tuple[str, str, Path]]:
    table = out_dir / SIDE_TABLE
    if table.is_file():
        with open(table, newline="") as f:
            return [(r["dataset"], r["artifact"], out_dir / r["relpath"]) for r in csv.DictReader(f)
                    if r["relpath"].endswith(".mp4")]
    return [(p.relative_to(out_dir).parts[0], "unknown", p) for p in sorted(out_dir.rglob("*.mp4"))]


def _stratified(entries, n: int, rng: np.random.Generator):
    """Round-robin over (dataset, artifact) groups in a random order, random members within."""
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for e in entries:
        groups[(e[0], e[1])].append(e)
    keys = sorted(groups)
    queues = [[groups[k][i] for i in rng.permutation(len(groups[k]))] for k in (keys[i] for i in rng.permutation(len(keys)))]
    out = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop())
    return out


def _even_frames(path: Path, k: int) -> list[np.ndarray]:
    """k evenly spaced RGB frames of a (short) video, decoded in full."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        return []
    idx = np.unique(np.linspace(0, len(frames) - 1, k).round().astype(int))
    return [frames[i] for i in idx]
