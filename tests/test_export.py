"""Export (interceptor_lib/export/): TorchScript and ONNX parity with eager for every specialist and
for the ensemble, on a fresh batch with another batch size than the one traced; the exported files
run without the original module (in a fresh Python process that never imports interceptor_lib);
clear errors for unexportable models and a missing onnxruntime.

Sizes are the tests' usual tiny ones (test_efficientnet, 64 px, clips of 4 frames, half a second of
audio): exported with batch 2, checked with batch 3.
"""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from interceptor_lib.errors import InterceptorError
from interceptor_lib.export.errors import ExportDependencyMissing, ExportError, ParityError
from interceptor_lib.export.export import check_parity, compare_speed, export_model, export_onnx, export_torchscript
from interceptor_lib.export.runtime import ExportedModel
from interceptor_lib.export.signature import (ENSEMBLE_OUTPUTS, INPUT_ORDER, ExportWrapper, batch_like, example_batch,
                                              model_input_keys)
from interceptor_lib.models import create_model, list_models
from interceptor_lib.models.base import DetectorBase, two_class_logits

SIZE, FRAMES, AUDIO_S = 64, 4, 0.5
B_EXPORT, B_CHECK = 2, 3
TOL = 1e-4
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
HAVE_ONNX = all(importlib.util.find_spec(p) for p in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnx / onnxscript / onnxruntime not installed")
FORMATS = ["torchscript", pytest.param("onnx", marks=needs_onnx)]


def make(name, seed=0):
    torch.manual_seed(seed)
    return create_model(name, backbone="test_efficientnet", pretrained=False)


def batches(model):
    """(example batch of B_EXPORT, fresh batch of B_CHECK with other values; has_audio mixed)."""
    example = example_batch(model, batch_size=B_EXPORT, size=SIZE, frames=FRAMES, audio_seconds=AUDIO_S)
    return example, batch_like(example, B_CHECK, seed=1)


class Exports:
    """Module-wide cache: each (model, format) is exported once and shared by the tests that need it."""

    def __init__(self, root):
        self.root, self.models, self.paths = root, {}, {}

    def model(self, name):
        if name not in self.models:
            self.models[name] = make(name)
        return self.models[name]

    def path(self, name, fmt):
        if (name, fmt) not in self.paths:
            model = self.model(name)
            example, _ = batches(model)
            fn = export_torchscript if fmt == "torchscript" else export_onnx
            self.paths[name, fmt] = fn(model, example, self.root / f"{name}{SUFFIX[fmt]}")
        return self.paths[name, fmt]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return Exports(tmp_path_factory.mktemp("exports"))


# ---------------------------------------------------------------------------------------------
# The six specialists

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list_models("specialist"))
def test_specialist_export_matches_eager_on_a_fresh_batch(exports, name, fmt):
    model = exports.model(name)
    path = exports.path(name, fmt)
    _, fresh = batches(model)
    r = check_parity(model, path, fresh)
    assert (r["format"], r["batch_size"], r["example_batch_size"]) == (fmt, B_CHECK, B_EXPORT)
    assert set(r["max_abs_diff"]) == {"prob", "logits"}
    assert r["max_abs_diff"]["prob"] <= TOL and r["max_abs_diff"]["logits"] <= TOL, r
    assert r["passed"]
    # the exported model's input order is the documented one
    want = {"image": ["image"], "clip": ["clip"]}[model.input_kind] if name != "av" else ["clip", "audio", "has_audio"]
    assert list(ExportedModel(path).input_keys) == want
    assert model.training  # export ran in eval mode and gave the model its own mode back


def test_av_export_scores_rows_without_audio_like_eager(exports):
    """The export graph scores every row and keeps the no-audio embedding where has_audio is False
    (audio_visual.py's export branch); eager only scores the rows with audio. Same values."""
    model = exports.model("av")
    _, fresh = batches(model)
    for has in ([False, False, False], [True, True, True], [False, True, False]):
        batch = dict(fresh, has_audio=torch.tensor(has))
        for fmt in ("torchscript",) + (("onnx",) if HAVE_ONNX else ()):
            r = check_parity(model, exports.path("av", fmt), batch)
            assert r["passed"], (has, r)


