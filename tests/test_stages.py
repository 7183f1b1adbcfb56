"""Stage bookkeeping (the chain itself runs in notebooks 02-05 under nbval), the fp16 export of a
finished stage, the `train` command, and a stage launched under torchrun (2 CPU processes, gloo)."""

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from media import face_frames, write_video

from interceptor_lib.cli import main as cli_main
from interceptor_lib.layout import (DONE_FILE, RunPaths, changed_stage_settings, done_record, previous_best,
                                    stage_settings, stale_runs, stale_stages_message)
from interceptor_lib.params import load_params
from interceptor_lib.data.cache import build_cache
from interceptor_lib.data.table import make_table, write_table
from interceptor_lib.errors import InterceptorError, ParamsError
from interceptor_lib.models import create_model
from interceptor_lib.training.checkpoint import load_checkpoint
from interceptor_lib.training.export_best import EXPORT
from interceptor_lib.pipeline.launch import LAUNCH_PARAMS, launch_stage, torchrun_command
from interceptor_lib.pipeline.prepare import pretrain_backbone
from interceptor_lib.pipeline import stages
from interceptor_lib.pipeline.pseudo_fakes import train_comparison
from interceptor_lib.pipeline.stages import TrainingStopped, run_stage, train_config, validated_parts


def test_start_order_puts_the_clip_models_first_only_when_notebooks_run_in_parallel():
    from interceptor_lib.pipeline.launch import start_order

    models = ["ll", "bg", "av", "cm", "rr", "tm"]
    assert start_order(models, parallel=2) == ["av", "tm", "ll", "bg", "cm", "rr"]
    assert start_order(models, parallel=1) == models  # one at a time: the order changes nothing
    assert start_order(["ll", "mystery", "tm"], parallel=2) == ["tm", "ll", "mystery"]  # unknown: kept in place
    assert models == ["ll", "bg", "av", "cm", "rr", "tm"]  # not modified


def test_chunk_validation_last_validates_only_the_last_chunk_and_every_stage_in_one_part():
    order = ["chunk-07", "chunk-03", "chunk-05"]   # training order, not numeric
    assert validated_parts(order, "every") == set(order)
    assert validated_parts(order, "last") == {"chunk-05"}
    assert validated_parts([""], "last") == {""}   # FF++, Celeb-DF, WildDeepfake: one part, validated
    with pytest.raises(ParamsError, match="train.chunk_validation"):
        load_params("smoke", overrides={"train.chunk_validation": "sometimes"})


def test_a_stage_needs_the_previous_one_and_names_its_notebook(tmp_path):
    params = load_params("smoke", overrides={"output_dir": str(tmp_path)})
    with pytest.raises(InterceptorError, match="02_stage1_faceforensics"):
        run_stage(params, "ll", "stage2")
    assert previous_best(params, "ll", "stage1") is None


def test_finished_stages_are_found_here_or_in_previous_outputs(tmp_path):
    old = tmp_path / "old_session"
    params = load_params("smoke", overrides={"output_dir": str(tmp_path / "new"),
                                             "train.previous_outputs": str(old)}, check_paths=False)
    d = RunPaths.of(params).run_dir("ll", "stage1", root=old)
    d.mkdir(parents=True)
    (d / DONE_FILE).write_text(json.dumps({"best": str(d / "checkpoints" / "epoch-001")}))
    assert done_record(params, "ll", "stage1")["best"].endswith("epoch-001")
    assert previous_best(params, "ll", "stage2") == d / "checkpoints" / "epoch-001"
    summary = run_stage(params, "ll", "stage1")  # already done in the earlier session: skipped
    assert summary["skipped"]


def test_a_finished_stage_trained_with_other_settings_is_not_skipped_silently(tmp_path):
    old = tmp_path / "old_session"
    params = load_params("smoke", overrides={"output_dir": str(tmp_path / "new"), "train.previous_outputs": str(old),
                                             "train.stages.stage2.epochs": 2}, check_paths=False)
    sp = json.loads(json.dumps(asdict(params.train.stages["stage2"])))
    d = RunPaths.of(params).run_dir("ll", "stage2", root=old)   # an earlier session's stage 2, 1 epoch
    d.mkdir(parents=True)
    # a done.json from before train-level settings were recorded: train.stages.<stage> alone
    (d / DONE_FILE).write_text(json.dumps({"best": str(d / "e1"), "stage_params": {**sp, "epochs": 1}}))
    assert changed_stage_settings(params, "ll", "stage2") == {"train.stages.stage2.epochs": (1, 2)}
    assert changed_stage_settings(params, "ll", "stage1") == {}   # not finished: nothing to compare
    msg = stale_stages_message(params)
    assert "runs/ll/stage2: train.stages.stage2.epochs 1 -> 2" in msg and "rm -r" in msg and "stage1" not in msg
    with pytest.raises(InterceptorError, match="epochs 1 -> 2"):
        run_stage(params, "ll", "stage2")
    # same settings (and a key the old done.json did not record yet): skipped as before
    rec = {k: v for k, v in sp.items() if k != "balanced"}
    (d / DONE_FILE).write_text(json.dumps({"best": str(d / "e1"), "stage_params": rec}))
    assert stale_stages_message(params) is None
    assert run_stage(params, "ll", "stage2")["skipped"]


