"""Training datasets over the face-crop cache, augmentation, and a class-balanced sampler.

Batches are dicts (the DeepfakeBench contract): `image` (B, 3, H, W) for frame models, or `clip`
(B, T, 3, H, W) with `audio` (B, S) and `has_audio` (B,) for the temporal and audio-visual models;
always `label` (B,) with fake = 1 and `video_id` (a list of B strings) so that frame predictions can
be grouped into video scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from interceptor_lib.data.cache import FaceCropCache
from interceptor_lib.data.crops_file import CropReader

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomDownscale(torch.nn.Module):
    """With probability `p`, shrink by a random factor in `scale` and enlarge back: the loss of
    detail of a low-resolution upload (a test-time condition the resolution specialist must survive)."""

    def __init__(self, scale=(0.4, 0.9), p=0.3):
        super().__init__()
        self.scale, self.p = scale, p

    def forward(self, x):
        if torch.rand(()) >= self.p:
            return x
        h, w = x.shape[-2:]
        f = float(torch.empty(()).uniform_(*self.scale))
        small = v2.functional.resize(x, [max(8, round(h * f)), max(8, round(w * f))], antialias=True)
        return v2.functional.resize(small, [h, w], antialias=True)


def build_transform(train: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD, jpeg_quality=(60, 95),
                    p_color=0.5, p_blur=0.2, p_jpeg=0.3, p_downscale=0.3) -> v2.Compose:
    """uint8 (..., 3, H, W) -> normalised float32. Training adds flip, colour jitter, blur, JPEG
    re-compression and downscaling; evaluation only normalises. Leading dims are treated as a batch,
    so every frame of a clip gets the same random parameters (a flip flips the whole clip)."""
    ops = []
    if train:
        ops += [v2.RandomHorizontalFlip(),
                v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2, 0.02)], p=p_color),
                v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=p_blur),
                v2.RandomApply([v2.JPEG(jpeg_quality)], p=p_jpeg),
                RandomDownscale(p=p_downscale)]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


class _CacheDataset(Dataset):
    def __init__(self, table: pd.DataFrame, cache: FaceCropCache, transform=None):
        self.table = cache.usable(table)
        self.cache = cache
        self.transform = transform or build_transform(train=False)
        self._readers: dict[str, CropReader] = {}

    def _reader(self, video_id: str) -> CropReader:
        # Headers are small; keeping them per worker avoids re-parsing JSON for every item.
        r = self._readers.get(video_id)
        if r is None:
            if len(self._readers) > 4096:
                self._readers.clear()
            r = self._readers[video_id] = self.cache.reader(video_id)
        return r

    @property
    def labels(self) -> np.ndarray:
        """Label of every item (for samplers and class weights)."""
        return self.table["label"].to_numpy()[self._item_video]


class FrameDataset(_CacheDataset):
    """One item per (video, sampled frame): `image` (3, H, W), `label`, `video_id`, `frame`."""

    def __init__(self, table, cache, transform=None):
        super().__init__(table, cache, transform)
        counts = [len(self._reader(v).frame_pos) for v in self.table["video_id"]]
        self._item_video = np.repeat(np.arange(len(self.table)), counts)
        self._item_slot = np.concatenate([np.arange(c) for c in counts]) if counts else np.zeros(0, int)

    def __len__(self):
        return len(self._item_video)

    def __getitem__(self, i):
        row = self.table.iloc[self._item_video[i]]
        rd = self._reader(row["video_id"])
        pos = rd.frame_pos[self._item_slot[i]]
        img = torch.from_numpy(rd.crops([pos])[0]).permute(2, 0, 1)  # (3, H, W) uint8
        return {"image": self.transform(img), "label": torch.tensor(int(row["label"])),
                "video_id": row["video_id"], "frame": int(rd.frame_indices[pos])}


class ClipDataset(_CacheDataset):
    """One item per (video, clip): `clip` (T, 3, H, W), `audio` (S,), `has_audio`, `label`,
    `video_id`. Videos without audio get zeros and has_audio = False (the model masks them)."""

    def __init__(self, table, cache, transform=None):
        super().__init__(table, cache, transform)
        counts = [self._reader(v).num_clips for v in self.table["video_id"]]
        self._item_video = np.repeat(np.arange(len(self.table)), counts)
        self._item_slot = np.concatenate([np.arange(c) for c in counts]) if counts else np.zeros(0, int)
        p = cache.params
        self._audio_len = int(round(p.audio_window_s * p.audio_sample_rate))

    def __len__(self):
        return len(self._item_video)

    def __getitem__(self, i):
        row = self.table.iloc[self._item_video[i]]
        rd = self._reader(row["video_id"])
        slot = int(self._item_slot[i])
        clip = torch.from_numpy(rd.clip(slot)).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8
        wave = rd.audio_window(slot)
        audio = torch.from_numpy(wave) if wave is not None else torch.zeros(self._audio_len)
        return {"clip": self.transform(clip), "audio": audio, "has_audio": torch.tensor(wave is not None),
                "label": torch.tensor(int(row["label"])), "video_id": row["video_id"]}


def class_balanced_sampler(labels, num_samples: int | None = None, generator: torch.Generator | None = None,
                           replacement: bool = True) -> WeightedRandomSampler:
    """Draw real and fake items equally often in expectation (weight 1 / class count): the earlier
    attempt trained on 1 real : 5 fakes and ended up calling everything fake."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"class-balanced sampling needs both classes; counts real/fake = {counts.tolist()}")
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=replacement, generator=generator)
