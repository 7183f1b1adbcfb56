"""The plan of the real-data chain (interceptor_lib.pipeline.plan, `python -m interceptor_lib plan`)."""

import json
import math

import pytest
import yaml

from interceptor_lib import cli
from interceptor_lib.config.load import PARAMS_DIR
from interceptor_lib.params import load_params
from interceptor_lib.errors import InterceptorError
from interceptor_lib.pipeline.plan import make_plan
from interceptor_lib.pipeline.plan.sizes import planned_datasets, published_parts
from interceptor_lib.pipeline.plan.steps import frames_per_item
from interceptor_lib.training.throughput import measured, record

PLAN_KEYS = {"fits", "sessions", "steps", "total_gpu_h", "total_cpu_h", "gpu_sessions", "cpu_sessions",
             "gpu_share", "figures", "problems"}
SESSION_KEYS = {"kind", "steps", "gpu_h", "cpu_h", "peak_gb", "hours"}
STEP_KEYS = {"name", "kind", "items", "images", "cpu_h", "gpu_h", "gb"}


def kaggle(**overrides):
    return load_params("kaggle", overrides=overrides, check_paths=False)


def test_kaggle_published_plan_fits_every_session_budget():
    params = kaggle()
    d = make_plan(params).to_dict()
    assert d["fits"], d["problems"]
    assert set(d) == PLAN_KEYS
    for s in d["sessions"]:
        assert set(s) == SESSION_KEYS
        assert s["hours"] <= params.train.time_budget_h + 1e-6
        assert s["peak_gb"] <= params.train.storage_budget_gb + 1e-6
        assert s["gpu_h"] == 0 if s["kind"] == "cpu" else s["gpu_h"] > 0
    assert all(set(s) == STEP_KEYS for s in d["steps"])
    assert d["gpu_sessions"] <= math.ceil(d["total_gpu_h"] / 11) + 1
    # the cache (~39 GB published) cannot fit one 19 GB session: it is split over cache sessions
    assert d["cpu_sessions"] >= 3
    assert sum(s["gb"] for s in d["steps"] if s["kind"] == "preprocess") > 2 * params.train.storage_budget_gb
    # every video of the published sizes is preprocessed once: FF++ 1,000 + 5,000, DFDC 10 x 2,400
    steps = {s["name"]: s for s in d["steps"]}
    assert steps["preprocess ffpp"]["items"] == 6000
    assert sum(s["items"] for n, s in steps.items() if n.startswith("preprocess dfdc chunk")) == 24000
    # one training step per (model, DFDC chunk), then evaluate, the stage matrix, the robustness sweep and
    # notebook 10's pseudo-fake comparison (cm's stage 1 trained on pseudo-fakes, both runs scored)
    assert sum(n.startswith("train tm stage4 chunk") for n in steps) == 10
    assert [s["name"] for s in d["steps"][-5:]] == ["evaluate", "stage matrix", "robustness sweep",
                                                    "train cm stage1-pseudo", "pseudo-fake comparison"]
    # the sweep: 50 real and 50 fake test videos per dataset, clean and 7 perturbations x 5 levels
    r = params.evaluation.robustness
    assert steps["robustness sweep"]["items"] == 4 * r.videos_per_dataset * (1 + 7 * 5)
    # an epoch draws items_per_video per training video (6 epochs over FF++'s 720 + 3,600 training videos)
    per = params.train.items_per_video
    assert steps["train tm stage1"]["items"] == steps["train ll stage1"]["items"] == 6 * (720 + 3600) * per


