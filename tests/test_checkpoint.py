"""Chunked safetensors checkpoints: bitwise round trip, checksums naming the bad chunk, atomic
writes, no unpickling of untrusted files."""

import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from interceptor_lib.training import checkpoint as ck
from interceptor_lib.training.checkpoint import (CheckpointError, checkpoint_bytes, export_weights,
                                                 load_checkpoint, load_pickled, save_checkpoint,
                                                 verify_checkpoint)


def full_state(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.BatchNorm1d(128), torch.nn.Linear(128, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
    model(torch.randn(8, 64)).sum().backward()
    opt.step()
    sched.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "progress": {"stage": 2, "chunk": None, "epoch": 1, "step": 17}, "config": {"lr": 1e-4, "name": "ll"}}


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def test_round_trip_is_bitwise_and_restores_rng_and_optimizer(tmp_path):
    state = full_state()
    save_checkpoint(tmp_path / "c", state, max_chunk_mb=0.02)
    back = load_checkpoint(tmp_path / "c")
    assert_same(state, back)
    np.random.set_state(back["rng"]["numpy"])
    random.setstate(back["rng"]["python"])
    torch.set_rng_state(back["rng"]["torch"])
    opt = torch.optim.AdamW(torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.BatchNorm1d(128),
                                                torch.nn.Linear(128, 2)).parameters(), lr=1e-3)
    opt.load_state_dict(back["optimizer"])  # int keys of the optimizer state survive JSON
    assert opt.state_dict()["state"][0]["exp_avg"].shape == (128, 64)


def test_chunks_respect_the_size_limit_and_are_listed_with_checksums(tmp_path):
    state = {f"w{i}": torch.randn(3, 2**15) for i in range(4)}  # 4 x 384 KiB
    save_checkpoint(tmp_path / "c", state, max_chunk_mb=0.5)
    index = verify_checkpoint(tmp_path / "c")
    assert len(index["files"]) == 4  # two tensors would exceed 0.5 MiB: one per chunk
    assert all(info["bytes"] < 0.5 * 2**20 for info in index["files"].values())
    assert all(len(info["sha256"]) == 64 for info in index["files"].values())


@pytest.mark.parametrize("damage", ["flip", "header", "truncate", "delete"])
def test_a_damaged_chunk_is_named(tmp_path, damage):
    save_checkpoint(tmp_path / "c", {"a": torch.randn(2**16), "b": torch.randn(2**16)}, max_chunk_mb=0.2)
    chunk = sorted((tmp_path / "c").glob("tensors-*.safetensors"))[1]
    if damage == "flip":
        data = bytearray(chunk.read_bytes())
        data[-5] ^= 0xFF
        chunk.write_bytes(bytes(data))
    elif damage == "header":  # the parser fails while the chunks load: the checksum still names it
        data = bytearray(chunk.read_bytes())
        data[10:14] = b"\x00{\x00}"
        chunk.write_bytes(bytes(data))
    elif damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:100])
    else:
        chunk.unlink()
    with pytest.raises(CheckpointError, match=chunk.name):
        load_checkpoint(tmp_path / "c")
    r = subprocess.run([sys.executable, "-m", "interceptor_lib", "checkpoint", "verify", str(tmp_path / "c")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and chunk.name in r.stderr and "Traceback" not in r.stderr


def test_verify_cli_accepts_a_good_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "c", {"a": torch.randn(10)})
    r = subprocess.run([sys.executable, "-m", "interceptor_lib", "checkpoint", "verify", str(tmp_path / "c")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout


def test_a_crash_mid_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c", {"a": torch.zeros(2**16), "b": torch.zeros(2**16)}, max_chunk_mb=0.2)
    calls = []
    real = ck.save_file

    def crash_on_second(tensors, filename):
        calls.append(filename)
        if len(calls) == 2:
            raise KeyboardInterrupt("session killed")  # what a SIGINT looks like mid-save
        return real(tensors, filename)

    monkeypatch.setattr(ck, "save_file", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "c", {"a": torch.ones(2**16), "b": torch.ones(2**16)}, max_chunk_mb=0.2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary folder left behind
    assert torch.equal(load_checkpoint(tmp_path / "c")["a"], torch.zeros(2**16))


def test_an_interrupted_save_without_index_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c", {"a": torch.zeros(3)})
    (tmp_path / "c" / "checkpoint.json").unlink()
    with pytest.raises(CheckpointError, match="checkpoint.json is missing"):
        verify_checkpoint(tmp_path / "c")


def test_fp16_export_halves_the_weights(tmp_path):
    sd = {"w": torch.randn(256, 256), "steps": torch.tensor(5)}
    save_checkpoint(tmp_path / "fp32", {"model": sd})
    export_weights(sd, tmp_path / "fp16")
    back = load_checkpoint(tmp_path / "fp16")["model"]
    assert back["w"].dtype == torch.float16 and back["steps"].dtype == torch.int64
    assert checkpoint_bytes(tmp_path / "fp16") < 0.55 * checkpoint_bytes(tmp_path / "fp32")


class Payload:
    """Stands for any pickled object: unpickling it would import and run code."""


def test_pickled_checkpoints_are_refused_unless_trusted(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pt")
    assert torch.equal(load_pickled(tmp_path / "plain.pt")["w"], torch.ones(2))
    torch.save({"obj": Payload()}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="trusted=True"):
        load_pickled(tmp_path / "code.pt")
    assert isinstance(load_pickled(tmp_path / "code.pt", trusted=True)["obj"], Payload)
