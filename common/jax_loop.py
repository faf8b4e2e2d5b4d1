"""The one step loop for JAX training: checkpoints, exact resume, progress, and the batch sharded
over every JAX device.

    state, info = run_steps(step, {"params": p, "opt": tx.init(p)}, batches_for, total_steps=400,
                            work_dir="results/_work/foo", steps_per_epoch=50, ckpt_every=100,
                            log_every=25, images_per_step=32, desc="pretrain")

``state`` is a dict of pytrees (params, optimiser state, batch stats ...); ``step(state, batch) ->
(state, loss)`` is one update (jit it yourself, or make it an eager mix of jitted JAX and torch);
``batches_for(epoch, start)`` yields the batches of ``epoch`` from step ``start`` on.

The rules are common.trainer's, for JAX:
- Batch order is a function of (seed, epoch) alone (``epoch_batches``), so a run resumed at any step
  sees exactly the batches an uninterrupted run would, and ends bit-identical to it.
- Every ``ckpt_every`` steps and at the end, each entry of ``state`` is written as
  ``<name>.safetensors`` (common.bridge.save_pytree) with ``state.json`` (step, done, history, the
  caller's ``host_state``) into ``<work_dir>/ckpt`` atomically (common.checkpoint). A rerun with the
  same ``work_dir`` restores the pytrees into the exact structure of the ``state`` it is given
  (optax states, batch stats) and resumes at the checkpoint's step; a finished run is loaded, not
  retrained. A checkpoint that cannot be read raises ``CheckpointError`` ("delete <work_dir> to retrain").
- Losses stay on the device between sync points (every ``log_every`` steps, each checkpoint, the
  last step, and every ``sync_every`` steps for a caller's schedule); there they are fetched, checked
  (a non-finite one raises ``NonFiniteLossError`` before anything is written, so the last good
  checkpoint stays) and summarised as one history record.
- Ctrl-C raises ``common.errors.RunInterrupted`` naming the folder and the step a rerun resumes from.
- Only process 0 writes (torchrun's ``RANK``, SLURM's ``SLURM_PROCID``) and shows progress
  (common.progress): a bar with loss and img/s on a terminal, one line per epoch in a log file.

Scale-out: with more than one JAX device the batch is split over a 1-D mesh (axis ``"batch"``) and
the state is replicated, so XLA all-reduces the gradients and N devices compute the update one
device would (up to float summation order). Several processes (torchrun, SLURM) join through
``maybe_init_distributed()``, which ``run_steps`` calls; call it yourself before any other JAX work
when the caller computes with JAX first (jax.distributed must start before the backends do).
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from common.errors import CheckpointError, NonFiniteLossError, RunInterrupted
from common.progress import progress as show_progress   # `progress` is run_steps' on/off argument

_RESERVED = ("step", "done", "images", "history")


# --------------------------------------------------------------------------------------------------
# Batch order
# --------------------------------------------------------------------------------------------------
def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, start: int = 0) -> list[np.ndarray]:
    """Index lists of one epoch (seeded permutation, ragged last batch dropped), from step ``start``."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    steps = max(1, n // batch_size)
    return [perm[s * batch_size:(s + 1) * batch_size] for s in range(start, steps)]


# --------------------------------------------------------------------------------------------------
# Processes and devices
# --------------------------------------------------------------------------------------------------
_distributed_started = False


