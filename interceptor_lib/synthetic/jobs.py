"""Units of work for the process pool: one mp4 video, or one WildDeepfake tar of frame sequences.

A job holds everything needed to write its file (frozen dataclasses, cheap to pickle) and nothing
about the process that runs it, so the files are the same whatever the worker count or order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from interceptor_lib.synthetic.clip import ClipSpec, clip_audio, render_clip
from interceptor_lib.synthetic.encode import X264_PRESET, DeterministicTarGz, png_bytes
from interceptor_lib.data.video import write_video


@dataclass(frozen=True)
class VideoJob:
    """One H.264 mp4 at `relpath` (relative to the corpus folder); `audio` adds the AAC track."""

    relpath: str
    clip: ClipSpec
    audio: bool = False

    @property
    def cost(self) -> float:
        return self.clip.n_frames * self.clip.width * self.clip.height

    def run(self, out_dir: Path) -> None:
        clip = self.clip
        audio = clip_audio(clip) if self.audio else None
        write_video(out_dir / self.relpath, render_clip(clip), clip.fps, crf=clip.scene.quality, audio=audio,
                    preset=X264_PRESET)


@dataclass(frozen=True)
class SequenceJob:
    """One `<N>.tar.gz` holding `./<N>/<kind>/<sequence_id>/<frame_no>.png` for each sequence."""

    relpath: str
    number: int
    kind: str                                         # "real" or "fake"
    sequences: tuple[tuple[str, int, ClipSpec], ...]  # (sequence id, first frame number, clip)

    @property
    def cost(self) -> float:
        return sum(c.n_frames * c.width * c.height for _, _, c in self.sequences) * 1.3  # + PNG

    def run(self, out_dir: Path) -> None:
        tar = DeterministicTarGz(out_dir / self.relpath)
        for seq_id, first, clip in self.sequences:
            for i, frame in enumerate(render_clip(clip)):
                tar.add_file(f"./{self.number}/{self.kind}/{seq_id}/{first + i}.png", png_bytes(frame))
        tar.close()


def run_job(args: tuple[Path, VideoJob | SequenceJob]) -> tuple[str, float]:
    """Pool entry point: write one job's file; returns (relpath, seconds)."""
    out_dir, job = args
    t0 = time.perf_counter()
    job.run(Path(out_dir))
    return job.relpath, time.perf_counter() - t0


def init_worker() -> None:
    """One OpenCV thread per worker process: the pool already uses every core."""
    cv2.setNumThreads(1)
