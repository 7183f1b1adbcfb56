"""Export a detector or the ensemble to TorchScript and ONNX, and check the exported file against eager.

    model = create_model("av", backbone="efficientnet_b4")          # trained weights loaded
    report = export_model(model, example_batch(model, size=224), "exports/av")
    # exports/av/av.pt (TorchScript), exports/av/av.onnx, exports/av/av_export.json (parity, timings)

The graph's inputs and outputs are the model's batch keys (`export.signature`); the file records
them, so `export.runtime.ExportedModel` runs it from a batch dict.

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

from interceptor_lib.export.errors import ExportError, ParityError
from interceptor_lib.export.runtime import FORMATS, META_KEY, SUFFIXES, ExportedModel, require_packages
from interceptor_lib.export.signature import (ENSEMBLE_OUTPUTS, ExportWrapper, batch_inputs, batch_like, batch_rows,
                                              export_input_keys, model_label)

DEFAULT_OPSET = 18  # ONNX opset: STFT (av's log-mel) needs >= 17; onnxruntime >= 1.14 runs 18
# max |exported - eager| accepted on every output, float32, scaled by max(1, max |eager|) of that
# output: absolute for probabilities, relative for logits, whose rounding grows with their size
# (kernels that sum in another order differ by ~1e-5 of the value)
DEFAULT_TOLERANCE = 1e-4


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
            "example_batch_size": batch_rows(inputs), "dynamic_batch": dynamic_batch,
            "torch": torch.__version__, **extra}


# ---------------------------------------------------------------------------------------------
# TorchScript

def _prepare(model: nn.Module, example_batch: dict, input_keys: Sequence[str] | None,
             output_keys: Sequence[str] | None, fmt: str):
    """(label, wrapper, example inputs, eager outputs) for an export, in eval mode. Output keys
    default to those of ENSEMBLE_OUTPUTS the model returns (prob and logits are required)."""
    label = model_label(model)
    keys = export_input_keys(model, example_batch, input_keys)
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
    require_packages(("onnx", "onnxscript", "onnxruntime"), model_label(model), fmt,
             "torch.onnx.export's dynamo path translates with onnxscript; onnx and onnxruntime check the file")
    import onnx  # optional: only the ONNX format needs it

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
# Parity and speed against eager

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
        raise ExportError(f"{runner.format} export of {label!r} fails on a batch of {batch_rows(inputs)} "
                          f"(exported with {runner.meta.get('example_batch_size')}): {_summary(e)}",
                          label, runner.format) from e
    diffs = _max_diffs(ref, got, runner.output_keys, label, runner.format)
    worst = max(diffs.values())
    return {"format": runner.format, "path": str(exported_path), "inputs": list(runner.input_keys),
            "outputs": list(runner.output_keys), "batch_size": batch_rows(inputs),
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
    return {"format": runner.format, "batch_size": batch_rows(inputs), "threads": threads,
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
        n = batch_rows(batch_inputs(example_batch, export_input_keys(model, example_batch, input_keys)))
        parity_batch = batch_like(example_batch, n + 1 if dynamic_batch else n)
    report = {"model": name, "torch": torch.__version__, "tolerance": tolerance, "formats": {}}
    if "onnx" in formats and importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime  # optional: only the ONNX format needs it

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
