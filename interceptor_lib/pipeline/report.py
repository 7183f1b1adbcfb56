"""The README's results section, generated from what notebook 06 wrote (never typed by hand).

    python -m interceptor_lib report --profile demo --update-readme

reads `<output_dir>/eval/results.csv` and replaces the text between the README's markers
`<!-- results:begin -->` and `<!-- results:end -->`. The same layout is filled by a Kaggle run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from interceptor_lib.data.registry import DATASETS
from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import RunPaths
from interceptor_lib.pipeline.robustness import robustness_summary, robustness_table
from interceptor_lib.pipeline.evaluate import ENSEMBLE
from interceptor_lib.pipeline.stage_matrix import cross_dataset_protocol

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
#: column titles of the results tables (for DFDC: the public test set when present, else the held-out groups)
DATASET_NAMES = {name: e.test_title for name, e in DATASETS.items()}


def _fmt(x: float) -> str:
    return "–" if pd.isna(x) else f"{x:.3f}"


def _table(cell: dict, models: list[str], sets: list[str], fmt, first: str = "model") -> list[str]:
    """A models x test sets markdown table with fmt(cell[model, set]) per cell ("–" where a model lacks
    a set); `first`: the title of the rows' column."""
    out = [f"| {first} | " + " | ".join(DATASET_NAMES.get(d, d) for d in sets) + " |", "|---|" + "---|" * len(sets)]
    for m in models:
        out.append(f"| {m} | " + " | ".join("–" if (m, d) not in cell else fmt(cell[m, d]) for d in sets) + " |")
    return out


def results_markdown(params) -> str:
    """Markdown tables from <output_dir>/eval/results.csv: the cross-dataset video AUC table (rows
    models, columns test sets) and real-/fake-detection rates at the validation threshold."""
    path = RunPaths.of(params).eval_dir / "results.csv"
    if not path.is_file():
        raise InterceptorError(f"no results at {path}: run notebook 06_evaluation for profile {params.profile} first")
    r = pd.read_csv(path)
    r = r[(r["level"] == "video") & (r["threshold_name"] == "val")]
    models = list(dict.fromkeys(r["model"]))
    sets = [d for d in DATASET_NAMES if d in set(r["dataset"])] + sorted(set(r["dataset"]) - set(DATASET_NAMES))
    cell = {(m, d): row for (m, d), row in r.set_index(["model", "dataset"]).iterrows()}
    lines = []
    synthetic = bool(params.demo_data and params.demo_data.generate)
    if synthetic:
        lines += [f"**Synthetic demo corpus (profile `{params.profile}`): these numbers test the pipeline; they say "
                  "nothing about accuracy on real deepfakes.**", ""]
    def table(fmt) -> list[str]:
        return _table(cell, models, sets, fmt)

    lines += [f"Video-level AUC [bootstrap 95 % interval] per test set (profile `{params.profile}`, "
              f"`{path.relative_to(params.output_dir).as_posix()}`):", ""]
    lines += table(lambda row: f"{_fmt(row['auc'])} [{_fmt(row['auc_low'])}, {_fmt(row['auc_high'])}]")
    lines += ["", "Real-detection (TNR) / fake-detection (TPR) rate at each model's threshold chosen on validation "
              "(its equal-error-rate point there):", ""]
    lines += table(lambda row: f"{_fmt(row['tnr'])} / {_fmt(row['tpr'])}")
    n = r.groupby("dataset")[["n_real", "n_fake"]].first()
    lines += ["", "Test videos (real / fake): " + ", ".join(
        f"{DATASET_NAMES.get(d, d)} {int(n.loc[d, 'n_real'])} / {int(n.loc[d, 'n_fake'])}" for d in sets if d in n.index) + "."]
    lines += perceivable_markdown(path.parent / "perceivable_rates.csv", models, sets)
    ens = RunPaths.of(params).ensemble_dir / "ensemble.json"
    if ens.is_file():
        doc = json.loads(ens.read_text())
        w = ", ".join(f"{k} {v['weight']:.2f}" for k, v in doc["members"].items())
        audio = doc.get("audio")
        if audio:
            wa = ", ".join(f"{k} {v:.2f}" for k, v in audio["weights"].items())
            w = f"{w} (videos without audio); {wa} (videos with audio)"
        tau = doc.get("vote_tau")
        vote = f"soft OR at vote temperature {tau:g}" if tau is not None else "weighted mean of the votes"
        lines += [f"Ensemble weights (fitted on validation): {w}; {vote}; threshold {doc['threshold']:.3f}."]
    lines += stage_matrix_markdown(path.parent / "stage_matrix.csv", sets)
    lines += robustness_markdown(path.parent / "robustness.csv", synthetic)
    lines += pseudo_fakes_markdown(path.parent / "pseudo_fakes.csv", path.parent / "pseudo_fakes_families.csv",
                                   synthetic)
    return "\n".join(line for i, line in enumerate(lines) if line or i == 0 or lines[i - 1])  # one blank line at most