def test_the_robustness_sweep_counts_its_re_encodes_and_the_stage_matrix_every_stage():
    params = kaggle()
    d = {s["name"]: s for s in make_plan(params).to_dict()["steps"]}
    sweep, matrix = d["robustness sweep"], d["stage matrix"]
    params.evaluation.robustness.perturbations = [p for p in params.evaluation.robustness.perturbations
                                                  if p != "video_compression"]
    without = {s["name"]: s for s in make_plan(params).to_dict()["steps"]}["robustness sweep"]
    # 400 videos x 5 levels re-encoded at plan.reencode_cpu_s_per_video on plan.cpu_cores
    reencode_h = 400 * 5 * params.plan.reencode_cpu_s_per_video / params.plan.cpu_cores / 3600
    assert sweep["gpu_h"] - without["gpu_h"] > 0.8 * reencode_h
    assert matrix["items"] == d["evaluate"]["items"] * len(params.train.stages)
    # the images through the network: every stage but the last (notebook 06 scored those checkpoints),
    # at matrix_items_per_video of evaluate's every cached item per video
    pp, k = params.preprocess, params.evaluation.matrix_items_per_video
    cached = {m: pp.frames_per_video if frames_per_item(params, m) == 1 else pp.clips_per_video for m in params.train.models}
    ratio = (sum(min(k, cached[m]) * frames_per_item(params, m) for m in cached)
             / sum(cached[m] * frames_per_item(params, m) for m in cached))
    assert matrix["images"] == pytest.approx(d["evaluate"]["images"] * ratio * (len(params.train.stages) - 1), rel=1e-3)
    params.evaluation.robustness.enabled = False
    params.evaluation.stage_matrix = False
    params.evaluation.pseudo_fakes.models = []
    names = [s["name"] for s in make_plan(params).to_dict()["steps"]]
    assert "robustness sweep" not in names and "stage matrix" not in names and names[-1] == "evaluate"


def test_pseudo_fakes_cost_the_loader_s_blending_and_the_comparison_trains_the_other_source_on_one_gpu():
    params = kaggle()
    d = {s["name"]: s for s in make_plan(params).to_dict()["steps"]}
    chain, pseudo = d["train cm stage1"], d["train cm stage1-pseudo"]
    assert pseudo["items"] == chain["items"] and pseudo["images"] == chain["images"]  # the same draws
    # the comparison's run is the chain's stage 1 on pseudo-fakes, trained on one GPU (no DDP)
    one_gpu = kaggle(**{"train.stages.stage1.pseudo_fakes": "only", "plan.gpus": 1})
    alone = {s["name"]: s for s in make_plan(one_gpu).to_dict()["steps"]}["train cm stage1"]
    assert pseudo["gpu_h"] == alone["gpu_h"] > chain["gpu_h"]
    parts, _ = published_parts(params, planned_datasets(params))
    assert d["pseudo-fake comparison"]["items"] == 2 * sum(p.n("test") for p in parts)  # cm's two runs
    # stage 1 on pseudo-fakes in the chain: every model pays for blending half its draws (and half the
    # validation items), and the comparison trains the fakes run instead
    on = kaggle(**{"train.stages.stage1.pseudo_fakes": "only"})
    e = {s["name"]: s for s in make_plan(on).to_dict()["steps"]}
    face = (224 / on.preprocess.face_size) ** 2
    blend_s = chain["items"] * 0.5 * on.plan.self_blend_ms_per_image / face / 1000 / on.train.num_workers
    assert e["train cm stage1"]["gpu_h"] - chain["gpu_h"] > blend_s / 3600 * 0.999
    assert "train cm stage1-fakes" in e and "train cm stage1-pseudo" not in e
    assert e["train ll stage1"]["gpu_h"] > d["train ll stage1"]["gpu_h"]
    assert e["train ll stage2"]["gpu_h"] == d["train ll stage2"]["gpu_h"]  # stage 2 makes none
    off = kaggle(**{"evaluation.pseudo_fakes.models": []})
    assert not any("pseudo" in s["name"] for s in make_plan(off).to_dict()["steps"])


def test_clip_models_draw_clip_len_frames_per_item_in_training_and_validation():
    params = kaggle()
    params.train.val_items_per_video = 4
    params.train.items_per_video = 2
    steps = {s["name"]: s for s in make_plan(params).to_dict()["steps"]}
    ll, tm = steps["train ll stage1"], steps["train tm stage1"]
    assert ll["images"] == 6 * (720 + 3600) * 2 + 6 * (140 + 700) * 4  # a frame per item; 4 per val video
    assert tm["images"] == params.preprocess.clip_len * ll["images"]
    assert tm["gpu_h"] > 4 * ll["gpu_h"]


def test_only_the_last_dfdc_chunk_pays_for_validation_when_chunk_validation_is_last():
    every = {s["name"]: s for s in make_plan(kaggle()).to_dict()["steps"]}
    last = {s["name"]: s for s in make_plan(kaggle(**{"train.chunk_validation": "last"})).to_dict()["steps"]}
    chunks = [n for n in every if n.startswith("train ll stage4 chunk")]
    assert len(chunks) == 10
    for n in chunks[:-1]:   # an earlier chunk trains the same items but scores no validation video
        assert last[n]["items"] == every[n]["items"] and last[n]["images"] == every[n]["items"]
        assert last[n]["images"] < every[n]["images"] and last[n]["gpu_h"] < every[n]["gpu_h"]
    assert last[chunks[-1]] == every[chunks[-1]]
    assert last["train ll stage1"] == every["train ll stage1"]   # a stage in one part validates as before


