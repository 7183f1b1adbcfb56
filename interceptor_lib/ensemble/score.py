"""Scoring the members over the face-crop cache: `member_item_probs`, every member's P(fake) on every
frame or clip, the one loop that both the evaluation (per-item predictions) and `member_video_probs`
(video-level member probabilities, the input of `fit.fit_weights`) read from.

The frames and clips are read by the training datasets with the evaluation transform, as training
validated them, and members of a trunk group share the trunk (`Ensemble.run_members`).
"""

from __future__ import annotations

import pandas as pd
import torch
from torch.utils.data import DataLoader

from interceptor_lib.data.cache import FaceCropCache
from interceptor_lib.data.datasets import ClipDataset, FrameDataset, build_transform
from interceptor_lib.ensemble.combine import Ensemble

#: the dataset that reads each input kind's items, in the order the kinds are scored
DATASETS = {"image": FrameDataset, "clip": ClipDataset}
#: the batch keys the members read (the datasets' other keys are bookkeeping: label, video_id, frame)
INPUT_KEYS = ("image", "clip", "audio", "has_audio")


def member_item_probs(ens: Ensemble, table: pd.DataFrame, cache: FaceCropCache, batch_size: int = 32,
                      num_workers: int = 0, device: str | torch.device | None = None,
                      items_per_video: int = 0) -> dict[str, pd.DataFrame]:
    """Every member's P(fake) on every item: {input kind: DataFrame} for each kind ("image", then
    "clip") that has members, one row per item (a frame for image members, a clip for clip members) of
    each video of `table` that the cache holds, in the dataset's order, with columns video_id, label,
    then one per member of that kind in ensemble order. `device`: where the batches go (default: the
    ensemble's). `items_per_video` > 0 scores that many evenly spaced frames / clips of each video
    (0: every cached one). The ensemble scores in eval mode and is left in the mode it was in."""
    device = torch.device(device) if device is not None else next(ens.parameters()).device
    dc = ens.data_config
    transform = build_transform(False, dc["mean"], dc["std"])
    out: dict[str, pd.DataFrame] = {}
    was_training = ens.training
    ens.eval()
    try:
        for kind, dataset in DATASETS.items():
            names = [n for n in ens.names if ens.members[n].input_kind == kind]
            if not names:
                continue
            loader = DataLoader(dataset(table, cache, transform, items_per_video=items_per_video),
                                batch_size=batch_size, shuffle=False,
                                num_workers=num_workers)
            rows: dict[str, list] = {"video_id": [], "label": [], **{n: [] for n in names}}
            with torch.inference_mode():
                for b in loader:
                    x = {k: v.to(device) for k, v in b.items() if k in INPUT_KEYS}
                    for n, p in ens.run_members(x, names).items():
                        rows[n] += p.float().cpu().tolist()
                    rows["video_id"] += list(b["video_id"])
                    rows["label"] += b["label"].tolist()
            out[kind] = pd.DataFrame(rows)
    finally:
        ens.train(was_training)
    return out


def long_item_probs(scored: dict[str, pd.DataFrame], name: str = "model") -> pd.DataFrame:
    """`member_item_probs`' tables in long form, one row per member and item: video_id, item (its
    number within the video, in the dataset's order), `name` (the member), prob."""
    parts = []
    for items in scored.values():
        items = items.drop(columns="label")
        items.insert(1, "item", items.groupby("video_id").cumcount())
        parts.append(items.melt(id_vars=["video_id", "item"], var_name=name, value_name="prob"))
    return pd.concat(parts, ignore_index=True)


def member_video_probs(ens: Ensemble, table: pd.DataFrame, cache: FaceCropCache, batch_size: int = 32,
                       num_workers: int = 0, device: str | torch.device | None = None,
                       items_per_video: int = 0) -> pd.DataFrame:
    """Video-level P(fake) of every member over the crop cache, the input of `fit_weights`: one row per
    video of `table` that the cache holds (sorted by video_id), columns video_id, label and one per
    member (the mean over the video's frames for image members, over its clips for clip members, as
    `predict` does; `items_per_video` as for `member_item_probs`). Videos without clips have NaN for
    the clip members."""
    scored = member_item_probs(ens, table, cache, batch_size, num_workers, device, items_per_video)
    labels = {}
    parts = []
    for items in scored.values():
        labels.update(zip(items["video_id"], items["label"]))
        parts.append(items.drop(columns="label").groupby("video_id", sort=True).mean())
    out = pd.concat(parts, axis=1) if parts else pd.DataFrame()
    out = out.reindex(columns=ens.names)
    out.insert(0, "label", [labels[v] for v in out.index])
    return out.rename_axis("video_id").reset_index()
