"""Command line: `python -m interceptor_lib <command> ...` (also installed as `interceptor`).

User errors (a wrong root, a bad params key, a failure ceiling) print one message and exit with
status 2, without a traceback; anything else is a bug and keeps its traceback.

Each command imports the package modules it uses inside its function, so that `--help` and argument
errors answer at once instead of after torch, timm and OpenCV have loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from interceptor_lib import REPO_ROOT
from interceptor_lib.data.registry import DATASETS
from interceptor_lib.errors import InterceptorError


def _cmd_index(a) -> int:
    from interceptor_lib.data.indexers import INDEXERS, allowed_options, index_dataset, official_test_ids
    from interceptor_lib.data.table import check_leakage, class_counts, write_table

    options = dict(_parse_option(o) for o in a.option)
    if a.splits:
        if "splits_dir" not in allowed_options(a.dataset):
            takes = [d for d in INDEXERS if "splits_dir" in allowed_options(d)]
            raise InterceptorError(f"--splits applies to --dataset {' / '.join(takes)} only")
        options["splits_dir"] = a.splits
    df = index_dataset(a.dataset, a.root, **options)
    check_leakage(df, {a.dataset: official_test_ids(a.dataset, a.root)})
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_table(df, a.out)
    print(class_counts(df, ["dataset", "split"]).to_string(index=False))
    print(f"wrote {len(df)} rows to {a.out}")
    return 0


def _cmd_make_demo_data(a) -> int:
    from interceptor_lib.synthetic import make_demo_data

    t = time.perf_counter()
    report = make_demo_data(a.out, seed=a.seed, scale=a.scale, artifact_strength=a.strength,
                            workers=a.workers, progress=not a.quiet, overwrite=a.overwrite)
    report = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    print(json.dumps(report, indent=1, default=str))
    print(f"demo corpus in {a.out} ({time.perf_counter() - t:.1f} s)")
    return 0


def _cmd_prepare(a) -> int:
    from interceptor_lib.params import load_params
    from interceptor_lib.pipeline.prepare import prepare_data

    params = load_params(a.profile, a.params)
    print(json.dumps(prepare_data(params, progress=not a.quiet), indent=1, default=str))
    return 0


def _cmd_params(a) -> int:
    from interceptor_lib.params import load_params

    params = load_params(a.profile, a.params)
    print(json.dumps(asdict(params), indent=1, default=str))
    print(f"params OK: profile {params.profile}", file=sys.stderr)
    return 0


def _cmd_checkpoint(a) -> int:
    if not Path(a.path).is_dir():  # said before importing torch
        raise InterceptorError(f"{a.path} " + ("is a file; a checkpoint is a folder" if Path(a.path).exists() else
                                               "does not exist") + " (expected a checkpoint folder holding "
                               "checkpoint.json and its chunks)")
    from interceptor_lib.training.checkpoint import verify_checkpoint

    index = verify_checkpoint(a.path)
    n = sum(f["bytes"] for f in index["files"].values())
    print(f"OK {a.path}: {len(index['files'])} chunk(s), {n / 2**20:.1f} MiB, sha256 verified "
          f"(library {index['library_version']}, {index['created']})")
    return 0


def _cmd_predict(a) -> int:
    """Score videos / images; the logic is inference.predict.predict_paths, this only formats. Exit 2 when
    any input could not be scored (each with a one-line message), after reporting the others."""
    if not (a.run or a.profile or a.params):  # said before the heavy imports below
        raise InterceptorError("predict needs --run <output folder of a trained profile> or --profile / --params")
    if a.explain and Path(a.explain).exists() and not Path(a.explain).is_dir():
        raise InterceptorError(f"--explain expects a folder for the Grad-CAM images; {a.explain} is a file")
    from interceptor_lib.inference.format import format_table
    from interceptor_lib.inference.predict import predict_paths

    log = None if a.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    results = predict_paths(a.paths, a.run, profile=a.profile, params_file=a.params, frames=a.frames,
                            explain_dir=a.explain, explain_members=_members(a.explain_members), device=a.device, precropped=a.precropped, log=log)
    if a.json:
        print(json.dumps(results, indent=1))
    else:
        table = format_table(results)
        if table:
            print(table)
    for r in results:
        if r.get("explain_error"):
            print(f"warning: no Grad-CAM: {r['explain_error']}", file=sys.stderr)
    bad = [r for r in results if not r["ok"]]
    for r in bad:
        print(f"error: {r['error']}", file=sys.stderr)
    return 2 if bad else 0


def _cmd_train(a) -> int:
    """One model through one stage (run_stage); under torchrun, one DDP worker of it."""
    from interceptor_lib.params import load_params
    from interceptor_lib.pipeline.launch import run_stage_process
    from interceptor_lib.pipeline.stages import TrainingStopped

    try:
        overrides = json.loads(a.overrides) if a.overrides else {}
    except json.JSONDecodeError as e:
        raise InterceptorError(f"--overrides expects a JSON object of dotted params keys, "
                               f'e.g. \'{{"train.batch_size": 8}}\'; got {a.overrides!r} ({e})') from e
    if not isinstance(overrides, dict):
        raise InterceptorError(f"--overrides expects a JSON object of dotted params keys, got {a.overrides!r}")
    params = load_params(a.profile, a.params, overrides)
    main_rank = int(os.environ.get("RANK", "0") or 0) == 0
    try:
        summary = run_stage_process(params, a.model, a.stage, progress=not a.quiet)
    except TrainingStopped:
        if not main_rank:
            return 2  # rank 0 says it once
        raise
    if main_rank:
        keys = ("model", "stage", "dataset", "best", "init", "seconds", "export", "skipped")
        print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=1, default=str))
    return 0


def _cmd_report(a) -> int:
    """Print the results section (from notebook 06's results.csv); --update-readme writes it into README.md."""
    from interceptor_lib.params import load_params
    from interceptor_lib.pipeline.report import results_markdown, update_readme

    md = results_markdown(load_params(a.profile, a.params))
    print(md)
    if a.update_readme:
        update_readme(a.readme or REPO_ROOT / "README.md", md)
    return 0


def _cmd_plan(a) -> int:
    """Print the plan of the whole chain (interceptor_lib.pipeline.plan); exit 1 when it does not fit."""
    from interceptor_lib.params import load_params
    from interceptor_lib.pipeline.plan import default_sizes, format_plan, format_plan_markdown, make_plan

    params = load_params(a.profile, a.params, check_paths=False)  # plans without the data present
    sizes = a.sizes or default_sizes(params) or "published"
    plan = make_plan(params, sizes)
    print(json.dumps(plan.to_dict(), indent=1) if a.json else format_plan_markdown(plan) if a.markdown
          else format_plan(plan))
    return 0 if plan.fits else 1


def _members(text: str):
    return text if text in ("all", "best") else [m.strip() for m in text.split(",") if m.strip()]


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
    s.add_argument("--dataset", required=True, choices=list(DATASETS))
    s.add_argument("--root", required=True, help="the dataset's root folder")
    s.add_argument("--out", required=True, help="output CSV")
    s.add_argument("--splits", help="FF++: folder holding the official train/val/test.json")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="indexer option, e.g. val_fraction=0.1 or chunks=[0,1] (repeatable)")
    s.set_defaults(func=_cmd_index)

    s = sub.add_parser("make-demo-data", help="generate the synthetic corpus in the four datasets' layouts")
    s.add_argument("--out", required=True, help="folder to write into; files there that make-demo-data did "
                                                "not write make it refuse (see --overwrite)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace the corpus's folders even when they hold files it did not write")
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

    s = sub.add_parser("report", help="the README results section from notebook 06's results.csv")
    s.add_argument("--profile", help="profile whose results to report (default: demo)")
    s.add_argument("--params", help="params file instead of a profile name")
    s.add_argument("--update-readme", action="store_true", help="write it between the README's results markers")
    s.add_argument("--readme", help="README to update (default: the repository's)")
    s.set_defaults(func=_cmd_report)

    s = sub.add_parser("predict", help="score videos / images (files or folders) with a trained ensemble")
    s.add_argument("paths", nargs="+", metavar="PATH", help="video, image or folder (searched recursively)")
    s.add_argument("--run", help="output folder of the trained profile, holding ensemble/ensemble.json "
                                 "(default: the output_dir of --profile / --params)")
    s.add_argument("--profile", help="profile whose preprocessing to use (default: what the run recorded)")
    s.add_argument("--params", help="params file instead of a profile name")
    s.add_argument("--json", action="store_true", help="print one JSON document (a list of results)")
    s.add_argument("--explain", metavar="DIR", help="write a Grad-CAM figure per input into DIR "
                                                   "(<input name>.gradcam.png)")
    s.add_argument("--explain-members", default="all", metavar="WHICH",
                   help="members shown in the Grad-CAM figure: all (default), best (largest weight), or names "
                        "separated by commas, e.g. ll,tm")
    s.add_argument("--frames", type=int, help="evenly spaced frames per video (default: preprocess.frames_per_video)")
    s.add_argument("--device", default="auto", help="auto (GPU when visible), cpu or cuda")
    s.add_argument("--precropped", action="store_true", help="images are face crops already: no face detection")
    s.add_argument("--quiet", action="store_true", help="no per-input progress lines on stderr")
    s.set_defaults(func=_cmd_predict)

    s = sub.add_parser("train", help="train one model through one stage (under torchrun: one DDP process per GPU)")
    s.add_argument("--profile", help="profile name in params/ (default: demo)")
    s.add_argument("--params", help="path of a params file instead of a profile name")
    s.add_argument("--model", required=True, help="a model of the registry, e.g. ll")
    s.add_argument("--stage", required=True, help="stage1 .. stage4 (a train.stages entry)")
    s.add_argument("--overrides", metavar="JSON", help='dotted params keys, e.g. \'{"train.batch_size": 8}\'')
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("plan", help="the plan of the whole chain in Kaggle sessions: hours, GB, sessions "
                                     "(exit 1 when it does not fit)")
    s.add_argument("--profile", help="profile name in params/ (default: demo)")
    s.add_argument("--params", help="path of a params file instead of a profile name")
    s.add_argument("--json", action="store_true", help="print the plan as one JSON document")
    s.add_argument("--markdown", action="store_true", help="print the sessions as a Markdown table (README)")
    s.add_argument("--sizes", choices=["published", "data"],
                   help="dataset sizes: the published ones, or the index table of a prepared run "
                        "(<output_dir>/index/all.csv); default: data when that table exists")
    s.set_defaults(func=_cmd_plan)

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
