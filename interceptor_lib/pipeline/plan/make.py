"""`make_plan`: the steps of the chain for a profile, packed into sessions, with what keeps it from
fitting."""

from __future__ import annotations

import math
from pathlib import Path

from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import RunPaths
from interceptor_lib.pipeline.plan.packing import pack_cpu, pack_gpu
from interceptor_lib.pipeline.plan.records import EVAL_GB, Figures, Plan, Step
from interceptor_lib.pipeline.plan.sizes import data_parts, planned_datasets, published_parts
from interceptor_lib.pipeline.plan.steps import (evaluate_step, preprocess_steps, pseudo_fake_steps, robustness_step,
                                                 stage_matrix_step,
                                                 train_steps)
from interceptor_lib.training.throughput import measured


def _roots(params) -> list:
    """output_dir, then train.previous_outputs (a folder, a list of folders or None)."""
    prev = params.train.previous_outputs or []
    return [params.output_dir, *([prev] if isinstance(prev, (str, Path)) else prev)]


def _check_plan_params(p) -> None:
    for key in ("cpu_cores", "gpus"):
        if getattr(p, key) < 1:
            raise InterceptorError(f"params key 'plan.{key}' must be >= 1, got {getattr(p, key)!r}")
    if not 0 < p.ddp_efficiency <= 1:
        raise InterceptorError(f"params key 'plan.ddp_efficiency' is a share in (0, 1], got {p.ddp_efficiency!r}")
    for key in ("train_images_per_s", "eval_images_per_s"):
        if getattr(p, key) <= 0:
            raise InterceptorError(f"params key 'plan.{key}' must be > 0, got {getattr(p, key)!r}")
    for ds, pair in p.cpu_s_per_video.items():
        if len(pair) != 2:
            raise InterceptorError(f"params key 'plan.cpu_s_per_video.{ds}' is [original, fake] CPU-seconds "
                                   f"per video, got {pair!r}")


def default_sizes(params) -> str | None:
    """What to plan from: the run's index table when it exists ("data"), else the published sizes
    ("published"); None for a profile that generates its corpus (demo, smoke) before it has indexed
    it, where published sizes would describe other data."""
    if RunPaths.of(params).index_file("all").is_file():
        return "data"
    return None if params.demo_data.generate else "published"


def make_plan(params, sizes: str = "published") -> Plan:
    """The plan of the whole chain for `params`: steps, sessions, totals and the problems that keep
    it from fitting the sessions' budgets or the weekly GPU quota."""
    if sizes not in ("published", "data"):
        raise InterceptorError(f"sizes must be 'published' or 'data', got {sizes!r}")
    p, t = params.plan, params.train
    _check_plan_params(p)
    hours = t.time_budget_h if t.time_budget_h else math.inf
    gb = t.storage_budget_gb if t.storage_budget_gb else math.inf
    problems: list[str] = []
    enabled = params.enabled_datasets()
    for stage, st in t.stages.items():
        if st.dataset not in enabled:
            problems.append(f"train.stages.{stage} trains on {st.dataset}, which is not enabled: set "
                            f"datasets.{st.dataset} (root, enabled: true) or remove train.stages.{stage}")
    datasets = planned_datasets(params)
    parts, order = (published_parts if sizes == "published" else data_parts)(params, datasets)
    for ds in datasets:
        if not any(part.n() for part in parts if part.dataset == ds):
            problems.append(f"the index table has no {ds} videos, yet train.stages trains on {ds}: index it again "
                            f"(notebook 00) with datasets.{ds} pointing at the dataset")
    figures = Figures(measured(_roots(params)))
    pre = preprocess_steps(params, parts, order, figures)
    train = train_steps(params, parts, order, figures)
    evaluation = [evaluate_step(params, parts, figures), stage_matrix_step(params, parts, figures),
                  robustness_step(params, parts, figures)]
    if train:  # the comparison's extra first-stage runs train after the chain (notebook 10)
        evaluation += pseudo_fake_steps(params, parts, order, figures)
    gpu_steps = train + ([s for s in evaluation if s is not None] if train else [])

    if p.session_overhead_h >= hours:
        problems.append(f"plan.session_overhead_h ({p.session_overhead_h} h) leaves no time in a session of "
                        f"train.time_budget_h {hours} h: raise train.time_budget_h")
    too_big: dict[str, list[Step]] = {}
    for s in train:
        if s.work_gb > gb or s.gb > gb:
            too_big.setdefault(s.keep[0], []).append(s)
    for model, bad in too_big.items():
        s = bad[0]
        more = f" (and {len(bad) - 1} more step(s) of {model})" if len(bad) > 1 else ""
        problems.append(f"{s.name}{more} holds {s.work_gb:.2f} GB while it trains ((train.keep_last + 1) = "
                        f"{t.keep_last + 1} training states of 3 x {p.model_mb[model]:.1f} MB fp32 weights), over "
                        f"train.storage_budget_gb {gb}: raise train.storage_budget_gb to at least "
                        f"{math.ceil(s.work_gb * 10) / 10:.1f} or lower train.keep_last")
    ev = gpu_steps[len(train)] if len(gpu_steps) > len(train) else None
    for step in gpu_steps[len(train):]:
        if step.kind == "evaluate" and step.gpu_h + p.session_overhead_h > hours:
            lower = {"evaluate": "preprocess.frames_per_video / preprocess.clips_per_video",
                     "stage matrix": "evaluation.matrix_items_per_video",
                     "robustness sweep": "evaluation.robustness.levels / videos_per_dataset / items_per_video",
                     "pseudo-fake comparison": "evaluation.pseudo_fakes.items_per_video"}[step.name]
            problems.append(f"{step.name} takes {step.gpu_h:.1f} h on one GPU ({step.images:,} images) and does not "
                            f"resume: more than a session leaves ({hours - p.session_overhead_h:.1f} h); lower "
                            f"{lower} or raise train.time_budget_h")
    if ev is not None and EVAL_GB > gb:
        problems.append(f"evaluate writes about {EVAL_GB} GB, over train.storage_budget_gb {gb}: raise it")

    sessions = pack_cpu(pre, hours, gb, problems) + pack_gpu(gpu_steps, hours, gb, p.session_overhead_h)
    plan = Plan(False, sessions, pre + gpu_steps, dict(sorted(figures.used.items())), problems,
                profile=params.profile, sizes=sizes, time_budget_h=hours, storage_budget_gb=gb, gpus=p.gpus)
    if plan.gpu_session_h > p.weekly_gpu_quota_h:
        by_stage: dict[str, float] = {}
        for s in train:
            stage = s.keep[1]
            by_stage[stage] = by_stage.get(stage, 0.0) + s.gpu_h
        top = max(by_stage, key=by_stage.get) if by_stage else "stage1"
        problems.append(f"the GPU sessions take {plan.gpu_session_h:.1f} h, more than the weekly quota "
                        f"plan.weekly_gpu_quota_h {p.weekly_gpu_quota_h} h; {top} takes the most "
                        f"({by_stage.get(top, 0.0):.1f} h): lower train.stages.{top}.epochs (or "
                        f"samples_per_epoch), raise plan.gpus, or spread the sessions over several weeks")
    plan.fits = not problems
    return plan
