"""One device choice for torch and JAX alike.

    dev = resolve_device("auto")      # DeviceChoice(platform="cuda", torch_device=cuda:0, jax_platform="gpu", ...)
    model.to(dev.torch_device); jax.device_put(x, dev.jax_device)

Why one choice: the chapters hand arrays between torch and JAX by DLPack (common.bridge), which is
zero-copy only when both live on the same device. "auto" picks CUDA when torch sees a GPU, and JAX
must follow. A CPU-only jaxlib beside a CUDA torch is the usual trap (``pip install -e .`` alone
installs it): JAX work then runs on the CPU and every handover copies through host memory. An
explicit ``cuda`` request raises in that case; ``auto`` warns once and carries on with JAX on the CPU.

The selection itself (``resolve_device`` with ``torch_cuda_count`` / ``jax_platforms`` given) is
pure, so it is tested on machines without a GPU.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Sequence

CUDA_FIX = "pip install -e .[cuda]   (or .[cuda12] for drivers older than CUDA 13)"

_warned: set[str] = set()


@dataclasses.dataclass(frozen=True)
class DeviceChoice:
    platform: str          # "cuda" or "cpu": where torch runs
    index: int             # CUDA device index (0 on the CPU)
    jax_platform: str      # "gpu" or "cpu": where JAX runs (the CPU only when JAX has no GPU backend)

    @property
    def torch_device(self):
        import torch
        return torch.device("cuda", self.index) if self.platform == "cuda" else torch.device("cpu")

    @property
    def jax_device(self):
        """The jax.Device matching ``torch_device`` (looked up lazily: JAX starts its backends then)."""
        import jax
        devices = jax.local_devices(backend=self.jax_platform)
        return devices[self.index] if self.index < len(devices) else devices[0]

    @property
    def jax_matches_torch(self) -> bool:
        return (self.platform == "cuda") == (self.jax_platform == "gpu")


def _torch_cuda_count() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _jax_platforms() -> list[str]:
    """Backends JAX can run on here ("cpu", "gpu", ...); asking for one that is absent raises."""
    import jax
    found = []
    for platform in ("gpu", "cpu"):
        try:
            if jax.devices(platform):
                found.append(platform)
        except RuntimeError:
            pass
    return found


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve_device(name: str = "auto", *, torch_cuda_count: int | None = None,
                   jax_platforms: Sequence[str] | None = None, local_rank: int | None = None,
                   for_jax: bool = True) -> DeviceChoice:
    """The device for torch and JAX from ``name``: "auto", "cpu", "cuda" / "gpu", or "cuda:<i>".

    ``torch_cuda_count`` (GPUs torch sees) and ``jax_platforms`` (JAX backends present) are looked
    up when None; tests pass them. ``local_rank`` (default: torchrun's LOCAL_RANK) picks the GPU of
    this process under "auto" and "cuda", as common.trainer does. ``for_jax=False`` (torch-only
    work, common.trainer) neither imports JAX nor asks anything of it: initialising JAX's GPU
    backend would reserve GPU memory a torch-only run needs.
    """
    if torch_cuda_count is None:
        torch_cuda_count = _torch_cuda_count()
    if not for_jax:
        jax_platforms = ("gpu",) if torch_cuda_count else ("cpu",)   # not asked: nothing to warn about
    elif jax_platforms is None:
        jax_platforms = _jax_platforms()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    jax_has_gpu = "gpu" in jax_platforms or "cuda" in jax_platforms

    kind, idx = parse_device(name)
    if kind == "cpu":
        return DeviceChoice("cpu", 0, "cpu")
    if kind == "auto":
        if torch_cuda_count == 0:
            if jax_has_gpu:
                _warn_once("JAX has a GPU backend but torch sees no CUDA GPU: both run on the CPU "
                           "(install a CUDA build of torch to use the GPU).")
            return DeviceChoice("cpu", 0, "cpu")
        index = local_rank if local_rank < torch_cuda_count else 0
        if not jax_has_gpu:
            _warn_once(f"torch sees {torch_cuda_count} CUDA GPU(s) but JAX has no GPU backend (a CPU-only "
                       f"jaxlib): JAX work runs on the CPU and every torch<->JAX handover copies. "
                       f"Fix: {CUDA_FIX}")
            return DeviceChoice("cuda", index, "cpu")
        return DeviceChoice("cuda", index, "gpu")
    if kind == "cuda":
        index = idx if idx is not None else (local_rank if local_rank < max(torch_cuda_count, 1) else 0)
        if torch_cuda_count == 0:
            raise RuntimeError(f"device '{name}' asked for, but torch sees no CUDA GPU here")
        if index >= torch_cuda_count:
            raise RuntimeError(f"device '{name}' asked for, but torch sees only {torch_cuda_count} CUDA GPU(s)")
        if not jax_has_gpu:
            raise RuntimeError(f"device '{name}' asked for: torch has CUDA but JAX has no GPU backend (a CPU-only "
                               f"jaxlib is installed). Fix: {CUDA_FIX}")
        return DeviceChoice("cuda", index, "gpu")
    raise AssertionError(kind)   # parse_device knows no other kind


def parse_device(name: str) -> tuple[str, int | None]:
    """``"auto"`` / ``"cpu"`` / ``"cuda"`` (or ``"gpu"``) / ``"cuda:<i>"`` -> (kind, index or None);
    anything else raises ValueError."""
    kind, sep, idx = name.lower().partition(":")
    kind = "cuda" if kind == "gpu" else kind
    if kind in ("auto", "cpu") and not sep:
        return kind, None
    if kind == "cuda":
        if sep and not idx.isdigit():
            raise ValueError(f"device '{name}': the index after ':' must be a number")
        return kind, int(idx) if sep else None
    raise ValueError(f"unknown device '{name}' (auto, cpu, cuda, cuda:<index>)")


def check_device(name: str, *, torch_cuda_count: int | None = None) -> str:
    """Refuse, as a ConfigError (the CLI: one line, exit 2), a device name that cannot be parsed or a
    CUDA device that torch does not see here: checked before any work, where resolve_device would
    fail only inside the first seed. torch is imported only for a CUDA request."""
    from common.config import ConfigError
    try:
        kind, index = parse_device(name)
        if kind == "cuda":
            count = _torch_cuda_count() if torch_cuda_count is None else torch_cuda_count
            if count == 0:
                raise ValueError(f"device '{name}' asked for, but torch sees no CUDA GPU here")
            if index is not None and index >= count:
                raise ValueError(f"device '{name}' asked for, but torch sees only {count} CUDA GPU(s)")
    except ValueError as e:
        raise ConfigError(f"--device: {e}") from None
    return name
