"""Export a detector or the ensemble to TorchScript and ONNX, and check the exported file against eager.

    from interceptor_lib.export import example_batch, export_model
    model = create_model("av", backbone="efficientnet_b4")          # trained weights loaded
    report = export_model(model, example_batch(model, size=224), "exports/av")
    # exports/av/av.pt (TorchScript), exports/av/av.onnx, exports/av/av_export.json (parity, timings)

The exported graph takes positional tensors and returns a tuple; `ExportWrapper` turns the batch-dict
contract of models/base.py into that:
  inputs   in the order of INPUT_ORDER, the keys the model reads: image models (image), clip models
           (clip), `av` (clip, audio, has_audio), an ensemble the union of its members' keys
           (e.g. image, clip, audio, has_audio). has_audio is passed as bool.
  outputs  detectors (prob (B,), logits (B, 2)); ensembles (prob, logits, member_probs (B, M),
           uncertainty (B,)).
The keys and output names are stored in the file (TorchScript: an extra file; ONNX: metadata_props
and the graph's input/output names), so `ExportedModel(path)` runs it from a batch dict without
the original module and without this package's models. The batch dimension is dynamic (ONNX:
`dynamic_batch=True`, one symbol shared by all inputs; a TorchScript trace records size ops, so it
is batch-generic unless the model branches on the batch size in Python); image size, clip length T
and audio length S are fixed at export time.

ONNX goes through torch.export, which refuses what a trace would silently bake in: Python branches
on tensor values (`if float(t) > 0`) and batch sizes turned into Python ints (`len(tensor)`). The
specialists are export-clean (av scores every row under export, see audio_visual.py); a model that
is not gets an ExportError naming the model, the format and the offending source line.

TorchScript is a `torch.jit.trace` (frozen: parameters folded in as constants); ONNX uses the
default `torch.onnx.export(dynamo=True)` path (torch.export -> onnxscript) and is checked with
`onnx.checker` and an onnxruntime session. Both are always exported from eval mode (dropout off,
BatchNorm on its running statistics); the model's train/eval flags are restored afterwards.
Parity (`check_parity`) is measured on a fresh batch with a different batch size from the one
traced, so a trace that baked in the example's batch size fails it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import statistics
import time
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from interceptor_lib.errors import InterceptorError
from interceptor_lib.models.base import DetectorBase

INPUT_ORDER = ("image", "clip", "audio", "has_audio")  # positional order of the exported graph's inputs
DETECTOR_OUTPUTS = ("prob", "logits")
ENSEMBLE_OUTPUTS = ("prob", "logits", "member_probs", "uncertainty")
FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx"}
META_KEY = "interceptor_export"  # TorchScript extra file name / ONNX metadata_props key (JSON)
DEFAULT_OPSET = 18  # ONNX opset: STFT (av's log-mel) needs >= 17; onnxruntime >= 1.14 runs 18
# max |exported - eager| accepted on every output, float32, scaled by max(1, max |eager|) of that
# output: absolute for probabilities, relative for logits, whose rounding grows with their size
# (kernels that sum in another order differ by ~1e-5 of the value)
DEFAULT_TOLERANCE = 1e-4


class ExportError(InterceptorError, RuntimeError):
    """A model cannot be exported to a format (an op the exporter does not support, a trace that does
    not reproduce eager); the message names the model and the format."""

    def __init__(self, message: str, model_name: str = "", fmt: str = ""):
        super().__init__(message)
        self.model_name, self.format = model_name, fmt


class ExportDependencyMissing(ExportError, ImportError):
    """The package a format needs (onnx, onnxscript, onnxruntime) is not installed."""


class ParityError(ExportError, ValueError):
    """The exported model's outputs differ from eager by more than the tolerance."""


# ---------------------------------------------------------------------------------------------
# What a model reads and returns

def model_label(model: nn.Module) -> str:
    """The registry name (`model.model_name`) or, for ensembles and other modules, the class name."""
    return getattr(model, "model_name", "") or type(model).__name__


def _reads_audio(detector: nn.Module) -> bool:
    from interceptor_lib.models.specialists.audio_visual import AudioVisualModule

    return any(isinstance(m, AudioVisualModule) for m in detector.modules())


