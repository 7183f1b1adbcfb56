"""WildDeepfake indexer (Zi et al. 2020): face-frame sequences, not videos.

Dataset facts used here (see DATASETS.md):
- Official layout `{real_train,fake_train,real_test,fake_test}/<N>.tar.gz`; inside a tar
  `./<N>/{real|fake}/<sequence_id>/<frame_no>.png` (224×224, already face-cropped). "Video level"
  means sequence level, so there is one row per (tar, sequence). No validation split; no audio.
- A Kaggle mirror is `{train,valid,test}/{real,fake}/` with image files; whether names keep the
  sequence id is unverified, so both cases are handled.

Row conventions (a frame loader relies on them; `sequence_files` implements the mirror ones):
- Official: `path` = absolute path of the tar; `member` = the sequence's member prefix exactly as
  stored, leading `./` included when the tar uses it, e.g. `./12/fake/3/`: the frames are the tar
  members whose names start with it. video_id `wilddeepfake/<subset>/<N>/<sequence_id>`,
  group `wilddeepfake/<subset>/<N>` (one tar = one source video).
- Mirror, frames in sub-folders: `path` = absolute class folder (`<root>/<split>/<class>`),
  `member` = the sequence folder relative to it with a trailing `/`, e.g. `seq/` or `a/b/`; the frames
  are the images directly in `path/member`.
- Mirror, flat files named `<key><sep><digits>.<ext>` (sep `_` or `-`): `path` = class folder,
  `member` = `<key><sep>*`, e.g. `12_3_*`. A file belongs to the sequence when its name minus the
  final `<sep><digits>.<ext>` equals `<key>` exactly (the glob alone would also match key `12_3_4`).
  Names count as keyed in a folder when every image name has that form, there are at least two
  keys, and fewer keys than images (so `img_000123.png`-style numbering is not taken for a key).
- Mirror, names without a sequence key: one row per image, `path` = the image, `member` = ''.
  Mirror video_id `wilddeepfake/<split folder>/<class>/<sequence folder | key | image file name>`;
  the source video is unknown there, so group = video_id and the mirror's own split is trusted.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from interceptor_lib.data.indexers._common import indexer_warning, layout_error, require_dir, warn_skipped
from interceptor_lib.data.sequences import list_files
from interceptor_lib.data.sequences import IMAGE_SUFFIXES, KEYED as _KEYED
from interceptor_lib.data.table import hold_out_groups, make_table
from interceptor_lib.errors import DatasetLayoutError

SUBSETS = {"real_train": (0, "train"), "fake_train": (1, "train"),
           "real_test": (0, "test"), "fake_test": (1, "test")}
MIRROR_SPLITS = {"train": "train", "valid": "val", "val": "val", "test": "test"}
CLASSES = {"real": 0, "fake": 1}
#: Listing a tar.gz means decompressing it; two readers overlap I/O with zlib (which frees the GIL).
LIST_WORKERS = 2

LAYOUT = """\
<root>/{real_train,fake_train,real_test,fake_test}/<N>.tar.gz
       inside a tar:  ./<N>/{real|fake}/<sequence_id>/<frame_no>.png
or the Kaggle mirror:
<root>/{train,valid,test}/{real,fake}/<images>   (flat, or in one folder per sequence)
"""



def index_wilddeepfake(root, val_fraction: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Index WildDeepfake into the common table, one row per face sequence (see the module doc for
    `path` / `member`). `*_test` -> test; `*_train` -> train with about `val_fraction` of the real
    tars and of the fake tars held out as val (`hold_out_groups`, `seed`). The mirror keeps its own train/valid/test; when it
    has no valid folder, val is held out from train the same way."""
    root = require_dir(root, "wilddeepfake", LAYOUT)
    if any((root / s).is_dir() for s in SUBSETS):
        rows = _official_rows(root, list(SUBSETS))
    elif any((root / s / c).is_dir() for s in MIRROR_SPLITS for c in CLASSES):
        rows = _mirror_rows(root)
    else:
        raise layout_error("wilddeepfake", LAYOUT, root,
                           "neither the official subset folders nor the mirror's split folders "
                           "are here")
    if not any(r["split"] == "val" for r in rows):
        # Each tar holds one class, so hold out real and fake tars separately: an unstratified
        # draw can move every real training tar to val and leave training with one class.
        held = {}
        for label in (0, 1):
            groups = {r["group"] for r in rows if r["split"] == "train" and r["label"] == label}
            held.update(hold_out_groups(groups, val_fraction, seed))
        for r in rows:
            if r["split"] == "train":
                r["split"] = held[r["group"]]
    return make_table(rows)


def official_test_ids(root) -> set[str]:
    """video_ids of the official test sequences (`real_test`, `fake_test`; the mirror's `test`)."""
    root = require_dir(root, "wilddeepfake", LAYOUT)
    if any((root / s).is_dir() for s in SUBSETS):
        rows = _official_rows(root, [s for s, (_, split) in SUBSETS.items() if split == "test"])
    else:
        rows = _mirror_rows(root)
    return {r["video_id"] for r in rows if r["split"] == "test"}


