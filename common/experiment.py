"""Running experiments: one seed in one process, seeds over processes, their aggregation, the result.

Each seed is a full run of the experiment's function; the result holds every seed's metrics,
their mean and std, and claims judged over all seeds (``common.claims.evaluate_over_seeds``).
Seeds run as parallel processes with ``jobs > 1``: one lane per (chapter, seed), so that
experiments of a chapter that share a training stage (same seed, same work folder) never run at
the same time; a chapter that reuses another chapter's stages registers with ``lane=<that
chapter>`` and joins its lanes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from common import results as R
from common.claims import evaluate_over_seeds
from common.config import ConfigError, config_hash, to_dict
from common.context import RunContext
from common.devices import check_device
from common.registry import _EXPERIMENTS, get
from common.report import render_markdown


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


def result_dir(out_root: Path, name: str, preset: str, overrides: Mapping[str, Any] | None = None,
               seeds: Sequence[int] | None = None) -> Path:
    """``<out>/<exp>/<preset>`` holds only the preset's own run: its seed set (``seeds`` None or the
    same set) and no ``--set`` overrides. Any other run gets its own folder, so that ``--seed 1`` or a
    quick tweak never displaces the canonical result: ``<preset>+seeds-1-3`` for another seed set,
    ``<preset>+set-<hash>`` for overrides, ``<preset>+seeds-1-3+set-<hash>`` for both."""
    folder = preset
    if seeds is not None and sorted(seeds) != sorted(get(name).seeds_for(preset)):
        folder += "+seeds-" + "-".join(map(str, sorted(seeds)))
    if overrides:
        folder += f"+set-{config_hash(dict(overrides), 8)}"
    return Path(out_root) / name / folder


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
    finally:
        ctx.close()   # the seed's stage folders are free for the next writer
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
    check_device(device)
    if seeds is not None and (not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"seeds must be distinct integers >= 0, got {list(seeds)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = torch's default), got {threads}")
    out_root = Path(out_root)
    rank = int(os.environ.get("RANK", 0))
    if rank == 0:
        R.ensure_writable(out_root)                 # a read-only --out: one line now, not after training
        R.recover_staging(out_root)
    plan, lanes = {}, {}
    for e in exps:
        e_seeds = tuple(seeds) if seeds is not None else e.seeds_for(preset)
        final = result_dir(out_root, e.name, preset, overrides, e_seeds)
        staging = R.staging_dir(final)
        staging.mkdir(parents=True, exist_ok=True)
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
    """Aggregate the seeds, write the result and promote it; the outcome is the record or an
    ExperimentFailed. No Exception escapes (Ctrl-C does): a full disk, a read-only folder or a bug while writing
    the result is one message and error.txt, like a failed seed, so ``--all`` goes on."""
    doing = ["aggregating the seeds' metrics"]          # what the finish was doing, for the message
    try:
        return _write_result(exp, cfg, preset, overrides, final, staging, per_seed, started, t0, device, rank, doing)
    except Exception as e:
        return _finish_failed(exp.name, final, staging, e, doing[-1])


def _finish_failed(name: str, final: Path, staging: Path, error: Exception, doing: str) -> ExperimentFailed:
    """One message for a failure while writing a result, naming what was being written and the fix."""
    os_error = R.os_error_in(error)
    code = os_error.errno if os_error is not None else None
    if code in (errno.ENOSPC, errno.EDQUOT):
        msg, user = f"{name} failed: no space left on the device while {doing}: free space and rerun", True
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        msg, user = (f"{name} failed: cannot write while {doing} ({os_error.strerror}): make "
                     f"{final.parent} writable (or choose another --out) and rerun"), True
    else:
        msg, user = f"{name} failed while {doing} with {type(error).__name__}: {error}", False
    failed_dir = R.mark_failed(staging, final, f"while {doing}:\n{traceback.format_exc()}") if staging.exists() else None
    if not user:
        where = f"{failed_dir}/error.txt" if failed_dir else "(error.txt could not be written either; see above)"
        msg += f"\n  traceback: {where} (--debug prints it here)"
    if final.exists():
        msg += f"\n  the previous result in {final} is untouched"
    return ExperimentFailed(name, msg, failed_dir, error)


def _judge(claim, by_seed: Mapping[int, Mapping[str, Any]], preset: str, cfg) -> dict:
    """A claim's verdict over the seeds; a check that raises is an ERROR whose detail names the
    exception, and the other claims and the result are still written."""
    try:
        return evaluate_over_seeds(claim, by_seed, preset, cfg)
    except Exception as e:
        return {"claim": claim.text, "source": claim.source, "status": "ERROR",
                "detail": f"the check raised {type(e).__name__}: {e}"}


def _config_as_run(cfg, seeds: Sequence[int], device: str) -> dict:
    """The config as the seeds' runs used it: a field the run sets (``param(run_level="--seed")``,
    ``"--device"``; ``ctx.train_config`` fills them) holds the run's value, not the dataclass
    default: the seed, or the list of seeds when there are several, and the device asked for."""
    run_values = {"--seed": seeds[0] if len(seeds) == 1 else list(seeds), "--device": device}
    out = to_dict(cfg)

    def fill(node, d):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                fill(value, d[f.name])
            elif f.metadata.get("run_level") in run_values:
                d[f.name] = run_values[f.metadata["run_level"]]
    fill(cfg, out)
    return out


def _write_result(exp, cfg, preset, overrides, final, staging, per_seed, started, t0, device, rank, doing):
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
    doing.append("judging the claims")
    claims = [_judge(c, by_seed, preset, cfg) for c in exp.claims]
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
            "config": _config_as_run(cfg, seeds, device), "preset": preset, "overrides": dict(overrides or {}),
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
    doing.append(f"writing {staging / 'tables.md'}")
    R.write_text_atomic(staging / "tables.md", render_markdown(record, heading="#"))
    doing.append(f"writing {staging / 'result.json'}")
    R.write_json_atomic(staging / "result.json", record)     # last: its presence marks a complete run
    doing.append(f"moving {staging} into place as {final}")
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