def model_input_keys(model: nn.Module) -> tuple[str, ...]:
    """The batch keys `model` reads, in INPUT_ORDER: a declared `model.input_keys`, else derived from
    every detector (DetectorBase) in it: its `input_kind`, plus audio and has_audio for the
    audio-visual specialist. For an ensemble that is the union over its members."""
    declared = getattr(model, "input_keys", None)
    if declared:
        return tuple(declared)
    detectors = [m for m in model.modules() if isinstance(m, DetectorBase)]
    if not detectors:
        raise ExportError(f"cannot tell which batch keys {model_label(model)!r} reads: it holds no DetectorBase "
                          f"model; pass input_keys=(...) (a subset of {INPUT_ORDER} in that order)",
                          model_label(model))
    keys = set()
    for d in detectors:
        keys.add(d.input_kind)
        if _reads_audio(d):
            keys |= {"audio", "has_audio"}
    return tuple(k for k in INPUT_ORDER if k in keys)


def model_output_keys(model: nn.Module) -> tuple[str, ...]:
    """(prob, logits) for a detector; (prob, logits, member_probs, uncertainty) for anything else
    (the ensemble's prediction dict)."""
    return DETECTOR_OUTPUTS if isinstance(model, DetectorBase) else ENSEMBLE_OUTPUTS


class ExportWrapper(nn.Module):
    """`model` (batch dict -> prediction dict) as positional tensors -> tuple, the form TorchScript and
    ONNX graphs take. `forward(*inputs)` builds {input_keys[i]: inputs[i]} and returns the outputs in
    `output_keys` order (defaults: model_input_keys / model_output_keys)."""

    def __init__(self, model: nn.Module, input_keys: Sequence[str] | None = None,
                 output_keys: Sequence[str] | None = None):
        super().__init__()
        self.model = model
        self.input_keys = tuple(input_keys) if input_keys else model_input_keys(model)
        self.output_keys = tuple(output_keys) if output_keys else model_output_keys(model)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.input_keys):
            raise ExportError(f"{model_label(self.model)} export takes {len(self.input_keys)} tensors "
                              f"{self.input_keys}, got {len(inputs)}", model_label(self.model))
        out = self.model(dict(zip(self.input_keys, inputs)))
        return tuple(out[k] for k in self.output_keys)


def batch_inputs(batch: dict, keys: Sequence[str]) -> tuple[torch.Tensor, ...]:
    """The tensors of `batch` for `keys`, in order; has_audio as bool (True for every row when the
    batch has audio but no has_audio, the model's own default)."""
    out = []
    for k in keys:
        if k == "has_audio":
            ref = batch.get("audio", next(iter(batch.values())))
            has = batch.get("has_audio", torch.ones(ref.shape[0], dtype=torch.bool))
            out.append(torch.as_tensor(has).to(torch.bool))
        elif k not in batch:
            raise ExportError(f"the exported model reads batch[{k!r}] (inputs {tuple(keys)}); the batch has "
                              f"keys {sorted(batch)}")
        else:
            out.append(batch[k])
    return tuple(out)


def _export_keys(model: nn.Module, batch: dict, input_keys: Sequence[str] | None) -> tuple[str, ...]:
    """Keys the export takes: `input_keys`, else the model's keys that the example batch has (has_audio
    follows audio). A model that needs a key the batch lacks fails in its forward, with its message."""
    if input_keys:
        return tuple(input_keys)
    keys = [k for k in model_input_keys(model) if k in batch or (k == "has_audio" and "audio" in batch)]
    if not keys:
        raise ExportError(f"the example batch (keys {sorted(batch)}) has none of the inputs "
                          f"{model_input_keys(model)} that {model_label(model)!r} reads", model_label(model))
    return tuple(keys)


def _batch_size(inputs: Sequence[torch.Tensor]) -> int:
    return int(inputs[0].shape[0])


