"""Crash-safe, chunked checkpoints without pickle.

A checkpoint is a folder:

    checkpoint.json                      the state's structure (JSON) with tensor placeholders, the
                                         list of chunk files with their sha256 and size, metadata
    tensors-00001-of-0000N.safetensors   every tensor of the state (model, optimizer moments, RNG
                                         states, ...), split into chunks of about `max_chunk_mb`
                                         (huggingface_hub's sharding) so that each file stays under
                                         upload and dataset-file limits

The folder is written under a temporary name, every file fsynced, then renamed into place: a crash
(or a Kaggle session killed without warning) leaves the previous checkpoint intact and at worst a
`*.tmp-*` folder that the next save removes. Loading verifies every checksum first and names the
bad or missing chunk. Nothing is unpickled, so a checkpoint from elsewhere cannot run code;
legacy pickled `.pt` files load only through `load_pickled` with `weights_only=True` unless the
caller says it trusts the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import load_file, save_file

from interceptor_lib import __version__
from interceptor_lib.errors import InterceptorError

INDEX = "checkpoint.json"
FORMAT = 1


class CheckpointError(InterceptorError):
    """A checkpoint folder is incomplete or corrupt; the message names the file."""


def save_checkpoint(path: str | Path, state: dict, max_chunk_mb: float = 100, metadata: dict | None = None) -> Path:
    """Write `state` (nested dicts / lists / tuples of tensors, numpy arrays, numbers, strings,
    None) as a checkpoint folder at `path`, atomically. Returns the path."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        files = {}
        if tensors:
            split = split_torch_state_dict_into_shards(
                tensors, filename_pattern="tensors{suffix}.safetensors", max_shard_size=int(max_chunk_mb * 2**20))
            # Each written chunk is hashed (from the page cache, faster than serialising to memory
            # first) and fsynced on a worker thread while the next chunk is written: hashlib and
            # fsync release the GIL, so the checksums cost little more than the last chunk's.
            with ThreadPoolExecutor(_hash_threads()) as pool:
                pending = {}
                for fname, keys in split.filename_to_tensors.items():
                    fpath = tmp / fname
                    save_file({k: tensors[k] for k in keys}, str(fpath))
                    pending[fname] = (pool.submit(_sha256_and_fsync, fpath), len(keys))
                for fname, (job, n) in pending.items():
                    files[fname] = {"sha256": job.result(), "bytes": (tmp / fname).stat().st_size, "tensors": n}
        index = {"format": FORMAT, "library_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "metadata": metadata or {}, "files": files, "state": skeleton}
        (tmp / INDEX).write_text(json.dumps(index, indent=1))
        _fsync(tmp / INDEX)
        _fsync(tmp)
        old = path.with_name(f"{path.name}.old-{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync(path.parent)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def verify_checkpoint(path: str | Path) -> dict:
    """Check that every chunk listed in the index exists with its size and sha256. Returns the index;
    raises CheckpointError naming the first bad or missing file."""
    path = Path(path)
    index = _read_index(path)
    with ThreadPoolExecutor(_hash_threads()) as pool:
        _check_hashes(path, index, _hash_jobs(path, index, pool))
    return index


def _hash_jobs(path: Path, index: dict, pool: ThreadPoolExecutor) -> dict:
    """Start hashing every chunk of `index` whose size is right (a missing or wrong-sized chunk
    raises at once, naming it)."""
    jobs = {}
    for fname, info in index["files"].items():
        f = path / fname
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path}: chunk {fname} is missing")
        _check_chunk(path, fname, info, f.stat().st_size, info["sha256"])
        jobs[fname] = pool.submit(file_sha256, f)
    return jobs


def _check_hashes(path: Path, index: dict, jobs: dict) -> None:
    for fname, info in index["files"].items():
        _check_chunk(path, fname, info, info["bytes"], jobs[fname].result())


def _read_index(path: Path) -> dict:
    index_path = path / INDEX
    if not path.exists():
        raise CheckpointError(f"{path} does not exist (expected a checkpoint folder holding {INDEX} and its chunks)")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file; a checkpoint is a folder holding {INDEX} and its chunks")
    if not index_path.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint: {INDEX} is missing "
                              "(an interrupted save leaves no index; use the previous checkpoint)")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{index_path} is corrupt: {e}") from e
    if index.get("format") != FORMAT:
        raise CheckpointError(f"{index_path}: unknown checkpoint format {index.get('format')!r} (expected {FORMAT})")
    return index


