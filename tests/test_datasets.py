"""Training datasets over the cache: batch contract, augmentation, balanced sampling, pseudo-fakes."""

import numpy as np
import pytest
import torch
from media import face_frames, tone, write_video
from torch.utils.data import DataLoader

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.cache import build_cache
from interceptor_lib.data.datasets import BalancedSampler, ClipDataset, FrameDataset, build_transform
from interceptor_lib.data.pseudo_fakes import PSEUDO_SUFFIX, PseudoFakes
from interceptor_lib.data.table import make_table


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    rows = []
    for i, (label, audio) in enumerate([(0, True), (1, True), (1, False)]):
        frames = [np.clip(f.astype(int) + 10 * i, 0, 255).astype(np.uint8) for f in face_frames(30, seed=i)]
        path = write_video(d / f"v{i}.mp4", frames, audio=tone(1.2) if audio else None)
        rows.append({"video_id": f"dfdc/v{i}", "path": str(path), "label": label, "split": "train",
                     "dataset": "dfdc", "method": "dfdc" if label else "real", "group": f"g{i}", "chunk": 0,
                     "has_audio": True, "original_id": "", "member": ""})
    params = PreprocessParams(frames_per_video=5, clips_per_video=2, clip_len=4, face_size=48,
                              audio_window_s=0.25, workers=1, max_failure_rate=0.5)
    table = make_table(rows)
    return table, build_cache(table, params, d / "cache", progress=False)


def test_frame_batches_follow_the_contract(cached):
    table, cache = cached
    ds = FrameDataset(table, cache)
    assert len(ds) == 3 * 5
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch["image"].shape == (4, 3, 48, 48) and batch["image"].dtype == torch.float32
    assert batch["label"].tolist() == [0, 0, 0, 0] and batch["video_id"] == ["dfdc/v0"] * 4
    # ImageNet-normalised: roughly zero-centred, not in [0, 1] or [0, 255]
    assert batch["image"].min() < 0 < batch["image"].max() < 5
    assert ds.labels.tolist() == [0] * 5 + [1] * 10


def test_clip_batches_carry_audio_and_its_mask(cached):
    table, cache = cached
    ds = ClipDataset(table, cache)
    batch = next(iter(DataLoader(ds, batch_size=6, shuffle=False)))
    assert batch["clip"].shape == (6, 4, 3, 48, 48)
    assert batch["audio"].shape == (6, 4000)
    assert batch["has_audio"].tolist() == [True, True, True, True, False, False]
    assert batch["audio"][4:].abs().max() == 0 and batch["audio"][:4].abs().max() > 0.05


def test_eval_transform_is_deterministic_and_train_transform_augments(cached):
    table, cache = cached
    raw = torch.from_numpy(cache.reader("dfdc/v0").frames()[0]).permute(2, 0, 1)
    ev = build_transform(train=False)
    assert torch.equal(ev(raw), ev(raw))
    torch.manual_seed(0)
    tr = build_transform(train=True, p_color=1.0)
    assert not torch.allclose(tr(raw), ev(raw))


def test_clip_augmentation_uses_one_draw_for_all_frames(cached):
    table, cache = cached
    clip = torch.from_numpy(cache.reader("dfdc/v0").clip(0)).permute(0, 3, 1, 2)
    ev = build_transform(train=False)
    flips = 0
    for seed in range(8):
        torch.manual_seed(seed)
        out = build_transform(train=True, p_color=0, p_blur=0, p_jpeg=0, p_downscale=0)(clip)
        flipped = [torch.allclose(out[t], ev(clip[t]).flip(-1)) for t in range(len(clip))]
        same = [torch.allclose(out[t], ev(clip[t])) for t in range(len(clip))]
        assert all(flipped) or all(same)  # never a clip with some frames flipped
        flips += all(flipped)
    assert 0 < flips < 8


def test_balanced_sampler_draws_classes_equally():
    labels = np.array([0] * 100 + [1] * 500)  # 1 real : 5 fakes, like FF++
    drawn = labels[list(BalancedSampler(labels, num_samples=20000, seed=0))]
    assert abs(drawn.mean() - 0.5) < 0.02
    with pytest.raises(ValueError, match="both classes"):
        BalancedSampler(np.ones(10, int))


def test_stratified_sampler_gives_each_stratum_its_share_balanced_within():
    # this stage: 20 reals, 100 fakes; replayed earlier data: 5 reals, 300 fakes
    labels = np.array([0] * 20 + [1] * 100 + [0] * 5 + [1] * 300)
    strata = np.array([0] * 120 + [1] * 305)
    idx = np.array(list(BalancedSampler(labels, num_samples=40000, seed=1, strata=strata, shares=[0.7, 0.3])))
    s, y = strata[idx], labels[idx]
    assert abs((s == 1).mean() - 0.3) < 0.01
    for k in (0, 1):
        assert abs(y[s == k].mean() - 0.5) < 0.02
    assert len(np.unique(idx[(s == 1) & (y == 0)])) == 5  # every replayed real is drawn
    # a stratum with one class: its whole share on that class; an empty stratum's share goes to the rest
    only_fake = BalancedSampler(labels[:120].tolist() + [1] * 50, num_samples=20000, seed=0,
                                strata=[0] * 120 + [1] * 50, shares=[0.5, 0.5])
    drawn = np.array(list(only_fake))
    assert abs((drawn >= 120).mean() - 0.5) < 0.02
    alone = np.array(list(BalancedSampler(labels[:120], num_samples=1000, strata=np.zeros(120, int), shares=[0.6, 0.4])))
    assert alone.max() < 120 and len(alone) == 1000
    with pytest.raises(ValueError, match="sum to 1"):
        BalancedSampler(labels, strata=strata, shares=[0.5, 0.6])
    with pytest.raises(ValueError, match="entries"):
        BalancedSampler(labels, strata=strata[:10], shares=[0.5, 0.5])


