"""The README results section is generated from results.csv, labelled synthetic on the demo corpus."""

import pandas as pd
import pytest

from interceptor_lib.ensemble.store import save_ensemble_config
from interceptor_lib.errors import InterceptorError
from interceptor_lib.params import load_params
from interceptor_lib.pipeline.report import BEGIN, END, results_markdown, update_readme


def _results(out):
    rows = []
    for model, auc in (("ll", 0.8125), ("ensemble", 0.9375)):
        for ds in ("ffpp", "dfdc"):
            for name in ("0.5", "val"):
                rows.append({"model": model, "dataset": ds, "level": "video", "threshold_name": name,
                             "auc": auc if name == "val" else 0.1, "auc_low": 0.5, "auc_high": 1.0,
                             "tnr": 0.75, "tpr": 0.5, "n_real": 4, "n_fake": 20})
    (out / "eval").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(out / "eval" / "results.csv", index=False)


def test_markdown_from_results_csv(tmp_path):
    params = load_params("smoke", overrides={"output_dir": str(tmp_path)}, check_paths=False)
    with pytest.raises(InterceptorError, match="06_evaluation"):
        results_markdown(params)
    _results(tmp_path)
    md = results_markdown(params)
    assert "Synthetic demo corpus" in md  # never presented as real-world accuracy
    assert "| ll | 0.812 [0.500, 1.000] | 0.812 [0.500, 1.000] |" in md  # val-threshold video rows only
    assert "| ensemble | 0.938" in md and "0.100" not in md
    assert md.index("FF++") < md.index("DFDC")
    assert "0.750 / 0.500" in md
    # the ensemble's weights, both sets when it has one for videos with audio
    members = {n: tmp_path / "runs" / n for n in ("ll", "av")}
    save_ensemble_config(tmp_path, members, {"ll": 3, "av": 1}, 0.4)
    assert ("Ensemble weights (fitted on validation): ll 0.75, av 0.25; weighted mean of the votes; "
            "threshold 0.400.") in results_markdown(params)
    save_ensemble_config(tmp_path, members, {"ll": 3, "av": 1}, 0.4, audio={"weights": {"ll": 1, "av": 1}},
                         combination="logit", vote_tau=0.3)
    assert ("ll 0.75, av 0.25 (videos without audio); ll 0.50, av 0.50 (videos with audio); soft OR at vote "
            "temperature 0.3; threshold 0.400.") in results_markdown(params)


def test_markdown_adds_the_stage_matrix_and_the_robustness_summary(tmp_path):
    params = load_params("smoke", overrides={"output_dir": str(tmp_path)}, check_paths=False)
    _results(tmp_path)
    md = results_markdown(params)
    assert "What each stage gains" not in md and "Robustness" not in md  # notebooks 06 / 09 tables absent
    rows = [{"model": m, "stage": st, "dataset": ds, "test_set": t, "video_auc": auc, "frame_auc": auc - 0.05}
            for m in ("ll", "ensemble") for st, ds, auc in (("stage1", "ffpp", 0.9), ("stage2", "dfdc", 0.8))
            for t in ("ffpp", "dfdc")]
    pd.DataFrame(rows).to_csv(tmp_path / "eval" / "stage_matrix.csv", index=False)
    rows = [{"model": m, "perturbation": p, "level": lv, "test_set": t, "video_auc": a}
            for p in ("blur", "noise") for lv, a in ((0, 0.9), (1, 0.7), (5, 0.6))
            for m, a_m in (("ll", a), ("tm", a - 0.1), ("ensemble", a + 0.05)) for t in ("ffpp", "dfdc")
            for a in [a_m]]
    pd.DataFrame(rows).to_csv(tmp_path / "eval" / "robustness.csv", index=False)
    md = results_markdown(params)
    matrix = md[md.index("What each stage gains"):md.index("Robustness")]
    assert "| after stage1 (ffpp) | 0.900 | 0.900 |" in matrix and "| after stage2 (dfdc) |" in matrix
    # the stage-1 row beside the published anchors, with their sources
    assert "| EfficientNet-B4 (DeepfakeBench) | frame | – | 0.696 | Yan et al., DeepfakeBench" in matrix
    assert "| ours: ll | frame | 0.850 | 0.850 | this run |" in matrix and "| ours: ensemble | video | 0.900 |" in matrix
    robust = md[md.index("Robustness"):]
    assert "synthetic corpus" in robust
    assert "| blur | 0.950 | 0.750 | 0.650 | ll (0.650) |" in robust  # the ensemble by level; best specialist


