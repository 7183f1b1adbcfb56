"""The exported graph's signature: which batch keys a model reads and which outputs it returns.

The exported graph takes positional tensors and returns a tuple; `ExportWrapper` turns the batch-dict
contract of models/base.py into that:
  inputs   in the order of INPUT_ORDER, the keys the model reads: image models (image), clip models
           (clip), a model the registry marks as reading audio (clip, audio, has_audio), an ensemble
           the union of its members' keys (e.g. image, clip, audio, has_audio). has_audio is passed
           as bool.
  outputs  detectors (prob (B,), logits (B, 2)); ensembles (prob, logits, member_probs (B, M),
           uncertainty (B,)).
`example_batch` and `batch_like` make random batches of that signature (the export's example and
the parity check's fresh batch).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from interceptor_lib.export.errors import ExportError
from interceptor_lib.models.base import DetectorBase
from interceptor_lib.models.registry import model_entry

INPUT_ORDER = ("image", "clip", "audio", "has_audio")  # positional order of the exported graph's inputs
DETECTOR_OUTPUTS = ("prob", "logits")
ENSEMBLE_OUTPUTS = ("prob", "logits", "member_probs", "uncertainty")


def model_label(model: nn.Module) -> str:
    """The registry name (`model.model_name`) or, for ensembles and other modules, the class name."""
    return getattr(model, "model_name", "") or type(model).__name__


def _reads_audio(detector: DetectorBase, owner: nn.Module) -> bool:
    """The registry's fact for `detector`'s name (`model_name`, which create_model sets; an ensemble's
    members are stored under the same names)."""
    if not detector.model_name:
        raise ExportError(f"cannot tell which batch keys {model_label(owner)!r} reads: a {type(detector).__name__} "
                          f"in it has no registry name (model_name, set by create_model); pass input_keys=(...) "
                          f"(a subset of {INPUT_ORDER} in that order)", model_label(owner))
    return model_entry(detector.model_name).reads_audio


def model_input_keys(model: nn.Module) -> tuple[str, ...]:
    """The batch keys `model` reads, in INPUT_ORDER: a declared `model.input_keys`, else derived from
    every detector (DetectorBase) in it: its `input_kind`, plus audio and has_audio when the model
    registry says it reads audio (`reads_audio`). For an ensemble that is the union over its members."""
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
        if _reads_audio(d, model):
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


def export_input_keys(model: nn.Module, batch: dict, input_keys: Sequence[str] | None) -> tuple[str, ...]:
    """Keys the export takes: `input_keys`, else the model's keys that the example batch has (has_audio
    follows audio). A model that needs a key the batch lacks fails in its forward, with its message."""
    if input_keys:
        return tuple(input_keys)
    keys = [k for k in model_input_keys(model) if k in batch or (k == "has_audio" and "audio" in batch)]
    if not keys:
        raise ExportError(f"the example batch (keys {sorted(batch)}) has none of the inputs "
                          f"{model_input_keys(model)} that {model_label(model)!r} reads", model_label(model))
    return tuple(keys)


def batch_rows(inputs: Sequence[torch.Tensor]) -> int:
    """The batch size of positional inputs (the first one's leading dimension)."""
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
