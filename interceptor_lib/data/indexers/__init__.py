"""Dataset indexers: each turns a dataset root into the common table (`interceptor_lib.data.table`).

    from interceptor_lib.data.indexers import index_dataset, official_test_ids
    df = index_dataset("ffpp", root, splits_dir="splits/")
    test_ids = official_test_ids("celebdf", root)

The registry below is the only place that maps dataset names to code; options are checked against
each indexer's signature so that a misspelt option fails loudly instead of being ignored.
"""

from __future__ import annotations

import inspect

import pandas as pd

from interceptor_lib.data.indexers import celebdf, dfdc, ffpp, wilddeepfake
from interceptor_lib.data.indexers._common import IndexerWarning
from interceptor_lib.data.indexers.celebdf import index_celebdf
from interceptor_lib.data.indexers.dfdc import index_dfdc
from interceptor_lib.data.indexers.ffpp import index_ffpp
from interceptor_lib.data.indexers.wilddeepfake import index_wilddeepfake
from interceptor_lib.errors import DatasetLayoutError, ParamsError

INDEXERS = {"ffpp": index_ffpp, "celebdf": index_celebdf, "wilddeepfake": index_wilddeepfake,
            "dfdc": index_dfdc}
#: Expected on-disk layout per dataset, as shown in DatasetLayoutError messages.
DATASET_LAYOUTS = {"ffpp": ffpp.LAYOUT, "celebdf": celebdf.LAYOUT,
                   "wilddeepfake": wilddeepfake.LAYOUT, "dfdc": dfdc.LAYOUT}
#: video_ids of each dataset's official test list (accepting a subset of the indexer's options).
OFFICIAL_TEST = {"ffpp": ffpp.official_test_ids, "celebdf": celebdf.official_test_ids,
                 "wilddeepfake": wilddeepfake.official_test_ids, "dfdc": dfdc.official_test_ids}


def index_dataset(name: str, root, **options) -> pd.DataFrame:
    """Index dataset `name` at `root` with the indexer's keyword `options`."""
    indexer = _indexer(name)
    _check_options(name, indexer, options)
    df = indexer(root, **options)
    if len(df) == 0:
        chosen = f" with options {options}" if options else ""
        raise DatasetLayoutError(f"{name}: no videos found under {root}{chosen}: the folders are where the "
                                 f"{name} layout puts them, but they hold no video (or sequence) files the "
                                 f"indexer recognises. Check that the download finished and was unpacked there.")
    return df


def official_test_ids(name: str, root, **options) -> set[str]:
    """video_ids of the dataset's official test list (empty when it has none). Takes the same
    options as `index_dataset` (one params dict serves both); only those that locate the list
    (e.g. ffpp's `splits_dir`) are used."""
    _check_options(name, _indexer(name), options)
    reader = OFFICIAL_TEST[name]
    used = inspect.signature(reader).parameters
    return reader(root, **{k: v for k, v in options.items() if k in used})


def allowed_options(name: str) -> list[str]:
    """Keyword options of dataset `name`'s indexer, in signature order."""
    return [p for p in inspect.signature(_indexer(name)).parameters if p != "root"]


def _indexer(name: str):
    if name not in INDEXERS:
        raise ParamsError(f"unknown dataset {name!r}; choose one of {list(INDEXERS)}")
    return INDEXERS[name]


def _check_options(name: str, indexer, options: dict) -> None:
    allowed = allowed_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ParamsError(f"{name}: unknown option(s) {unknown}; {indexer.__name__} accepts {allowed}")


__all__ = ["INDEXERS", "DATASET_LAYOUTS", "OFFICIAL_TEST", "IndexerWarning", "index_dataset",
           "official_test_ids", "allowed_options", "index_ffpp", "index_celebdf",
           "index_wilddeepfake", "index_dfdc"]