def list_tar_sequences(tar_path: Path) -> dict[str, str]:
    """Sequence member prefix -> inner class ('real' | 'fake') of one tar, read in streaming mode.
    Raises DatasetLayoutError naming the tar if it cannot be read or holds no sequence."""
    sequences: dict[str, str] = {}
    odd = 0
    try:
        with tarfile.open(tar_path, "r|gz") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                lead = "./" if info.name.startswith("./") else ""
                parts = info.name[len(lead):].split("/")
                if len(parts) != 4 or parts[1] not in CLASSES:
                    odd += 1
                    continue
                sequences.setdefault(lead + "/".join(parts[:3]) + "/", parts[1])
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DatasetLayoutError(f"wilddeepfake: cannot read {tar_path}: {exc}") from exc
    if odd:
        indexer_warning("wilddeepfake", f"wilddeepfake: {tar_path} holds {odd} file(s) outside "
                      "<N>/{real|fake}/<sequence_id>/<frame>; skipped")
    return sequences


def _official_rows(root: Path, subsets: list[str]) -> list[dict]:
    """One row per (tar, sequence) over the given subset folders; unreadable tars are warned about."""
    tars = [(subset, path) for subset in subsets
            for _, path in sorted(list_files(root / subset, [".tar.gz"]).items())]
    if not tars:
        raise layout_error("wilddeepfake", LAYOUT, root, f"no <N>.tar.gz files in {subsets}")
    listings, unreadable = {}, []
    workers = LIST_WORKERS if len(tars) > 4 else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {path: pool.submit(list_tar_sequences, path) for _, path in tars}
        for path, future in futures.items():
            try:
                listings[path] = future.result()
            except DatasetLayoutError as exc:
                unreadable.append(f"{path.name} ({exc.__cause__})")
    warn_skipped("wilddeepfake", "tar(s) could not be read and were skipped", unreadable)
    rows, empty = [], []
    for subset, path in tars:
        if path not in listings:
            continue
        if not listings[path]:
            empty.append(path)
        label, split = SUBSETS[subset]
        number = path.name[: -len(".tar.gz")]
        for prefix, inner in sorted(listings[path].items()):
            if CLASSES[inner] != label:
                raise DatasetLayoutError(
                    f"wilddeepfake: {path} is in {subset}/ but holds a {inner}/ sequence ({prefix}); "
                    "the folder label and the tar's inner folder disagree")
            sequence = prefix.rstrip("/").rsplit("/", 1)[1]
            rows.append(_row(f"wilddeepfake/{subset}/{number}/{sequence}", path, label, split,
                             f"wilddeepfake/{subset}/{number}", prefix))
    warn_skipped("wilddeepfake", "tar(s) hold no <N>/{real|fake}/<sequence_id>/<frame> files", empty)
    if not rows:
        raise layout_error("wilddeepfake", LAYOUT, root,
                           f"none of the {len(tars)} tar(s) in {subsets} holds a readable sequence")
    return rows


def _mirror_rows(root: Path) -> list[dict]:
    """Rows of the Kaggle mirror: sequence folders, keyed file names, or single images."""
    rows, unkeyed = [], []
    for folder, split in MIRROR_SPLITS.items():
        for cls, label in CLASSES.items():
            class_dir = root / folder / cls
            if not class_dir.is_dir():
                continue
            for member, name in _mirror_sequences(class_dir, unkeyed):
                video_id = f"wilddeepfake/{folder}/{cls}/{name}"
                path = class_dir / name if member == "" else class_dir
                rows.append(_row(video_id, path, label, split, video_id, member))
    if unkeyed:
        indexer_warning(
            "wilddeepfake", f"wilddeepfake: file names in {len(unkeyed)} mirror folder(s) carry no sequence key "
            f"(e.g. {unkeyed[0]}); each image is its own row, so sequence-level grouping (and "
            "sequence-level metrics) is impossible for this copy")
    return rows


def _mirror_sequences(class_dir: Path, unkeyed: list) -> list[tuple[str, str]]:
    """(member, name) pairs of one class folder; name is the id part after the class."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames.sort()
        images = sorted(f for f in filenames if f.lower().endswith(IMAGE_SUFFIXES))
        if not images:
            continue
        rel = Path(dirpath).relative_to(class_dir).as_posix()
        if rel != ".":
            found.append((rel + "/", rel))
            continue
        matches = [_KEYED.match(f) for f in images]
        keys = {(m.group(1), m.group(2)) for m in matches if m}
        if all(matches) and 1 < len(keys) < len(images):
            seps_per_key = {}
            for key, sep in keys:
                seps_per_key[key] = seps_per_key.get(key, 0) + 1
            found += [(f"{key}{sep}*", key if seps_per_key[key] == 1 else key + sep)
                      for key, sep in sorted(keys)]
        else:
            unkeyed.append(class_dir)
            found += [("", f) for f in images]
    return found


def _row(video_id, path, label, split, group, member) -> dict:
    return {"video_id": video_id, "path": str(path), "label": label, "split": split,
            "dataset": "wilddeepfake", "method": "wilddeepfake" if label else "real",
            "group": group, "chunk": -1, "has_audio": False, "original_id": "", "member": member}
