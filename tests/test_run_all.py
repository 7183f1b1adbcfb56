"""run_all.sh's control flow, hermetically: the script runs in a scratch repo against stand-ins for
`python` (prints the plan that params would give) and `papermill` (logs each notebook it is asked to
run, sleeps, and fails where told). The real notebooks are run by the nbval tests."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["00_prepare_data", "01_dataset_inspection", "02_stage1_faceforensics", "03_stage2_celebdf",
             "04_stage3_wilddeepfake", "05_stage4_dfdc", "06_evaluation"]
STAGES = "02_stage1_faceforensics=stage1 03_stage2_celebdf=stage2 04_stage3_wilddeepfake=stage3 05_stage4_dfdc=stage4"

FAKE_PAPERMILL = """#!/usr/bin/env bash
name=$(basename "$2" .ipynb)
echo "$name ${*:3}" >> "$FAKE_LOG.args"
echo "start $name ${OMP_NUM_THREADS:-unset}" >> "$FAKE_LOG"
if [[ "$name" == "$FAKE_KERNEL_DIES" ]]; then   # its kernel fails to start FAKE_KERNEL_TIMES times
  n=$(grep -c "^start $name " "$FAKE_LOG")
  if (( n <= FAKE_KERNEL_TIMES )); then
    echo "zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:33569')"
    echo "RuntimeError: Kernel died before replying to kernel_info"; echo "end $name" >> "$FAKE_LOG"; exit 1
  fi
fi
if [[ " $FAKE_SLOW " == *" $name "* ]]; then sleep 2; else sleep 0.2; fi
echo "end $name" >> "$FAKE_LOG"
if [[ "$name" == "$FAKE_FAIL" ]]; then echo "boom in $name"; exit 3; fi
touch "$2"
"""


def _executable(path: Path, text: str):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def chain(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    repo, bin_dir, out = tmp_path / "repo", tmp_path / "bin", tmp_path / "out"
    (repo / "notebooks").mkdir(parents=True)
    bin_dir.mkdir()
    shutil.copy(REPO / "run_all.sh", repo / "run_all.sh")
    for nb in NOTEBOOKS:
        (repo / "notebooks" / f"{nb}.ipynb").write_text("{}")
    _executable(bin_dir / "papermill", FAKE_PAPERMILL)
    log = tmp_path / "calls.log"

    def run(models="ll bg av", parallel=1, fail="", slow="", plan_rc=0, kernel_dies="", kernel_times=0,
            arg="demo", cwd=None, finished="", per_notebook=None):
        plan = f"{out}\n{models}\n{STAGES}\n{parallel}\n{finished}\n" + (f"{per_notebook}\n" if per_notebook else "")
        if plan_rc:  # the planning step fails: 3 = the package is not importable, 1 = bad params
            body = f"echo 'error: planning failed' >&2\nexit {plan_rc}"
        else:
            body = f"printf '%s' '{plan}'"
        _executable(bin_dir / "python", f"#!/usr/bin/env bash\ncat >/dev/null\necho \"$*\" > \"$FAKE_LOG.plan\"\n"
                                        f"{body}\n")
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log),
               "FAKE_FAIL": fail, "FAKE_SLOW": slow, "FAKE_KERNEL_DIES": kernel_dies,
               "FAKE_KERNEL_TIMES": str(kernel_times)}
        env.pop("OMP_NUM_THREADS", None)
        log.write_text("")
        Path(f"{log}.args").write_text("")
        proc = subprocess.run(["bash", str(repo / "run_all.sh"), arg], env=env, capture_output=True,
                              text=True, timeout=120, cwd=cwd)
        events = [line.split() for line in log.read_text().splitlines()]
        return proc, events

    run.log = log
    return run, out


def _started(events):
    return [e[1] for e in events if e[0] == "start"]


def test_the_chain_runs_every_notebook_in_order_and_stage_notebooks_once_per_model(chain):
    run, out = chain
    proc, events = run()
    assert proc.returncode == 0, proc.stderr
    models = ["ll", "bg", "av"]
    expected = ["00_prepare_data", "01_dataset_inspection"]
    for nb in NOTEBOOKS[2:6]:
        expected += [f"{nb}__{m}" for m in models]
    assert _started(events) == expected + ["06_evaluation"]
    assert all(e[2] == "unset" for e in events if e[0] == "start")  # serial: threads left to torch
    assert "done in" in proc.stdout and (out / "notebooks" / "06_evaluation.ipynb").is_file()


def test_finished_model_stages_are_skipped_on_a_rerun(chain):
    """The planning step lists the finished (model, stage) pairs, found in output_dir or in an attached
    earlier session's output (config.done_record); their notebooks are not run again."""
    run, out = chain
    proc, events = run(finished="ll/stage1 av/stage1")
    assert proc.returncode == 0, proc.stderr
    stage1 = [n for n in _started(events) if n.startswith("02_")]
    assert stage1 == ["02_stage1_faceforensics__bg"]
    assert "02_stage1_faceforensics__ll (demo): already trained, skipped" in proc.stdout


