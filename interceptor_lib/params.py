"""`load_params`: a profile loaded (`config.load`), then checked against the registries.

The registries know which models, datasets (and their indexers' options) and optional face detectors
exist; a params file naming something else stops here, naming the key, before any work starts.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from interceptor_lib.config.load import read_params
from interceptor_lib.config.schema import Params
from interceptor_lib.data.faces import optional_detector_missing
from interceptor_lib.data.indexers import INDEXERS
from interceptor_lib.data.perturb import PERTURBATIONS
from interceptor_lib.errors import ParamsError
from interceptor_lib.models import list_models, model_entry


def load_params(profile: str | None = None, path: str | Path | None = None, overrides: dict | None = None,
                check_paths: bool = True) -> Params:
    """Load a profile by name (from params/) or a file by path, apply dotted `overrides`
    ({"preprocess.frames_per_video": 8}), resolve placeholders, validate (config.load.read_params),
    then check every name against the registries. With neither name nor path, the profile comes
    from $INTERCEPTOR_PROFILE, else 'demo'."""
    p = read_params(profile, path, overrides, check_paths)
    check_names(p, check_paths)
    return p


def check_names(p: Params, check_paths: bool = True) -> None:
    """Raise a ParamsError naming the key for a model, dataset, indexer option or face detector that
    the registries do not know (or that is not installed)."""
    if p.preprocess.detector in ("mtcnn", "mediapipe"):  # optional packages: say how to install them
        missing = optional_detector_missing(p.preprocess.detector)
        if missing:
            raise ParamsError(f"params key 'preprocess.detector': {missing}")
    unknown = [x for x in p.evaluation.robustness.perturbations if x not in PERTURBATIONS]
    if unknown or len(set(p.evaluation.robustness.perturbations)) != len(p.evaluation.robustness.perturbations):
        raise ParamsError(f"params key 'evaluation.robustness.perturbations': a list of distinct names of "
                          f"{list(PERTURBATIONS)}, got {p.evaluation.robustness.perturbations!r}")
    unknown = [m for m in p.train.models if m not in list_models()]
    if unknown:
        raise ParamsError(f"params key 'train.models': unknown model(s) {unknown}; known: {list_models()}")
    unknown = [m for m in p.evaluation.pseudo_fakes.models if m not in list_models()]
    if unknown:
        raise ParamsError(f"params key 'evaluation.pseudo_fakes.models': unknown model(s) {unknown}; "
                          f"known: {list_models()}")
    for name, st in p.train.stages.items():
        if st.dataset not in INDEXERS:
            raise ParamsError(f"params key 'train.stages.{name}.dataset' must be one of {sorted(INDEXERS)}, got {st.dataset!r}")
    for name in p.train.models:
        try:
            model_entry(name).make_config(**p.train.model_config)
        except Exception as e:  # ModelConfigError or a config's own check (e.g. hidden vs dropout)
            raise ParamsError(f"params key 'train.model_config': {e}") from None
    for name, d in p.datasets.items():
        if name not in INDEXERS:
            raise ParamsError(f"unknown dataset 'datasets.{name}'; known: {sorted(INDEXERS)}")
        sig = inspect.signature(INDEXERS[name])
        allowed = [k for k in sig.parameters if k != "root"]
        for opt, value in d.options.items():
            if opt not in allowed:
                raise ParamsError(f"unknown params key 'datasets.{name}.options.{opt}'; {name} takes {allowed}")
            if check_paths and d.enabled and isinstance(value, str) and opt.endswith(("_dir", "_path")) \
                    and not Path(value).exists():
                raise ParamsError(f"params key 'datasets.{name}.options.{opt}': path {value} does not exist")
        generated = p.demo_data.generate and Path(d.root).is_relative_to(p.demo_data.out)
        if check_paths and d.enabled and not generated and not Path(d.root).exists():
            raise ParamsError(f"params key 'datasets.{name}.root': folder {d.root} does not exist "
                              f"(set it to where {name} is, or enabled: false)")
