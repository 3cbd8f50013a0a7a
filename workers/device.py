"""The compute device: which one to run on, and its memory when a batch does not fit."""

from __future__ import annotations

import gc
import sys

from workers.errors import DeviceError


def resolve_device(requested: str) -> str:
    """The torch device to run on.

    Args:
        requested: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".

    Raises:
        DeviceError: CUDA was asked for explicitly and is not available (no silent fallback).
    """
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise DeviceError(
            f"--device {requested} was requested but CUDA is not available here; use --device cpu or auto")
    index = int(requested.split(":", 1)[1]) if ":" in requested else 0
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"--device {requested} was requested but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    return f"cuda:{index}"


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device out-of-memory error (torch's, or a CUDA message)."""
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower()


def release_device_memory() -> None:
    """Collect what only cycles still hold, and give the device's cached blocks back."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
