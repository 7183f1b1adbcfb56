"""Validation during training: the model's predictions over the validation set and the scores an
epoch records (frame and video AUC, real- and fake-detection rates), the best checkpoint being the
one of the highest video AUC. Under DDP each rank predicts its share and the shares are gathered,
so every rank computes the same scores.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from interceptor_lib.metrics.scores import aggregate_videos, binary_metrics
from interceptor_lib.training import distributed
from interceptor_lib.training.device import batch_to_device, loader_options
from interceptor_lib.training.train_config import TrainConfig


@torch.no_grad()
def predict(model, dataset, cfg: TrainConfig, device: torch.device, amp_dtype) -> pd.DataFrame:
    """Frame-level (or clip-level) predictions: video_id, label, prob (this process, all of `dataset`),
    in `cfg.batch_size` batches under autocast `amp_dtype` (None: full precision)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
                        **loader_options(device, cfg.num_workers), generator=torch.Generator().manual_seed(0))
    rows = []
    for batch in loader:
        b = batch_to_device(batch, device, cfg.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            prob = model(b)["prob"].float().cpu().numpy()
        rows.append(pd.DataFrame({"video_id": batch["video_id"], "label": batch["label"].numpy(), "prob": prob}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["video_id", "label", "prob"])


def validate(model, val_set, cfg: TrainConfig, device: torch.device, amp_dtype, rank: int = 0,
             world_size: int = 1) -> dict:
    """Validation metrics (frame and video level); {} without a validation set. Under DDP (every
    rank calls it) each rank predicts its share of the validation set and the predictions are
    gathered, so every rank computes the same metrics."""
    if val_set is None or len(val_set) == 0:
        return {}
    if world_size > 1:
        share = Subset(val_set, range(rank, len(val_set), world_size))
        frames = pd.concat(distributed.all_gather_object(predict(model, share, cfg, device, amp_dtype)),
                           ignore_index=True)
    else:
        frames = predict(model, val_set, cfg, device, amp_dtype)
    videos = aggregate_videos(frames, score="prob")
    f = binary_metrics(frames["label"], frames["prob"])
    v = binary_metrics(videos["label"], videos["prob"])  # the aggregated column keeps its name
    return {"frame_auc": f["auc"], "video_auc": v["auc"], "video_tnr": v["tnr"], "video_tpr": v["tpr"],
            "video_balanced_accuracy": v["balanced_accuracy"], "val_log_loss": f["log_loss"]}
