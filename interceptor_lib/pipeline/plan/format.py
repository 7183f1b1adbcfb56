"""The plan as text (`python -m interceptor_lib plan`) and as markdown (notebook 00, README)."""

from __future__ import annotations

import re

from interceptor_lib.pipeline.plan.records import Piece, Plan


_CHUNK_STEP = re.compile(r"^train (\S+) (\S+) chunk (\d+)$")  # a whole DFDC-chunk step (not a piece)


def _condensed(pieces: list[Piece]) -> list[tuple[str, float]]:
    """(label, hours) per line of the text table: a model's consecutive whole DFDC-chunk steps on one
    line ("train ll stage4 chunks 0, 1, 2"), every other piece on its own."""
    lines: list[tuple[str, float]] = []
    run: tuple | None = None  # (model, stage) of the chunk steps being gathered
    chunks: list[str] = []
    hours = 0.0
    for piece in pieces + [None]:
        m = _CHUNK_STEP.match(piece.label) if piece is not None else None
        if run is not None and (m is None or m.groups()[:2] != run):
            word = "chunks" if len(chunks) > 1 else "chunk"
            lines.append((f"train {run[0]} {run[1]} {word} {', '.join(chunks)}", hours))
            run, chunks, hours = None, [], 0.0
        if m is not None:
            run = m.groups()[:2]
            chunks.append(m.group(3))
            hours += piece.gpu_h
        elif piece is not None:
            lines.append((piece.label, piece.gpu_h + piece.cpu_h))
    return lines


def format_plan(plan: Plan) -> str:
    """The plan as a text table: sessions with their steps, the totals, the figures, the problems."""
    d = plan.to_dict()
    out = [f"Plan for profile {plan.profile} ({plan.sizes} sizes): sessions of at most {plan.time_budget_h:g} h "
           f"and {plan.storage_budget_gb:g} GB; GPU sessions on {plan.gpus} GPU(s)", "",
           f"{'session':>7}  {'kind':4}  {'hours':>6}  {'GPU h':>6}  {'peak GB':>7}  steps"]
    for i, s in enumerate(plan.sessions, 1):
        for j, (label, h) in enumerate(_condensed(s.pieces)):
            head = (f"{i:>7}  {s.kind:4}  {s.hours:6.2f}  {s.gpu_h:6.2f}  {s.peak_gb:7.2f}" if j == 0
                    else " " * 39)
            out.append(f"{head}  {label}  [{h:.2f} h]")
    cpu = [s for s in plan.sessions if s.kind == "cpu"]
    out += ["", f"Totals: GPU work {d['total_gpu_h']:.1f} h in {d['gpu_sessions']} GPU session(s) "
                f"({plan.gpu_session_h:.1f} h of quota, GPU share {d['gpu_share']:.2f}); preprocessing "
                f"{d['total_cpu_h']:.1f} h in {d['cpu_sessions']} CPU session(s) ({sum(s.hours for s in cpu):.1f} h); "
                f"peak {max((s.peak_gb for s in plan.sessions), default=0.0):.2f} GB"]
    out.append("Figures (from params plan.*, or measured by a run):")
    out += [f"  {k} = {f['value']:g} ({f['source']})" for k, f in plan.figures.items()]
    if plan.problems:
        out += ["", "Problems:"] + [f"  - {p}" for p in plan.problems]
    out += ["", "FITS" if plan.fits else "DOES NOT FIT"]
    return "\n".join(out)


def _summary(pieces: list[Piece]) -> str:
    """A session's steps in one line: what it preprocesses or trains, from the first to the last."""
    labels = [label for label, _ in _condensed(pieces)]
    if len(labels) <= 2:
        return "; ".join(labels)
    return f"{labels[0]} … {labels[-1]} ({len(labels)} lines of `plan`)"


def format_plan_markdown(plan: Plan) -> str:
    """The plan's sessions and totals as a Markdown table (for the README)."""
    d = plan.to_dict()
    out = [f"Plan of profile `{plan.profile}` ({plan.sizes} sizes; sessions of at most {plan.time_budget_h:g} h "
           f"and {plan.storage_budget_gb:g} GB; {plan.gpus} GPU(s) per GPU session):", "",
           "| session | kind | hours | GPU h | peak GB | steps |", "|---|---|---|---|---|---|"]
    for i, s in enumerate(plan.sessions, 1):
        out.append(f"| {i} | {s.kind} | {s.hours:.1f} | {s.gpu_h:.1f} | {s.peak_gb:.1f} | {_summary(s.pieces)} |")
    out += ["", f"Totals: {d['total_gpu_h']:.1f} GPU-hours of work in {d['gpu_sessions']} GPU session(s) "
                f"({plan.gpu_session_h:.1f} h of quota, {d['gpu_share']:.0%} of it GPU work); preprocessing "
                f"{d['total_cpu_h']:.1f} h in {d['cpu_sessions']} CPU-only session(s). "
                + ("Fits." if plan.fits else "Does not fit: " + "; ".join(plan.problems))]
    return "\n".join(out)
