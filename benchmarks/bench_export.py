"""Exported (TorchScript, ONNX Runtime) vs eager inference, per specialist and for the ensemble: parity and speed.

For each model: export with `interceptor_lib.export` (batch `--batch`, dynamic batch dimension),
then
  parity   max |exported - eager| of prob and logits on a fresh batch of `--batch + 1` rows (other
           values, other batch size than the export's example; av with and without audio rows);
  speed    inference ms per batch of `--batch` rows, eager (eval, torch.inference_mode) and exported,
           timed in turns after warm-up; "ratio" = exported / eager, best-of-rounds over best-of-rounds
           (< 1: the export is faster), "median" = median over rounds of the same-round ratio.
Wall clock (ONNX Runtime's threads would make a CPU-time clock unfair); ONNX Runtime runs with
torch's thread count. The ensemble holds the six specialists with one shared frozen trunk (copied
from the first), as after training; it reads image, clip, audio and has_audio.

    python benchmarks/bench_export.py                                   # EfficientNet-B4, 224 px, batch 4, CPU
    python benchmarks/bench_export.py --backbone test_efficientnet --size 64 --rounds 5   # quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from interceptor_lib.export.errors import ExportError
from interceptor_lib.export.export import check_parity, compare_speed, export_onnx, export_torchscript
from interceptor_lib.export.runtime import FORMATS, SUFFIXES
from interceptor_lib.export.signature import batch_like, example_batch
from interceptor_lib.models import create_model, list_models


def build_ensemble(members: dict):
    """The specialists as one Ensemble with a shared trunk (None when the ensemble package is absent)."""
    try:
        from interceptor_lib.ensemble.combine import Ensemble
    except ImportError:
        return None
    first = next(iter(members.values()))
    for m in members.values():
        m.backbone.model.load_state_dict(first.trunk_state(), strict=False)
    return Ensemble(members)


def bench_one(name: str, model, fmt: str, args, out_dir: Path) -> dict:
    example = example_batch(model, batch_size=args.batch, size=args.size, frames=args.frames,
                            audio_seconds=args.audio_seconds)
    fresh = batch_like(example, args.batch + 1, seed=1)
    path = out_dir / f"{name}{SUFFIXES[fmt]}"
    t = time.perf_counter()
    if fmt == "torchscript":
        export_torchscript(model, example, path)
    else:
        export_onnx(model, example, path, opset=args.opset)
    export_s = time.perf_counter() - t
    parity = check_parity(model, path, fresh)
    speed = compare_speed(model, path, example, rounds=args.rounds, warmup=args.warmup)
    return {"export_s": export_s, "size_mb": path.stat().st_size / 2**20, "parity": parity, "speed": speed}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_b4")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=4, help="clip length T for tm, av and the ensemble")
    ap.add_argument("--audio-seconds", type=float, default=1.0, help="audio window of av (16 kHz)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (after --warmup untimed ones)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--models", nargs="*", default=None, help="specialists (default: all six)")
    ap.add_argument("--formats", nargs="*", default=list(FORMATS), choices=FORMATS)
    ap.add_argument("--no-ensemble", action="store_true", help="skip the ensemble")
    ap.add_argument("--ensemble-only", action="store_true", help="only the ensemble (of --models)")
    ap.add_argument("--opset", type=int, default=18)
    ap.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: torch's)")
    ap.add_argument("--out", default=None, help="folder for the exported files (default: a temporary one)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models or list_models("specialist")
    members = {}
    for i, n in enumerate(names):
        torch.manual_seed(i)
        members[n] = create_model(n, backbone=args.backbone, pretrained=False)
    plan = {} if args.ensemble_only else dict(members)
    if not args.no_ensemble:
        ens = build_ensemble({n: members[n] for n in names})
        if ens is not None:
            plan["ensemble"] = ens

    print(f"export vs eager inference, {args.backbone} at {args.size} px, batch {args.batch} (parity on "
          f"{args.batch + 1}), clips of {args.frames} frames, {args.audio_seconds:g} s audio, "
          f"{torch.get_num_threads()} threads, CPU, best of {args.rounds} rounds", flush=True)
    header = (f"{'model':10s} {'format':12s} {'export s':>8s} {'MB':>6s} {'max|d| prob':>12s} {'max|d| logits':>13s} "
              f"{'eager ms':>9s} {'export ms':>9s} {'ratio':>6s} {'median':>6s}")
    print(header)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.out or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, model in plan.items():
            for fmt in args.formats:
                try:
                    r = bench_one(name, model, fmt, args, out_dir)
                except ExportError as e:
                    results[name, fmt] = {"error": str(e)}
                    print(f"{name:10s} {fmt:12s} FAILED: {str(e).splitlines()[0][:160]}", flush=True)
                    continue
                results[name, fmt] = r
                d, s = r["parity"]["max_abs_diff"], r["speed"]
                print(f"{name:10s} {fmt:12s} {r['export_s']:8.1f} {r['size_mb']:6.1f} {d['prob']:12.2e} "
                      f"{d['logits']:13.2e} {s['eager_ms']:9.1f} {s['exported_ms']:9.1f} {s['ratio']:5.2f}x "
                      f"{s['median_ratio']:5.2f}x", flush=True)
    return results


if __name__ == "__main__":
    main()
