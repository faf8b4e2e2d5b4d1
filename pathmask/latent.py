"""The VAE's latent space (4.2-4.4, 5.1): class-wise norms, the best embedding of an input, radial and
linear interpolation, nearest pairs by cosine similarity, two-class entropy and its correlation with
gradient magnitude along a path."""
from __future__ import annotations

import numpy as np


def class_norms(codes: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """c_o per class: the mean of the training codes' norms of class o (the note's reading of L1548;
    the formula's "average code" L1556 would give the norm of a mean, far smaller in 100-d)."""
    norms = np.linalg.norm(codes, axis=1)
    return np.array([norms[labels == k].mean() if np.any(labels == k) else np.nan for k in range(n_classes)])


def active_dims(mu: np.ndarray, threshold: float = 0.01) -> int:
    """Latent dimensions in use: the variance over inputs of the encoder mean above ``threshold``
    (Burda et al. 2016's activity criterion). A collapsed dimension outputs the prior's mean for
    every input and carries nothing to the decoder."""
    return int((np.var(np.asarray(mu, np.float64), axis=0) > threshold).sum())


def pca_test_l2_curve(train_x: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Mean over test images of the sum of squared pixel errors of a k-component PCA fitted on the
    training pixels, for k = 0 .. min(N, D) (index k): the linear baseline of the VAE's test L2."""
    a = train_x.reshape(len(train_x), -1).astype(np.float64)
    b = test_x.reshape(len(test_x), -1).astype(np.float64)
    mean = a.mean(0)
    _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
    c = b - mean
    proj = (c @ vt.T) ** 2                                     # (N_test, K): energy on each component
    total = (c ** 2).sum(1)
    return np.concatenate([[total.mean()], total.mean() - np.cumsum(proj.mean(0))])


def pca_equivalent_dims(curve: np.ndarray, l2: float) -> int:
    """The fewest PCA components whose test L2 is at most ``l2`` (the VAE's)."""
    return int(np.argmax(curve <= l2)) if (curve <= l2).any() else len(curve)


def radial(x0, x1, alpha):
    """sqrt(1 - a) x0 + sqrt(a) x1 (4.3). Keeps the norm only when x0 and x1 are orthogonal and of
    equal norm: ||.||^2 = (1-a)||x0||^2 + a||x1||^2 + 2 sqrt(a(1-a)) <x0, x1>."""
    import jax.numpy as jnp
    a = jnp.asarray(alpha)[..., None]
    return jnp.sqrt(1.0 - a) * x0 + jnp.sqrt(a) * x1


def linear(x0, x1, alpha):
    import jax.numpy as jnp
    a = jnp.asarray(alpha)[..., None]
    return (1.0 - a) * x0 + a * x1


def path(x0, x1, n: int, kind: str = "radial"):
    """n codes from x0 (alpha 0) to x1 (alpha 1): (n, d); batched endpoints give (B, n, d)."""
    import jax.numpy as jnp
    alphas = jnp.linspace(0.0, 1.0, n)
    f = radial if kind == "radial" else linear
    return f(jnp.asarray(x0)[..., None, :], jnp.asarray(x1)[..., None, :], alphas)


def entropy2(logit_a, logit_b):
    """Base-2 entropy of the softmax over two logits only (L1457-1463): 1 bit when tied, 0 when sure."""
    import jax
    import jax.numpy as jnp
    lp = jax.nn.log_softmax(jnp.stack([logit_a, logit_b], -1), axis=-1)
    return -jnp.sum(jnp.exp(lp) * lp, axis=-1) / jnp.log(2.0)


def top2(logits: np.ndarray) -> np.ndarray:
    """(B, 2): the most and the second most probable classes."""
    return np.argsort(-np.asarray(logits), axis=1)[:, :2]


def best_embedding(models, x: np.ndarray, key, n_samples: int, batch: int = 64):
    """5.1: sample ``n_samples`` codes from the encoder's N(mu, exp(logvar)) for each input (the mean
    is candidate 0), keep those whose decoding has the input's two most probable classes (same
    order), and take the one closest to the input in L1. Returns (codes, kept_any): inputs with no
    sample that keeps the two classes fall back to the mean code (kept_any False)."""
    import jax
    import jax.numpy as jnp
    classify, decode = models.classify_fn(), models.decode_fn()

    @jax.jit
    def pick(xb, kb):
        mu, logvar = models.vae.apply(models.vae_vars, xb, method="encode")
        eps = jax.random.normal(kb, (xb.shape[0], n_samples, mu.shape[-1])).at[:, 0].set(0.0)
        cand = mu[:, None] + jnp.exp(0.5 * logvar)[:, None] * eps                  # (B, K, d)
        dec = decode(cand.reshape(-1, cand.shape[-1]))
        lg = classify(dec).reshape(xb.shape[0], n_samples, -1)
        ref = jnp.argsort(-classify(xb), axis=-1)[:, :2]
        cand_top = jnp.argsort(-lg, axis=-1)[..., :2]
        keep = jnp.all(cand_top == ref[:, None], axis=-1)
        l1 = jnp.abs(dec.reshape(xb.shape[0], n_samples, -1) - xb.reshape(xb.shape[0], 1, -1)).sum(-1)
        best = jnp.argmin(jnp.where(keep, l1, jnp.inf), axis=1)
        any_keep = keep.any(axis=1)
        best = jnp.where(any_keep, best, 0)
        return cand[jnp.arange(xb.shape[0]), best], any_keep

    codes, kept = [], []
    for i in range(0, len(x), batch):
        c, k = pick(jnp.asarray(x[i:i + batch]), jax.random.fold_in(key, i))
        codes.append(np.asarray(c)), kept.append(np.asarray(k))
    return np.concatenate(codes), np.concatenate(kept)


def nearest_by_cosine(query: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Index into ``pool`` of the code with the highest cosine similarity to each query code."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    p = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    return np.argmax(q @ p.T, axis=1)


def entropy_gradient_along_paths(models, codes0, codes1, labels_a, labels_b, n: int, batch: int = 16):
    """For each pair (a path of n decoded radial-interpolation steps from codes0 to codes1): the
    two-class entropy H(p_a, p_b) per step and the gradient magnitude of the softmax probability of
    label a (the original's) w.r.t. the input image per step (mean |d p_a / d x| over pixels: the
    thesis plots per-pixel gradients, L1484, and correlates their magnitude). Returns (H, G), (P, n)."""
    import jax
    import jax.numpy as jnp
    classify, decode = models.classify_fn(), models.decode_fn()

    def p_label(x, k):
        return jax.nn.softmax(classify(x[None])[0])[k]

    @jax.jit
    def one_batch(c0, c1, a, b):
        z = path(c0, c1, n)                                   # (B, n, d)
        imgs = decode(z.reshape(-1, z.shape[-1]))             # (B n, H, W, C)
        lg = classify(imgs)
        aa, bb = jnp.repeat(a, n), jnp.repeat(b, n)
        idx = jnp.arange(lg.shape[0])
        h = entropy2(lg[idx, aa], lg[idx, bb])
        g = jax.vmap(jax.grad(p_label))(imgs, aa)
        gm = jnp.abs(g).reshape(g.shape[0], -1).mean(-1)
        return h.reshape(-1, n), gm.reshape(-1, n)

    H, G = [], []
    for i in range(0, len(codes0), batch):
        h, g = one_batch(jnp.asarray(codes0[i:i + batch]), jnp.asarray(codes1[i:i + batch]),
                         jnp.asarray(labels_a[i:i + batch]), jnp.asarray(labels_b[i:i + batch]))
        H.append(np.asarray(h)), G.append(np.asarray(g))
    return np.concatenate(H), np.concatenate(G)


def entropy_window(h: np.ndarray) -> tuple[float, float, float]:
    """Mean entropy step (entropy-weighted mean of the step index) and that mean -+ 1.96 weighted std."""
    steps = np.arange(len(h), dtype=np.float64)
    w = np.asarray(h, np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full_like(w, 1.0 / len(w))
    mean = float((w * steps).sum())
    std = float(np.sqrt((w * (steps - mean) ** 2).sum()))
    return mean, mean - 1.96 * std, mean + 1.96 * std


def pearson(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def pooled_r_interval(H: np.ndarray, G: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the pooled Pearson r, resampling whole pairs (a path's steps are
    not independent of each other)."""
    rng = np.random.default_rng(seed)
    rs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(H), len(H))
        rs.append(pearson(H[idx], G[idx]))
    rs = np.asarray(rs)
    rs = rs[np.isfinite(rs)]
    if len(rs) == 0:
        return float("nan"), float("nan")
    return float(np.quantile(rs, 0.025)), float(np.quantile(rs, 0.975))


def window_log_ratio(H: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Per path: log(mean G inside the entropy window / mean G outside it), the window being
    ``entropy_window`` of that path's entropies (steps within mean -+ 1.96 weighted std). NaN for a
    path whose window covers every step (nothing outside to compare with) or none."""
    out = np.full(len(H), np.nan)
    steps = np.arange(H.shape[1])
    for p, (h, g) in enumerate(zip(H, G)):
        _, lo, hi = entropy_window(h)
        inside = (steps >= lo) & (steps <= hi)
        if inside.any() and (~inside).any():
            gi, go = float(np.mean(g[inside])), float(np.mean(g[~inside]))
            if gi > 0 and go > 0:
                out[p] = np.log(gi / go)
    return out


def nearest_of_class_distance(codes: np.ndarray, pool: np.ndarray, pool_labels: np.ndarray,
                              classes: np.ndarray) -> np.ndarray:
    """Per code: the Euclidean distance to the nearest code of ``pool`` whose label is ``classes[i]``."""
    out = np.empty(len(codes))
    for k in np.unique(classes):
        sel = np.flatnonzero(classes == k)
        cand = pool[pool_labels == k]
        d2 = (codes[sel] ** 2).sum(1)[:, None] - 2 * codes[sel] @ cand.T + (cand ** 2).sum(1)[None]
        out[sel] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def median_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the median (nan, nan for fewer than 2 values)."""
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, len(v), (n_boot, len(v)))], axis=1)
    return float(np.quantile(meds, 0.025)), float(np.quantile(meds, 0.975))
