"""Loading a params file (`params/<profile>.yaml`) into the typed `config.schema.Params`.

A profile may start with `extends: <other profile>` and override only what differs (smoke extends
demo, colab extends kaggle) instead of copying whole files. Strings may use `{repo}`, `{profile}`,
`{output_dir}` and `{demo_data}`. Loading fails with a `ParamsError` naming the key for an unknown
key (with the closest valid name), a wrong type, a value out of range (`config.validate`) or a
dataset root that does not exist.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path

import yaml

from interceptor_lib import REPO_ROOT
from interceptor_lib.config.schema import Params
from interceptor_lib.config.validate import check
from interceptor_lib.errors import ParamsError

PARAMS_DIR = REPO_ROOT / "params"
PROFILE_ENV = "INTERCEPTOR_PROFILE"


def read_params(profile: str | None = None, path: str | Path | None = None, overrides: dict | None = None,
                check_paths: bool = True) -> Params:
    """Read a profile by name (from params/) or a file by path, apply dotted `overrides`
    ({"preprocess.frames_per_video": 8}), resolve placeholders, check types, ranges and paths
    (config.validate). With neither name nor path, the profile comes from $INTERCEPTOR_PROFILE, else
    'demo'. Names the registries know are checked by `interceptor_lib.params.load_params`."""
    if path is None:
        profile = profile or os.environ.get(PROFILE_ENV) or "demo"
        path = PARAMS_DIR / f"{profile}.yaml"
    raw = _read_with_extends(Path(path), seen=())
    raw.setdefault("profile", Path(path).stem)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, last = dotted.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    prev = (raw.get("train") or {}).get("previous_outputs") if isinstance(raw.get("train"), dict) else None
    if isinstance(prev, str):  # one attached folder may be given as a string
        raw["train"]["previous_outputs"] = [prev]
    params = _build(Params, raw, "")
    _resolve(params)
    check(params, check_paths)
    return params


def _read_with_extends(path: Path, seen: tuple) -> dict:
    """The mapping of params file `path` merged over the file it `extends` (recursively). `extends:
    <name>` is looked up beside `path` first, then in params/ (so a params file anywhere can extend a
    profile); the asking file itself is skipped, so `my/kaggle.yaml` may extend the kaggle profile.
    `seen`: the resolved files asking so far (a cycle is an error)."""
    if not path.is_file():
        avail = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise ParamsError(f"params file {path} not found; profiles in {PARAMS_DIR}: {avail}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ParamsError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ParamsError(f"{path}: 'extends' must name a profile (e.g. extends: kaggle), got {base!r}")
    here = path.resolve()
    fname = base if base.endswith((".yaml", ".yml")) else f"{base}.yaml"
    places = list(dict.fromkeys(d / fname for d in (path.parent, PARAMS_DIR)))
    found = next((c for c in places if c.is_file() and c.resolve() != here), None)
    if found is None:
        avail = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        looked = ", ".join(str(c) for c in places)
        raise ParamsError(f"{path}: 'extends: {base}' names no params file; looked for {looked}; "
                          f"profiles in {PARAMS_DIR}: {avail}")
    if found.resolve() in seen + (here,):
        raise ParamsError(f"{path}: 'extends' cycle through {base!r} ({found})")
    parent = _read_with_extends(found, seen + (here,))
    parent.pop("profile", None)
    return _merge(parent, data)


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _build(cls, data, where: str):
    """Instantiate dataclass `cls` from a mapping, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise ParamsError(f"{where or 'params'}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {sorted(fields)}"
            raise ParamsError(f"unknown params key {name!r}{hint}")
        kwargs[key] = _coerce(hints[key], value, name)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ParamsError(f"missing params key {(where + '.' if where else '') + missing[0]!r}")
    return cls(**kwargs)


def _coerce(tp, value, name):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, name)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, name)
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"params key {name!r} must be a mapping, got {value!r}")
        return {k: _coerce(args[1], v, f"{name}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"params key {name!r} must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ParamsError(f"params key {name!r} must be {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _resolve(p: Params) -> None:
    ctx = {"repo": str(REPO_ROOT), "profile": p.profile}
    p.output_dir = p.output_dir.format(**ctx)
    ctx["output_dir"] = p.output_dir
    p.demo_data.out = p.demo_data.out.format(**ctx)
    ctx["demo_data"] = p.demo_data.out
    p.preprocess.cache_dir = p.preprocess.cache_dir.format(**ctx)
    p.train.pretext.out = p.train.pretext.out.format(**ctx)
    if p.train.previous_outputs:
        p.train.previous_outputs = [d.format(**ctx) for d in p.train.previous_outputs]
        p.train.pretext.out = _attached_copy(p.train.pretext.out, p.output_dir, p.train.previous_outputs)
    if p.train.pretext.steps > 0 and p.train.weights is None:
        p.train.weights = p.train.pretext.out  # made by notebook 00 (training.pretext), before any stage
    if p.train.weights:
        p.train.weights = p.train.weights.format(**ctx)
    for d in p.datasets.values():
        d.root = d.root.format(**ctx)
        d.options = {k: v.format(**ctx) if isinstance(v, str) else v for k, v in d.options.items()}


def _attached_copy(path: str, output_dir: str, previous: list[str]) -> str:
    """`path` (a file under output_dir) or, when this run has not made it, the same file in the first
    attached earlier output that has it (e.g. the pretext backbone a first session trained)."""
    p, out = Path(path), Path(output_dir)
    if p.is_file() or not p.is_relative_to(out):
        return path
    rel = p.relative_to(out)
    return next((str(Path(d) / rel) for d in previous if (Path(d) / rel).is_file()), path)


# Value ranges: (dotted key, lowest, highest, whether the lowest / highest is allowed); None = unbounded.
