"""FaceForensics++ indexer (Rössler et al. 2019), official layout or the flat Kaggle mirror.

Dataset facts used here (see DATASETS.md):
- Labels come from the folder: `original_sequences` = real, `manipulated_sequences` = fake.
- Official splits are `train.json` / `val.json` / `test.json` from the dataset's GitHub repo
  (`dataset/splits/`), each a list of pairs of 3-digit ids. A pair ["071", "054"] puts both
  originals (071, 054) and both fakes of every method (071_054, 054_071) in the pair's split; the
  pair is the leakage group.
- A fake `<target>_<source>` shows the source's face on the target's video, so its original is the
  target's video.
- The DeepFakeDetection (actors) subset is not covered by the official splits; it is indexed only on
  request, grouped by connected components of actors.
- No audio track.

video_ids are independent of the compression level and of the layout (official or mirror):
`ffpp/original/071`, `ffpp/<Method>/071_054`, `ffpp/actors/01__walking`,
`ffpp/DeepFakeDetection/01_02__walking__ABCD1234`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from interceptor_lib.data.indexers._common import indexer_warning, layout_error, require_dir, warn_skipped
from interceptor_lib.data.sequences import list_files
from interceptor_lib.data.table import group_split, make_table
from interceptor_lib.errors import DatasetLayoutError

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
ACTOR_METHOD = "DeepFakeDetection"
SPLIT_FILES = {"train": "train.json", "val": "val.json", "test": "test.json"}
#: Shares for the actors' connected components (no official split exists for them).
ACTOR_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}

LAYOUT = """\
<root>/original_sequences/youtube/<compression>/videos/000.mp4 … 999.mp4
<root>/manipulated_sequences/<Method>/<compression>/videos/<target>_<source>.mp4
       Method ∈ Deepfakes, Face2Face, FaceSwap, NeuralTextures, FaceShifter
<root>/splits/{train,val,test}.json            (or give splits_dir=…)
  with include_actors=True also:
