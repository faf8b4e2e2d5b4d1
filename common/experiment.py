"""Experiment registry and the run of one experiment over its training seeds.

An experiment is registered (in ``experiments/<chapter>.py``) with its config dataclass, its
three presets as overrides, the thesis' reported numbers and its claim checks. The science lives
in the chapter folder and is named by a ``"module:function"`` target, imported only when run, so
``--list`` stays fast and one chapter's missing dependency cannot break another.

The function is called as ``fn(cfg, ctx) -> dict[str, float]`` (the metrics of one seed). ``ctx``
is a ``RunContext``: it loads datasets (and records which), gives cached work folders for training
stages, saves figures and tables into the seed's folder.

Seeds: a preset names its training seeds (``DEFAULT_SEEDS``: three at the default preset, where
effects are small and a single seed can be lucky). Each seed is a full run of the function; the
result holds every seed's metrics, their mean and std, and claims judged over all seeds
(``common.claims.evaluate_over_seeds``). Seeds run as parallel processes with ``jobs > 1``: one
lane per (chapter, seed), so that experiments of a chapter that share a training stage (same seed,
same work folder) never run at the same time; a chapter that reuses another chapter's stages
registers with ``lane=<that chapter>`` and joins its lanes.

Work folders (``ctx.work_dir``): a cached stage is reused only when everything that made it is the
same: its config key, the identity of the datasets it reads (name, split, resolved path,
fingerprint of the files) and the source of the code that defines it (the calling chapter's modules
and the shared training loops). Anything else gets a fresh folder; the run record says, per stage,
whether it was trained, resumed or loaded, and from which folder.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from common import results as R
from common.claims import Claim, evaluate_over_seeds
from common.config import ConfigError, apply_overrides, config_hash, to_dict, validate

PRESETS = ("smoke", "default", "paper")
DEFAULT_SEEDS = {"smoke": (0,), "default": (0, 1, 2), "paper": (0,)}
VARIANT_SEP = "@"


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str                                   # "<chapter>.<table or figure>", e.g. "vqa.tab4_1"
    target: str                                 # "vqa.tables:table_4_1"
    config: type                                # dataclass; its defaults are the default preset
    presets: Mapping[str, Mapping[str, Any]]    # smoke / paper overrides ("default" may be {})
    title: str = ""
    source: str = ""                            # "000 ch. 4, Tab 4.1"
    reported: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    reported_on: str = ""                       # data the thesis measured on ("ImageNet val"); paper preset only
    claims: tuple[Claim, ...] = ()
    seeds: Mapping[str, Sequence[int]] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SEEDS))
    variants: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # name -> overrides
    variant_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)       # set on a variant
    registered_in: str = ""                     # module that registered it (re-imported by worker processes)
    # experiments that train the same stages must never run at once: one lane per (lane, seed); a
    # chapter that reuses another's trained models names that chapter here (adversarial: "capacity")
    lane: str = ""

    @property
    def chapter(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def lane_key(self) -> str:
        return self.lane or self.chapter

    def resolve_config(self, preset: str, overrides: Mapping[str, Any] | None = None):
        """Defaults, then the preset, then the variant, then the user's overrides; every value checked."""
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
        cfg = apply_overrides(self.config(), self.presets.get(preset, {}))
        cfg = apply_overrides(cfg, self.variant_overrides)
        return validate(apply_overrides(cfg, overrides or {}))

    def seeds_for(self, preset: str) -> tuple[int, ...]:
        return tuple(self.seeds.get(preset, DEFAULT_SEEDS[preset]))

    def function(self) -> Callable:
        module, fn = self.target.split(":")
        return getattr(importlib.import_module(module), fn)


_EXPERIMENTS: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    """Register an experiment and each of its named variants (``<name>@<variant>``: own result folder,
    own REPORT section, run by ``--only`` only when named exactly or by its chapter)."""
    missing = [p for p in ("smoke", "paper") if p not in exp.presets]
    if missing:
        raise ValueError(f"experiment {exp.name} lacks preset(s) {missing}: every experiment has three")
    if not exp.registered_in:
        exp = dataclasses.replace(exp, registered_in=sys._getframe(1).f_globals.get("__name__", ""))
    _EXPERIMENTS[exp.name] = exp
    for vname, vover in exp.variants.items():
        v = dataclasses.replace(exp, name=f"{exp.name}{VARIANT_SEP}{vname}", variants={}, variant_overrides=dict(vover),
                                title=f"{exp.title} (variant {vname}: "
                                      + ", ".join(f"{k}={val}" for k, val in vover.items()) + ")")
        _EXPERIMENTS[v.name] = v
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