def test_exported_files_run_in_a_fresh_process_without_the_package(exports, tmp_path):
    """torch.jit.load and an onnxruntime session alone, in a new interpreter that never imports
    interceptor_lib, reproduce eager (av: the model with three inputs)."""
    model = exports.model("av")
    _, fresh = batches(model)
    runner_keys = ExportedModel(exports.path("av", "torchscript")).input_keys
    inputs = [fresh[k] for k in runner_keys]
    torch.save(inputs, tmp_path / "inputs.pt")
    paths = {"torchscript": exports.path("av", "torchscript")}
    if HAVE_ONNX:
        paths["onnx"] = exports.path("av", "onnx")
    script = (
        "import json, sys, torch\n"
        "inputs = torch.load(sys.argv[1])\n"
        "paths = json.loads(sys.argv[2])\n"
        "out = {}\n"
        "with torch.no_grad():\n"
        "    out['torchscript'] = [t.tolist() for t in torch.jit.load(paths['torchscript'])(*inputs)]\n"
        "if 'onnx' in paths:\n"
        "    import onnxruntime as ort\n"
        "    s = ort.InferenceSession(paths['onnx'], providers=['CPUExecutionProvider'])\n"
        "    feeds = {i.name: x.numpy() for i, x in zip(s.get_inputs(), inputs)}\n"
        "    out['onnx'] = [o.tolist() for o in s.run(None, feeds)]\n"
        "out['imported'] = sorted(m for m in sys.modules if m.startswith('interceptor_lib'))\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "inputs.pt"),
                           json.dumps({k: str(v) for k, v in paths.items()})],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("imported") == []
    model.eval()
    with torch.no_grad():
        ref = model(dict(zip(runner_keys, inputs)))
    model.train()
    for fmt, (prob, logits) in out.items():
        assert torch.allclose(torch.tensor(prob), ref["prob"], atol=TOL, rtol=0), fmt
        assert torch.allclose(torch.tensor(logits), ref["logits"], atol=TOL, rtol=0), fmt


# ---------------------------------------------------------------------------------------------
# The ensemble: a stand-in with Ensemble's interface (fast, independent of ensemble/combine.py), then the real one

class StandInEnsemble(nn.Module):
    """Ensemble's interface: batch (image, clip, audio, has_audio) -> prob, member_probs (B, 3),
    uncertainty, logits; one small layer per member, fixed Python-float weights."""

    input_keys = INPUT_ORDER

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image = nn.Conv2d(3, 8, 3, stride=4)
        self.clip = nn.Conv3d(3, 8, 3, stride=(1, 4, 4))
        self.audio = nn.Linear(20, 8)
        self.heads = nn.ModuleList(nn.Linear(8, 1) for _ in range(3))
        self.weights = {"image": 0.5, "clip": 0.3, "audio": 0.2}

    def forward(self, batch: dict) -> dict:
        f_img = F.relu(self.image(batch["image"])).mean((2, 3))
        f_clip = F.relu(self.clip(batch["clip"].transpose(1, 2))).mean((2, 3, 4))
        a = batch["audio"]
        f_audio = F.relu(self.audio(a.view(a.shape[0], 20, -1).abs().mean(-1)))
        probs = [torch.sigmoid(h(f)).squeeze(1) for h, f in zip(self.heads, (f_img, f_clip, f_audio))]
        probs[2] = torch.where(batch["has_audio"].bool(), probs[2], torch.full_like(probs[2], 0.5))
        member_probs = torch.stack(probs, 1)
        w = torch.tensor(list(self.weights.values()))
        mean = member_probs @ w
        uncertainty = (((member_probs - mean[:, None]) ** 2) @ w).sqrt()
        return {"prob": mean, "member_probs": member_probs, "uncertainty": uncertainty,
                "logits": two_class_logits(torch.logit(mean, eps=1e-6))}


