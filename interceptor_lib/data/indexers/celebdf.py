"""Celeb-DF v2 indexer (Li et al. 2020).

Dataset facts used here (see DATASETS.md):
- `Celeb-real/id<X>_<NNNN>.mp4` and `YouTube-real/<NNNNN>.mp4` are real,
  `Celeb-synthesis/id<A>_id<B>_<NNNN>.mp4` is a fake of target A with source B, made from A's
  original `Celeb-real/id<A>_<NNNN>.mp4`. Some copies keep each folder's videos under `videos/`.
- `List_of_testing_videos.txt` lines read `<label> <folder>/<file>.mp4` with **1 = REAL, 0 = FAKE**
  (the opposite of the project's fake = 1); the earlier attempt inverted it.
- Training is every video not in the test list; there is no official validation split, so one is
  held out from training by identity. No audio.

video_id = `celebdf/<folder>/<stem>` (never includes `videos/`),
e.g. `celebdf/Celeb-synthesis/id0_id16_0003`.
group = `celebdf/id<A>` (target identity) for Celeb-real and Celeb-synthesis, `celebdf/yt<NNNNN>`
for each YouTube-real video. The official test list shares identities with training by design, so
`check_leakage` compares only train and val groups for Celeb-DF.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from interceptor_lib.data.indexers._common import layout_error, require_dir, warn_skipped
from interceptor_lib.data.sequences import list_files
from interceptor_lib.data.table import hold_out_groups, make_table
from interceptor_lib.errors import DatasetLayoutError

#: Folder -> label in the project convention (fake = 1).
FOLDERS = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}
TEST_LIST = "List_of_testing_videos.txt"

LAYOUT = """\
<root>/Celeb-real/id<X>_<NNNN>.mp4               (or Celeb-real/videos/*.mp4)
<root>/YouTube-real/<NNNNN>.mp4                  (or YouTube-real/videos/*.mp4)
<root>/Celeb-synthesis/id<A>_id<B>_<NNNN>.mp4    (or Celeb-synthesis/videos/*.mp4)
<root>/List_of_testing_videos.txt                lines "<label> <folder>/<file>.mp4", 1 = real, 0 = fake
"""

_CELEB_REAL = re.compile(r"^(id\d+)_\d+$")
_SYNTHESIS = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")
_YOUTUBE = re.compile(r"^(\d+)$")


def index_celebdf(root, val_fraction: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Index Celeb-DF v2 into the common table (one row per video).

    split = test exactly for the videos of the test list, train for every other video, and val for
    about `val_fraction` of the training identities (`hold_out_groups` with `seed`). Test-list
    entries whose file is missing, and files with unexpected names, are skipped with a warning.
    """
    root = require_dir(root, "celebdf", LAYOUT)
    if not any((root / folder).is_dir() for folder in FOLDERS):
        raise layout_error("celebdf", LAYOUT, root, f"none of the folders {list(FOLDERS)} are here")
    test = read_test_list(root)
    videos = _scan_videos(root)
    rows, odd = [], []
    for video_id, path in sorted(videos.items()):
        folder, stem = video_id.split("/")[1:]
        group, original = _group_and_original(folder, stem)
        if group is None:
            odd.append(path)
            continue
        rows.append({"video_id": video_id, "path": str(path), "label": FOLDERS[folder],
                     "split": "test" if video_id in test else "train", "dataset": "celebdf",
                     "method": "Celeb-synthesis" if FOLDERS[folder] else "real", "group": group,
                     "chunk": -1, "has_audio": False,
                     "original_id": original if original in videos else "", "member": ""})
    warn_skipped("celebdf", "file(s) with unexpected names skipped", odd,
                 "Expected id<X>_<NNNN>.mp4, <NNNNN>.mp4 and id<A>_id<B>_<NNNN>.mp4")
    warn_skipped("celebdf", f"video(s) of {TEST_LIST} missing on disk (not indexed)",
                 sorted(set(test) - set(videos)))
    train_groups = {r["group"] for r in rows if r["split"] == "train"}
    held = hold_out_groups(train_groups, val_fraction, seed)
    for r in rows:
        if r["split"] == "train":
            r["split"] = held[r["group"]]
    return make_table(rows)


def official_test_ids(root) -> set[str]:
    """video_ids of every entry of `List_of_testing_videos.txt`, present on disk or not."""
    return set(read_test_list(require_dir(root, "celebdf", LAYOUT)))


def read_test_list(root: Path) -> dict[str, int]:
    """Parse the test list into video_id -> label with fake = 1 (the file itself says 1 = REAL).

    Raises DatasetLayoutError when the list is missing, a line is malformed, names an unknown folder,
    or its label disagrees with its folder (which would mean the polarity is not what we assume).
    """
    path = root / TEST_LIST
    if not path.is_file():
        raise layout_error("celebdf", LAYOUT, root,
                           f"{TEST_LIST} is missing; it defines the official test split")
    labels: dict[str, int] = {}
    disagree = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[0] not in ("0", "1"):
            raise DatasetLayoutError(
                f"celebdf: {path} line {number} reads {line!r}; expected \"<0|1> <folder>/<file>.mp4\"")
        parts = fields[1].replace("\\", "/").split("/")
        folder, stem = parts[0], Path(parts[-1]).stem
        if folder not in FOLDERS:
            raise DatasetLayoutError(
                f"celebdf: {path} line {number} names folder {folder!r}; "
                f"expected one of {list(FOLDERS)}")
        label = 1 - int(fields[0])  # the list says 1 = real, 0 = fake
        if label != FOLDERS[folder]:
            disagree.append(f"line {number}: {line.strip()!r}")
        labels[f"celebdf/{folder}/{stem}"] = label
    if disagree:
        raise DatasetLayoutError(
            f"celebdf: {len(disagree)} line(s) of {path} disagree with their folder, assuming the "
            f"list's convention 1 = real, 0 = fake (e.g. {disagree[0]}); Celeb-real and YouTube-real "
            "hold real videos, Celeb-synthesis fakes. Check that this is the original Celeb-DF v2 list")
    return labels


def _scan_videos(root: Path) -> dict[str, Path]:
    """video_id -> path over the three folders, accepting both `<folder>/*.mp4` and
    `<folder>/videos/*.mp4` (the id does not depend on which)."""
    videos: dict[str, Path] = {}
    duplicates = []
    for folder in FOLDERS:
        for sub in (root / folder, root / folder / "videos"):
            for name, path in sorted(list_files(sub, [".mp4"]).items()):
                video_id = f"celebdf/{folder}/{Path(name).stem}"
                if video_id in videos:
                    duplicates.append(path)
                    continue
                videos[video_id] = path
    absent = [folder for folder in FOLDERS if not (root / folder).is_dir()]
    warn_skipped("celebdf", "folder(s) missing from this copy", absent)
    warn_skipped("celebdf", "video(s) present both in <folder>/ and <folder>/videos/; the first kept",
                 duplicates)
    return videos


def _group_and_original(folder: str, stem: str) -> tuple[str | None, str]:
    """(group, video_id of the original or '') from a file name; group None for unexpected names."""
    if folder == "YouTube-real":
        m = _YOUTUBE.match(stem)
        return (f"celebdf/yt{m.group(1)}", "") if m else (None, "")
    if folder == "Celeb-real":
        m = _CELEB_REAL.match(stem)
        return (f"celebdf/{m.group(1)}", "") if m else (None, "")
    m = _SYNTHESIS.match(stem)
    if m is None:
        return None, ""
    target, _, number = m.groups()
    return f"celebdf/{target}", f"celebdf/Celeb-real/{target}_{number}"
