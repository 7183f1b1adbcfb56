"""Fingerprint what a profile's chain produced, to prove a refactoring changed no behaviour.

Hashes every finished stage's best checkpoint tensor by tensor, the evaluation tables, the ensemble
JSON and the predictions of a run folder (machine-specific fields dropped: creation times, absolute
paths, durations). Training is deterministic on the CPU, so the same code and params give the same
fingerprint; two runs differ exactly where the behaviour changed.

    python benchmarks/chain_fingerprint.py outputs/smoke > before.json
    ... change the code, re-run ./run_all.sh smoke from an empty outputs/smoke ...
    python benchmarks/chain_fingerprint.py outputs/smoke --compare before.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

#: fields that differ between two identical runs (times, machine paths, library versions)
VOLATILE = re.compile(r"(created|seconds|duration|time|_s$|path|dir|root|checkpoint|best|init|library_version"
                      r"|fitted_on|cache|source|version)", re.I)


def _tensors(path: Path) -> dict[str, str]:
    from safetensors.numpy import load_file

    return {k: hashlib.sha256(v.tobytes()).hexdigest()[:16] for k, v in sorted(load_file(str(path)).items())}


def _json(value):
    if isinstance(value, dict):
        return {k: _json(v) for k, v in sorted(value.items()) if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, float):
        return round(value, 10)
    return value


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(run: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for best in sorted(run.glob("runs/*/stage*/best-fp16/tensors.safetensors")):
        out[str(best.relative_to(run))] = _digest(_tensors(best))
    for path in sorted(run.glob("runs/*/stage*/done.json")):
        done = json.loads(path.read_text())
        out[str(path.relative_to(run)) + ":history"] = _digest(_json(done.get("history")))
    for path in sorted((run / "eval").glob("*.csv")):
        out[str(path.relative_to(run))] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    ens = run / "ensemble" / "ensemble.json"
    if ens.is_file():
        out["ensemble/ensemble.json"] = _digest(_json(json.loads(ens.read_text())))
    pretext = run / "pretext" / "backbone.safetensors"
    if pretext.is_file():
        out["pretext/backbone.safetensors"] = _digest(_tensors(pretext))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a profile's output folder, e.g. outputs/smoke")
    ap.add_argument("--compare", type=Path, help="a fingerprint JSON written earlier: print what differs")
    args = ap.parse_args(argv)
    now = fingerprint(args.run)
    if not args.compare:
        print(json.dumps(now, indent=1, sort_keys=True))
        return 0
    before = json.loads(args.compare.read_text())
    differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    for k in differ:
        print(f"differs: {k}  {before.get(k)} -> {now.get(k)}")
    print(f"{len(now)} entries, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
