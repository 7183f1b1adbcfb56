"""The chain as steps: preprocess each part, train each (model, stage[, chunk]), evaluate (with the
stage matrix, the robustness sweep and the pseudo-fake comparison); with the hours and gigabytes
each takes from the throughput figures."""

from __future__ import annotations

import dataclasses

from interceptor_lib.config.schema import PSEUDO_ONLY, pseudo_share
from interceptor_lib.data.perturb import VIDEO_PERTURBATIONS
from interceptor_lib.data.registry import DATASETS
from interceptor_lib.errors import InterceptorError
from interceptor_lib.layout import PSEUDO_SOURCES, first_stage, variant_folder, variant_params
from interceptor_lib.models import model_entry
from interceptor_lib.pipeline.plan.records import (EVAL_GB, EXPORT_FACTOR, FORMAT_FACTOR, KINDS, REFERENCE_FACE,
                                                  REFERENCE_FRAMES, STATE_FACTOR, Figures, Part, Step)


def frames_per_item(params, model: str) -> int:
    """1 for image models, clip_len for clip models (tm, av)."""
    return params.preprocess.clip_len if model_entry(model).input_kind == "clip" else 1


def preprocess_steps(params, parts: list[Part], order: list[int], figures: Figures) -> list[Step]:
    pp, plan = params.preprocess, params.plan
    frames = pp.frames_per_video + pp.clips_per_video * pp.clip_len
    size_scale = ((pp.face_size / REFERENCE_FACE) ** 2 * frames / REFERENCE_FRAMES
                  * FORMAT_FACTOR.get(pp.image_format, 1.0))
    workers = max(1, min(pp.workers, plan.cpu_cores))  # processes preprocessing at once

    def rank(part: Part) -> int:  # DFDC chunks in stage-4 order, the others after them
        return order.index(part.chunk) if part.chunk in order else len(order) + (part.chunk or 0)

    datasets = list(dict.fromkeys(p.dataset for p in parts))
    ordered = sorted(parts, key=lambda p: (datasets.index(p.dataset), rank(p)))
    steps = []
    for part in ordered:
        ds = part.dataset
        if ds not in plan.cpu_s_per_video or ds not in plan.cache_mb_per_video:
            raise InterceptorError(f"params key 'plan.cpu_s_per_video' / 'plan.cache_mb_per_video' has no figure "
                                   f"for {ds}: add plan.cpu_s_per_video.{ds}: [original, fake] and "
                                   f"plan.cache_mb_per_video.{ds}")
        cpu_s = sum(part.n(kind=k) * figures.get(f"preprocess.cpu_s_per_video.{ds}.{k}", plan.cpu_s_per_video[ds][i])
                    for i, k in enumerate(KINDS))
        mb = figures.get(f"preprocess.cache_mb_per_video.{ds}", plan.cache_mb_per_video[ds] * size_scale)
        videos = part.n()
        steps.append(Step(f"preprocess {part.label}", "preprocess", videos, videos * frames,
                          cpu_h=cpu_s / workers / 3600, gb=videos * mb / 1024))
    return steps


