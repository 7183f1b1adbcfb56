"""The device a run uses, and what runs on it: one resolution of `auto` / `cpu` / `cuda` for
training (params `device`) and inference (`--device`), the autocast dtype of mixed precision on that
device, and a batch moved there.
"""

from __future__ import annotations

import warnings

import torch

from interceptor_lib.errors import InterceptorError


def resolve_device(name: str | torch.device, option: str = "device:") -> torch.device:
    """`name` as a torch.device: "auto" is the GPU when one is visible, else the CPU. Raises an
    InterceptorError for a name torch does not know, or for cuda when no GPU is visible, telling to
    set `option` (how the caller's user sets the device: "device:" in params, "--device" on the
    command line) to auto or cpu."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InterceptorError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InterceptorError(f"device {name} was asked for but no GPU is visible; use {option} auto or cpu")
    return dev


def autocast_dtype(amp: str, device: torch.device):
    """The autocast dtype for `amp` on `device` (None: full precision). `torch.cuda.is_bf16_supported()`
    is also true where bf16 is only emulated (T4, P100: compute capability below 8.0) and slow, so
    "auto" asks the device's capability: bf16 from 8.0 (Ampere) on, fp16 (with a GradScaler) below."""
    if device.type != "cuda" or amp == "off":
        return None
    major, minor = torch.cuda.get_device_capability(device)
    native_bf16 = (major, minor) >= (8, 0)
    if amp == "bf16":
        if not native_bf16:
            warnings.warn(f"amp: bf16 on a GPU of compute capability {major}.{minor} (below 8.0) is emulated "
                          f"and slow there; amp: auto (or fp16) trains in fp16 on this GPU", stacklevel=2)
        return torch.bfloat16
    if amp == "auto" and native_bf16:
        return torch.bfloat16
    return torch.float16


def batch_to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    """`batch` with its tensors on `device`; images channels-last on CUDA when `channels_last`."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and device.type == "cuda" and v.dim() == 4 and k == "image":
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def loader_options(device: torch.device, num_workers: int) -> dict:
    """DataLoader options for feeding `device`: on CUDA pinned memory, and deeper prefetching when
    workers load; neither changes what is drawn."""
    cuda = device.type == "cuda"
    return {"pin_memory": cuda, **({"prefetch_factor": 4} if cuda and num_workers > 0 else {})}
