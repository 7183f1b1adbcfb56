"""The training engine: it learns, validates, keeps checkpoints, stops on a budget, and a run
stopped mid-epoch and resumed ends with exactly the weights of one that never stopped."""

import numpy as np
import pandas as pd
import pytest
import torch
from media import face_frames, write_video

from interceptor_lib.data.cache import PreprocessParams, build_cache
from interceptor_lib.data.datasets import FrameDataset, build_transform
from interceptor_lib.data.table import make_table
from interceptor_lib.models import create_model
from interceptor_lib.training.checkpoint import load_checkpoint
from interceptor_lib.training.engine import Trainer, TrainConfig


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
