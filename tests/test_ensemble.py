"""The ensemble: shared-trunk parity with the members run alone, grouping by trunk weights, weights
fitted on validation, uncertainty, and the config file round trip."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from interceptor_lib.ensemble.combine import Ensemble, EnsembleError, soft_or_vote, trunk_hash
from interceptor_lib.ensemble.fit import (AUDIO_PRIOR_VIDEOS, choose_threshold, choose_vote_tau, ensemble_probs,
                                          fit_ensemble, fit_weights)
from interceptor_lib.ensemble.store import find_member_checkpoints, load_ensemble, load_member, save_ensemble_config
from interceptor_lib.layout import RunPaths
from interceptor_lib.models import create_model, list_models
from interceptor_lib.training.checkpoint import save_checkpoint

SIZE = 64


def make(name, seed=0, **kw):
    torch.manual_seed(seed)
    return create_model(name, backbone="test_efficientnet", pretrained=False, **kw).eval()


def copy_trunk(src, dst):
    res = dst.backbone.model.load_state_dict(src.trunk_state(), strict=False)
    assert not res.unexpected_keys


@pytest.fixture(scope="module")
def six():
    """The six specialists, random heads, one trunk (copied from the first), eval mode."""
    members = {n: make(n, seed=i) for i, n in enumerate(list_models("specialist"))}
    first = next(iter(members.values()))
    for m in members.values():
        copy_trunk(first, m)
    return members


def batch(b=2, t=4, size=SIZE, seed=0):
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(b, t, 3, size, size, generator=g)
    return {"clip": clip, "image": torch.randn(b, 3, size, size, generator=g),
            "audio": torch.randn(b, 8000, generator=g) * 0.1, "has_audio": torch.tensor([True, False][:b])}


def test_shared_trunk_equals_members_run_alone(six):
    ens = Ensemble(six).eval()
    groups = ens.trunk_groups()
    assert [sorted(g["members"]) for g in groups] == [["bg", "cm", "ll", "rr"], ["av", "tm"]]
    assert all(g["shared"] for g in groups) and len({g["trunk_hash"] for g in groups}) == 1
    x = batch()
    with torch.inference_mode():
        out = ens(x)
        alone = torch.stack([m(x)["prob"] for m in six.values()], 1)
        unshared = Ensemble(six, share_trunk=False).eval()(x)
    assert out["member_probs"].shape == (2, 6)
    assert torch.allclose(out["member_probs"], alone, atol=1e-5, rtol=0)
    assert torch.allclose(out["prob"], unshared["prob"], atol=1e-5, rtol=0)
    assert torch.allclose(out["prob"], alone.mean(1), atol=1e-5, rtol=0)
    # logits agree with prob: softmax(logits)[:, 1] == prob
    assert torch.allclose(torch.softmax(out["logits"], 1)[:, 1], out["prob"], atol=1e-5)


def test_image_members_on_the_clips_frames_share_one_trunk_run(six):
    """The benchmark's layout: image = the clips' frames; one trunk run serves all six."""
    ens = Ensemble(six).eval()
    x = batch()
    x["image"] = x["clip"].flatten(0, 1)
    calls = []
    first = ens.members[ens.trunk_groups()[0]["members"][0]]
    handle = first.backbone.units[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.inference_mode():
            out = ens(x)
            calls.clear()
            ens(x)
    finally:
        handle.remove()
    assert len(calls) == 1  # the stem ran once for the six members
    with torch.inference_mode():
        alone = [m(x)["prob"] for m in six.values()]
    alone = torch.stack([p.view(2, 4).mean(1) if len(p) == 8 else p for p in alone], 1)
    assert torch.allclose(out["member_probs"], alone, atol=1e-5, rtol=0)


def test_different_trunk_weights_are_not_grouped():
    a, b, c = make("ll", seed=1), make("bg", seed=2), make("cm", seed=3)
    copy_trunk(a, c)
    assert trunk_hash(a) != trunk_hash(b) and trunk_hash(a) == trunk_hash(c)
    ens = Ensemble({"ll": a, "bg": b, "cm": c}).eval()
    assert sorted(sorted(g["members"]) for g in ens.trunk_groups()) == [["bg"], ["cm", "ll"]]
    # a different trunk depth is another group even with equal weights
    d = make("rr", seed=4, trainable_stages=3)
    copy_trunk(a, d)
    ens = Ensemble({"ll": a, "rr": d})
    assert len(ens.trunk_groups()) == 2
    x = batch()
    with torch.inference_mode():
        out = ens(x)
    assert torch.allclose(out["member_probs"], torch.stack([a(x)["prob"], d(x)["prob"]], 1), atol=1e-5, rtol=0)


def test_regroup_after_loading_weights():
    a, b = make("ll", seed=1), make("bg", seed=2)
    ens = Ensemble({"ll": a, "bg": b})
    assert len(ens.trunk_groups()) == 2
    b_state = {**b.state_dict(), **{"backbone.model." + k: v for k, v in a.trunk_state().items()}}
    ens.load_state_dict({"members.ll." + k: v for k, v in a.state_dict().items()}
                        | {"members.bg." + k: v for k, v in b_state.items()})
    assert len(ens.trunk_groups()) == 1


def test_uncertainty_is_zero_when_members_agree_and_weighted_otherwise():
    ens = Ensemble({"ll": make("ll"), "bg": make("bg")}, weights={"ll": 3, "bg": 1})
    assert ens.weights == {"ll": 0.75, "bg": 0.25}
    agree = ens.combine(torch.tensor([[0.8, 0.8], [0.1, 0.1]]))
    assert torch.allclose(agree["uncertainty"], torch.zeros(2), atol=1e-6)
    assert torch.allclose(agree["prob"], torch.tensor([0.8, 0.1]))
    split = ens.combine(torch.tensor([[1.0, 0.0]]))
    assert split["prob"].item() == pytest.approx(0.75)
    assert split["uncertainty"].item() == pytest.approx(np.sqrt(0.75 * 0.25 ** 2 + 0.25 * 0.75 ** 2))
    # a subset (an image input: clip members skipped) renormalises the weights
    assert ens.combine(torch.tensor([[0.3]]), ["bg"])["prob"].item() == pytest.approx(0.3)
    with pytest.raises(EnsembleError, match="missing"):
        Ensemble({"ll": make("ll")}, weights={"bg": 1.0})


def test_items_average_frames_per_video():
    ens = Ensemble({"ll": make("ll"), "tm": make("tm")})
    x = batch(b=2)
    x["image"] = torch.randn(5, 3, SIZE, SIZE)
    x["image_item"] = torch.tensor([0, 0, 0, 1, 1])
    with torch.inference_mode():
        out = ens(x)
        p = ens.members["ll"](x)["prob"]
    assert torch.allclose(out["member_probs"][:, 0], torch.stack([p[:3].mean(), p[3:].mean()]), atol=1e-6)


def val_table(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    perfect = np.where(y == 1, 0.97, 0.03)
    noisy = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.25, n), 0, 1)
    random = rng.uniform(0, 1, n)
    return pd.DataFrame({"perfect": perfect, "noisy": noisy, "random": random}), y


@pytest.mark.parametrize("method", ["logit", "log_loss", "auc", "equal"])
def test_fit_weights_on_the_simplex_and_the_best_member_wins(method):
    df, y = val_table()
    w = fit_weights(df, y, method=method)
    assert set(w) == {"perfect", "noisy", "random"}
    assert all(v >= 0 for v in w.values()) and sum(w.values()) == pytest.approx(1.0)
    if method != "equal":
        assert w["perfect"] > w["noisy"] >= w["random"]
        assert w["perfect"] > 0.5


def test_fit_weights_log_loss_beats_equal_weights_and_shrinks():
    df, y = val_table(seed=1)

    def nll(w):
        p = np.clip(ensemble_probs(df, w)["prob"].to_numpy(), 1e-7, 1 - 1e-7)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    fitted = fit_weights(df, y)
    assert nll(fitted) <= nll(fit_weights(df, y, method="equal"))
    assert fitted["random"] < 0.05
    shrunk = fit_weights(df, y, shrink=0.3)
    assert shrunk["random"] >= 0.1 - 1e-9
    with pytest.raises(ValueError, match="one class"):
        fit_weights(df, np.ones(len(y), int))


def test_fit_ensemble_threshold_and_temperature():
    df, y = val_table(seed=2)
    fit = fit_ensemble(df, y)
    assert 0 <= fit["threshold"] <= 1 and fit["temperature"] > 0
    assert fit["val"]["balanced_accuracy"] > 0.9
    assert fit["members"]["perfect"]["auc"] == 1.0 and fit["members"]["random"]["weight"] < 0.05
    assert fit["combination"] == "logit"  # the default: log-odds voting
    # the perfect member ranks every video right with the plain mean: no sharper vote can do better
    assert fit["vote_tau"] is None and fit["vote_tau_scores"]["None"] == 1.0
    probs = ensemble_probs(df, fit["weights"], fit["temperature"], fit["combination"])["prob"]
    assert choose_threshold(y, probs) == pytest.approx(fit["threshold"])
    assert fit_ensemble(df, y, method="log_loss")["combination"] == "prob"


def two_specialists(n=120, seed=0):
    """Reals scored 0.2-0.6 by both members; each fake is caught with confidence by one member only
    (its own artifact) and scored 0.05-0.4 by the other."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2, int), np.ones(n // 2, int)]
    own = rng.integers(0, 2, n)
    a = np.where(y == 0, rng.uniform(0.2, 0.6, n), np.where(own == 0, 0.99, rng.uniform(0.05, 0.4, n)))
    b = np.where(y == 0, rng.uniform(0.2, 0.6, n), np.where(own == 1, 0.99, rng.uniform(0.05, 0.4, n)))
    return pd.DataFrame({"a": a, "b": b}), y


