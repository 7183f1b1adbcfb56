"""Self-blended pseudo-fakes against the dataset's fakes, side by side (notebook 10): the same model
trained for the first stage (FF++, the field's cross-dataset protocol) twice — on the real training
faces and their self-blended pseudo-fakes only, never a fake ("pseudo"), and on the real faces and
the dataset's fakes ("fakes") — both scored on every test split.

    runs = train_comparison(params)            # {(model, source): best checkpoint}
    table, families = compare(params, runs)    # eval/pseudo_fakes.csv, eval/pseudo_fakes_families.csv

The run whose source the chain's own first stage already is (`train.stages.stage1.pseudo_fakes`:
off is "fakes", only is "pseudo") is that stage, not trained again; the other trains beside it in
runs/<model>/stage1-<source>/, resumable and skipped once done like any stage (`run_stage`'s
`folder`). Both select their checkpoint on validation videos of their own kind: the pseudo run on
the validation reals and their pseudo-fakes, so no fake ever chooses anything for it.

A pseudo-fake carries a blending boundary and a colour, frequency, noise or lighting mismatch inside
the face; it teaches nothing of what changes over time or in the sound. So on the demo corpus a
pseudo-trained model is expected to catch the families that leave a mismatch of resolution, block
grid, noise or light inside the face and to miss audio-visual sync, with temporal flicker / jitter (a
shifted or brighter inner face in one frame) in between: `families` says, per artifact family of the
test sets the models never trained on, which it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from interceptor_lib.config.schema import STAGE_NAMES
from interceptor_lib.data.registry import DATASETS
from interceptor_lib.ensemble.store import stage_checkpoint
from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import PSEUDO_SOURCES, RunPaths, first_stage, variant_folder, variant_params
from interceptor_lib.metrics.scores import has_both_classes
from interceptor_lib.pipeline.bias import artifact_families, family_table
from interceptor_lib.pipeline.evaluate import TEST_SPLIT, eval_dir
from interceptor_lib.pipeline.stage_matrix import SEP, member_videos, score_checkpoints
from interceptor_lib.pipeline.stages import run_stage

COLUMNS = ["model", "source", "test_set", "seen", "video_auc", "frame_auc", "n_real", "n_fake", "items_per_video",
           "checkpoint"]
#: a family is "caught" when its fakes rank above the reals with at least this AUC, "missed" at or
#: below MISSED_AUC (about chance), "partly" between
CAUGHT_AUC, MISSED_AUC = 0.75, 0.6


def train_comparison(params, models: list[str] | None = None, progress: bool = True) -> dict[tuple[str, str], Path]:
    """Train what the comparison needs and is not trained yet (skipped once done; resumes when
    stopped), in this process: {(model, source): the best checkpoint}. The chain's own first stage
    must have run when it is one of the two."""
    stage, paths = first_stage(params), RunPaths.of(params)
    out = {}
    for model in models or params.evaluation.pseudo_fakes.models:
        for source in PSEUDO_SOURCES:
            folder = variant_folder(params, source)
            if folder == stage:
                path = stage_checkpoint(paths, model, stage)
                if path is None:
                    raise InterceptorError(f"{model} {stage} (trained on {source}) has not finished: run notebook "
                                           f"{STAGE_NAMES[stage]} first")
            else:
                done = run_stage(variant_params(params, source), model, stage, progress=progress, folder=folder)
                path = Path(done["best"])
            out[(model, source)] = path
    return out


def compare(params, runs: dict[tuple[str, str], Path], batch_size: int = 32, device=None,
            write: bool = True) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Both runs of every model scored on every test split: the table (COLUMNS, one row per model x
    source x test set; `seen` marks the dataset they trained on) and, on the demo corpus, the AUC of
    each artifact family's fakes against the reals of the test sets they never trained on, per
    model x source, with `verdict` caught / partly / missed (None on real data). Written to
    <output_dir>/eval/pseudo_fakes.csv and pseudo_fakes_families.csv with `write`."""
    if not runs:
        raise InterceptorError("no runs to compare: evaluation.pseudo_fakes.models is empty")
    k = params.evaluation.pseudo_fakes.items_per_video
    items, _ = score_checkpoints(params, runs, k, batch_size, device, reuse_saved=False, splits=(TEST_SPLIT,))
    videos = member_videos(items)
    trained_on = params.train.stages[first_stage(params)].dataset
    order = [d for d in DATASETS if d in set(videos["dataset"])]
    rows = []
    for (model, source), path in runs.items():
        name = f"{model}{SEP}{source}"
        for ds in order:
            f = items[(items["member"] == name) & (items["dataset"] == ds)]
            v = videos[videos["dataset"] == ds]
            both = has_both_classes(v["label"].to_numpy())
            rows.append({"model": model, "source": source, "test_set": ds, "seen": ds == trained_on,
                         "video_auc": float(roc_auc_score(v["label"], v[name])) if both else np.nan,
                         "frame_auc": float(roc_auc_score(f["label"], f["prob"])) if both else np.nan,
                         "n_real": int((v["label"] == 0).sum()), "n_fake": int((v["label"] == 1).sum()),
                         "items_per_video": int(k), "checkpoint": str(path)})
    table = pd.DataFrame(rows, columns=COLUMNS)
    families = None
    if params.demo_data.generate:
        families = family_verdicts(artifact_families(params, videos.reset_index()), runs, trained_on)
    if write:
        out = eval_dir(params)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "pseudo_fakes.csv", index=False)
        if families is not None:
            families.to_csv(out / "pseudo_fakes_families.csv", index=False)
    return table, families


