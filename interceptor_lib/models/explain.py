"""Where a model looks: Grad-CAM for every registered model, attention maps for the specialists.

Grad-CAM (Selvaraju et al., ICCV 2017) on the last convolutional feature map (`model.cam_layer`,
the backbone's final unit): weight each channel by the mean gradient of the fake-vs-real logit
difference, sum, ReLU, normalise each map to [0, 1] and upsample to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """(..., H, W) >= 0 -> each map divided by its maximum (all-zero maps stay zero)."""
    peak = maps.flatten(-2).amax(-1)[..., None, None]
    return maps / peak.clamp_min(1e-12)


def _upsample(maps: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1).clamp(0, 1)


def grad_cam(model: nn.Module, batch: dict, target: int = 1, per_frame: bool = False) -> torch.Tensor:
    """Grad-CAM maps in [0, 1] at the input resolution: (B, H, W), or for clip models (B, T, H, W)
    when `per_frame`, else the mean over the clip's frames. `target` 1 explains "fake", 0 "real".
    Runs the model in eval mode and restores its mode afterwards."""
    if target not in (0, 1):
        raise ValueError(f"target must be 0 (real) or 1 (fake), got {target}")
    store = {}

    def hook(module, inputs, output):
        if not output.requires_grad:  # a frozen last stage: make its output a leaf to differentiate to
            output = output.detach().requires_grad_(True)
        store["maps"] = output
        return output

    was_training = model.training
    handle = model.cam_layer.register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(batch)["logits"]
            score = (logits[:, 1] - logits[:, 0]) * (1 if target == 1 else -1)
            acts = store["maps"]  # (N, C, h, w); N = B or B*T
            grads, = torch.autograd.grad(score.sum(), acts)
    finally:
        handle.remove()
        model.train(was_training)
    cam = F.relu((grads.mean((2, 3), keepdim=True) * acts).sum(1)).detach()  # (N, h, w)
    x = batch[model.input_kind]
    cam = _upsample(_normalise(cam), x.shape[-2:])  # (N, H, W)
    if model.input_kind == "clip":
        cam = cam.view(x.shape[0], x.shape[1], *cam.shape[-2:])  # (B, T, H, W)
        if not per_frame:
            cam = _normalise(cam.mean(1))
    return cam


@torch.no_grad()
def attention_map(model: nn.Module, batch: dict) -> torch.Tensor:
    """The specialists' fusion attention over their 7 x 7 grid, normalised to [0, 1] and upsampled to
    the input: (B, H, W). Raises ValueError for models without attention."""
    was_training = model.training
    model.eval()
    try:
        out = model(batch)
    finally:
        model.train(was_training)
    if "attention" not in out:
        raise ValueError(f"{getattr(model, 'model_name', type(model).__name__)} has no attention; use grad_cam")
    return _upsample(_normalise(out["attention"]), batch[model.input_kind].shape[-2:])
