"""Checking loaded params: value ranges, known enum values, and files that must exist.

Names that only a registry knows (models, datasets and their indexers' options, optional face
detectors) are checked by `interceptor_lib.params`, which sits above those registries.
"""

from __future__ import annotations

from pathlib import Path

from interceptor_lib.config.schema import CHUNK_VALIDATION, EXPORT_FORMATS, IMAGE_FORMATS, STAGE_NAMES, Params, pseudo_fakes_mode
from interceptor_lib.errors import ParamsError


_RANGES = [
    ("preprocess.frames_per_video", 1, None), ("preprocess.clips_per_video", 0, None),
    ("preprocess.clip_len", 1, None), ("preprocess.face_size", 16, None), ("preprocess.margin", 1.0, None),
    ("preprocess.detect_max_side", 64, None), ("preprocess.min_face_rate", 0, 1),
    ("preprocess.audio_sample_rate", 1000, None), ("preprocess.audio_window_s", 0, None, False),
    ("preprocess.jpeg_quality", 1, 100), ("preprocess.workers", 1, None), ("preprocess.max_failure_rate", 0, 1),
    ("demo_data.artifact_strength", 0, None), ("inspection.grid_faces", 1, None), ("inspection.stats_sample", 0, None),
    ("train.batch_size", 1, None), ("train.num_workers", 0, None), ("train.grad_accum", 1, None),
    ("train.grad_clip", 0, None), ("train.warmup_frac", 0, 1, True, False), ("train.pretrained_lr_ratio", 0, None),
    ("train.label_smoothing", 0, 1, True, False), ("train.focal_gamma", 0, None), ("train.samples_per_epoch", 0, None),
    ("train.time_budget_h", 0, None, False), ("train.storage_budget_gb", 0, None, False),
    ("train.checkpoint_chunk_mb", 0, None, False), ("train.keep_last", 1, None),
    ("evaluation.matrix_items_per_video", 0, None), ("evaluation.robustness.videos_per_dataset", 0, None),
    ("evaluation.robustness.items_per_video", 1, None), ("evaluation.pseudo_fakes.items_per_video", 0, None),
]


def _check_ranges(p: Params) -> None:
    """Numbers outside what they can mean (a batch of -3, no frames per video, a share of 1.5) stop
    here, naming the key, instead of failing deep inside a run or, worse, running."""
    def get(key):
        v = p
        for part in key.split("."):
            v = v[part] if isinstance(v, dict) else getattr(v, part)
        return v

    checks = list(_RANGES)
    for name, st in p.train.stages.items():
        checks += [(f"train.stages.{name}.epochs", 0, None), (f"train.stages.{name}.lr", 0, None, False),
                   (f"train.stages.{name}.samples_per_epoch", 0, None)]
    for key, lo, hi, *incl in checks:
        lo_ok, hi_ok = (list(incl) + [True, True])[:2]
        v = get(key)
        if v is None:
            continue
        bad = (lo is not None and (v < lo if lo_ok else v <= lo)) or (hi is not None and (v > hi if hi_ok else v >= hi))
        if bad:
            lo_s = "" if lo is None else f"{'>=' if lo_ok else '>'} {lo}"
            hi_s = "" if hi is None else f"{'<=' if hi_ok else '<'} {hi}"
            want = " and ".join(x for x in (lo_s, hi_s) if x)
            raise ParamsError(f"params key {key!r} must be {want}, got {v!r}")


