"""What the pipeline needs to know about each dataset, in one place.

Code that behaves differently for one dataset asks its entry here (`DATASETS[name].chunked`), never
its name: a fifth dataset is one entry here plus its indexer (`data.indexers`). The entries are in
the progressive-training order (FF++ -> Celeb-DF v2 -> WildDeepfake -> DFDC). The published sizes
are what `plan` sizes a real run from before anything is indexed (see docs/reference.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatasetEntry:
    name: str                        # the key in params (`datasets.<name>`) and in the table's `dataset` column
    title: str                       # how reports name the dataset
    test_title: str                  # how results tables name its test videos
    # training videos come in numbered parts (the table's `chunk` column) trained one after another
    chunked: bool = False
    # the test split is given by a list file beside the videos (checked for leakage against the index);
    # False: the test split is the dataset's own folder names, nothing external to check
    test_list: bool = True
    # the test list shares identities with the training videos, so only train / val are checked for
    # shared groups (the list itself is checked for containment)
    test_shares_groups: bool = False
    has_audio: bool = False          # the videos carry an audio track
    # videos are already-cropped face-image sequences (inside tar archives or folders), not video files
    face_sequences: bool = False
    # published sizes (originals, fakes) for planning: the fixed splits; else the pool that
    # val_fraction divides into train / val, and the test split (per part for a chunked dataset, whose
    # test_fraction holds its test split out of each part)
    published_splits: dict[str, tuple[int, int]] = field(default_factory=dict)
    published_pool: tuple[int, int] | None = None
    published_test: tuple[int, int] | None = None
    published_parts: int = 0


#: WildDeepfake: 3,805 real and 3,509 fake face sequences, 806 of the 7,314 in the test split (the
#: classes of the test split in proportion)
_WILD_TOTAL, _WILD_TEST = (3805, 3509), 806
_WILD_TEST_REAL = round(_WILD_TEST * _WILD_TOTAL[0] / sum(_WILD_TOTAL))

DATASETS: dict[str, DatasetEntry] = {e.name: e for e in (
    DatasetEntry("ffpp", "FaceForensics++", "FF++ (test)",
                 # the official splits of the originals, 5 manipulation methods each
                 published_splits={"train": (720, 3600), "val": (140, 700), "test": (140, 700)}),
    DatasetEntry("celebdf", "Celeb-DF v2", "Celeb-DF v2 (test list)", test_shares_groups=True,
                 # List_of_testing_videos.txt, and every other video (val held out of it)
                 published_pool=(712, 5299), published_test=(178, 340)),
    DatasetEntry("wilddeepfake", "WildDeepfake", "WildDeepfake (test)", test_list=False, face_sequences=True,
                 published_pool=(_WILD_TOTAL[0] - _WILD_TEST_REAL, _WILD_TOTAL[1] - (_WILD_TEST - _WILD_TEST_REAL)),
                 published_test=(_WILD_TEST_REAL, _WILD_TEST - _WILD_TEST_REAL)),
    # per part: about 2,400 videos at 1 real : 5 fakes, val and test held out of each part by
    # val_fraction / test_fraction; the Kaggle "10 chunks" subset
    DatasetEntry("dfdc", "DFDC", "DFDC (test)", chunked=True, has_audio=True,
                 published_pool=(400, 2000), published_parts=10),
)}
