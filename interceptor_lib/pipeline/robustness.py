"""The robustness sweep (notebook 09): the test videos under the DeeperForensics-1.0 perturbations
(`data.perturb`) at each level of `evaluation.robustness`, every model and the ensemble scored.

    sweep = robustness_sweep(params)     # eval/robustness.csv
    robustness_summary(sweep)            # per perturbation, the specialist that holds up best
    plot_robustness(sweep, "blur")       # AUC against level, a line per model

Rows of the sweep: model, perturbation, level (0 = the clean videos, shared by every perturbation),
parameter (the perturbation's value at that level), test_set, video_auc, n_real, n_fake, psnr_db (the
mean PSNR of the perturbed crops against the clean ones over the scored videos' first frames: the
distortion as measured, inf at level 0).

The models are those notebook 06 evaluated (each one's best checkpoint of its last stage) and the
ensemble is the one it saved (`ensemble/ensemble.json`: weights, vote temperature, temperature). The
crop perturbations change the cached crops as the datasets read them; video compression re-encodes
each scored video into a temporary crop entry per level (`data.perturb.recompress_entry`), removed
once that level is scored. Members that share the frozen trunk run it once per batch (`Ensemble`).

Cost: levels x perturbations x the scored videos x `items_per_video`; `videos_per_dataset` keeps every
real test video and as many fakes, so the AUC keeps both classes at a fraction of the work.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from interceptor_lib.data.cache import worker_pool
from interceptor_lib.data.perturb import (REGISTRY, VIDEO_PERTURBATIONS, PerturbedCache, Recompressed,
                                          crop_perturbation, parameter, psnr, recompress_all)
from interceptor_lib.ensemble.score import member_video_probs
from interceptor_lib.ensemble.store import read_ensemble_config
from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import RunPaths
from interceptor_lib.metrics.scores import has_both_classes
from interceptor_lib.pipeline.evaluate import (AUDIO, ENSEMBLE, TEST_SPLIT, add_ensemble, eval_device, eval_dir,
                                               eval_rows, fit_from_config, load_members)
from interceptor_lib.pipeline.prepare import crop_cache
from interceptor_lib.progress import progress_bar
from interceptor_lib.training import throughput

COLUMNS = ["model", "perturbation", "level", "parameter", "test_set", "video_auc", "n_real", "n_fake", "psnr_db"]


def sweep_rows(params) -> pd.DataFrame:
    """The cached test videos the sweep scores: per dataset every real one and as many fakes (drawn
    with params.seed), at most `evaluation.robustness.videos_per_dataset` in all (0 = every test video)."""
    rows = eval_rows(params)
    rows = rows[rows["split"] == TEST_SPLIT]
    cap = params.evaluation.robustness.videos_per_dataset
    if not cap:
        return rows.reset_index(drop=True)
    parts = []
    for _, g in rows.groupby("dataset", sort=True):
        real, fake = g[g["label"] == 0], g[g["label"] == 1]
        n = min(len(real), len(fake), cap // 2) if len(real) and len(fake) else min(len(g), cap)
        parts += [x.sample(n=min(n, len(x)), random_state=params.seed) if len(x) > n else x for x in (real, fake)]
    return pd.concat(parts).sort_values("video_id").reset_index(drop=True)


def _scored(ens, rows, cache, fit, k, device) -> pd.DataFrame:
    videos = member_video_probs(ens, rows, cache, device=device, items_per_video=k)
    videos = rows[["video_id", "dataset", AUDIO]].merge(videos, on="video_id")
    return add_ensemble(videos, fit)


def _aucs(videos: pd.DataFrame, models: list[str]) -> list[dict]:
    out = []
    for ds, g in videos.groupby("dataset", sort=True):
        y = g["label"].to_numpy()
        for m in models + [ENSEMBLE]:
            auc = float(roc_auc_score(y, g[m])) if has_both_classes(y) and g[m].notna().all() else np.nan
            out.append({"model": m, "test_set": ds, "video_auc": auc, "n_real": int((y == 0).sum()),
                        "n_fake": int((y == 1).sum())})
    return out


def _psnr(clean: dict[str, tuple[np.ndarray, np.ndarray]], perturbed) -> float:
    """Mean PSNR of each video's first scored frame under `perturbed` against `clean` ({video_id:
    (its position, the clean crop)})."""
    values = [psnr(crop, perturbed.reader(v).crops(pos)[0]) for v, (pos, crop) in clean.items()]
    return float(np.mean(values)) if values else np.nan


def robustness_sweep(params, device=None, write: bool = True, progress: bool = True) -> pd.DataFrame:
    """Score every model and the ensemble on the sweep's test videos (`sweep_rows`), clean and under
    each perturbation and level of `evaluation.robustness`, on `evaluate.eval_device(params, device)`;
    written to eval/robustness.csv."""
    device = eval_device(params, device)
    r = params.evaluation.robustness
    doc, _ = read_ensemble_config(params.output_dir)
    fit = fit_from_config(doc)
    ens, _ = load_members(params, fit["models"], device)
    cache, rows = crop_cache(params), sweep_rows(params)
    if rows.empty:
        raise InterceptorError("no cached test videos: run notebook 00_prepare_data first")
    ids = rows["video_id"].tolist()
    readers = {v: cache.reader(v) for v in ids}  # each video's first frame, read once for every condition's PSNR
    clean = {v: (r.frame_pos[:1], r.crops(r.frame_pos[:1])[0]) for v, r in readers.items()}
    records = [{**a, "perturbation": p, "level": 0, "parameter": None, "psnr_db": np.inf}
               for a in _aucs(_scored(ens, rows, cache, fit, r.items_per_video, device), fit["models"])
               for p in r.perturbations]
    work = eval_dir(params) / "robustness_tmp"
    steps = [(p, level) for p in r.perturbations for level in sorted(r.levels)]
    jobs = [(v, cache.entry_path(v), row["path"], row["member"]) for v, row in zip(ids, rows.to_dict("records"))]
    reencode = any(name in VIDEO_PERTURBATIONS for name, _ in steps)
    # the re-encodes run in preprocess.workers processes (one x264 thread each), started once
    with worker_pool(params.preprocess.workers if reencode else 1) as pool:
        for name, level in progress_bar(steps, desc="robustness", unit="condition", disable=not progress):
            value = parameter(name, level)
            folder = None
            if name in VIDEO_PERTURBATIONS:
                folder, start = work / f"{name}-{level}", time.perf_counter()
                entries = recompress_all(jobs, params.preprocess, value, folder, pool)
                # what `plan` counts for the re-encodes of a later run: CPU-seconds per video (one
                # process per video, busy for its wall time)
                seconds = (time.perf_counter() - start) * max(1, params.preprocess.workers if pool else 1)
                if entries and seconds > 0:
                    throughput.record(RunPaths.of(params).root, "robustness.reencode_cpu_s_per_video",
                                      seconds / len(entries), len(entries))
                perturbed = PerturbedCache(cache, Recompressed(entries))
            else:
                perturbed = PerturbedCache(cache, crop_perturbation(name, level, params.seed))
            try:
                videos = _scored(ens, rows, perturbed, fit, r.items_per_video, device)
                distortion = _psnr(clean, perturbed)
            finally:
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
            records += [{**a, "perturbation": name, "level": level, "parameter": value, "psnr_db": distortion}
                        for a in _aucs(videos, fit["models"])]
    shutil.rmtree(work, ignore_errors=True)
    sweep = pd.DataFrame(records, columns=COLUMNS).sort_values(["perturbation", "level", "model", "test_set"],
                                                               kind="stable").reset_index(drop=True)
    if write:
        out = eval_dir(params)
        out.mkdir(parents=True, exist_ok=True)
        sweep.to_csv(out / "robustness.csv", index=False)
    return sweep


def robustness_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Video AUC averaged over the test sets: rows model, columns (perturbation, level)."""
    mean = sweep.groupby(["model", "perturbation", "level"], sort=False)["video_auc"].mean()
    return mean.unstack(["perturbation", "level"])


