"""The results of `predict_paths` for people: the command line's text table, the notebook's table,
and the record a notebook run leaves in the run folder (`reports/inference.csv`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from interceptor_lib.layout import RunPaths

RESULTS_FILE = "inference.csv"  # in the run's reports/ folder


def format_table(results: list[dict]) -> str:
    """The readable report of `predict_paths` results: one row per scored input (faces = found / probed
    frames, then each member's P(fake)), skipped-member notes and Grad-CAM files. Errors are not in it."""
    ok = [r for r in results if r["ok"]]
    lines = []
    if ok:
        members = list(dict.fromkeys(n for r in ok for n in (*r["members"], *r["skipped"])))
        head = f"{'input':32s} {'P(fake)':>7s} {'label':>5s} {'thr':>5s} {'+/-':>5s} {'faces':>7s} {'frames':>6s} " \
               f"{'clips':>5s} {'s':>6s}  " + " ".join(f"{n:>5s}" for n in members)
        lines.append(head)
        for r in ok:
            name = r["path"] if len(r["path"]) <= 32 else "..." + r["path"][-29:]
            cells = " ".join(f"{r['members'][n]:5.2f}" if n in r["members"] else f"{'-':>5s}" for n in members)
            lines.append(f"{name:32s} {r['prob']:7.3f} {r['label']:>5s} {r['threshold']:5.2f} {r['uncertainty']:5.2f} "
                         f"{r['faces_found']:>3d}/{r['frames_probed']:<3d} {r['frames_sampled']:6d} {r['clips']:5d} "
                         f"{r['seconds']:6.1f}  {cells}")
        notes = sorted({f"{n}: {why}" for r in ok for n, why in r["skipped"].items()})
        lines += [f"skipped {n}" for n in notes]
        lines += [f"Grad-CAM: {r['explain']}" for r in ok if r.get("explain")]
    return "\n".join(lines)


def results_table(results: list[dict]) -> pd.DataFrame:
    """One row per scored input: its file name, P(fake), label, uncertainty, faces (found / probed),
    seconds, then each member's P(fake). Errors are not in it."""
    return pd.DataFrame([{"input": Path(r["path"]).name, "prob": r["prob"], "label": r["label"],
                          "uncertainty": r["uncertainty"], "faces": f"{r['faces_found']}/{r['frames_probed']}",
                          "seconds": r["seconds"], **r["members"]}
                         for r in results if r["ok"]])


def write_results(results: list[dict], run: str | Path) -> Path:
    """`results_table(results)` written to `<run>/reports/inference.csv`; returns that path."""
    path = RunPaths.at(run).reports / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    results_table(results).to_csv(path, index=False)
    return path
