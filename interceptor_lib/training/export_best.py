"""The fp16 export of a finished stage's best checkpoint: its weights alone in half precision
(`<run_dir>/best-fp16/`, half the size), for sharing and inference; done.json records it.
"""

from __future__ import annotations

from pathlib import Path

from interceptor_lib.training.checkpoint import checkpoint_bytes, export_weights, load_checkpoint

EXPORT = "best-fp16"  # the stage's fp16 weights-only export, next to done.json


def export_best(best: Path, rdir: Path, metadata: dict | None = None, max_chunk_mb: float = 100) -> dict:
    """Write `rdir/best-fp16/`: the weights of checkpoint `best` in fp16, weights only (export_weights).
    Returns what done.json records of it: path, bytes, dtype, source."""
    state = load_checkpoint(best)
    config = state.get("config", {})
    path = export_weights(state["model"], Path(rdir) / EXPORT, max_chunk_mb=max_chunk_mb, metadata={
        "source": str(best), "model_config": config.get("model", {}), **(metadata or {})})
    return {"path": str(path), "bytes": checkpoint_bytes(path), "dtype": "float16", "source": str(best)}
