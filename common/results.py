"""The one results writer: atomic files, provenance, reported-vs-measured tables, REPORT.md.

Layout of an output root (``results/`` by default)::

    results/<experiment>/<preset>/result.json      metrics (mean over seeds, per seed) + claims + provenance
    results/<experiment>/<preset>/tables.md        measured beside reported, plus the experiment's tables
    results/<experiment>/<preset>/seed-<n>/*.png   figures of each training seed
    results/<experiment>/<preset>+seeds-1-3/       a run on other seeds than the preset's (never the canonical one)
    results/<experiment>/<preset>+set-<hash>/      a run with --set overrides (never the canonical one);
                                                   both: <preset>+seeds-<list>+set-<hash>/
    results/<experiment>/.archive/<preset>-<ts>/   earlier good runs (never overwritten)
    results/<experiment>/<preset>.failed-<ts>-<pid>[-n]/   a run that died (its error.txt); the good one stays
    results/<experiment>/<preset>.partial-<ts>-<host>-<pid>/   a run in progress (its staging folder)
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


def cpu_model() -> str:
    """The CPU's model name (other CPU kernels give other floats for the same seed)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: str) -> dict:
    info = {"requested": device, "platform": platform.platform(), "host": socket.gethostname(),
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count()}
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


def reported_vs_measured(metrics: Mapping[str, Any], reported: Mapping[str, Any], std: Mapping[str, Any] | None = None,
                         same_data: bool = False, measured_on: str = "", reported_on: str = "") -> str:
    """One row per reported number: the metric measured here beside the thesis' value.

    A reported entry is a number, or ``{"value": x, "note": "..."}`` (misprints stay as printed,
    with the note saying so). A difference is shown only when ``same_data`` (the run measured what
    the thesis measured: the paper preset on the thesis' data); otherwise the two numbers stand side
    by side, each labelled with its data set. ``std``: spread over training seeds ("mean ± std").
    """
    std = std or {}
    rows = []
    for key, rep in reported.items():
        note = ""
        if isinstance(rep, Mapping):
            rep, note = rep.get("value"), rep.get("note", "")
        meas = metrics.get(key)
        shown = f"{fmt_value(meas)} ± {fmt_value(std[key])}" if key in std and isinstance(meas, float) else meas
        row = [key, shown, rep]
        if same_data:
            row.append((meas - rep) if isinstance(meas, (int, float)) and isinstance(rep, (int, float)) else None)
        rows.append(row + [note])
    m_head = "measured (this run" + (f", {measured_on}" if measured_on else "") + (", mean ± std over seeds" if std else "") + ")"
    r_head = "reported (thesis" + (f", {reported_on}" if reported_on else "") + ")"
    return markdown_table(["metric", m_head, r_head] + (["difference"] if same_data else []) + ["note"], rows)


# --------------------------------------------------------------------------------------------------
# Final placement: the good result is never overwritten
# --------------------------------------------------------------------------------------------------
def staging_dir(final: Path) -> Path:
    """Where a run writes before its result is promoted: named by time, host and pid, so that a
    second host sharing ``results/`` can tell a live run of another machine from a dead one of its own."""
    return final.with_name(f"{final.name}.partial-{utc_stamp()}-{socket.gethostname()}-{os.getpid()}")


def _parse_staging(p: Path) -> tuple[str, str, str, int] | None:
    """(final name, stamp, host, pid) of a staging folder, or None."""
    try:
        final, rest = p.name.split(".partial-", 1)
        stamp, rest = rest.split("-", 1)
        host, pid = rest.rsplit("-", 1)
        return final, stamp, host, int(pid)
    except ValueError:
        return None


def promote(staging: Path, final: Path) -> None:
    """Move a finished staging folder (``result.json`` written last) into place; an existing result
    goes to ``.archive/`` first. A kill at any point leaves either the old result in place or the
    staging folder complete, and ``recover_staging`` finishes the move on the next run."""
    if final.exists():
        old = {}
        try:
            old = json.loads((final / "result.json").read_text())
        except (OSError, ValueError):
            pass
        stamp = old.get("provenance", {}).get("started_utc") or utc_stamp()
        os.replace(final, _archive_path(final, stamp))
    os.replace(staging, final)


def _archive_path(final: Path, stamp: str) -> Path:
    """A free ``.archive/<preset>-<stamp>[-n]`` folder name (several runs may start in one second)."""
    base = final.parent / ".archive" / f"{final.name}-{stamp}"
    base.parent.mkdir(parents=True, exist_ok=True)
    return _free_name(base)


def _free_name(base: Path) -> Path:
    """``base``, or ``base-1``, ``base-2``, ... : the first that does not exist yet."""
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` and write a probe file in it: a read-only or unreachable ``--out`` is one
    line (ConfigError, exit code 2) before any work, not a traceback after the training."""
    from common.config import ConfigError
    probe = Path(folder) / f".write-probe-{os.getpid()}"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out {folder} is not writable ({e.strerror or e}): make it writable or choose "
                          f"another folder with --out") from None


def os_error_in(error: BaseException) -> OSError | None:
    """The OSError behind ``error`` (itself, or one it was raised from), if any: a full disk can
    surface wrapped in another library's exception."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def mark_failed(staging: Path, final: Path, error: str) -> Path | None:
    """Keep a failed run's folder beside the good one, with the error; the good one is untouched.
    When even error.txt cannot be written (disk full), say so on stderr and return None.

    The name carries time, pid and a counter: two failures in one second (``--all`` with a broken
    data root fails every experiment at once) each keep their own folder."""
    failed = _free_name(final.with_name(f"{final.name}.failed-{utc_stamp()}-{os.getpid()}"))
    try:
        (staging / "error.txt").write_text(error)
        os.replace(staging, failed)
    except OSError as e:
        print(f"error: could not write {staging / 'error.txt'} ({e.strerror or e}); the traceback follows here "
              f"and the previous result in {final} is untouched\n{error}", file=sys.stderr)
        return None
    return failed


def recover_staging(out_root: Path) -> None:
    """Finish what killed runs of this host left: a complete staging folder (``result.json``) is
    promoted (oldest first, so the newest ends in place and nothing is lost); an incomplete one is
    removed. Staging folders of live processes, and of other hosts sharing ``results/``, are left alone."""
    here = socket.gethostname()
    found = []
    for p in Path(out_root).glob("*/*.partial-*"):
        parsed = _parse_staging(p)
        if parsed is None:
            continue
        final_name, stamp, host, pid = parsed
        if host != here or _alive(pid):
            continue
        found.append((stamp, p, p.parent / final_name))
    for stamp, p, final in sorted(found):
        if not (p / "result.json").exists():
            shutil.rmtree(p, ignore_errors=True)
        elif final.exists() and _started(final) > _started(p):   # a newer result is already in place
            os.replace(p, _archive_path(final, _started(p)))
        else:
            promote(p, final)


def _started(folder: Path) -> str:
    try:
        return json.loads((folder / "result.json").read_text())["provenance"]["started_utc"]
    except (OSError, ValueError, KeyError):
        return ""


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
