"""Path-mask attribution (4.6).

(x_i), i = 1..n, is the decoded path from the morph x_1 (other label) to the input's best
reconstruction x_n (self label). A mask m in [0, 1] (one value per pixel, shared by the channels)
mixes each step with the next, ``m(x_i, x_{i+1}) = (1 - m) x_i + m x_{i+1}``, and is found by
minimising

    -sum_{i<n} [p_self(m(x_i, x_{i+1})) - p_self(x_i)] + l1 * w_t * ||m||_1

with Adam, p_self the softmax probability of the self label, and ``w_t`` the same normalisation as
in morphing (cumulative mean |objective| / cumulative mean |L1|, constant in the gradient).
Our choices (the thesis leaves them open): m = blur(v), v in [0, 1] started at 0.5 and projected
back onto [0, 1] after each Adam step (so a pixel reaches 0 within 0.5 / lr steps), blur a Gaussian of ``sigma`` pixels (truncated at 3 sigma, edges renormalised so blur
keeps [0, 1]); per-sample early stopping once no pixel of the mask has moved by ``tol`` or more
for ``patience`` consecutive steps (patience 0: run all steps, as the thesis does). (The normalised
loss is no stopping signal: its weight w_t moves with the running means.)

ONE ``jax.jit(jax.vmap(advance))`` over the batch, ``segment`` steps per call, the steps unrolled on
CPU or a ``lax.while_loop`` elsewhere (as morphing: ``morph_loop``, ``morph_segment``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

_EPS = 1e-12


def gaussian_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def blur(m, sigma: float):
    """Gaussian blur of a (H, W) map with zero padding, divided by the blur of ones (so a
    constant map stays constant and values stay in [0, 1])."""
    import jax.numpy as jnp
    from jax.scipy.signal import convolve2d
    k = gaussian_kernel(sigma)
    k2 = jnp.asarray(np.outer(k, k))
    return convolve2d(m, k2, mode="same") / convolve2d(jnp.ones_like(m), k2, mode="same")


def mix(m, xs):
    """m(x_i, x_{i+1}) for i < n: (n-1, H, W, C) from a (H, W) mask and the (n, H, W, C) path."""
    mm = m[None, :, :, None]
    return (1.0 - mm) * xs[:-1] + mm * xs[1:]


def gain_terms(classify, m, xs, self_label, p_x=None):
    """Per step p_self(m(x_i, x_{i+1})) - p_self(x_i), shape (n-1,). ``p_x``: p_self(x_i), i < n, if
    already known (it does not depend on the mask)."""
    import jax
    p_mix = jax.nn.softmax(classify(mix(m, xs)), axis=-1)[:, self_label]
    if p_x is None:
        p_x = jax.nn.softmax(classify(xs[:-1]), axis=-1)[:, self_label]
    return p_mix - p_x


def mask_objective(classify, m, xs, self_label, l1: float, w: float = 1.0):
    """The loss of 4.6 for a given (already blurred) mask: -sum gains + l1 * w * ||m||_1."""
    import jax.numpy as jnp
    return -jnp.sum(gain_terms(classify, m, xs, self_label)) + l1 * w * jnp.sum(jnp.abs(m))


@dataclasses.dataclass
class MaskResult:
    masks: np.ndarray        # (B, H, W) blurred masks in [0, 1]
    steps: np.ndarray        # (B,)
    gains: np.ndarray        # (B, n-1) per-step gains of the final mask
    loss: np.ndarray         # (B, T) normalised loss per step (NaN after the stop)
    objective: np.ndarray    # (B, T) -sum of gains per step (before that step's update)
    l1: np.ndarray           # (B, T) ||m||_1 per step
    weight: np.ndarray       # (B,) the normalisation weight w of the last step
    stopped: np.ndarray      # (B,) bool: the per-sample early stop fired before max_steps


def mask_floor(init: float, lr: float, steps: int) -> float:
    """The lowest value a pixel of v can reach in ``steps`` Adam steps of at most ~``lr`` each from
    ``init`` (projected onto [0, 1]): 0 once lr x steps >= init."""
    return max(0.0, init - lr * steps)


def make_mask_fns(classify, *, shape_hw, lr: float, l1: float, sigma: float, max_steps: int,
                  patience: int, tol: float, init: float = 0.5, loop: str = "while"):
    """Per-sample ``init(xs, self_label) -> state``, ``advance(state, n_steps) -> state`` (at most
    ``n_steps`` Adam steps, ending early at the per-sample stop or at ``max_steps``) and
    ``finish(state) -> results``, as morphing's (``loop``: "while" = a ``lax.while_loop``,
    "unrolled" = the steps written out, each masked by the same predicate; same trajectory).

    v in [0, 1] per pixel, started at ``init``; each Adam step is followed by the projection
    v <- clip(v, 0, 1) and the mask is m = blur(v). (A sigmoid of a free variable, our first choice,
    cannot reach 0: from v = 0 no pixel fell below sigmoid(-lr x steps), 0.12 at 200 steps of 1e-2,
    so the L1 term pinned ~70 % of the pixels at that floor and the mask never settled.) A pixel the
    L1 term drives to the bound stops moving, so the early stop can fire once the rest settle."""
    import jax
    import jax.numpy as jnp
    import optax
    tx = optax.adam(lr)

    def terms(v, st):
        m = blur(v, sigma)
        return -jnp.sum(gain_terms(classify, m, st["xs"], st["s"], st["p_x"])), jnp.sum(jnp.abs(m))

    def init_fn(xs, self_label):
        v0 = jnp.full(shape_hw, init, jnp.float32)
        nan = jnp.full((max_steps,), jnp.nan, jnp.float32)
        return {"xs": xs, "s": self_label, "p_x": jax.nn.softmax(classify(xs[:-1]), axis=-1)[:, self_label],
                "v": v0, "opt": tx.init(v0), "step": jnp.array(0, jnp.int32), "sum_obj": jnp.array(0.0),
                "sum_reg": jnp.array(0.0), "w": jnp.array(0.0), "since": jnp.array(0, jnp.int32),
                "done": jnp.array(False), "h_loss": nan, "h_obj": nan, "h_l1": nan}

    def running(st):
        return (~st["done"]) & (st["step"] < max_steps)

    def body(st):
        v = st["v"]
        obj, reg = terms(v, st)
        sum_obj, sum_reg = st["sum_obj"] + jnp.abs(obj), st["sum_reg"] + jnp.abs(reg)
        w = jax.lax.stop_gradient(sum_obj / (sum_reg + _EPS))

        def loss_fn(v):
            ob, rg = terms(v, st)
            return ob + l1 * w * rg
        loss, g = jax.value_and_grad(loss_fn)(v)
        upd, opt = tx.update(g, st["opt"], v)
        new_v = jnp.clip(optax.apply_updates(v, upd), 0.0, 1.0)
        change = jnp.max(jnp.abs(blur(new_v, sigma) - blur(v, sigma)))
        since = jnp.where(change < tol, st["since"] + 1, 0)
        done = (since >= patience) if patience > 0 else jnp.array(False)
        i = st["step"]
        return dict(st, v=new_v, opt=opt, step=i + 1, sum_obj=sum_obj, sum_reg=sum_reg, w=w,
                    since=since, done=done, h_loss=st["h_loss"].at[i].set(loss),
                    h_obj=st["h_obj"].at[i].set(obj), h_l1=st["h_l1"].at[i].set(reg))

    def advance(st, n_steps: int):
        if loop == "while":
            def cond(carry):
                return running(carry[0]) & (carry[1] < n_steps)
            return jax.lax.while_loop(cond, lambda c: (body(c[0]), c[1] + 1), (st, jnp.array(0, jnp.int32)))[0]
        for _ in range(n_steps):             # written out: XLA:CPU runs conv nets ~8x slower in loop bodies
            active = running(st)
            new = body(st)
            st = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, st)
        return st

    def finish(st):
        m = blur(st["v"], sigma)
        return {"mask": m, "steps": st["step"], "gains": gain_terms(classify, m, st["xs"], st["s"]),
                "h_loss": st["h_loss"], "h_obj": st["h_obj"], "h_l1": st["h_l1"], "w": st["w"],
                "stopped": st["done"]}

    return init_fn, advance, finish, running


class BatchedMask:
    """ONE ``jax.jit(jax.vmap(advance))`` over a batch of paths, called ``segment`` steps at a time
    from Python until every sample has stopped or hit ``max_steps`` (morphing's scheme without the
    refill: path-mask batches are small). A sample's result does not depend on its batch (tested)."""

    def __init__(self, classify, cfg, shape_hw, loop: str | None = None):
        import jax
        loop = loop or cfg.morph_loop
        self.loop = loop if loop != "auto" else ("unrolled" if jax.default_backend() == "cpu" else "while")
        self.max_steps = cfg.mask_steps
        self.segment = min(cfg.morph_segment, cfg.mask_steps)
        init, advance, finish, running = make_mask_fns(
            classify, shape_hw=shape_hw, lr=cfg.mask_lr, l1=cfg.mask_l1, sigma=cfg.mask_blur_sigma,
            max_steps=cfg.mask_steps, patience=cfg.mask_patience, tol=cfg.mask_tol, loop=self.loop)
        self.init, self.finish = jax.jit(jax.vmap(init)), jax.jit(jax.vmap(finish))
        self.advance = jax.jit(jax.vmap(advance, in_axes=(0, None)), static_argnums=1)
        self.running = jax.jit(jax.vmap(running))

    def __call__(self, paths, self_labels) -> dict:
        st = self.init(paths, self_labels)
        while bool(self.running(st).any()):
            st = self.advance(st, self.segment)
        return self.finish(st)