def train_steps(params, parts: list[Part], order: list[int], figures: Figures) -> list[Step]:
    t, plan = params.train, params.plan
    by_ds: dict[str, list[Part]] = {}
    for p in parts:
        by_ds.setdefault(p.dataset, []).append(p)
    eval_ips = figures.get("eval.images_per_s", plan.eval_images_per_s * _face_scale(params))
    parallel = plan.gpus * plan.ddp_efficiency if plan.gpus > 1 else 1.0  # DDP; rank 0 alone validates
    steps, seen = [], []
    for stage, st in t.stages.items():
        if st.dataset not in by_ds:
            continue
        seen.append(st.dataset)
        val_sets = seen if t.select_on == "seen" else [st.dataset]
        val_videos = sum(p.n("val") for ds in val_sets for p in by_ds.get(ds, []))
        spe = st.samples_per_epoch if st.samples_per_epoch is not None else t.samples_per_epoch
        chunked = DATASETS[st.dataset].chunked
        if chunked:
            chunks = {p.chunk: p for p in by_ds[st.dataset]}
            units = [(f" chunk {c}", chunks[c]) for c in order if c in chunks]
        else:
            units = [("", by_ds[st.dataset][0])]
        # training skips a part whose training videos hold one class (the model passes through)
        units = [(suffix, part) for suffix, part in units if all(part.n("train", k) for k in KINDS)]
        for model in t.models:
            if model not in plan.model_mb:
                raise InterceptorError(f"params key 'plan.model_mb' has no size for model {model}: add "
                                       f"plan.model_mb.{model} (fp32 MB, python -m interceptor_lib.models.size_report)")
            w_gb = plan.model_mb[model] / 1024
            fpi = frames_per_item(params, model)
            ips = figures.get(f"train.images_per_s.{model}", plan.train_images_per_s * _face_scale(params))
            for i, (suffix, part) in enumerate(units):
                items = (spe or part.n("train") * t.items_per_video) * st.epochs
                last = i == len(units) - 1
                validates = not chunked or t.chunk_validation == "every" or last
                val_images = val_videos * _val_items(params, fpi) * fpi * st.epochs if validates else 0
                seconds = (items * fpi / (ips * parallel) + val_images / eval_ips
                           + _self_blend_s(params, st, items * fpi, val_images if validates else 0))
                chunk_only = chunked and not last  # its best weights, kept until the stage ends
                steps.append(Step(f"train {model} {stage}{suffix}", "train", items, items * fpi + val_images,
                                  gpu_h=seconds / 3600, gb=w_gb * (1 if chunk_only else 1 + EXPORT_FACTOR),
                                  work_gb=(t.keep_last + 1) * STATE_FACTOR * w_gb,
                                  keep=(model, stage, suffix),
                                  releases=chunked and last))
    return steps


def _self_blend_s(params, stage_params, train_images: int, val_images: int) -> float:
    """Seconds the data loader spends making the stage's pseudo-fakes (none when its pseudo_fakes is
    off): the drawn fakes' share of them (half the balanced draws) and, with pseudo-fakes only, the
    validation set's (half of it), at plan.self_blend_ms_per_image scaled by the face's pixels and
    spread over train.num_workers processes. Counted on top of the GPU's time, as if the loader kept
    it waiting: an upper bound."""
    mode = stage_params.pseudo_fakes
    images = train_images * 0.5 * pseudo_share(mode) + (val_images * 0.5 if mode == PSEUDO_ONLY else 0)
    ms = params.plan.self_blend_ms_per_image / _face_scale(params)
    return images * ms / 1000 / max(1, params.train.num_workers)


def pseudo_fake_steps(params, parts: list[Part], order: list[int], figures: Figures) -> list[Step]:
    """Notebook 10's comparison (evaluation.pseudo_fakes.models): the first stage trained again on the
    source the chain's own first stage does not train on (both when it mixes them), per model, and
    both runs scored on every test video. [] when no model is listed."""
    models = params.evaluation.pseudo_fakes.models
    if not models:
        return []
    first = first_stage(params)
    steps = []
    for source in PSEUDO_SOURCES:
        if variant_folder(params, source) == first:  # the chain's own first stage
            continue
        v = variant_params(params, source)  # trained in notebook 10's process: one GPU, no DDP
        v.train.models, v.train.stages, v.plan.gpus = list(models), {first: v.train.stages[first]}, 1
        for s in train_steps(v, parts, order, figures):
            s.name = s.name.replace(f" {first}", f" {first}-{source}")
            s.keep = (s.keep[0], f"{first}-{source}", s.keep[2])
            steps.append(s)
    videos = sum(p.n("test") for p in parts)
    sub = dataclasses.replace(params, train=dataclasses.replace(params.train, models=list(models)))
    images = videos * _items_images(sub, params.evaluation.pseudo_fakes.items_per_video) * 2
    eval_ips = figures.get("eval.images_per_s", params.plan.eval_images_per_s * _face_scale(params))
    steps.append(Step("pseudo-fake comparison", "evaluate", videos * len(models) * 2, images,
                      gpu_h=images / eval_ips / 3600, splittable=False, keep=("evaluate",)))
    return steps


