"""Where a profile's run writes things: one place, so notebooks and the CLI agree.

    <output_dir>/demo_data/        generated synthetic corpus (demo / smoke)
    <output_dir>/index/<ds>.csv    index tables (+ all.csv)
    <cache_dir>/<key>/             face-crop cache (entries/, manifest.csv, failures.csv)
    <output_dir>/reports/          tables, figures and JSON summaries the notebooks record
    <output_dir>/notebooks/        notebooks executed by run_all.sh
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    root: Path
    cache_root: Path

    @classmethod
    def of(cls, params) -> "RunPaths":
        return cls(root=Path(params.output_dir), cache_root=Path(params.preprocess.cache_dir))

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def index_file(self, dataset: str = "all") -> Path:
        return self.index_dir / f"{dataset}.csv"

    def ensure(self) -> "RunPaths":
        for p in (self.root, self.index_dir, self.reports, self.cache_root):
            p.mkdir(parents=True, exist_ok=True)
        return self