def test_a_failing_notebook_stops_the_chain_and_is_named(chain):
    run, out = chain
    proc, events = run(fail="03_stage2_celebdf__bg")
    assert proc.returncode == 1
    assert "03_stage2_celebdf__bg failed on profile demo" in proc.stderr and "boom in" in proc.stderr
    started = _started(events)
    assert started[-1] == "03_stage2_celebdf__bg"  # serial: nothing after the failure starts
    assert not any(n.startswith(("04_", "05_", "06_")) for n in started)


def test_parallel_models_share_the_cores_and_a_free_slot_is_refilled_at_once(chain):
    run, out = chain
    # ll's stage-1 notebook is slow: bg ends first and av takes its slot while ll still runs
    proc, events = run(parallel=2, slow="02_stage1_faceforensics__ll")
    assert proc.returncode == 0, proc.stderr
    running, peak, order = set(), 0, []
    for kind, name, *rest in events:
        if kind == "start":
            running.add(name)
            peak = max(peak, len(running))
            if "__" in name:
                assert rest[0] != "unset" and int(rest[0]) >= 1  # OMP threads: the cores split between two
        else:
            running.discard(name)
        order.append((kind, name))
    assert peak == 2
    assert order.index(("start", "02_stage1_faceforensics__av")) < order.index(("end", "02_stage1_faceforensics__ll"))
    # a stage's notebooks all end before the next stage's begin
    last_stage1_end = max(i for i, (k, n) in enumerate(order) if k == "end" and n.startswith("02_"))
    first_stage2_start = min(i for i, (k, n) in enumerate(order) if k == "start" and n.startswith("03_"))
    assert last_stage1_end < first_stage2_start


def test_a_failure_among_parallel_notebooks_lets_the_others_end_then_stops(chain):
    run, out = chain
    proc, events = run(parallel=2, fail="02_stage1_faceforensics__ll", slow="02_stage1_faceforensics__bg")
    assert proc.returncode == 1
    assert "02_stage1_faceforensics__ll failed" in proc.stderr
    ended = [e[1] for e in events if e[0] == "end"]
    assert "02_stage1_faceforensics__bg" in ended  # the running neighbour was waited for, not orphaned
    assert not any(n.startswith("03_") for n in _started(events))
    assert "02_stage1_faceforensics__av" not in _started(events)  # no new work after a failure


def test_a_kernel_that_did_not_start_is_started_again(chain):
    run, out = chain
    # two kernels starting at once can race for one TCP port; the loser runs no cell
    proc, events = run(parallel=2, kernel_dies="05_stage4_dfdc__av", kernel_times=2)
    assert proc.returncode == 0, proc.stderr
    assert _started(events).count("05_stage4_dfdc__av") == 3
    assert "05_stage4_dfdc__av (demo): its kernel did not start" in proc.stdout
    assert (out / "notebooks" / "05_stage4_dfdc__av.kernel-start-1.log").is_file()
    assert "06_evaluation" in _started(events)


