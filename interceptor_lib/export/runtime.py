"""Run an exported file without the original module: `ExportedModel(path)(batch)`.

The input and output names are stored in the file (TorchScript: an extra file; ONNX: metadata_props
and the graph's input/output names) under META_KEY, so a file runs from a batch dict without this
package's models. The batch dimension is dynamic (ONNX: exported with `dynamic_batch=True`, one
symbol shared by all inputs; a TorchScript trace records size ops, so it is batch-generic unless the
model branches on the batch size in Python); image size, clip length T and audio length S are fixed
at export time.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Sequence

import torch

from interceptor_lib.config.schema import EXPORT_FORMATS
from interceptor_lib.export.errors import ExportDependencyMissing, ExportError
from interceptor_lib.export.signature import batch_inputs

FORMATS = EXPORT_FORMATS
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx"}
META_KEY = "interceptor_export"  # TorchScript extra file name / ONNX metadata_props key (JSON)
ONNX_PACKAGES = {"onnx": "onnx>=1.17", "onnxscript": "onnxscript>=0.3", "onnxruntime": "onnxruntime>=1.17"}


def require_packages(packages: Sequence[str], label: str, fmt: str, why: str) -> None:
    """ExportDependencyMissing (with the pip command) when any of `packages` is not installed."""
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        pins = " ".join(f"'{ONNX_PACKAGES[p]}'" for p in missing)
        raise ExportDependencyMissing(f"{fmt} export of {label!r} needs {', '.join(missing)} ({why}); "
                                      f"install with: pip install {pins}", label, fmt)


def _format_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    for fmt, s in SUFFIXES.items():
        if suffix == s or (fmt == "torchscript" and suffix in (".pt", ".ts", ".pth")):
            return fmt
    raise ExportError(f"cannot tell the format of {path}: expected a .pt/.ts (TorchScript) or .onnx file")


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
            require_packages(("onnxruntime",), self.path.stem, "onnx", "it runs the exported file")
            import onnxruntime as ort  # optional: only ONNX files need it

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
