"""Resolve "auto" device and dtype settings to torch objects."""

from __future__ import annotations

from typing import Any


def gpu_available() -> bool:
    """A CUDA GPU torch can use (False without torch installed; torch is only imported when present)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: Any, gpu_default: str) -> Any:
    """auto -> gpu_default on CUDA, float32 on CPU (half precision is slow or unsupported there)."""
    import torch

    if dtype == "auto":
        dtype = gpu_default if device.type == "cuda" else "float32"
    return getattr(torch, dtype)
