"""The research evaluation on a small real cache: the stage x test-set matrix (one row per model x
stage x test set, each earlier stage's own checkpoint really scored), the robustness sweep (every
model and the ensemble, clean and perturbed, the distortion growing with the level) and the
pseudo-fake comparison (both runs scored on every test set, the families judged)."""

import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score
from media import face_frames, write_video

from interceptor_lib.data.cache import build_cache
from interceptor_lib.data.table import make_table, write_table
from interceptor_lib.ensemble.combine import state_hash
from interceptor_lib.ensemble.store import load_member, save_ensemble_config
from interceptor_lib.layout import RunPaths
from interceptor_lib.models import create_model
from interceptor_lib.params import load_params
from interceptor_lib.pipeline import robustness as R
from interceptor_lib.pipeline.evaluate import item_predictions
from interceptor_lib.pipeline import stage_matrix as S
from interceptor_lib.training.checkpoint import save_checkpoint

MODELS = ["ll", "tm"]
STAGES = {"stage1": "ffpp", "stage2": "celebdf"}


def _video(d, name, seed, fake):
    frames = face_frames(20, seed=seed)
    if fake:  # a visible artifact: a brighter, slightly blurred face region
        frames = [np.clip(f.astype(int) + 25, 0, 255).astype(np.uint8) for f in frames]
    return write_video(d / f"{name}.mp4", frames, fps=25, crf=18)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder of 2 models x 2 stages (random weights), an index of 2 datasets with a real and
    a fake validation video and 2 real and 2 fake test videos each, their crop cache, and a params file."""
    d = tmp_path_factory.mktemp("research")
    out = d / "outputs"
    spec = {"extends": "smoke", "output_dir": str(out), "demo_data": {"generate": False},
            "datasets": {ds: {"root": str(d)} for ds in STAGES.values()},
            "train": {"models": MODELS, "stages": {s: {"dataset": ds, "epochs": 1} for s, ds in STAGES.items()}},
            "evaluation": {"matrix_items_per_video": 2,
                           "robustness": {"perturbations": ["blur", "video_compression"], "levels": [1, 5],
                                          "items_per_video": 1}}}
    (d / "p.yaml").write_text(yaml.safe_dump(spec))
    params = load_params(path=d / "p.yaml", check_paths=False)
    rows, seed = [], 0
    for ds in STAGES.values():
        for split, n in (("val", 1), ("test", 2)):
            for label in (0, 1):
                for i in range(n):
                    vid = f"{ds}/{split}-{label}-{i}"
                    seed += 1
                    rows.append({"video_id": vid, "path": str(_video(d, vid.replace("/", "_"), seed, label)),
                                 "label": label, "split": split, "dataset": ds, "method": "real" if label == 0 else "x",
                                 "group": vid, "chunk": -1})
    table = make_table(rows)
    paths = RunPaths.of(params).ensure()
    write_table(table, paths.index_file("all"))
    build_cache(table, params.preprocess, paths.cache_root, progress=False)
    for i, model in enumerate(MODELS):
        for j, stage in enumerate(STAGES):
            torch.manual_seed(10 * i + j)
            m = create_model(model, backbone="test_efficientnet", pretrained=False)
            if j:  # the later stage continues from the earlier one's trunk, as training does
                m.backbone.model.load_state_dict(first.trunk_state(), strict=False)
            else:
                first = m
            ckpt = paths.run_dir(model, stage) / "checkpoints" / "epoch-001"
            save_checkpoint(ckpt, {"model": m.state_dict(), "config": {"model_name": model, "model": asdict(m.config)}})
            (paths.run_dir(model, stage) / "done.json").write_text(json.dumps({"best": str(ckpt)}))
    return params


def test_the_stage_matrix_has_a_row_per_model_stage_and_test_set_and_scores_each_stage_s_checkpoint(run, monkeypatch):
    matrix = S.stage_matrix(run)
    members = matrix[matrix["model"] != "ensemble"]
    assert len(members) == len(MODELS) * len(STAGES) * len(STAGES)  # models x stages x test sets
    assert not members.duplicated(["model", "stage", "test_set"]).any()
    assert set(matrix.loc[matrix["model"] == "ensemble", "stage"]) == set(STAGES)
    assert {"model", "stage", "test_set", "frame_auc", "video_auc", "tnr", "tpr"} <= set(matrix.columns)
    assert ((members["video_auc"] >= 0) & (members["video_auc"] <= 1)).all()
    assert (members["n_real"] == 2).all() and (members["n_fake"] == 2).all() and (members["items_per_video"] == 2).all()
    # each row names the checkpoint it scored, and the tensors scored are that checkpoint's
    for (model, stage), g in members.groupby(["model", "stage"]):
        ckpt = RunPaths.of(run).run_dir(model, stage) / "checkpoints" / "epoch-001"
        assert set(g["checkpoint"]) == {str(ckpt)}
        assert set(g["weights_sha256"]) == {state_hash(load_member(ckpt).state_dict())}
    stage_hashes = members.groupby(["model", "stage"])["weights_sha256"].first()
    assert stage_hashes["ll", "stage1"] != stage_hashes["ll", "stage2"]
    assert (RunPaths.of(run).eval_dir / "stage_matrix.csv").is_file()
    # stage 1's threshold comes from FF++ validation alone, stage 2's from both datasets'
    assert S.seen_datasets(run, "stage1") == ["ffpp"] and S.seen_datasets(run, "stage2") == ["ffpp", "celebdf"]
    gains = S.stage_gains(matrix)
    assert set(gains["stage"]) == {"stage2"} and set(gains["model"]) == set(MODELS) | {"ensemble"}
    row = gains[gains["model"] == "ll"].iloc[0]
    ll = members[members["model"] == "ll"].set_index(["stage", "test_set"])["video_auc"]
    assert row["gain"] == pytest.approx(ll["stage2", "celebdf"] - ll["stage1", "celebdf"])
    assert row["forgetting"] == pytest.approx(ll["stage1", "ffpp"] - ll["stage2", "ffpp"])
    # with notebook 06's predictions of the last stage's checkpoints at hand, they are reused, not
    # scored again, and give the same matrix
    item_predictions(run)
    scored = []
    real = S.member_item_probs
    monkeypatch.setattr(S, "member_item_probs", lambda ens, *a, **k: scored.extend(ens.names) or real(ens, *a, **k))
    again = S.stage_matrix(run, write=False)
    assert sorted(scored) == ["ll@stage1", "tm@stage1"]
    cols = ["model", "stage", "test_set", "frame_auc", "video_auc", "tnr", "tpr", "weights_sha256"]
    pd.testing.assert_frame_equal(again[cols], matrix[cols], atol=1e-6)
    table = S.cross_dataset_protocol(matrix, synthetic=True)
    ours = table[table["detector"].str.startswith("ours")]
    assert ours["detector"].str.contains("not comparable").all() and len(ours) == 2 * len(MODELS) + 1  # + the ensemble, video only
    assert table["source"].str.contains("DeepfakeBench").any()


def test_the_robustness_sweep_scores_every_model_and_the_ensemble_clean_and_perturbed(run):
    paths = RunPaths.of(run)
    last = {m: paths.run_dir(m, "stage2") / "checkpoints" / "epoch-001" for m in MODELS}
    save_ensemble_config(run.output_dir, last, {"ll": 0.5, "tm": 0.5}, threshold=0.5, temperature=1.0,
                         combination="logit", vote_tau=0.5)
    sweep = R.robustness_sweep(run, progress=False)
    models = MODELS + ["ensemble"]
    conditions = 2 * (1 + 2)  # perturbations x (clean + 2 levels)
    assert len(sweep) == len(models) * len(STAGES) * conditions
    assert set(sweep["model"]) == set(models) and set(sweep["level"]) == {0, 1, 5}
    assert {"model", "perturbation", "level", "test_set", "video_auc"} <= set(sweep.columns)
    clean = sweep[sweep["level"] == 0]
    # the clean videos are scored once: every perturbation's level 0 is the same numbers
    a, b = (clean[clean["perturbation"] == p].set_index(["model", "test_set"])["video_auc"] for p in ("blur", "video_compression"))
    assert a.equals(b)
    for name, g in sweep.groupby("perturbation"):
        psnr = g.groupby("level")["psnr_db"].first()
        assert psnr[0] == np.inf and psnr[1] > psnr[5], (name, psnr)
    assert sweep.loc[sweep["level"] == 5, "parameter"].tolist()[0] in (21, 40)
    assert not (paths.eval_dir / "robustness_tmp").exists()  # the re-encoded entries are removed
    summary = R.robustness_summary(sweep)
    assert set(summary["perturbation"]) == {"blur", "video_compression"}
    assert set(summary["best_specialist"]) <= set(MODELS)
    assert "blur:" in R.summary_line(summary)
    assert (paths.eval_dir / "robustness.csv").is_file()
    assert [p.name for p in R.write_figures(run, sweep)] == ["blur.png", "video_compression.png"]


def test_the_pseudo_fake_comparison_scores_both_runs_on_every_test_set_and_judges_the_families(run):
    from interceptor_lib.pipeline import pseudo_fakes as PF
    paths = RunPaths.of(run)
    runs = {("ll", "pseudo"): paths.run_dir("ll", "stage2") / "checkpoints" / "epoch-001",
            ("ll", "fakes"): paths.run_dir("ll", "stage1") / "checkpoints" / "epoch-001"}
    item_predictions(run)  # notebook 06's predictions at hand must not stand in for another run's
    table, families = PF.compare(run, runs)
    assert families is None  # no demo corpus, no artifact families
    assert len(table) == 2 * len(STAGES) and set(table["source"]) == {"pseudo", "fakes"}
    assert table.loc[table["seen"], "test_set"].unique().tolist() == ["ffpp"]  # stage 1's dataset
    assert (table["n_real"] == 2).all() and (table["n_fake"] == 2).all()
    # each run's own checkpoint: its AUC is what that model scores on the test set's videos
    items = S.score_checkpoints(run, {("ll", "x"): runs["ll", "pseudo"]}, run.evaluation.pseudo_fakes.items_per_video,
                                reuse_saved=False)[0]
    v = items[(items["split"] == "test") & (items["dataset"] == "celebdf")].groupby("video_id")[["label", "prob"]].mean()
    got = table.set_index(["source", "test_set"]).loc[("pseudo", "celebdf"), "video_auc"]
    assert got == pytest.approx(roc_auc_score(v["label"], v["prob"]))
    assert pd.read_csv(RunPaths.of(run).eval_dir / "pseudo_fakes.csv")[["model", "source", "test_set", "video_auc"]] \
        .equals(table[["model", "source", "test_set", "video_auc"]])
    wide = PF.side_by_side(table)
    assert (wide["gain"] == wide["pseudo"] - wide["fakes"]).all()
    assert "unseen test sets" in PF.summary(table)


def test_family_verdicts_pool_the_unseen_test_sets_and_name_caught_and_missed_families():
    from interceptor_lib.pipeline import pseudo_fakes as PF
    # 4 reals per unseen set; "lighting" fakes scored high by the pseudo run, "temporal" like the reals
    rows = []
    for ds in ("ffpp", "celebdf", "dfdc"):
        for i in range(4):
            rows.append({"dataset": ds, "label": 0, "artifact": "none", "ll@pseudo": 0.1 + 0.1 * i, "ll@fakes": 0.2})
        rows.append({"dataset": ds, "label": 1, "artifact": "lighting", "ll@pseudo": 0.9, "ll@fakes": 0.1})
        rows.append({"dataset": ds, "label": 1, "artifact": "temporal", "ll@pseudo": 0.25, "ll@fakes": 0.9})
    f = PF.family_verdicts(pd.DataFrame(rows), {("ll", "pseudo"): None, ("ll", "fakes"): None}, trained_on="ffpp")
    f = f.set_index(["source", "family"])
    assert f.loc[("pseudo", "lighting"), "verdict"] == "caught" and f.loc[("pseudo", "lighting"), "auc"] == 1.0
    assert f.loc[("pseudo", "temporal"), "verdict"] == "missed"
    assert (f["n_real"] == 8).all() and (f["n_fake"] == 2).all()  # FF++ (trained on) left out
    assert PF.verdict(0.7) == "partly"