def test_dataset_strata_follow_the_table_rows(cached):
    table, cache = cached
    assert FrameDataset(table, cache).strata is None
    ds = FrameDataset(table.assign(stratum=np.arange(len(table)) % 2), cache)
    per_video = dict(zip(ds.table["video_id"], ds.table["stratum"]))
    assert [per_video[ds._ids[v]] for v in ds._item_video] == ds.strata.tolist()


def test_balanced_sampler_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    labels = np.array([0] * 10 + [1] * 40)
    s = BalancedSampler(labels, seed=3)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, skip=17)
    assert list(s) == full[17:] and len(s) == len(full) - 17
    other = BalancedSampler(labels, seed=3)
    other.set_epoch(1)
    assert list(other) != full
    plain = BalancedSampler(labels, seed=3, balanced=False)
    assert sorted(plain) == list(range(50))  # a shuffle without replacement


# -- self-blended pseudo-fakes in the training datasets ----------------------------------------------

def test_pseudo_fakes_only_drops_the_fakes_and_gives_every_real_item_a_blended_twin(cached):
    table, cache = cached
    plain = FrameDataset(table, cache)
    ds = FrameDataset(table, cache, pseudo=PseudoFakes("only", seed=0, margin=cache.params.margin))
    real_items = int((plain.labels == 0).sum())
    assert len(ds) == 2 * real_items  # the reals and their twins; not one of the dataset's fakes
    assert ds.labels.tolist() == [0] * real_items + [1] * real_items
    assert ds.pseudo_items.tolist() == [False] * real_items + [True] * real_items
    real, twin = ds[0], ds[real_items]
    assert real["label"] == 0 and twin["label"] == 1
    assert twin["video_id"] == real["video_id"] + PSEUDO_SUFFIX  # never grouped with the real video
    assert twin["frame"] == real["frame"] and not torch.equal(real["image"], twin["image"])
    # (seed, epoch, index) alone: another dataset object gives the same bytes, another epoch others
    again = FrameDataset(table, cache, pseudo=PseudoFakes("only", seed=0, margin=cache.params.margin))
    assert torch.equal(again[real_items]["image"], twin["image"])
    again.set_epoch(1)
    assert not torch.equal(again[real_items]["image"], twin["image"])
    other_seed = FrameDataset(table, cache, pseudo=PseudoFakes("only", seed=1, margin=cache.params.margin))
    assert not torch.equal(other_seed[real_items]["image"], twin["image"])


def test_pseudo_fakes_mixed_keep_the_fakes_and_clips_are_blended_alike_in_every_frame(cached):
    table, cache = cached
    ds = ClipDataset(table, cache, pseudo=PseudoFakes(0.5, seed=0, margin=cache.params.margin))
    plain = ClipDataset(table, cache)
    n = len(plain)
    assert len(ds) == n + int((plain.labels == 0).sum()) and ds.labels[:n].tolist() == plain.labels.tolist()
    twin, real = ds[n], plain[0]
    assert twin["label"] == 1 and torch.equal(twin["audio"], real["audio"])  # the sound is the real one
    diff = (twin["clip"] - real["clip"]).abs().flatten(1).amax(1)
    assert (diff > 0).all()  # every frame blended
    with pytest.raises(ValueError, match="only"):
        PseudoFakes("off")


def test_sampler_gives_pseudo_fakes_their_share_of_the_fake_draws():
    # 20 reals, 60 dataset fakes, 20 pseudo-fake twins; a replayed stratum without pseudo-fakes
    labels = np.array([0] * 20 + [1] * 60 + [1] * 20 + [0] * 10 + [1] * 30)
    pseudo = np.array([False] * 80 + [True] * 20 + [False] * 40)
    strata = np.array([0] * 100 + [1] * 40)
    idx = np.array(list(BalancedSampler(labels, num_samples=60000, seed=0, strata=strata, shares=[0.7, 0.3],
                                        pseudo=pseudo, pseudo_share=0.25)))
    s, y, p = strata[idx], labels[idx], pseudo[idx]
    assert abs((s == 1).mean() - 0.3) < 0.01 and abs(y[s == 0].mean() - 0.5) < 0.01
    assert abs(p[(s == 0) & (y == 1)].mean() - 0.25) < 0.01  # a quarter of this stage's fake draws
    assert not p[s == 1].any()
    assert abs(y[s == 1].mean() - 0.5) < 0.02  # the replayed stratum is balanced as before
    with pytest.raises(ValueError, match="labelled fake"):
        BalancedSampler(np.array([0, 1, 0, 1]), pseudo=np.array([True, False, False, True]), pseudo_share=0.5)
    with pytest.raises(ValueError, match="pseudo_share"):
        BalancedSampler(np.array([0, 1, 1]), pseudo=np.array([False, False, True]), pseudo_share=1.5)
