"""The training engine: it learns, validates, keeps checkpoints, stops on a budget (or SIGTERM), a
run stopped mid-epoch and resumed ends with exactly the weights of one that never stopped, and
progressive unfreezing grows the trainable set at the configured epochs."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from media import face_frames, write_video

from interceptor_lib.config.schema import PreprocessParams
from interceptor_lib.data.cache import build_cache
from interceptor_lib.data.datasets import FrameDataset, build_transform
from interceptor_lib.data.pseudo_fakes import PSEUDO_SUFFIX, PseudoFakes
from interceptor_lib.data.table import make_table
from interceptor_lib.errors import InterceptorError
from interceptor_lib.models import create_model, trainable_stages
from interceptor_lib.training.checkpoint import load_checkpoint
from interceptor_lib.training.device import autocast_dtype
from interceptor_lib.training.engine import Trainer
from interceptor_lib.training.train_config import RESUMABLE_CHANGES, TrainConfig

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared CPU, OpenMP threads contending with other processes make
    these tiny models ~10x slower. The subprocesses below use one thread too (same float results)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine")
    rows = []
    for i in range(6):
        label = int(i >= 2)  # 2 reals, 4 fakes; fakes are brighter (something learnable)
        frames = [np.clip(f.astype(int) + 40 * label, 0, 255).astype(np.uint8) for f in face_frames(12, seed=i)]
        rows.append({"video_id": f"dfdc/v{i}", "path": str(write_video(d / f"v{i}.mp4", frames)), "label": label,
                     "split": "val" if i in (0, 5) else "train", "dataset": "dfdc", "method": "dfdc" if label else "real",
                     "group": f"g{i}"})
    table = make_table(rows)
    params = PreprocessParams(frames_per_video=4, clips_per_video=0, face_size=32, workers=1)
    cache = build_cache(table, params, d / "cache", progress=False)
    train = FrameDataset(table[table.split == "train"], cache, build_transform(train=True))
    val = FrameDataset(table[table.split == "val"], cache, build_transform(train=False))
    return train, val


def model(seed=0):
    torch.manual_seed(seed)
    return create_model("ll", backbone="test_efficientnet", pretrained=False)


CFG = TrainConfig(epochs=2, lr=1e-3, batch_size=4, samples_per_epoch=12, loss="focal", keep_last=3)


class ToyFrames(torch.utils.data.Dataset):
    """In-memory stand-in for FrameDataset (no video, no cache; cheap to build in a subprocess):
    `videos` videos of `frames` tiny frames, fakes (two videos in three) brighter. Each item gets light
    noise from the global RNG, like an augmentation, so exact-resume tests also cover the saved RNG
    state; items carry their `index` so tests can see who trained on what."""

    def __init__(self, videos: int = 6, frames: int = 4, size: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.video = torch.arange(videos * frames) // frames
        self._labels = (self.video % 3 != 0).long()
        self.images = torch.rand(len(self.video), 3, size, size, generator=g) - 0.5 \
            + 0.8 * self._labels[:, None, None, None]

    @property
    def labels(self) -> np.ndarray:
        return self._labels.numpy()

    def __len__(self):
        return len(self.video)

    def __getitem__(self, i):
        return {"image": self.images[i] + 0.05 * torch.randn(self.images.shape[1:]), "label": self._labels[i],
                "video_id": f"toy/v{int(self.video[i])}", "index": torch.tensor(i)}


def toy_data():
    return ToyFrames(6, seed=0), ToyFrames(3, seed=1)


TOY_CFG = TrainConfig(epochs=2, lr=1e-3, batch_size=4, samples_per_epoch=16, loss="focal", keep_last=3)


class StopAfter:
    """A budget that asks to stop after `n` calls (one call per training step)."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def should_stop(self):
        self.calls += 1
        return "test stop" if self.calls == self.n else None


