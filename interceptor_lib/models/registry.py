"""The model registry: every detector is built by name through one factory (timm's pattern).

    @register_model("ll", config=SpecialistConfig, input_kind="image", group="specialist")
    def ll(cfg: SpecialistConfig) -> nn.Module: ...

    model = create_model("ll", backbone="test_efficientnet", pretrained=False)

`create_model` turns its keyword arguments into the entry's typed config dataclass, so a params file
with a misspelt key fails at once with the key named, before any weights are touched. Notebooks and
the ensemble never branch on model names: they ask the registry (`list_models`, `model_entry`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from interceptor_lib.errors import InterceptorError

INPUT_KINDS = ("image", "clip")
GROUPS = ("specialist", "baseline")


class UnknownModelError(InterceptorError, ValueError):
    """`create_model` was asked for a name the registry does not hold; the message lists the known ones."""


class ModelConfigError(InterceptorError, ValueError):
    """A keyword given to `create_model` is not a field of the model's config; the message names it."""


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one model without building it."""

    name: str
    builder: Callable[[Any], nn.Module]
    config: type  # the config dataclass `create_model` fills from its keyword arguments
    input_kind: str  # "image": batch["image"] (B, 3, H, W); "clip": batch["clip"] (B, T, 3, H, W)
    group: str  # "specialist" (one of the six) or "baseline" (the reference design's detectors, Xception)
    summary: str
    reads_audio: bool = False  # also reads batch["audio"] (the audio-visual specialist)
    # the artifact family a specialist is built for (the demo corpus's families; None for a baseline)
    artifact_family: str | None = None
    # its forward may leave trainable parameters without a gradient (the audio-visual model skips its
    # audio branch for a batch without audio): DDP must search for unused parameters
    optional_branch: bool = False

    def make_config(self, **kwargs) -> Any:
        """The entry's config with `kwargs` applied; an unknown key raises ModelConfigError naming it."""
        fields = {f.name for f in dataclasses.fields(self.config)}
        unknown = sorted(set(kwargs) - fields)
        if unknown:
            raise ModelConfigError(
                f"model {self.name!r} has no option(s) {unknown}; its options are {sorted(fields)}")
        return self.config(**kwargs)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, config: type, input_kind: str, group: str, summary: str = "",
                   reads_audio: bool = False, artifact_family: str | None = None, optional_branch: bool = False):
    """Decorator adding a builder `fn(cfg) -> nn.Module` to the registry under `name`. The keywords
    are the entry's facts (see ModelEntry): `reads_audio`, what it can perceive (notebook 07);
    `artifact_family`, what a specialist is built to catch; `optional_branch`, DDP's unused-parameter
    search."""
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config of model {name!r} must be a dataclass, got {config!r}")

    def decorate(fn: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice ({_REGISTRY[name].builder} and {fn})")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelEntry(name, fn, config, input_kind, group, summary or (doc[0] if doc else ""),
                                    reads_audio, artifact_family, optional_branch)
        return fn

    return decorate


def list_models(group: str | None = None) -> list[str]:
    """Registered names in registration order (specialists first); `group` filters to
    "specialist" or "baseline"."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS} or None, got {group!r}")
    return [n for n, e in _REGISTRY.items() if group is None or e.group == group]


def model_entry(name: str) -> ModelEntry:
    """The registry entry of `name` (its config class, input kind, group, summary)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model `name` with its config fields overridden by `kwargs`
    (e.g. `backbone="test_efficientnet", pretrained=False, trainable_stages=2`).

    The returned module carries `model_name` and `config` so that a checkpoint can rebuild it with
    `create_model(model.model_name, **dataclasses.asdict(model.config))`."""
    entry = model_entry(name)
    cfg = entry.make_config(**kwargs)
    model = entry.builder(cfg)
    model.model_name = name
    model.config = cfg
    return model