def example_batch(model_or_keys: nn.Module | Sequence[str], batch_size: int = 2, size: int = 224,
                  frames: int = 4, audio_seconds: float = 1.0, sample_rate: int = 16000,
                  seed: int = 0) -> dict:
    """A random batch with the keys a model (or an explicit key list) reads: image (B, 3, size, size),
    clip (B, frames, 3, size, size), audio (B, audio_seconds * sample_rate), has_audio (B,) bool
    alternating True/False from True (so both of av's branches run)."""
    keys = model_input_keys(model_or_keys) if isinstance(model_or_keys, nn.Module) else tuple(model_or_keys)
    g = torch.Generator().manual_seed(seed)
    shapes = {"image": (batch_size, 3, size, size), "clip": (batch_size, frames, 3, size, size),
              "audio": (batch_size, int(round(audio_seconds * sample_rate)))}
    batch = {}
    for k in keys:
        if k == "has_audio":
            batch[k] = torch.arange(batch_size) % 2 == 0
        elif k in shapes:
            batch[k] = torch.randn(*shapes[k], generator=g) * (0.1 if k == "audio" else 1.0)
        else:
            raise ExportError(f"example_batch knows the keys {INPUT_ORDER}, not {k!r}")
    return batch


def batch_like(batch: dict, batch_size: int | None = None, seed: int = 1) -> dict:
    """A fresh random batch with `batch`'s keys, dtypes and per-item shapes, and `batch_size` rows
    (default: one more than `batch`): the parity batch. Float tensors get the same mean and std as
    `batch`'s; bool/integer tensors a random pattern that has both values when B >= 2."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in batch.items():
        if not isinstance(v, torch.Tensor) or v.dim() == 0:
            out[k] = v
            continue
        b = batch_size or v.shape[0] + 1
        shape = (b, *v.shape[1:])
        if v.is_floating_point():
            std = float(v.float().std()) if v.numel() > 1 else 1.0
            out[k] = (torch.randn(*shape, generator=g) * std + float(v.float().mean())).to(v.dtype)
        else:
            bits = torch.randint(0, 2, shape, generator=g)
            bits.view(-1)[:2] = torch.tensor([1, 0])[: bits.numel()]
            out[k] = bits.to(v.dtype)
    return out


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside, every submodule's own train/eval flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress lines and known-harmless warnings (trace warnings about
    constants, the deprecation notice of torch.jit.trace, onnxscript's optimizer notes)."""
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export",
                                              "torch._dynamo", "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, lv in zip(loggers, levels):
                lg.setLevel(lv)


_NOISE = ("For more information", "For extended logs", "If you suspect", "For more debugging help",
          "For C++ stack trace", "consider using data-dependent", "The error above occurred when calling",
          "- Modify the model code", "- Debug `torch.export", "- Create an issue")


def _summary(e: BaseException, limit: int = 1500) -> str:
    """The useful part of an exporter's exception: torch's "Exception summary" and the user-code line
    that raised it, without the generic advice."""
    text = f"{type(e).__name__}: {e}"
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1]
    text = text.split("(Refer to the full stack trace above", 1)[0]
    text = text.replace("\x1b[96m", "").replace("\x1b[0m", "")
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(_NOISE)]
    text = "\n".join(lines).strip()
    return text if len(text) <= limit else text[:limit] + " ..."


def _max_diffs(ref: Sequence[torch.Tensor], got: Sequence[torch.Tensor], names: Sequence[str],
               label: str, fmt: str) -> dict[str, float]:
    diffs = {}
    for n, r, o in zip(names, ref, got):
        o = torch.as_tensor(o)
        if tuple(o.shape) != tuple(r.shape):
            raise ParityError(f"{fmt} export of {label!r}: output {n!r} has shape {tuple(o.shape)}, eager "
                              f"{tuple(r.shape)}", label, fmt)
        d = (o.double() - r.double()).abs().nan_to_num(nan=float("inf"))  # a NaN on either side fails
        diffs[n] = float(d.max()) if d.numel() else 0.0
    return diffs


def _within(ref: Sequence[torch.Tensor], diffs: dict[str, float], tolerance: float) -> bool:
    """Whether every output's max abs diff is within tolerance x max(1, max |eager output|)."""
    scales = [max(1.0, float(r.detach().abs().max())) if r.numel() else 1.0 for r in ref]
    return all(d <= tolerance * s for d, s in zip(diffs.values(), scales))


def _meta(label: str, fmt: str, keys: Sequence[str], outputs: Sequence[str], inputs: Sequence[torch.Tensor],
          dynamic_batch: bool, **extra) -> dict:
    return {"model": label, "format": fmt, "inputs": list(keys), "outputs": list(outputs),
            "input_shapes": {k: ["B", *x.shape[1:]] for k, x in zip(keys, inputs)},
            "input_dtypes": {k: str(x.dtype).replace("torch.", "") for k, x in zip(keys, inputs)},
            "example_batch_size": _batch_size(inputs), "dynamic_batch": dynamic_batch,
            "torch": torch.__version__, **extra}