def test_train_level_and_crop_settings_of_a_finished_stage_are_compared_too(tmp_path):
    params = load_params("smoke", overrides={"output_dir": str(tmp_path)}, check_paths=False)
    settings = stage_settings(params, "stage1")
    # what a result depends on is recorded; where files are and how fast it runs are not
    assert {"seed", "train.batch_size", "train.model_config", "train.augment.p_color", "train.stages.stage1.lr",
            "preprocess.face_size"} <= settings.keys()
    assert not {"train.num_workers", "train.keep_last", "train.weights", "train.pretext.out",
                "train.stages.stage2.lr", "preprocess.workers"} & settings.keys()
    d = RunPaths.of(params).run_dir("ll", "stage1")
    d.mkdir(parents=True)
    face = params.preprocess.face_size * 2
    recorded = {**settings, "train.batch_size": params.train.batch_size * 2, "preprocess.face_size": face}
    (d / DONE_FILE).write_text(json.dumps({"best": str(d / "e1"), "settings": recorded}))
    assert changed_stage_settings(params, "ll", "stage1") == {
        "preprocess.face_size": (face, params.preprocess.face_size),
        "train.batch_size": (params.train.batch_size * 2, params.train.batch_size)}
    with pytest.raises(InterceptorError, match=f"runs/ll/stage1: preprocess.face_size {face} -> "):
        run_stage(params, "ll", "stage1")
    assert "runs/ll/stage1: preprocess.face_size" in stale_stages_message(params)
    # settings that do not change the result may differ
    fast = load_params("smoke", overrides={"output_dir": str(tmp_path), "train.num_workers": 3, "train.keep_last": 5,
                                           "preprocess.workers": 1, "train.batch_size": params.train.batch_size * 2,
                                           "preprocess.face_size": face}, check_paths=False)
    assert stale_stages_message(fast) is None


def test_a_changed_split_of_a_dataset_trained_so_far_makes_a_finished_stage_stale(tmp_path):
    params = load_params("smoke", overrides={"output_dir": str(tmp_path)}, check_paths=False)
    assert "datasets.celebdf.options.val_fraction" in stage_settings(params, "stage3")
    assert not any(k.startswith("datasets.celebdf") for k in stage_settings(params, "stage1"))
    for stage in ("stage1", "stage2", "stage3"):
        d = RunPaths.of(params).run_dir("ll", stage)
        d.mkdir(parents=True)
        (d / DONE_FILE).write_text(json.dumps({"best": str(d / "e1"), "settings": stage_settings(params, stage)}))
    split = load_params("smoke", overrides={"output_dir": str(tmp_path), "datasets.celebdf.options.val_fraction": 0.4},
                        check_paths=False)
    # stage 1 (FF++) never saw Celeb-DF; stage 2 trained on its splits, stage 3 replays and validates on them
    assert set(stale_runs(split)) == {"runs/ll/stage2", "runs/ll/stage3"}
    assert stale_runs(split)["runs/ll/stage2"] == {"datasets.celebdf.options.val_fraction": (0.25, 0.4)}


def test_finished_dfdc_chunks_of_an_unfinished_stage_must_match_the_settings(tmp_path):
    params = load_params("smoke", overrides={"output_dir": str(tmp_path), "train.stages.stage4.epochs": 2},
                         check_paths=False)
    settings = stage_settings(params, "stage4")
    stage = RunPaths.of(params).run_dir("tm", "stage4")
    for name, epochs in (("chunk-03", 2), ("chunk-07", 1)):   # interrupted after two chunks, then edited
        (stage / name).mkdir(parents=True)
        (stage / name / DONE_FILE).write_text(json.dumps({"best": "x", "settings": {**settings,
                                                                               "train.stages.stage4.epochs": epochs}}))
    assert stale_runs(params) == {"runs/tm/stage4/chunk-07": {"train.stages.stage4.epochs": (1, 2)}}
    msg = stale_stages_message(params)
    assert "runs/tm/stage4/chunk-07: train.stages.stage4.epochs 1 -> 2" in msg and "chunk-03" not in msg
    assert "runs/*/stage4" in msg
    with pytest.raises(InterceptorError, match="chunk-07"):
        run_stage(params, "tm", "stage4")   # would resume after the finished chunks: stops instead
    (stage / DONE_FILE).write_text(json.dumps({"best": "x", "settings": settings}))
    assert stale_runs(params) == {}   # the stage finished: its own done.json decides


