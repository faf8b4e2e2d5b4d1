"""Training of the CNN and the VAE (Adam, cross-entropy / L2 + KL) on ``common.jax_loop.run_steps``:
safetensors checkpoints restored into the exact pytree structure (params, batch stats, Adam state),
resume at the exact batch, a finished stage loaded, tqdm. Dropout keys are ``fold_in(seed, Adam's
step count)``, so a resumed run draws the same masks as an uninterrupted one.

``trained_models(cfg, ctx)`` is what every experiment calls: the data, both models trained once per
(seed, config) in work folders with identical keys across experiments, and jitted inference helpers.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from common.jax_loop import epoch_batches, maybe_init_distributed, run_steps


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Split:
    x: np.ndarray          # float32 NHWC in [0, 1]
    y: np.ndarray          # int64
    classes: list


def load_splits(cfg, ctx) -> tuple[Split, Split]:
    """(train, test) of ``cfg.dataset``; sets with only an "all" split (notmnist_small) are split
    here, stratified with a fixed seed (0, not the run's: the split is part of the data)."""
    from common.data import train_val_split
    from pathmask.config import SPLIT_OURSELVES
    if cfg.dataset in SPLIT_OURSELVES:
        ds = ctx.load_dataset(cfg.dataset, "all")
        tr, te = train_val_split(len(ds), cfg.test_fraction, 0, labels=ds.y)
        parts = [(ds.x[tr], ds.y[tr]), (ds.x[te], ds.y[te])]
        classes = ds.classes
    else:
        train, test = ctx.load_dataset(cfg.dataset, "train"), ctx.load_dataset(cfg.dataset, "test")
        parts, classes = [(train.x, train.y), (test.x, test.y)], train.classes
    return tuple(Split(x.astype(np.float32) / 255.0, y.astype(np.int64), list(classes)) for x, y in parts)


# --------------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------------
def _dropout_key(seed, count):
    import jax
    return jax.random.fold_in(jax.random.PRNGKey(seed), count)


def make_cnn_step(model, tx, seed: int):
    import jax
    import jax.numpy as jnp
    import optax

    @jax.jit
    def step(params, batch_stats, opt, x, y):
        key = _dropout_key(seed, opt[0].count)

        def loss_fn(p):
            logits, upd = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                      mutable=["batch_stats"], rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd["batch_stats"]
        (loss, bs), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), bs, opt, loss
    return step


def make_vae_step(model, tx, seed: int, kl_weight: float):
    import jax
    import jax.numpy as jnp
    import optax
    from pathmask.models import vae_loss

    @jax.jit
    def step(params, batch_stats, opt, x):
        key = _dropout_key(seed, opt[0].count)
        k_eps, k_drop = jax.random.split(key)
        eps = jax.random.normal(k_eps, (x.shape[0], model.latent))

        def loss_fn(p):
            (recon, mu, logvar), upd = model.apply({"params": p, "batch_stats": batch_stats}, x, eps, train=True,
                                                   mutable=["batch_stats"], rngs={"dropout": k_drop})
            loss, _ = vae_loss(recon, x, mu, logvar, kl_weight)
            return loss, upd["batch_stats"]
        (loss, bs), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), bs, opt, loss
    return step


