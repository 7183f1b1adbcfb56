"""Stage bookkeeping (the chain itself runs in notebooks 02-05 under nbval)."""

import json

import pytest

from interceptor_lib.config import load_params
from interceptor_lib.errors import InterceptorError
from interceptor_lib.training.stages import DONE, finished, previous_best, run_dir, run_stage


def test_a_stage_needs_the_previous_one_and_names_its_notebook(tmp_path):
    params = load_params("smoke", overrides={"output_dir": str(tmp_path)})
    with pytest.raises(InterceptorError, match="02_stage1_faceforensics"):
        run_stage(params, "ll", "stage2")
    assert previous_best(params, "ll", "stage1") is None


def test_finished_stages_are_found_here_or_in_previous_outputs(tmp_path):
    old = tmp_path / "old_session"
    params = load_params("smoke", overrides={"output_dir": str(tmp_path / "new"),
                                             "train.previous_outputs": str(old)}, check_paths=False)
    d = run_dir(params, "ll", "stage1", old)
    d.mkdir(parents=True)
    (d / DONE).write_text(json.dumps({"best": str(d / "checkpoints" / "epoch-001")}))
    assert finished(params, "ll", "stage1")["best"].endswith("epoch-001")
    assert previous_best(params, "ll", "stage2") == d / "checkpoints" / "epoch-001"
    summary = run_stage(params, "ll", "stage1")  # already done in the earlier session: skipped
    assert summary["skipped"]
