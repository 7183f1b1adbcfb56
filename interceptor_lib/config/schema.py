"""The params schema: one typed dataclass per section of `params/<profile>.yaml`, with defaults.

Every setting a run reads is a field here, with a one-line comment saying what it does; loading and
checking a file is `config.load`. The classes hold values only: nothing in this module reads files
or imports the rest of the package, so every layer may take the section it needs.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

#: Notebook of each progressive-training stage, in chain order (the keys of `train.stages`).
STAGE_NAMES = {"stage1": "02_stage1_faceforensics", "stage2": "03_stage2_celebdf",
               "stage3": "04_stage3_wilddeepfake", "stage4": "05_stage4_dfdc"}
#: How cached face crops are stored: png lossless, jpg ~5x smaller and lossy, raw fastest to read.
IMAGE_FORMATS = ("png", "jpg", "raw")
#: what notebook 08 can export the ensemble to (interceptor_lib.export)
EXPORT_FORMATS = ("torchscript", "onnx")
#: `train.chunk_validation`: which parts of a chunked stage validate (see TrainParams)
CHUNK_VALIDATION = ("every", "last")
#: Version of what the crop cache stores; part of its key, so a change never reuses old crops.
CACHE_FORMAT = 1


@dataclass
class PreprocessParams:
    """Preprocessing parameters (the `preprocess` section of a params file)."""

    frames_per_video: int = 32       # evenly spaced frames per video for frame models (DeepfakeBench: 32)
    clips_per_video: int = 4         # clips of consecutive frames for the temporal / audio-visual models
    clip_len: int = 8                # frames per clip
    face_size: int = 224             # crop side in pixels after resizing
    margin: float = 1.3              # crop side = 1.3 x the detected box (FaceForensics++ / DeepfakeBench)
    detector: str = "haar"           # 'haar' (OpenCV, offline), 'yunet' (needs detector_model), or the
                                     # optional packages 'mtcnn' (facenet-pytorch) / 'mediapipe' (BlazeFace)
    detector_model: str | None = None  # path of a detector model file (YuNet ONNX)
    detect_max_side: int = 640       # frames are downscaled to this longer side for detection only
    # How boxes are found: "track" follows one face, searching near its previous box (a full-frame
    # search every full_detect_every probed frames, and where the nearby search fails), and fakes take
    # their original's boxes by timestamp; "detect" searches every probed frame in full, keeps the
    # largest face of each, and reuses an original's boxes only for a fake of the same frame count.
    boxes: str = "track"
    full_detect_every: int = 16
    min_face_rate: float = 0.5       # a video with faces in fewer sampled frames is skipped ('no_face')
    reuse_original_boxes: bool = True  # fakes use the boxes found on their original video
    audio_sample_rate: int = 16000   # mono audio for the audio-visual model
    audio_window_s: float = 1.0      # audio window centred on each clip
    image_format: str = "png"        # png: lossless; jpg: ~5x smaller, lossy; raw: fastest to read, largest
    jpeg_quality: int = 95
    workers: int = 2                 # processes for decoding + detection
    max_failure_rate: float = 0.2    # stop when more than this share of videos is skipped
    cache_dir: str = "{output_dir}/cache"

    # Fields that change what is stored; the others (workers, ceiling, location) do not.
    KEY_FIELDS = ("frames_per_video", "clips_per_video", "clip_len", "face_size", "margin", "detector",
                  "detector_model", "detect_max_side", "boxes", "full_detect_every", "min_face_rate",
                  "reuse_original_boxes",
                  "audio_sample_rate", "audio_window_s", "image_format", "jpeg_quality")

    def cache_key(self) -> str:
        d = {k: getattr(self, k) for k in self.KEY_FIELDS}
        d["format"] = CACHE_FORMAT
        if self.detector_model and Path(self.detector_model).is_file():
            d["detector_model"] = hashlib.sha256(Path(self.detector_model).read_bytes()).hexdigest()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class DemoDataParams:
    """The synthetic corpus (`python -m interceptor_lib make-demo-data`)."""

    generate: bool = False           # make the corpus before indexing (demo / smoke profiles)
    out: str = "{output_dir}/demo_data"
    scale: str = "small"             # tiny (tests) | small (demo, < 1 min) | medium
    seed: int = 0
    artifact_strength: float = 1.0   # 1.0 = the default difficulty; 0 = fakes without artifacts


@dataclass
class DatasetParams:
    """Where one dataset lives and the options its indexer takes (see `interceptor_lib.data.indexers`)."""

    root: str
    enabled: bool = True
    options: dict[str, typing.Any] = field(default_factory=dict)


@dataclass
class InspectionParams:
    """Notebook 01."""

    reference_chunk_order: list[int] = field(default_factory=lambda: [9, 8, 3, 5, 7, 2, 6, 4, 1, 0])  # the reference design's order
    grid_faces: int = 16             # faces per sample grid
    stats_sample: int = 0            # videos per dataset for the per-video statistics (0 = all)


@dataclass
class SelfBlendParams:
    """`train.pseudo_fakes` (data.pseudo_fakes): the transforms of a self-blended pseudo-fake and their
    ranges (fractions are of the crop's side; where the face lies in the crop comes from
    preprocess.margin). A stage uses them when its `pseudo_fakes` is not off."""

    # the face ellipse's semi-axes as fractions of the face box's half-side: from the inner face a swap
    # replaces (brows to chin, cheek to cheek) to the whole landmark hull, since how much of the box
    # the face fills differs between detectors
    axes: list[float] = field(default_factory=lambda: [0.5, 0.95])
    aspect: float = 1.25             # the ellipse's height / width: a face is taller than wide
    centre_jitter: float = 0.03      # the ellipse's centre moves this much: masks that are not all centred
    elastic_alpha: list[float] = field(default_factory=lambda: [0.02, 0.06])  # a smooth field moves the edge this much: a wavy outline
    blur_sigma: list[float] = field(default_factory=lambda: [0.01, 0.04])  # soft to sharp blending boundaries
    # the blend ratio, drawn from these (SBI's: a full blend half the time, partial otherwise)
    ratios: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    rgb_shift: int = 20              # per-channel shift in grey levels: the colour mismatch of a swapped face
    saturation: float = 0.1          # saturation change, a fraction (no hue turn: skin colours no swap produces)
    contrast: float = 0.1            # contrast and brightness changes of the copy, as fractions
    brightness: float = 0.1
    # frequency mismatch, one of the two on every copy as in SBI: resampled through a smaller size
    # (SBI's factors 2 to 4; it also smooths away the frame's noise, as a generated face is) ...
    p_downscale: float = 0.5
    downscale: list[float] = field(default_factory=lambda: [0.25, 0.5])
    p_sharpen: float = 0.5           # ... or sharpened
    sharpen: list[float] = field(default_factory=lambda: [0.2, 0.5])  # the sharpen's strength (SBI's alpha)
    # the copy's grain: noise added (a generated face grainier than the camera's frame; the downscale
    # above gives the smoother one)
    p_noise: float = 0.3
    noise_sigma: list[float] = field(default_factory=lambda: [2.0, 8.0])  # grey levels
    # a brightness ramp across the copy on p_shading of them, up to `shading` either side: light from
    # another side than the head's
    p_shading: float = 0.5
    shading: float = 0.2
    shift: float = 0.03              # the copy's translation: the misalignment of a swapped face
    scale: list[float] = field(default_factory=lambda: [0.95, 1.05])  # and its resize

    def problems(self) -> list[str]:
        """What is out of range, one line per setting ([] when every setting can work)."""
        def rng_ok(r, lo, hi):
            return len(r) == 2 and lo <= r[0] <= r[1] <= hi
        out = []
        for name, r, lo, hi in (("axes", self.axes, 0.1, 2.0), ("elastic_alpha", self.elastic_alpha, 0, 0.5),
                                ("blur_sigma", self.blur_sigma, 0, 0.5), ("downscale", self.downscale, 0.05, 1.0),
                                ("scale", self.scale, 0.5, 2.0), ("noise_sigma", self.noise_sigma, 0, 64),
                                ("sharpen", self.sharpen, 0, 1)):
            if not rng_ok(r, lo, hi):
                out.append(f"{name} {r} is not [low, high] within [{lo}, {hi}]")
        if not self.ratios or not all(0 < r <= 1 for r in self.ratios):
            out.append(f"ratios {self.ratios} must be in (0, 1]")
        if not 0.5 <= self.aspect <= 2.0:
            out.append(f"aspect {self.aspect} must be in [0.5, 2]")
        for name in ("centre_jitter", "saturation", "contrast", "brightness", "shading", "shift"):
            if not 0 <= getattr(self, name) <= 0.5:
                out.append(f"{name} {getattr(self, name)} must be in [0, 0.5]")
        for name in ("p_downscale", "p_sharpen", "p_noise", "p_shading"):
            if not 0 <= getattr(self, name) <= 1:
                out.append(f"{name} {getattr(self, name)} must be a probability")
        if self.p_downscale + self.p_sharpen > 1:
            out.append("p_downscale + p_sharpen must be <= 1 (one frequency change at most)")
        if not 0 <= self.rgb_shift <= 128:
            out.append(f"rgb_shift {self.rgb_shift} must be in [0, 128]")
        return out

    def check(self) -> None:
        """Raise a ValueError naming every setting out of range."""
        if self.problems():
            raise ValueError("self-blend params: " + "; ".join(self.problems()))


#: `train.stages.<stage>.pseudo_fakes`: no pseudo-fakes, or pseudo-fakes instead of the dataset's fakes
#: (a number in (0, 1) mixes them: that share of the fake draws are pseudo-fakes)
PSEUDO_OFF, PSEUDO_ONLY = "off", "only"


def pseudo_fakes_mode(value) -> str | float:
    """A stage's `pseudo_fakes` as the code uses it: "off", "only" or a share in (0, 1). YAML reads a
    bare `off` as false, and 0 means none: both are "off"; 1 is "only". Raises ValueError otherwise."""
    if value is None or value is False or value == 0 or value == PSEUDO_OFF:
        return PSEUDO_OFF
    if value == PSEUDO_ONLY or (not isinstance(value, (bool, str)) and value == 1):
        return PSEUDO_ONLY
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
        return float(value)
    raise ValueError(f"pseudo_fakes is off, only, or the share of the fake draws in (0, 1) that are pseudo-fakes; "
                     f"got {value!r}")


def pseudo_share(mode) -> float:
    """The share of a stage's fake draws that are pseudo-fakes for its (checked) `pseudo_fakes`:
    0 when off, 1 with only."""
    return 0.0 if mode in (PSEUDO_OFF, None) else 1.0 if mode == PSEUDO_ONLY else float(mode)


@dataclass
class StageParams:
    """One progressive-training stage (the `train.stages.<name>` entries)."""

    dataset: str                     # ffpp | celebdf | wilddeepfake | dfdc
    epochs: int = 1                  # for dfdc: epochs per chunk
    lr: float = 1e-4                 # new layers; pretrained layers get lr * train.pretrained_lr_ratio
    loss: str = "ce"                 # ce | weighted_ce | focal
    # Draw real and fake videos equally often (default). The class weights of weighted_ce and focal
    # follow the draws: 1 : 1 on balanced draws, inverse class frequency with balanced: false (natural
    # draws, the imbalance countered by the loss alone). Replay needs balanced draws.
    balanced: bool = True
    chunk_order: list[int] | None = None  # dfdc: chunks in training order (None: most to least balanced)
    samples_per_epoch: int | None = None  # this stage's balanced draws per epoch (None: train.samples_per_epoch)
    # Share of each epoch's draws taken from the training videos of the earlier stages (and of the
    # DFDC chunks already trained), balanced real / fake; 0 = fine-tune on this stage's data alone.
    # Rehearsal against forgetting: without it, each stage overwrites what the earlier ones learned.
    replay: float = 0.0
    # Self-blended pseudo-fakes of this stage's real training faces (train.pseudo_fakes, data.pseudo_fakes):
    # off; only (instead of the dataset's fakes: trained and selected without a single fake); or a
    # share in (0, 1) of the fake draws, the rest the dataset's fakes
    pseudo_fakes: typing.Any = PSEUDO_OFF


@dataclass
class AugmentParams:
    """Training augmentation (data.datasets.build_transform): probabilities per item. The defaults
    are the usual robustness augmentations for real footage; they re-compress, blur and downscale
    faces, so they also wash out compression / resolution artifacts of the same size."""

    p_jpeg: float = 0.3
    jpeg_quality: list[int] = field(default_factory=lambda: [60, 95])
    p_blur: float = 0.2
    p_downscale: float = 0.3
    p_color: float = 0.5


@dataclass
class PretextParams:
    """`train.pretext` (training.pretext): a backbone pretrained on a degradation pretext with the real
    training faces, for profiles without ImageNet weights. 0 steps = off."""

    steps: int = 0                  # optimizer steps; > 0: every model starts from this backbone (train.weights)
    batch_size: int = 32
    lr: float = 3.0e-3              # peak of a one-cycle schedule (AdamW, weight decay 1e-4)
    local: float = 0.5              # share of degraded crops where only a soft ellipse over the face changes
    out: str = "{output_dir}/pretext/backbone.safetensors"


@dataclass
class TrainParams:
    """Progressive training (notebooks 02-05), shared by every model and stage."""

    models: list[str] = field(default_factory=lambda: ["ll", "bg", "av", "cm", "rr", "tm"])
    backbone: str = "efficientnet_b4"   # timm name; the demo uses the tiny test_efficientnet
    pretrained: bool = True             # ImageNet weights from `weights` or the local cache, never downloaded
    weights: str | None = None          # local backbone weight file
    trainable_stages: int | None = 2    # backbone stages fine-tuned (the reference design); null = the whole backbone
    # Progressive unfreezing, per stage run: {first epoch (0-based): trainable backbone stages, null = all},
    # e.g. {0: 0, 2: 1, 4: 2} (new layers only, then + the last stage, then + the last two). null: off
    # (trainable_stages throughout). Epochs count from 0 in every stage (and every DFDC chunk).
    unfreeze_schedule: dict[int, int | None] | None = None
    batch_size: int = 16
    num_workers: int = 0
    grad_accum: int = 1
    grad_clip: float = 1.0
    warmup_frac: float = 0.1
    pretrained_lr_ratio: float = 0.1    # pretrained layers at lr x ratio (differential learning rates)
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    # Balanced draws per epoch; 0 = items_per_video x the stage's (DFDC chunk's) training videos.
    samples_per_epoch: int = 0
    # Draws per training video and epoch when samples_per_epoch is 0: a frame (image models) or a clip
    # (clip models), a fresh random one each epoch. Consecutive frames of one video are near-duplicates,
    # so an epoch of every cached frame (32 per video) costs 32x for little more; over the epochs the
    # draws still cover a video's frames.
    items_per_video: int = 1
    # Items scored per validation video after each epoch (evenly spaced frames, or clips); 0 = every
    # cached one. Selection stays on validation videos; this bounds its cost (DFDC: ~2,400 videos).
    val_items_per_video: int = 0
    amp: str = "auto"                   # auto | off | fp16 | bf16 (CUDA only)
    time_budget_h: float | None = None  # stop (resumably) before the session ends (Kaggle: 11.5 of 12 h)
    storage_budget_gb: float | None = None  # checkpoints + outputs under output_dir (Kaggle: 20)
    checkpoint_chunk_mb: float = 100
    keep_last: int = 2
    # Earlier sessions' output folders, attached read-only (Kaggle: /kaggle/input/<name>/...), newest
    # first: finished stages, interrupted stages' checkpoints and caches are found there; a single
    # folder may be given as a string. Nothing is ever written inside them.
    previous_outputs: list[str] | None = None
    # Which validation videos choose each stage's best checkpoint: "stage" = the stage's own dataset;
    # "seen" = every dataset trained so far (this stage's and the earlier stages'), so a checkpoint
    # that forgot the earlier datasets is not picked. Test videos are never used.
    select_on: str = "stage"
    # Which parts of a chunked stage (DFDC's chunks) validate after their epochs: "every" part, or only
    # the "last" one; an earlier chunk then hands its last epoch's weights to the next. With one epoch
    # per chunk there is nothing to choose between, and validating every chunk costs more than it trains.
    chunk_validation: str = "every"
    augment: AugmentParams = field(default_factory=lambda: AugmentParams())
    pseudo_fakes: SelfBlendParams = field(default_factory=lambda: SelfBlendParams())
    # ./run_all.sh runs the stage notebooks of this many models at once, sharing the CPU cores out
    # between them (the demo's tiny models on a 2-core CPU); 1 on a GPU, where one model fills it.
    parallel_models: int = 1
    # ./run_all.sh runs a stage notebook for this many models one after another in one kernel: each
    # kernel's start and imports cost seconds, which add up over 6 models x 4 stages on a small CPU
    models_per_notebook: int = 1
    # Options of every trained model's config (models.create_model), e.g. {hidden: [64], dropout: [0.3]}
    # for a head sized to a tiny backbone; {} = the registry's defaults (the reference design's 1024-512-256 head).
    model_config: dict = field(default_factory=dict)
    pretext: PretextParams = field(default_factory=lambda: PretextParams())
    stages: dict[str, StageParams] = field(default_factory=dict)


@dataclass
class PlanParams:
    """`python -m interceptor_lib plan` (interceptor_lib.pipeline.plan): throughput and size figures for planning
    the real-data chain before any work. A figure measured by a run (interceptor_lib.training.throughput, in
    output_dir or train.previous_outputs) replaces the one given here."""

    cpu_cores: int = 4               # Kaggle's 4 vCPUs: preprocessing runs at most this many workers at once
    # Per dataset [original, fake]: CPU-seconds to preprocess one video. Fakes reuse their original's
    # face boxes, so they only decode; WildDeepfake is PNG face sequences, no detection.
    cpu_s_per_video: dict[str, list[float]] = field(default_factory=lambda: {
        "ffpp": [1.0, 0.4], "celebdf": [0.6, 0.3], "wilddeepfake": [0.5, 0.5], "dfdc": [1.4, 0.8]})
    # MB of cache per video at 224 px JPEG q95 with 32 frames + 4 clips x 8 (scaled for other settings)
    cache_mb_per_video: dict[str, float] = field(default_factory=lambda: {
        "ffpp": 1.0, "celebdf": 0.8, "wilddeepfake": 0.6, "dfdc": 1.0})
    train_images_per_s: float = 120.0  # per GPU at 224 px, AMP, T4, EfficientNet-B4 fwd+bwd (50-70 at 380 px)
    eval_images_per_s: float = 360.0   # per GPU, forward only: about 3x training
    # CPU-seconds to re-encode one test video with H.264 for the robustness sweep's video compression:
    # decoding and encoding a 10 s 1080p video (DFDC's size) at x264's veryfast preset, one thread
    reencode_cpu_s_per_video: float = 10.0
    # CPU-milliseconds to make one self-blended pseudo-fake of a 224 px crop (benchmarks/
    # bench_data_loading.py part d; scaled by the face's pixels): the data loader's extra work when a
    # stage trains on pseudo-fakes, spread over train.num_workers processes
    self_blend_ms_per_image: float = 1.0
    gpus: int = 2                    # Kaggle's T4 x2, trained with DDP
    ddp_efficiency: float = 0.9      # share of N x one GPU's throughput that DDP over N GPUs keeps
    session_overhead_h: float = 0.25  # per GPU session: install, attach inputs, load models
    weekly_gpu_quota_h: float = 30.0  # Kaggle's weekly GPU quota (it floats around 30 h)
    # fp32 weights in MB per model at efficientnet_b4 (python -m interceptor_lib.models.size_report)
    model_mb: dict[str, float] = field(default_factory=lambda: {
        "ll": 98.5, "bg": 93.6, "av": 94.6, "cm": 92.8, "rr": 92.0, "tm": 95.2,
        "effnet_b4": 74.6, "xception": 83.5, "dual_stream_v3": 14.3})


@dataclass
class RobustnessParams:
    """`evaluation.robustness` (notebook 09, pipeline.robustness): the test videos under the
    DeeperForensics-1.0 perturbations (data.perturb), every model and the ensemble scored."""

    enabled: bool = True
    # the protocol's seven (data.perturb.PERTURBATIONS also offers jpeg_quality, a real JPEG re-encode)
    perturbations: list[str] = field(default_factory=lambda: [
        "saturation", "contrast", "block", "noise", "blur", "jpeg", "video_compression"])
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])  # of 1-5; level 0 (clean) is always scored
    # test videos per dataset: every real one and as many fakes (the AUC needs both), at most this
    # many in all; 0 = every test video
    videos_per_dataset: int = 0
    items_per_video: int = 4         # evenly spaced frames (image models) and clips (clip models) per video


@dataclass
class PseudoFakeComparisonParams:
    """`evaluation.pseudo_fakes` (notebook 10, pipeline.pseudo_fakes): these models trained for stage 1
    on the real faces and their self-blended pseudo-fakes only, against stage 1 on the dataset's fakes,
    both scored on every test split. [] = off (nothing trained or scored)."""

    models: list[str] = field(default_factory=list)
    items_per_video: int = 4         # evenly spaced frames (image models) and clips (clip models) per test video


@dataclass
class EvaluationParams:
    """`evaluation`: what notebooks 06 and 09 score beyond the last stage's models on clean test videos."""

    # every model's best checkpoint after each stage on every test set (eval/stage_matrix.csv):
    # what each stage gains on its dataset and forgets on the earlier ones
    stage_matrix: bool = True
    matrix_items_per_video: int = 0  # evenly spaced frames / clips per video for the matrix (0 = every cached item)
    robustness: RobustnessParams = field(default_factory=RobustnessParams)
    pseudo_fakes: PseudoFakeComparisonParams = field(default_factory=PseudoFakeComparisonParams)


@dataclass
class ExportParams:
    """`export` (notebook 08): the formats the fitted ensemble is exported to, each checked against
    the eager model; [] = none."""

    formats: list[str] = field(default_factory=lambda: list(EXPORT_FORMATS))


@dataclass
class Params:
    profile: str
    description: str = ""
    seed: int = 0
    device: str = "auto"             # auto | cpu | cuda
    output_dir: str = "{repo}/outputs/{profile}"
    demo_data: DemoDataParams = field(default_factory=DemoDataParams)
    datasets: dict[str, DatasetParams] = field(default_factory=dict)
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    inspection: InspectionParams = field(default_factory=InspectionParams)
    train: TrainParams = field(default_factory=TrainParams)
    plan: PlanParams = field(default_factory=PlanParams)
    evaluation: EvaluationParams = field(default_factory=EvaluationParams)
    export: ExportParams = field(default_factory=ExportParams)

    @property
    def out(self) -> Path:
        return Path(self.output_dir)

    def enabled_datasets(self) -> dict[str, DatasetParams]:
        return {k: v for k, v in self.datasets.items() if v.enabled}
