"""The context of one seed's run: datasets it loads, cached work folders of its training stages,
its figures, tables and notes.

The experiment function is called as ``fn(cfg, ctx) -> dict[str, float]`` (the metrics of one
seed); ``ctx`` is a ``RunContext``.

Work folders (``ctx.work_dir``): a cached stage is reused only when everything that made it is the
same: its config key, the identity of the datasets it reads (name, split, resolved path,
fingerprint of the files) and the source of the code that defines it. Anything else gets a fresh
folder; the run record says, per stage, whether it was trained, resumed or loaded, and from which
folder.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from common import results as R
from common.config import config_hash


# --------------------------------------------------------------------------------------------------
# What makes a cached stage: code and data identity
# --------------------------------------------------------------------------------------------------
_ROOT = Path(__file__).resolve().parent.parent
# the shared training loops: a change to them changes what every stage would produce
_SHARED_TRAINING_CODE = ("common/trainer.py", "common/jax_loop.py", "common/bridge.py")
_code_cache: dict[str, dict] = {}


def code_identity(module: str) -> dict:
    """sha256 over the source of the package that ``module`` belongs to (just the module for a file
    of ``experiments/``) and of the shared training loops; names the files hashed."""
    if module in _code_cache:
        return _code_cache[module]
    top = module.split(".", 1)[0]
    mod = sys.modules.get(module) or importlib.import_module(module)
    if top == "experiments" or not hasattr(sys.modules.get(top) or importlib.import_module(top), "__path__"):
        files = [Path(mod.__file__).resolve()]
    else:
        pkg_dir = Path(importlib.import_module(top).__file__).resolve().parent
        files = sorted(pkg_dir.rglob("*.py"))
    files += [_ROOT / f for f in _SHARED_TRAINING_CODE if (_ROOT / f).exists()]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(_ROOT) if f.is_relative_to(_ROOT) else f).encode())
        h.update(f.read_bytes())
    rel = [str(f.relative_to(_ROOT)) if f.is_relative_to(_ROOT) else str(f) for f in files]
    _code_cache[module] = {"sha256": h.hexdigest()[:16], "files": rel}
    return _code_cache[module]


def _calling_module(depth: int = 2) -> str:
    """The first module up the stack that is not common/ (the chapter asking for a work folder)."""
    frame = sys._getframe(depth)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("common.") and name != "common":
            return name
        frame = frame.f_back
    return "common"


def stage_status(folder: Path) -> tuple[str, int | None]:
    """('trained' | 'resumed' | 'loaded', step) of a stage folder, read before the stage runs."""
    from common.checkpoint import latest_checkpoint_dir
    d = latest_checkpoint_dir(folder)
    if d is None:
        others = [p for p in folder.iterdir() if p.name not in ("key.json", ".lock")] if folder.exists() else []
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

    def work_dir(self, stage: str, key: Any, datasets: Sequence[Mapping] | None = None) -> Path:
        """Persistent folder of a training stage, named by everything that determines it.

        ``key``: the stage's settings. ``datasets``: descriptions of the data it reads (default:
        every dataset loaded through this context so far; load the data before asking for the
        folder). The calling chapter's code and the shared training loops are part of the key, so
        an edited model trains afresh. Experiments that train the same thing with the same
        settings share the folder (Tab 4.2 reuses the models of Tab 4.1); a killed run resumes there.
        """
        identity = {"config": key, "datasets": list(self.datasets if datasets is None else datasets),
                    "code": code_identity(_calling_module())}
        d = self.out_root / "_work" / f"{stage}-{self.preset}-s{self.seed}-{config_hash(identity)}"
        status, step = stage_status(d)
        d.mkdir(parents=True, exist_ok=True)
        if self.is_main and not (d / "key.json").exists():
            R.write_json_atomic(d / "key.json", dict(identity, stage=stage, preset=self.preset, seed=self.seed))
        rec = {"stage": stage, "folder": str(d), "status": status, "step": step}
        if rec not in self.stages:
            self.stages.append(rec)
        return d

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