def check(p: Params, check_paths: bool = True) -> None:
    """Raise a ParamsError naming the key for the first setting that cannot work."""
    if p.device not in ("auto", "cpu", "cuda"):
        raise ParamsError(f"params key 'device' must be auto, cpu or cuda, got {p.device!r}")
    if p.demo_data.scale not in ("tiny", "small", "medium"):
        raise ParamsError(f"params key 'demo_data.scale' must be tiny, small or medium, got {p.demo_data.scale!r}")
    if p.preprocess.image_format not in IMAGE_FORMATS:
        raise ParamsError(f"params key 'preprocess.image_format' must be one of {IMAGE_FORMATS}, "
                          f"got {p.preprocess.image_format!r}")
    _check_ranges(p)
    if p.preprocess.boxes not in ("track", "detect"):
        raise ParamsError(f"params key 'preprocess.boxes' must be track or detect, got {p.preprocess.boxes!r}")
    if p.preprocess.full_detect_every < 1:
        raise ParamsError(f"params key 'preprocess.full_detect_every' must be >= 1, got {p.preprocess.full_detect_every!r}")
    if p.preprocess.detector not in ("haar", "yunet", "mtcnn", "mediapipe"):
        raise ParamsError(f"params key 'preprocess.detector' must be haar, yunet, mtcnn or mediapipe, "
                          f"got {p.preprocess.detector!r}")
    if p.preprocess.detector == "yunet" and not (p.preprocess.detector_model and Path(p.preprocess.detector_model).is_file()):
        raise ParamsError(f"params key 'preprocess.detector_model' must name an existing YuNet ONNX file "
                          f"when detector is yunet, got {p.preprocess.detector_model!r}")
    if p.train.unfreeze_schedule is not None:
        p.train.unfreeze_schedule = _unfreeze_schedule(p.train.unfreeze_schedule)
    a = p.train.augment
    for key in ("p_jpeg", "p_blur", "p_downscale", "p_color"):
        if not 0 <= getattr(a, key) <= 1:
            raise ParamsError(f"params key 'train.augment.{key}' is a probability in [0, 1], got {getattr(a, key)!r}")
    if len(a.jpeg_quality) != 2 or not 1 <= a.jpeg_quality[0] <= a.jpeg_quality[1] <= 100:
        raise ParamsError(f"params key 'train.augment.jpeg_quality' is [low, high] with 1 <= low <= high <= 100, "
                          f"got {a.jpeg_quality!r}")
    for name, st in p.train.stages.items():
        if name not in STAGE_NAMES:
            raise ParamsError(f"unknown params key 'train.stages.{name}'; stages are {list(STAGE_NAMES)}")
        if not 0.0 <= st.replay < 1.0:
            raise ParamsError(f"params key 'train.stages.{name}.replay' is a share in [0, 1), got {st.replay!r}")
        if st.replay and not st.balanced:
            raise ParamsError(f"params key 'train.stages.{name}.replay' needs balanced draws; "
                              f"train.stages.{name}.balanced is false")
        try:
            st.pseudo_fakes = pseudo_fakes_mode(st.pseudo_fakes)
        except ValueError as e:
            raise ParamsError(f"params key 'train.stages.{name}.pseudo_fakes': {e}") from None
        if isinstance(st.pseudo_fakes, float) and not st.balanced:
            raise ParamsError(f"params key 'train.stages.{name}.pseudo_fakes' (a share of the fake draws) needs "
                              f"balanced draws; train.stages.{name}.balanced is false")
        if st.loss not in ("ce", "weighted_ce", "focal"):
            raise ParamsError(f"params key 'train.stages.{name}.loss' must be ce, weighted_ce or focal, got {st.loss!r}")
    bad = p.train.pseudo_fakes.problems()
    if bad:
        raise ParamsError("params key 'train.pseudo_fakes': " + "; ".join(bad))
    owned = sorted(set(p.train.model_config) & {"backbone", "pretrained", "weights", "trainable_stages"})
    if owned:
        raise ParamsError(f"params key 'train.model_config' must not set {owned}: use train.{owned[0]}")
    if p.train.items_per_video < 1:
        raise ParamsError(f"params key 'train.items_per_video' must be >= 1, got {p.train.items_per_video!r}")
    if p.train.val_items_per_video < 0:
        raise ParamsError(f"params key 'train.val_items_per_video' must be >= 0 (0 = every cached item), "
                          f"got {p.train.val_items_per_video!r}")
    if p.train.models_per_notebook < 1:
        raise ParamsError(f"params key 'train.models_per_notebook' must be >= 1, got {p.train.models_per_notebook!r}")
    if p.train.parallel_models < 1:
        raise ParamsError(f"params key 'train.parallel_models' must be >= 1, got {p.train.parallel_models!r}")
    if p.train.select_on not in ("stage", "seen"):
        raise ParamsError(f"params key 'train.select_on' must be stage or seen, got {p.train.select_on!r}")
    if p.train.chunk_validation not in CHUNK_VALIDATION:
        raise ParamsError(f"params key 'train.chunk_validation' must be every or last, got {p.train.chunk_validation!r}")
    fmts = p.export.formats
    if any(f not in EXPORT_FORMATS for f in fmts) or len(set(fmts)) != len(fmts):
        raise ParamsError(f"params key 'export.formats' is a list of distinct formats of {list(EXPORT_FORMATS)}, "
                          f"got {fmts!r}")
    r = p.evaluation.robustness
    if not r.levels or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5 for v in r.levels) \
            or len(set(r.levels)) != len(r.levels):
        raise ParamsError(f"params key 'evaluation.robustness.levels' is a list of distinct levels 1-5 (0, the clean "
                          f"videos, is always scored), got {r.levels!r}")
    pt = p.train.pretext
    if pt.steps < 0 or pt.batch_size < 2 or not 0 <= pt.local <= 1 or pt.lr <= 0:
        raise ParamsError(f"params key 'train.pretext' needs steps >= 0, batch_size >= 2, lr > 0 and local in "
                          f"[0, 1], got {pt}")
    if pt.steps > 0 and (not p.train.pretrained or p.train.weights != pt.out):
        raise ParamsError("params key 'train.pretext.steps' > 0 makes the pretext backbone every model's "
                          "starting weights: set train.pretrained: true and leave train.weights unset "
                          f"(got pretrained={p.train.pretrained}, weights={p.train.weights!r})")
    if check_paths and p.train.weights and p.train.weights != pt.out and not Path(p.train.weights).is_file():
        raise ParamsError(f"params key 'train.weights': file {p.train.weights} does not exist")
    for prev in p.train.previous_outputs or []:
        if check_paths and not Path(prev).is_dir():
            raise ParamsError(f"params key 'train.previous_outputs': folder {prev} does not exist (attach the "
                              "earlier session's output and give the folder that holds its runs/, cache/, index/)")
        a, b = Path(prev).resolve(), Path(p.output_dir).resolve()
        if a == b or a.is_relative_to(b) or b.is_relative_to(a):
            raise ParamsError(f"params key 'train.previous_outputs': {prev} overlaps output_dir {p.output_dir}; "
                              "an attached earlier output is read-only, so each session needs an output_dir of its own")


def _unfreeze_schedule(schedule: dict) -> dict[int, int | None]:
    """train.unfreeze_schedule with int epochs (JSON, e.g. a launch snapshot or --overrides, makes
    them strings), sorted; checks epochs >= 0, a phase for epoch 0, and stages >= 0 or null."""
    key = "params key 'train.unfreeze_schedule'"
    out = {}
    for epoch, stages in schedule.items():
        e = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else \
            int(epoch) if isinstance(epoch, str) and epoch.strip().isdigit() else None
        if e is None or e < 0:
            raise ParamsError(f"{key} maps epochs (integers >= 0) to trainable backbone stages, got epoch {epoch!r}")
        if stages is not None and stages < 0:
            raise ParamsError(f"{key}: epoch {e} must map to a number of stages >= 0 or null (all), got {stages}")
        out[e] = stages
    if 0 not in out:
        raise ParamsError(f"{key} must say what trains from epoch 0 (e.g. {{0: 0, 2: 1, 4: 2}}), got {schedule}")
    return dict(sorted(out.items()))