# --- a real (tiny) stage: index + face-crop cache of 6 FF++ and 6 Celeb-DF videos, 32 px faces ------

def overrides_for(root) -> dict:
    return {"output_dir": str(root), "device": "cpu", "preprocess.face_size": 32, "preprocess.workers": 1}


@pytest.fixture(scope="module")
def stage_params(tmp_path_factory):
    """Smoke params over a prepared tiny corpus (what notebook 00 leaves: index/all.csv + the cache)."""
    root = tmp_path_factory.mktemp("stages")
    params = load_params("smoke", overrides=overrides_for(root))
    rows = []
    for ds in ("ffpp", "celebdf"):
        for i in range(6):
            label = int(i >= 2)  # 2 reals, 4 fakes; fakes brighter
            frames = [np.clip(f.astype(int) + 40 * label, 0, 255).astype(np.uint8) for f in face_frames(8, seed=i)]
            rows.append({"video_id": f"{ds}/v{i}", "path": str(write_video(root / "videos" / f"{ds}{i}.mp4", frames)),
                         "label": label, "split": "val" if i in (0, 5) else "train", "dataset": ds,
                         "method": "fake" if label else "real", "group": f"{ds}{i}"})
    table = make_table(rows)
    paths = RunPaths.of(params).ensure()
    write_table(table, paths.index_file("all"))
    build_cache(table, params.preprocess, paths.cache_root, progress=False)
    pretrain_backbone(params, progress=False)  # what notebook 00 does last on the smoke profile
    return params


@pytest.fixture(scope="module")
def stage1(stage_params):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared CPU: threads only contend
    try:
        return run_stage(stage_params, "ll", "stage1", progress=False)
    finally:
        torch.set_num_threads(n)


def test_a_finished_stage_leaves_an_fp16_export_recorded_in_done_json(stage_params, stage1):
    assert not stage1["skipped"] and stage1["history"]
    done = done_record(stage_params, "ll", "stage1")
    assert done["settings"] == stage_settings(stage_params, "stage1")   # what the staleness check compares
    assert changed_stage_settings(stage_params, "ll", "stage1") == {}
    export = done["export"]
    rdir = RunPaths.of(stage_params).run_dir("ll", "stage1")
    assert export == stage1["export"] and export["path"] == str(rdir / EXPORT)
    assert export["source"] == done["best"] and export["dtype"] == "float16"
    weights = load_checkpoint(export["path"])["model"]
    best = load_checkpoint(done["best"])["model"]
    assert weights.keys() == best.keys()
    assert all(w.dtype == (torch.float16 if b.is_floating_point() else b.dtype) for w, b in zip(
        weights.values(), best.values()))
    fp16_bytes = sum(w.numel() * w.element_size() for w in weights.values())
    assert fp16_bytes <= export["bytes"] < fp16_bytes * 1.1  # half the fp32 weights (plus a small index)
    plain = create_model("ll", backbone="test_efficientnet", pretrained=False, **stage_params.train.model_config)
    plain.load_state_dict({k: v.to(best[k].dtype) for k, v in weights.items()})


