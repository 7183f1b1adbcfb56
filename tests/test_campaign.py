"""A Kaggle campaign at the smallest scale: the smoke chain (data preparation, stages 1-4 of one
model) run as a sequence of short sessions, each with a fresh output_dir, a session clock that runs
out after a few steps and a storage budget smaller than the whole cache, each session attaching the
earlier sessions' outputs read-only (train.previous_outputs, newest first): CPU sessions build the
cache until it is complete, GPU sessions then train (as `plan` schedules them). Compared with one
uninterrupted run of the same chain.

The session clock is deterministic: RunBudget.should_stop answers "time budget" once a session has
asked it STEPS_PER_SESSION times (preprocessing asks once per video, training once per step), so
sessions stop mid-cache, mid-epoch and between DFDC chunks at the same places on every run."""

import hashlib
from pathlib import Path

import torch

from interceptor_lib.params import load_params
from interceptor_lib.data.cache import PreprocessStopped
from interceptor_lib.pipeline.prepare import prepare_data
from interceptor_lib.layout import RunPaths
from interceptor_lib.training import budget as budget_module
from interceptor_lib.training.checkpoint import load_checkpoint
from interceptor_lib.pipeline.stages import TrainingStopped, run_stage

STAGES = ["stage1", "stage2", "stage3", "stage4"]
MODEL = "ll"
STEPS_PER_SESSION = {"cpu": 16, "gpu": 5}  # videos a CPU session preprocesses; training steps of a GPU one
# Per session: a CPU session's budget is smaller than the smoke cache (so preprocessing spans sessions);
# a GPU session's holds a stage's training states (best + last 2, ~9 MB each for ll) and the bests kept.
STORAGE_GB = {"cpu": 1 / 1024, "gpu": 64 / 1024}
MAX_SESSIONS = 16


def _params(tmp: Path, out: Path, previous: list[Path], kind: str | None = None):
    over = {"output_dir": str(out), "demo_data.out": str(tmp / "data"), "train.models": [MODEL],
            "train.previous_outputs": [str(p) for p in previous] or None}
    if kind:
        over |= {"train.time_budget_h": 12.0, "train.storage_budget_gb": STORAGE_GB[kind]}
    return load_params("smoke", overrides=over)


def _session(params, kind: str = "gpu") -> str:
    """One session: notebook 00's work, then (a GPU session) every stage; 'done', 'cache complete' (a
    CPU session, which only preprocesses) or why it stopped."""
    try:
        prepare_data(params, progress=False)
        if kind == "cpu":
            return "cache complete"
        for stage in STAGES:
            run_stage(params, MODEL, stage, progress=False)
    except PreprocessStopped as e:
        return "stopped preprocessing: " + ("storage" if "storage budget" in str(e) else "time")
    except TrainingStopped:
        return "stopped training"
    return "done"


def _tree(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def _bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def _stage_bests(params) -> dict[str, dict]:
    paths = RunPaths.of(params)
    out = {}
    for stage in STAGES:
        done, _ = paths.find_done(MODEL, stage)
        assert done is not None, f"{stage} has not finished"
        out[stage] = load_checkpoint(done["best"])["model"]
    return out


class _SessionClock:
    def __init__(self, kind: str):
        self.left = STEPS_PER_SESSION[kind]

    def should_stop(self, budget):
        if budget.signal_received:
            return f"signal {budget.signal_received}"
        self.left -= 1
        return "time budget" if self.left < 0 else None


def test_a_campaign_of_short_sessions_ends_like_one_uninterrupted_run(tmp_path, monkeypatch):
    full = _params(tmp_path, tmp_path / "full", [])
    assert _session(full) == "done"
    reference = _stage_bests(full)

    sessions: list[Path] = []
    outcomes = []
    peak = {}
    while not outcomes or outcomes[-1] != "done":
        assert len(sessions) < MAX_SESSIONS, f"the campaign did not finish in {MAX_SESSIONS} sessions: {outcomes}"
        out = tmp_path / f"session-{len(sessions) + 1:02d}"
        kind = "gpu" if "cache complete" in outcomes else "cpu"
        params = _params(tmp_path, out, list(reversed(sessions)), kind)
        before = {p: _tree(p) for p in sessions}
        clock = _SessionClock(kind)
        monkeypatch.setattr(budget_module.RunBudget, "should_stop", lambda self: clock.should_stop(self))
        outcomes.append(_session(params, kind))
        peak[out.name] = (_bytes(out), STORAGE_GB[kind] * 2**30)
        for p, tree in before.items():  # attached folders are read-only: not one file added, changed or removed
            assert _tree(p) == tree, f"session {out.name} changed the attached output {p.name}"
        sessions.append(out)

    # the cache was built over several sessions, stopped by the clock and by the storage budget
    assert {"stopped preprocessing: time", "stopped preprocessing: storage"} <= set(outcomes), outcomes
    assert "stopped training" in outcomes, outcomes
    assert all(n <= limit for n, limit in peak.values()), {k: (n / 2**20, m / 2**20) for k, (n, m) in peak.items()}
    campaign = _stage_bests(params)
    for stage in STAGES:
        a, b = reference[stage], campaign[stage]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{stage}: the campaign's best weights differ"