def test_log_odds_voting_keeps_a_confident_specialists_vote():
    from sklearn.metrics import roc_auc_score

    df, y = two_specialists()
    equal = {"a": 0.5, "b": 0.5}
    by_prob = ensemble_probs(df, equal, combination="prob")["prob"]
    by_logit = ensemble_probs(df, equal, combination="logit")["prob"]
    assert roc_auc_score(y, by_logit) == 1.0 > roc_auc_score(y, by_prob)
    # the module computes what the table function computes, temperature and vote temperature included
    for combination, tau in (("prob", None), ("logit", None), ("logit", 0.3)):
        ens = Ensemble({"a": make("ll"), "b": make("bg")}, {"a": 0.7, "b": 0.3}, temperature=1.7,
                       combination=combination, vote_tau=tau)
        out = ens.combine(torch.tensor(df[["a", "b"]].to_numpy()))
        ref = ensemble_probs(df, {"a": 0.7, "b": 0.3}, 1.7, combination, vote_tau=tau)
        assert np.allclose(out["prob"].numpy(), ref["prob"], atol=1e-6)
        assert np.allclose(out["prob_uncalibrated"].numpy(), ref["prob_uncalibrated"], atol=1e-6)
        assert np.allclose(out["uncertainty"].numpy(), ref["uncertainty"], atol=1e-6)
    with pytest.raises(EnsembleError, match="combination"):
        Ensemble({"a": make("ll")}, combination="max")
    for tau, combination in ((0.0, "logit"), (-1.0, "logit"), (float("inf"), "logit"), (0.5, "prob")):
        with pytest.raises(EnsembleError, match="vote_tau"):
            Ensemble({"a": make("ll")}, combination=combination, vote_tau=tau)