def robustness_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per perturbation: every model's video AUC (mean over test sets) clean and averaged over the
    perturbed levels, and the specialist (not the ensemble) with the highest perturbed AUC, with its
    drop from clean."""
    mean = sweep.groupby(["perturbation", "model", "level"], sort=False)["video_auc"].mean().reset_index()
    rows = []
    for name, g in mean.groupby("perturbation", sort=False):
        clean = g[g["level"] == 0].set_index("model")["video_auc"]
        hit = g[g["level"] > 0].groupby("model", sort=False)["video_auc"].mean()
        specialists = hit.drop(ENSEMBLE, errors="ignore")
        best = specialists.idxmax() if specialists.notna().any() else None
        rows.append({"perturbation": name, "levels": int((g["level"] > 0).sum() / max(g["model"].nunique(), 1)),
                     "ensemble_clean": clean.get(ENSEMBLE, np.nan), "ensemble_perturbed": hit.get(ENSEMBLE, np.nan),
                     "best_specialist": best, "best_perturbed": specialists.get(best, np.nan) if best else np.nan,
                     "best_drop": (clean.get(best, np.nan) - specialists.get(best, np.nan)) if best else np.nan})
    return pd.DataFrame(rows)


def summary_line(summary: pd.DataFrame) -> str:
    """One line: which specialist holds up best under which perturbation."""
    return "; ".join(f"{r.perturbation}: {r.best_specialist} (AUC {r.best_perturbed:.3f} over the perturbed levels, "
                     f"{r.best_drop:.3f} below clean)" for r in summary.itertuples() if r.best_specialist)


def plot_robustness(sweep: pd.DataFrame, perturbation: str):
    """Video AUC (mean over the test sets) against the level of `perturbation`, a line per model,
    the ensemble in black; the x axis names each level's parameter."""
    import matplotlib.pyplot as plt  # slow to import: only where a figure is drawn

    g = sweep[sweep["perturbation"] == perturbation]
    if g.empty:
        raise InterceptorError(f"no rows for perturbation {perturbation!r} in the sweep")
    mean = g.groupby(["model", "level"], sort=False)["video_auc"].mean().unstack("level")
    levels = sorted(g["level"].unique())
    def value(lv):
        v = g.loc[g["level"] == lv, "parameter"].iloc[0]
        return f"{v:g}" if isinstance(v, (int, float)) else str(v)

    labels = {lv: ("clean" if lv == 0 else f"{lv}\n({value(lv)})") for lv in levels}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    for model, row in mean.iterrows():
        ens = model == ENSEMBLE
        ax.plot(levels, row[levels].to_numpy(), marker="o", lw=2.4 if ens else 1.4, color="black" if ens else None,
                label=model, zorder=3 if ens else 2)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(levels, [labels[lv] for lv in levels], fontsize=8)
    ax.set_xlabel(f"level ({REGISTRY[perturbation].parameter_name if perturbation in REGISTRY else 'parameter'})")
    ax.set_ylabel("video AUC (mean over test sets)")
    ax.set_ylim(0.4, 1.01)
    ax.set_title(f"Robustness to {perturbation.replace('_', ' ')}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def write_figures(params, sweep: pd.DataFrame) -> list[Path]:
    """One PNG per perturbation under eval/robustness/."""
    import matplotlib.pyplot as plt  # slow to import: only where a figure is drawn

    out = eval_dir(params) / "robustness"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in dict.fromkeys(sweep["perturbation"]):
        fig = plot_robustness(sweep, name)
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths
