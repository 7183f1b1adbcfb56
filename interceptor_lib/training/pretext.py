"""A pretext-trained backbone for profiles without ImageNet weights (the demo and smoke profiles).

The kaggle / colab profiles start every specialist from the same ImageNet EfficientNet-B4 (a local
file, never downloaded) with its early stages frozen. The demo has no such file offline, and a tiny
backbone trained from random weights for a few minutes learns little: each specialist then only
catches what its hand-built module computes (the background module, on quarter-resolution copies,
missed 3 of 4 noise fakes). So the demo first trains its backbone once on a task that needs no fake
and no label (the idea of self-supervised forensic pretraining, e.g. Shiohara & Yamasaki, "Detecting
Deepfakes with Self-Blended Images", CVPR 2022, who train on real faces only):

    a REAL TRAINING face crop -> one of K degradations, on the whole crop or (share `local`) inside a
    soft ellipse over the face -> the backbone + a linear layer predict which one.

    0 none              the crop as it is
    1 sensor noise      Gaussian, sigma 4-15
    2 blur              Gaussian, sigma 0.8-2
    3 JPEG              quality 8-40
    4 resampling        down to 25-50 %, back up (bilinear)
    5 under-exposure    x 0.3-0.6
    6 colour cast       per-channel gain 0.75-1.25

These are generic camera and processing degradations. They are also the kinds of trace the demo's
fakes carry, so the pretext teaches the backbone what to look at, as ImageNet pretraining does for
edges and textures; it never sees a fake video or a label, and it uses the training split only.
Every specialist then starts from this one file with the same frozen trunk, as it would from
ImageNet weights, so the shared-trunk ensemble runs in the demo too.

`pretrain_backbone(cfg, backbone, seed, crops)` writes `cfg.out` (timm state dict, safetensors) and a JSON of
how it was made beside it; a later call with the same settings and crops reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd
import torch
import timm
import torch.nn.functional as F
from safetensors.torch import save_file

from interceptor_lib.config.schema import PretextParams
from interceptor_lib.errors import InterceptorError
from interceptor_lib.progress import progress_bar

#: The degradation classes, in label order.
DEGRADATIONS = ("none", "noise", "blur", "jpeg", "resample", "underexposure", "colour_cast")


class PretextError(InterceptorError, RuntimeError):
    """The pretext cannot run (no real training crops) or its output cannot be written."""


def degrade(img: np.ndarray, k: int, rng: np.random.Generator, local: float = 0.0) -> np.ndarray:
    """uint8 (H, W, 3) RGB crop -> the crop with degradation `DEGRADATIONS[k]`; with probability
    `local` (k > 0) only inside a soft ellipse around the centre (where the face is)."""
    if not 0 <= k < len(DEGRADATIONS):
        raise ValueError(f"degradation {k} is not one of 0..{len(DEGRADATIONS) - 1} {DEGRADATIONS}")
    x = img.astype(np.float32)
    h, w = img.shape[:2]
    if k == 1:
        x = x + rng.normal(0.0, rng.uniform(4, 15), x.shape).astype(np.float32)
    elif k == 2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.8, 2.0))
    elif k == 3:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(8, 41))])
        x = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32)
    elif k == 4:
        f = rng.uniform(0.25, 0.5)
        small = cv2.resize(img, (max(4, int(w * f)), max(4, int(h * f))), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    elif k == 5:
        x = x * np.float32(rng.uniform(0.3, 0.6))
    elif k == 6:
        x = x * rng.uniform(0.75, 1.25, 3).astype(np.float32)
    if k and rng.uniform() < local:
        m = np.zeros((h, w), np.float32)
        centre = (int(w * rng.uniform(0.4, 0.6)), int(h * rng.uniform(0.4, 0.6)))
        axes = (int(w * rng.uniform(0.2, 0.35)), int(h * rng.uniform(0.25, 0.4)))
        cv2.ellipse(m, centre, axes, 0, 0, 360, 1.0, -1)
        m = cv2.GaussianBlur(m, (0, 0), max(1.0, w / 40))[..., None]
        x = m * x + (1 - m) * img.astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def real_training_crops(table: pd.DataFrame, cache) -> np.ndarray:
    """(N, H, W, 3) uint8: every cached frame crop of the REAL videos of the TRAINING split (no fake,
    nothing of val or test)."""
    rows = cache.usable(table)
    rows = rows[(rows["split"] == "train") & (rows["label"] == 0)]
    crops = []
    for v in rows["video_id"]:
        rd = cache.reader(v)
        if len(rd.frame_pos):
            crops.append(rd.crops(rd.frame_pos))
    if not crops:
        raise PretextError("train.pretext needs real training videos with cached face crops, and the "
                           "index has none: run notebook 00 (prepare data) with the training split present")
    return np.concatenate(crops)


def _fingerprint(settings: dict, crops: np.ndarray) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update(np.ascontiguousarray(crops[:: max(1, len(crops) // 64)]).tobytes())
    h.update(str(crops.shape).encode())
    return h.hexdigest()[:16]


def require_steps(cfg: PretextParams) -> None:
    """Raise PretextError when `cfg` trains no pretext backbone (steps 0)."""
    if cfg.steps <= 0:
        raise PretextError("train.pretext.steps is 0: this profile takes its backbone weights from "
                           "train.weights / the local ImageNet cache, not from a pretext")


def pretrain_backbone(cfg: PretextParams, backbone: str, seed: int, crops: np.ndarray,
                      ensure_room: Callable[[int, str], None] | None = None, progress: bool = True) -> dict:
    """Train timm `backbone` on the degradation pretext with `crops` (real training faces,
    `real_training_crops`) and save it to `cfg.out`; returns the record written beside it (settings,
    accuracy per 10 % of the steps, seconds). Reuses an existing file made with the same settings from
    the same crops. `ensure_room(bytes, what)` raises before the file is written when the disk budget
    cannot hold it."""
    require_steps(cfg)
    out = Path(cfg.out)
    record_path = out.with_suffix(".json")
    settings = {**asdict(cfg), "backbone": backbone, "seed": seed}
    settings.pop("out")
    key = _fingerprint(settings, crops)
    if out.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("fingerprint") == key:
            return {**record, "reused": True}

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(backbone, pretrained=False, num_classes=len(DEGRADATIONS))
    if ensure_room is not None:
        ensure_room(sum(t.numel() * t.element_size() for t in model.state_dict().values()), "the pretext backbone")
    dc = timm.data.resolve_model_data_config(model)
    mean = torch.tensor(dc["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(dc["std"]).view(1, 3, 1, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    rng = np.random.default_rng([seed, 0x9E7E])
    model.train()
    t0, hits, curve = time.perf_counter(), [], []
    every = max(1, cfg.steps // 10)
    bar = None
    if progress:
        bar = progress_bar(total=cfg.steps, desc="pretext backbone", unit="step")
    for step in range(cfg.steps):
        idx = rng.integers(0, len(crops), cfg.batch_size)
        ks = rng.integers(0, len(DEGRADATIONS), cfg.batch_size)
        batch = np.stack([degrade(crops[i], int(k), rng, cfg.local) for i, k in zip(idx, ks)])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255)
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = (x - mean) / std
        y = torch.from_numpy(ks)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hits.append((logits.argmax(1) == y).float().mean().item())
        if (step + 1) % every == 0 or step + 1 == cfg.steps:
            curve.append({"step": step + 1, "loss": round(loss.item(), 4),
                          "accuracy": round(float(np.mean(hits[-every:])), 4)})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    record = {"fingerprint": key, "settings": settings, "classes": list(DEGRADATIONS),
              "real_training_crops": int(len(crops)), "curve": curve,
              "seconds": round(time.perf_counter() - t0, 1), "weights": str(out)}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        os.replace(tmp, out)  # a killed run leaves no half-written weight file under the real name
        record_path.write_text(json.dumps(record, indent=1))
    except OSError as e:
        raise PretextError(f"cannot write the pretext backbone to {out}: {e}") from e
    return {**record, "reused": False}