def test_fit_trains_validates_and_keeps_checkpoints(tmp_path, data):
    train, val = data
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    res = Trainer(m, train, val, CFG, tmp_path, progress=False).fit()
    assert res.status == "done" and len(res.history) == 2
    assert {"train_loss", "frame_auc", "video_auc", "video_tnr", "video_tpr"} <= set(res.history.columns)
    changed = [k for k, v in m.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed  # it trained
    state = load_checkpoint(res.last)
    assert state["progress"] == {"epoch": 2, "step_in_epoch": 0, "global_step": 6}
    assert state["config"]["model_name"] == "ll" and state["config"]["train"]["loss"] == "focal"
    csv = pd.read_csv(tmp_path / "metrics.csv")
    assert csv["epoch"].tolist() == [1, 2] and "video_auc" in csv


def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path, data):
    train, val = data
    full = model()
    Trainer(full, train, val, CFG, tmp_path / "full", progress=False).fit()

    first = Trainer(model(), train, val, CFG, tmp_path / "cut", budget=StopAfter(2), progress=False).fit()
    assert first.status == "stopped" and first.reason == "test stop"
    assert load_checkpoint(first.last)["progress"]["step_in_epoch"] == 2  # mid-epoch (3 steps per epoch)

    resumed_model = model(seed=123)  # a different init: everything must come from the checkpoint
    second = Trainer(resumed_model, train, val, CFG, tmp_path / "cut", progress=False).fit()
    assert second.status == "done"
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k


@pytest.mark.parametrize("mode", ["only", 0.5])
def test_a_run_on_pseudo_fakes_stopped_mid_epoch_resumes_bitwise_equal(tmp_path, data, mode):
    train, val = data
    pseudo = PseudoFakes(mode, seed=0, margin=train.cache.params.margin)
    sets = (FrameDataset(train.table, train.cache, build_transform(train=True), pseudo=pseudo),
            FrameDataset(val.table, val.cache, build_transform(train=False), pseudo=pseudo if mode == "only" else None))
    cfg = dataclasses.replace(CFG, pseudo_fakes=mode)
    seen = []

    class Recording(Trainer):  # the pseudo-fakes each step trains on
        def _train_step(self, batch):
            seen.append([v for v in batch["video_id"] if v.endswith(PSEUDO_SUFFIX)])
            return super()._train_step(batch)

    full = model()
    Recording(full, *sets, cfg, tmp_path / "full", progress=False).fit()
    drawn = [v for step in seen for v in step]
    assert drawn  # the draws held pseudo-fakes (a quarter or half of them)
    first = Trainer(model(), *sets, cfg, tmp_path / "cut", budget=StopAfter(5), progress=False).fit()
    assert first.status == "stopped" and load_checkpoint(first.last)["progress"]["step_in_epoch"] == 1  # in epoch 2
    resumed = model(seed=123)
    rebuilt = (FrameDataset(train.table, train.cache, build_transform(train=True), pseudo=pseudo),
               sets[1])  # a new process builds its datasets afresh, at epoch 0: the Trainer sets the epoch
    assert Trainer(resumed, *rebuilt, cfg, tmp_path / "cut", progress=False).fit().status == "done"
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    # a resume cannot change where the fakes come from
    Trainer(model(), *sets, cfg, tmp_path / "cut2", budget=StopAfter(1), progress=False).fit()
    with pytest.raises(InterceptorError, match="pseudo_fakes"):
        Trainer(model(), *sets, dataclasses.replace(cfg, pseudo_fakes=0.25), tmp_path / "cut2", progress=False).fit()


def test_a_run_stopped_mid_way_does_not_resume_with_other_training_settings(tmp_path, data):
    train, val = data
    first = Trainer(model(), train, val, CFG, tmp_path, budget=StopAfter(2), progress=False).fit()
    assert first.status == "stopped"
    with pytest.raises(InterceptorError, match="epochs 2 -> 5, lr 0.001 -> 0.5"):
        Trainer(model(), train, val, dataclasses.replace(CFG, lr=0.5, epochs=5), tmp_path, progress=False).fit()
    assert load_checkpoint(first.last)["progress"]["step_in_epoch"] == 2   # nothing lost: still resumable
    # where it runs and what it keeps may change: it resumes and finishes
    moved = dataclasses.replace(CFG, keep_last=5, num_workers=0, checkpoint_chunk_mb=1)
    assert Trainer(model(), train, val, moved, tmp_path, progress=False).fit().status == "done"