def select(names: Sequence[str], only: Sequence[str]) -> list[str]:
    """``--only`` items: an exact experiment name (``vqa.tab4_1``, not its variants) or a whole
    chapter (``vqa``, variants included)."""
    if not only:
        return list(names)
    unknown = [o for o in only if o not in names and not any(n.split(".", 1)[0] == o for n in names)]
    if unknown:
        raise ConfigError(f"--only: no experiment or chapter named {', '.join(unknown)} (see --list)")
    return [n for n in names if n in only or n.split(".", 1)[0] in only]


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
# Running
# --------------------------------------------------------------------------------------------------
class ExperimentFailed(RuntimeError):
    """An experiment whose run (one of its seeds) raised; the message is the user-facing one."""

    def __init__(self, name: str, message: str, failed_dir: Path | None, error: BaseException | None = None):
        self.name, self.failed_dir, self.error = name, failed_dir, error
        super().__init__(message)


@dataclasses.dataclass(frozen=True)
class _SeedTask:
    experiment: str
    preset: str
    seed: int
    seed_dir: str
    out_root: str
    data_root: str | None
    device: str
    overrides: Mapping[str, Any]
    threads: int
    registered_in: str = ""


def result_dir(out_root: Path, name: str, preset: str, overrides: Mapping[str, Any] | None) -> Path:
    """``<out>/<exp>/<preset>``; a run with ``--set`` overrides gets ``<preset>+set-<hash>`` so that a
    quick tweak never displaces the preset's canonical result."""
    base = Path(out_root) / name
    return base / (f"{preset}+set-{config_hash(dict(overrides), 8)}" if overrides else preset)


def _run_seed(task: _SeedTask) -> dict:
    """Run one seed of one experiment in this process; returns a JSON-able record or the error."""
    if task.experiment not in _EXPERIMENTS and task.registered_in:   # a worker process: register it again
        importlib.import_module(task.registered_in)
    exp = get(task.experiment)
    cfg = exp.resolve_config(task.preset, task.overrides)
    seed_dir = Path(task.seed_dir)
    seed_dir.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", 0))
    ctx = RunContext(exp.name, task.preset, task.seed, task.device, task.data_root, Path(task.out_root), seed_dir,
                     exp.reported, is_main=(rank == 0))
    if task.device == "cpu" and "jax" not in sys.modules:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")   # --device drives JAX too (set before JAX starts)
    t0, cpu0 = time.time(), _cpu_seconds()
    out = {"seed": task.seed, "dir": seed_dir.name}
    try:
        with torch_threads(task.threads) as used:
            metrics = exp.function()(cfg, ctx)
        out.update(metrics=metrics, threads=used)
    except Exception as e:  # reported per seed; KeyboardInterrupt propagates
        from common.errors import UserFacingError
        user = isinstance(e, (UserFacingError, FileNotFoundError, ConfigError))
        out.update(error=traceback.format_exc(), error_type=type(e).__name__, user_facing=user,
                   message=str(e) if user else f"{type(e).__name__}: {e}")
    out.update(tables=ctx.tables, figures=ctx.figures, notes=ctx.notes, datasets=ctx.datasets, stages=ctx.stages,
               wall_time_s=round(time.time() - t0, 3), cpu_time_s=round(_cpu_seconds() - cpu0, 3))
    return out


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads): on a shared machine the
    compute an experiment costs, where wall time also counts the waiting."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _run_lane(tasks: Sequence[_SeedTask]) -> list[dict]:
    """Seeds that must run one after the other (same chapter, same seed: shared work folders)."""
    return [_run_seed(t) for t in tasks]


def run_experiments(names: Sequence[str], preset: str = "default", *, out_root: str | os.PathLike = "results",
                    data_root: str | None = None, seeds: Sequence[int] | None = None, jobs: int = 1,
                    device: str = "auto", overrides: Mapping[str, Any] | None = None, threads: int = 1,
                    on_done: Callable[[str, dict | ExperimentFailed], None] | None = None) -> dict:
    """Run experiments over their seeds (``seeds`` overrides the preset's); ``jobs`` parallel
    processes. Returns ``{name: record or ExperimentFailed}``; every config is checked first."""
    overrides = dict(overrides or {})
    exps = [get(n) for n in names]
    cfgs = {e.name: e.resolve_config(preset, overrides) for e in exps}      # bad values: before any work
    if seeds is not None and (not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"seeds must be distinct integers >= 0, got {list(seeds)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = torch's default), got {threads}")
    out_root = Path(out_root)
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        R.recover_staging(out_root)
    plan, lanes = {}, {}
    for e in exps:
        final = result_dir(out_root, e.name, preset, overrides)
        staging = R.staging_dir(final)
        staging.mkdir(parents=True, exist_ok=True)
        e_seeds = tuple(seeds) if seeds is not None else e.seeds_for(preset)
        plan[e.name] = (e, final, staging, e_seeds, R.utc_stamp(), time.time())
        for s in e_seeds:
            lanes.setdefault((e.lane_key, s), []).append(_SeedTask(
                e.name, preset, s, str(staging / f"seed-{s}"), str(out_root), data_root, device, overrides, threads,
                e.registered_in))
    results: dict[str, list[dict]] = {n: [] for n in plan}
    outcomes: dict[str, Any] = {}

    def finish_if_complete(name):
        e, final, staging, e_seeds, started, t0 = plan[name]
        if len(results[name]) < len(e_seeds) or name in outcomes:
            return
        per_seed = sorted(results[name], key=lambda r: e_seeds.index(r["seed"]))
        outcome = _finish(e, cfgs[name], preset, overrides, final, staging, per_seed, started, t0, device, rank)
        outcomes[name] = outcome
        if on_done:
            on_done(name, outcome)

    lane_list = list(lanes.values())
    if jobs == 1 or len(lane_list) == 1 or int(os.environ.get("WORLD_SIZE", 1)) > 1:
        for lane in lane_list:
            for task in lane:
                results[task.experiment].append(_run_seed(task))
                finish_if_complete(task.experiment)
    else:
        for task, rec in _run_lanes_in_processes(lane_list, jobs):
            results[task.experiment].append(rec)
            finish_if_complete(task.experiment)
    return outcomes


def _died(task: _SeedTask, why: str) -> dict:
    return {"seed": task.seed, "dir": Path(task.seed_dir).name, "error": why, "user_facing": False,
            "wall_time_s": 0.0, "message": f"the worker process running it died ({why})"}


def _run_lanes_in_processes(lane_list: Sequence[Sequence[_SeedTask]], jobs: int):
    """Yield (task, record) as seeds finish, ``jobs`` worker processes at a time; the seeds of one
    lane run one after the other. A worker that dies (killed for memory, say) breaks the whole pool:
    the seeds that were running then are rerun one at a time, each in a fresh process of its own, so
    only the seed that kills its worker again fails, and the other lanes go on."""
    import collections
    import concurrent.futures as cf
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool
    # spawn: JAX and torch do not survive fork after they started threads
    new_pool = lambda n: cf.ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"))  # noqa: E731
    pending = [collections.deque(lane) for lane in lane_list]
    active: dict = {}                                   # future -> lane index
    pool = new_pool(min(jobs, len(pending)))
    try:
        while active or any(pending):
            busy = set(active.values())
            for i, lane in enumerate(pending):
                if len(active) >= jobs:
                    break
                if lane and i not in busy:
                    active[pool.submit(_run_seed, lane[0])] = i
                    busy.add(i)
            done, _ = cf.wait(list(active), return_when=cf.FIRST_COMPLETED)
            broken = []
            for fut in done:
                i = active.pop(fut)
                try:
                    rec = fut.result()
                except BrokenProcessPool:
                    broken.append(i)
                    continue
                yield pending[i].popleft(), rec
            if not broken:
                continue
            for fut in list(active):        # the pool is gone: every seed it was running is lost too
                i = active.pop(fut)
                try:
                    rec = fut.result()
                    yield pending[i].popleft(), rec
                except BrokenProcessPool:
                    broken.append(i)
            pool.shutdown(wait=True, cancel_futures=True)
            for i in broken:                # again, alone: only the seed that kills its worker fails
                task = pending[i].popleft()
                with new_pool(1) as alone:
                    try:
                        yield task, alone.submit(_run_seed, task).result()
                    except BrokenProcessPool as e:
                        yield task, _died(task, f"{type(e).__name__}: {e}; it died again when rerun alone")
            pool = new_pool(min(jobs, max(1, sum(1 for lane in pending if lane))))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _aggregate(per_seed: list[dict]) -> tuple[dict, dict, dict]:
    """Mean over seeds of every numeric metric, its std (ddof 1), and the per-seed values."""
    import numpy as np
    by_seed = {r["seed"]: r["metrics"] for r in per_seed}
    first = per_seed[0]["metrics"]
    if len(per_seed) == 1:
        return dict(first), {}, by_seed
    mean, std = {}, {}
    for k, v in first.items():
        vals = [m.get(k) for m in by_seed.values()]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            arr = np.asarray(vals, dtype=np.float64)
            mean[k] = float(arr.mean())
            std[k] = float(arr.std(ddof=1))
        else:
            mean[k] = v if all(x == v for x in vals) else vals
    return mean, std, by_seed