def _check_chunk(path: Path, fname: str, info: dict, size: int, sha256: str) -> None:
    if size != info["bytes"]:
        raise CheckpointError(f"checkpoint {path}: chunk {fname} has {size} bytes, expected {info['bytes']} "
                              "(truncated copy?)")
    if sha256 != info["sha256"]:
        raise CheckpointError(f"checkpoint {path}: chunk {fname} fails its sha256 check (corrupt)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", verify: bool = True) -> dict:
    """Read a checkpoint written by `save_checkpoint`, verifying every chunk's size and sha256
    first by default (`verify_checkpoint`)."""
    path = Path(path)
    index = _read_index(path)
    tensors: dict[str, torch.Tensor] = {}
    with ThreadPoolExecutor(_hash_threads()) as pool:
        # the checksums are computed on worker threads while the chunks load; nothing loaded is
        # returned unless every chunk passed
        jobs = _hash_jobs(path, index, pool) if verify else None
        try:
            for fname in index["files"]:
                tensors.update(load_file(str(path / fname), device=str(map_location)))
        except Exception:
            if jobs is not None:
                _check_hashes(path, index, jobs)  # a corrupt chunk: name it rather than the parser's error
            raise
        if jobs is not None:
            _check_hashes(path, index, jobs)
    return _unflatten(index["state"], tensors)


def checkpoint_bytes(path: str | Path) -> int:
    """Bytes on disk of a checkpoint folder."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def export_weights(state_dict: dict[str, torch.Tensor], path: str | Path, dtype=torch.float16,
                   max_chunk_mb: float = 100, metadata: dict | None = None) -> Path:
    """A weights-only checkpoint for sharing: floating tensors cast to `dtype` (fp16 halves the size)."""
    cast = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state_dict.items()}
    return save_checkpoint(path, {"model": cast}, max_chunk_mb, {"kind": "weights", "dtype": str(dtype),
                                                                  **(metadata or {})})


def load_pickled(path: str | Path, trusted: bool = False, map_location="cpu"):
    """Load a legacy pickled checkpoint (`torch.save`). Unpickling can run arbitrary code, so only
    tensors and plain containers are accepted (`weights_only=True`) unless `trusted=True`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as e:  # torch raises UnpicklingError or RuntimeError depending on the content
        if trusted:
            raise
        raise CheckpointError(f"{path} holds more than weights and was refused (unpickling can run code). "
                              "If you trust its origin, load it with trusted=True.") from e


# --- (un)flattening: JSON structure + a flat dict of tensors -------------------------------------

def _flatten(obj, key: str, tensors: dict, _storages: set | None = None):
    if _storages is None:
        _storages = set()
    if isinstance(obj, torch.Tensor):
        name = key or "tensor"
        t = obj.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in _storages and t.numel():  # tied weights / views: safetensors stores each storage once
            t = t.clone()
        _storages.add(t.untyped_storage().data_ptr())
        tensors[name] = t
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        name = key or "array"
        tensors[name] = torch.from_numpy(np.ascontiguousarray(obj).astype(np.int64 if obj.dtype.kind in "ui" else obj.dtype))
        return {"__ndarray__": name, "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, (str, int))]
        if bad:
            raise TypeError(f"checkpoint keys must be str or int, got {bad[0]!r} at {key or '<root>'}")
        return {"__dict__": [[k, _flatten(v, f"{key}/{k}" if key else str(k), tensors, _storages)]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{key}/{i}", tensors, _storages) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {key or '<root>'} in a checkpoint")


def _unflatten(node, tensors: dict):
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__ndarray__" in node:
            return tensors[node["__ndarray__"]].numpy().astype(node["dtype"])
        if "__tuple__" in node:
            return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in node["__dict__"]}
    if isinstance(node, list):
        return [_unflatten(v, tensors) for v in node]
    return node


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes, read in 4 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_and_fsync(path: Path) -> str:
    digest = file_sha256(path)
    _fsync(path)
    return digest


def _hash_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
