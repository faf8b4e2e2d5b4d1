"""Experiment registry and the run of one experiment.

An experiment is registered (in ``experiments/<chapter>.py``) with its config dataclass, its
three presets as overrides, the thesis' reported numbers and its claim checks. The science lives
in the chapter folder and is named by a ``"module:function"`` target, imported only when run, so
``--list`` stays fast and one chapter's missing dependency cannot break another.

The function is called as ``fn(cfg, ctx) -> dict[str, float]`` (the metrics). ``ctx`` is a
``RunContext``: it loads datasets (and records which), gives cached work folders for training,
saves figures and tables into the run's folder.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

from common import results as R
from common.claims import Claim
from common.config import ConfigError, apply_overrides, config_hash, to_dict

PRESETS = ("smoke", "default", "paper")


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str                                   # "<chapter>.<table or figure>", e.g. "vqa.tab4_1"
    target: str                                 # "vqa.tables:table_4_1"
    config: type                                # dataclass; its defaults are the default preset
    presets: Mapping[str, Mapping[str, Any]]    # smoke / paper overrides ("default" may be {})
    title: str = ""
    source: str = ""                            # "000 ch. 4, Tab 4.1"
    reported: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    claims: tuple[Claim, ...] = ()

    def resolve_config(self, preset: str, overrides: Mapping[str, Any] | None = None):
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
        cfg = apply_overrides(self.config(), self.presets.get(preset, {}))
        return apply_overrides(cfg, overrides or {})

    def function(self) -> Callable:
        module, fn = self.target.split(":")
        return getattr(importlib.import_module(module), fn)


_EXPERIMENTS: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    missing = [p for p in ("smoke", "paper") if p not in exp.presets]
    if missing:
        raise ValueError(f"experiment {exp.name} lacks preset(s) {missing}: every experiment has three")
    _EXPERIMENTS[exp.name] = exp
    return exp


def discover() -> dict[str, Experiment]:
    """Import every module of the ``experiments`` package (they only register; nothing heavy)."""
    import pkgutil
    import experiments
    for info in pkgutil.iter_modules(experiments.__path__):
        importlib.import_module(f"experiments.{info.name}")
    return dict(sorted(_EXPERIMENTS.items()))


def get(name: str) -> Experiment:
    exps = discover()
    if name not in exps:
        raise ConfigError(f"unknown experiment '{name}' (python -m common.run --list shows them)")
    return exps[name]


# --------------------------------------------------------------------------------------------------
# Run context
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunContext:
    experiment: str
    preset: str
    seed: int
    device: str
    data_root: str | None
    out_root: Path
    out_dir: Path                     # the staging folder of this run
    reported: Mapping[str, Any]
    datasets: list = dataclasses.field(default_factory=list)
    tables: list = dataclasses.field(default_factory=list)
    figures: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    is_main: bool = True

    def load_dataset(self, name: str, split: str = "train"):
        """Load from the registry and record what was actually used (name, split, source, size)."""
        from common.data import load_dataset
        ds = load_dataset(name, split, self.data_root)
        self.record_dataset(ds)
        return ds

    def record_dataset(self, ds) -> None:
        desc = ds.describe() if hasattr(ds, "describe") else {"name": str(ds)}
        if extra := getattr(ds, "skipped", None):
            desc["skipped_unreadable"] = extra
        if desc not in self.datasets:
            self.datasets.append(desc)

    def work_dir(self, stage: str, key: Any) -> Path:
        """Persistent folder for a training stage, named by what determines it.

        Experiments that train the same thing with the same settings share it (Tab 4.2 reuses the
        models of Tab 4.1); a killed run resumes there; a changed setting gets a fresh folder.
        """
        d = self.out_root / "_work" / f"{stage}-{self.preset}-s{self.seed}-{config_hash(key)}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def train_config(self, train_cfg):
        """The experiment's TrainConfig with the run's seed and device filled in."""
        return dataclasses.replace(train_cfg, seed=self.seed, device=self.device)

    def savefig(self, fig, name: str, caption: str = "") -> Path:
        path = self.out_dir / f"{name}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        import matplotlib.pyplot as plt
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


# --------------------------------------------------------------------------------------------------
# Run one experiment
# --------------------------------------------------------------------------------------------------
def run_experiment(name: str, preset: str = "default", *, out_root: str | os.PathLike = "results",
                   data_root: str | None = None, seed: int = 0, device: str = "auto",
                   overrides: Mapping[str, Any] | None = None, threads: int = 1) -> dict:
    """Run one experiment and write its result; ``threads`` = torch CPU threads (0: torch's default).

    One thread by default: the default preset's small models run as fast on one thread as on two
    (measured on 2 cores), and several runs or a test suite sharing a CPU then do not oversubscribe
    it, which made the same models 10-20x slower. Numbers do not depend on it.
    """
    exp = get(name)
    cfg = exp.resolve_config(preset, overrides)
    out_root = Path(out_root)
    rank = int(os.environ.get("RANK", 0))
    final = out_root / exp.name / preset
    staging = final.with_name(f"{preset}.partial-{R.utc_stamp()}-{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    R.clean_stale(out_root)
    ctx = RunContext(exp.name, preset, seed, device, data_root, out_root, staging, exp.reported,
                     is_main=(rank == 0))
    started, t0 = R.utc_stamp(), time.time()
    try:
        with torch_threads(threads):
            metrics = exp.function()(cfg, ctx)
    except BaseException as e:
        if rank == 0:
            failed = R.mark_failed(staging, final, traceback.format_exc())
            print(f"[{exp.name}] failed; error kept in {failed}; previous result untouched", file=sys.stderr)
        raise e
    if rank != 0:
        import shutil
        shutil.rmtree(staging, ignore_errors=True)
        return {"metrics": metrics}
    claims = [c.evaluate(metrics, preset, cfg) for c in exp.claims]
    record = {
        "experiment": exp.name, "title": exp.title, "source": exp.source, "preset": preset,
        "metrics": metrics, "reported": dict(exp.reported), "claims": claims,
        "tables": ctx.tables, "figures": ctx.figures, "notes": ctx.notes,
        "provenance": {
            "config": to_dict(cfg), "preset": preset, "overrides": dict(overrides or {}),
            "datasets": ctx.datasets, "seed": seed, "device": dict(R.device_description(device), threads=threads),
            "versions": R.library_versions(), "git": R.git_commit(), "started_utc": started,
            "wall_time_s": round(time.time() - t0, 3), "argv": sys.argv,
        },
    }
    R.write_json_atomic(staging / "result.json", record)
    R.write_text_atomic(staging / "tables.md", render_markdown(record, heading="#"))
    R.promote(staging, final)
    return record


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads (0: leave as is), restored afterwards."""
    try:
        import torch
    except ImportError:
        yield
        return
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def render_markdown(record: Mapping[str, Any], heading: str = "##", fig_prefix: str = "") -> str:
    """One experiment's section: reported vs measured, its tables, figures and claim checks."""
    h = heading
    prov = record["provenance"]
    ds = ", ".join(f"{d.get('name')}/{d.get('split')}" for d in prov["datasets"]) or "-"
    lines = [f"{h} {record['experiment']}: {record.get('title', '')}",
             f"_{record.get('source', '')}. Preset `{record['preset']}`, seed {prov['seed']}, data {ds}, "
             f"{prov['wall_time_s']:.0f} s, commit {str(prov['git'].get('commit'))[:10]}._", ""]
    if record.get("reported"):
        lines += [f"{h}# Measured beside reported", R.reported_vs_measured(record["metrics"], record["reported"]), ""]
    for t in record.get("tables", []):
        lines += [f"{h}# {t['title']}", t["markdown"], ""]
        if t.get("note"):
            lines += [t["note"], ""]
    for n in record.get("notes", []):
        lines += [f"- {n}"]
    if record.get("notes"):
        lines.append("")
    for f in record.get("figures", []):
        lines += [f"![{f.get('caption') or f['file']}]({fig_prefix}{f['file']})", ""]
    if record.get("claims"):
        lines += [f"{h}# Claim checks", R.markdown_table(
            ["status", "claim", "numbers", "source"],
            [[c["status"], c["claim"], c["detail"], c.get("source", "")] for c in record["claims"]]), ""]
    return "\n".join(lines)


def write_report(out_root: str | os.PathLike = "results", preset: str = "default") -> Path:
    """Gather every experiment's result at ``preset`` into ``<out_root>/REPORT.md``."""
    import json
    out_root = Path(out_root)
    records = []
    for path in sorted(out_root.glob(f"*/{preset}/result.json")):
        records.append((path.parent, json.loads(path.read_text())))
    counts: dict[str, int] = {}
    for _, r in records:
        for c in r.get("claims", []):
            counts[c["status"]] = counts.get(c["status"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no claims"
    lines = [f"# Report: preset `{preset}`", "",
             f"{len(records)} experiments; claim checks: {summary}. Numbers in 'measured' columns come "
             f"from the runs below; 'reported' numbers are the thesis' own, copied as printed.", ""]
    lines += [R.markdown_table(["experiment", "title", "claims", "wall time (s)"],
                               [[r["experiment"], r.get("title", ""),
                                 " ".join(c["status"] for c in r.get("claims", [])) or "-",
                                 r["provenance"]["wall_time_s"]] for _, r in records]), ""]
    for folder, r in records:
        lines.append(render_markdown(r, heading="##", fig_prefix=f"{folder.relative_to(out_root).as_posix()}/"))
    path = out_root / "REPORT.md"
    out_root.mkdir(parents=True, exist_ok=True)
    R.write_text_atomic(path, "\n".join(lines) + "\n")
    return path
