"""Packing the steps into sessions: cache (CPU) sessions, then GPU sessions, each within the
session's time and storage budgets; a step that does not fit continues in the next session."""

from __future__ import annotations

import math

from interceptor_lib.pipeline.plan.records import EPS, MIN_PIECE_H, Piece, Session, Step


def _piece_label(name: str, first: bool, more: bool, detail: str = "") -> str:
    notes = (["continued"] if not first else []) + ([detail] if detail else []) + (["continues"] if more else [])
    return f"{name} ({', '.join(notes)})" if notes else name


def _count(room: float, per: float, most: int) -> int:
    """How many units of `per` fit in `room` (at most `most`)."""
    if per <= 0 or room >= per * most:
        return most
    return max(0, math.floor(room / per + EPS))


def pack_cpu(steps: list[Step], hours: float, gb: float, problems: list[str]) -> list[Session]:
    """Preprocessing into cache sessions, video by video: a session stops at the time budget or when
    its output reaches the storage budget, and the next one resumes the step."""
    sessions: list[Session] = []
    cur: Session | None = None
    for step in steps:
        h_per, gb_per = step.cpu_h / max(step.items, 1), step.gb / max(step.items, 1)
        left, first = step.items, True
        while left > 0:
            if cur is None:
                cur = Session("cpu")
                sessions.append(cur)
            fit = min(left, _count(hours - cur.hours, h_per, left), _count(gb - cur.peak_gb, gb_per, left))
            if fit < 1 and cur.pieces:
                cur = None
                continue
            if fit < 1:  # not even one video fits an empty session: it gets one of its own, over budget
                problems.append(f"{step.name}: one video's cache ({gb_per * 1024:.1f} MB) or time ({h_per * 3600:.0f} s) "
                                f"does not fit a cache session: raise train.storage_budget_gb / train.time_budget_h "
                                f"or lower preprocess.face_size")
                fit = left
            more = left - fit > 0
            detail = f"{fit:,} of {step.items:,} videos" if fit < step.items else ""
            cur.pieces.append(Piece(_piece_label(step.name, first, more, detail), fit * h_per, 0.0, fit * gb_per))
            cur.peak_gb += fit * gb_per
            left -= fit
            first = False
            if more:
                cur = None
    return sessions


def pack_gpu(steps: list[Step], hours: float, gb: float, overhead: float) -> list[Session]:
    """Training and evaluation into GPU sessions in order. A training step that does not fit the
    rest of a session runs until the session's time budget and continues in the next one; a step
    starts in a new session when this one's outputs plus its training states would pass the storage
    budget. A step too large for any session (a problem, named elsewhere) gets a session of its own."""
    sessions: list[Session] = []
    cur: Session | None = None
    for step in steps:
        left, first = step.gpu_h, True
        while left > EPS or first:
            if cur is None:
                cur = Session("gpu", overhead_h=overhead)
                sessions.append(cur)
            time_left = hours - cur.hours
            kept = sum(cur.kept.values())
            fits_time = (left <= time_left + EPS) if not step.splittable else time_left >= min(left, MIN_PIECE_H) - EPS
            fits_storage = kept + step.work_gb <= gb + EPS and kept + step.gb <= gb + EPS
            if cur.pieces and not (fits_time and fits_storage):
                cur = None
                continue
            piece = min(left, time_left) if step.splittable and time_left >= min(left, MIN_PIECE_H) - EPS else left
            more = left - piece > EPS
            cur.pieces.append(Piece(_piece_label(step.name, first, more), 0.0, piece, 0.0 if more else step.gb))
            cur.peak_gb = max(cur.peak_gb, kept + step.work_gb)
            left -= piece
            first = False
            if more:
                cur = None
        if step.releases:  # its model's stage 4 finished: the chunks' best weights go
            cur.kept = {k: v for k, v in cur.kept.items() if k[:2] != step.keep[:2]}
        cur.kept[step.keep] = step.gb
        cur.peak_gb = max(cur.peak_gb, sum(cur.kept.values()))
    return sessions
