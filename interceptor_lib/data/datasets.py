"""Training datasets over the face-crop cache, augmentation, and a class-balanced sampler.

Batches are dicts (the DeepfakeBench contract): `image` (B, 3, H, W) for frame models, or `clip`
(B, T, 3, H, W) with `audio` (B, S) and `has_audio` (B,) for the temporal and audio-visual models;
always `label` (B,) with fake = 1 and `video_id` (a list of B strings) so that frame predictions can
be grouped into video scores.

With `pseudo` (a `data.pseudo_fakes.PseudoFakes`) every real item also has a pseudo-fake twin: the
same crop (or clip), self-blended when it is read, labelled fake, its video_id suffixed with
PSEUDO_SUFFIX. The blend is drawn from (seed, epoch, item index) alone (`set_epoch`), so a resumed
epoch reads the same pseudo-fakes. Mode "only" leaves the dataset's fakes out.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import v2

from interceptor_lib.data.cache import FaceCropCache
from interceptor_lib.data.crops_file import CropReader
from interceptor_lib.data.pseudo_fakes import PSEUDO_SUFFIX, PseudoFakes, blend_rng, self_blend, self_blend_clip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _PerImageCV2(torch.nn.Module):
    """Base of the OpenCV-backed transforms below: uint8 (..., 3, H, W) in and out, one random draw
    per call, applied to every image in the leading dims (so a clip stays consistent). torchvision's
    tensor blur runs a grouped conv2d that takes ~4 ms per 224 px face on one CPU core, 50x OpenCV's
    time, which would make augmentation, not decoding, the bottleneck of the data loader."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def draw(self) -> dict:
        raise NotImplementedError

    def apply(self, img: np.ndarray, **kw) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or torch.rand(()) >= self.p:
            return x
        kw = self.draw()
        flat = x.reshape(-1, *x.shape[-3:]).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3) uint8
        out = np.stack([self.apply(np.ascontiguousarray(im), **kw) for im in flat])
        return torch.from_numpy(out).permute(0, 3, 1, 2).reshape(x.shape)


class RandomGaussianBlur(_PerImageCV2):
    """Gaussian blur with sigma drawn from `sigma` (a defocused or smoothed upload)."""

    def __init__(self, sigma=(0.1, 1.5), p=0.2):
        super().__init__(p)
        self.sigma = sigma

    def draw(self):
        return {"sigma": float(torch.empty(()).uniform_(*self.sigma))}

    def apply(self, img, sigma):
        return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)


class RandomDownscale(_PerImageCV2):
    """Shrink by a factor drawn from `scale` and enlarge back: the loss of detail of a low-resolution
    upload, a condition the resolution specialist must survive."""

    def __init__(self, scale=(0.4, 0.9), p=0.3):
        super().__init__(p)
        self.scale = scale

    def draw(self):
        return {"f": float(torch.empty(()).uniform_(*self.scale))}

    def apply(self, img, f):
        h, w = img.shape[:2]
        small = cv2.resize(img, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def build_transform(train: bool, mean=IMAGENET_MEAN, std=IMAGENET_STD, jpeg_quality=(60, 95),
                    p_color=0.5, p_blur=0.2, p_jpeg=0.3, p_downscale=0.3) -> v2.Compose:
    """uint8 (..., 3, H, W) -> normalised float32. Training adds flip, JPEG re-compression, blur,
    downscaling and colour jitter; evaluation only normalises. Leading dims are treated as a batch,
    so every frame of a clip gets the same random parameters (a flip flips the whole clip).
    Colour jitter runs on floats (3x faster than on uint8) and leaves hue alone (slow, and a hue
    shift makes skin colours no camera produces)."""
    ops = []
    if train:
        ops += [v2.RandomHorizontalFlip(),
                v2.RandomApply([v2.JPEG(jpeg_quality)], p=p_jpeg),
                RandomGaussianBlur(p=p_blur),
                RandomDownscale(p=p_downscale)]
    ops += [v2.ToDtype(torch.float32, scale=True)]
    if train:
        ops += [v2.RandomApply([v2.ColorJitter(0.2, 0.2, 0.2)], p=p_color)]
    ops += [v2.Normalize(mean, std)]
    return v2.Compose(ops)


def evenly_spaced_slots(count: int, per_video: int = 0) -> np.ndarray:
    """The slots (0 .. count - 1) of a video's frames or clips that are scored: all of them, or
    `per_video` evenly spaced ones when it has more."""
    if not per_video or count <= per_video:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, per_video).round().astype(int))


