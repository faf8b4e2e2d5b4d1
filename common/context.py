"""The context of one seed's run: datasets it loads, cached work folders of its training stages,
its figures, tables and notes.

The experiment function is called as ``fn(cfg, ctx) -> dict[str, float]`` (the metrics of one
seed); ``ctx`` is a ``RunContext``.

Work folders (``ctx.work_dir(stage, config, depends_on=, datasets=)``): a cached stage is reused
only when everything that made it is the same, and nothing of its key is picked by hand: the whole
config subtree it reads (less fields declared ``param(..., identity=False)``), the folders of the
stages it reads (their names carry their own keys: a swapped role reads other models, so trains
afresh), the identity of the datasets it reads (name, split, resolved path, fingerprint of the files)
and the source of the calling module and of every project module it imports, transitively, plus the
dataset loader when it reads data (an edited model or loader trains afresh). Anything else gets a
fresh folder; the run record says, per stage, whether it was trained, resumed or loaded, from which
folder, and which files were hashed. One process at a time holds a stage (``flock`` on its
``.lock`` until ``close()`` at the end of the seed); another waits and says who holds it.
tests/test_stage_identity.py shows each of these.
"""
from __future__ import annotations

import ast
import dataclasses
import fcntl
import hashlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from common import results as R
from common.config import config_hash, identity_dict


# --------------------------------------------------------------------------------------------------
# What makes a cached stage: code and data identity
# --------------------------------------------------------------------------------------------------
_ROOT = Path(__file__).resolve().parent.parent
# every stage that reads a dataset also depends on the code that loads, splits, decodes and scales it
_DATA_MODULE = "common.data"
_code_cache: dict[tuple, dict] = {}


def _module_file(name: str, roots: Sequence[Path]) -> Path | None:
    """The file of module ``name`` inside one of ``roots`` (a project module), else None."""
    rel = Path(*name.split("."))
    for root in roots:
        for f in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
            if f.is_file():
                return f
    return None