def test_markdown_adds_the_pseudo_fake_comparison_and_its_families(tmp_path):
    params = load_params("smoke", overrides={"output_dir": str(tmp_path)}, check_paths=False)
    _results(tmp_path)
    assert "Self-blended" not in results_markdown(params)  # no notebook 10 table: nothing added
    rows = [{"model": "cm", "source": src, "test_set": t, "seen": t == "ffpp", "video_auc": auc}
            for src, base in (("pseudo", 0.7), ("fakes", 0.9)) for t, auc in (("ffpp", base), ("dfdc", base - 0.1))]
    pd.DataFrame(rows).to_csv(tmp_path / "eval" / "pseudo_fakes.csv", index=False)
    md = results_markdown(params)
    part = md[md.index("Self-blended"):]
    assert "synthetic corpus" in part and "| FF++ (test) (trained on) |" in part
    assert "| cm: reals + self-blended pseudo-fakes | 0.700 | 0.600 |" in part
    assert "| cm: reals + the dataset's fakes | 0.900 | 0.800 |" in part
    assert "Per artifact family" not in part
    pd.DataFrame([{"model": "cm", "source": src, "family": fam, "auc": a, "verdict": v}
                  for src in ("pseudo", "fakes") for fam, a, v in (("lighting", 0.8, "caught"), ("temporal", 0.5, "missed"))]
                 ).to_csv(tmp_path / "eval" / "pseudo_fakes_families.csv", index=False)
    part = results_markdown(params)[md.index("Self-blended"):]
    assert "| stage 1 trained on | lighting | temporal |" in part
    assert "| cm: reals + self-blended pseudo-fakes | 0.800 (caught) | 0.500 (missed) |" in part


def test_markdown_adds_the_perceivable_rates_where_they_differ(tmp_path):
    params = load_params("smoke", overrides={"output_dir": str(tmp_path)}, check_paths=False)
    _results(tmp_path)
    assert "inputs can show" not in results_markdown(params)   # no notebook 07 table: nothing added
    rows = [{"model": m, "dataset": d, "n_fake": 20, "tpr": 0.5,
             "n_fake_perceivable": 16 if (d == "dfdc" and m == "ll") else 20,
             "tpr_perceivable": 0.625 if (d == "dfdc" and m == "ll") else 0.5}
            for m in ("ll", "ensemble") for d in ("ffpp", "dfdc")]
    pd.DataFrame(rows).to_csv(tmp_path / "eval" / "perceivable_rates.csv", index=False)
    md = results_markdown(params)
    table = md[md.index("inputs can show"):]
    assert "| model | DFDC (test) |" in table and "FF++" not in table   # only where a count differs
    assert "| ll | 0.625 (10 / 16) |" in table and "| ensemble | 0.500 (10 / 20) |" in table


def test_update_readme_replaces_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\n## Results\n{BEGIN}\nold\n{END}\n\n## After\n")
    update_readme(readme, "new table")
    text = readme.read_text()
    assert "old" not in text and f"{BEGIN}\nnew table\n{END}" in text and text.endswith("## After\n")
    readme.write_text("# no markers\n")
    with pytest.raises(InterceptorError, match="markers"):
        update_readme(readme, "x")
