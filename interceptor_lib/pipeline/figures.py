"""Figures of the training: a stage's curves (training loss, validation scores) from its summary."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

_CURVE_LABELS = {"frame_auc": "frame AUC", "video_auc": "video AUC",
                 "video_tnr": "real-detection rate (TNR)", "video_tpr": "fake-detection rate (TPR)"}


def plot_history(summary: dict):
    """Training curves of a stage summary: training loss and validation scores per epoch, or, for
    DFDC's stage, per chunk in training order (each chunk's epochs side by side)."""
    h = pd.DataFrame(summary["history"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    title = f"{summary['model']} · {summary['stage']} ({summary.get('dataset', '')})"
    if h.empty:
        axes[0].text(0.5, 0.5, "nothing trained in this run (finished earlier)", ha="center", va="center",
                     transform=axes[0].transAxes)
        return fig
    x = np.arange(1, len(h) + 1)
    chunks = "part" in h and h["part"].astype(str).str.startswith("chunk-").any()
    if chunks:
        parts = h["part"].astype(str).str.replace("chunk-", "", regex=False).str.lstrip("0").replace("", "0")
        per_chunk = h.groupby("part", sort=False).size().max()
        ticks = [f"{c}" if per_chunk == 1 else f"{c}.{e}" for c, e in zip(parts, h.get("epoch", x))]
        xlabel = "DFDC chunk, in training order" + ("" if per_chunk == 1 else " (chunk.epoch)")
    else:
        ticks, xlabel = [str(int(e)) for e in h.get("epoch", x)], "epoch"
    loss = (summary.get("stage_params") or {}).get("loss", "")
    axes[0].plot(x, h["train_loss"], marker="o")
    axes[0].set(title=f"{title}: training loss", xlabel=xlabel, ylabel=f"mean training loss{f' ({loss})' if loss else ''}")
    for col, label in _CURVE_LABELS.items():
        if col in h:
            axes[1].plot(x, h[col], marker="o", label=label)
    last_only = chunks and (summary.get("chunk_validation") == "last")
    axes[1].set(title=f"{title}: validation" + (" (last chunk only)" if last_only else ""), xlabel=xlabel,
                ylabel="score on validation videos", ylim=(0, 1.02))
    for ax in axes:
        ax.set_xticks(x, ticks, fontsize=7 if len(x) > 12 else 8)
        ax.set_xlim(0.5, len(x) + 0.5)  # a single epoch is one point in the middle, not a zoomed axis
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig
