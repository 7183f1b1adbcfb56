"""Which files to score: the paths given (folders searched recursively for videos and images), or a
sample of a run's test videos from its index table.

A bad input (missing path, not a video or image, empty file, folder without media) is not an
exception here: it becomes an entry with a one-line error, so the other inputs are still scored.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from interceptor_lib.data.registry import DATASETS
from interceptor_lib.data.video import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES


def collect_inputs(paths) -> list[tuple[Path, str | None]]:
    """(path, error) per input: files as given, folders expanded recursively to the videos and images
    inside (sorted; other files ignored). A missing path, a file that is not a video or image, or a
    folder without any becomes an entry with an error message."""
    out: list[tuple[Path, str | None]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MEDIA_SUFFIXES)
            if not found:
                out.append((p, f"folder {p} holds no videos or images ({', '.join(MEDIA_SUFFIXES)})"))
            out += [(f, None if f.stat().st_size else f"{f} is empty (0 bytes)") for f in found]
        elif not p.exists():
            out.append((p, f"{p} does not exist"))
        elif p.suffix.lower() not in MEDIA_SUFFIXES:
            out.append((p, f"{p} is not a video or image (expected one of {', '.join(MEDIA_SUFFIXES)})"))
        elif p.is_file() and p.stat().st_size == 0:
            out.append((p, f"{p} is empty (0 bytes)"))
        else:
            out.append((p, None))
    return out


def sample_test_videos(index: pd.DataFrame, per_class: int = 2, seed: int = 0) -> list[str]:
    """Paths of `per_class` real then `per_class` fake test videos drawn from `index` (the run's index
    table) with `seed`. Datasets whose items are face-image sequences rather than video files
    (`DATASETS[name].face_sequences`) are left out: predict takes files."""
    sequences = [name for name, entry in DATASETS.items() if entry.face_sequences]
    test = index[(index["split"] == "test") & ~index["dataset"].isin(sequences)]
    return [p for label in (0, 1)
            for p in test[test["label"] == label].sample(per_class, random_state=seed)["path"]]