<root>/original_sequences/actors/<compression>/videos/<actor>__<scene>.mp4
<root>/manipulated_sequences/DeepFakeDetection/<compression>/videos/<t>_<s>__<scene>__<8 chars>.mp4
or the flat Kaggle mirror (ships no split JSONs: give splits_dir=…):
<root>/original/NNN.mp4
<root>/{Deepfakes,Face2Face,FaceSwap,NeuralTextures,FaceShifter,DeepFakeDetection}/NNN_MMM.mp4
<root>/csv/                                    (not used)
"""

_ORIGINAL = re.compile(r"^(\d{3})\.mp4$", re.IGNORECASE)
_FAKE = re.compile(r"^(\d{3})_(\d{3})\.mp4$", re.IGNORECASE)
_ACTOR_ORIGINAL = re.compile(r"^(\d+)__(.+)\.mp4$", re.IGNORECASE)
_ACTOR_FAKE = re.compile(r"^(\d+)_(\d+)__(.+)__(\w{8})\.mp4$", re.IGNORECASE)
_ID = re.compile(r"^\d{3}$")


@dataclass
class _Folders:
    """Where the videos of one copy live; `kind` is 'official' or 'mirror'."""
    kind: str
    originals: Path
    actors: Path
    fakes: dict[str, Path] = field(default_factory=dict)
    actor_fakes: Path | None = None


def index_ffpp(root, splits_dir=None, methods=METHODS, compression: str = "c23",
               include_actors: bool = False, seed: int = 0) -> pd.DataFrame:
    """Index FaceForensics++ into the common table (one row per video).

    root: the official tree or the flat Kaggle mirror (`compression` is ignored for the mirror, which
        holds a single compression level). splits_dir: folder with train/val/test.json (default
        `<root>/splits`; required for the mirror). methods: manipulation folders to index.
    include_actors: also index DeepFakeDetection and its actor originals; all videos touching the same
        actors form one group (union-find), and groups go to train/val/test 80/10/10 by `group_split`
        with `seed`. Videos whose ids are in no split JSON are skipped with a warning.
    """
    root = require_dir(root, "ffpp", LAYOUT)
    methods = _check_methods(methods)
    folders = _find_folders(root, methods, compression)
    pairs = load_pairs(root, splits_dir, folders.kind)
    rows = _pair_rows(folders, pairs)
    if include_actors:
        rows += _actor_rows(folders, seed)
    return make_table(rows)


def official_test_ids(root, splits_dir=None, methods=METHODS) -> set[str]:
    """video_ids named by the official `test.json` (both originals and both fakes of each pair for
    every method in `methods`), whether or not the files are on disk. Actors are not included: they
    have no official split."""
    root = require_dir(root, "ffpp", LAYOUT)
    methods = _check_methods(methods)
    kind = "mirror" if (root / "original").is_dir() else "official"
    ids = set()
    for vid, (split, group) in load_pairs(root, splits_dir, kind).items():
        if split != "test":
            continue
        partner = next(v for v in group.rsplit("/", 1)[1].split("_") if v != vid)
        ids.add(f"ffpp/original/{vid}")
        ids.update(f"ffpp/{method}/{vid}_{partner}" for method in methods)
    return ids


def load_pairs(root: Path, splits_dir, kind: str = "official") -> dict[str, tuple[str, str]]:
    """Read the official split JSONs: 3-digit id -> (split, group), group = `ffpp/pair/<a>_<b>`
    with the two ids sorted, so that both originals and both fakes of a pair share it."""
    folder = Path(splits_dir).expanduser() if splits_dir is not None else root / "splits"
    missing = [name for name in SPLIT_FILES.values() if not (folder / name).is_file()]
    if missing:
        where = "given as splits_dir" if splits_dir is not None else "the default, <root>/splits"
        mirror = (" The flat Kaggle mirror does not ship them, so splits_dir is required there."
                  if kind == "mirror" else "")
        raise DatasetLayoutError(
            f"ffpp: official split files not found: looked for {', '.join(SPLIT_FILES.values())} in "
            f"{folder} ({where}); missing {missing}. They come from the FaceForensics GitHub repo "
            f"(github.com/ondyari/FaceForensics, folder dataset/splits/); download train.json, "
            f"val.json and test.json and pass their folder with splits_dir=….{mirror}")
    pairs: dict[str, tuple[str, str]] = {}
    for split, name in SPLIT_FILES.items():
        path = folder / name
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetLayoutError(f"ffpp: {path} is not valid JSON ({exc})") from exc
        if not isinstance(entries, list):
            raise DatasetLayoutError(
                f"ffpp: {path} must hold a JSON list of pairs like [\"071\", \"054\"]")
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 2
                    and all(isinstance(v, str) and _ID.match(v) for v in entry)
                    and entry[0] != entry[1]):
                raise DatasetLayoutError(
                    f"ffpp: {path} holds {entry!r}; each entry must be a pair of two different "
                    "3-digit strings like [\"071\", \"054\"]")
            group = "ffpp/pair/" + "_".join(sorted(entry))
            for vid in entry:
                if vid in pairs and pairs[vid] != (split, group):
                    raise DatasetLayoutError(
                        f"ffpp: id {vid} is in two split entries ({pairs[vid][1]} in "
                        f"{pairs[vid][0]} and {group} in {split}); the split JSONs are inconsistent")
                pairs[vid] = (split, group)
    return pairs


def _check_methods(methods) -> tuple[str, ...]:
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        extra = (f" ({ACTOR_METHOD} is indexed with include_actors=True)"
                 if ACTOR_METHOD in unknown else "")
        raise ValueError(f"ffpp: unknown method(s) {unknown}; choose from {list(METHODS)}{extra}")
    return methods


def _find_folders(root: Path, methods: tuple[str, ...], compression: str) -> _Folders:
    """Recognise the official tree or the flat mirror; raise with the expected layout otherwise."""
    if (root / "original_sequences").is_dir() or (root / "manipulated_sequences").is_dir():
        originals = root / "original_sequences" / "youtube" / compression / "videos"
        if not originals.is_dir():
            found = sorted(p.name for p in (root / "original_sequences" / "youtube").glob("*")
                           if p.is_dir())
            raise layout_error("ffpp", LAYOUT, root,
                               f"no folder original_sequences/youtube/{compression}/videos "
                               f"(compression levels found there: {found or 'none'})")
        folders = _Folders(
            "official", originals, root / "original_sequences" / "actors" / compression / "videos",
            {m: root / "manipulated_sequences" / m / compression / "videos" for m in methods},
            root / "manipulated_sequences" / ACTOR_METHOD / compression / "videos")
    elif (root / "original").is_dir() and any((root / m).is_dir() for m in (*METHODS, ACTOR_METHOD)):
        folders = _Folders("mirror", root / "original", root / "original",
                           {m: root / m for m in methods}, root / ACTOR_METHOD)
    else:
        raise layout_error("ffpp", LAYOUT, root,
                           "neither the official tree (original_sequences/, manipulated_sequences/) "
                           "nor the flat mirror (original/ next to method folders) is here")
    absent = [m for m, path in folders.fakes.items() if not path.is_dir()]
    if methods and len(absent) == len(methods):
        raise layout_error("ffpp", LAYOUT, root, f"none of the method folders {list(methods)} exist")
    warn_skipped("ffpp", "requested method folder(s) not found, indexed without them", absent,
                 "Older copies lack FaceShifter; pass methods=… to silence this")
    return folders


def _pair_rows(folders: _Folders, pairs: dict[str, tuple[str, str]]) -> list[dict]:
    """Rows for the youtube originals and the pair-based methods, placed by the split JSONs."""
    rows, not_in_splits, odd, cross_pair = [], [], [], []
    for name, path in sorted(list_files(folders.originals, [".mp4"]).items()):
        m = _ORIGINAL.match(name)
        if m is None:
            if folders.kind == "official" or not _ACTOR_ORIGINAL.match(name):
                odd.append(path)
            continue
        vid = m.group(1)
        if vid not in pairs:
            not_in_splits.append(path)
            continue
        split, group = pairs[vid]
        rows.append(_row(f"ffpp/original/{vid}", path, 0, split, "real", group, ""))
    originals = {r["video_id"] for r in rows}
    for method, folder in folders.fakes.items():
        for name, path in sorted(list_files(folder, [".mp4"]).items()):
            m = _FAKE.match(name)
            if m is None:
                odd.append(path)
                continue
            target, source = m.groups()
            if target not in pairs or source not in pairs:
                not_in_splits.append(path)
                continue
            if pairs[target] != pairs[source]:
                cross_pair.append(path)
                continue
            split, group = pairs[target]
            original = f"ffpp/original/{target}"
            rows.append(_row(f"ffpp/{method}/{target}_{source}", path, 1, split, method, group,
                             original if original in originals else ""))
    warn_skipped("ffpp", "video(s) whose ids are in no split JSON skipped", not_in_splits)
    warn_skipped("ffpp", "fake(s) whose target and source are not one pair of the split JSONs "
                 "skipped (they would join two groups)", cross_pair)
    warn_skipped("ffpp", "file(s) with unexpected names skipped", odd,
                 "Originals are NNN.mp4, fakes NNN_MMM.mp4")
    return rows


def _actor_rows(folders: _Folders, seed: int) -> list[dict]:
    """DeepFakeDetection fakes and actor originals, grouped by connected components of actors."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the smallest actor id names the component

    pending, odd = [], []
    for name, path in sorted(list_files(folders.actors, [".mp4"]).items()):
        m = _ACTOR_ORIGINAL.match(name)
        if m is None:
            if folders.kind == "official":
                odd.append(path)
            continue
        find(m.group(1))
        pending.append((f"ffpp/actors/{name[:-4]}", path, 0, "real", m.group(1), ""))
    originals = {p[0] for p in pending}
    for name, path in sorted(list_files(folders.actor_fakes, [".mp4"]).items()):
        m = _ACTOR_FAKE.match(name)
        if m is None:
            odd.append(path)
            continue
        target, source, scene, _ = m.groups()
        union(target, source)
        original = f"ffpp/actors/{target}__{scene}"
        pending.append((f"ffpp/{ACTOR_METHOD}/{name[:-4]}", path, 1, ACTOR_METHOD, target,
                        original if original in originals else ""))
    warn_skipped("ffpp", "DeepFakeDetection/actors file(s) with unexpected names skipped", odd,
                 "Actor originals are <actor>__<scene>.mp4, fakes <t>_<s>__<scene>__<8 chars>.mp4")
    if not pending:
        indexer_warning("ffpp", f"ffpp: include_actors=True but no actor videos found in {folders.actors} "
                                f"or {folders.actor_fakes}")
        return []
    rows = []
    for vid, path, label, method, actor, original in pending:
        group = f"ffpp/actors/{find(actor)}"
        split = group_split(group, ACTOR_FRACTIONS, seed)
        rows.append(_row(vid, path, label, split, method, group, original))
    components = sorted({r["group"] for r in rows})
    if len(components) < len(ACTOR_FRACTIONS):
        warn_skipped("ffpp", "connected component(s) of actors hold all DeepFakeDetection videos, "
                     "too few to fill train/val/test", components,
                     "Some splits get no actor videos")
    return rows


def _row(video_id, path, label, split, method, group, original_id) -> dict:
    return {"video_id": video_id, "path": str(path), "label": label, "split": split,
            "dataset": "ffpp", "method": method, "group": group, "chunk": -1, "has_audio": False,
            "original_id": original_id, "member": ""}
