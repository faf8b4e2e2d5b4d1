"""Weights on disk without pickles: safetensors, written atomically.

``load_weights`` also reads ``.pt``/``.pth`` files (torchvision's cache, say), but only through
``torch.load(weights_only=True)``, which refuses any file that would execute code when unpickled.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
import socket
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from common.errors import CheckpointError


class UnsafeCheckpointError(CheckpointError):
    """A weights file that is not plain tensors (e.g. a pickle carrying code), or not readable as
    safetensors at all. A CheckpointError, so one ``except CheckpointError`` covers every bad file."""

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# how safetensors' Rust writer reports ENOSPC / EDQUOT (a SafetensorError, not an OSError)
_DISK_FULL_TEXT = ("StorageFull", "QuotaExceeded", "No space left on device", "Disk quota exceeded")


def is_disk_full(e: BaseException) -> bool:
    """A full disk (or quota), whether raised by Python's I/O or inside safetensors' writer."""
    if isinstance(e, OSError) and e.errno in _DISK_FULL:
        return True
    return type(e).__name__ == "SafetensorError" and any(t in str(e) for t in _DISK_FULL_TEXT)


def _writer_tag() -> str:
    """Unique per writer (host, pid, random): two writers never share a temporary name."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


def save_state_dict(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{_writer_tag()}")
    try:
        # safetensors refuses shared storage (tied weights); clone makes each tensor own its memory.
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)   # a half-written file would only hold on to the disk space
        raise
    os.replace(tmp, path)


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


# --------------------------------------------------------------------------------------------------
# Checkpoint folders: <work_dir>/ckpt/{*.safetensors, state.json}, replaced atomically
# --------------------------------------------------------------------------------------------------
def write_checkpoint_dir(work_dir: str | os.PathLike, write_files, state: dict) -> Path:
    """Write a checkpoint folder so that a kill at any moment leaves a complete one behind.

    ``write_files(tmp_dir)`` writes the tensor files (safetensors); ``state`` (JSON) is written last.
    The folder is built under a name of its own writer (``.ckpt.tmp-<host>-<pid>-<random>``) and
    swapped in under ``.ckpt.lock``, so two writers at once (which the stage lock of
    ``RunContext.work_dir`` already prevents) never share or half-replace a folder; ``ckpt.old``
    covers a kill between renames. Torch (common.trainer) and JAX (chapter loops, via
    common.bridge.save_pytree) share this. A failure while writing (disk full, say) leaves the
    previous checkpoint untouched; a full disk raises ``CheckpointError`` saying so and from which
    step a rerun resumes.
    """
    work_dir = Path(work_dir)
    tmp, cur, old = work_dir / f".ckpt.tmp-{_writer_tag()}", work_dir / "ckpt", work_dir / "ckpt.old"
    try:
        tmp.mkdir(parents=True)
        write_files(tmp)
        with open(tmp / "state.json", "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)   # frees the space; `cur` was never touched
        if is_disk_full(e):
            raise CheckpointError(_disk_full_message(work_dir, state, e)) from e
        raise
    fd = os.open(work_dir / ".ckpt.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _remove_dead_writers_tmp(work_dir)
        shutil.rmtree(old, ignore_errors=True)
        if cur.exists():
            os.replace(cur, old)
        os.replace(tmp, cur)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        os.close(fd)
    return cur


def _remove_dead_writers_tmp(work_dir: Path) -> None:
    """Temporary folders left by killed writers of this host (their pid is gone) hold disk space."""
    host = socket.gethostname()
    for d in work_dir.glob(f".ckpt.tmp-{host}-*"):
        pid = d.name[len(f".ckpt.tmp-{host}-"):].split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def _disk_full_message(work_dir: Path, state: dict, err: BaseException) -> str:
    new = f" (step {state['step']})" if "step" in state else ""
    prev = latest_checkpoint_dir(work_dir)
    prev_step = checkpoint_step(prev) if prev is not None else None
    if prev is None:
        kept = "There is no earlier checkpoint; a rerun starts from the beginning."
    else:
        at = f" (step {prev_step})" if prev_step is not None else ""
        kept = f"The previous checkpoint {prev}{at} is intact; a rerun of the same command resumes from it."
    return (f"no space left on device while writing the checkpoint{new} into {work_dir} "
            f"({getattr(err, 'strerror', None) or err}). {kept} Free disk space, then rerun.")


def checkpoint_step(ckpt_dir: str | os.PathLike) -> int | None:
    """The ``step`` recorded in a checkpoint folder's state.json, or None if it cannot be read."""
    try:
        return int(json.loads((Path(ckpt_dir) / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest_checkpoint_dir(work_dir: str | os.PathLike, required: tuple[str, ...] = ()) -> Path | None:
    """The last complete checkpoint folder (``ckpt``, else ``ckpt.old``), or None."""
    for name in ("ckpt", "ckpt.old"):
        d = Path(work_dir) / name
        if (d / "state.json").exists() and all((d / r).exists() for r in required):
            return d
    return None
