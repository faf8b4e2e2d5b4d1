"""Training stages of the capacity pipeline, each run once and cached in a work folder:

1. the classifiers f_i (torch, ``common.trainer.fit``; the zoo models at the paper preset are
   loaded, not trained, except our LeNet);
2. pre-training of the SegNet A_S (JAX): per-sample MSE (Eq 5.1), SGD momentum 0.9, lr 0.01
   divided by 5 whenever the mean loss over a window of images has not fallen below the best
   earlier window (5.3.2);
3. fine-tuning of the decoder of A_S against each frozen f_i (5.3.3, Eq 5.2-5.3): encoder and
   classifier frozen, batch norm in inference mode, cross-entropy of f_i on the reconstruction.
   A step is a jitted JAX forward that returns the reconstruction and its VJP closure, the torch
   classifier's loss and input gradient (DLPack, no copy), and a jitted JAX update.

The JAX loops follow the shared trainer's rules: safetensors checkpoints (+ JSON state) written
atomically into the stage's work folder, resume after a kill at the batch where it stopped (batch
order is a function of (seed, epoch)), a finished stage is loaded, a non-finite loss stops with
``NonFiniteLossError``, tqdm progress, deterministic for a seed.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from common.trainer import NonFiniteLossError

from capacity.data import epoch_batches


# --------------------------------------------------------------------------------------------------
# Checkpoints of JAX stages
# --------------------------------------------------------------------------------------------------
def _save_ckpt(work_dir: Path, trees: dict, state: dict) -> None:
    """Pytrees as safetensors + JSON state, atomically (common.checkpoint's folder writer)."""
    from common.bridge import save_pytree
    from common.checkpoint import write_checkpoint_dir

    def write(tmp):
        for name, tree in trees.items():
            save_pytree(tree, tmp / f"{name}.safetensors")
    write_checkpoint_dir(work_dir, write, state)


def _load_ckpt(work_dir: Path, names) -> tuple[dict, dict] | None:
    from common.bridge import load_pytree
    from common.checkpoint import latest_checkpoint_dir
    d = latest_checkpoint_dir(work_dir, tuple(f"{n}.safetensors" for n in names))
    if d is None:
        return None
    return {n: load_pytree(d / f"{n}.safetensors") for n in names}, json.loads((d / "state.json").read_text())


def _bar(total, initial, desc, show):
    if not show:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False,
                mininterval=0.1 if sys.stderr.isatty() else 10.0)


def _check_finite(losses, step, desc, work_dir):
    if not all(math.isfinite(v) for v in losses):
        last = work_dir / "ckpt"
        raise NonFiniteLossError(f"loss became non-finite before step {step} of '{desc}'; stopped. Last good "
                                 f"checkpoint kept: {last if last.exists() else 'none yet'}. Lower the learning rate.")


def _fresh_momentum(tree):
    import jax
    import jax.numpy as jnp
    return jax.tree_util.tree_map(jnp.zeros_like, tree)


# --------------------------------------------------------------------------------------------------
# Pre-training (5.3.2)
# --------------------------------------------------------------------------------------------------
def make_pretrain_step(model, momentum: float):
    """Jitted SGD-momentum step on the per-sample MSE (Eq 5.1, averaged over the batch).
    Momentum as torch / optax.trace: m <- mu m + g; p <- p - lr m."""
    import jax
    import jax.numpy as jnp
    import optax
    tx = optax.trace(decay=momentum)

    def loss_fn(params, batch_stats, x):
        recon, upd = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                 mutable=["batch_stats"])
        per_sample = jnp.mean((recon - x) ** 2, axis=(1, 2, 3))
        return jnp.mean(per_sample), upd["batch_stats"]

    @jax.jit
    def step(params, batch_stats, mom, x_u8, lr):
        x = x_u8.astype(jnp.float32) / 255.0
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, x)
        updates, mom = tx.update(grads, mom)
        params = jax.tree_util.tree_map(lambda p, u: p - lr * u, params, updates)
        return params, batch_stats, mom, loss

    return step, tx


