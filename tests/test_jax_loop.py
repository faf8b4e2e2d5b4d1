"""common.jax_loop.run_steps: exact resume after a real kill, finished stages loaded, NaN stops with
the last good checkpoint kept, 2 devices = 1 device, only rank 0 writes, optax / batch-stats
structure kept through checkpoints, corrupt checkpoints named.

The tiny problem (Dense -> BatchNorm -> Dense regression, Adam) is defined here as functions so
that the subprocesses (SIGKILL, forced host devices) run exactly the same code."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from common.errors import CheckpointError, RunInterrupted  # noqa: E402
from common.jax_loop import epoch_batches, run_steps  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
N, BS, SPE, TOTAL = 32, 8, 4, 10          # 10 steps cross two epoch boundaries
RUN = dict(steps_per_epoch=SPE, ckpt_every=3, log_every=2, images_per_step=BS, progress=False)


def tiny_problem():
    """(jitted step, initial state, batches_for) of a small regression with batch norm and Adam."""
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            # no bias before batch norm: its gradient is exactly 0 in exact arithmetic, rounding noise in
            # floats, which Adam would blow up to +-lr steps of either sign
            h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(8, use_bias=False)(x))
            return nn.Dense(1)(nn.relu(h))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], np.float32)).astype(np.float32)
    model, tx = Net(), optax.adam(1e-2)
    v = model.init(jax.random.PRNGKey(0), x[:2], train=False)
    state = {"params": v["params"], "batch_stats": v["batch_stats"], "opt": tx.init(v["params"])}

    @jax.jit
    def step(state, batch):
        xb, yb = batch

        def loss_fn(p):
            out, upd = model.apply({"params": p, "batch_stats": state["batch_stats"]}, xb, train=True,
                                   mutable=["batch_stats"])
            return jnp.mean((out - yb) ** 2), upd["batch_stats"]
        (loss, bstats), g = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        upd, opt = tx.update(g, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], upd), "batch_stats": bstats, "opt": opt}, loss

    def batches_for(epoch, start):
        for idx in epoch_batches(N, BS, seed=0, epoch=epoch, start=start):
            yield x[idx], y[idx]
    return step, state, batches_for


def _run(work_dir, total=TOTAL, step_wrap=None, **kw):
    step, state, batches_for = tiny_problem()
    return run_steps(step_wrap(step) if step_wrap else step, state, batches_for, total, work_dir, **{**RUN, **kw})


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(la, lb))


def _losses(info):
    return [(r["step"], r["loss"]) for r in info["history"]]


def _python(code: str, env_extra=None, check=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **(env_extra or {}))
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"subprocess failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


# --- run in subprocesses ----------------------------------------------------------------------------
def kill_self_at(work_dir: str, step: int) -> None:
    """Train, and SIGKILL this very process at the first sync point at or after ``step``."""
    def on_log(s, losses):
        if s >= step:
            os.kill(os.getpid(), signal.SIGKILL)
    _run(work_dir, on_log=on_log)


def two_devices_vs_one(work_root: str) -> None:
    """Print (as JSON) whether 2 devices split the batch and gave the one-device update."""
    assert len(jax.devices()) == 2
    seen = []

    def record_sharding(step):
        def wrapped(state, batch):
            seen.append(len(batch[0].sharding.device_set))
            return step(state, batch)
        return wrapped
    two, info2 = _run(Path(work_root) / "two", total=6, step_wrap=record_sharding, ckpt_every=1000, log_every=1000)
    one, info1 = _run(Path(work_root) / "one", total=6, place_batch=False, ckpt_every=1000, log_every=1000)
    la, lb = jax.tree_util.tree_leaves(two), jax.tree_util.tree_leaves(one)
    print(json.dumps({"devices": [info2["devices"], info1["devices"]], "batch_devices": seen,
                      "max_abs_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(la, lb)),
                      "allclose": all(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
                                      for a, b in zip(la, lb)),
                      "loss2": _losses(info2), "loss1": _losses(info1)}))


# --- tests --------------------------------------------------------------------------------------------
def test_epoch_batches_are_a_function_of_seed_and_epoch():
    a = epoch_batches(10, 3, seed=5, epoch=2)
    assert len(a) == 3 and all(len(i) == 3 for i in a)
    assert all(np.array_equal(u, v) for u, v in zip(a, epoch_batches(10, 3, seed=5, epoch=2)))
    assert all(np.array_equal(u, v) for u, v in zip(a[1:], epoch_batches(10, 3, seed=5, epoch=2, start=1)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(epoch_batches(10, 3, seed=5, epoch=3)))


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    full, info = _run(tmp_path / "full")
    assert info["step"] == TOTAL and info["done"] and info["resumed_from"] == 0
    p = _python(f"from tests.test_jax_loop import kill_self_at; kill_self_at({str(tmp_path / 'killed')!r}, 7)",
                check=False)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    saved = json.loads((tmp_path / "killed" / "ckpt" / "state.json").read_text())
    assert saved["step"] == 6 and not saved["done"]
    resumed, rinfo = _run(tmp_path / "killed")
    assert rinfo["resumed_from"] == 6
    assert _leaves_equal(full, resumed)            # params, batch stats and Adam moments, bit for bit
    assert _losses(rinfo) == _losses(info)


def test_ctrl_c_raises_run_interrupted_naming_folder_and_resume_step(tmp_path):
    calls = []

    def interrupt_at_8(step):
        def wrapped(state, batch):
            calls.append(1)
            if len(calls) == 8:
                raise KeyboardInterrupt
            return step(state, batch)
        return wrapped
    with pytest.raises(RunInterrupted, match=r"resume from step 6") as e:
        _run(tmp_path / "w", step_wrap=interrupt_at_8)
    assert str(tmp_path / "w") in str(e.value) and isinstance(e.value, KeyboardInterrupt)
    resumed, _ = _run(tmp_path / "w")
    assert _leaves_equal(resumed, _run(tmp_path / "full")[0])


def test_finished_stage_is_loaded_without_stepping(tmp_path):
    full, _ = _run(tmp_path)

    def must_not_step(step):
        def wrapped(state, batch):
            raise AssertionError("a finished stage was stepped")
        return wrapped
    again, info = _run(tmp_path, step_wrap=must_not_step)
    assert info["resumed_from"] == TOTAL and _leaves_equal(full, again)
    longer, linfo = _run(tmp_path, total=TOTAL + 2)     # asking for more steps continues from the end
    assert linfo["resumed_from"] == TOTAL and linfo["step"] == TOTAL + 2 and not _leaves_equal(full, longer)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    from common.trainer import NonFiniteLossError
    calls = []

    def nan_at_5(step):
        def wrapped(state, batch):
            calls.append(1)
            state, loss = step(state, batch)
            if len(calls) >= 5:
                state = jax.tree_util.tree_map(lambda a: a * jnp.nan if jnp.issubdtype(a.dtype, jnp.floating) else a,
                                               state)
                loss = loss * jnp.nan
            return state, loss
        return wrapped
    with pytest.raises(NonFiniteLossError, match=r"at step 4 .*step 3"):
        _run(tmp_path / "nan", step_wrap=nan_at_5)
    saved = json.loads((tmp_path / "nan" / "ckpt" / "state.json").read_text())
    assert saved["step"] == 3
    kept, info = _run(tmp_path / "nan", total=3)        # the kept checkpoint: step 3 of a clean run
    assert info["resumed_from"] == 3 and _leaves_equal(kept, _run(tmp_path / "clean", total=3)[0])


def test_non_finite_state_is_never_checkpointed(tmp_path):
    from common.trainer import NonFiniteLossError

    calls = []

    def nan_params_at_3(step):      # update 3 breaks the weights; its loss (computed before) is fine
        def wrapped(state, batch):
            calls.append(1)
            state, loss = step(state, batch)
            if len(calls) == 3:
                state = dict(state, params=jax.tree_util.tree_map(lambda a: a * jnp.nan, state["params"]))
            return state, loss
        return wrapped
    with pytest.raises(NonFiniteLossError, match="state .* non-finite"):
        _run(tmp_path, step_wrap=nan_params_at_3)
    assert not (tmp_path / "ckpt").exists()


def test_two_devices_give_the_one_device_update(tmp_path):
    p = _python(f"from tests.test_jax_loop import two_devices_vs_one; two_devices_vs_one({str(tmp_path)!r})",
                env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"})
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["devices"] == [2, 1] and set(r["batch_devices"]) == {2}      # the batch really was split
    assert r["allclose"], r["max_abs_diff"]
    np.testing.assert_allclose([l for _, l in r["loss2"]], [l for _, l in r["loss1"]], rtol=1e-5)


def test_only_rank_0_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    other, info = _run(tmp_path / "rank1")
    assert not (tmp_path / "rank1").exists() and info["step"] == TOTAL
    monkeypatch.setenv("RANK", "0")
    main, _ = _run(tmp_path / "rank0")
    assert (tmp_path / "rank0" / "ckpt" / "state.json").exists() and _leaves_equal(main, other)


def test_optax_adam_and_batch_stats_keep_their_structure(tmp_path):
    _, template, _ = tiny_problem()
    _run(tmp_path, total=4)                              # checkpoint at 3, done at 4
    given = []

    def record_state(step):
        def wrapped(state, batch):
            given.append(state)
            return step(state, batch)
        return wrapped
    state, info = _run(tmp_path, total=6, step_wrap=record_state)
    assert info["resumed_from"] == 4
    want = jax.tree_util.tree_structure(template)
    assert jax.tree_util.tree_structure(given[0]) == want and jax.tree_util.tree_structure(state) == want
    adam = given[0]["opt"][0]
    assert type(adam) is optax.ScaleByAdamState and adam.count.shape == () and adam.count.dtype == jnp.int32
    assert int(adam.count) == 4 and set(given[0]["batch_stats"]["BatchNorm_0"]) == {"mean", "var"}


def test_corrupt_checkpoint_names_the_folder_to_delete(tmp_path):
    _run(tmp_path, total=4)
    (tmp_path / "ckpt" / "params.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=f"delete {tmp_path} to retrain"):
        _run(tmp_path, total=6)


def test_maybe_init_distributed_only_for_multi_process_launches(monkeypatch):
    from common import jax_loop
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax_loop, "_distributed_started", False)
    for k in ("WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "JAX_COORDINATOR_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert jax_loop.maybe_init_distributed() is False and calls == []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert jax_loop.maybe_init_distributed() is True
    assert calls == [{"coordinator_address": "10.0.0.1:29501", "num_processes": 2, "process_id": 1,
                      "local_device_ids": [1]}]
    assert jax_loop.maybe_init_distributed() is True and len(calls) == 1      # once


def test_progress_in_a_log_file_is_one_line_per_epoch(tmp_path, capfd):
    """stderr that is not a terminal: no carriage-return bar frames; a start line, one line per
    epoch (10 steps of 4 per epoch: epochs 1 and 2 end inside the run, the third is cut short) with
    the loss, an end line."""
    _run(tmp_path, progress=True, desc="tiny")
    err = capfd.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("tiny: ")]
    assert [ln.split(" done")[0] for ln in lines if "epoch" in ln] == ["tiny: epoch 1/3", "tiny: epoch 2/3"], err
    assert all("loss" in ln for ln in lines if "epoch" in ln) and len(lines) == 4, err