def test_a_resume_may_change_the_run_only_settings():
    """layout.RUN_ONLY_TRAIN_KEYS (what a finished stage's done.json does not record) is the one list
    of the train.* settings that may change between runs; the TrainConfig fields among them, and
    those no params key sets, may change on a resume."""
    assert set(RESUMABLE_CHANGES) == {"num_workers", "keep_last", "storage_budget_gb", "checkpoint_chunk_mb",
                                      "storage_root", "channels_last", "find_unused_parameters"}


def test_the_same_config_trains_alike_whatever_the_callers_rng_state(tmp_path):
    """The augmentations draw from the global RNG: the trainer seeds it from cfg.seed, so two runs
    (two processes, two chains) end alike even when the caller's RNG stream differs."""
    train, val = toy_data()
    init = model(seed=0).state_dict()
    results = []
    for caller_seed in (1, 2):
        m = model(seed=0)
        m.load_state_dict(init)
        torch.manual_seed(caller_seed)
        Trainer(m, train, val, TOY_CFG, tmp_path / f"run{caller_seed}", progress=False).fit()
        results.append(m.state_dict())
    assert all(torch.equal(v, results[1][k]) for k, v in results[0].items())
    other = model(seed=0)
    other.load_state_dict(init)
    Trainer(other, train, val, dataclasses.replace(TOY_CFG, seed=1), tmp_path / "seed1", progress=False).fit()
    assert any(not torch.equal(v, other.state_dict()[k]) for k, v in results[0].items() if v.is_floating_point())


UNFREEZE = dataclasses.replace(CFG, unfreeze_schedule={0: 0, 1: 1})


def test_progressive_unfreezing_grows_the_trainable_set_and_frozen_weights_stay(tmp_path, data):
    train, val = data
    seen = []

    class Spy(Trainer):
        def _train_step(self, batch):
            frozen = {n: p.detach().clone() for n, p in self.model.named_parameters() if not p.requires_grad}
            loss = super()._train_step(batch)
            seen.append((self.epoch, sum(p.numel() for p in self.model.parameters() if p.requires_grad)))
            moved = [n for n, p in self.model.named_parameters() if n in frozen and not torch.equal(p, frozen[n])]
            assert not moved, f"frozen parameters changed in epoch {self.epoch}: {moved[:3]}"
            assert all(p.grad is None for n, p in self.model.named_parameters() if n in frozen)
            return loss

    m = model()
    assert trainable_stages(m) == 2  # the model's own setting, replaced by the schedule
    stages = m.backbone.stages
    before = [[p.detach().clone() for p in s.parameters()] for s in (stages[-1], stages[-2])]
    Spy(m, train, val, UNFREEZE, tmp_path, progress=False).fit()
    per_epoch = {e: {n for ee, n in seen if ee == e} for e in (0, 1)}
    assert len(per_epoch[0]) == len(per_epoch[1]) == 1  # constant within an epoch
    assert max(per_epoch[0]) < min(per_epoch[1])
    assert trainable_stages(m) == 1
    # the last stage, unfrozen in epoch 1, trained with the optimizer built at the start; the one before never did
    assert any(not torch.equal(p, b) for p, b in zip(stages[-1].parameters(), before[0]))
    assert all(torch.equal(p, b) for p, b in zip(stages[-2].parameters(), before[1]))


def test_a_bad_unfreeze_schedule_is_refused_up_front(tmp_path, data):
    train, val = data
    with pytest.raises(ValueError, match="stages in \\[0, "):
        Trainer(model(), train, val, dataclasses.replace(CFG, unfreeze_schedule={0: 0, 1: 99}), tmp_path)
    with pytest.raises(ValueError, match="epoch 0"):
        Trainer(model(), train, val, dataclasses.replace(CFG, unfreeze_schedule={1: 1}), tmp_path)


def test_resume_with_unfreezing_is_exact(tmp_path, data):
    train, val = data
    full = model()
    Trainer(full, train, val, UNFREEZE, tmp_path / "full", progress=False).fit()
    first = Trainer(model(), train, val, UNFREEZE, tmp_path / "cut", budget=StopAfter(5), progress=False).fit()
    assert first.status == "stopped"
    assert load_checkpoint(first.last)["progress"] == {"epoch": 1, "step_in_epoch": 1, "global_step": 4}
    resumed = model(seed=123)
    Trainer(resumed, train, val, UNFREEZE, tmp_path / "cut", progress=False).fit()
    assert trainable_stages(resumed) == 1
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


