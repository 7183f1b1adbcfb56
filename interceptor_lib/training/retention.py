"""Checkpoint retention under a storage budget (Kaggle keeps 20 GB in /kaggle/working).

`CheckpointManager` keeps the best checkpoint (by a validation metric) plus the last `keep_last`,
and checks the budget before every save: it first prunes checkpoints the policy would drop anyway,
then older ones (never the best, never the last valid one), and if the full state still does not
fit it falls back to a weights-only save. It never deletes the last valid checkpoint to make room,
so a run always ends with one to resume or evaluate from.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from interceptor_lib.errors import InterceptorError
from interceptor_lib.training.checkpoint import INDEX, checkpoint_bytes, load_checkpoint, save_checkpoint

REGISTRY = "checkpoints.json"


class StorageBudgetError(InterceptorError):
    """Not even a weights-only checkpoint fits in the storage budget."""


@dataclass
class RetentionPolicy:
    keep_last: int = 2                      # most recent checkpoints kept for resuming
    keep_best: bool = True                  # the best by validation metric is never pruned
    storage_budget_gb: float | None = None  # bytes allowed under `budget_root` (Kaggle: 20); None = disk only
    max_chunk_mb: float = 100               # chunk size of the safetensors files


@dataclass
class SaveResult:
    path: Path
    kind: str          # "full" | "weights"
    bytes: int
    pruned: list[str]


class CheckpointManager:
    """Checkpoints `root/<name>/` with a small registry `root/checkpoints.json`."""

    def __init__(self, root: str | Path, policy: RetentionPolicy | None = None, budget_root: str | Path | None = None,
                 higher_is_better: bool = True, create: bool = True):
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        self.policy = policy or RetentionPolicy()
        self.budget_root = Path(budget_root) if budget_root else self.root
        self.higher_is_better = higher_is_better

    @classmethod
    def read_only(cls, root: str | Path) -> "CheckpointManager":
        """A manager that only reads `root` (an attached earlier session's checkpoints): it creates
        nothing; use latest() / best() / entries() only."""
        return cls(root, create=False)

    # -- registry ---------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        """Registered checkpoints, oldest first, that are still complete on disk."""
        p = self.root / REGISTRY
        entries = json.loads(p.read_text()) if p.exists() else []
        return [e for e in entries if (self.root / e["name"] / INDEX).is_file()]

    def _write(self, entries: list[dict]) -> None:
        tmp = self.root / (REGISTRY + ".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, self.root / REGISTRY)

    def latest(self) -> Path | None:
        """The last checkpoint saved here (a best adopted from an earlier session is no resume point)."""
        e = [x for x in self.entries() if not x.get("adopted")]
        return self.root / e[-1]["name"] if e else None

    def best(self) -> Path | None:
        scored = [e for e in self.entries() if e.get("metric") is not None]
        if not scored:
            return None
        pick = max if self.higher_is_better else min
        return self.root / pick(scored, key=lambda e: e["metric"])["name"]

    # -- saving -----------------------------------------------------------------------------
    def save(self, name: str, state: dict, metric: float | None = None, weights_key: str = "model",
             keep_keys: tuple = ("progress", "config")) -> SaveResult:
        """Save `state` as `root/<name>`, within the budget. If the full state does not fit after
        pruning, save only `state[weights_key]` (+ `keep_keys`) and mark it `weights`."""
        full = _state_bytes(state)
        light_state = {k: state[k] for k in (weights_key, *keep_keys) if k in state}
        light = _state_bytes(light_state)
        pruned: list[str] = []
        kind, to_save = "full", state
        if not self._fits(full):
            pruned += self._prune(need=full)
            if not self._fits(full):
                kind, to_save = "weights", light_state
                if not self._fits(light):
                    raise StorageBudgetError(
                        f"cannot save checkpoint {name}: {light / 2**30:.2f} GiB of weights do not fit in the "
                        f"storage budget ({self._free() / 2**30:.2f} GiB free under {self.budget_root}); the "
                        f"last valid checkpoint {self.latest()} is kept. Free space or raise the budget.")
        path = save_checkpoint(self.root / name, to_save, self.policy.max_chunk_mb,
                               metadata={"kind": kind, "metric": metric})
        entries = [e for e in self.entries() if e["name"] != name]
        entries.append({"name": name, "metric": metric, "kind": kind, "bytes": checkpoint_bytes(path)})
        self._write(entries)
        pruned += self._apply_policy()
        return SaveResult(path=path, kind=kind, bytes=entries[-1]["bytes"], pruned=pruned)

    def finalize(self) -> Path | None:
        """A finished run keeps what later steps need: the best checkpoint (else the latest), as
        weights only (model, progress, config; the optimizer / scheduler / RNG state is for resuming
        a run that has now ended); every other checkpoint is deleted. Returns the kept path. The
        rewrite is atomic: the full checkpoint is replaced only once the slim one is complete."""
        keep = self.best() or self.latest()
        if keep is None:
            return None
        entries = self.entries()
        self._delete([e["name"] for e in entries if e["name"] != keep.name])
        entry = next(e for e in self.entries() if e["name"] == keep.name)
        if entry.get("kind", "full") == "full":
            state = load_checkpoint(keep)
            light = {k: state[k] for k in ("model", "progress", "config", "history") if k in state}
            tmp, old = self.root / (keep.name + ".slim"), self.root / (keep.name + ".full")
            shutil.rmtree(tmp, ignore_errors=True)
            save_checkpoint(tmp, light, self.policy.max_chunk_mb, metadata={"kind": "weights", "metric": entry.get("metric")})
            os.replace(keep, old)
            os.replace(tmp, keep)
            shutil.rmtree(old)
            entry.update(kind="weights", bytes=checkpoint_bytes(keep))
        entry.pop("adopted", None)  # a best adopted from an earlier session is now this run's result
        self._write([entry])
        return keep

    def adopt_best(self, other_root: str | Path) -> Path | None:
        """Copy the best checkpoint of another (read-only) checkpoint folder into this one, with its
        metric: a run continued from an attached earlier session keeps competing with the best that
        session found. Returns the copy (None when the other folder has no scored checkpoint)."""
        other = CheckpointManager.read_only(other_root)
        best = other.best()
        if best is None or (self.root / best.name / INDEX).is_file():
            return None
        entry = next(e for e in other.entries() if e["name"] == best.name)
        tmp = self.root / (best.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(best, tmp)
        os.replace(tmp, self.root / best.name)
        self._write([e for e in self.entries() if e["name"] != best.name] + [{**entry, "adopted": True}])
        return self.root / best.name

    def _protected(self) -> set[str]:
        keep = set()
        if self.policy.keep_best and self.best() is not None:
            keep.add(self.best().name)
        if self.latest() is not None:
            keep.add(self.latest().name)
        return keep

    def _apply_policy(self) -> list[str]:
        entries = self.entries()
        keep = self._protected()
        if self.policy.keep_last:
            keep |= {e["name"] for e in entries[-self.policy.keep_last:]}
        return self._delete([e["name"] for e in entries if e["name"] not in keep])

    def _prune(self, need: int) -> list[str]:
        """Delete unprotected checkpoints, oldest first, until `need` bytes fit."""
        out = []
        for e in self.entries():
            if self._fits(need):
                break
            if e["name"] not in self._protected():
                out += self._delete([e["name"]])
        return out

    def _delete(self, names: list[str]) -> list[str]:
        for n in names:
            shutil.rmtree(self.root / n, ignore_errors=True)
        if names:
            self._write([e for e in self.entries() if e["name"] not in names])
        return names

    # -- budget -----------------------------------------------------------------------------
    def _free(self) -> int:
        disk = shutil.disk_usage(self.root).free
        if self.policy.storage_budget_gb is None:
            return disk
        used = sum(f.stat().st_size for f in self.budget_root.rglob("*") if f.is_file())
        return min(disk, int(self.policy.storage_budget_gb * 2**30) - used)

    def _fits(self, nbytes: int) -> bool:
        return nbytes * 1.02 + 2**16 <= self._free()  # headroom for headers, the index and file-system slack


def _state_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_state_bytes(v) for v in obj)
    return 64
