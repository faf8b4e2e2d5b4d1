"""Semantic morphing (4.5): move a VAE code until the CNN reads its decoding as the other label.

Per sample, minimise ``-logit_o(f(dec(c))) + alpha_lk * w_t * (||c|| - c_o)^2`` over the code c
with Adam, where ``c_o`` is the mean training-code norm of class o and ``w_t`` is the loss-term
normalisation of L1588-1592 in the form we chose: the cumulative mean of |objective| over the steps
so far divided by the cumulative mean of |regulariser| (both including step t, held constant in the
gradient), so the regulariser is expressed on the objective's scale and alpha_lk is its relative
weight. Stop (per sample) at the first step where the base-2 entropy of the softmax over the two
logits (self, other) is below the threshold and p_other > 0.5; a sample that has not stopped after
``max_steps`` is a morphing error.

The batch is ONE ``jax.jit(jax.vmap(advance))`` (``BatchedMorph``): the loop is a ``lax.while_loop``
whose predicate is per sample, so under ``vmap`` it runs while any sample runs and a stopped sample's
state is frozen (JAX selects it unchanged); between calls, finished slots take the next samples.
Every sample's result is independent of the others in its batch (tested). The networks run in eval
mode (running BN statistics, no dropout).
"""
from __future__ import annotations

import dataclasses

import numpy as np

_EPS = 1e-12


@dataclasses.dataclass
class MorphResult:
    codes: np.ndarray        # (B, d) final codes
    steps: np.ndarray        # (B,) steps taken (Adam updates)
    stopped: np.ndarray      # (B,) bool: the stopping rule fired (else a morphing error)
    logits: np.ndarray       # (B, K) CNN logits of the final decoding
    objective: np.ndarray    # (B, T) -logit_o per step (NaN after the stop)
    regulariser: np.ndarray  # (B, T) (||c|| - c_o)^2 per step
    loss: np.ndarray         # (B, T) total normalised loss per step


def make_morph_fns(classify, decode, *, lr: float, alpha_lk: float, threshold: float, max_steps: int,
                   record: bool = True, loop: str = "while"):
    """Per-sample functions: ``init(c0, self, other, target_norm) -> state`` and
    ``advance(state, n_steps) -> state`` (at most ``n_steps`` Adam steps that end early at the
    stopping rule or at ``max_steps``), ``finish(state) -> results``. ``loop``: "while" runs the
    steps as a ``lax.while_loop`` (under vmap: while any sample runs, stopped ones frozen);
    "unrolled" writes the ``n_steps`` steps out, each masked by the same per-sample predicate. Both
    give the same trajectory (tested); on XLA:CPU a conv net inside any loop body runs about 8-10x
    slower per step than the same steps unrolled (measured: README, Speed), so CPU uses "unrolled"."""
    import jax
    import jax.numpy as jnp
    import optax
    from pathmask.latent import entropy2

    tx = optax.adam(lr)
    T = max_steps if record else 1

    def stop_rule(logits, s, o):
        h = entropy2(logits[s], logits[o])
        p_other = jax.nn.softmax(jnp.stack([logits[s], logits[o]]))[1]
        return (h < threshold) & (p_other > 0.5)

    def init(c0, s, o, target):
        nan = jnp.full((T,), jnp.nan, jnp.float32)
        return {"c": c0, "s": s, "o": o, "target": target, "opt": tx.init(c0), "done": jnp.array(False),
                "step": jnp.array(0, jnp.int32), "sum_obj": jnp.array(0.0), "sum_reg": jnp.array(0.0),
                "h_obj": nan, "h_reg": nan, "h_loss": nan}

    def loss_fn(c, st):
        logits = classify(decode(c[None]))[0]
        obj = -logits[st["o"]]
        reg = (jnp.linalg.norm(c) - st["target"]) ** 2
        sum_obj, sum_reg = st["sum_obj"] + jnp.abs(obj), st["sum_reg"] + jnp.abs(reg)
        w = jax.lax.stop_gradient(sum_obj / (sum_reg + _EPS))     # ratio of cumulative means: counts cancel
        loss = obj + alpha_lk * w * reg
        return loss, (obj, reg, logits, sum_obj, sum_reg)

    def advance(st, n_steps: int):
        def cond(carry):
            st, k = carry
            return (~st["done"]) & (st["step"] < max_steps) & (k < n_steps)

        def body(carry):
            st, k = carry
            (loss, (obj, reg, logits, sum_obj, sum_reg)), g = jax.value_and_grad(loss_fn, has_aux=True)(st["c"], st)
            done = stop_rule(logits, st["s"], st["o"])         # checked on the current code, before moving
            upd, opt = tx.update(g, st["opt"], st["c"])
            i = st["step"] if record else 0
            new = dict(st, c=optax.apply_updates(st["c"], upd), opt=opt, step=st["step"] + 1,
                       sum_obj=sum_obj, sum_reg=sum_reg, h_obj=st["h_obj"].at[i].set(obj),
                       h_reg=st["h_reg"].at[i].set(reg), h_loss=st["h_loss"].at[i].set(loss))
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(done, a, b), st, new)
            return dict(new, done=done), k + 1

        if loop == "while":
            return jax.lax.while_loop(cond, body, (st, jnp.array(0, jnp.int32)))[0]
        # "unrolled": the same steps written out n_steps times, each one masked by the same
        # predicate (a stopped or finished sample keeps its state): no XLA loop at all
        for _ in range(n_steps):
            active = (~st["done"]) & (st["step"] < max_steps)
            new = body((st, 0))[0]
            st = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, st)
        return st

    def finish(st):
        logits = classify(decode(st["c"][None]))[0]
        # the rule on the final code (a sample can reach it exactly at max_steps)
        return {"c": st["c"], "steps": st["step"], "stopped": stop_rule(logits, st["s"], st["o"]),
                "logits": logits, "h_obj": st["h_obj"], "h_reg": st["h_reg"], "h_loss": st["h_loss"]}

    return init, advance, finish