SIGTERM_RUN = r"""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from test_engine import TOY_CFG, model, toy_data
from interceptor_lib.training.budget import RunBudget
from interceptor_lib.training.engine import Trainer

run_dir, ready = Path(sys.argv[1]), Path(sys.argv[2])

class WaitForSignal(Trainer):
    # Blocks after its second step until the signal arrives, so that SIGTERM lands mid-epoch.
    def _train_step(self, batch):
        loss = super()._train_step(batch)
        if self.global_step == 1:
            ready.write_text("ready")
            t = time.time()
            while not self.budget.signal_received and time.time() - t < 120:
                time.sleep(0.01)
        return loss

with RunBudget(None) as budget:
    res = WaitForSignal(model(), *toy_data(), TOY_CFG, run_dir, budget=budget, progress=False).fit()
print(json.dumps({"status": res.status, "reason": res.reason, "last": str(res.last)}))
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_mid_epoch_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    run_dir, ready = tmp_path / "cut", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_RUN, str(run_dir), str(ready)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t = time.time()
        while not ready.exists() and proc.poll() is None and time.time() - t < 120:
            time.sleep(0.05)
        assert ready.exists(), f"the training subprocess never reached its second step: {proc.communicate()[1]}"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err  # a clean exit, not a death by signal
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "stopped" and result["reason"] == "signal SIGTERM"
    assert load_checkpoint(result["last"])["progress"] == {"epoch": 0, "step_in_epoch": 2, "global_step": 2}

    resumed = model(seed=123)
    assert Trainer(resumed, *toy_data(), TOY_CFG, run_dir, progress=False).fit().status == "done"
    full = model()
    Trainer(full, *toy_data(), TOY_CFG, tmp_path / "full", progress=False).fit()
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


@pytest.mark.parametrize("loss", ["weighted_ce", "focal"])
def test_class_weights_are_not_applied_on_top_of_balanced_draws(tmp_path, loss):
    """The toy set holds 1 real : 2 fakes. Balanced draws make the batches 1 : 1 in expectation, so the
    class-weighted losses must weigh both classes alike; inverse-frequency weights on top of them
    counted a real twice as much as a fake (4-6 times on the real datasets)."""
    train, val = toy_data()
    assert np.bincount(train.labels).tolist() == [8, 16]
    t = Trainer(model(), train, val, dataclasses.replace(TOY_CFG, loss=loss), tmp_path, progress=False)
    w = t.loss_fn.weight if loss == "weighted_ce" else t.loss_fn.alpha
    assert w.tolist() == pytest.approx([1.0, 1.0])


def test_natural_draws_get_inverse_frequency_weights(tmp_path):
    """With balanced draws off (train.stages.<name>.balanced: false) the loss alone counters the
    imbalance: 1 real : 2 fakes gives weights 1.5 and 0.75."""
    train, val = toy_data()
    cfg = dataclasses.replace(TOY_CFG, loss="weighted_ce", balanced_sampling=False)
    t = Trainer(model(), train, val, cfg, tmp_path, progress=False)
    assert t.loss_fn.weight.tolist() == pytest.approx([1.5, 0.75])
    assert t.sampler.base.weights is None


def test_amp_auto_uses_fp16_where_bf16_is_only_emulated(monkeypatch):
    """A T4 (7.5) reports bf16 as supported (emulated, slow): "auto" must pick fp16 there, bf16 from 8.0;
    an explicit "bf16" is kept, with a warning, below 8.0."""

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 5))
    assert autocast_dtype("auto", cuda) is torch.float16
    assert autocast_dtype("fp16", cuda) is torch.float16
    with pytest.warns(UserWarning, match="emulated"):
        assert autocast_dtype("bf16", cuda) is torch.bfloat16
    assert autocast_dtype("off", cuda) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (8, 0))
    assert autocast_dtype("auto", cuda) is torch.bfloat16
    assert autocast_dtype("fp16", cuda) is torch.float16
    assert autocast_dtype("off", cuda) is None
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) is None