def _format_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    for fmt, s in SUFFIXES.items():
        if suffix == s or (fmt == "torchscript" and suffix in (".pt", ".ts", ".pth")):
            return fmt
    raise ExportError(f"cannot tell the format of {path}: expected a .pt/.ts (TorchScript) or .onnx file")


# ---------------------------------------------------------------------------------------------
# TorchScript

def _prepare(model: nn.Module, example_batch: dict, input_keys: Sequence[str] | None,
             output_keys: Sequence[str] | None, fmt: str):
    """(label, wrapper, example inputs, eager outputs) for an export, in eval mode. Output keys
    default to those of ENSEMBLE_OUTPUTS the model returns (prob and logits are required)."""
    label = model_label(model)
    keys = _export_keys(model, example_batch, input_keys)
    inputs = batch_inputs(example_batch, keys)
    with _eval_mode(model), torch.no_grad(), _quiet():
        try:
            out = model(dict(zip(keys, inputs)))
        except Exception as e:
            raise ExportError(f"{fmt} export of {label!r}: the eager model fails on the example batch: "
                              f"{_summary(e)}", label, fmt) from e
    if not output_keys:
        output_keys = tuple(k for k in ENSEMBLE_OUTPUTS if isinstance(out.get(k), torch.Tensor))
    missing = [k for k in ("prob", "logits", *output_keys) if not isinstance(out.get(k), torch.Tensor)]
    if missing:
        raise ExportError(f"{fmt} export of {label!r}: the model's output has no tensor(s) {missing} "
                          f"(keys {sorted(out)}); exports return {ENSEMBLE_OUTPUTS[:2]} and, for ensembles, "
                          f"{ENSEMBLE_OUTPUTS[2:]}", label, fmt)
    wrapper = ExportWrapper(model, keys, output_keys)
    return label, wrapper, inputs, tuple(out[k] for k in wrapper.output_keys)


def _self_check(ref, got, wrapper: ExportWrapper, label: str, fmt: str, tolerance: float) -> None:
    diffs = _max_diffs(ref, got, wrapper.output_keys, label, fmt)
    if not _within(ref, diffs, tolerance):
        raise ParityError(f"{fmt} export of {label!r} differs from eager on the example batch itself "
                          f"(max abs diff {diffs}, tolerance {tolerance})", label, fmt)


def export_torchscript(model: nn.Module, example_batch: dict, path: str | Path, *,
                       input_keys: Sequence[str] | None = None, output_keys: Sequence[str] | None = None,
                       freeze: bool = True, tolerance: float = DEFAULT_TOLERANCE) -> Path:
    """Trace `model` (eval mode) on `example_batch` with torch.jit.trace, freeze it (parameters folded
    in as constants, BatchNorm into the convolutions) and save it to `path` with the input/output
    names as an extra file. Check: the saved module, reloaded, reproduces eager on the example within
    `tolerance` (a trace also keeps whatever Python branch the example took: check_parity on another
    batch size catches those). Raises ExportError (model and format named) when tracing fails,
    ParityError when the check does."""
    fmt = "torchscript"
    label, wrapper, inputs, ref = _prepare(model, example_batch, input_keys, output_keys, fmt)
    path = Path(path)
    with _eval_mode(wrapper), torch.no_grad(), _quiet():
        try:
            module = torch.jit.trace(wrapper, inputs, check_trace=False)
            if freeze:
                module = torch.jit.freeze(module)
        except Exception as e:
            raise ExportError(f"{fmt} export of {label!r} failed (torch.jit.trace): {_summary(e)}", label, fmt) from e
        meta = _meta(label, fmt, wrapper.input_keys, wrapper.output_keys, inputs, True, frozen=freeze)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(module, str(path), _extra_files={META_KEY: json.dumps(meta)})
    _self_check(ref, ExportedModel(path).run(*inputs), wrapper, label, fmt, tolerance)
    return path


# ---------------------------------------------------------------------------------------------
# ONNX

