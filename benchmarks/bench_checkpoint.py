"""Checkpoint cost and size, measured side by side in one run.

For each specialist at EfficientNet-B4 size (random init: sizes and times do not depend on the
values), after one AdamW step so the optimizer holds its moments:

  ours:  save_checkpoint (safetensors chunks + sha256 index, fsync, atomic rename)
         + load_checkpoint, which verifies every chunk's sha256 before using it
  plain: torch.save + torch.load of the same state (pickle; no chunks, checksums or atomicity)

Prints the time ratio ours / plain per model and over all models (goal <= 1.5x; the two alternate
round by round and their medians are compared) and the sizes of the full resumable state, the fp32
weights and the fp16 export, next to the 1.2 GB checkpoints of the reference design's earlier attempt.

    python benchmarks/bench_checkpoint.py [--models ll cm] [--chunk-mb 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from interceptor_lib.models import create_model, param_groups
from interceptor_lib.training.checkpoint import checkpoint_bytes, export_weights, load_checkpoint, save_checkpoint

SPECIALISTS = ["ll", "bg", "av", "cm", "rr", "tm"]


def training_state(name: str, backbone: str, size: int) -> dict:
    model = create_model(name, backbone=backbone, pretrained=False)
    opt = torch.optim.AdamW(param_groups(model))
    x = torch.randn(2, 3, size, size)
    batch = {"image": x} if model.input_kind == "image" else {
        "clip": x[:, None].repeat(1, 2, 1, 1, 1), "audio": torch.randn(2, 8000), "has_audio": torch.ones(2, dtype=torch.bool)}
    model.train()
    model(batch)["logits"].sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": {"torch": torch.get_rng_state()},
            "progress": {"epoch": 1, "step": 10}}


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(a, b, rounds: int) -> tuple[float, float]:
    """Median seconds of `a` and of `b`, run alternately (a, b, a, b, ...) so that a slow phase of the
    shared disk or page cache hits both alike."""
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(_seconds(a))
        tb.append(_seconds(b))
    return statistics.median(ta), statistics.median(tb)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=SPECIALISTS)
    ap.add_argument("--backbone", default="efficientnet_b4")
    ap.add_argument("--size", type=int, default=64, help="input size of the single training step (not timed)")
    ap.add_argument("--chunk-mb", type=float, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    print(f"{'model':6} {'ours s':>8} {'plain s':>8} {'ratio':>6} {'full MB':>8} {'fp32 MB':>8} {'fp16 MB':>8}  chunks")
    ratios, total_ours, total_plain = [], 0.0, 0.0
    for name in a.models:
        state = training_state(name, a.backbone, a.size)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)

            def ours():
                save_checkpoint(tmp / "ours", state, a.chunk_mb)
                load_checkpoint(tmp / "ours", verify=True)

            def plain():
                torch.save(state, tmp / "plain.pt")
                torch.load(tmp / "plain.pt", weights_only=True)

            t_ours, t_plain = interleaved(ours, plain, a.rounds)
            total_ours, total_plain = total_ours + t_ours, total_plain + t_plain
            full = checkpoint_bytes(tmp / "ours")
            chunks = len(list((tmp / "ours").glob("*.safetensors")))
            save_checkpoint(tmp / "fp32", {"model": state["model"]}, a.chunk_mb)
            export_weights(state["model"], tmp / "fp16", max_chunk_mb=a.chunk_mb)
            fp32, fp16 = checkpoint_bytes(tmp / "fp32"), checkpoint_bytes(tmp / "fp16")
        ratios.append(t_ours / t_plain)
        print(f"{name:6} {t_ours:8.2f} {t_plain:8.2f} {t_ours / t_plain:6.2f} {full / 1e6:8.1f} {fp32 / 1e6:8.1f} "
              f"{fp16 / 1e6:8.1f}  {chunks}")
    overall = total_ours / total_plain
    print(f"ours / plain over all models: {overall:.2f}x (goal <= 1.5x: {'met' if overall <= 1.5 else 'NOT met'}); "
          f"per model {min(ratios):.2f}x to {max(ratios):.2f}x; the reference design's earlier attempt: 1.2 GB per checkpoint")


if __name__ == "__main__":
    main()