def process_rank() -> int:
    """This process's rank: torchrun's RANK, else SLURM's SLURM_PROCID, else 0."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))


def maybe_init_distributed() -> bool:
    """Join the other processes of a multi-process launch with ``jax.distributed.initialize``, once.

    torchrun (WORLD_SIZE > 1 with MASTER_ADDR / MASTER_PORT): JAX's coordinator listens on
    MASTER_PORT + 1 (torch's store may hold MASTER_PORT; ``JAX_COORDINATOR_PORT`` overrides) and each
    process takes the GPU of its LOCAL_RANK. SLURM (SLURM_NTASKS > 1): JAX reads the job itself.
    Single-process runs call nothing. Returns whether the processes are joined.
    """
    global _distributed_started
    if _distributed_started:
        return True
    import jax
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        port = int(os.environ.get("JAX_COORDINATOR_PORT", int(os.environ["MASTER_PORT"]) + 1))
        kwargs = dict(coordinator_address=f"{os.environ['MASTER_ADDR']}:{port}", num_processes=world,
                      process_id=int(os.environ["RANK"]))
        if "LOCAL_RANK" in os.environ:
            kwargs["local_device_ids"] = [int(os.environ["LOCAL_RANK"])]
    elif int(os.environ.get("SLURM_NTASKS", 1)) > 1:
        kwargs = {}
    else:
        return False
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        raise RuntimeError(f"jax.distributed.initialize failed ({e}). It must run before any other JAX "
                           f"computation: call common.jax_loop.maybe_init_distributed() at the start.") from e
    _distributed_started = True
    return True


class _Placement:
    """Where arrays live: one device as they are, or a 1-D ``"batch"`` mesh over all JAX devices with
    the state replicated and each batch split along its first axis."""

    def __init__(self, shard: bool):
        import jax
        devices = jax.devices()
        self.mesh = None
        if shard and len(devices) > 1:
            from jax.sharding import Mesh
            self.mesh = Mesh(np.array(devices), ("batch",))
        self.n_devices = len(devices) if self.mesh is not None else 1
        self._warned = False

    def _global(self, x, spec):
        # every process holds the whole (identical) value and supplies the slices of its own devices
        import jax
        from jax.sharding import NamedSharding
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, NamedSharding(self.mesh, spec), lambda idx: x[idx])

    def state(self, tree):
        if self.mesh is None:
            return tree
        import jax
        from jax.sharding import PartitionSpec as P
        return jax.tree_util.tree_map(lambda x: self._global(_host_array(x), P()), tree)

    def batch(self, tree):
        import jax
        import jax.numpy as jnp
        if self.mesh is None:
            return jax.tree_util.tree_map(jnp.asarray, tree)
        from jax.sharding import PartitionSpec as P
        leaves = jax.tree_util.tree_leaves(tree)
        if all(np.ndim(x) >= 1 and np.shape(x)[0] % self.n_devices == 0 for x in leaves):
            return jax.tree_util.tree_map(lambda x: self._global(x, P("batch")), tree)
        if not self._warned:   # correct either way: a replicated batch is the same update, unsplit
            self._warned = True
            warnings.warn(f"batch of {np.shape(leaves[0])[0]} is not divisible by the {self.n_devices} JAX "
                          f"devices: it is replicated, not split (choose a batch size that divides)",
                          RuntimeWarning, stacklevel=3)
        return jax.tree_util.tree_map(lambda x: self._global(x, P()), tree)


def _host_array(x) -> np.ndarray:
    """A leaf as numpy; a replicated array spread over processes is read from a local copy."""
    import jax
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------
def _save_tree(tree, path: Path) -> None:
    import jax
    from common.bridge import save_pytree
    save_pytree(jax.tree_util.tree_map(_host_array, tree), path)


def _load_tree(path: Path, like):
    from common.bridge import load_pytree
    return load_pytree(path, like=like)   # the template's exact structure; a mismatch raises ValueError


def _load_checkpoint(work_dir: Path, template: Mapping[str, Any]) -> tuple[dict, dict] | None:
    from common.checkpoint import latest_checkpoint_dir
    d = latest_checkpoint_dir(work_dir, tuple(f"{name}.safetensors" for name in template))
    if d is None:
        return None
    try:
        info = json.loads((d / "state.json").read_text())
        trees = {name: _load_tree(d / f"{name}.safetensors", like) for name, like in template.items()}
        int(info["step"])
    except Exception as e:
        raise CheckpointError(f"checkpoint {d} cannot be loaded ({type(e).__name__}: {e}); "
                              f"delete {work_dir} to retrain.") from e
    return trees, info


def _write_checkpoint(work_dir: Path, state: Mapping[str, Any], info: dict) -> None:
    from common.checkpoint import write_checkpoint_dir

    def write(tmp: Path):
        for name, tree in state.items():
            _save_tree(tree, tmp / f"{name}.safetensors")
    write_checkpoint_dir(work_dir, write, info)


def _last_good(work_dir: Path) -> str:
    from common.checkpoint import latest_checkpoint_dir
    d = latest_checkpoint_dir(work_dir)
    return f"{d} (step {_checkpoint_step(work_dir)})" if d else "none yet"


def _checkpoint_step(work_dir: Path) -> int:
    """The step the last complete checkpoint holds (0 when there is none)."""
    from common.checkpoint import checkpoint_step, latest_checkpoint_dir
    d = latest_checkpoint_dir(work_dir)
    return (checkpoint_step(d) or 0) if d else 0


def _non_finite(message: str):
    return NonFiniteLossError(message)


def _state_is_finite(state) -> bool:
    import jax
    import jax.numpy as jnp
    checks = [jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(state)
              if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
    return bool(all(jax.device_get(checks)))


def _fetch(losses: list) -> list[float]:
    """Device scalars (jax or torch) to floats, starting every jax transfer before waiting on any."""
    for v in losses:
        if hasattr(v, "copy_to_host_async"):
            v.copy_to_host_async()
    return [float(v) for v in losses]


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------
def run_steps(step_fn: Callable[[Any, Any], tuple[Any, Any]], state: Mapping[str, Any],
              batches_for: Callable[[int, int], Iterable], total_steps: int, work_dir: str | os.PathLike, *,
              steps_per_epoch: int, ckpt_every: int, log_every: int, images_per_step: int,
              desc: str = "train", progress: bool = True,
              on_log: Callable[[int, list[float]], Mapping | None] | None = None,
              host_state: dict | None = None, sync_every: int = 0,
              place_batch: bool = True) -> tuple[dict, dict]:
    """Run ``step_fn`` until ``total_steps``, resuming from / checkpointing into ``work_dir``.

    state: dict name -> pytree; the initial values, and the template a checkpoint is restored into.
    batches_for(epoch, start): the batches of ``epoch`` from its step ``start`` (``steps_per_epoch``
        of them from 0); each is placed on the devices (``place_batch``) and given to ``step_fn``.
    on_log(step, losses): called at each sync point with the float losses since the previous one;
        may change ``host_state``; the dict it returns joins that point's history record.
    host_state: JSON-able host-side state of the caller (a plateau rule's lr, say), saved in every
        checkpoint and, on resume, updated in place before the first step.
    sync_every: extra sync points for ``on_log`` (0: none).
    place_batch: False hands the batches to ``step_fn`` as ``batches_for`` yielded them (host
        arrays: a step that gives them to torch places them itself; no mesh then).

    Returns (state, info): info is the checkpoint's JSON (step, done, images, history, host_state's
    keys) plus ``resumed_from`` (0 fresh, ``total_steps`` when a finished run was loaded) and
    ``devices`` (how many the batch was split over).
    """
    work_dir = Path(work_dir)
    host_state = host_state if host_state is not None else {}
    clash = set(host_state) & set(_RESERVED)
    if clash:
        raise ValueError(f"host_state keys {sorted(clash)} are the loop's own")
    maybe_init_distributed()
    is_main = process_rank() == 0
    placement = _Placement(shard=place_batch)

    loaded = _load_checkpoint(work_dir, state)
    if loaded:
        trees, info = loaded
        state = dict(trees)
        host_state.update({k: v for k, v in info.items() if k not in _RESERVED})
        step, history = int(info["step"]), list(info.get("history", []))
        if info.get("done") and step >= total_steps:
            return state, dict(info, resumed_from=step, devices=placement.n_devices)
    else:
        state, step, history = dict(state), 0, []
    resumed_from = step
    state = placement.state(state)

    def info_now(done: bool) -> dict:
        return dict(host_state, step=step, done=done, images=step * images_per_step, history=history)

    def checkpoint(done: bool):
        if not _state_is_finite(state):
            raise _non_finite(f"the state of '{desc}' became non-finite by step {step}; stopped. Last good "
                              f"checkpoint kept: {_last_good(work_dir)}.")
        if is_main:
            _write_checkpoint(work_dir, state, info_now(done))

    bar = show_progress(desc=desc, total=total_steps, initial=step, unit="step", enabled=is_main and progress,
                        leave=False)
    pending: list = []
    window_t = time.time()

    def sync():
        nonlocal pending, window_t
        losses, pending = _fetch(pending), []
        for i, v in enumerate(losses):
            if not math.isfinite(v):
                bad = step - len(losses) + i
                raise _non_finite(f"loss became {v} at step {bad} of '{desc}'; stopped. Last good checkpoint "
                                  f"kept: {_last_good(work_dir)}. Lower the "
                                  f"learning rate or check the data.")
        rec = {"step": step, "images": step * images_per_step, "loss": float(np.mean(losses))}
        rec.update((on_log(step, losses) if on_log else None) or {})
        rec["img_s"] = len(losses) * images_per_step / max(time.time() - window_t, 1e-9)
        history.append(rec)
        window_t = time.time()
        bar.set_postfix(**{k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in rec.items()
                           if k not in ("step", "images")})

    try:
        while step < total_steps:
            epoch, start = divmod(step, steps_per_epoch)
            for batch in batches_for(epoch, start):
                if place_batch:
                    batch = placement.batch(batch)
                state, loss = step_fn(state, batch)
                pending.append(loss)
                step += 1
                bar.update(1)
                due_ckpt = step % ckpt_every == 0 and step < total_steps
                if (step % log_every == 0 or step == total_steps or due_ckpt
                        or (sync_every and step % sync_every == 0)):
                    sync()
                if due_ckpt:
                    checkpoint(done=False)
                if step % steps_per_epoch == 0:
                    bar.epoch_done(step // steps_per_epoch, math.ceil(total_steps / steps_per_epoch))
                if step >= total_steps:
                    break
        checkpoint(done=True)
    except KeyboardInterrupt:
        resume = _checkpoint_step(work_dir)
        raise RunInterrupted(f"'{desc}' interrupted at step {step} of {total_steps}. Rerun the same command to "
                             f"resume from step {resume} (the checkpoint in {work_dir}).") from None
    finally:
        bar.close()
    return state, dict(info_now(True), resumed_from=resumed_from, devices=placement.n_devices)
