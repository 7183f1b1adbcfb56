"""Face-image sequences on disk: which files a table row's `member` names, in frame order.

A sequence row (WildDeepfake) has `path` and `member`: `member` "" is one image file; "<dir>/" the
image files of a sub-folder; "<key><sep>*" the files of `path` named <key><sep><frame number>.<ext>
(a flat folder holding several sequences). The indexer writes rows this way and the frame reader
(`data.video`) reads them back with `sequence_files`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: a frame file of a flat folder: <key><sep><frame number>.<ext>
KEYED = re.compile(r"^(.+)([_-])(\d+)\.[A-Za-z]+$")


def list_files(folder: Path, suffixes: Iterable[str]) -> dict[str, Path]:
    """Files directly inside `folder` whose lower-cased suffix is in `suffixes`: name -> path.
    An absent folder gives an empty dict (callers decide whether that is an error)."""
    suffixes = tuple(s.lower() for s in suffixes)
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as it:
        return {e.name: folder / e.name for e in it
                if e.name.lower().endswith(suffixes) and e.is_file()}


def sequence_files(path, member: str) -> list[Path]:
    """The frame files of a mirror row in frame order (see the module doc); for an official row
    (`path` a tar) read the members starting with `member` instead."""
    path = Path(path)
    if member == "":
        return [path]
    if member.endswith("/"):
        files = list_files(path / member, IMAGE_SUFFIXES).values()
        return sorted(files, key=lambda p: frame_key(p.name))
    if not member.endswith("*"):
        raise ValueError(f"face sequence: member {member!r} is neither '<dir>/' nor '<key><sep>*'")
    key, sep = member[:-2], member[-2]
    files = [p for name, p in list_files(path, IMAGE_SUFFIXES).items()
             if (m := KEYED.match(name)) and m.group(1) == key and m.group(2) == sep]
    return sorted(files, key=lambda p: frame_key(p.name))


def frame_key(name: str) -> tuple[int, str]:
    """Sort key of a frame file: the last number in its stem (-1 without one), then the name."""
    digits = re.findall(r"\d+", Path(name).stem)
    return (int(digits[-1]) if digits else -1, name)