def _imported_names(path: Path, module: str) -> set[str]:
    """Every module name ``path`` (module ``module``) may import, at any depth of its code (function-
    level imports too), with each parent package (importing a.b.c runs a/__init__ and a/b/__init__)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base:
                names.add(base)
            names.update(f"{base}.{a.name}" if base else a.name for a in node.names if a.name != "*")
    out = set()
    for n in names:
        parts = n.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def _module_closure(file: Path, module: str, roots: Sequence[Path]) -> list[Path]:
    """``file`` and every project module it imports, recursively (read from the source with ``ast``,
    never from what happens to be in ``sys.modules``), sorted."""
    seen, todo = {file: module}, [(file, module)]
    while todo:
        f, m = todo.pop()
        for name in _imported_names(f, m):
            g = _module_file(name, roots)
            if g is not None and g not in seen:
                seen[g] = name
                todo.append((g, name))
    return sorted(seen)


def _rel(f: Path) -> str:
    return str(f.relative_to(_ROOT)) if f.is_relative_to(_ROOT) else str(f)


def code_identity(file: str | Path, module: str, reads_data: bool = False) -> dict:
    """sha256 over the source of ``file`` (module ``module``) and of every project module it imports,
    transitively; with ``reads_data`` also of the dataset loader (``common/data.py``) and its imports.
    Names the files hashed. Cached per process (the code a process runs does not change under it)."""
    file = Path(file).resolve()
    key = (file, module, reads_data)
    if key in _code_cache:
        return _code_cache[key]
    # project modules: under the repository, or beside the caller's top package (a package on sys.path)
    depth = module.count(".") + (file.name == "__init__.py")
    top_root = file.parents[depth] if depth < len(file.parents) else file.parent
    roots = [_ROOT] + ([top_root] if top_root != _ROOT else [])
    files = set(_module_closure(file, module, roots))
    if reads_data:
        data_file = _module_file(_DATA_MODULE, roots)
        if data_file is not None:
            files.update(_module_closure(data_file, _DATA_MODULE, roots))
    h = hashlib.sha256()
    for f in sorted(files, key=_rel):
        h.update(_rel(f).encode() + b"\0")
        h.update(f.read_bytes())
    _code_cache[key] = {"sha256": h.hexdigest()[:16], "files": sorted(_rel(f) for f in files)}
    return _code_cache[key]


def _calling_module(depth: int = 2) -> tuple[str, str]:
    """(file, module name) of the first frame up the stack outside common/ (the chapter asking for a
    work folder)."""
    frame = sys._getframe(depth)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("common.") and name != "common" and frame.f_globals.get("__file__"):
            return frame.f_globals["__file__"], name if name != "__main__" else Path(frame.f_globals["__file__"]).stem
        frame = frame.f_back
    return str(Path(__file__)), "common.context"


def _config_identity(config: Any) -> Any:
    """A stage's config as keyed: dataclasses through ``identity_dict`` (fields declared
    ``identity=False`` left out), inside dicts and lists too."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return identity_dict(config)
    if isinstance(config, Mapping):
        return {str(k): _config_identity(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [_config_identity(v) for v in config]
    return config


# --------------------------------------------------------------------------------------------------
# One writer per stage
# --------------------------------------------------------------------------------------------------
# stage folders this process holds: path -> [descriptor, how many contexts hold it]. flock locks belong to
# an open file, so a second context of the same process (a test, a caller that builds its own) opening
# the lock file again would wait for itself forever; it shares the process' lock instead.
_HELD: dict[Path, list] = {}


def _acquire_stage(folder: Path) -> None:
    if folder in _HELD:
        _HELD[folder][1] += 1
    else:
        _HELD[folder] = [_lock_stage(folder), 1]


def _release_stage(folder: Path) -> None:
    held = _HELD.get(folder)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[folder]
        os.close(held[0])   # releases the flock


def _lock_stage(folder: Path) -> int:
    """An exclusive ``flock`` on ``folder/.lock`` (blocking), holding "pid host"; says once on stderr
    who holds it while waiting. Returns the open descriptor (closing it releases the lock)."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").split()
        pid, host = (holder + ["?", "?"])[:2]
        print(f"stage {folder.name} is being trained by pid {pid} on host {host}; waiting", file=sys.stderr,
              flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return fd


def stage_status(folder: Path) -> tuple[str, int | None]:
    """('trained' | 'resumed' | 'loaded', step) of a stage folder, read before the stage runs."""
    from common.checkpoint import latest_checkpoint_dir
    d = latest_checkpoint_dir(folder)
    if d is None:
        # key.json, the .lock and hidden temporaries (.ckpt.tmp-*, .ckpt.lock) are not results
        others = [p for p in folder.iterdir() if p.name != "key.json" and not p.name.startswith(".")] \
            if folder.exists() else []
        return ("loaded", None) if others else ("trained", None)
    try:
        st = json.loads((d / "state.json").read_text())
    except (OSError, ValueError):
        return "trained", None
    return ("loaded" if st.get("done") else "resumed"), st.get("step")


# --------------------------------------------------------------------------------------------------
# Run context (one seed)
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunContext:
    experiment: str
    preset: str
    seed: int
    device: str
    data_root: str | None
    out_root: Path
    out_dir: Path                     # the folder of this seed's figures and tables
    reported: Mapping[str, Any]
    datasets: list = dataclasses.field(default_factory=list)
    tables: list = dataclasses.field(default_factory=list)
    figures: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    stages: list = dataclasses.field(default_factory=list)
    is_main: bool = True
    _locks: dict = dataclasses.field(default_factory=dict, repr=False)   # stage folder -> fd of its held .lock

    def load_dataset(self, name: str, split: str = "train"):
        """Load from the registry and record what was actually used (name, split, source, size)."""
        from common.data import load_dataset
        ds = load_dataset(name, split, self.data_root)
        self.record_dataset(ds)
        return ds

    def record_dataset(self, ds) -> None:
        desc = ds.describe() if hasattr(ds, "describe") else {"name": str(ds)}
        if desc not in self.datasets:
            self.datasets.append(desc)

    def work_dir(self, stage: str, config: Any, *, depends_on: Sequence[str | os.PathLike] = (),
                 datasets: Sequence[Mapping] | None = None) -> Path:
        """Persistent folder of a training stage, named by everything that determines it, held by
        this process alone until the seed ends (``close``).

        ``config``: the whole config subtree the stage reads (a dataclass, or a dict of whole
        subtrees and values); fields declared ``param(..., identity=False)`` are left out.
        ``depends_on``: the folders of the stages it reads (returned by earlier ``work_dir`` calls),
        in an order that says which is which: their names carry their own keys, so a stage is keyed
        by *which* trained model it read. ``datasets``: descriptions of the data it reads (default:
        every dataset loaded through this context so far; load the data before asking for the
        folder). The calling module's source and that of every project module it imports
        (transitively), plus the dataset loader when it reads data, are part of the key, so an
        edited model or loader trains afresh. Experiments that train the same thing with the same
        settings share the folder (Tab 4.2 reuses the models of Tab 4.1); a killed run resumes there.
        """
        data = list(self.datasets if datasets is None else datasets)
        file, module = _calling_module()
        identity = {"config": _config_identity(config), "depends_on": [Path(d).name for d in depends_on],
                    "datasets": data, "code": code_identity(file, module, reads_data=bool(data))}
        d = self.out_root / "_work" / f"{stage}-{self.preset}-s{self.seed}-{config_hash(identity)}"
        d.mkdir(parents=True, exist_ok=True)
        if self.is_main and d not in self._locks:   # DDP ranks > 0 follow rank 0; a second ask is ours already
            _acquire_stage(d)
            self._locks[d] = True
        status, step = stage_status(d)               # read under the lock: a writer before us may have finished
        if self.is_main and not (d / "key.json").exists():
            R.write_json_atomic(d / "key.json", dict(identity, stage=stage, preset=self.preset, seed=self.seed))
        rec = {"stage": stage, "folder": str(d), "status": status, "step": step}
        if rec not in self.stages:
            self.stages.append(rec)
        return d

    def close(self) -> None:
        """Release every stage folder this seed holds (called when the seed ends, failed or not)."""
        while self._locks:
            folder, _ = self._locks.popitem()
            _release_stage(folder)

    def train_config(self, train_cfg):
        """The experiment's TrainConfig with the run's seed and device filled in."""
        return dataclasses.replace(train_cfg, seed=self.seed, device=self.device)

    def savefig(self, fig, name: str, caption: str = "") -> Path:
        path = self.out_dir / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        from common.plotting import plt
        plt.close(fig)
        self.figures.append({"file": path.name, "caption": caption})
        return path

    def table(self, title: str, headers, rows, note: str = "", digits: int = 2) -> str:
        md = R.markdown_table(headers, rows, digits)
        self.tables.append({"title": title, "markdown": md, "note": note})
        return md

    def note(self, text: str) -> None:
        """A sentence for the report beside the tables (a caveat, a decision)."""
        self.notes.append(text)