def test_soft_or_vote_lies_between_the_weighted_mean_and_the_largest_vote():
    g = torch.Generator().manual_seed(0)
    votes = torch.randn(50, 6, generator=g, dtype=torch.float64) * 3
    w = torch.rand(6, generator=g, dtype=torch.float64)
    w = w / w.sum()
    mean, top = votes @ w, votes.max(1).values
    assert torch.equal(soft_or_vote(votes, w, None), mean)
    prev = mean
    for tau in (100.0, 2.0, 1.0, 0.5, 0.2, 0.05):
        v = soft_or_vote(votes, w, tau)
        assert (v >= prev - 1e-9).all() and (v <= top + 1e-9).all()  # sharper: never lower, never above the max
        prev = v
    assert torch.allclose(soft_or_vote(votes, w, 1e4), mean, atol=1e-2)
    # as tau -> 0 the largest vote, less tau * log of its weight
    assert torch.allclose(soft_or_vote(votes, w, 1e-3), top, atol=1e-2)


def one_specialist_hears(n=80, seed=1):
    """Two datasets. "A" (2n videos): fakes shown to members v1 and v2 (the visual ones), `s` blind to
    them. "B" (n videos): as A, except that a quarter of its fakes are shown only to `s` (its own
    family; v1 and v2 score them like reals). Weights fitted on both hear `s` little, since it adds
    nothing on most videos."""
    rng = np.random.default_rng(seed)
    rows = []
    for ds, m in (("A", 2 * n), ("B", n)):
        for i in range(m):
            fake = i >= m // 2
            own = ds == "B" and fake and i % 4 == 0
            v = [rng.uniform(0.4, 0.95) if fake and not own else rng.uniform(0.05, 0.6) for _ in range(2)]
            rows.append({"dataset": ds, "label": int(fake), "v1": v[0], "v2": v[1],
                         "s": 0.97 if own else rng.uniform(0.05, 0.6)})
    return pd.DataFrame(rows)


