"""Starting the training: which models a stage notebook trains and the order ./run_all.sh starts
them in, and one stage on every visible GPU.

`launch_stage` (what the stage notebooks call) runs the stage in-process on one device
(`stages.run_stage`), or, when params.device resolves to cuda and more than one GPU is visible, as

    torchrun --standalone --nproc_per_node=<GPUs> -m interceptor_lib train --params <snapshot> ...

(one DDP process per GPU, see `training/distributed.py`; each runs `run_stage_process`), streaming
its output, and returns the summary from done.json. The subprocess reads a snapshot of the caller's
`params` (overrides included).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import DONE_FILE, RunPaths, done_record, finished_as_configured
from interceptor_lib.models import list_models, model_entry
from interceptor_lib.training import distributed
from interceptor_lib.training.budget import SESSION_START_ENV
from interceptor_lib.training.device import resolve_device

LAUNCH_PARAMS = "launch_params.yaml"      # the params snapshot a torchrun launch reads
STATUS_ENV = "INTERCEPTOR_STATUS_FILE"    # where `train` records its InterceptorError for launch_stage


def notebook_models(params, model: str | None) -> list[str]:
    """The models a stage notebook trains: `model` (one name, or several separated by commas, as
    ./run_all.sh passes them) or, when None, every model of train.models in turn."""
    if not model:
        return list(params.train.models)
    names = [m.strip() for m in str(model).split(",") if m.strip()]
    unknown = [m for m in names if m not in params.train.models]
    if unknown:
        raise InterceptorError(f"notebook parameter model={model!r}: {unknown} not in train.models "
                               f"{params.train.models} of profile {params.profile!r}")
    return names


def start_order(models: list[str], parallel: int = 1) -> list[str]:
    """The order in which ./run_all.sh starts the models' notebooks of a stage. With `parallel` > 1
    (several notebooks at once on a CPU) the clip models start first: they read T frames per item and
    take the longest, and started last one of them ran alone on one core for minutes at the end of
    each stage (longest first). Sequentially, `models` as given. Each stage's result does not depend on
    the order (every model draws its randomness from params.seed)."""
    models = list(models)
    if parallel <= 1:
        return models
    def is_clip(name: str) -> bool:
        try:
            return model_entry(name).input_kind == "clip"
        except InterceptorError:  # not a registered model: keeps its place
            return False

    return [m for m in models if is_clip(m)] + [m for m in models if not is_clip(m)]


def run_stage_process(params, model_name: str, stage: str, progress: bool = True) -> dict:
    """What `python -m interceptor_lib train` runs, alone or as one torchrun worker: join the process
    group torchrun describes (none outside torchrun), run the stage, leave the group. On an
    InterceptorError, rank 0 records it in $INTERCEPTOR_STATUS_FILE (when set, by launch_stage)
    before re-raising, so the launcher can raise the same error (e.g. TrainingStopped)."""
    from interceptor_lib.pipeline import stages  # late (av, cv2, scipy): run_all.sh's plan imports start_order here

    distributed.init_from_env(resolve_device(params.device).type)
    try:
        return stages.run_stage(params, model_name, stage, progress=progress and distributed.is_main())
    except InterceptorError as e:
        status = os.environ.get(STATUS_ENV)
        if status and distributed.is_main():
            Path(status).write_text(json.dumps({"error": type(e).__name__, "message": str(e)}))
        if isinstance(e, stages.TrainingStopped):
            # Every rank stopped at the same step: leave together, so that torchrun (which ends the
            # other workers as soon as one exits non-zero) cannot cut rank 0 short while it reports.
            distributed.barrier()
        raise
    finally:
        distributed.shutdown()


def processes_for(params) -> int:
    """How many DDP processes a stage uses: the visible GPUs when params.device resolves to cuda, else 1."""
    if resolve_device(params.device).type != "cuda":
        return 1
    return max(1, torch.cuda.device_count())


def torchrun_command(nproc: int, model_name: str, stage: str, params_path: str | Path,
                     progress: bool = True) -> list[str]:
    """The torchrun command line of one stage (torchrun = `python -m torch.distributed.run`; this
    Python's, so the same environment runs the workers)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "interceptor_lib", "train", "--params", str(params_path), "--model", model_name,
            "--stage", stage] + ([] if progress else ["--quiet"])


