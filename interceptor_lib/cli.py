"""Command line: `python -m interceptor_lib <command> ...` (also installed as `interceptor`).

User errors (a wrong root, a bad params key, a failure ceiling) print one message and exit with
status 2, without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from interceptor_lib.errors import InterceptorError


def _cmd_index(a) -> int:
    from interceptor_lib.data.indexers import index_dataset
    from interceptor_lib.data.table import check_leakage, class_counts, write_table
    from interceptor_lib.data.indexers import official_test_ids

    options = dict(_parse_option(o) for o in a.option)
    if a.splits:
        if a.dataset != "ffpp":
            raise InterceptorError("--splits applies to --dataset ffpp only")
        options["splits_dir"] = a.splits
    df = index_dataset(a.dataset, a.root, **options)
    check_leakage(df, {a.dataset: official_test_ids(a.dataset, a.root)})
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_table(df, a.out)
    print(class_counts(df, ["dataset", "split"]).to_string(index=False))
    print(f"wrote {len(df)} rows to {a.out}")
    return 0


def _cmd_make_demo_data(a) -> int:
    from interceptor_lib.data.demo import make_demo_data

    t = time.perf_counter()
    report = make_demo_data(a.out, seed=a.seed, scale=a.scale, artifact_strength=a.strength,
                            workers=a.workers, progress=not a.quiet)
    report = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    print(json.dumps(report, indent=1, default=str))
    print(f"demo corpus in {a.out} ({time.perf_counter() - t:.1f} s)")
    return 0


def _cmd_prepare(a) -> int:
    from interceptor_lib.config import load_params
    from interceptor_lib.data.prepare import prepare_data

    params = load_params(a.profile, a.params)
    print(json.dumps(prepare_data(params, progress=not a.quiet), indent=1, default=str))
    return 0


def _cmd_params(a) -> int:
    from dataclasses import asdict

    from interceptor_lib.config import load_params

    params = load_params(a.profile, a.params)
    print(json.dumps(asdict(params), indent=1, default=str))
    print(f"params OK: profile {params.profile}", file=sys.stderr)
    return 0


def _cmd_checkpoint(a) -> int:
    from interceptor_lib.training.checkpoint import verify_checkpoint

    index = verify_checkpoint(a.path)
    n = sum(f["bytes"] for f in index["files"].values())
    print(f"OK {a.path}: {len(index['files'])} chunk(s), {n / 2**20:.1f} MiB, sha256 verified "
          f"(library {index['library_version']}, {index['created']})")
    return 0


def _parse_option(text: str):
    if "=" not in text:
        raise InterceptorError(f"--option expects KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        v = json.loads(v)
    except json.JSONDecodeError:
        pass  # a plain string
    return k, v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m interceptor_lib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", help="index a dataset folder into the common table (CSV)")
    s.add_argument("--dataset", required=True, choices=["ffpp", "celebdf", "wilddeepfake", "dfdc"])
    s.add_argument("--root", required=True, help="the dataset's root folder")
    s.add_argument("--out", required=True, help="output CSV")
    s.add_argument("--splits", help="FF++: folder holding the official train/val/test.json")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="indexer option, e.g. val_fraction=0.1 or chunks=[0,1] (repeatable)")
    s.set_defaults(func=_cmd_index)

    s = sub.add_parser("make-demo-data", help="generate the synthetic corpus in the four datasets' layouts")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scale", choices=["tiny", "small", "medium"], default="small")
    s.add_argument("--strength", type=float, default=1.0, help="artifact strength (1.0 = default difficulty)")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_make_demo_data)

    s = sub.add_parser("checkpoint", help="checkpoint tools")
    s.add_argument("action", choices=["verify"], help="verify: check every chunk's size and sha256")
    s.add_argument("path", help="a checkpoint folder")
    s.set_defaults(func=_cmd_checkpoint)

    for name, func, text in (("prepare", _cmd_prepare, "generate (demo), index and cache faces for a profile"),
                             ("params", _cmd_params, "validate a params profile and print it resolved")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--profile", help="profile name in params/ (default: demo)")
        s.add_argument("--params", help="path of a params file instead of a profile name")
        if name == "prepare":
            s.add_argument("--quiet", action="store_true")
        s.set_defaults(func=func)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InterceptorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