def _host(tree):
    """A pytree as writable numpy arrays (slots are refilled in place on the host)."""
    import jax
    return jax.tree_util.tree_map(np.array, jax.device_get(tree))


class BatchedMorph:
    """ONE ``jax.jit(jax.vmap(advance))`` over a fixed number of slots, fed as a queue.

    Each call advances every running slot by at most ``segment`` steps; under ``vmap`` the
    ``while_loop`` runs while any slot runs, and a stopped slot's state is frozen (JAX selects it
    unchanged). Between calls, slots whose sample stopped (or hit ``max_steps``) are refilled with the
    next samples, so the batch is not held up by its slowest sample and the program compiles once.
    A slot's trajectory depends on its own sample only: the same result in any batch (tested).
    """

    def __init__(self, models, cfg, record: bool = True, slots: int | None = None, segment: int | None = None):
        import jax
        self.loop = cfg.morph_loop if cfg.morph_loop != "auto" else (
            "unrolled" if jax.default_backend() == "cpu" else "while")
        self.max_steps = cfg.morph_max_steps
        self.slots = slots or cfg.morph_batch
        self.segment = min(segment or cfg.morph_segment, cfg.morph_max_steps)   # steps per call (unrolled: written out)
        init, advance, finish = make_morph_fns(models.classify_fn(), models.decode_fn(), lr=cfg.morph_lr,
                                               alpha_lk=cfg.resolved_alpha_lk(), threshold=cfg.entropy_threshold,
                                               max_steps=cfg.morph_max_steps, record=record, loop=self.loop)
        self.init = jax.jit(jax.vmap(init))
        self.advance = jax.jit(jax.vmap(advance, in_axes=(0, None)), static_argnums=1)
        self.finish = jax.jit(jax.vmap(finish))
        self.one = (jax.jit(init), jax.jit(advance, static_argnums=1), jax.jit(finish))   # the unbatched program

    def __call__(self, codes, self_labels, other_labels, target_norms, progress: bool = False) -> MorphResult:
        import jax
        import jax.numpy as jnp
        n, S = len(codes), min(self.slots, len(codes))
        inputs = (np.asarray(codes, np.float32), np.asarray(self_labels, np.int32),
                  np.asarray(other_labels, np.int32), np.asarray(target_norms, np.float32))
        state = _host(self.init(*(jnp.asarray(a[:S]) for a in inputs)))
        owner = np.arange(S)                  # sample held by each slot (-1: empty)
        nxt, results = S, [None] * n
        from common.progress import progress as show_progress
        bar = show_progress(desc="semantic morphing", total=n, unit="sample", enabled=progress, leave=False)
        while (owner >= 0).any():
            state = _host(self.advance(state, self.segment))
            over = (state["done"] | (state["step"] >= self.max_steps)) & (owner >= 0)
            if over.any():
                fin = jax.device_get(self.finish(state))
                for slot in np.flatnonzero(over):
                    results[owner[slot]] = {k: v[slot] for k, v in fin.items()}
                    bar.update(1)
                    if nxt < n:               # refill the slot with the next sample
                        fresh = self.init(*(jnp.asarray(a[nxt:nxt + 1]) for a in inputs))
                        jax.tree_util.tree_map(lambda dst, src: dst.__setitem__(slot, np.asarray(src)[0]),
                                               state, fresh)
                        owner[slot], nxt = nxt, nxt + 1
                    else:                     # nothing left: park it (done, never advanced again)
                        state["done"][slot], owner[slot] = True, -1
        bar.close()
        cat = {k: np.stack([r[k] for r in results]) for k in results[0]}
        return MorphResult(cat["c"], cat["steps"], cat["stopped"].astype(bool), cat["logits"], cat["h_obj"],
                           cat["h_reg"], cat["h_loss"])

    def sequential(self, codes, self_labels, other_labels, target_norms) -> MorphResult:
        """The same program one sample at a time, in a Python loop (the bench's baseline; the per-sample
        reference of the batch-independence test)."""
        import jax
        import jax.numpy as jnp
        init, advance, finish = self.one
        results = []
        for c, s, o, t in zip(codes, self_labels, other_labels, target_norms):
            st = init(jnp.asarray(c, jnp.float32), jnp.int32(s), jnp.int32(o), jnp.float32(t))
            while True:
                st = advance(st, self.segment)
                if bool(st["done"]) or int(st["step"]) >= self.max_steps:
                    break
            results.append(jax.device_get(finish(st)))
        cat = {k: np.stack([r[k] for r in results]) for k in results[0]}
        return MorphResult(cat["c"], cat["steps"], cat["stopped"].astype(bool), cat["logits"], cat["h_obj"],
                           cat["h_reg"], cat["h_loss"])