def test_fit_ensemble_chooses_a_soft_or_when_one_specialist_alone_sees_a_dataset_s_fakes():
    from sklearn.metrics import roc_auc_score

    df = one_specialist_hears()
    members, y, ds = df[["v1", "v2", "s"]], df["label"].to_numpy(), df["dataset"].to_numpy()
    b = ds == "B"
    fit = fit_ensemble(members, y, groups=ds, shrink=0.1)
    mean_fit = fit_ensemble(members, y, groups=ds, shrink=0.1, vote_taus=(None,))
    assert fit["vote_tau"] is not None and mean_fit["vote_tau"] is None
    with_or = ensemble_probs(members, fit["weights"], fit["temperature"], "logit", vote_tau=fit["vote_tau"])["prob"]
    mean = ensemble_probs(members, mean_fit["weights"], mean_fit["temperature"], "logit")["prob"]
    assert roc_auc_score(y[b], with_or[b]) > roc_auc_score(y[b], mean[b]) + 0.02
    # the choice is the best worst-dataset AUC of those tried, the mean first among equals
    tau, scores = choose_vote_tau(members, y, fit_weights(members, y, "logit", 0.1), ds)
    assert tau == fit["vote_tau"] and scores[str(tau)] == max(scores.values()) > scores["None"]
    # the lower the specialist's weight, the more the mean misses B's own fakes, the sharper the vote
    # chosen to hear them
    taus = []
    for w_s in (0.1, 0.02):
        tau, scores = choose_vote_tau(members, y, {"v1": (1 - w_s) / 2, "v2": (1 - w_s) / 2, "s": w_s}, ds)
        assert scores["None"] < 0.91 and scores[str(tau)] > 0.95
        taus.append(tau)
    assert taus[1] < taus[0]
    with pytest.raises(ValueError, match="groups"):
        choose_vote_tau(members, y, fit["weights"], ds[:-1])


def save_member(path, name, seed=0):
    m = make(name, seed=seed)
    from dataclasses import asdict

    save_checkpoint(path, {"model": m.state_dict(), "config": {"model_name": name, "model": asdict(m.config)}})
    return m


def test_config_round_trip_and_last_stage_checkpoints(tmp_path):
    out = tmp_path / "outputs"
    for name, stages in (("ll", ["stage1", "stage2"]), ("tm", ["stage1"])):
        for i, stage in enumerate(stages):
            ckpt = out / "runs" / name / stage / "checkpoints" / "epoch-001"
            save_member(ckpt, name, seed=i)
            (out / "runs" / name / stage / "done.json").write_text(json.dumps({"best": str(ckpt)}))
    found = find_member_checkpoints(RunPaths.at(out))
    assert found["ll"].parts[-3] == "stage2" and found["tm"].parts[-3] == "stage1"
    with pytest.raises(EnsembleError, match="no finished training stage"):
        find_member_checkpoints(RunPaths.at(out), ["ll", "bg"])

    with pytest.raises(EnsembleError, match="combination"):
        save_ensemble_config(out, found, None, threshold=0.4, combination="median")
    with pytest.raises(EnsembleError, match="vote_tau"):
        save_ensemble_config(out, found, None, threshold=0.4, combination="logit", vote_tau=-0.5)
    path = save_ensemble_config(out, found, {"ll": 2, "tm": 1}, threshold=0.4, temperature=1.5,
                                metadata={"profile": "test"}, combination="logit", vote_tau=0.5)
    assert path == out / "ensemble" / "ensemble.json"
    doc = json.loads(path.read_text())
    assert doc["members"]["ll"]["weight"] == pytest.approx(2 / 3) and doc["members"]["tm"]["input_kind"] == "clip"
    assert not doc["members"]["ll"]["checkpoint"].startswith("/")  # relative: the folder can move

    moved = tmp_path / "moved"
    out.rename(moved)
    ens = load_ensemble(moved)
    assert ens.names == ["ll", "tm"] and ens.threshold == 0.4 and ens.temperature == 1.5
    assert ens.combination == "logit" and ens.vote_tau == 0.5
    assert not ens.training
    with torch.inference_mode():
        out_ = ens(batch(b=2))
    assert out_["prob"].shape == (2,) and ((out_["prob"] >= 0) & (out_["prob"] <= 1)).all()

    with pytest.raises(EnsembleError, match="06_evaluation"):
        load_ensemble(tmp_path / "nothing-here")


