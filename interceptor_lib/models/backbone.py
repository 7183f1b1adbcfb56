"""A timm backbone cut into ordered units (stem, stages, head conv) for freezing and trunk sharing.

Weights are never downloaded here. With `pretrained=True` they come from, in order:
  1. an explicit file `weights=` (.safetensors, .pth, .pt, .bin; a timm/HF checkpoint of that model),
  2. the local Hugging Face cache (`huggingface_hub.try_to_load_from_cache`, the model's `hf_hub_id`),
  3. the local timm/torch-hub cache (`<torch hub dir>/checkpoints/<file name of the model's url>`),
and when none exists `PretrainedWeightsMissing` says what was looked for and how to provide it. A
silent random initialisation would train for hours and report chance-level results.
`check_backbone_weights(train, profile)` runs the same lookup without building a model, so a run
stops on missing weights before any preprocessing.

The units are run one after another, so a model is `trunk(x) -> rest(trunk)`: the trunk is the
leading units whose parameters are all frozen (stem + frozen stages), `trunk_depth` of them. Models
whose trunks hold the same frozen weights compute the same trunk (frozen BatchNorm stays in eval
mode, see freezing.py), which lets the ensemble run it once for all specialists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants as hf_constants
import timm
import torch
from timm.data import resolve_model_data_config
from timm.models import load_state_dict
from timm.models.efficientnet import EfficientNet
from timm.models.resnet import ResNet
from timm.models.xception import Xception
from torch import nn

from interceptor_lib.config.schema import TrainParams
from interceptor_lib.errors import InterceptorError, ParamsError

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm publishes on the HF hub


class PretrainedWeightsMissing(InterceptorError, FileNotFoundError):
    """`pretrained=True` but no weight file for the backbone exists on this machine."""


class PretrainedWeightsMismatch(InterceptorError, ValueError):
    """A weight file was found but does not fit the backbone (other architecture, missing keys)."""


class UnsupportedBackbone(InterceptorError, ValueError):
    """The timm model's family has no unit layout here (see `_LAYOUTS`)."""


# ---------------------------------------------------------------------------------------------
# Unit layouts: the backbone's forward_features as a sequence of units. One function per timm family.

@dataclass
class _Layout:
    stem: nn.Module
    stages: list[nn.Module]
    head: nn.Module | None  # the head conv (1x1 to num_features) where the family has one


def _efficientnet_layout(m: EfficientNet) -> _Layout:
    # timm's EfficientNet class also builds MobileNetV2 and test_efficientnet.
    return _Layout(nn.Sequential(m.conv_stem, m.bn1), list(m.blocks), nn.Sequential(m.conv_head, m.bn2))


def _resnet_layout(m: ResNet) -> _Layout:
    return _Layout(nn.Sequential(m.conv1, m.bn1, m.act1, m.maxpool), [m.layer1, m.layer2, m.layer3, m.layer4], None)


def _xception_layout(m: Xception) -> _Layout:
    stages = [getattr(m, f"block{i}") for i in range(1, 13)]
    return _Layout(nn.Sequential(m.conv1, m.bn1, m.act1, m.conv2, m.bn2, m.act2), stages,
                   nn.Sequential(m.conv3, m.bn3, m.act3, m.conv4, m.bn4, m.act4))


_LAYOUTS = ((EfficientNet, _efficientnet_layout), (ResNet, _resnet_layout), (Xception, _xception_layout))


def _layout_of(model: nn.Module, name: str) -> _Layout:
    for cls, fn in _LAYOUTS:
        if isinstance(model, cls):
            return fn(model)
    families = ", ".join(c.__name__ for c, _ in _LAYOUTS)
    raise UnsupportedBackbone(f"backbone {name!r} is a timm {type(model).__name__}; supported families: "
                              f"{families} (e.g. efficientnet_b4, test_efficientnet, mobilenetv2_100, "
                              f"test_resnet, legacy_xception)")


# ---------------------------------------------------------------------------------------------
# Weight resolution