ONNX_PACKAGES = {"onnx": "onnx>=1.17", "onnxscript": "onnxscript>=0.3", "onnxruntime": "onnxruntime>=1.17"}


def _require(packages: Sequence[str], label: str, fmt: str, why: str) -> None:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        pins = " ".join(f"'{ONNX_PACKAGES[p]}'" for p in missing)
        raise ExportDependencyMissing(f"{fmt} export of {label!r} needs {', '.join(missing)} ({why}); "
                                      f"install with: pip install {pins}", label, fmt)


def export_onnx(model: nn.Module, example_batch: dict, path: str | Path, *, dynamic_batch: bool = True,
                opset: int = DEFAULT_OPSET, input_keys: Sequence[str] | None = None,
                output_keys: Sequence[str] | None = None, tolerance: float = DEFAULT_TOLERANCE) -> Path:
    """Export `model` (eval mode) to ONNX at `path`: torch.export.export (non-strict), then
    torch.onnx.export's dynamo translation (onnxscript) and optimiser. The batch dimension of every
    input is one symbol ("batch") when `dynamic_batch`. The graph's inputs and outputs carry the
    batch keys' names (image, clip, audio, has_audio / prob, logits, ...), and the JSON metadata is
    stored under metadata_props[META_KEY]. Check: onnx.checker, then an onnxruntime session
    reproduces eager on the example within `tolerance`. Raises ExportDependencyMissing without
    onnx/onnxscript/onnxruntime, ExportError when the export fails, ParityError when the check does."""
    fmt = "onnx"
    _require(("onnx", "onnxscript", "onnxruntime"), model_label(model), fmt,
             "torch.onnx.export's dynamo path translates with onnxscript; onnx and onnxruntime check the file")
    import onnx

    label, wrapper, inputs, ref = _prepare(model, example_batch, input_keys, output_keys, fmt)
    path = Path(path)
    dynamic_shapes = None
    if dynamic_batch:
        sizes = {k: int(x.shape[0]) for k, x in zip(wrapper.input_keys, inputs)}
        if len(set(sizes.values())) > 1:
            raise ExportError(f"{fmt} export of {label!r}: with dynamic_batch every input shares the batch "
                              f"dimension, but the example's first dimensions are {sizes}", label, fmt)
        batch_dim = torch.export.Dim("batch", min=1)
        dynamic_shapes = (tuple({0: batch_dim} for _ in inputs),)  # forward(*inputs): one tuple argument
    with _eval_mode(wrapper), torch.no_grad(), _quiet():
        # Captured here rather than inside torch.onnx.export: its fallbacks (strict capture, draft
        # export) would silently fix a batch size the model specialises on, or guess data-dependent
        # branches; we want that as an error naming the model.
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # graph dumps printed on failure: the error says it
                program = torch.export.export(wrapper, inputs, dynamic_shapes=dynamic_shapes, strict=False)
        except Exception as e:
            hint = ""
            if "specialized it to be a constant" in str(e):
                hint = (" -- the model fixes the batch size somewhere: len(tensor), int(x.shape[0]) or a "
                        "Python comparison of sizes; TORCH_LOGS=+dynamic shows the line ('set_replacement'). "
                        "Export with dynamic_batch=False to fix the batch size instead")
            raise ExportError(f"{fmt} export of {label!r} failed (torch.export.export): {_summary(e)}{hint}",
                              label, fmt) from e
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # "[torch.onnx] ..." progress lines
                program = torch.onnx.export(program, dynamo=True, opset_version=opset,
                                            input_names=list(wrapper.input_keys),
                                            output_names=list(wrapper.output_keys), optimize=True, verbose=False)
        except Exception as e:
            raise ExportError(f"{fmt} export of {label!r} failed (torch.export -> ONNX translation): "
                              f"{_summary(e)}", label, fmt) from e
    meta = _meta(label, fmt, wrapper.input_keys, wrapper.output_keys, inputs, dynamic_batch, opset=opset)
    program.model.metadata_props[META_KEY] = json.dumps(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=False)
    try:
        onnx.checker.check_model(str(path), full_check=True)
        got = ExportedModel(path).run(*inputs)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"{fmt} export of {label!r}: the file {path} does not pass onnx.checker / load in "
                          f"onnxruntime: {_summary(e)}", label, fmt) from e
    _self_check(ref, got, wrapper, label, fmt, tolerance)
    return path


