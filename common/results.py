"""The one results writer: atomic files, provenance, reported-vs-measured tables, REPORT.md.

Layout of an output root (``results/`` by default)::

    results/<experiment>/<preset>/result.json      metrics + claims + provenance
    results/<experiment>/<preset>/tables.md        measured beside reported, plus the experiment's tables
    results/<experiment>/<preset>/*.png            figures
    results/<experiment>/.archive/<preset>-<ts>/   earlier good runs (never overwritten)
    results/<experiment>/<preset>.failed-<ts>/     a run that died (its error.txt); the good one stays
    results/_work/...                              trainer checkpoints (resume, reuse across experiments)
    results/REPORT.md                              every table, figure and claim check
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

_VERSIONED = ("torch", "torchvision", "jax", "jaxlib", "flax", "optax", "numpy", "scikit-learn",
              "scikit-image", "matplotlib", "safetensors", "easy-vqa", "mlxtend")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_json_default, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    return str(o)


def utc_stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def git_commit(repo: Path | None = None) -> dict:
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": sha or None, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_description(device: str) -> dict:
    info = {"requested": device, "platform": platform.platform(), "host": socket.gethostname(),
            "cpu_count": os.cpu_count()}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    info["world_size"] = int(os.environ.get("WORLD_SIZE", 1))
    return info


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------
def fmt_value(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) < 10 ** -digits or abs(v) >= 1e6):
            return f"{v:.3e}"
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 2) -> str:
    rows = [[fmt_value(c, digits) for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def reported_vs_measured(metrics: Mapping[str, Any], reported: Mapping[str, Any]) -> str:
    """One row per reported number: the metric measured here beside the thesis' value.

    A reported entry is a number, or ``{"value": x, "note": "..."}`` (misprints stay as printed,
    with the note saying so).
    """
    rows = []
    for key, rep in reported.items():
        note = ""
        if isinstance(rep, Mapping):
            rep, note = rep.get("value"), rep.get("note", "")
        meas = metrics.get(key)
        diff = (meas - rep) if isinstance(meas, (int, float)) and isinstance(rep, (int, float)) else None
        rows.append([key, meas, rep, diff, note])
    return markdown_table(["metric", "measured (this run)", "reported (thesis)", "difference", "note"], rows)


# --------------------------------------------------------------------------------------------------
# Final placement: the good result is never overwritten
# --------------------------------------------------------------------------------------------------
def promote(staging: Path, final: Path) -> None:
    """Move a finished staging folder into place; an existing result goes to ``.archive/`` first."""
    if final.exists():
        old = {}
        try:
            old = json.loads((final / "result.json").read_text())
        except (OSError, ValueError):
            pass
        stamp = old.get("provenance", {}).get("started_utc") or utc_stamp()
        archive = final.parent / ".archive" / f"{final.name}-{stamp}"
        archive.parent.mkdir(parents=True, exist_ok=True)
        if archive.exists():
            archive = archive.with_name(archive.name + f"-{os.getpid()}")
        os.replace(final, archive)
    os.replace(staging, final)


def mark_failed(staging: Path, final: Path, error: str) -> Path:
    """Keep a failed run's folder beside the good one, with the error; the good one is untouched."""
    (staging / "error.txt").write_text(error)
    failed = final.with_name(f"{final.name}.failed-{utc_stamp()}")
    os.replace(staging, failed)
    return failed


def clean_stale(out_root: Path) -> None:
    """Remove staging folders of runs that were killed (their process no longer exists)."""
    for p in out_root.glob("*/*.partial-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass
