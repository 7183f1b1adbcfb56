"""Replay: a stage's training draws mixed with the videos of the stages trained before it, so that
fine-tuning on one dataset after another forgets the earlier ones less; and the other mix of the
draws, pseudo-fakes beside the dataset's fakes (`pseudo_draws`).

The training rows carry a `stratum`: 0 for the stage's own videos, 1 for the replayed ones
(`with_replay`); the sampler then gives stratum 1 the configured share of the draws, balanced real /
fake within each stratum (`replay_strata`, the BalancedSampler's arguments).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from interceptor_lib.config.schema import PSEUDO_OFF, pseudo_share


def with_replay(rows: pd.DataFrame, replay_rows: pd.DataFrame) -> pd.DataFrame:
    """This stage's training rows (stratum 0) followed by the replayed rows (stratum 1); the
    engine's sampler gives stratum 1 `replay` of the draws. Rows of this stage are not repeated."""
    replay_rows = replay_rows[~replay_rows["video_id"].isin(rows["video_id"])]
    return pd.concat([rows.assign(stratum=0), replay_rows.assign(stratum=1)], ignore_index=True)


def replay_strata(train_set, replay: float, balanced: bool = True) -> dict:
    """BalancedSampler arguments that give the replayed items (stratum 1) `replay` of the draws;
    none when the set has no strata (every item then counts as this stage's), or when the draws are
    natural (not balanced) and nothing is to be replayed."""
    strata = getattr(train_set, "strata", None)
    if not balanced:
        if replay:
            raise ValueError(f"replay ({replay}) needs balanced draws (balanced_sampling is off)")
        return {}
    if strata is None:
        return {}
    if not 0.0 <= replay < 1.0:
        raise ValueError(f"replay must be in [0, 1), got {replay}")
    return {"strata": np.minimum(strata, 1), "shares": [1.0 - replay, replay]}


def pseudo_draws(train_set, pseudo_fakes) -> dict:
    """BalancedSampler arguments that give the training set's pseudo-fakes (its `pseudo_items`) their
    share of the fake draws (`pseudo_fakes`: "off", "only" or a share in (0, 1)); none when off.
    Raises when the setting and the set disagree (pseudo-fakes asked for, none made, or the reverse)."""
    items = getattr(train_set, "pseudo_items", None)
    has = items is not None and bool(np.asarray(items).any())
    if pseudo_fakes in (PSEUDO_OFF, None):
        if has:
            raise ValueError("the training set makes pseudo-fakes but pseudo_fakes is off")
        return {}
    if not has:
        raise ValueError(f"pseudo_fakes is {pseudo_fakes!r} but the training set has no pseudo-fake items "
                         "(build it with a PseudoFakes and at least one real item)")
    return {"pseudo": np.asarray(items, bool), "pseudo_share": pseudo_share(pseudo_fakes)}