def test_stand_in_ensemble_exports_four_inputs_and_outputs(tmp_path):
    model = StandInEnsemble()
    example = example_batch(model, batch_size=B_EXPORT, size=SIZE, frames=FRAMES, audio_seconds=AUDIO_S)
    report = export_model(model, example, tmp_path, formats=["torchscript"] + (["onnx"] if HAVE_ONNX else []),
                          name="standin", speed_rounds=2)
    assert report["inputs"] == list(INPUT_ORDER) and report["outputs"] == list(ENSEMBLE_OUTPUTS)
    assert json.loads((tmp_path / "standin_export.json").read_text()) == report
    for fmt, entry in report["formats"].items():
        p = entry["parity"]
        assert p["batch_size"] == B_EXPORT + 1 and p["passed"], (fmt, p)
        assert set(p["max_abs_diff"]) == set(ENSEMBLE_OUTPUTS)
        s = entry["speed"]
        assert s["eager_ms"] > 0 and s["exported_ms"] > 0
        assert s["ratio"] == pytest.approx(s["exported_ms"] / s["eager_ms"])
        out = ExportedModel(entry["path"])(batch_like(example, 5))
        assert out["member_probs"].shape == (5, 3) and out["prob"].shape == (5,) and out["logits"].shape == (5, 2)


@pytest.fixture(scope="module")
def ensemble():
    ens_mod = pytest.importorskip("interceptor_lib.ensemble.combine")
    members = {"ll": make("ll", 0), "av": make("av", 1)}  # image + clip + audio inputs
    first = members["ll"]
    members["av"].backbone.model.load_state_dict(first.trunk_state(), strict=False)  # one shared trunk
    # what the pipeline fits: log-odds voting (a soft OR at a vote temperature) with a temperature, and a
    # weight set for inputs with audio (the parity batches mix rows with and without audio)
    ens = ens_mod.Ensemble(members, weights={"ll": 0.6, "av": 0.4}, share_trunk=True, temperature=1.3,
                           combination="logit", audio_weights={"ll": 0.2, "av": 0.8}, audio_temperature=0.9,
                           vote_tau=0.5)
    assert any(g["shared"] or g["trunk_hash"] for g in ens.trunk_groups())
    return ens


@pytest.mark.parametrize("fmt", FORMATS)
def test_ensemble_export_matches_eager_on_a_fresh_batch(ensemble, tmp_path, fmt):
    assert model_input_keys(ensemble) == INPUT_ORDER  # derived from the members: ll image, av clip + audio
    example = example_batch(ensemble, batch_size=B_EXPORT, size=SIZE, frames=FRAMES, audio_seconds=AUDIO_S)
    fresh = batch_like(example, B_CHECK, seed=1)
    try:
        export = export_torchscript if fmt == "torchscript" else export_onnx
        path = export(ensemble, example, tmp_path / f"ens{SUFFIX[fmt]}")
    except ExportError as e:
        # ensemble/combine.py's forward uses len(tensor) / float(tensor) / a set of sizes, which torch.export
        # must specialise (batch size) or cannot trace (data-dependent); see the export report.
        if fmt == "onnx" and ("combine.py" in str(e) or "specialized it to be a constant" in str(e)
                              or "SymInt" in str(e)):
            pytest.xfail(f"interceptor_lib/ensemble/combine.py is not torch.export-friendly yet: {str(e)[:300]}")
        raise
    r = check_parity(ensemble, path, fresh)
    assert set(r["max_abs_diff"]) == set(ENSEMBLE_OUTPUTS)
    assert r["batch_size"] == B_CHECK and r["passed"], r
    assert r["max_abs_diff"]["prob"] <= TOL and r["max_abs_diff"]["logits"] <= TOL


# ---------------------------------------------------------------------------------------------
# Wrapper, errors