def family_verdicts(videos: pd.DataFrame, runs: dict[tuple[str, str], Path], trained_on: str) -> pd.DataFrame:
    """Per model x source x artifact family: the AUC of that family's fakes against every real of the
    test videos `videos` other than `trained_on`'s (pooled, `bias.family_table`), and caught / partly /
    missed (CAUGHT_AUC, MISSED_AUC)."""
    names = {f"{model}{SEP}{source}": (model, source) for model, source in runs}
    v = videos[videos["dataset"] != trained_on].assign(split=TEST_SPLIT)
    t = family_table(v, {name: 0.5 for name in names}, split=TEST_SPLIT)  # (its detection rate is not used)
    t[["model", "source"]] = pd.DataFrame(t["model"].map(names).tolist(), index=t.index)
    t = t.rename(columns={"artifact": "family"}).sort_values(["family"], kind="stable")
    return t.assign(verdict=t["auc"].map(verdict))[["model", "source", "family", "n_fake", "n_real", "auc", "verdict"]] \
        .reset_index(drop=True)


def verdict(auc: float) -> str:
    if not auc == auc:  # nan
        return ""
    return "caught" if auc >= CAUGHT_AUC else "missed" if auc <= MISSED_AUC else "partly"


def side_by_side(table: pd.DataFrame) -> pd.DataFrame:
    """The video AUCs as model x test set, one column per source and the gain (pseudo - fakes), with
    the unseen test sets where the pseudo run is higher counted per model."""
    wide = table.pivot_table(index=["model", "test_set", "seen"], columns="source", values="video_auc",
                             sort=False).reset_index()
    wide["gain"] = wide["pseudo"] - wide["fakes"]
    return wide[["model", "test_set", "seen", "pseudo", "fakes", "gain"]]


def summary(table: pd.DataFrame, families: pd.DataFrame | None = None) -> str:
    """One line per model: on how many of the unseen test sets the pseudo run is higher, and (demo)
    the families it catches and misses."""
    wide = side_by_side(table)
    lines = []
    for model, g in wide.groupby("model", sort=False):
        unseen = g[~g["seen"]]
        better = unseen.loc[unseen["gain"] > 0, "test_set"].tolist()
        line = (f"{model}: trained on pseudo-fakes only, higher video AUC than trained on the fakes on "
                f"{len(better)} of {len(unseen)} unseen test sets ({', '.join(better) or 'none'})")
        if families is not None and len(families):
            f = families[(families["model"] == model) & (families["source"] == "pseudo")]
            by = {k: ", ".join(f.loc[f["verdict"] == k, "family"]) or "none" for k in ("caught", "partly", "missed")}
            line += f"; catches {by['caught']}; partly {by['partly']}; misses {by['missed']}"
        lines.append(line)
    return "\n".join(lines)
