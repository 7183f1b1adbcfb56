"""Models: structure tests over tiny variants of every registered model (timm's test pattern).

Every model is built on timm's `test_efficientnet` (99k parameters) at 64 x 64 px, clips of T = 4,
batch 2-3, so the file runs in seconds on a CPU. Nothing here downloads anything.
"""

from __future__ import annotations

import dataclasses

import huggingface_hub
import numpy as np
import pytest
import scipy.fft
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from interceptor_lib.models import (BatchError, ModelConfigError, PretrainedWeightsMismatch, PretrainedWeightsMissing,
                                    ProgressiveUnfreezing, UnknownModelError, UnsupportedBackbone, attention_map,
                                    create_backbone, create_model, grad_cam, list_models, model_entry, param_groups,
                                    trainable_stages)
from interceptor_lib.models.size_report import size_table, to_markdown
from interceptor_lib.models.specialists.audio_visual import SYNC_GAIN, frame_alignment
from interceptor_lib.models.specialists.compression import BlockDCT
from interceptor_lib.models.specialists.log_mel import LogMel, mel_filterbank

TINY = "test_efficientnet"
SPECIALISTS = ["ll", "bg", "av", "cm", "rr", "tm"]
ALL = SPECIALISTS + ["effnet_b4", "dual_stream_v3", "xception"]


def tiny(name: str, **kw):
    torch.manual_seed(0)
    return create_model(name, backbone=kw.pop("backbone", TINY), pretrained=False, **kw)