def stage_matrix_markdown(path: Path, sets: list[str]) -> list[str]:
    """Lines for notebook 06's stage_matrix.csv ([] when absent): the ensemble of each stage's
    checkpoints on every test set, video AUC."""
    if not path.is_file():
        return []
    m = pd.read_csv(path)
    e = m[m["model"] == "ensemble"]
    if e.empty:
        return []
    stages = list(dict.fromkeys(e["stage"]))
    cell = {(f"after {st} ({e.loc[e['stage'] == st, 'dataset'].iloc[0]})", d): v
            for (st, d), v in e.set_index(["stage", "test_set"])["video_auc"].items()}
    rows = [f"after {st} ({e.loc[e['stage'] == st, 'dataset'].iloc[0]})" for st in stages]
    lines = (["", "What each stage gains and forgets: the ensemble of every model's best checkpoint after each stage, "
              f"video AUC per test set (`eval/{path.name}`, every model's own in notebook 06):", ""]
             + _table(cell, rows, [d for d in sets if d in set(e["test_set"])], _fmt, first="ensemble"))
    return lines + protocol_markdown(m, sets)


def protocol_markdown(matrix: pd.DataFrame, sets: list[str]) -> list[str]:
    """The stage-1 checkpoints (trained on FF++ only: the field's cross-dataset protocol) in
    DeepfakeBench's layout, frame AUC for the models and video AUC for their ensemble, under the
    published anchors (`stage_matrix.cross_dataset_protocol`)."""
    cols = [d for d in sets if d in set(matrix["test_set"])]
    out = ["", "The stage-1 checkpoints, trained on FF++ alone (the field's cross-dataset protocol), in DeepfakeBench's "
           "layout beside published figures (from their papers; trained and tested on the real datasets, so not "
           "comparable with a synthetic run):", "",
           "| detector | AUC | " + " | ".join(DATASET_NAMES.get(d, d) for d in cols) + " | source |",
           "|---|---|" + "---|" * len(cols) + "---|"]
    for row in cross_dataset_protocol(matrix, synthetic=False, one_level=True).to_dict("records"):
        out.append(f"| {row['detector']} | {row['level']} | " + " | ".join(_fmt(row.get(d, float("nan"))) for d in cols)
                   + f" | {row['source']} |")
    return out


def robustness_markdown(path: Path, synthetic: bool) -> list[str]:
    """Lines for notebook 09's robustness.csv ([] when absent): per perturbation the ensemble's video
    AUC clean and at each level (mean over the test sets), and the specialist that holds up best."""
    if not path.is_file():
        return []
    r = pd.read_csv(path)
    mean = robustness_table(r).loc[ENSEMBLE]  # (perturbation, level) -> the ensemble's mean AUC
    best = robustness_summary(r).set_index("perturbation")
    levels = sorted(r["level"].unique())
    out = ["", "Robustness: the ensemble's video AUC (mean over the test sets) under each DeeperForensics-1.0 "
           f"perturbation by level (0 = clean), and the specialist with the highest AUC over the perturbed levels "
           f"(`eval/{path.name}`, notebook 09{'; synthetic corpus' if synthetic else ''}):", "",
           "| perturbation | " + " | ".join(f"level {lv}" for lv in levels) + " | holds up best |",
           "|---|" + "---|" * (len(levels) + 1)]
    for name in dict.fromkeys(r["perturbation"]):
        b = best.loc[name]
        held = f"{b.best_specialist} ({b.best_perturbed:.3f})" if isinstance(b.best_specialist, str) else "–"
        out.append(f"| {name} | " + " | ".join(_fmt(mean.get((name, lv))) for lv in levels) + f" | {held} |")
    return out + [""]


