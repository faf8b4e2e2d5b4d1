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

Both JAX stages run on ``common.jax_loop.run_steps`` (safetensors checkpoints + JSON state written
atomically into the stage's work folder, resume at the exact batch, a finished stage loaded, a
non-finite loss stops with ``NonFiniteLossError``, tqdm progress, deterministic for a seed). What is
left here is the capacity-specific part: the plateau lr rule and the fine-tuning step through the
torch classifier. Checkpoint files are those of the earlier private loops (``params``,
``batch_stats``, ``momentum`` = the momentum trace; ``decoder``, ``momentum``), so their work folders
still load.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from common.jax_loop import epoch_batches, maybe_init_distributed, run_steps


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


class PlateauLR:
    """The lr rule of 5.3.2: lr / ``factor`` whenever the mean loss over the last window of images
    has not fallen below the best earlier window. Its state is ``host`` (JSON: lr, best_window,
    window_losses, lr_drops), which the loop checkpoints and restores with the arrays."""

    def __init__(self, host: dict, window_steps: int, factor: float, images_per_step: int):
        self.host, self.window, self.factor, self.images_per_step = host, window_steps, factor, images_per_step

    @staticmethod
    def initial(lr: float) -> dict:
        return {"lr": lr, "best_window": None, "window_losses": [], "lr_drops": []}

    def on_log(self, step: int, losses: list[float]) -> dict:
        """Called by the loop at every sync point (the window's end is one) with the losses since the last."""
        h = self.host
        record = {"lr": h["lr"]}          # the lr these losses were trained with
        h["window_losses"] = h["window_losses"] + losses
        if step % self.window == 0:
            m = float(np.mean(h["window_losses"]))
            if h["best_window"] is not None and m >= h["best_window"]:
                h["lr"] = h["lr"] / self.factor
                h["lr_drops"].append({"step": step, "images": step * self.images_per_step, "lr": h["lr"]})
            h["best_window"] = m if h["best_window"] is None else min(m, h["best_window"])
            h["window_losses"] = []
        return record


def pretrain_autoencoder(model, source, acfg, work_dir: Path, seed: int, desc: str = "pretrain A_S",
                         progress: bool = True) -> tuple[dict, dict]:
    """Returns (variables, state). ``acfg``: AEConfig (batch_size, lr, momentum, pretrain_images,
    plateau_images, plateau_factor, ckpt_every, log_every)."""
    import jax
    import optax
    from capacity.autoencoder import init_segnet

    maybe_init_distributed()          # before the first JAX computation (init) of a multi-process run
    bs = min(acfg.batch_size, len(source))
    spe = max(1, len(source) // bs)
    total = max(1, math.ceil(acfg.pretrain_images / bs))
    window = max(1, math.ceil(acfg.plateau_images / bs))
    train_step, tx = make_pretrain_step(model, acfg.momentum)
    host = PlateauLR.initial(acfg.lr)
    plateau = PlateauLR(host, window, acfg.plateau_factor, bs)

    def step_fn(state, x):
        params, batch_stats, mom, loss = train_step(state["params"], state["batch_stats"],
                                                    optax.TraceState(trace=state["momentum"]), x, host["lr"])
        return {"params": params, "batch_stats": batch_stats, "momentum": mom.trace}, loss

    def batches_for(epoch, start):
        for xb, _ in source.batches(epoch_batches(len(source), bs, seed, epoch, start)):
            yield xb

    v = init_segnet(model, jax.random.PRNGKey(seed), source.image_shape)
    init = {"params": v["params"], "batch_stats": v["batch_stats"], "momentum": tx.init(v["params"]).trace}
    state, info = run_steps(step_fn, init, batches_for, total, work_dir, steps_per_epoch=spe,
                            ckpt_every=acfg.ckpt_every, log_every=acfg.log_every, images_per_step=bs, desc=desc,
                            progress=progress, on_log=plateau.on_log, host_state=host, sync_every=window)
    return {"params": state["params"], "batch_stats": state["batch_stats"]}, info


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
    import jax.numpy as jnp
    import optax
    import torch
    import torch.nn.functional as F
    from common.bridge import jax_to_torch, torch_to_jax

    classifier = classifier.eval()
    for p in classifier.parameters():
        p.requires_grad_(False)
    bs = min(fcfg.finetune_batch_size, len(source))
    spe = max(1, len(source) // bs)
    total = max(1, fcfg.finetune_epochs * spe)
    forward, update, tx = fns or make_finetune_fns(model, fcfg.momentum)
    dev = device or next(classifier.parameters()).device   # where the classifier lives
    lr = fcfg.finetune_lr

    def step_fn(state, batch):
        xb, yb = batch
        recon, vjp_fn = forward(state["decoder"], variables, jnp.asarray(xb))
        xt = jax_to_torch(recon).to(dev).permute(0, 3, 1, 2).detach().requires_grad_(True)
        yt = torch.as_tensor(yb, device=dev)
        with torch.enable_grad():
            logits = classifier(xt)
            loss = F.cross_entropy(logits.float(), yt)
            (gx,) = torch.autograd.grad(loss, [xt])
        g = torch_to_jax(gx.permute(0, 2, 3, 1).contiguous())
        dec, mom = update(vjp_fn, g, state["decoder"], optax.TraceState(trace=state["momentum"]), lr)
        return {"decoder": dec, "momentum": mom.trace}, loss.detach()

    def batches_for(epoch, start):
        return source.batches(epoch_batches(len(source), bs, seed, epoch, start))

    dec = variables["params"]["decoder"]
    # place_batch=False: the step hands the batch to torch on the classifier's device itself
    state, info = run_steps(step_fn, {"decoder": dec, "momentum": tx.init(dec).trace}, batches_for, total,
                            work_dir, steps_per_epoch=spe, ckpt_every=fcfg.ckpt_every, log_every=fcfg.log_every,
                            images_per_step=bs, desc=desc, progress=progress, place_batch=False)
    return _with_decoder(variables, state["decoder"]), info


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