def make_batch(model, B: int = 2, size: int = 64, T: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {"label": torch.arange(B) % 2, "video_id": [f"v{i}" for i in range(B)]}
    if model.input_kind == "image":
        batch["image"] = torch.randn(B, 3, size, size, generator=g)
    else:
        batch["clip"] = torch.randn(B, T, 3, size, size, generator=g)
        batch["audio"] = torch.randn(B, 8000, generator=g) * 0.1  # 0.5 s at 16 kHz
        batch["has_audio"] = torch.tensor([True, False, True][:B])  # both branches of AV run
    return batch


def train_step(model, batch, opt):
    model.train()
    loss = F.cross_entropy(model(batch)["logits"], batch["label"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    model.after_optimizer_step()
    return loss


# --------------------------------------------------------------------------------------- registry

def test_registry_holds_every_model_once():
    assert sorted(list_models()) == sorted(ALL)
    assert list_models("specialist") == SPECIALISTS
    assert {model_entry(n).input_kind for n in ("tm", "av")} == {"clip"}
    assert {model_entry(n).input_kind for n in ALL if n not in ("tm", "av")} == {"image"}


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(UnknownModelError) as e:
        create_model("resnet_lol")
    assert all(n in str(e.value) for n in ALL)


def test_unknown_option_is_named():
    with pytest.raises(ModelConfigError, match="backbon"):
        create_model("ll", backbon=TINY)


# --------------------------------------------------------------------------------------- contract

@pytest.mark.parametrize("name", ALL)
def test_prediction_contract(name):
    model = tiny(name).eval()
    batch = make_batch(model, B=3)
    with torch.no_grad():
        out = model(batch)
    assert out["logits"].shape == (3, 2)
    assert out["prob"].shape == (3,)
    assert out["features"].shape == (3, model.num_features)
    assert torch.isfinite(out["logits"]).all() and torch.isfinite(out["features"]).all()
    assert ((out["prob"] >= 0) & (out["prob"] <= 1)).all()
    torch.testing.assert_close(out["prob"], out["logits"].softmax(1)[:, 1])
    if name in SPECIALISTS:
        assert out["attention"].shape == (3, 7, 7)
        assert out["specialist_map"].shape[1] == model.specialist.out_channels
    assert set(model.data_config) >= {"mean", "std", "input_size"}


def test_specialist_channels_follow_seed_001():
    # the reference design's widths; av has one more: the fixed mouth-opening sync channel
    expected = {"ll": 68, "bg": 44, "av": 49, "cm": 40, "rr": 36, "tm": 52}
    for name, c in expected.items():
        model = tiny(name).eval()
        with torch.no_grad():
            s = model(make_batch(model))["specialist_map"]
        assert s.shape[1:] == (c, 7, 7), name


def test_wrong_batch_key_names_the_expected_one():
    model = tiny("ll")
    with pytest.raises(BatchError, match="image"):
        model({"clip": torch.randn(2, 4, 3, 64, 64)})
    with pytest.raises(BatchError, match="at least 2 frames"):
        tiny("tm")({"clip": torch.randn(2, 1, 3, 64, 64)})


def test_widths_follow_the_backbone():
    a, b = tiny("ll", backbone=TINY), tiny("ll", backbone="test_resnet")
    assert a.backbone.num_features == 256 and b.backbone.num_features == 96
    assert a.num_features - b.num_features == 256 - 96
    assert b.data_config["mean"] == (0.5, 0.5, 0.5)  # from test_resnet's pretrained_cfg
    for m in (a, b):
        m.eval()
        with torch.no_grad():
            assert m(make_batch(m))["features"].shape[1] == m.num_features


# --------------------------------------------------------------------------------------- freezing

@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_trainable_parameters_only(name):
    model = tiny(name).train()
    batch = make_batch(model, B=3)
    F.cross_entropy(model(batch)["logits"], batch["label"]).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{n} got no gradient"
        else:
            assert p.grad is None, f"frozen {n} got a gradient"
    assert any(not p.requires_grad for p in model.parameters()) == (name != "xception")


def test_trainable_stages_are_the_last_ones_plus_head_conv():
    model = tiny("ll", trainable_stages=2)
    bb = model.backbone
    flags = [any(p.requires_grad for p in u.parameters()) for u in bb.units]
    assert flags == [False] * (len(bb.units) - 3) + [True] * 3  # last 2 stages + head conv
    assert trainable_stages(model) == 2
    assert bb.trunk_depth == len(bb.units) - 3
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("backbone."))


@pytest.mark.parametrize("name", ["ll", "tm", "dual_stream_v3"])
def test_frozen_weights_and_bn_statistics_survive_a_training_step(name):
    model = tiny(name)
    frozen = {k: v.clone() for k, v in model.backbone.trunk_state().items()}
    assert any("running_mean" in k for k in frozen)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(param_groups(model))
    for seed in range(2):
        train_step(model, make_batch(model, B=3, seed=seed), opt)
    after = model.backbone.trunk_state()
    for k, v in frozen.items():
        assert torch.equal(v, after[k]), f"frozen {k} changed"
    params = dict(model.named_parameters())
    assert sum(not torch.equal(v, params[n]) for n, v in trainable.items()) > 0.9 * len(trainable)


def test_frozen_batchnorm_stays_in_eval_mode():
    model = tiny("ll").train()
    bb = model.backbone
    for unit in bb.units[: bb.trunk_depth]:
        assert all(not m.training for m in unit.modules())
    for unit in bb.units[bb.trunk_depth:]:
        assert all(m.training for m in unit.modules())
    assert model.head.training


def test_param_groups_carry_the_seed_learning_rates():
    model = tiny("cm")
    groups = {g["name"]: g for g in param_groups(model)}
    assert (groups["pretrained"]["lr"], groups["pretrained"]["weight_decay"]) == (1e-5, 1e-5)
    assert (groups["new"]["lr"], groups["new"]["weight_decay"]) == (1e-3, 1e-4)
    backbone = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups["pretrained"]["params"]} == backbone  # frozen ones too (skipped: no grad)
    new = {id(p) for p in groups["new"]["params"]}
    assert new == {id(p) for p in model.parameters() if id(p) not in backbone}
    opt = torch.optim.AdamW(param_groups(model, lr_new=5e-4))
    assert [g["lr"] for g in opt.param_groups] == [1e-5, 5e-4]
    only = param_groups(model, include_frozen=False)
    assert all(p.requires_grad for g in only for p in g["params"])


def test_progressive_unfreezing_follows_the_schedule():
    model = tiny("rr")
    schedule = ProgressiveUnfreezing()  # {0: 0, 2: 1, 4: 2}
    opt = torch.optim.AdamW(param_groups(model))
    last_stage = model.backbone.stages[-1]
    seen = []
    for epoch in range(6):
        changed = schedule.apply(model, epoch)
        seen.append((changed, trainable_stages(model)))
        if epoch == 2:  # the freshly unfrozen last stage trains in the optimizer built at epoch 0
            before = [p.detach().clone() for p in last_stage.parameters()]
            train_step(model, make_batch(model, B=3), opt)
            assert any(not torch.equal(b, p) for b, p in zip(before, last_stage.parameters()))
    assert seen == [(True, 0), (False, 0), (True, 1), (False, 1), (True, 2), (False, 2)]
    assert all(p.requires_grad for p in model.backbone.head.parameters())  # head conv joins with a stage
    schedule.apply(model, 0)
    assert not any(p.requires_grad for p in model.backbone.parameters())  # new layers only, head conv too


# --------------------------------------------------------------------------------------- weights

def _block_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    for mod, attr in [(huggingface_hub, "hf_hub_download"), (huggingface_hub, "snapshot_download"),
                      (huggingface_hub.file_download, "hf_hub_download"), (torch.hub, "download_url_to_file"),
                      (torch.hub, "load_state_dict_from_url"), (timm.models._hub, "download_cached_file"),
                      (timm.models._hub, "hf_hub_download")]:
        if hasattr(mod, attr):
            monkeypatch.setattr(mod, attr, refuse)


def test_pretrained_without_local_weights_raises_and_stays_offline(monkeypatch, tmp_path):
    _block_network(monkeypatch)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(PretrainedWeightsMissing) as e:
        create_model("ll", backbone=TINY, pretrained=True)
    msg = str(e.value)
    assert TINY in msg and "weights=" in msg and "model.safetensors" in msg and "pretrained=False" in msg
    with pytest.raises(PretrainedWeightsMissing, match="does not exist"):
        create_model("ll", backbone=TINY, pretrained=True, weights=str(tmp_path / "nope.safetensors"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_load_from_an_explicit_local_file(monkeypatch, tmp_path, suffix):
    _block_network(monkeypatch)
    torch.manual_seed(1)
    source = timm.create_model(TINY, pretrained=False)  # a timm checkpoint, classifier included
    path = tmp_path / f"tiny{suffix}"
    (save_file if suffix == ".safetensors" else torch.save)(source.state_dict(), str(path))
    model = create_model("ll", backbone=TINY, pretrained=True, weights=str(path))
    for k, v in model.backbone.model.state_dict().items():
        assert torch.equal(v, source.state_dict()[k]), k
    assert model.backbone.weights_file == path


def test_weights_load_from_the_local_hf_cache(monkeypatch, tmp_path):
    _block_network(monkeypatch)
    bb = create_backbone(TINY, pretrained=False)
    hub_id = bb.model.pretrained_cfg["hf_hub_id"]
    repo = tmp_path / f"models--{hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(bb.model.state_dict(), str(repo / "snapshots" / "abc123" / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    loaded = create_backbone(TINY, pretrained=True)
    assert loaded.weights_file.name == "model.safetensors"
    assert all(torch.equal(v, bb.model.state_dict()[k]) for k, v in loaded.model.state_dict().items())


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("test_resnet").state_dict(), str(path))
    with pytest.raises(PretrainedWeightsMismatch, match="does not fit"):
        create_backbone(TINY, pretrained=True, weights=path)


def test_unsupported_backbone_family_is_named():
    with pytest.raises(UnsupportedBackbone, match="EfficientNet"):
        create_backbone("test_vit", pretrained=False)


@pytest.mark.parametrize("name", ALL)
def test_save_then_load_gives_identical_outputs(name, tmp_path):
    model = tiny(name)
    train_step(model, make_batch(model, B=3), torch.optim.AdamW(param_groups(model)))  # move BN stats off init
    model.eval()
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    torch.manual_seed(123)  # a different init, overwritten by the load
    clone = create_model(model.model_name, **dataclasses.asdict(model.config))
    clone.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    clone.eval()
    batch = make_batch(model, B=2, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(clone(batch)["logits"], model(batch)["logits"], rtol=0, atol=0)


@pytest.mark.parametrize("family", [TINY, "test_resnet", "mobilenetv2_035", "legacy_xception"])
def test_backbone_units_reproduce_timm_forward_features(family):
    bb = create_backbone(family, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bb(x), bb.model.forward_features(x))
        torch.testing.assert_close(bb.forward_rest(bb.forward_trunk(x, 3), 3), bb(x))


def test_shared_trunk_gives_the_same_predictions():
    a, b = tiny("ll").eval(), tiny("cm").eval()
    b.backbone.load_state_dict(a.backbone.state_dict())  # same ImageNet weights in practice
    sa, sb = a.trunk_state(), b.trunk_state()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    batch = make_batch(a)
    with torch.no_grad():
        t = a.forward_trunk(batch)
        t0 = t.clone()
        for m in (a, b):
            torch.testing.assert_close(m(batch, trunk=t)["logits"], m(batch)["logits"], rtol=0, atol=0)
    assert torch.equal(t, t0)  # the rest of a model does not modify the shared trunk output


def test_size_report_counts_add_up():
    df = size_table(["ll", "xception"], backbone=TINY)
    ll = df.loc["ll"]
    assert ll["total"] == ll["frozen"] + ll["trainable"] == ll["backbone_params"] + ll["new_params"]
    assert ll["backbone_params"] == sum(p.numel() for p in timm.create_model(TINY, num_classes=0).parameters())
    assert ll["frozen"] > 0 and df.loc["xception", "frozen"] == 0  # FF++ recipe: all trainable
    assert ll["fp16_MB"] < 0.51 * ll["fp32_MB"]
    assert "| ll | test_efficientnet | 2 |" in to_markdown(df)


# --------------------------------------------------------------------------------------- specialists

def test_block_dct_equals_scipy_dct():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (19, 27)).astype(np.float32)  # partial blocks are dropped
    coef = BlockDCT()(torch.from_numpy(img)[None, None])[0].double().numpy()  # (64, 2, 3)
    assert coef.shape == (64, 2, 3)
    for bi in range(2):
        for bj in range(3):
            block = img[8 * bi: 8 * bi + 8, 8 * bj: 8 * bj + 8].astype(np.float64)
            ref = scipy.fft.dctn(block, type=2, norm="ortho")
            np.testing.assert_allclose(coef[:, bi, bj].reshape(8, 8), ref, atol=2e-3)


def test_log_mel_puts_a_tone_in_the_right_band():
    fb = mel_filterbank(257, 64, 16000)
    assert fb.shape == (257, 64) and (fb >= 0).all() and (fb.max(0).values > 0).all()
    t = torch.arange(16000) / 16000
    mel = LogMel()(torch.sin(2 * np.pi * 1000 * t)[None])  # (1, 64, F)
    assert mel.shape == (1, 64, 101)
    peak = int(mel[0].mean(1).argmax())
    freqs = torch.linspace(0, 8000, 257)
    centre = float(freqs[fb[:, peak].argmax()])
    assert abs(centre - 1000) < 80


def test_audio_frames_align_with_the_clip_centre():
    w = frame_alignment(T=4, n_audio=101, hop_s=0.01, window_s=1.0, fps=25)
    assert w.shape == (4, 101) and torch.allclose(w.sum(1), torch.ones(4))
    centres = (w * torch.arange(101) * 0.01).sum(1)
    torch.testing.assert_close(centres, torch.tensor([0.44, 0.48, 0.52, 0.56]), atol=6e-3, rtol=0)


def _talking_clip(model, opening, size=64):
    """(T, 3, size, size) normalised clip: grey face crop whose mouth centre is as dark as `opening`."""
    T = len(opening)
    rgb = torch.full((T, 3, size, size), 0.6)
    for t, o in enumerate(opening):
        rgb[t, :, int(0.68 * size):int(0.78 * size), int(0.4 * size):int(0.6 * size)] = 0.6 - 0.5 * o
    mean, std = (torch.tensor(model.data_config[k])[:, None, None] for k in ("mean", "std"))
    return (rgb - mean) / std


def test_av_sync_channel_follows_mouth_opening_against_speech_energy():
    model = tiny("av").eval()
    fps, sr, T = model.specialist.cfg.fps, 16000, 4
    loud = torch.tensor([0.1, 0.9, 0.4, 0.7])  # speech amplitude during each frame
    time = torch.arange(8000) / sr  # 0.5 s window, the clip's 4 frames at its centre
    frame = ((time - 0.25) * fps + T / 2).floor().clamp(-1, T).long()  # which frame each sample falls in
    amp = torch.where((frame >= 0) & (frame < T), loud[frame.clamp(0, T - 1)], torch.tensor(0.05))
    wave = amp * torch.sin(2 * np.pi * 220 * time)
    clips = torch.stack([_talking_clip(model, loud), _talking_clip(model, loud.flip(0)),
                         _talking_clip(model, torch.full((T,), 0.5))])
    batch = {"clip": clips, "audio": wave.expand(3, -1).clone(), "has_audio": torch.ones(3, dtype=torch.bool)}
    with torch.no_grad():
        sync = model(batch)["specialist_map"][:, -1]  # (3, 7, 7), the same value on every cell
    assert (sync.amax((1, 2)) == sync.amin((1, 2))).all()
    centre = model.specialist.sync_centre.item()
    in_step, out_of_step, still = (sync[:, 0, 0] / SYNC_GAIN).tolist()  # max(centre - r, 0)
    assert in_step == 0  # the mouth opens as the voice gets louder: no evidence of a fake
    # r < 0 for a mouth moving to other speech, r = 0 for one that does not move
    assert out_of_step > centre and still == pytest.approx(centre)
    model.specialist.sync_centre.data.fill_(1.5)  # every r is below: the deficit shows r itself
    with torch.no_grad():
        r = 1.5 - model(batch)["specialist_map"][:, -1, 0, 0] / SYNC_GAIN
    assert r[0] > 0.95 and r[1] < 0 and abs(r[2]) < 1e-6
    batch["has_audio"] = torch.tensor([False, True, True])
    with torch.no_grad():  # without audio: no sync evidence either way
        s = model(batch)["specialist_map"]
    assert (s[0, -1] == 0).all() and torch.allclose(s[1:, -1], SYNC_GAIN * (1.5 - r[1:, None, None]).expand(-1, 7, 7))


def test_av_sync_deficit_goes_straight_into_the_fake_logit():
    """The sync channel is also direct evidence: the fake logit moves by evidence weight x deficit,
    the real logit not at all, rows without audio not at all, and training reaches the weight and
    the centre."""
    model = tiny("av").eval()
    assert model.num_features == model.fusion.out_dim + 1
    torch.testing.assert_close(model.evidence.weight, torch.full((1, 1), 2.0))  # the prior: a deficit means fake
    model.specialist.sync_centre.data.fill_(1.5)  # random clips: every r below, so every audio row has evidence
    batch = make_batch(model, B=3)  # has_audio = [True, False, True]
    with torch.no_grad():
        out = model(batch)
        deficit = out["specialist_map"][:, -1, 0, 0]
        assert torch.isfinite(deficit).all() and deficit[1] == 0 and deficit[[0, 2]].min() > 0
        torch.testing.assert_close(out["features"][:, -1], deficit)
        model.evidence.weight.fill_(3.0)
        moved = model(batch)["logits"]
    torch.testing.assert_close(moved[:, 0], out["logits"][:, 0])
    torch.testing.assert_close(moved[:, 1] - out["logits"][:, 1], 1.0 * deficit)
    model.train()
    loss = model(make_batch(model, B=4))["logits"][:, 1].sum()
    loss.backward()
    assert model.evidence.weight.grad.abs().sum() > 0 and model.specialist.sync_centre.grad.abs() > 0
    assert all(getattr(tiny(n), "evidence_channels") == 0 for n in ("ll", "tm"))


def test_av_masks_missing_audio():
    model = tiny("av").eval()
    batch = make_batch(model, B=3)  # has_audio = [True, False, True]
    with torch.no_grad():
        out = model(batch)
        s = out["specialist_map"]
        emb = model.specialist.no_audio[0]
        torch.testing.assert_close(s[1, 16:-1], emb)  # the no-audio row carries the learned embedding
        assert (s[1, -1] == 0).all()  # and no sync evidence
        assert not torch.allclose(s[0, 16:-1], emb)
        louder = dict(batch, audio=batch["audio"] * 3 + torch.randn_like(batch["audio"]))
        changed = model(louder)["logits"]
        torch.testing.assert_close(changed[1], out["logits"][1])  # its audio is ignored
        assert not torch.allclose(changed[0], out["logits"][0])  # audio matters where present
        silent = model({"clip": batch["clip"]})  # no audio key at all: every row masked
        none = model(dict(batch, has_audio=torch.zeros(3, dtype=torch.bool)))
        torch.testing.assert_close(silent["logits"], none["logits"])
        assert torch.isfinite(none["prob"]).all()


# --------------------------------------------------------------------------------------- explanations

@pytest.mark.parametrize("name", ALL)
def test_grad_cam_maps_for_every_model(name):
    model = tiny(name).train()
    batch = make_batch(model, B=2)
    cam = grad_cam(model, batch)
    assert cam.shape == (2, 64, 64)
    assert torch.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1
    assert model.training  # mode restored
    if model.input_kind == "clip":
        assert grad_cam(model, batch, per_frame=True).shape == (2, 4, 64, 64)
    if name in SPECIALISTS:
        att = attention_map(model, batch)
        assert att.shape == (2, 64, 64) and att.max() <= 1


def test_grad_cam_works_with_a_fully_frozen_backbone():
    model = tiny("effnet_b4", trainable_stages=0)
    cam = grad_cam(model, make_batch(model))
    assert cam.shape == (2, 64, 64) and torch.isfinite(cam).all()