def test_wrapper_orders_inputs_and_outputs(exports):
    model = exports.model("av").eval()
    wrapper = ExportWrapper(model)
    assert wrapper.input_keys == ("clip", "audio", "has_audio") and wrapper.output_keys == ("prob", "logits")
    example, _ = batches(model)
    with torch.no_grad():
        prob, logits = wrapper(example["clip"], example["audio"], example["has_audio"])
        ref = model(example)
    model.train()
    assert torch.equal(prob, ref["prob"]) and torch.equal(logits, ref["logits"])
    with pytest.raises(ExportError, match="takes 3 tensors"):
        wrapper(example["clip"])


def test_input_keys_come_from_the_model_registry():
    """Audio keys for the model the registry marks as reading audio; a detector without a registry
    name is refused with the fix named."""
    assert model_input_keys(make("ll")) == ("image",)

    class Unnamed(DetectorBase):
        pass

    with pytest.raises(ExportError, match="no registry name"):
        model_input_keys(Unnamed())


class DataDependent(nn.Module):
    """A branch on the data: torch.export cannot turn it into a graph."""

    model_name = "branchy"
    input_keys = ("image",)

    def forward(self, batch):
        x = batch["image"]
        z = x.mean((1, 2, 3)) if x.sum() > 0 else -x.mean((1, 2, 3))
        return {"prob": torch.sigmoid(z), "logits": two_class_logits(z)}


@needs_onnx
def test_unexportable_model_raises_an_error_naming_model_and_format(tmp_path):
    example = example_batch(("image",), batch_size=2, size=16)
    example["image"] = example["image"].abs()
    with pytest.raises(ExportError, match=r"onnx export of 'branchy'") as info:
        export_onnx(DataDependent(), example, tmp_path / "b.onnx")
    assert isinstance(info.value, InterceptorError) and info.value.format == "onnx"
    assert info.value.model_name == "branchy"


def test_missing_onnxruntime_is_a_clear_error(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ExportDependencyMissing, match=r"onnx export of 'branchy' needs onnxruntime.*pip install"):
        export_onnx(DataDependent(), example_batch(("image",), 2, 16), tmp_path / "b.onnx")


@needs_onnx
def test_static_batch_onnx_rejects_another_batch_size(tmp_path):
    model = StandInEnsemble()
    example = example_batch(model, batch_size=2, size=SIZE, frames=FRAMES, audio_seconds=AUDIO_S)
    path = export_onnx(model, example, tmp_path / "s.onnx", dynamic_batch=False)
    assert check_parity(model, path, batch_like(example, 2))["passed"]
    with pytest.raises(ExportError, match="fails on a batch of 3"):
        check_parity(model, path, batch_like(example, 3))


class BatchBaked(nn.Module):
    """Branches on the batch size in Python: a trace keeps the example's branch (the classic silent
    trace bug); parity on another batch size catches it."""

    model_name = "baked"
    input_keys = ("image",)

    def forward(self, batch):
        x = batch["image"]
        z = x.mean((1, 2, 3))
        if x.shape[0] == B_EXPORT:
            z = z + 1
        return {"prob": torch.sigmoid(z), "logits": two_class_logits(z)}


def test_parity_failure_writes_the_report_then_raises(tmp_path):
    example = example_batch(("image",), B_EXPORT, 16)
    with pytest.raises(ParityError, match="'baked' differs from eager on a fresh batch"):
        export_model(BatchBaked(), example, tmp_path, formats=["torchscript"])
    p = json.loads((tmp_path / "baked_export.json").read_text())["formats"]["torchscript"]["parity"]
    assert not p["passed"] and p["batch_size"] == B_EXPORT + 1 and p["max_abs_diff"]["logits"] > 0.5


def test_compare_speed_reports_both_timings(exports):
    model = exports.model("cm")
    example, _ = batches(model)
    s = compare_speed(model, exports.path("cm", "torchscript"), example, rounds=2, warmup=1)
    assert s["format"] == "torchscript" and s["rounds"] == 2 and s["eager_ms"] > 0 and s["exported_ms"] > 0
    assert model.training