def seed_interval_halfwidth(n: int, level: float = 0.95) -> float:
    """Half-width of the t-interval of a mean over ``n`` seeds, in units of their std (ddof 1)."""
    from scipy.stats import t
    return float(t.ppf(0.5 + level / 2, n - 1) / n ** 0.5)


def _finish(exp, cfg, preset, overrides, final, staging, per_seed, started, t0, device, rank):
    failed = [r for r in per_seed if "error" in r]
    if rank != 0:
        shutil.rmtree(staging, ignore_errors=True)
        if failed:
            return ExperimentFailed(exp.name, failed[0]["message"], None)
        return {"metrics": per_seed[0]["metrics"]}
    if failed:
        text = "\n\n".join(f"seed {r['seed']}:\n{r['error']}" for r in failed)
        failed_dir = R.mark_failed(staging, final, text)
        r = failed[0]
        where = f"{failed_dir}/error.txt" if failed_dir else "(error.txt could not be written either; see above)"
        msg = (f"{exp.name} (seed {r['seed']}) failed: {r['message']}" if r["user_facing"] else
               f"{exp.name} (seed {r['seed']}) failed with {r['message']}\n  traceback: {where} "
               f"(--debug prints it here)")
        return ExperimentFailed(exp.name, msg + f"\n  the previous result in {final} is untouched", failed_dir,
                                None)
    metrics, std, by_seed = _aggregate(per_seed)
    seeds = [r["seed"] for r in per_seed]
    claims = [evaluate_over_seeds(c, by_seed, preset, cfg) for c in exp.claims]
    main = per_seed[0]
    tables = list(main["tables"])
    if len(per_seed) > 1:
        keys = [k for k in std if not k.endswith(("_lo", "_hi"))]
        half = seed_interval_halfwidth(len(seeds))
        tables.insert(0, {"title": f"Metrics over {len(seeds)} training seeds ({', '.join(map(str, seeds))})",
                          "markdown": R.markdown_table(
                              ["metric", "mean", "std", "95 % t-interval over seeds", *[f"seed {s}" for s in seeds]],
                              [[k, metrics[k], std[k], f"[{R.fmt_value(metrics[k] - half * std[k])}, "
                                                        f"{R.fmt_value(metrics[k] + half * std[k])}]",
                                *[by_seed[s][k] for s in seeds]] for k in keys]),
                          "note": f"Tables and figures below are those of seed {seeds[0]}; every seed's are in "
                                  f"seed-<n>/."})
    figures = [dict(f, file=f"{main['dir']}/{f['file']}") for f in main["figures"]]
    record = {
        "experiment": exp.name, "title": exp.title, "source": exp.source, "preset": preset,
        "metrics": metrics, "metrics_std": std, "metrics_by_seed": {str(s): m for s, m in by_seed.items()},
        "reported": dict(exp.reported), "reported_on": exp.reported_on, "claims": claims,
        "tables": tables, "figures": figures, "notes": main["notes"],
        "provenance": {
            "config": to_dict(cfg), "preset": preset, "overrides": dict(overrides or {}),
            "variant": dict(exp.variant_overrides), "seeds": seeds, "seed": seeds[0] if len(seeds) == 1 else seeds,
            "datasets": main["datasets"],
            "stages": {str(r["seed"]): r["stages"] for r in per_seed},
            "device": dict(R.device_description(device), torch_threads=per_seed[0]["threads"]),
            "versions": R.library_versions(), "git": R.git_commit(), "started_utc": started,
            # compute time of this experiment (all seeds); elapsed_s also counts waiting for a free lane
            "wall_time_s": round(sum(r["wall_time_s"] for r in per_seed), 3),
            "seed_wall_time_s": {str(r["seed"]): r["wall_time_s"] for r in per_seed},
            "cpu_time_s": round(sum(r.get("cpu_time_s", 0.0) for r in per_seed), 3),
            "seed_cpu_time_s": {str(r["seed"]): r.get("cpu_time_s") for r in per_seed},
            "elapsed_s": round(time.time() - t0, 3),
            "argv": sys.argv,
        },
    }
    R.write_text_atomic(staging / "tables.md", render_markdown(record, heading="#"))
    R.write_json_atomic(staging / "result.json", record)     # last: its presence marks a complete run
    R.promote(staging, final)
    return record