def _candidate_files(cfg: dict, cache_dir: str | Path | None) -> tuple[Path | None, list[str]]:
    """The first local weight file for a timm pretrained_cfg, and every place that was looked at."""
    looked = []
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        names = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else HF_WEIGHT_FILES
        root = Path(cache_dir or hf_constants.HF_HUB_CACHE)
        for fname in names:
            hit = huggingface_hub.try_to_load_from_cache(hub_id, fname, cache_dir=cache_dir)
            if isinstance(hit, str):
                return Path(hit), looked
            looked.append(f"HF cache: {root}/models--{hub_id.replace('/', '--')}/snapshots/*/{fname}")
    url = cfg.get("url")
    if url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if path.is_file():
            return path, looked
        looked.append(f"timm/torch-hub cache: {path}")
    return None, looked


def resolve_pretrained_file(name: str, cfg: dict, weights: str | Path | None = None,
                            cache_dir: str | Path | None = None) -> Path:
    """Path of the local weight file for timm model `name` (pretrained_cfg `cfg`), never downloading."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise PretrainedWeightsMissing(f"weights file {path} for backbone {name!r} does not exist "
                                           f"(params key train.weights; Python: weights=)")
        return path
    path, looked = _candidate_files(cfg, cache_dir)
    if path is not None:
        return path
    hub_id = cfg.get("hf_hub_id")
    url = cfg.get("url")
    fname = (cfg.get("hf_hub_filename") or "model.safetensors") if hub_id else \
        (url.rsplit("/", 1)[-1] if url else "<weight file>")
    source = f"timm's hub repo https://huggingface.co/{hub_id}" if hub_id else (url or "wherever you trained it")
    options = [f"train.weights: <path to the weight file> in the params file (Python: weights=). On Kaggle, "
               f"attach a Kaggle dataset that holds timm's {name} weights (the {fname} from {source}), "
               f"then set\n       train.weights: /kaggle/input/<dataset>/{fname}"]
    if hub_id:
        options.append(f"pre-populate the Hugging Face cache on a machine with internet access:\n"
                       f"       huggingface-cli download {hub_id} {fname}\n"
                       f"     then copy the cache here (or point HF_HUB_CACHE at it);")
    options.append("train.pretrained: false (Python: pretrained=False) for a random initialisation "
                   "(tests, demos, size reports).")
    where = "\n  - ".join(looked) or "nothing: timm publishes no ImageNet weights for this model"
    numbered = "\n".join(f"  {i}. {o}" for i, o in enumerate(options, 1))
    raise PretrainedWeightsMissing(
        f"no ImageNet weights for timm model {name!r} on this machine, and Interceptor never downloads "
        f"(offline, nothing is fetched). Looked for:\n  - {where}\nProvide one of:\n{numbered}")


def check_backbone_weights(train: TrainParams, profile: str) -> None:
    """Raise a ParamsError before any work starts when the models would need ImageNet weights that
    are not on this machine: `train.pretrained` without the pretext backbone (`train.pretext.steps`
    0), and neither `train.weights` an existing file nor the weights of `train.backbone` in the local
    Hugging Face / timm cache (the places `Backbone` loads from). `train`: the params' train section,
    `profile`: their profile (named in the message). Builds no model."""
    if not train.pretrained or train.pretext.steps > 0:
        return
    cfg = timm.models.get_pretrained_cfg(train.backbone)
    if cfg is None:
        raise ParamsError(f"params key 'train.backbone': timm has no model {train.backbone!r} "
                          f"(e.g. efficientnet_b4, test_efficientnet, legacy_xception)")
    try:
        resolve_pretrained_file(train.backbone, cfg.to_dict(), train.weights)
    except PretrainedWeightsMissing as e:
        raise ParamsError(f"params key 'train.weights' (profile {profile!r}): {e}") from None


def load_backbone_weights(model: nn.Module, path: Path, name: str) -> None:
    """Load a timm/HF checkpoint into a classifier-less timm model, strictly apart from the classifier."""
    state = load_state_dict(str(path), use_ema=True, weights_only=True)
    classifier = model.pretrained_cfg.get("classifier") or "classifier"
    classifiers = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    state = {k: v for k, v in state.items() if not k.startswith(tuple(c + "." for c in classifiers))}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch: another architecture or width
        raise PretrainedWeightsMismatch(f"{path} does not fit backbone {name!r}: {e}") from e
    if missing or unexpected:
        raise PretrainedWeightsMismatch(
            f"{path} does not fit backbone {name!r}: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}); is it a checkpoint of {name}?")


# ---------------------------------------------------------------------------------------------

class Backbone(nn.Module):
    """A classifier-less timm model (`self.model`, state-dict compatible with timm checkpoints) run as
    `units = [stem, *stages, head]`. `forward(x)` is the stride-32 feature map (N, C, H/32, W/32)."""

    def __init__(self, name: str, pretrained: bool, weights: str | Path | None = None,
                 cache_dir: str | Path | None = None):
        super().__init__()
        self.name = name
        # pretrained=False: timm builds the architecture only; our own resolver does the loading.
        self.model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
        self.weights_file = None
        if pretrained:
            self.weights_file = resolve_pretrained_file(name, self.model.pretrained_cfg, weights, cache_dir)
            load_backbone_weights(self.model, self.weights_file, name)
        layout = _layout_of(self.model, name)
        # A tuple, not submodules: the modules are registered once, under self.model, so the state
        # dict has timm's keys only (and safetensors sees no shared tensors).
        self._layout = (layout.stem, tuple(layout.stages), layout.head)
        self.num_features: int = self.model.num_features
        self.data_config: dict = resolve_model_data_config(self.model)  # mean, std, input_size, ...

    @property
    def stages(self) -> tuple[nn.Module, ...]:
        """The stages (EfficientNet: the 7 MBConv block groups), the unit of freezing."""
        return self._layout[1]

    @property
    def head(self) -> nn.Module | None:
        """The head conv (+ its BN/act) after the last stage, or None for families without one."""
        return self._layout[2]

    @property
    def units(self) -> list[nn.Module]:
        """Everything forward_features runs, in order: [stem, *stages, head]."""
        stem, stages, head = self._layout
        return [stem, *stages] + ([head] if head is not None else [])

    @property
    def last_unit(self) -> nn.Module:
        """The unit producing the final feature map (the Grad-CAM target)."""
        return self.units[-1]

    @property
    def trunk_depth(self) -> int:
        """Number of leading units with no trainable parameter: the shareable frozen trunk."""
        depth = 0
        for unit in self.units:
            if any(p.requires_grad for p in unit.parameters()):
                break
            depth += 1
        return depth

    def forward_trunk(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """(N, 3, H, W) -> output of the first `depth` units (default: the frozen trunk)."""
        for unit in self.units[: self.trunk_depth if depth is None else depth]:
            x = unit(x)
        return x

    def forward_rest(self, t: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """Output of forward_trunk(x, depth) -> final feature map (N, C, H/32, W/32). Does not modify `t`
        (EfficientNet stages start with a conv), so one trunk output can feed several models."""
        for unit in self.units[self.trunk_depth if depth is None else depth:]:
            t = unit(t)
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_rest(self.forward_trunk(x, 0), 0)

    def trunk_state(self) -> dict[str, torch.Tensor]:
        """State (weights and BN statistics) of the frozen trunk units, keyed as in `self.model`:
        two models can share one trunk computation when these are equal and the depths match."""
        held = {id(t) for unit in self.units[: self.trunk_depth] for t in (*unit.parameters(), *unit.buffers())}
        return {k: v.detach() for k, v in self.model.state_dict(keep_vars=True).items() if id(v) in held}


def create_backbone(name: str, pretrained: bool, weights: str | Path | None = None,
                    cache_dir: str | Path | None = None) -> Backbone:
    """A `Backbone` for timm model `name` (see the module docstring for where weights come from)."""
    return Backbone(name, pretrained, weights, cache_dir)
