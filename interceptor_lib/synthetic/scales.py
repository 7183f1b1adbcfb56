"""Corpus sizes of the synthetic demo corpus: one table, one row per scale.

Every count is chosen so that each dataset keeps the real datasets' class imbalance of about
1 real : 4-6 fakes (FaceForensics++ is 1:5 by construction: two originals and ten fakes per pair)
and so that every artifact family appears at least once even at the `tiny` scale.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScaleSpec:
    """How many videos / sequences each dataset gets, and how long they are."""

    name: str
    frames: int                   # frames per mp4 clip (FF++ 25 fps, Celeb-DF / DFDC 30 fps)
    ffpp_pairs: int               # each pair (a, b): originals a, b and fakes a_b, b_a for 5 methods
    ffpp_val_pairs: int           # pairs in splits/val.json (as many go to test.json; rest train)
    celebdf_identities: int       # celebrities; each is a target and the source of others' fakes
    celebdf_videos_per_id: int    # Celeb-real videos per identity (id<X>_<NNNN>.mp4)
    celebdf_fakes_per_video: int  # Celeb-synthesis fakes per Celeb-real video (distinct sources)
    celebdf_youtube: int          # YouTube-real videos (no fakes are made from them)
    celebdf_test_ids: int         # identities whose videos (all of them) form the test list
    celebdf_test_youtube: int     # YouTube-real videos in the test list
    wdf_tars: tuple[tuple[str, int, int], ...]  # (folder, tars, sequences per tar)
    wdf_frames: tuple[int, int]   # frames per WildDeepfake sequence, drawn in [lo, hi]
    dfdc_parts: tuple[tuple[int, int], ...]  # (reals, fakes) of dfdc_train_part_0, _1, ...
    dfdc_cross_chunk: float       # share of DFDC fakes whose original sits in another part
    dfdc_test: tuple[int, int] = (0, 0)  # (reals, fakes) of the public test set dfdc/test/ (0, 0: none)

    def counts(self) -> dict[str, dict[str, int]]:
        """Planned number of real / fake videos (sequences for WildDeepfake) per dataset."""
        ff_real, ff_fake = 2 * self.ffpp_pairs, 10 * self.ffpp_pairs
        cd_orig = self.celebdf_identities * self.celebdf_videos_per_id
        wdf = {"real": 0, "fake": 0}
        for folder, tars, seqs in self.wdf_tars:
            wdf[folder.split("_")[0]] += tars * seqs
        return {
            "ffpp": {"real": ff_real, "fake": ff_fake},
            "celebdf": {"real": cd_orig + self.celebdf_youtube,
                        "fake": cd_orig * self.celebdf_fakes_per_video},
            "wilddeepfake": wdf,
            "dfdc": {"real": sum(r for r, _ in self.dfdc_parts) + self.dfdc_test[0],
                     "fake": sum(f for _, f in self.dfdc_parts) + self.dfdc_test[1]},
        }


SCALES: dict[str, ScaleSpec] = {
    # tests and the smoke profile: the whole corpus in a few seconds on 2 cores
    "tiny": ScaleSpec(
        name="tiny", frames=24, ffpp_pairs=4, ffpp_val_pairs=1,
        celebdf_identities=6, celebdf_videos_per_id=1, celebdf_fakes_per_video=5, celebdf_youtube=1,
        celebdf_test_ids=2, celebdf_test_youtube=1,
        wdf_tars=(("real_train", 1, 2), ("fake_train", 1, 8), ("real_test", 1, 1), ("fake_test", 1, 6)),
        wdf_frames=(10, 14),
        dfdc_parts=((1, 6), (1, 3), (1, 5)), dfdc_cross_chunk=0.25, dfdc_test=(1, 2)),
    # the demo profile: enough videos for a training demo to learn, under two minutes on 2 cores.
    # 32 frames per video cover the 16 sampled frames and 4 clips of 4 at a third less rendering than
    # 48. WildDeepfake: its reals and fakes come from different source videos (one archive each), so
    # a model can tell them apart by who is in them, and with a handful of real archives it does.
    # Every real archive is therefore its own source video with one sequence (40 people, 12 held out
    # for validation by params/demo.yaml), as the real dataset draws on hundreds of videos.
    # Every test split has 12-20 real videos and every validation split 6-12, so that one video moves
    # a real-detection rate by at most 0.08 and no single hard real sets the validation threshold
    # (with 6 test and 6 validation reals in FF++, one real moved a TNR by 0.17). 1 real : 4-5 fakes.
    "small": ScaleSpec(
        name="small", frames=32, ffpp_pairs=36, ffpp_val_pairs=6,
        celebdf_identities=14, celebdf_videos_per_id=2, celebdf_fakes_per_video=5, celebdf_youtube=4,
        celebdf_test_ids=5, celebdf_test_youtube=2,
        wdf_tars=(("real_train", 40, 1), ("fake_train", 20, 8), ("real_test", 16, 1), ("fake_test", 16, 5)),
        wdf_frames=(16, 24),
        dfdc_parts=((2, 16), (2, 18), (3, 16), (2, 15), (3, 15), (4, 15), (3, 14), (4, 12), (3, 15), (5, 14)),
        dfdc_cross_chunk=0.2, dfdc_test=(20, 80)),
    # a few times `small`, for longer local experiments
    "medium": ScaleSpec(
        name="medium", frames=64, ffpp_pairs=36, ffpp_val_pairs=5,
        celebdf_identities=12, celebdf_videos_per_id=3, celebdf_fakes_per_video=6, celebdf_youtube=8,
        celebdf_test_ids=3, celebdf_test_youtube=3,
        wdf_tars=(("real_train", 40, 1), ("fake_train", 20, 8), ("real_test", 16, 1), ("fake_test", 16, 4)),
        wdf_frames=(20, 32),
        dfdc_parts=tuple((r, 14 - r) for r in (1, 1, 2, 2, 2, 3, 1, 2, 3, 4, 2, 1, 3, 2, 5, 2, 1, 2, 3, 2)),
        dfdc_cross_chunk=0.2, dfdc_test=(10, 40)),
}


def get_scale(name: str) -> ScaleSpec:
    """The ScaleSpec called `name`; ValueError naming the known scales otherwise."""
    if name not in SCALES:
        raise ValueError(f"unknown demo corpus scale {name!r}; choose one of {sorted(SCALES)}")
    return SCALES[name]