def run_experiment(name: str, preset: str = "default", *, out_root: str | os.PathLike = "results",
                   data_root: str | None = None, seed: int | None = None, seeds: Sequence[int] | None = None,
                   jobs: int = 1, device: str = "auto", overrides: Mapping[str, Any] | None = None,
                   threads: int = 1) -> dict:
    """Run one experiment (all its seeds, or ``seed`` / ``seeds``) and write its result; raises
    ``ExperimentFailed`` (the previous result untouched) when a seed fails.

    ``threads``: torch CPU threads per process (0: torch's default). One by default: the default
    preset's small models run as fast on one thread as on two (measured on 2 cores), and several
    runs sharing a CPU then do not oversubscribe it. Numbers do not depend on it.
    """
    if seed is not None:
        seeds = [seed]
    out = run_experiments([name], preset, out_root=out_root, data_root=data_root, seeds=seeds, jobs=jobs,
                          device=device, overrides=overrides, threads=threads)[get(name).name]
    if isinstance(out, ExperimentFailed):
        raise out
    return out


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads (0: leave as is), restored afterwards; yields
    the number of threads the block actually runs with."""
    try:
        import torch
    except ImportError:
        yield None
        return
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def render_markdown(record: Mapping[str, Any], heading: str = "##", fig_prefix: str = "") -> str:
    """One experiment's section: reported vs measured, its tables, figures and claim checks."""
    h = heading
    prov = record["provenance"]
    ds = ", ".join(f"{d.get('name')}/{d.get('split')}" for d in prov["datasets"]) or "-"
    seeds = prov.get("seeds", [prov.get("seed")])
    cpu = prov.get("device", {}).get("cpu_model", "?")
    lines = [f"{h} {record['experiment']}: {record.get('title', '')}",
             f"_{record.get('source', '')}. Preset `{record['preset']}`, seed{'s' if len(seeds) > 1 else ''} "
             f"{', '.join(map(str, seeds))}, data {ds}, {prov['wall_time_s']:.0f} s (all seeds), "
             f"commit {str(prov['git'].get('commit'))[:10]}{' (dirty)' if prov['git'].get('dirty') else ''}, "
             f"CPU {cpu}._", ""]
    if prov.get("overrides"):
        lines += [f"**Not the preset's canonical run**: overrides {prov['overrides']}.", ""]
    if record.get("reported"):
        # a difference only where the run measured what the thesis measured (its data, paper preset)
        same = record["preset"] == "paper" and bool(record.get("reported_on"))
        lines += [f"{h}# Measured beside reported", R.reported_vs_measured(
            record["metrics"], record["reported"], record.get("metrics_std"), same_data=same, measured_on=ds,
            reported_on=record.get("reported_on", "")), ""]
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
    for path in sorted(out_root.glob(f"*/{preset}/result.json")):   # canonical runs only (no +set-)
        records.append((path.parent, json.loads(path.read_text())))
    counts: dict[str, int] = {}
    for _, r in records:
        for c in r.get("claims", []):
            counts[c["status"]] = counts.get(c["status"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no claims"
    lines = [f"# Report: preset `{preset}`", "",
             f"{len(records)} experiments; claim checks: {summary}. Numbers in 'measured' columns come "
             f"from the runs below; 'reported' numbers are the thesis' own, copied as printed.", ""]
    lines += [R.markdown_table(["experiment", "title", "claims", "wall time (s, all seeds)", "CPU time (s, all seeds)"],
                               [[r["experiment"], r.get("title", ""),
                                 " ".join(c["status"] for c in r.get("claims", [])) or "-",
                                 r["provenance"]["wall_time_s"], r["provenance"].get("cpu_time_s", "-")]
                                for _, r in records]), ""]
    from common.saliency import collect_benchmark, render_benchmark
    saliency_rows = collect_benchmark(out_root, preset)
    if saliency_rows:
        lines += ["## The saliency benchmark (every chapter's rows)", "",
                  "Every method scored with `common.saliency.score_methods` on the model of the experiment named "
                  "in the last column (AD / AG / AI / insertion / deletion / pointing in %; mean ± std over seeds).",
                  "", render_benchmark(saliency_rows), ""]
    for folder, r in records:
        lines.append(render_markdown(r, heading="##", fig_prefix=f"{folder.relative_to(out_root).as_posix()}/"))
    path = out_root / "REPORT.md"
    out_root.mkdir(parents=True, exist_ok=True)
    R.write_text_atomic(path, "\n".join(lines) + "\n")
    return path