def train(model, kind: str, data: Split, tcfg, work_dir: Path, seed: int, *, kl_weight: float = 1.0,
          progress: bool = True, desc: str = "") -> tuple[dict, dict]:
    """Train ``model`` ("cnn" or "vae") on ``data`` with Adam through run_steps; returns (variables, info)."""
    import jax
    import optax
    from pathmask.models import init_variables

    maybe_init_distributed()
    n = len(data.x)
    bs = min(tcfg.batch_size, n)
    spe = max(1, n // bs)
    total = tcfg.epochs * spe
    tx = optax.adam(tcfg.lr)
    latent = model.latent if kind == "vae" else None
    v = init_variables(model, jax.random.PRNGKey(seed), data.x.shape[1:], latent)
    init = {"params": v["params"], "batch_stats": v["batch_stats"], "opt": tx.init(v["params"])}
    if kind == "cnn":
        step = make_cnn_step(model, tx, seed)

        def step_fn(state, batch):
            p, b, o, loss = step(state["params"], state["batch_stats"], state["opt"], *batch)
            return {"params": p, "batch_stats": b, "opt": o}, loss

        def batches_for(epoch, start):
            for idx in epoch_batches(n, bs, seed, epoch, start):
                yield data.x[idx], data.y[idx]
    else:
        step = make_vae_step(model, tx, seed, kl_weight)

        def step_fn(state, x):
            p, b, o, loss = step(state["params"], state["batch_stats"], state["opt"], x)
            return {"params": p, "batch_stats": b, "opt": o}, loss

        def batches_for(epoch, start):
            for idx in epoch_batches(n, bs, seed, epoch, start):
                yield data.x[idx]
    state, info = run_steps(step_fn, init, batches_for, total, work_dir, steps_per_epoch=spe,
                            ckpt_every=tcfg.ckpt_every, log_every=tcfg.log_every, images_per_step=bs,
                            desc=desc or kind, progress=progress)
    return {"params": state["params"], "batch_stats": state["batch_stats"]}, info


# --------------------------------------------------------------------------------------------------
# The models every experiment uses
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Models:
    cfg: object
    train: Split
    test: Split
    cnn: object                 # Flax module
    cnn_vars: dict
    vae: object
    vae_vars: dict
    cnn_info: dict
    vae_info: dict

    # jitted, eval mode (running BN statistics, no dropout)
    def logits(self, x, batch: int = 500) -> np.ndarray:
        return _batched(self._logits, x, batch)

    def encode(self, x, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
        out = [self._encode(x[i:i + batch]) for i in range(0, len(x), batch)]
        return np.concatenate([np.asarray(m) for m, _ in out]), np.concatenate([np.asarray(s) for _, s in out])

    def decode(self, z, batch: int = 500) -> np.ndarray:
        return _batched(self._decode, z, batch)

    def __post_init__(self):
        import jax
        cnn, cv, vae, vv = self.cnn, self.cnn_vars, self.vae, self.vae_vars
        self._logits = jax.jit(lambda x: cnn.apply(cv, x, train=False))
        self._encode = jax.jit(lambda x: vae.apply(vv, x, method="encode"))
        self._decode = jax.jit(lambda z: vae.apply(vv, z, method="decode"))

    def classify_fn(self):
        """x (H, W, C) or batch -> logits, pure JAX (for jit / vmap / grad)."""
        cnn, cv = self.cnn, self.cnn_vars
        return lambda x: cnn.apply(cv, x, train=False)

    def decode_fn(self):
        vae, vv = self.vae, self.vae_vars
        return lambda z: vae.apply(vv, z, method="decode")


def _batched(fn, x, batch):
    return np.concatenate([np.asarray(fn(x[i:i + batch])) for i in range(0, len(x), batch)])


def network_keys(cfg) -> tuple[dict, dict]:
    """What the CNN and the VAE are trained from (their stage keys): the data, the architecture and
    each network's own training settings; the morphing, mask and benchmark fields are not, so a
    ``--set mask_steps=...`` reuses both networks."""
    data = {"dataset": cfg.dataset, "arch": cfg.resolved_arch(), "test_fraction": cfg.test_fraction}
    return ({**data, "cnn": cfg.cnn},
            {**data, "latent_dim": cfg.latent_dim, "kl_weight": cfg.kl_weight, "vae": cfg.vae})


def trained_models(cfg, ctx) -> Models:
    """Data, the CNN and the VAE of ``cfg`` for ``ctx.seed``, trained once and then loaded."""
    from pathmask.models import CNN, VAE
    train_split, test_split = load_splits(cfg, ctx)        # datasets first: they key the work folders
    arch = cfg.resolved_arch()
    cnn, vae = CNN(arch, len(train_split.classes)), VAE(arch, cfg.latent_dim)
    cnn_key, vae_key = network_keys(cfg)
    cnn_dir = ctx.work_dir("pathmask-cnn", cnn_key)
    cnn_vars, cnn_info = train(cnn, "cnn", train_split, cfg.cnn, cnn_dir, ctx.seed, progress=cfg.progress,
                               desc="CNN (app. C)")
    vae_dir = ctx.work_dir("pathmask-vae", vae_key)
    vae_vars, vae_info = train(vae, "vae", train_split, cfg.vae, vae_dir, ctx.seed, kl_weight=cfg.kl_weight,
                               progress=cfg.progress, desc="VAE (app. B, C)")
    return Models(cfg, train_split, test_split, cnn, cnn_vars, vae, vae_vars, cnn_info, vae_info)
