"""What goes wrong in an export: each error names the model and the format."""

from __future__ import annotations

from interceptor_lib.errors import InterceptorError


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