class _CacheDataset(Dataset):
    def __init__(self, table: pd.DataFrame, cache: FaceCropCache, transform=None, pseudo: PseudoFakes | None = None):
        table = cache.usable(table)
        if pseudo is not None and pseudo.only:
            table = table[table["label"] == 0].reset_index(drop=True)
        self.table = table
        self.cache = cache
        self.pseudo, self.epoch = pseudo, 0
        # Plain arrays: a pandas row lookup per item costs more than decoding a small crop.
        self._ids = self.table["video_id"].to_numpy()
        self._labels = self.table["label"].to_numpy()
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

    def _index_items(self, counts: list[int], per_video: int = 0) -> None:
        """Items = (video, slot) pairs: every slot of each video, or `per_video` evenly spaced ones;
        with `pseudo`, followed by a pseudo-fake twin of every real one."""
        slots = [evenly_spaced_slots(c, per_video) for c in counts]
        self._item_video = np.repeat(np.arange(len(self.table)), [len(x) for x in slots])
        self._item_slot = np.concatenate(slots) if slots else np.zeros(0, int)
        self._item_pseudo = np.zeros(len(self._item_video), bool)
        if self.pseudo is not None:
            real = self._labels[self._item_video] == 0
            self._item_video = np.concatenate([self._item_video, self._item_video[real]])
            self._item_slot = np.concatenate([self._item_slot, self._item_slot[real]])
            self._item_pseudo = np.concatenate([self._item_pseudo, np.ones(int(real.sum()), bool)])

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose pseudo-fakes are read (the Trainer sets it before each epoch's loader)."""
        self.epoch = int(epoch)

    @property
    def labels(self) -> np.ndarray:
        """Label of every item (for samplers and class weights): a pseudo-fake is fake."""
        return np.where(self._item_pseudo, 1, self._labels[self._item_video])

    @property
    def pseudo_items(self) -> np.ndarray:
        """Whether each item is a pseudo-fake (all False without `pseudo`)."""
        return self._item_pseudo

    def _item(self, i: int) -> tuple[int, bool, str, int]:
        """(video row, is pseudo-fake, video_id, label) of item i."""
        v, fake = self._item_video[i], bool(self._item_pseudo[i])
        vid = self._ids[v] + PSEUDO_SUFFIX if fake else self._ids[v]
        return v, fake, vid, 1 if fake else int(self._labels[v])

    @property
    def strata(self) -> np.ndarray | None:
        """Stratum of every item from the table's optional `stratum` column (0 = this stage's data,
        1 = replayed data of earlier stages; see BalancedSampler), or None without that column."""
        if "stratum" not in self.table.columns:
            return None
        return self.table["stratum"].to_numpy(dtype=np.int64)[self._item_video]


class FrameDataset(_CacheDataset):
    """One item per (video, sampled frame): `image` (3, H, W), `label`, `video_id`, `frame`.
    `items_per_video` > 0 keeps that many evenly spaced frames of each video (validation)."""

    def __init__(self, table, cache, transform=None, items_per_video: int = 0, pseudo: PseudoFakes | None = None):
        super().__init__(table, cache, transform, pseudo)
        self._index_items([len(self._reader(v).frame_pos) for v in self.table["video_id"]], items_per_video)

    def __len__(self):
        return len(self._item_video)

    def __getitem__(self, i):
        v, fake, vid, label = self._item(i)
        rd = self._reader(self._ids[v])
        pos = rd.frame_pos[self._item_slot[i]]
        crop = rd.crops([pos])[0]
        if fake:
            p = self.pseudo
            crop = self_blend(crop, blend_rng(p.seed, self.epoch, i), p.params, p.margin)[0]
        img = torch.from_numpy(crop).permute(2, 0, 1)  # (3, H, W) uint8
        return {"image": self.transform(img), "label": torch.tensor(label),
                "video_id": vid, "frame": int(rd.frame_indices[pos])}


class ClipDataset(_CacheDataset):
    """One item per (video, clip): `clip` (T, 3, H, W), `audio` (S,), `has_audio`, `label`,
    `video_id`. Videos without audio get zeros and has_audio = False (the model masks them)."""

    def __init__(self, table, cache, transform=None, items_per_video: int = 0, pseudo: PseudoFakes | None = None):
        super().__init__(table, cache, transform, pseudo)
        self._index_items([self._reader(v).num_clips for v in self.table["video_id"]], items_per_video)
        p = cache.params
        self._audio_len = int(round(p.audio_window_s * p.audio_sample_rate))

    def __len__(self):
        return len(self._item_video)

    def __getitem__(self, i):
        v, fake, vid, label = self._item(i)
        rd = self._reader(self._ids[v])
        slot = int(self._item_slot[i])
        frames = rd.clip(slot)
        if fake:
            p = self.pseudo
            frames = self_blend_clip(frames, p.seed, self.epoch, i, p.params, p.margin)
        clip = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8
        wave = rd.audio_window(slot)
        audio = torch.from_numpy(wave) if wave is not None else torch.zeros(self._audio_len)
        return {"clip": self.transform(clip), "audio": audio, "has_audio": torch.tensor(wave is not None),
                "label": torch.tensor(label), "video_id": vid}


class BalancedSampler(Sampler[int]):
    """Draw real and fake items equally often in expectation (weight 1 / class count, with
    replacement): the earlier attempt trained on 1 real : 5 fakes and ended up calling everything
    fake. The draw is a pure function of (seed, epoch), and `skip` resumes an epoch after the items
    already trained on, so a run killed mid-epoch and resumed sees exactly the same batches.
    With `balanced=False` it is a seeded shuffle without replacement.

    `strata` (an int per item) with `shares` (a share per stratum, summing to 1) splits the draws
    between groups of items, e.g. this stage's data and replayed data of earlier stages: stratum s
    gets shares[s] of the draws in expectation, balanced real / fake within it.

    `pseudo` (a bool per item: a pseudo-fake) with `pseudo_share` splits each stratum's fake draws:
    that share go to its pseudo-fakes, the rest to its other fakes (all of them to whichever kind
    the stratum has alone)."""

    def __init__(self, labels, num_samples: int | None = None, seed: int = 0, balanced: bool = True,
                 strata=None, shares=None, pseudo=None, pseudo_share: float | None = None):
        labels = np.asarray(labels)
        counts = np.bincount(labels, minlength=2).astype(np.float64)
        if balanced and (counts == 0).any():
            raise ValueError(f"class-balanced sampling needs both classes; counts real/fake = {counts.tolist()}")
        if strata is not None:
            if not balanced:
                raise ValueError("strata need balanced sampling (they set each stratum's share of the draws)")
            weights = _stratified_weights(labels, np.asarray(strata, dtype=np.int64), shares)
        else:
            weights = 1.0 / counts[labels]
        if pseudo is not None and np.asarray(pseudo).any():
            if not balanced:
                raise ValueError("a share of pseudo-fake draws needs balanced sampling")
            weights = _pseudo_weights(weights, labels, strata, np.asarray(pseudo, bool), pseudo_share)
        self.weights = torch.as_tensor(weights, dtype=torch.double) if balanced else None
        self.n_items, self.num_samples = len(labels), num_samples or len(labels)
        if not balanced:  # without replacement an epoch cannot be longer than the data
            self.num_samples = min(self.num_samples, self.n_items)
        self.seed, self.epoch, self.start = seed, 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Start epoch `epoch`, leaving out its first `skip` draws (already trained on)."""
        self.epoch, self.start = epoch, skip

    def epoch_indices(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is None:
            return torch.randperm(self.n_items, generator=g)[: self.num_samples]
        return torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g)

    def __iter__(self):
        return iter(self.epoch_indices()[self.start:].tolist())

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


def _stratified_weights(labels: np.ndarray, strata: np.ndarray, shares) -> np.ndarray:
    """Per-item draw weights: stratum s holds shares[s] of the total weight, half of it on its
    reals and half on its fakes (all of it on one class when the stratum has only that class)."""
    if len(strata) != len(labels):
        raise ValueError(f"strata has {len(strata)} entries for {len(labels)} items")
    shares = np.asarray(shares, dtype=np.float64)
    if strata.min(initial=0) < 0 or strata.max(initial=0) >= len(shares):
        raise ValueError(f"strata must lie in 0..{len(shares) - 1} (one share each), got {np.unique(strata).tolist()}")
    if (shares < 0).any() or not np.isclose(shares.sum(), 1.0):
        raise ValueError(f"stratum shares must be >= 0 and sum to 1, got {shares.tolist()}")
    present = np.bincount(strata, minlength=len(shares)) > 0
    shares = np.where(present, shares, 0.0)
    shares = shares / shares.sum()  # a share without items goes to the others
    counts = np.zeros((len(shares), 2))
    np.add.at(counts, (strata, labels), 1)
    n_classes = (counts > 0).sum(axis=1)
    return shares[strata] / np.maximum(n_classes[strata], 1) / counts[strata, labels]


def _pseudo_weights(weights: np.ndarray, labels: np.ndarray, strata, pseudo: np.ndarray,
                    share: float | None) -> np.ndarray:
    """`weights` with each stratum's fake weight split: `share` of it over its pseudo-fakes, the rest
    over its other fakes, evenly within each (all of it on one kind when the stratum has only that)."""
    if share is None or not 0 < share <= 1:
        raise ValueError(f"pseudo_share must be in (0, 1], got {share}")
    if len(pseudo) != len(labels):
        raise ValueError(f"pseudo has {len(pseudo)} entries for {len(labels)} items")
    if (labels[pseudo] != 1).any():
        raise ValueError("a pseudo-fake item must be labelled fake (1)")
    strata = np.zeros(len(labels), np.int64) if strata is None else np.asarray(strata, np.int64)
    out = np.asarray(weights, np.float64).copy()
    for s in np.unique(strata):
        fake = (strata == s) & (labels == 1)
        kinds = [(fake & pseudo, share), (fake & ~pseudo, 1.0 - share)]
        present = [(m, w) for m, w in kinds if m.any()]
        total, norm = out[fake].sum(), sum(w for _, w in present)
        if not present or norm == 0:
            continue
        for m, w in present:
            out[m] = total * (w / norm) / m.sum()
    return out