def launch_stage(params, model_name: str, stage: str, params_file: str | Path | None = None,
                 profile: str | None = None, progress: bool = True, nproc: int | None = None) -> dict:
    """Run a stage on every visible GPU: in-process (`run_stage`) for one device, else under torchrun
    with one DDP process per GPU; returns the stage summary either way.

    The torchrun workers load a snapshot of `params` as it is now (`<run_dir>/launch_params.yaml`),
    so notebook overrides and edits reach them; `params_file` / `profile` (where `params` came from)
    are only noted in it. `nproc` overrides the number of processes (processes_for(params)); more
    than one on CPU uses gloo (for tests). Output streams through as it comes; SIGTERM / SIGINT sent
    to this process are forwarded to torchrun, whose workers then save and stop at a step boundary.
    Raises what the workers raised (TrainingStopped after a stop, InterceptorError for a user error),
    or an InterceptorError with the end of the output if they crashed."""
    from interceptor_lib.pipeline import stages  # late (av, cv2, scipy): run_all.sh's plan imports start_order here

    n = processes_for(params) if nproc is None else nproc
    if n <= 1:
        return stages.run_stage(params, model_name, stage, progress)
    if model_name not in list_models():
        raise InterceptorError(f"unknown model {model_name!r}; models: {list_models()}")
    done = finished_as_configured(params, model_name, stage)
    if done is not None:
        return {**done, "skipped": True}
    rdir = RunPaths.of(params).run_dir(model_name, stage)
    rdir.mkdir(parents=True, exist_ok=True)
    snapshot, status = rdir / LAUNCH_PARAMS, rdir / "launch_status.json"
    source = f"params file {params_file}" if params_file else f"profile {profile or params.profile}"
    snapshot.write_text(f"# params for torchrun, snapshot of {source} with overrides, resolved\n"
                        + json.dumps(asdict(params), indent=1, default=str) + "\n")  # JSON is YAML
    status.unlink(missing_ok=True)
    env = {**os.environ, STATUS_ENV: str(status),
           "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "900"),
           SESSION_START_ENV: os.environ.get(SESSION_START_ENV, str(time.time()))}
    cmd = torchrun_command(n, model_name, stage, snapshot, progress)
    print(f"launching {n} processes: {' '.join(cmd)}", flush=True)
    rc, tail = _run_streaming(cmd, env)
    if rc != 0:
        if status.is_file():
            err = json.loads(status.read_text())
            stopped = err["error"] == stages.TrainingStopped.__name__
            raise (stages.TrainingStopped if stopped else InterceptorError)(err["message"])
        raise InterceptorError(f"torchrun ({n} processes) of {model_name} {stage} failed with exit status {rc}; "
                               f"the end of its output:\n{tail}")
    done = done_record(params, model_name, stage)
    if done is None:
        raise InterceptorError(f"torchrun of {model_name} {stage} exited 0 but wrote no {DONE_FILE} in {rdir}")
    return {**done, "skipped": False}


def _run_streaming(cmd: list[str], env: dict) -> tuple[int, str]:
    """Run `cmd`, copying its output (stdout and stderr, progress bars included) to ours as it comes.
    Returns the exit status and the last 4000 characters of output."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    tail: deque[str] = deque(maxlen=64)
    with _forward_signals(proc):
        fd = proc.stdout.fileno()
        while chunk := os.read(fd, 1 << 16):
            text = chunk.decode(errors="replace")
            sys.stdout.write(text)
            sys.stdout.flush()
            tail.append(text)
        rc = proc.wait()
    proc.stdout.close()
    return rc, "".join(tail)[-4000:]


@contextmanager
def _forward_signals(proc: subprocess.Popen):
    """While the block runs, pass SIGTERM / SIGINT on to `proc` instead of dying (main thread only)."""
    def forward(signum, frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    old = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            old[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