def test_a_kernel_that_never_starts_stops_the_chain_after_three_tries(chain):
    run, out = chain
    proc, events = run(kernel_dies="03_stage2_celebdf__bg", kernel_times=99)
    assert proc.returncode == 1
    assert _started(events).count("03_stage2_celebdf__bg") == 3
    assert "03_stage2_celebdf__bg failed on profile demo" in proc.stderr and "kernel_info" in proc.stderr
    assert not any(n.startswith("04_") for n in _started(events))


def test_a_failed_plan_stops_before_any_notebook_and_says_why(chain):
    run, out = chain
    proc, events = run(plan_rc=1)
    assert proc.returncode == 2 and events == []
    assert "params/demo.yaml is not valid" in proc.stderr
    for rc in (3, 4):  # an import error, or finished stages that do not match the params: said by the plan
        proc, events = run(plan_rc=rc)
        assert proc.returncode == 2 and events == []
        assert "planning failed" in proc.stderr and "not valid" not in proc.stderr


def test_a_params_file_argument_goes_to_every_notebook_by_absolute_path(chain, tmp_path):
    run, out = chain
    (tmp_path / "session").mkdir()
    (tmp_path / "session" / "my_session.yaml").write_text("extends: kaggle\n")
    proc, events = run(arg="session/my_session.yaml", cwd=tmp_path)   # relative to where it is run
    assert proc.returncode == 0, proc.stderr
    path = str(tmp_path / "session" / "my_session.yaml")
    assert Path(f"{run.log}.plan").read_text().split() == ["-", "file", path]   # the plan loads the file
    calls = [line.split() for line in Path(f"{run.log}.args").read_text().splitlines()]
    assert [c[0] for c in calls] == _started(events) and len(calls) == 2 + 4 * 3 + 1  # 3 models x 4 stages
    for name, *args in calls:
        assert "profile" not in args, name
        i = args.index("params_file")
        assert args[i - 1] == "-p" and args[i + 1] == path, name
    assert f"== 00_prepare_data ({path})" in proc.stdout and f"params file {path} done in" in proc.stdout

    proc, events = run(arg="demo")   # a name is a profile, passed by name
    calls = [line.split() for line in Path(f"{run.log}.args").read_text().splitlines()]
    assert calls and all("params_file" not in c and c[c.index("profile") + 1] == "demo" for c in calls)


def test_a_params_file_argument_is_named_when_it_fails(chain, tmp_path):
    run, out = chain
    proc, events = run(arg=str(tmp_path / "nope.yml"), plan_rc=1)   # a .yml name is a path, even if missing
    assert proc.returncode == 2 and events == []
    assert f"{tmp_path / 'nope.yml'} is not valid" in proc.stderr
    (tmp_path / "session.params").write_text("extends: demo\n")   # an existing file, whatever its name
    proc, events = run(arg="session.params", cwd=tmp_path, fail="01_dataset_inspection")
    assert proc.returncode == 1
    assert f"01_dataset_inspection failed on params file {tmp_path / 'session.params'}" in proc.stderr


def test_models_per_notebook_groups_models_into_one_kernel_each(chain):
    """train.models_per_notebook > 1: each stage notebook runs once per group of models (dealt
    round-robin in start order), named <notebook>__a+b, with the notebook parameter model="a,b";
    a finished (model, stage) leaves its group."""
    run, out = chain
    proc, events = run(models="tm av ll bg", parallel=2, per_notebook=2, finished="ll/stage1")
    assert proc.returncode == 0, proc.stderr
    started = _started(events)
    assert {n for n in started if n.startswith("02_")} == {"02_stage1_faceforensics__tm+bg", "02_stage1_faceforensics__av"}
    assert {n for n in started if n.startswith("03_")} == {"03_stage2_celebdf__tm+ll", "03_stage2_celebdf__av+bg"}
    calls = {line.split()[0]: line.split()[1:] for line in Path(f"{run.log}.args").read_text().splitlines()}
    args = calls["03_stage2_celebdf__tm+ll"]
    assert args[args.index("model") + 1] == "tm,ll"
