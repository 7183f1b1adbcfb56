"""DFDC indexer (Dolhansky et al. 2020), full 50-part release or any subset of its parts.

Dataset facts used here (see DATASETS.md):
- Parts `dfdc_train_part_<k>/` hold `*.mp4` and `metadata.json` mapping each file name to
  `{"label": "FAKE"|"REAL", "split": "train", "original": "<name>.mp4"|null}`. The `split` field says
  "train" everywhere and is ignored. Videos carry audio.
- A fake's original may sit in another part, so a real video and all its fakes form one group,
  wherever they lie; groups go to splits by hashing (`group_split`), which is independent of which
  parts are indexed, so a group lands in the same split in every subset of parts.
- Accepted: flat parts `<root>/dfdc_train_part_<k>/`, the nested Kaggle layout
  `<root>/dfdc_train_part_<kk>/dfdc_train_part_<k>/` (kk may be zero-padded; k of the innermost
  folder is the chunk) and a root that is itself one part.
- The public test set, when `<root>/test/videos/*.mp4` and `<root>/test/labels.csv`
  (`filename,label`, 1 = fake) exist, becomes the test split (chunk -1, group `dfdc/test/<stem>`),
  and the parts are then split into train and val only (`test_fraction` is not used).

video_id = `dfdc/<stem>` for part videos (names are unique across parts), `dfdc/test/<stem>` for the
public test set. group = `dfdc/<stem of original>` for fakes, `dfdc/<own stem>` for reals.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd

from interceptor_lib.data.indexers._common import layout_error, require_dir, warn_skipped
from interceptor_lib.data.sequences import list_files
from interceptor_lib.data.table import group_split, make_table
from interceptor_lib.errors import DatasetLayoutError

LAYOUT = """\
<root>/dfdc_train_part_<k>/*.mp4 + metadata.json          k = 0 … 49
   or  <root>/dfdc_train_part_<kk>/dfdc_train_part_<k>/*.mp4 + metadata.json   (Kaggle, nested)
   or  <root> = one dfdc_train_part_<k>/ folder
metadata.json: {"abc.mp4": {"label": "FAKE", "split": "train", "original": "xyz.mp4"}, …}
optional public test set: <root>/test/videos/*.mp4 + <root>/test/labels.csv (filename,label; 1 = fake)
"""

_PART = re.compile(r"^dfdc_train_part_(\d+)$")
LABELS = {"FAKE": 1, "REAL": 0}


def index_dfdc(root, chunks=None, val_fraction: float = 0.1, test_fraction: float = 0.1,
               seed: int = 0) -> pd.DataFrame:
    """Index DFDC into the common table (one row per clip).

    chunks: part numbers to index (None = all found). Splits are assigned per group with
    `group_split(group, {"train": 1 - val - test, "val": val, "test": test}, seed)`, or train/val
    only when the public test set is present. Files listed in a metadata.json but missing on disk,
    and mp4s that no metadata.json lists, are skipped with a warning.
    """
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"dfdc: need 0 <= val_fraction, test_fraction and val + test < 1, got "
                         f"val_fraction={val_fraction}, test_fraction={test_fraction}")
    root = require_dir(root, "dfdc", LAYOUT)
    parts = select_parts(root, chunks)
    test_rows = _public_test_rows(root)
    fractions = ({"train": 1 - val_fraction, "val": val_fraction} if test_rows else
                 {"train": 1 - val_fraction - test_fraction, "val": val_fraction,
                  "test": test_fraction})
    rows = _part_rows(parts)
    present = {r["video_id"] for r in rows}
    for r in rows:
        r["split"] = group_split(r["group"], fractions, seed)
        if r["original_id"] not in present:
            r["original_id"] = ""
    return make_table(rows + test_rows)


def official_test_ids(root) -> set[str]:
    """video_ids of the public test set when `<root>/test/labels.csv` is there, else an empty set
    (the train/val/test split of the parts is ours, not an official one)."""
    return {r["video_id"] for r in _public_test_rows(require_dir(root, "dfdc", LAYOUT))}


def find_parts(root: Path) -> dict[int, Path]:
    """chunk k -> part folder holding metadata.json, over the three accepted layouts."""
    if _PART.match(root.name) and (root / "metadata.json").is_file():
        return {int(_PART.match(root.name).group(1)): root}
    candidates = []
    # A root named like a part but without metadata.json is one nested Kaggle folder: its child
    # part is found by the same scan.
    outer = [p for p in sorted(root.iterdir()) if p.is_dir() and _PART.match(p.name)]
    no_metadata = []
    for folder in outer:
        if (folder / "metadata.json").is_file():
            candidates.append(folder)
            continue
        inner = [p for p in sorted(folder.iterdir())
                 if p.is_dir() and _PART.match(p.name) and (p / "metadata.json").is_file()]
        if not inner:
            no_metadata.append(folder)
        candidates += inner
    warn_skipped("dfdc", "part folder(s) without metadata.json skipped", no_metadata)
    parts: dict[int, Path] = {}
    for folder in candidates:
        k = int(_PART.match(folder.name).group(1))
        if k in parts:
            raise layout_error("dfdc", LAYOUT, root,
                               f"part {k} is found twice: {parts[k]} and {folder}")
        parts[k] = folder
    return dict(sorted(parts.items()))


def select_parts(root: Path, chunks=None) -> dict[int, Path]:
    """The parts to index: all found, or those in `chunks` (an error names any that are absent)."""
    parts = find_parts(root)
    if not parts:
        raise layout_error("dfdc", LAYOUT, root, "no dfdc_train_part_<k>/metadata.json found")
    if chunks is None:
        return parts
    wanted = sorted({int(k) for k in ([chunks] if isinstance(chunks, int) else chunks)})
    absent = [k for k in wanted if k not in parts]
    if absent:
        raise DatasetLayoutError(f"dfdc: chunks {absent} are not in {root}; found chunks {list(parts)}")
    return {k: parts[k] for k in wanted}


def _part_rows(parts: dict[int, Path]) -> list[dict]:
    """Rows of every part, with group and original_id set from metadata (split set by the caller)."""
    rows, seen = [], set()
    missing, unlisted, odd, duplicate, orphan_fakes = [], [], [], [], []
    for chunk, folder in parts.items():
        metadata = _read_metadata(folder / "metadata.json")
        on_disk = list_files(folder, [".mp4"])
        unlisted += [folder / name for name in sorted(set(on_disk) - set(metadata))]
        for name, entry in sorted(metadata.items()):
            if name not in on_disk:
                missing.append(folder / name)
                continue
            label = LABELS.get(str(entry.get("label", "")).upper()) if isinstance(entry, dict) else None
            if label is None:
                odd.append(f"{folder / name} ({entry!r})")
                continue
            stem = Path(name).stem
            if stem in seen:
                duplicate.append(folder / name)
                continue
            seen.add(stem)
            original = entry.get("original") if label else None
            if label and not original:
                orphan_fakes.append(folder / name)
            origin = Path(original).stem if original else stem
            rows.append({"video_id": f"dfdc/{stem}", "path": str(on_disk[name]), "label": label,
                         "split": "train", "dataset": "dfdc", "method": "dfdc" if label else "real",
                         "group": f"dfdc/{origin}", "chunk": chunk, "has_audio": True,
                         "original_id": f"dfdc/{origin}" if original else "", "member": ""})
    warn_skipped("dfdc", "file(s) listed in metadata.json but missing on disk skipped", missing)
    warn_skipped("dfdc", "mp4(s) listed in no metadata.json skipped", unlisted)
    warn_skipped("dfdc", "metadata entries without a FAKE/REAL label skipped", odd)
    warn_skipped("dfdc", "video name(s) found in two parts; the first kept", duplicate)
    warn_skipped("dfdc", "fake(s) with no original in metadata, grouped on their own", orphan_fakes)
    return rows


def _read_metadata(path: Path) -> dict:
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetLayoutError(f"dfdc: {path} is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise DatasetLayoutError(
            f"dfdc: {path} must map file names to entries, like {LAYOUT.splitlines()[3]}")
    return metadata


def _public_test_rows(root: Path) -> list[dict]:
    """Rows of the public test set (split test), or [] when `<root>/test/videos` is absent."""
    videos_dir, labels_path = root / "test" / "videos", root / "test" / "labels.csv"
    if not videos_dir.is_dir():
        return []
    if not labels_path.is_file():
        warn_skipped("dfdc", "public test folder(s) without labels.csv ignored", [root / "test"])
        return []
    on_disk = list_files(videos_dir, [".mp4"])
    with labels_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"filename", "label"} <= set(reader.fieldnames or []):
            raise DatasetLayoutError(
                f"dfdc: {labels_path} must have columns filename,label (1 = fake); "
                f"found {reader.fieldnames}")
        labels = {r["filename"].strip(): r["label"].strip() for r in reader}
    rows, missing, odd = [], [], []
    for name, value in sorted(labels.items()):
        if name not in on_disk:
            missing.append(videos_dir / name)
            continue
        if value not in ("0", "1"):
            odd.append(f"{name} (label {value!r})")
            continue
        stem = Path(name).stem
        rows.append({"video_id": f"dfdc/test/{stem}", "path": str(on_disk[name]), "label": int(value),
                     "split": "test", "dataset": "dfdc", "method": "dfdc" if value == "1" else "real",
                     "group": f"dfdc/test/{stem}", "chunk": -1, "has_audio": True,
                     "original_id": "", "member": ""})
    warn_skipped("dfdc", "test video(s) in labels.csv but missing on disk skipped", missing)
    warn_skipped("dfdc", "test video(s) on disk but not in labels.csv skipped",
                 [videos_dir / n for n in sorted(set(on_disk) - set(labels))])
    warn_skipped("dfdc", "labels.csv row(s) with a label other than 0/1 skipped", odd)
    return rows
