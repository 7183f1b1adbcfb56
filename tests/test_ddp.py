"""Data-parallel training on CPU (gloo, 2 processes): the ranks keep identical weights step by step,
train on disjoint shares of the same seeded epoch order, only rank 0 writes files, the checkpoint
loads into a plain model, a stop requested on one rank stops both at the same step, and the DDP run
resumed from there ends exactly where the uninterrupted one does."""

import dataclasses
import hashlib
import json
import os
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from test_engine import TOY_CFG, StopAfter, model, toy_data

from interceptor_lib.data.datasets import BalancedSampler
from interceptor_lib.training import distributed
from interceptor_lib.training.checkpoint import load_checkpoint
from interceptor_lib.training.engine import Trainer

WORLD = 2
CFG = dataclasses.replace(TOY_CFG, samples_per_epoch=24)  # 12 draws per rank: 3 steps of 4 per epoch


def _hash(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def params_hash(m) -> str:
    return _hash(p for _, p in m.named_parameters())


def state_hash(m) -> str:
    return _hash(v for v in m.state_dict().values())


class Recorder(Trainer):
    """Logs, after every step, the hash of this rank's parameters and the items it trained on."""

    log: list

    def _train_step(self, batch):
        loss = super()._train_step(batch)
        self.log.append({"epoch": self.epoch, "step": self.global_step + 1, "params": params_hash(self.model),
                         "index": batch["index"].tolist()})
        return loss


def _watch_writes(roots: list[Path], log: list) -> None:
    """Record every file-system write this process makes under `roots` (Python's audit events)."""
    roots = [str(r) for r in roots]
    flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def hook(event, args):
        if event == "open":
            path, mode, fl = args
            write = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and fl & flags)
        else:
            path, write = args[0] if args else None, event in ("os.mkdir", "os.rename", "os.remove", "shutil.rmtree")
        if write and isinstance(path, (str, os.PathLike)) and str(path).startswith(tuple(roots)):
            log.append(f"{event} {path}")

    sys.addaudithook(hook)


def _worker(rank: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    root = Path(root)
    writes: list[str] = []
    if rank > 0:
        _watch_writes([root / "full", root / "cut"], writes)
    assert distributed.init_from_env("cpu") == "cpu" and distributed.world_size() == WORLD
    try:
        out = {"writes": writes}
        full = model()
        t = Recorder(full, *toy_data(), CFG, root / "full", progress=False)
        t.log = []
        res = t.fit()
        out["full"] = {"status": res.status, "log": t.log, "last": str(res.last), "best": str(res.best),
                       "state": state_hash(full), "history": len(res.history)}
        # rank 1 alone asks to stop after its 2nd step; rank 0's budget never does
        cut = Trainer(model(), *toy_data(), CFG, root / "cut", budget=StopAfter(2) if rank == 1 else None,
                      progress=False).fit()
        out["cut"] = {"status": cut.status, "reason": cut.reason, "last": str(cut.last)}
        resumed = model(seed=123 + rank)  # a different init on each rank: everything must come from the checkpoint
        res = Trainer(resumed, *toy_data(), CFG, root / "cut", progress=False).fit()
        out["resumed"] = {"status": res.status, "state": state_hash(resumed)}
        (root / f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(root)), nprocs=WORLD, join=True)
    return root, [json.loads((root / f"rank{r}.json").read_text()) for r in range(WORLD)]


def test_ranks_keep_identical_weights_and_train_on_disjoint_shares(ddp_run):
    _, (r0, r1) = ddp_run
    log0, log1 = r0["full"]["log"], r1["full"]["log"]
    assert [e["step"] for e in log0] == [e["step"] for e in log1] == list(range(1, 7))  # 2 epochs x 3 steps
    for a, b in zip(log0, log1):
        assert a["params"] == b["params"], f"weights differ after step {a['step']}"
    assert len({e["params"] for e in log0}) == 6  # and they did train
    assert r0["full"]["state"] == r1["full"]["state"]  # buffers too, once the epoch ends
    train, _ = toy_data()
    for epoch in (0, 1):
        base = BalancedSampler(train.labels, 24, seed=CFG.seed)
        base.set_epoch(epoch)
        order = base.epoch_indices().tolist()
        seen = [sum((e["index"] for e in log if e["epoch"] == epoch), []) for log in (log0, log1)]
        assert seen == [order[0::2], order[1::2]]  # rank-strided shares of the one seeded draw


def test_only_rank_0_writes_and_the_checkpoint_loads_into_a_plain_model(ddp_run):
    root, (r0, r1) = ddp_run
    assert r1["writes"] == []  # rank 1 made no file-system write under the run folders
    assert r0["full"]["last"] == r1["full"]["last"] and r0["full"]["best"] == r1["full"]["best"]
    assert len(pd.read_csv(root / "full" / "metrics.csv")) == 2 == r1["full"]["history"]
    state = load_checkpoint(r0["full"]["last"])
    assert not any(k.startswith("module.") for k in state["model"])
    plain = model(seed=7)
    plain.load_state_dict(state["model"])  # strict: same keys as an unwrapped model
    assert state_hash(plain) == r0["full"]["state"]
    assert state["config"]["world_size"] == 2 and len(state["rng_ranks"]) == 2


def test_a_stop_on_one_rank_stops_both_and_the_resumed_run_is_exact(ddp_run):
    _, (r0, r1) = ddp_run
    assert r0["cut"]["status"] == r1["cut"]["status"] == "stopped"
    assert r1["cut"]["reason"] == "test stop" and r0["cut"]["reason"] == "test stop (rank 1)"
    assert r0["cut"]["last"] == r1["cut"]["last"]
    assert load_checkpoint(r0["cut"]["last"])["progress"] == {"epoch": 0, "step_in_epoch": 2, "global_step": 2}
    assert r0["resumed"]["status"] == r1["resumed"]["status"] == "done"
    assert r0["resumed"]["state"] == r1["resumed"]["state"] == r0["full"]["state"]


def test_sharded_sampler_splits_one_order_evenly():
    base = BalancedSampler([0, 1, 1, 1, 0, 1, 1], num_samples=11, seed=3)
    shards = [distributed.ShardedSampler(base, r, 3) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    order = base.epoch_indices().tolist()
    assert [list(s) for s in shards] == [order[r:9:3] for r in range(3)]  # 11 draws -> 3 x 3, the rest dropped
    shards[1].set_epoch(2, skip=2)
    assert list(shards[1]) == order[7:9:3] and len(shards[1]) == 1
    one = distributed.ShardedSampler(base)
    one.set_epoch(2, skip=4)
    assert list(one) == order[4:]  # one process: the base sampler's order, unchanged