# ---------------------------------------------------------------------------------------------
# Running an exported file

class ExportedModel:
    """An exported file run without the original module: TorchScript through torch.jit.load, ONNX
    through an onnxruntime InferenceSession (CPU, `threads` intra-op threads; default torch's
    count, so timings compare like with like).

        runner = ExportedModel("exports/av/av.onnx")
        out = runner(batch)            # {"prob": (B,), "logits": (B, 2)} as torch tensors
        prob, logits = runner.run(clip, audio, has_audio)
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        self.format = _format_of(self.path)
        if not self.path.is_file():
            raise ExportError(f"no exported model at {self.path}", fmt=self.format)
        if self.format == "torchscript":
            extra = {META_KEY: ""}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.9 marks TorchScript deprecated
                self.module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
            self.meta = json.loads(extra[META_KEY] or "{}")
        else:
            _require(("onnxruntime",), self.path.stem, "onnx", "it runs the exported file")
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads or torch.get_num_threads()
            opts.log_severity_level = 3  # errors only
            # Idle threads sleep instead of spinning: spinning ORT threads would steal the cores from
            # torch (eager) between calls, and from the rest of the process.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            self.meta = json.loads(self.session.get_modelmeta().custom_metadata_map.get(META_KEY, "{}"))
            self._feeds = [(i.name, i.type) for i in self.session.get_inputs()]
        if not self.meta.get("inputs"):
            raise ExportError(f"{self.path} has no {META_KEY} metadata: it was not written by "
                              f"interceptor_lib.export", fmt=self.format)
        self.input_keys: tuple[str, ...] = tuple(self.meta["inputs"])
        self.output_keys: tuple[str, ...] = tuple(self.meta["outputs"])

    def run(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Positional tensors (in `input_keys` order) -> outputs (in `output_keys` order)."""
        if self.format == "torchscript":
            with torch.no_grad():
                return tuple(self.module(*inputs))
        feeds = {}
        for (name, typ), x in zip(self._feeds, inputs):
            x = x.detach().cpu()
            if typ == "tensor(bool)":
                x = x.to(torch.bool)
            elif typ == "tensor(float)":
                x = x.float()
            feeds[name] = x.contiguous().numpy()
        return tuple(torch.from_numpy(o) for o in self.session.run(None, feeds))

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        return dict(zip(self.output_keys, self.run(*batch_inputs(batch, self.input_keys))))


def check_parity(model: nn.Module, exported_path: str | Path, batch: dict,
                 tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Run the exported file (ExportedModel) and eager `model` (eval mode) on `batch`, which should
    differ from the export's example (other values, and another batch size when the export is
    dynamic). Returns {"format", "path", "inputs", "outputs", "batch_size", "example_batch_size",
    "max_abs_diff": {output: float}, "max_abs_diff_all", "tolerance", "passed"}."""
    runner = ExportedModel(exported_path)
    label = model_label(model)
    wrapper = ExportWrapper(model, runner.input_keys, runner.output_keys)
    inputs = batch_inputs(batch, runner.input_keys)
    with _eval_mode(wrapper), torch.no_grad():
        ref = wrapper(*inputs)
    try:
        got = runner.run(*inputs)
    except Exception as e:
        raise ExportError(f"{runner.format} export of {label!r} fails on a batch of {_batch_size(inputs)} "
                          f"(exported with {runner.meta.get('example_batch_size')}): {_summary(e)}",
                          label, runner.format) from e
    diffs = _max_diffs(ref, got, runner.output_keys, label, runner.format)
    worst = max(diffs.values())
    return {"format": runner.format, "path": str(exported_path), "inputs": list(runner.input_keys),
            "outputs": list(runner.output_keys), "batch_size": _batch_size(inputs),
            "example_batch_size": runner.meta.get("example_batch_size"), "max_abs_diff": diffs,
            "max_abs_diff_all": worst, "tolerance": tolerance, "passed": _within(ref, diffs, tolerance)}


def compare_speed(model: nn.Module, exported_path: str | Path, batch: dict, rounds: int = 10,
                  warmup: int = 2, threads: int | None = None) -> dict:
    """Inference time per batch of eager `model` (eval, torch.inference_mode) and of the exported file,
    timed in turns (one call each per round, after `warmup` untimed rounds), wall clock. "eager_ms"
    / "exported_ms" are best-of-rounds (other load on the machine only ever adds time), "ratio" =
    exported_ms / eager_ms (< 1: the export is faster), "median_ratio" the median over rounds of the
    same-round ratio. Both run with `threads` threads (default: torch's current count; torch's
    setting is restored afterwards)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    before = torch.get_num_threads()
    threads = threads or before
    runner = ExportedModel(exported_path, threads=threads)
    wrapper = ExportWrapper(model, runner.input_keys, runner.output_keys)
    inputs = batch_inputs(batch, runner.input_keys)
    eager, exported = [], []
    torch.set_num_threads(threads)
    try:
        with _eval_mode(wrapper), torch.inference_mode():
            for r in range(warmup + rounds):
                t = time.perf_counter()
                wrapper(*inputs)
                t_eager = time.perf_counter() - t
                t = time.perf_counter()
                runner.run(*inputs)
                t_exp = time.perf_counter() - t
                if r >= warmup:
                    eager.append(t_eager * 1e3)
                    exported.append(t_exp * 1e3)
    finally:
        torch.set_num_threads(before)
    return {"format": runner.format, "batch_size": _batch_size(inputs), "threads": threads,
            "rounds": rounds, "eager_ms": min(eager), "exported_ms": min(exported),
            "ratio": min(exported) / min(eager),
            "median_ratio": statistics.median(x / e for x, e in zip(exported, eager))}