def test_a_step_that_cannot_fit_the_storage_budget_is_named_with_what_to_change():
    d = make_plan(kaggle(**{"train.storage_budget_gb": 0.1})).to_dict()
    assert not d["fits"]
    problem = next(p for p in d["problems"] if "train ll stage1" in p)
    assert "train.storage_budget_gb" in problem


def test_weekly_quota_is_a_problem_naming_what_to_change():
    d = make_plan(kaggle(**{"plan.weekly_gpu_quota_h": 1.0})).to_dict()
    assert not d["fits"]
    assert any("plan.weekly_gpu_quota_h" in p and "epochs" in p for p in d["problems"])


def test_a_measured_throughput_in_a_previous_output_replaces_the_params_figure(tmp_path):
    base = make_plan(kaggle()).to_dict()
    prev = tmp_path / "session1"
    record(prev, "train.images_per_s.tm", 30.0, 5000)  # a quarter of the params figure
    params = kaggle()
    params.train.previous_outputs = [str(prev)]
    d = make_plan(params).to_dict()
    assert d["figures"]["train.images_per_s.tm"] == {"value": 30.0, "source": "measured"}
    assert d["figures"]["train.images_per_s.ll"]["source"] == "params"
    assert d["total_gpu_h"] > base["total_gpu_h"]
    old = {s["name"]: s for s in base["steps"]}
    new = {s["name"]: s for s in d["steps"]}
    assert new["train tm stage1"]["gpu_h"] > old["train tm stage1"]["gpu_h"]
    assert new["train ll stage1"]["gpu_h"] == old["train ll stage1"]["gpu_h"]
    params.train.previous_outputs = str(prev)  # one folder as a string is accepted too
    assert make_plan(params).to_dict()["figures"]["train.images_per_s.tm"]["source"] == "measured"


def test_throughput_record_merges_and_the_first_root_wins(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    record(a, "eval.images_per_s", 100.0, 1)
    record(a, "eval.images_per_s", 200.0, 3)  # running mean weighted by n
    record(a, "train.images_per_s.ll", 50.0, 10)
    record(b, "eval.images_per_s", 999.0, 1)
    record(b, "preprocess.cpu_s_per_video.dfdc.original", 20.0, 7)
    stored = json.loads((a / "reports" / "throughput.json").read_text())
    assert stored["eval.images_per_s"] == {"value": 175.0, "n": 4}
    assert measured([a, None, b, tmp_path / "missing"]) == {
        "eval.images_per_s": 175.0, "train.images_per_s.ll": 50.0, "preprocess.cpu_s_per_video.dfdc.original": 20.0}
    with pytest.raises(InterceptorError):
        record(a, "eval.images_per_s", 0.0, 1)


def test_sizes_data_reads_the_index_table(tmp_path):
    params = kaggle(output_dir=str(tmp_path))
    with pytest.raises(InterceptorError, match="--sizes published"):
        make_plan(params, sizes="data")
    rows = []

    def add(dataset, split, label, n, chunk=-1):
        rows.extend([(dataset, split, label, chunk)] * n)

    for ds in ("ffpp", "celebdf", "wilddeepfake"):
        add(ds, "train", 0, 10)
        add(ds, "train", 1, 40)
        add(ds, "val", 0, 2)
        add(ds, "val", 1, 8)
        add(ds, "test", 0, 3)
        add(ds, "test", 1, 7)
    add("dfdc", "train", 0, 5, chunk=1)    # 1 real : 5 fakes
    add("dfdc", "train", 1, 25, chunk=1)
    add("dfdc", "train", 0, 20, chunk=3)   # balanced: trained (and cached) first
    add("dfdc", "train", 1, 20, chunk=3)
    add("dfdc", "val", 0, 4, chunk=3)
    add("dfdc", "val", 1, 6, chunk=1)
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "all.csv").write_text(
        "dataset,split,label,chunk\n" + "".join(f"{d},{s},{l},{c}\n" for d, s, l, c in rows))
    d = make_plan(params, sizes="data").to_dict()
    steps = {s["name"]: s for s in d["steps"]}
    assert steps["preprocess ffpp"]["items"] == 70
    assert steps["preprocess dfdc chunk 3"]["items"] == 44
    assert steps["preprocess dfdc chunk 1"]["items"] == 36
    names = [s["name"] for s in d["steps"]]
    assert names.index("preprocess dfdc chunk 3") < names.index("preprocess dfdc chunk 1")
    assert names.index("train ll stage4 chunk 3") < names.index("train ll stage4 chunk 1")
    per = params.train.items_per_video
    assert steps["train ll stage1"]["items"] == 50 * per * params.train.stages["stage1"].epochs
    assert steps["train ll stage4 chunk 1"]["items"] == 30 * per * params.train.stages["stage4"].epochs
    assert d["fits"] and d["cpu_sessions"] == 1 and d["gpu_sessions"] == 1