def make_batched_mask(classify, cfg, shape_hw, loop: str | None = None):
    return BatchedMask(classify, cfg, shape_hw, loop)


def path_mask(batched, paths: np.ndarray, self_labels: np.ndarray, batch: int) -> MaskResult:
    """paths: (B, n, H, W, C) from the morph (index 0) to the reconstruction (index n-1)."""
    import jax.numpy as jnp
    outs = []
    for i in range(0, len(paths), batch):
        o = batched(jnp.asarray(paths[i:i + batch], jnp.float32), jnp.asarray(self_labels[i:i + batch]))
        outs.append({k: np.asarray(v) for k, v in o.items()})
    cat = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    return MaskResult(cat["mask"], cat["steps"], cat["gains"], cat["h_loss"], cat["h_obj"], cat["h_l1"], cat["w"],
                      cat["stopped"].astype(bool))


def loss_drop(res: MaskResult, l1: float) -> np.ndarray:
    """Per sample: the loss at the first step minus the loss at the last, both with the last step's
    normalisation weight (the recorded loss moves with the running weight; this one is the objective
    the final mask is judged by). > 0: the optimisation lowered it."""
    out = np.empty(len(res.steps))
    for b, t in enumerate(res.steps):
        t = max(int(t), 1)
        first = res.objective[b, 0] + l1 * res.weight[b] * res.l1[b, 0]
        last = res.objective[b, t - 1] + l1 * res.weight[b] * res.l1[b, t - 1]
        out[b] = first - last
    return out