# ---------------------------------------------------------------------------------------------

def export_model(model: nn.Module, example_batch: dict, out_dir: str | Path,
                 formats: Sequence[str] = FORMATS, *, name: str | None = None, parity_batch: dict | None = None,
                 dynamic_batch: bool = True, opset: int = DEFAULT_OPSET, tolerance: float = DEFAULT_TOLERANCE,
                 speed_rounds: int = 0, input_keys: Sequence[str] | None = None) -> dict:
    """Export `model` in each of `formats` to `out_dir/<name>.pt|.onnx`, check parity on
    `parity_batch` (default: a fresh random batch like the example with one more row, or the same
    batch size when `dynamic_batch` is False), time it when `speed_rounds` > 0, and write
    `out_dir/<name>_export.json`. Returns that report. Raises ExportError when a format fails and
    ParityError (after writing the report) when an export exceeds `tolerance`."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ExportError(f"unknown export format(s) {bad}; known: {FORMATS}", model_label(model))
    name = name or model_label(model)
    out_dir = Path(out_dir)
    if parity_batch is None:
        n = _batch_size(batch_inputs(example_batch, _export_keys(model, example_batch, input_keys)))
        parity_batch = batch_like(example_batch, n + 1 if dynamic_batch else n)
    report = {"model": name, "torch": torch.__version__, "tolerance": tolerance, "formats": {}}
    if "onnx" in formats and importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        report["onnxruntime"] = onnxruntime.__version__
    for fmt in formats:
        path = out_dir / f"{name}{SUFFIXES[fmt]}"
        t = time.perf_counter()
        if fmt == "torchscript":
            export_torchscript(model, example_batch, path, input_keys=input_keys, tolerance=tolerance)
        else:
            export_onnx(model, example_batch, path, dynamic_batch=dynamic_batch, opset=opset,
                        input_keys=input_keys, tolerance=tolerance)
        entry = {"path": str(path), "export_s": round(time.perf_counter() - t, 2),
                 "size_mb": round(path.stat().st_size / 2**20, 2),
                 "parity": check_parity(model, path, parity_batch, tolerance)}
        if speed_rounds:
            entry["speed"] = compare_speed(model, path, example_batch, rounds=speed_rounds)
        report["formats"][fmt] = entry
    first = next(iter(report["formats"].values()), {}).get("parity", {})
    report["inputs"], report["outputs"] = first.get("inputs"), first.get("outputs")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}_export.json").write_text(json.dumps(report, indent=2))
    failed = {f: e["parity"]["max_abs_diff"] for f, e in report["formats"].items() if not e["parity"]["passed"]}
    if failed:
        raise ParityError(f"export of {name!r} differs from eager on a fresh batch by more than {tolerance}: "
                          f"{failed} (report: {out_dir / f'{name}_export.json'})", name, ",".join(failed))
    return report