def test_a_step_longer_than_a_session_is_split_and_hours_are_conserved():
    # the robustness sweep does not resume: in 2 h sessions it is a problem of its own (below)
    over = {"train.models": ["tm"], "train.stages.stage1.epochs": 30, "evaluation.robustness.enabled": False}
    whole = make_plan(kaggle(**over)).to_dict()
    short = kaggle(**over, **{"train.time_budget_h": 2.0})
    d = make_plan(short).to_dict()
    long_step = next(s for s in d["steps"] if s["name"] == "train tm stage1")
    assert long_step["gpu_h"] > 2.0 - short.plan.session_overhead_h  # longer than a session leaves
    holding = [s for s in d["sessions"] if any(n.startswith("train tm stage1") for n in s["steps"])]
    assert len(holding) >= 2
    assert "continues" in holding[0]["steps"][-1] and "continued" in holding[1]["steps"][0]
    assert all(s["hours"] <= 2.0 + 1e-6 for s in d["sessions"])
    gpu = [s for s in d["sessions"] if s["kind"] == "gpu"]
    assert sum(s["gpu_h"] for s in gpu) == pytest.approx(d["total_gpu_h"], abs=1e-3)
    assert d["total_gpu_h"] == pytest.approx(whole["total_gpu_h"], abs=1e-3)
    assert sum(s["hours"] for s in gpu) == pytest.approx(d["total_gpu_h"] + len(gpu) * short.plan.session_overhead_h,
                                                         abs=1e-3)
    cpu = [s for s in d["sessions"] if s["kind"] == "cpu"]
    assert sum(s["cpu_h"] for s in cpu) == pytest.approx(d["total_cpu_h"], abs=1e-3)
    sweep = make_plan(kaggle(**{**over, "evaluation.robustness.enabled": True, "train.time_budget_h": 2.0})).to_dict()
    assert not sweep["fits"]
    assert any(p.startswith("robustness sweep takes") and "evaluation.robustness" in p for p in sweep["problems"])


def test_more_gpus_shorten_training_but_not_evaluation():
    one, two = (make_plan(kaggle(**{"plan.gpus": n})).to_dict() for n in (1, 2))
    s1, s2 = ({s["name"]: s for s in d["steps"]} for d in (one, two))
    assert s2["train tm stage1"]["gpu_h"] < s1["train tm stage1"]["gpu_h"]
    assert s2["evaluate"]["gpu_h"] == s1["evaluate"]["gpu_h"]


def test_cli_plan_json_and_exit_status(tmp_path, capsys):
    assert cli.main(["plan", "--profile", "kaggle", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == PLAN_KEYS and d["fits"]
    raw = yaml.safe_load((PARAMS_DIR / "kaggle.yaml").read_text())
    raw["train"]["storage_budget_gb"] = 0.1
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["plan", "--params", str(path), "--sizes", "published"]) == 1
    text = capsys.readouterr().out
    assert "train.storage_budget_gb" in text and "DOES NOT FIT" in text


def test_the_readme_quotes_the_kaggle_plan_as_the_command_prints_it():
    """README's plan block is `plan --profile kaggle --markdown` (published sizes, the params' figures):
    a change of params or of the planner that changes the plan must change the README too."""
    from interceptor_lib import REPO_ROOT
    from interceptor_lib.pipeline.plan import format_plan_markdown

    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("<!-- plan:begin -->\n", 1)[1].split("<!-- plan:end -->", 1)[0].strip()
    assert block == format_plan_markdown(make_plan(kaggle(), "published")).strip()
