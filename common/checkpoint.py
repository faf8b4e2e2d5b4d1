"""Weights on disk without pickles: safetensors, written atomically.

``load_weights`` also reads ``.pt``/``.pth`` files (torchvision's cache, say), but only through
``torch.load(weights_only=True)``, which refuses any file that would execute code when unpickled.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class UnsafeCheckpointError(RuntimeError):
    """A weights file that is not plain tensors (e.g. a pickle carrying code)."""


def save_state_dict(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    # safetensors refuses shared storage (tied weights); clone makes each tensor own its memory.
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    return load_weights(path)


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as e:  # a pickle renamed .safetensors lands here too
            raise UnsafeCheckpointError(f"{path} is not a valid safetensors file: {e}") from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise UnsafeCheckpointError(
            f"refused to load {path}: it is not a plain tensor file (weights_only=True rejected it: "
            f"{type(e).__name__}). Checkpoints here are safetensors; nothing pickled is executed.") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise UnsafeCheckpointError(f"{path} does not hold a flat dict of tensors")
    return obj