def test_a_stage_fp16_export_loads_as_a_member(tmp_path):
    """done.json's fp16 weights-only export (model name and config in its metadata) rebuilds the model."""
    from dataclasses import asdict

    from interceptor_lib.training.checkpoint import export_weights

    m = make("tm", seed=5)
    path = export_weights(m.state_dict(), tmp_path / "best-fp16",
                          metadata={"model_name": "tm", "model_config": asdict(m.config)})
    loaded = load_member(path)
    assert loaded.model_name == "tm" and not loaded.training
    x = batch()
    with torch.inference_mode():
        assert torch.allclose(loaded(x)["prob"], m(x)["prob"], atol=2e-3)


# ----------------------------------------------------------------------------------------- inputs with audio

def audio_and_silent(n=240, seed=1):
    """Validation videos, a quarter with audio. "vis" sees the visual fakes everywhere; "av" is sure
    about the lip-sync fakes (audio videos only) and noise elsewhere."""
    rng = np.random.default_rng(seed)
    has = np.arange(n) % 4 == 0
    y = (rng.uniform(size=n) < 0.6).astype(int)
    lipsync = has & (y == 1) & (rng.uniform(size=n) < 0.5)  # visually clean fakes
    vis = np.where((y == 1) & ~lipsync, rng.uniform(0.6, 0.95, n), rng.uniform(0.05, 0.5, n))
    av = np.where(has, np.where(lipsync, rng.uniform(0.9, 0.99, n), rng.uniform(0.05, 0.3, n)),
                  rng.uniform(0.02, 0.98, n))
    return pd.DataFrame({"vis": vis, "av": av}), y, has


def test_fit_ensemble_gives_inputs_with_audio_their_own_weights():
    from sklearn.metrics import roc_auc_score

    df, y, has = audio_and_silent()
    # the plain mean of the votes, so that the comparison below is of the weight sets alone
    one = fit_ensemble(df, y, shrink=0.1, vote_taus=(None,))
    two = fit_ensemble(df, y, shrink=0.1, has_audio=has, vote_taus=(None,))
    assert one["audio"] is None and two["audio"] is not None and two["audio_note"] == ""
    assert two["audio"]["n_real"] == int((y[has] == 0).sum()) and two["audio"]["n_fake"] == int(y[has].sum())
    # where the av member is blind it gets little weight; where it sees, much more
    assert two["audio"]["weights"]["av"] > 0.3 > two["weights"]["av"]
    assert two["members"]["av"]["audio_weight"] == two["audio"]["weights"]["av"]
    # each set: its own fit, shrunk towards the fit on all videos as n : AUDIO_PRIOR_VIDEOS
    own, pooled = fit_weights(df[has], y[has], "logit", 0.1), fit_weights(df, y, "logit", 0.1)
    k = has.sum() / (has.sum() + AUDIO_PRIOR_VIDEOS)
    assert two["audio"]["weights"] == pytest.approx({n: k * own[n] + (1 - k) * pooled[n] for n in own})
    split = ensemble_probs(df, two["weights"], two["temperature"], two["combination"], has_audio=has,
                           audio_weights=two["audio"]["weights"], audio_temperature=two["audio"]["temperature"])
    pooled = ensemble_probs(df, one["weights"], one["temperature"], one["combination"])
    assert roc_auc_score(y, split["prob"]) > roc_auc_score(y, pooled["prob"]) + 0.02
    assert roc_auc_score(y[has], split["prob"][has]) > roc_auc_score(y[has], pooled["prob"][has])
    # rows without audio are scored by the other set exactly
    silent = ensemble_probs(df, two["weights"], two["temperature"], two["combination"])
    np.testing.assert_allclose(split["prob"][~has], silent["prob"][~has])
    # the one threshold is chosen on both kinds together
    assert choose_threshold(y, split["prob"], "balanced_accuracy") == pytest.approx(two["threshold"])


