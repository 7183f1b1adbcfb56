"""Helpers shared by the dataset indexers: root checks, layout errors that show the expected tree
next to what was actually found, counted warnings for skipped files, and a cheap folder scan.

Indexers never decode media; they only list folders (`os.scandir`, one call per folder) and read
small metadata files, so that DFDC's 119k clips index in seconds.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from interceptor_lib.errors import DatasetLayoutError


class IndexerWarning(UserWarning):
    """Files an indexer skipped or found odd (counted, with a few examples)."""


def absolute(path) -> Path:
    """Absolute path without resolving symlinks (Kaggle input folders are often links)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def describe_folder(root: Path, limit: int = 8) -> str:
    """The first `limit` entries of `root`, folders marked with a trailing '/', as an indented list."""
    if not root.exists():
        return "  (the path does not exist)"
    if not root.is_dir():
        return "  (a file, not a folder)"
    with os.scandir(root) as it:
        entries = sorted((e.name + ("/" if e.is_dir() else "")) for e in it)
    if not entries:
        return "  (empty folder)"
    shown = [f"  {name}" for name in entries[:limit]]
    if len(entries) > limit:
        shown.append(f"  … and {len(entries) - limit} more")
    return "\n".join(shown)


def layout_error(dataset: str, layout: str, root: Path, problem: str) -> DatasetLayoutError:
    """A DatasetLayoutError whose message says what is wrong, the expected tree and what is there."""
    expected = "\n".join("  " + line for line in layout.strip("\n").splitlines())
    return DatasetLayoutError(
        f"{dataset}: {problem}\n"
        f"Expected layout:\n{expected}\n"
        f"Found at {root}:\n{describe_folder(root)}")


def require_dir(root, dataset: str, layout: str) -> Path:
    """`root` as an absolute Path, or a DatasetLayoutError when it is missing or not a folder."""
    if root is None or str(root) == "":
        raise layout_error(dataset, layout, Path("."), "no dataset root was given")
    path = absolute(root)
    if not path.exists():
        raise layout_error(dataset, layout, path, f"the dataset root {path} does not exist")
    if not path.is_dir():
        raise layout_error(dataset, layout, path, f"the dataset root {path} is a file, not a folder")
    return path


def warn_skipped(dataset: str, what: str, examples: list, hint: str = "") -> None:
    """Warn that `len(examples)` items were skipped or odd, showing the first few. No-op when empty."""
    if not examples:
        return
    shown = ", ".join(str(e) for e in examples[:3])
    more = f" (and {len(examples) - 3} more)" if len(examples) > 3 else ""
    message = f"{dataset}: {len(examples)} {what}: {shown}{more}"
    if hint:
        message += f". {hint}"
    indexer_warning(dataset, message)


def indexer_warning(dataset: str, message: str) -> None:
    """Warn (IndexerWarning) in the indexer's own words: attributed to "<dataset> indexer", so Python
    prints the message without a line of the package's source beneath it."""
    warnings.warn_explicit(message, IndexerWarning, filename=f"{dataset} indexer", lineno=0,
                           module=f"interceptor_lib.data.indexers.{dataset}")
