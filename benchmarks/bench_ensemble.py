"""Inference cost of the shared-trunk ensemble against the six specialists run one by one, side by side.

Setting: the six specialists on one backbone (default EfficientNet-B4 at 224 px, CPU, eval mode,
torch.inference_mode), all holding the SAME frozen trunk weights — the real situation, where every
specialist starts from the same ImageNet weights and never updates its frozen stem and leading
stages (pretrained=False here: random weights, copied from the first model to the others).

Batch: `--batch` clips of `--frames` consecutive frames. The clip models (TM, AV; AV with one second
of audio) read the clips; the image models (LL, BG, CM, RR) read the same B*T frames (`image` is a
view of the clips' frames) and their frame scores are averaged per clip. Every model thus sees the
same frames, and the shared ensemble runs the frozen trunk ONCE for all six (the same-frames
reuse in `Ensemble.run_members`); the separate run computes it six times. (In `predict`, image
models see the evenly spaced frames and clip models the clips, two different frame sets, so the
trunk runs once per set.)

Outputs: the ensemble's member probabilities and prob are compared with the separate run
(max abs difference). Timing: the two are timed in turns, one forward each per round, after a
warm-up round; "speedup" is best-of-rounds over best-of-rounds, also the median of the per-round
ratios. The clock is this process's CPU seconds by default (robust to other jobs on a shared
machine; --clock wall for elapsed time). With several threads, CPU seconds also count the threads'
waiting in small operators (the 7 x 7 stages, the specialist modules), which weighs the unshared
part more; --threads 1 measures the work alone and is the steadier number on a busy machine.

Where the speedup comes from: a member = trunk (frozen units: stem + all but the last
`trainable_stages` stages) + rest (trainable stages, head conv) + specialist module, fusion and
head. With the trunk run once instead of six times, speedup = 6 M / (t + 6 (M - t)), where M is a
member's time and t its trunk's. The trunk's share of time and of FLOPs (torch's FlopCounterMode:
convolutions and matrix products) is printed, and the speedup predicted for every trainable_stages
from per-unit timings (inference cost does not depend on trainable_stages; only the shareable part
does). 3x needs t / M >= 0.8.

    python benchmarks/bench_ensemble.py                                   # B4, 224 px, 4 clips x 4 frames
    python benchmarks/bench_ensemble.py --backbone test_efficientnet --size 64 --repeats 2   # quick
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from interceptor_lib.ensemble.combine import Ensemble
from interceptor_lib.models import create_model, list_models


def build_members(backbone: str, trainable_stages: int) -> dict:
    """The six specialists with the first one's trunk weights copied into the others, eval mode."""
    torch.manual_seed(0)
    members = {n: create_model(n, backbone=backbone, pretrained=False, trainable_stages=trainable_stages).eval()
               for n in list_models("specialist")}
    ref = next(iter(members.values())).trunk_state()
    for m in members.values():
        missing = m.backbone.model.load_state_dict(ref, strict=False).unexpected_keys
        assert not missing, missing
    return members


def make_batch(batch: int, frames: int, size: int, seconds: float = 1.0) -> dict:
    g = torch.Generator().manual_seed(0)
    clip = torch.randn(batch, frames, 3, size, size, generator=g)
    return {"clip": clip, "image": clip.flatten(0, 1),  # the image models read the clips' own frames
            "audio": torch.randn(batch, int(16000 * seconds), generator=g) * 0.1,
            "has_audio": torch.ones(batch, dtype=torch.bool)}


def separate(members: dict, batch: dict) -> torch.Tensor:
    """(B, M) member probabilities, each member run on its own (image members averaged per clip)."""
    b, t = batch["clip"].shape[:2]
    cols = []
    for m in members.values():
        p = m(batch)["prob"]
        cols.append(p.view(b, t).mean(1) if m.input_kind == "image" else p)
    return torch.stack(cols, 1)


def clock(kind: str) -> float:
    return time.process_time() if kind == "cpu" else time.perf_counter()