def _val_items(params, frames_per_item: int) -> int:
    """Items scored per validation video after each epoch: train.val_items_per_video, at most (and
    for 0) every cached one (frames_per_video frames, or clips_per_video clips)."""
    pp = params.preprocess
    cached = pp.frames_per_video if frames_per_item == 1 else pp.clips_per_video
    wanted = params.train.val_items_per_video
    return min(wanted, cached) if wanted > 0 else cached


def evaluate_step(params, parts: list[Part], figures: Figures) -> Step:
    videos = sum(p.n("val") + p.n("test") for p in parts)
    images = videos * _items_images(params, 0)
    eval_ips = figures.get("eval.images_per_s", params.plan.eval_images_per_s * _face_scale(params))
    return Step("evaluate", "evaluate", videos * len(params.train.models), images, gpu_h=images / eval_ips / 3600,
                gb=EVAL_GB, splittable=False, keep=("evaluate",))


def _items_images(params, items_per_video: int) -> int:
    """Images through the network per video and per model set, at `items_per_video` frames / clips
    (0 = every cached one)."""
    pp = params.preprocess
    out = 0
    for m in params.train.models:
        fpi = frames_per_item(params, m)
        cached = pp.frames_per_video if fpi == 1 else pp.clips_per_video
        out += (min(items_per_video, cached) if items_per_video else cached) * fpi
    return out


def stage_matrix_step(params, parts: list[Part], figures: Figures) -> Step | None:
    """Notebook 06's stage matrix: every stage's checkpoint of every model on the validation and test
    videos (evaluation.matrix_items_per_video); None when evaluation.stage_matrix is off. The last
    stage's checkpoints are not scored again (the matrix takes notebook 06's predictions of them), so
    the images through the network are the earlier stages'."""
    if not params.evaluation.stage_matrix:
        return None
    videos = sum(p.n("val") + p.n("test") for p in parts)
    scored_stages = max(0, len(params.train.stages) - 1)
    images = videos * _items_images(params, params.evaluation.matrix_items_per_video) * scored_stages
    eval_ips = figures.get("eval.images_per_s", params.plan.eval_images_per_s * _face_scale(params))
    return Step("stage matrix", "evaluate", videos * len(params.train.models) * len(params.train.stages), images,
                gpu_h=images / eval_ips / 3600, splittable=False, keep=("evaluate",))


def robustness_step(params, parts: list[Part], figures: Figures) -> Step | None:
    """Notebook 09's sweep: (1 + perturbations x levels) scorings of the sweep's test videos, plus an
    H.264 re-encode of each per video-compression level on the CPU cores (counted in the session's
    hours); None when evaluation.robustness is off."""
    r = params.evaluation.robustness
    if not r.enabled:
        return None
    videos = 0
    for ds in dict.fromkeys(p.dataset for p in parts):
        real = sum(p.n("test", "original") for p in parts if p.dataset == ds)
        fake = sum(p.n("test", "fake") for p in parts if p.dataset == ds)
        both = 2 * min(real, fake) if real and fake else real + fake
        videos += min(both, r.videos_per_dataset) if r.videos_per_dataset else real + fake
    conditions = 1 + len(r.perturbations) * len(r.levels)
    images = videos * _items_images(params, r.items_per_video) * conditions
    eval_ips = figures.get("eval.images_per_s", params.plan.eval_images_per_s * _face_scale(params))
    reencodes = videos * len(r.levels) * sum(x in VIDEO_PERTURBATIONS for x in r.perturbations)
    cpu_s = reencodes * figures.get("robustness.reencode_cpu_s_per_video", params.plan.reencode_cpu_s_per_video)
    return Step("robustness sweep", "evaluate", videos * conditions, images,
                gpu_h=images / eval_ips / 3600 + cpu_s / params.plan.cpu_cores / 3600, splittable=False,
                keep=("evaluate",))


def _face_scale(params) -> float:
    """Throughput against the figures' 224 px: the work per image grows with the pixels."""
    return (REFERENCE_FACE / params.preprocess.face_size) ** 2
