"""The plan's records: a part of a dataset, a step of the chain, a piece of a step in one session,
a session, the whole plan; the size and time constants they are counted with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SPLITS = ("train", "val", "test")
KINDS = ("original", "fake")
STATE_FACTOR = 3.0     # a full training state: fp32 weights + AdamW's two moments
EXPORT_FACTOR = 0.5    # the fp16 export of a finished stage's best weights
EVAL_GB = 0.5          # what the evaluate step writes (tables, predictions, figures)
MIN_PIECE_H = 0.05     # no training step starts in a session's last 3 minutes: the resume costs more
REFERENCE_FACE = 224   # face size at which the params figures hold
REFERENCE_FRAMES = 64  # frames stored per video behind plan.cache_mb_per_video (32 + 4 clips x 8)
# Cache size against JPEG q95 (the figures'): PNG is ~5x larger (README), raw is 3 bytes a pixel
# (~9x at 224 px).
FORMAT_FACTOR = {"jpg": 1.0, "png": 5.0, "raw": 9.2}
EPS = 1e-9

# Published sizes of each dataset: its entry in data.registry.


@dataclass
class Part:
    """The videos of one dataset, or of one DFDC chunk, counted per (split, "original" | "fake")."""

    dataset: str
    chunk: int | None
    counts: dict[tuple[str, str], int]

    def n(self, split: str | None = None, kind: str | None = None) -> int:
        return sum(v for (s, k), v in self.counts.items() if split in (None, s) and kind in (None, k))

    @property
    def label(self) -> str:
        return self.dataset if self.chunk is None else f"{self.dataset} chunk {self.chunk}"


@dataclass
class Step:
    """One unit of the chain: preprocess a dataset (or DFDC chunk), train a (model, stage[, chunk]),
    or evaluate. `items`: videos preprocessed, items drawn for training over all epochs, or videos x
    models scored; `images`: frames stored (preprocess) or through the network (training with its
    validation, evaluation); `gb`: what it leaves in its session's output; `work_gb`: what it holds
    besides while it runs (training states)."""

    name: str
    kind: str                 # preprocess | train | evaluate
    items: int
    images: int
    cpu_h: float = 0.0
    gpu_h: float = 0.0
    gb: float = 0.0
    work_gb: float = 0.0
    splittable: bool = True
    keep: tuple = ()          # (model, stage, part): its output among a session's kept outputs
    releases: bool = False    # the last DFDC chunk: its model's stage 4 is finished, the chunks' weights go

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "items": self.items, "images": self.images,
                "cpu_h": round(self.cpu_h, 4), "gpu_h": round(self.gpu_h, 4), "gb": round(self.gb, 4)}


@dataclass
class Piece:
    """A step, or the part of it, that runs in one session."""

    label: str
    cpu_h: float
    gpu_h: float
    gb: float


@dataclass
class Session:
    """One Kaggle session: a cache (CPU) session's preprocessing, or a GPU session's training and
    evaluation after its fixed overhead. `peak_gb`: the most its output folder holds at once."""

    kind: str                 # cpu | gpu
    overhead_h: float = 0.0
    pieces: list[Piece] = field(default_factory=list)
    peak_gb: float = 0.0
    kept: dict = field(default_factory=dict)  # outputs of finished steps held in this session: key -> GB

    @property
    def gpu_h(self) -> float:
        return sum(p.gpu_h for p in self.pieces)

    @property
    def cpu_h(self) -> float:
        """CPU-session work; for a GPU session its overhead (non-GPU time)."""
        return self.overhead_h + sum(p.cpu_h for p in self.pieces)

    @property
    def hours(self) -> float:
        return self.gpu_h + self.cpu_h

    def to_dict(self) -> dict:
        return {"kind": self.kind, "steps": [p.label for p in self.pieces], "gpu_h": round(self.gpu_h, 4),
                "cpu_h": round(self.cpu_h, 4), "peak_gb": round(self.peak_gb, 4), "hours": round(self.hours, 4)}


@dataclass
class Plan:
    """The chain's steps, their sessions and the problems keeping it from fitting. `total_gpu_h` is the
    GPU work of the steps, `total_cpu_h` the preprocessing of the cache sessions; the GPU sessions'
    overheads count in their hours, in `gpu_share` and against the weekly quota (Kaggle charges a
    session's wall hours), not in these totals."""

    fits: bool
    sessions: list[Session]
    steps: list[Step]
    figures: dict[str, dict]
    problems: list[str]
    profile: str = ""
    sizes: str = "published"
    time_budget_h: float = math.inf
    storage_budget_gb: float = math.inf
    gpus: int = 1

    def _of(self, kind: str) -> list[Session]:
        return [s for s in self.sessions if s.kind == kind]

    @property
    def total_gpu_h(self) -> float:
        return sum(s.gpu_h for s in self.steps)

    @property
    def total_cpu_h(self) -> float:
        return sum(s.cpu_h for s in self.steps)

    @property
    def gpu_session_h(self) -> float:
        """What the GPU sessions charge to the quota: their wall hours, overheads included."""
        return sum(s.hours for s in self._of("gpu"))

    @property
    def gpu_share(self) -> float:
        return self.total_gpu_h / self.gpu_session_h if self.gpu_session_h else 0.0

    def to_dict(self) -> dict:
        return {"fits": self.fits, "sessions": [s.to_dict() for s in self.sessions],
                "steps": [s.to_dict() for s in self.steps], "total_gpu_h": round(self.total_gpu_h, 4),
                "total_cpu_h": round(self.total_cpu_h, 4), "gpu_sessions": len(self._of("gpu")),
                "cpu_sessions": len(self._of("cpu")), "gpu_share": round(self.gpu_share, 4),
                "figures": self.figures, "problems": list(self.problems)}


class Figures:
    """Throughput figures: a run's measurement where one exists, else the params figure; remembers
    which were used and where they came from."""

    def __init__(self, measured_values: dict[str, float]):
        self.measured = measured_values
        self.used: dict[str, dict] = {}

    def get(self, key: str, from_params: float) -> float:
        if key in self.measured:
            value, source = self.measured[key], "measured"
        else:
            value, source = from_params, "params"
        self.used[key] = {"value": round(value, 6), "source": source}
        return value