def pretrain_autoencoder(model, source, acfg, work_dir: Path, seed: int, desc: str = "pretrain A_S",
                         progress: bool = True) -> tuple[dict, dict]:
    """Returns (variables, state). ``acfg``: AEConfig (batch_size, lr, momentum, pretrain_images,
    plateau_images, plateau_factor, ckpt_every, log_every)."""
    import jax
    import jax.numpy as jnp
    from capacity.autoencoder import init_segnet

    work_dir = Path(work_dir)
    bs = min(acfg.batch_size, len(source))
    spe = max(1, len(source) // bs)
    total = max(1, math.ceil(acfg.pretrain_images / bs))
    window = max(1, math.ceil(acfg.plateau_images / bs))
    step_fn, tx = make_pretrain_step(model, acfg.momentum)

    loaded = _load_ckpt(work_dir, ("params", "batch_stats", "momentum"))
    if loaded:
        trees, state = loaded
        params, batch_stats = trees["params"], trees["batch_stats"]
        mom = tx.init(params)._replace(trace=trees["momentum"])
        if state.get("done") and state["step"] >= total:
            return {"params": params, "batch_stats": batch_stats}, state
    else:
        v = init_segnet(model, jax.random.PRNGKey(seed), source.image_shape)
        params, batch_stats = v["params"], v["batch_stats"]
        mom = tx.init(params)
        state = {"step": 0, "lr": acfg.lr, "best_window": None, "window_losses": [], "lr_drops": [],
                 "history": []}
    step, lr = state["step"], state["lr"]
    bar = _bar(total, step, desc, progress)
    t0, pending, win = time.time(), [], list(state["window_losses"])

    def save(done):
        st = dict(state, step=step, lr=lr, window_losses=win, done=done, images=step * bs)
        _save_ckpt(work_dir, {"params": params, "batch_stats": batch_stats, "momentum": mom.trace}, st)
        state.update(st)

    while step < total:
        epoch, start = divmod(step, spe)
        for xb, _ in source.batches(epoch_batches(len(source), bs, seed, epoch, start)):
            params, batch_stats, mom, loss = step_fn(params, batch_stats, mom, jnp.asarray(xb), lr)
            pending.append(loss)
            step += 1
            if bar:
                bar.update(1)
            if step % acfg.log_every == 0 or step == total or step % window == 0 or step % acfg.ckpt_every == 0:
                vals = [float(v) for v in jax.device_get(pending)]
                pending = []
                _check_finite(vals, step, desc, work_dir)
                win += vals
                state["history"].append({"step": step, "images": step * bs, "loss": float(np.mean(vals)), "lr": lr,
                                         "img_s": len(vals) * bs / max(time.time() - t0, 1e-9)})
                t0 = time.time()
                if bar:
                    bar.set_postfix(loss=f"{np.mean(vals):.5f}", lr=f"{lr:.2g}")
            if step % window == 0:           # plateau rule over the last window of images
                m = float(np.mean(win))
                if state["best_window"] is not None and m >= state["best_window"]:
                    lr = lr / acfg.plateau_factor
                    state["lr_drops"].append({"step": step, "images": step * bs, "lr": lr})
                state["best_window"] = m if state["best_window"] is None else min(m, state["best_window"])
                win = []
            if step % acfg.ckpt_every == 0 and step < total:
                save(False)
            if step >= total:
                break
    if pending:
        vals = [float(v) for v in jax.device_get(pending)]
        _check_finite(vals, step, desc, work_dir)
    save(True)
    if bar:
        bar.close()
    return {"params": params, "batch_stats": batch_stats}, state


# --------------------------------------------------------------------------------------------------
# Fine-tuning the decoder (5.3.3)
# --------------------------------------------------------------------------------------------------
def make_finetune_fns(model, momentum: float):
    """(forward, update), both jitted. forward(dec_params, variables, x_u8) -> (recon, vjp_fn): the
    encoder (frozen) and the decoder in inference mode; vjp_fn is a pytree that crosses jit.
    update(vjp_fn, g, dec_params, mom, lr) -> (dec_params, mom)."""
    import jax
    import jax.numpy as jnp
    import optax
    tx = optax.trace(decay=momentum)

    @jax.jit
    def forward(dec_params, variables, x_u8):
        x = x_u8.astype(jnp.float32) / 255.0
        z, masks = model.apply(variables, x, method="encode")
        z, masks = jax.lax.stop_gradient((z, masks))

        def dec(p):
            params = dict(variables["params"], decoder=p)
            return model.apply({"params": params, "batch_stats": variables["batch_stats"]}, z, masks,
                               method="decode")
        return jax.vjp(dec, dec_params)

    @jax.jit
    def update(vjp_fn, g, dec_params, mom, lr):
        (grads,) = vjp_fn(g)
        upd, mom = tx.update(grads, mom)
        return jax.tree_util.tree_map(lambda p, u: p - lr * u, dec_params, upd), mom

    return forward, update, tx


def finetune_decoder(model, variables: dict, classifier, source, fcfg, work_dir: Path, seed: int,
                     desc: str = "finetune", progress: bool = True, device=None, fns=None) -> tuple[dict, dict]:
    """Fine-tune the decoder of ``variables`` (A_S) with the cross-entropy of the frozen torch
    ``classifier`` on the reconstruction. Returns (variables of A_i, state)."""
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F
    from common.bridge import jax_to_torch, torch_to_jax

    work_dir = Path(work_dir)
    classifier = classifier.eval()
    for p in classifier.parameters():
        p.requires_grad_(False)
    bs = min(fcfg.finetune_batch_size, len(source))
    spe = max(1, len(source) // bs)
    total = max(1, fcfg.finetune_epochs * spe)
    forward, update, tx = fns or make_finetune_fns(model, fcfg.momentum)

    loaded = _load_ckpt(work_dir, ("decoder", "momentum"))
    if loaded:
        trees, state = loaded
        dec = trees["decoder"]
        mom = tx.init(dec)._replace(trace=trees["momentum"])
        if state.get("done") and state["step"] >= total:
            return _with_decoder(variables, dec), state
    else:
        dec = variables["params"]["decoder"]
        mom = tx.init(dec)
        state = {"step": 0, "history": []}
    step, lr = state["step"], fcfg.finetune_lr
    bar = _bar(total, step, desc, progress)
    pending, t0 = [], time.time()
    dev = device or next(classifier.parameters()).device   # where the classifier lives

    def save(done):
        state.update(step=step, done=done)
        _save_ckpt(work_dir, {"decoder": dec, "momentum": mom.trace}, state)

    while step < total:
        epoch, start = divmod(step, spe)
        for xb, yb in source.batches(epoch_batches(len(source), bs, seed, epoch, start)):
            recon, vjp_fn = forward(dec, variables, jnp.asarray(xb))
            xt = jax_to_torch(recon).to(dev).permute(0, 3, 1, 2).detach().requires_grad_(True)
            yt = torch.as_tensor(yb, device=dev)
            with torch.enable_grad():
                logits = classifier(xt)
                loss = F.cross_entropy(logits.float(), yt)
                (gx,) = torch.autograd.grad(loss, [xt])
            g = torch_to_jax(gx.permute(0, 2, 3, 1).contiguous())
            dec, mom = update(vjp_fn, g, dec, mom, lr)
            pending.append(loss.detach())
            step += 1
            if bar:
                bar.update(1)
            if step % fcfg.log_every == 0 or step == total:
                vals = [float(v) for v in pending]
                pending = []
                _check_finite(vals, step, desc, work_dir)
                state["history"].append({"step": step, "loss": float(np.mean(vals)),
                                         "img_s": len(vals) * bs / max(time.time() - t0, 1e-9)})
                t0 = time.time()
                if bar:
                    bar.set_postfix(loss=f"{np.mean(vals):.4f}")
            if step % fcfg.ckpt_every == 0 and step < total:
                vals = [float(v) for v in pending]
                _check_finite(vals, step, desc, work_dir)
                save(False)
            if step >= total:
                break
    save(True)
    if bar:
        bar.close()
    return _with_decoder(variables, dec), state


def _with_decoder(variables, dec):
    return {"params": dict(variables["params"], decoder=dec), "batch_stats": variables["batch_stats"]}


# --------------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------------
def make_reconstruct(model):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def rec(variables, x_u8):
        return model.apply(variables, x_u8.astype(jnp.float32) / 255.0, train=False)
    return rec