def pseudo_fakes_markdown(path: Path, families_path: Path, synthetic: bool) -> list[str]:
    """Lines for notebook 10's pseudo_fakes.csv ([] when absent): per model, stage 1 trained on the
    reals and their self-blended pseudo-fakes against stage 1 trained on the dataset's fakes, video
    AUC per test set; and (demo) the artifact families each catches on the test sets it never saw."""
    if not path.is_file():
        return []
    t = pd.read_csv(path)
    sets = [d for d in DATASET_NAMES if d in set(t["test_set"])]
    seen = set(t.loc[t["seen"], "test_set"])
    label = {"pseudo": "reals + self-blended pseudo-fakes", "fakes": "reals + the dataset's fakes"}
    rows = [f"{m}: {label.get(src, src)}" for m, src in dict.fromkeys(zip(t["model"], t["source"]))]
    cell = {(f"{m}: {label.get(src, src)}", d): v for (m, src, d), v in
            t.set_index(["model", "source", "test_set"])["video_auc"].items()}
    titles = {d: DATASET_NAMES.get(d, d) + (" (trained on)" if d in seen else "") for d in sets}
    out = ["", "Self-blended pseudo-fakes against the dataset's fakes: the same model's stage 1 trained on "
           "FF++'s reals and their self-blended pseudo-fakes only (never a fake) and on FF++'s reals and fakes, "
           f"video AUC per test set (`eval/{path.name}`, notebook 10{'; synthetic corpus' if synthetic else ''}):", "",
           "| stage 1 trained on | " + " | ".join(titles[d] for d in sets) + " |", "|---|" + "---|" * len(sets)]
    out += [f"| {r} | " + " | ".join(_fmt(cell.get((r, d))) for d in sets) + " |" for r in rows]
    if families_path.is_file():
        f = pd.read_csv(families_path)
        fams = list(dict.fromkeys(f["family"]))
        out += ["", "Per artifact family: the AUC of its fakes against the reals of the test sets these runs never "
                "trained on (caught ≥ 0.75, missed ≤ 0.6; `eval/" + families_path.name + "`):", "",
                "| stage 1 trained on | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
        fc = {(f"{m}: {label.get(src, src)}", fam): (auc, v) for (m, src, fam), (auc, v) in
              f.set_index(["model", "source", "family"])[["auc", "verdict"]].iterrows()}
        for r in rows:
            out.append(f"| {r} | " + " | ".join(
                "–" if (r, fam) not in fc else f"{_fmt(fc[r, fam][0])} ({fc[r, fam][1]})" for fam in fams) + " |")
    return out + [""]


def perceivable_markdown(path: Path, models: list[str], sets: list[str]) -> list[str]:
    """Lines for notebook 07's perceivable_rates.csv (demo corpus only; [] when absent): each model's
    fake-detection rate over the fakes its inputs can show, on the test sets where that differs from
    all fakes (the demo's DFDC, whose audio-visual fakes no model without audio can see)."""
    if not path.is_file():
        return []
    p = pd.read_csv(path)
    differ = [d for d in sets if (p.loc[p["dataset"] == d, "n_fake_perceivable"] < p.loc[p["dataset"] == d, "n_fake"]).any()]
    if not differ:
        return []
    cell = {(m, d): row for (m, d), row in p.set_index(["model", "dataset"]).iterrows()}

    def fmt(row) -> str:
        k = round(row["tpr_perceivable"] * row["n_fake_perceivable"])
        return f"{_fmt(row['tpr_perceivable'])} ({k} / {int(row['n_fake_perceivable'])})"

    return (["", "Fake-detection rate at the same thresholds over the fakes a model's inputs can show: a model "
             "that does not read the audio cannot see the audio-visual fakes (a mouth that follows another or a "
             f"shifted voice), so they are left out of its count (`eval/{path.name}`, notebook 07):", ""]
            + _table(cell, models, differ, fmt) + [""])  # a paragraph after a table needs a blank line


def update_readme(readme: str | Path, markdown: str) -> None:
    """Replace the text between the results markers of `readme` with `markdown`."""
    readme = Path(readme)
    text = readme.read_text()
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise InterceptorError(f"{readme} has no results markers {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{markdown}\n{END}{tail}")
