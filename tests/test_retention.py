"""Retention and the storage budget: best + last N kept, pruning before saving, weights-only fallback,
and never ending without a valid checkpoint."""

import pytest
import torch

from interceptor_lib.training.checkpoint import load_checkpoint, verify_checkpoint
from interceptor_lib.training.retention import CheckpointManager, RetentionPolicy, StorageBudgetError

MiB = 2**20


def state(fill, weights_mib=0.5, optimizer_mib=1.0):
    return {"model": {"w": torch.full((int(weights_mib * MiB) // 4,), float(fill))},
            "optimizer": {"m": torch.zeros(int(optimizer_mib * MiB) // 4)},
            "progress": {"step": fill}, "config": {"name": "ll"}}


def test_keeps_the_best_and_the_last_n(tmp_path):
    m = CheckpointManager(tmp_path, RetentionPolicy(keep_last=2))
    for step, auc in enumerate([0.5, 0.9, 0.6, 0.7, 0.65]):
        m.save(f"step-{step}", state(step, 0.01, 0.01), metric=auc)
    assert [e["name"] for e in m.entries()] == ["step-1", "step-3", "step-4"]
    assert m.best().name == "step-1" and m.latest().name == "step-4"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["step-1", "step-3", "step-4"]


def test_prunes_old_checkpoints_to_fit_the_budget(tmp_path):
    # each full state is 1.5 MiB; the budget holds three of them
    m = CheckpointManager(tmp_path, RetentionPolicy(keep_last=5, storage_budget_gb=5.5 * MiB / 2**30))
    m.save("a", state(1), metric=0.9)   # best: protected
    m.save("b", state(2), metric=0.1)
    assert m.save("c", state(3), metric=0.2).pruned == []
    r = m.save("d", state(4), metric=0.3)
    assert r.kind == "full" and r.pruned == ["b"]  # not the best (a), not the latest (c)
    assert [e["name"] for e in m.entries()] == ["a", "c", "d"]


def test_falls_back_to_weights_only_and_keeps_a_valid_checkpoint(tmp_path):
    m = CheckpointManager(tmp_path, RetentionPolicy(keep_last=1, storage_budget_gb=2.8 * MiB / 2**30))
    m.save("a", state(1), metric=0.5)                       # 1.5 MiB, fits
    r = m.save("b", state(2), metric=0.6)                   # a is protected (best and latest until b exists)
    assert r.kind == "weights"
    back = load_checkpoint(r.path)
    assert set(back) == {"model", "progress", "config"} and back["progress"]["step"] == 2
    assert m.latest().name == "b"
    verify_checkpoint(m.latest())


def test_too_small_a_budget_raises_and_loses_nothing(tmp_path):
    m = CheckpointManager(tmp_path, RetentionPolicy(storage_budget_gb=2.0 * MiB / 2**30))
    m.save("a", state(1), metric=0.5)
    with pytest.raises(StorageBudgetError, match="last valid checkpoint .*a is kept"):
        m.save("b", state(2), metric=0.6)
    assert m.latest().name == "a"
    assert load_checkpoint(tmp_path / "a")["progress"]["step"] == 1


def test_the_budget_counts_everything_under_its_root(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "crops.bin").write_bytes(b"\0" * int(2.5 * MiB))  # other outputs share the budget
    m = CheckpointManager(tmp_path / "runs" / "ckpt", RetentionPolicy(storage_budget_gb=4.0 * MiB / 2**30),
                          budget_root=tmp_path)
    assert m.save("a", state(1)).kind == "weights"  # 1.5 MiB would fit alone, not next to the cache