def test_train_command_rejects_an_unknown_model_or_stage(stage_params, capsys):
    args = ["train", "--profile", "smoke", "--overrides", json.dumps(overrides_for(stage_params.output_dir))]
    assert cli_main(args + ["--model", "zz", "--stage", "stage1"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'zz'" in err and "'ll'" in err and "Traceback" not in err
    assert cli_main(args + ["--model", "ll", "--stage", "stage9"]) == 2
    assert "no train.stages.stage9" in capsys.readouterr().err
    assert cli_main(["train", "--profile", "smoke", "--overrides", "{batch: 8}", "--model", "ll",
                     "--stage", "stage1"]) == 2
    assert "--overrides expects a JSON object" in capsys.readouterr().err
    # a finished stage is skipped, through the command too
    assert cli_main(args + ["--model", "ll", "--stage", "stage1", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] is True


def test_unfreeze_schedule_reaches_the_train_config(stage_params):
    p = load_params("smoke", overrides={**overrides_for(stage_params.output_dir),
                                        "train.unfreeze_schedule": {"0": 0, "2": None}})
    assert train_config(p, p.train.stages["stage1"]).unfreeze_schedule == {0: 0, 2: None}
    with pytest.raises(ParamsError, match="epoch 0"):
        load_params("smoke", overrides={"train.unfreeze_schedule": {1: 1}})


def test_replay_mixes_earlier_training_videos_and_seen_validation_picks_the_checkpoint(stage_params, stage1,
                                                                                     monkeypatch):
    from interceptor_lib.pipeline import stages

    p = load_params("smoke", overrides={**overrides_for(stage_params.output_dir), "train.select_on": "seen",
                                        "train.stages.stage2.replay": 0.4})
    assert stages.earlier_datasets(p, "stage2") == ["ffpp"] and stages.earlier_datasets(p, "stage1") == []
    seen = {}

    class Spy:
        def __init__(self, model, train_set, val_set, cfg, *a, **k):
            seen.update(train=train_set.table, strata=train_set.strata, val=val_set.table, replay=cfg.replay)
            raise RuntimeError("spy")

    monkeypatch.setattr(stages, "Trainer", Spy)
    with pytest.raises(RuntimeError, match="spy"):
        run_stage(p, "ll", "stage2", progress=False)
    train, val = seen["train"], seen["val"]
    assert seen["replay"] == 0.4 and seen["strata"] is not None
    own, replayed = train[train["stratum"] == 0], train[train["stratum"] == 1]
    assert set(own["dataset"]) == {"celebdf"} and set(replayed["dataset"]) == {"ffpp"}
    assert set(train["split"]) == {"train"}  # earlier stages' validation / test videos are never trained on
    assert set(val["dataset"]) == {"ffpp", "celebdf"} and set(val["split"]) == {"val"}
    # without replay: no replay rows; select_on stage: validation on the stage's own dataset
    seen.clear()
    off = {**overrides_for(stage_params.output_dir), "train.select_on": "stage", "train.stages.stage2.replay": 0.0}
    with pytest.raises(RuntimeError, match="spy"):
        run_stage(load_params("smoke", overrides=off), "ll", "stage2", progress=False)
    assert seen["strata"] is None and set(seen["val"]["dataset"]) == {"celebdf"}
    with pytest.raises(ParamsError, match="replay"):
        load_params("smoke", overrides={"train.stages.stage2.replay": 1.0})
    with pytest.raises(ParamsError, match="select_on"):
        load_params("smoke", overrides={"train.select_on": "test"})


def test_model_config_reaches_every_built_model_and_bad_keys_are_named(tmp_path):
    from interceptor_lib.pipeline.stages import build_model

    p = load_params("smoke", overrides={"output_dir": str(tmp_path), "train.pretext.steps": 0, "train.pretrained": False,
                                        "train.model_config": {"hidden": [32], "dropout": [0.2]}})
    model = build_model(p, "tm", None)
    linears = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [32, 2]
    assert list(model.config.hidden) == [32]  # saved with the checkpoint, so evaluation rebuilds the same head
    with pytest.raises(ParamsError, match="has no option.*'hiden'"):
        load_params("smoke", overrides={"train.model_config": {"hiden": [32]}})
    with pytest.raises(ParamsError, match="train.backbone"):
        load_params("smoke", overrides={"train.model_config": {"backbone": "resnet18"}})


def test_a_fresh_model_is_drawn_from_params_seed_and_leaves_the_global_rng_alone(tmp_path):
    """Two runs of a stage (two processes) must start from the same weights: the head (and a
    random-init backbone) are drawn from params.seed, not from whatever the global RNG holds."""
    from interceptor_lib.pipeline.stages import build_model

    random_init = {"output_dir": str(tmp_path), "train.pretext.steps": 0, "train.pretrained": False}
    p = load_params("smoke", overrides=random_init)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_model(p, "ll", None).state_dict()
    assert torch.equal(torch.rand(3), before)  # the caller's RNG stream is untouched
    torch.manual_seed(999)  # another global state: the same weights
    b = build_model(p, "ll", None).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = build_model(load_params("smoke", overrides={**random_init, "seed": 1}), "ll", None)
    assert any(not torch.equal(a[k], v) for k, v in other.state_dict().items() if v.is_floating_point())


def test_torchrun_command_runs_this_python():
    cmd = torchrun_command(4, "ll", "stage2", "/x/p.yaml", progress=False)
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert cmd[5:] == ["-m", "interceptor_lib", "train", "--params", "/x/p.yaml", "--model", "ll", "--stage",
                       "stage2", "--quiet"]


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")
def test_launch_stage_under_torchrun_with_two_processes(stage_params, stage1):
    params = load_params("smoke", overrides={**overrides_for(stage_params.output_dir), "train.time_budget_h": 1e-4})
    params.train.stages["stage2"].epochs = 2  # edits made after loading reach the workers (the snapshot)
    # 1e-4 h is already spent: both workers stop after epoch 1, rank 0 says why, the launcher raises it
    with pytest.raises(TrainingStopped, match="stopped \\(time budget\\)"):
        launch_stage(params, "ll", "stage2", profile="smoke", progress=False, nproc=2)
    assert done_record(params, "ll", "stage2") is None
    params.train.time_budget_h = None
    summary = launch_stage(params, "ll", "stage2", profile="smoke", progress=False, nproc=2)  # resumes epoch 2
    assert not summary["skipped"] and summary["init"] == stage1["best"]
    assert summary["stage_params"]["epochs"] == 2 and [h["epoch"] for h in summary["history"]] == [1, 2]
    rdir = RunPaths.of(params).run_dir("ll", "stage2")
    snapshot = load_params(path=rdir / LAUNCH_PARAMS)
    assert snapshot.train.stages["stage2"].epochs == 2 and snapshot.output_dir == params.output_dir
    state = load_checkpoint(summary["best"])
    assert state["config"]["world_size"] == 2 and not any(k.startswith("module.") for k in state["model"])
    assert load_checkpoint(summary["export"]["path"])["model"].keys() == state["model"].keys()
    assert launch_stage(params, "ll", "stage2", nproc=2)["skipped"]  # done: no second launch
    assert os.path.isfile(rdir / DONE_FILE)


def test_notebook_models_reads_one_several_or_all():
    from interceptor_lib.params import load_params
    from interceptor_lib.errors import InterceptorError
    from interceptor_lib.pipeline.launch import notebook_models

    p = load_params("smoke", check_paths=False)
    assert notebook_models(p, None) == p.train.models
    assert notebook_models(p, "tm") == ["tm"]
    assert notebook_models(p, "tm, ll") == ["tm", "ll"]
    with pytest.raises(InterceptorError, match="xx"):
        notebook_models(p, "ll,xx")


def test_the_pseudo_fake_run_of_stage1_trains_beside_the_chain_s_without_a_fake_and_resumes_as_a_stage(
        stage_params, stage1, monkeypatch):
    seen = []

    class Recording(stages.Trainer):
        def __init__(self, model, train_set, val_set, cfg, *a, **kw):
            seen.append((train_set, val_set, cfg))
            super().__init__(model, train_set, val_set, cfg, *a, **kw)

    monkeypatch.setattr(stages, "Trainer", Recording)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = train_comparison(stage_params, ["ll"], progress=False)
    finally:
        torch.set_num_threads(n)
    assert runs[("ll", "fakes")] == Path(stage1["best"])  # the chain's own stage 1: not trained again
    assert len(seen) == 1 and "stage1-pseudo" in runs[("ll", "pseudo")].parts
    train_set, val_set, cfg = seen[0]
    assert cfg.pseudo_fakes == "only"
    for ds in (train_set, val_set):  # trained and selected without one of the dataset's fakes
        assert (ds.table["label"] == 0).all() and ds.pseudo_items.any()
        assert (ds.labels == ds.pseudo_items).all()
    done = json.loads((RunPaths.of(stage_params).run_dir("ll", "stage1-pseudo") / "done.json").read_text())
    assert done["settings"]["train.stages.stage1.pseudo_fakes"] == "only"
    assert done["settings"]["train.pseudo_fakes.rgb_shift"] == stage_params.train.pseudo_fakes.rgb_shift
    assert "train.pseudo_fakes.rgb_shift" not in stage1["settings"]  # the chain's stage 1 makes none
    assert train_comparison(stage_params, ["ll"], progress=False) == runs and len(seen) == 1  # done: skipped
    # other transforms make the pseudo run stale, and only it
    changed = load_params("smoke", overrides={**overrides_for(stage_params.output_dir), "train.pseudo_fakes.rgb_shift": 5})
    with pytest.raises(InterceptorError, match="stage1-pseudo"):
        train_comparison(changed, ["ll"], progress=False)
    stale = stale_runs(changed)  # what ./run_all.sh checks before any work
    assert "runs/ll/stage1-pseudo" in stale and "runs/ll/stage1" not in stale  # the chain's makes no pseudo-fakes