def unit_times(model, x: torch.Tensor, repeats: int, kind: str) -> list[float]:
    """Best-of-`repeats` seconds of each backbone unit (stem, stages, head) on frames x."""
    best = None
    for _ in range(repeats):
        times, h = [], x
        for unit in model.backbone.units:
            c = clock(kind)
            h = unit(h)
            times.append(clock(kind) - c)
        best = times if best is None else [min(a, b) for a, b in zip(best, times)]
    return best


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="efficientnet_b4")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=4, help="clips per batch")
    ap.add_argument("--frames", type=int, default=4, help="frames per clip (T); image models see the B*T frames")
    ap.add_argument("--trainable-stages", type=int, default=2, help="the training default (the reference design)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    members = build_members(args.backbone, args.trainable_stages)
    ens = Ensemble(members).eval()
    batch = make_batch(args.batch, args.frames, args.size)
    first = next(iter(members.values()))
    depth, n_units = first.backbone.trunk_depth, len(first.backbone.units)
    print(f"{args.backbone} at {args.size} px, {args.batch} clips x {args.frames} frames "
          f"({args.batch * args.frames} frames per model), trainable_stages {args.trainable_stages} "
          f"(trunk = {depth} of {n_units} units), {torch.get_num_threads()} threads, {args.clock} clock")
    print("trunk groups:", [(g["members"], g["input_kind"], g["trunk_hash"]) for g in ens.trunk_groups()])

    with torch.inference_mode():
        # ---- parity
        ref = separate(members, batch)
        out = ens(batch)
        diff_members = (out["member_probs"] - ref).abs().max().item()
        diff_prob = (out["prob"] - ens.combine(ref)["prob"]).abs().max().item()
        print(f"max |member prob shared - separate| = {diff_members:.2e}, "
              f"max |prob shared - separate| = {diff_prob:.2e}")

        # ---- timing, in turns
        times = {"separate": [], "shared": []}
        for r in range(args.repeats + 1):
            for name, fn in (("separate", lambda: separate(members, batch)), ("shared", lambda: ens(batch))):
                c = clock(args.clock)
                fn()
                if r > 0:
                    times[name].append(clock(args.clock) - c)
        speedup = min(times["separate"]) / min(times["shared"])
        median = statistics.median(s / h for s, h in zip(times["separate"], times["shared"]))
        print(f"six separate: {min(times['separate']):.3f} s   shared ensemble: {min(times['shared']):.3f} s   "
              f"speedup {speedup:.2f}x (median of rounds {median:.2f}x)")

        # ---- where the time goes: the trunk's share of one member
        frames = batch["image"]
        units = unit_times(first, frames, max(1, args.repeats), args.clock)
        member_t = []
        for _ in range(max(1, args.repeats)):
            c = clock(args.clock)
            first(batch)
            member_t.append(clock(args.clock) - c)
        m_time = min(member_t)  # one image member on the B*T frames
        all_members = min(times["separate"])
        trunk_time = sum(units[:depth])
        trunk_fl = flops(lambda: first.backbone.forward_trunk(frames))
        member_fl = flops(lambda: first(batch))
        six_fl = flops(lambda: separate(members, batch))
        shared_fl = flops(lambda: ens(batch))
    share_t, share_fl = trunk_time / m_time, trunk_fl / member_fl
    print(f"trunk share of one member ({first.model_name}): time {share_t:.0%} ({trunk_time:.3f} of {m_time:.3f} s), "
          f"FLOPs {share_fl:.0%} ({trunk_fl / 1e9:.2f} of {member_fl / 1e9:.2f} GFLOP)")
    print(f"FLOPs: six separate {six_fl / 1e9:.2f} GFLOP, shared {shared_fl / 1e9:.2f} GFLOP -> "
          f"{six_fl / shared_fl:.2f}x fewer")

    # ---- predicted speedup for every trainable_stages, from the per-unit times (6 members, 1 trunk run)
    n_stages = len(first.backbone.stages)
    has_head = first.backbone.head is not None
    print(f"{'trainable_stages':>16s} {'trunk units':>11s} {'trunk share (time)':>19s} {'predicted speedup':>18s}")
    predicted = {}
    rest_of_six = all_members - 6 * trunk_time  # everything but the trunk, measured for the six members
    for k in range(0, n_stages + 1):
        d = 1 + n_stages - k + (1 if has_head and k == 0 else 0)  # stem + frozen stages (+ head when k = 0)
        t_k = sum(units[:d])
        pred = all_members / (t_k + rest_of_six + 6 * (trunk_time - t_k))
        predicted[k] = pred
        mark = " <- this run" if k == args.trainable_stages else ""
        print(f"{k:16d} {d:11d} {t_k / m_time:18.0%} {pred:17.2f}x{mark}")
    meets = [k for k, v in predicted.items() if v >= 3]
    verdict = "met" if speedup >= 3 else "NOT met"
    print(f"goal >= 3x at trainable_stages {args.trainable_stages}: {verdict} (measured {speedup:.2f}x); "
          f"predicted >= 3x for trainable_stages in {meets or 'none'}")
    return {"speedup": speedup, "median_speedup": median, "max_abs_diff": max(diff_members, diff_prob),
            "trunk_time_share": share_t, "trunk_flop_share": share_fl, "predicted": predicted}


if __name__ == "__main__":
    main()
