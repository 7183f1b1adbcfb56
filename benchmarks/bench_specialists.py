"""Training-step cost of each specialist relative to the bare backbone, measured side by side in one run.

A training step is forward + cross-entropy + backward + AdamW step (param_groups, the reference design's learning
rates), after warm-up. The reference is the bare backbone with the same freezing (last 2 stages +
head conv trainable) + global pool + a linear layer. Image specialists are compared with it on the
same images. TM and AV read clips of T frames (and AV one second of audio): their time is divided by
T and compared with the bare backbone on the same B*T frames (`backbone_frames`, also per frame);
the last column compares them with the bare backbone on the B-image batch instead.

Timing: the models are timed in turns, one step each per round. "ratio" is best-of-rounds over
best-of-rounds (other load only ever adds time); "median ratio" is the median over rounds of
(model / reference in the same round). The default clock is this process's CPU time: on a shared
machine other jobs inflate wall time by whole seconds, CPU time much less; one thread (--threads 1)
is steadier still. Goal: every specialist <= 1.3x.

    python benchmarks/bench_specialists.py                       # EfficientNet-B4, 224 px, batch 4, CPU
    python benchmarks/bench_specialists.py --backbone test_efficientnet --size 112 --rounds 3   # quick
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from interceptor_lib.models import (create_backbone, create_model, keep_frozen_in_eval, list_models, param_groups,
                                    set_trainable_stages)
from interceptor_lib.models.base import pooled


class BareBackbone(nn.Module):
    """The reference: backbone (same freezing) -> pool -> Linear(C, 2)."""

    def __init__(self, backbone: str, trainable_stages: int):
        super().__init__()
        self.backbone = create_backbone(backbone, pretrained=False)
        set_trainable_stages(self, trainable_stages)
        self.fc = nn.Linear(self.backbone.num_features, 2)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self)  # as DetectorBase does: frozen BN in eval mode
        return self

    def forward(self, batch: dict) -> dict:
        return {"logits": self.fc(pooled(self.backbone(batch["image"])))}


def make_batches(batch: int, size: int, frames: int, seconds: float) -> dict:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, size, size, generator=g)
    clip = torch.randn(batch, frames, 3, size, size, generator=g)
    audio = torch.randn(batch, int(16000 * seconds), generator=g) * 0.1
    label = torch.arange(batch) % 2
    return {"image": {"image": image, "label": label},
            "clip": {"clip": clip, "audio": audio, "has_audio": torch.ones(batch, dtype=torch.bool), "label": label}}


def step(model: nn.Module, opt: torch.optim.Optimizer, batch: dict) -> tuple[float, float]:
    """One training step; (wall seconds, CPU seconds of this process)."""
    t, c = time.perf_counter(), time.process_time()
    loss = F.cross_entropy(model(batch)["logits"], batch["label"])
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t, time.process_time() - c


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_b4")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--frames", type=int, default=4, help="clip length T for TM and AV")
    ap.add_argument("--trainable-stages", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up round)")
    ap.add_argument("--models", nargs="*", default=None, help="specialists to time (default: all six)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: this process's CPU seconds, robust to other jobs on a shared machine (default)")
    ap.add_argument("--verbose", action="store_true", help="print every round")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batches = make_batches(args.batch, args.size, args.frames, seconds=1.0)

    bare = BareBackbone(args.backbone, args.trainable_stages)
    clip_frames = batches["clip"]["clip"].flatten(0, 1)  # the clips' B*T frames as one image batch
    frames_label = batches["clip"]["label"].repeat_interleave(args.frames)
    batches["frames"] = {"image": clip_frames, "label": frames_label}
    # name -> (model, batch kind, frames per item, reference the ratio is taken against)
    plan = {"backbone": (bare, "image", 1, "backbone"), "backbone_frames": (bare, "frames", args.frames, "backbone")}
    for name in args.models or list_models("specialist"):
        m = create_model(name, backbone=args.backbone, pretrained=False, trainable_stages=args.trainable_stages)
        plan[name] = (m, m.input_kind, args.frames if m.input_kind == "clip" else 1,
                      "backbone_frames" if m.input_kind == "clip" else "backbone")
    opts = {}
    for m, *_ in plan.values():
        m.train()
        opts.setdefault(id(m), torch.optim.AdamW(param_groups(m)))  # one optimizer per model

    times = {n: [] for n in plan}
    for r in range(args.rounds + 1):
        for name, (m, kind, frames, _) in plan.items():
            wall, cpu = step(m, opts[id(m)], batches[kind])
            if r > 0:  # round 0 warms up (allocator, oneDNN kernels, AdamW state)
                times[name].append((wall if args.clock == "wall" else cpu) / frames)
        if r > 0 and args.verbose:
            print(f"round {r}: " + "  ".join(f"{n} {times[n][-1]:.3f}" for n in times))
    print(f"training step, {args.backbone} at {args.size} px, batch {args.batch}, clips of {args.frames} frames, "
          f"{torch.get_num_threads()} threads, {args.clock} clock, median of {args.rounds} rounds")
    print(f"{'model':16s} {'best s/frame':>12s} {'ratio':>7s} {'median ratio':>13s} {'vs image batch':>15s}")
    ratios = {}
    for name, ts in times.items():
        ref = times[plan[name][3]] if name != "backbone_frames" else ts
        ratios[name] = min(ts) / min(ref)  # contention only ever adds time: best-of-N is the cleanest estimate
        median = statistics.median(t / b for t, b in zip(ts, ref))
        vs_image = min(ts) / min(times["backbone"])
        print(f"{name:16s} {min(ts):12.3f} {ratios[name]:6.2f}x {median:12.2f}x {vs_image:14.2f}x")
    worst = max(v for k, v in ratios.items() if not k.startswith("backbone"))
    print(f"worst specialist (vs the bare backbone on the same frames): {worst:.2f}x (goal <= 1.30x) -> "
          f"{'met' if worst <= 1.3 else 'NOT met'}")
    return ratios


if __name__ == "__main__":
    main()