def test_fit_ensemble_keeps_one_weight_set_when_few_videos_have_audio():
    df, y, has = audio_and_silent()
    few = has & ((y == 1) | (np.cumsum(has & (y == 0)) <= 5))  # only 5 real videos with audio
    assert (few & (y == 0)).sum() == 5
    fit = fit_ensemble(df, y, has_audio=few)
    assert fit["audio"] is None and "5 real" in fit["audio_note"]
    assert fit["weights"] == fit_ensemble(df, y)["weights"]
    with pytest.raises(ValueError, match="has_audio"):
        fit_ensemble(df, y, has_audio=has[:-1])


def test_ensemble_module_uses_the_audio_weights_for_items_with_audio():
    df, y, has = audio_and_silent(n=12)
    members = {"vis": make("ll"), "av": make("av", seed=1)}
    w, wa = {"vis": 0.8, "av": 0.2}, {"vis": 0.3, "av": 0.7}
    for combination in ("prob", "logit"):
        ens = Ensemble(members, w, temperature=1.3, combination=combination, audio_weights=wa,
                       audio_temperature=0.8).eval()
        out = ens.combine(torch.tensor(df.to_numpy()), has_audio=torch.tensor(has))
        ref = ensemble_probs(df, w, 1.3, combination, has_audio=has, audio_weights=wa, audio_temperature=0.8)
        for k in ("prob", "prob_uncalibrated", "uncertainty"):
            assert np.allclose(out[k].numpy(), ref[k], atol=1e-6)
        assert not np.allclose(ref["prob"][has], ensemble_probs(df, w, 1.3, combination)["prob"][has])
    assert ens.weights_for(["vis"], audio=True) == {"vis": 1.0}
    assert ens.weights_for(audio=True) == pytest.approx(wa) and ens.weights_for() == pytest.approx(w)
    # forward reads has_audio per clip (items = clips here): the first clip has audio, the second not
    x = batch(b=2)
    with torch.inference_mode():
        got = ens(x)
        plain = Ensemble(members, w, temperature=1.3, combination="logit").eval()(x)
        audio = Ensemble(members, wa, temperature=0.8, combination="logit").eval()(x)
    assert torch.allclose(got["prob"][0], audio["prob"][0], atol=1e-6)
    assert torch.allclose(got["prob"][1], plain["prob"][1], atol=1e-6)
    assert not torch.allclose(plain["prob"][0], audio["prob"][0], atol=1e-4)


def test_audio_weights_survive_the_config_round_trip(tmp_path):
    out = tmp_path / "outputs"
    ckpts = {}
    for name in ("ll", "av"):
        ckpts[name] = out / "runs" / name / "stage1" / "checkpoints" / "epoch-001"
        save_member(ckpts[name], name)
    with pytest.raises(EnsembleError, match="temperature"):
        save_ensemble_config(out, ckpts, None, 0.5, audio={"weights": {"ll": 1, "av": 1}, "temperature": -1.0})
    with pytest.raises(EnsembleError, match="missing"):
        save_ensemble_config(out, ckpts, None, 0.5, audio={"weights": {"ll": 1}, "temperature": None})
    path = save_ensemble_config(out, ckpts, {"ll": 3, "av": 1}, 0.4, temperature=1.2, combination="logit",
                                audio={"weights": {"ll": 1, "av": 3}, "temperature": 0.9})
    doc = json.loads(path.read_text())
    assert doc["audio"]["weights"] == {"ll": 0.25, "av": 0.75} and doc["audio"]["temperature"] == 0.9
    ens = load_ensemble(out)
    assert ens.audio_weights == {"ll": 0.25, "av": 0.75} and ens.audio_temperature == 0.9
    assert ens.weights == {"ll": 0.75, "av": 0.25}
    from interceptor_lib.pipeline.evaluate import fit_from_config

    fit = fit_from_config(doc)  # what notebook 07 rebuilds the ensemble column from
    assert fit["combination"] == "logit" and fit["audio"]["weights"] == doc["audio"]["weights"]
    doc["audio"] = {"weights": "av"}
    path.write_text(json.dumps(doc))
    with pytest.raises(EnsembleError, match="'audio'"):
        load_ensemble(out)
