"""Grad-CAM figures: where each ensemble member looked when it scored an input.

One PNG per input: its face crops on the top row, one row of Grad-CAM overlays per member that
scored it (clip members: each clip's middle frame), the relevance colour bar, and the ensemble's
verdict in the title. `models.explain.grad_cam` computes the maps.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.datasets import build_transform
from interceptor_lib.ensemble.combine import Ensemble
from interceptor_lib.errors import InterceptorError
from interceptor_lib.inference.preprocess import Prepared
from interceptor_lib.inference.score import clip_batch, to_tensor
from interceptor_lib.models.explain import grad_cam

EXPLAIN_TILE_PX = 224  # each face tile of a Grad-CAM figure, at least this many pixels a side


def explain_input(ens: Ensemble, prep: Prepared, pp: PreprocessParams, scored: dict, device: torch.device,
                  out_path: Path, max_tiles: int = 4, members: str | list[str] = "all",
                  title: str = "") -> Path | None:
    """Grad-CAM of the members that scored the input on up to `max_tiles` evenly spaced face crops
    (clip members: each clip's middle frame), written as a PNG figure: the crops on the top row, one
    row of overlays per member (its weight in the ensemble and its P(fake) beside it), a colour bar of
    the relevance scale, and `title` (the input's full name) with the ensemble's P(fake) on top.
    `members`: "all" (every member that scored it), "best" (the one with the largest weight), or
    names. Each tile is at least EXPLAIN_TILE_PX pixels a side."""
    # matplotlib is slow to import and only the figure needs it
    import matplotlib
    import matplotlib.cm
    import matplotlib.colors
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ran = list(scored["members"])
    if not ran:
        return None
    weights = scored.get("weights", {})
    if members == "best":
        chosen = [max(ran, key=lambda n: weights.get(n, 0.0))]
    elif members == "all":
        chosen = sorted(ran, key=lambda n: -weights.get(n, 0.0))
    else:
        chosen = [m for m in ([members] if isinstance(members, str) else members) if m in ran]
        if not chosen:
            raise InterceptorError(f"Grad-CAM members {members!r}: none of them scored this input (scored by {ran})")
    transform = build_transform(False, ens.data_config["mean"], ens.data_config["std"])
    rows = []  # (member, tiles (n, S, S, 3), cams (n, S, S))
    for name in chosen:
        model = ens.members[name]
        if model.input_kind == "image":
            sel = np.unique(np.linspace(0, len(prep.frames) - 1, min(max_tiles, len(prep.frames))).round().astype(int))
            batch = {"image": to_tensor(prep.frames[sel], transform).to(device)}
            crops = prep.frames[sel]
        else:
            sel = np.unique(np.linspace(0, len(prep.clips) - 1, min(max_tiles, len(prep.clips))).round().astype(int))
            audio_len = int(round(pp.audio_window_s * pp.audio_sample_rate))
            batch = {k: v.to(device) for k, v in clip_batch(prep, transform, audio_len, sel).items()}
            crops = prep.clips[sel, prep.clips.shape[1] // 2]
        rows.append((name, crops, grad_cam(model, batch).cpu().numpy()))
    n_cols = max(len(c) for _, c, _ in rows)
    tile_in, dpi = EXPLAIN_TILE_PX / 100, 100
    fig = Figure(figsize=(tile_in * n_cols + 2.4, tile_in * (len(rows) + 1) + 0.8), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(rows) + 1, n_cols + 1, width_ratios=[1] * n_cols + [0.08],
                            left=1.6 / (tile_in * n_cols + 2.4), right=0.95, top=1 - 0.6 / fig.get_figheight(),
                            bottom=0.02, wspace=0.03, hspace=0.06)
    cmap = matplotlib.colormaps["jet"]
    first_crops = rows[0][1]
    for r, (name, crops, cams) in enumerate([("face crops", first_crops, None)] + rows):
        for c in range(n_cols):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(crops):
                ax.axis("off")
                continue
            ax.imshow(crops[c], interpolation="bicubic")
            if cams is not None:
                ax.imshow(np.clip(cams[c], 0, 1), cmap=cmap, vmin=0, vmax=1, alpha=0.45,
                               interpolation="bilinear", extent=(-0.5, crops[c].shape[1] - 0.5, crops[c].shape[0] - 0.5, -0.5))
            if c == 0:
                label = name if cams is None else (f"{name}\nweight {weights.get(name, 0.0):.2f}\n"
                                                   f"P(fake) {scored['members'][name]:.2f}")
                ax.set_ylabel(label, fontsize=9, rotation=0, ha="right", va="center", labelpad=8)
    scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap)
    fig.colorbar(scale, cax=fig.add_subplot(grid[1:, n_cols]), label="Grad-CAM relevance for 'fake' (0-1)")
    verdict = "fake" if scored["prob"] >= ens.threshold else "real"
    fig.suptitle(f"{title or out_path.stem}\nensemble P(fake) {scored['prob']:.3f} -> {verdict} "
                 f"(threshold {ens.threshold:.3f})", fontsize=10)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    return out_path


def explain_file_name(path: Path, used: set) -> str:
    """`<file name with its extension>.gradcam.png` (a.mp4 and a.jpg do not collide), made unique."""
    stem = re.sub(r"[^\w.-]+", "_", path.name) or "input"
    name, k = f"{stem}.gradcam.png", 2
    while name in used:
        name, k = f"{stem}-{k}.gradcam.png", k + 1
    used.add(name)
    return name