def gain_window_excess(gains: np.ndarray, entropies: np.ndarray) -> np.ndarray:
    """Per sample: the share of the positive gains that falls in the entropy window of the path
    (steps within the entropy-weighted mean -+ 1.96 weighted std, as 4.4) minus the share of steps
    in that window. > 0: the gains are concentrated at the high-entropy steps (4.4's conclusion,
    L1510-1512). ``entropies`` (B, n-1): the two-class entropy of each step's pair (mean of x_i and
    x_{i+1}). NaN where there is no positive gain or the window holds every step."""
    from pathmask.latent import entropy_window
    out = np.full(len(gains), np.nan)
    steps = np.arange(gains.shape[1])
    for b, (g, h) in enumerate(zip(gains, entropies)):
        pos = np.clip(g, 0, None)
        _, lo, hi = entropy_window(h)
        inside = (steps >= lo) & (steps <= hi)
        if pos.sum() > 0 and (~inside).any():
            out[b] = pos[inside].sum() / pos.sum() - inside.mean()
    return out


def signed_map(mask: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Red/blue map of Fig 4.12: the mask times the intensity change along the path from the morph
    to the reconstruction (x_n - x_1, summed over channels): > 0 where the self label needs more
    intensity (red), < 0 where it needs less (blue)."""
    change = (path[..., -1, :, :, :] - path[..., 0, :, :, :]).sum(-1)
    return mask * change
