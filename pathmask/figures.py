"""One function per figure / table of document 003 ch. 4-5 (each ``fn(cfg, ctx) -> metrics``)."""
from __future__ import annotations

import numpy as np

from common.claims import binomial_ci, bootstrap_ci
from common.data import fixed_subset


def _models(cfg, ctx):
    from pathmask.training import trained_models
    return trained_models(cfg, ctx)


def _img(ax, x, title=""):
    ax.imshow(x[..., 0] if x.shape[-1] == 1 else x, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def _model_metrics(M) -> dict:
    """Accuracies and the VAE's health: test L2 / KL of the mean code, the CNN's reading of the
    reconstructions, active latent dimensions, and a PCA of as many components on the same pixels."""
    import jax.numpy as jnp
    from pathmask import latent
    from pathmask.models import vae_loss
    acc = float((M.logits(M.test.x).argmax(1) == M.test.y).mean() * 100)
    mu, logvar = M.encode(M.test.x)
    rec = M.decode(mu)
    _, (l2, kl) = vae_loss(jnp.asarray(rec), jnp.asarray(M.test.x), jnp.asarray(mu), jnp.asarray(logvar))
    curve = latent.pca_test_l2_curve(M.train.x, M.test.x)
    # per-dimension KL (nats, test mean): a dimension the encoder leaves at the prior costs ~0
    kl_d = 0.5 * np.mean(mu ** 2 + np.exp(logvar) - 1.0 - logvar, axis=0)
    return {"cnn_test_acc": acc, "vae_test_l2": float(l2), "vae_test_kl": float(kl),
            "vae_recon_acc": float((M.logits(rec).argmax(1) == M.test.y).mean() * 100),
            "vae_active_dims": latent.active_dims(mu), "vae_dims_kl_used": int((kl_d > 0.1).sum()),
            "pca_test_l2_5": float(curve[5]), "pca_test_l2_20": float(curve[20]),
            "vae_pca_equivalent_dims": latent.pca_equivalent_dims(curve, float(l2))}


# --------------------------------------------------------------------------------------------------
def reconstructions(cfg, ctx) -> dict:
    """Fig 4.1 / 5.1 (5.6, 5.11, 5.15 at paper): test images and VAE reconstructions; the models'
    accuracies and losses (not in the document: ours); how often the best embedding (5.1) finds a
    sampled code keeping the CNN's two most probable classes."""
    import jax
    from common.plotting import plt
    from pathmask import latent
    M = _models(cfg, ctx)
    out = _model_metrics(M)
    k = cfg.n_examples * 2
    x = M.test.x[:k]
    mu, _ = M.encode(x)
    # 5.1: the mean code's decoding sometimes changes the CNN's label; the best embedding (a sample of
    # the encoder's distribution keeping the input's top-2 classes, nearest in L1) lowers that rate
    xs = M.test.x[:cfg.recon_label_samples]
    label = M.logits(xs).argmax(1)
    mu_s, _ = M.encode(xs)
    changed_mean = M.logits(M.decode(mu_s)).argmax(1) != label
    codes, kept = latent.best_embedding(M, xs, jax.random.PRNGKey(ctx.seed), cfg.best_of)
    changed_best = M.logits(M.decode(codes)).argmax(1) != label
    out["best_embedding_kept"] = float(kept.mean())
    out["mean_code_label_changed"] = float(changed_mean.mean())
    out["mean_code_label_changed_lo"], out["mean_code_label_changed_hi"] = binomial_ci(int(changed_mean.sum()), len(xs))
    out["best_code_label_changed"] = float(changed_best.mean())
    d = changed_mean.astype(float) - changed_best.astype(float)          # paired, per input
    out["label_change_drop"] = float(d.mean())
    out["label_change_drop_lo"], out["label_change_drop_hi"] = bootstrap_ci(d)
    best = M.decode(codes[:k])
    fig, axes = plt.subplots(3, k, figsize=(k * 0.9, 3))
    for i in range(k):
        _img(axes[0, i], x[i]), _img(axes[1, i], M.decode(mu[i:i + 1])[0]), _img(axes[2, i], best[i])
    axes[0, 0].set_ylabel("input", fontsize=7), axes[1, 0].set_ylabel("mean code", fontsize=7)
    axes[2, 0].set_ylabel("best (5.1)", fontsize=7)
    ctx.savefig(fig, "fig5_1_reconstructions", "test inputs, decodings of the mean code and of the best embedding")
    ctx.table("Models (app. C; training settings and accuracies are not in document 003: ours)",
              ["model", "epochs", "batch", "Adam lr", "test metric"],
              [["CNN", cfg.cnn.epochs, cfg.cnn.batch_size, cfg.cnn.lr, f"accuracy {out['cnn_test_acc']:.2f} %"],
               ["VAE", cfg.vae.epochs, cfg.vae.batch_size, cfg.vae.lr,
                f"L2 {out['vae_test_l2']:.2f} + {cfg.kl_weight:g} x KL {out['vae_test_kl']:.2f} per image; CNN on "
                f"reconstructions {out['vae_recon_acc']:.2f} %"]])
    ctx.table("VAE health (test set; mean codes)",
              ["active latent dims (Var of mu > 0.01)", "dims with KL > 0.1 nats", "test L2", "PCA test L2, 5 / 20 "
               "components", "PCA components matching the VAE's L2",
               "CNN reads reconstructions", "mean code changes the CNN's label", "best embedding changes it"],
              [[f"{out['vae_active_dims']} / {cfg.latent_dim}", out["vae_dims_kl_used"], out["vae_test_l2"],
                f"{out['pca_test_l2_5']:.1f} / {out['pca_test_l2_20']:.1f}", out["vae_pca_equivalent_dims"],
                f"{out['vae_recon_acc']:.1f} %",
                f"{out['mean_code_label_changed']:.3f} [{out['mean_code_label_changed_lo']:.3f}, "
                f"{out['mean_code_label_changed_hi']:.3f}]", f"{out['best_code_label_changed']:.3f}"]])
    return out


# --------------------------------------------------------------------------------------------------
def norms(cfg, ctx) -> dict:
    """Fig 4.2 / 4.3: histogram of the training codes' norms, overall and per class; c_o per class."""
    from scipy.stats import skew
    from common.plotting import plt
    from pathmask import latent
    M = _models(cfg, ctx)
    mu, _ = M.encode(M.train.x)
    n = np.linalg.norm(mu, axis=1)
    K = len(M.train.classes)
    c = latent.class_norms(mu, M.train.y, K)
    sk = float(skew(n))
    boots = np.random.default_rng(0).integers(0, len(n), (500, len(n)))
    sk_lo, sk_hi = np.quantile([skew(n[b]) for b in boots], [0.025, 0.975])
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist(n, bins=60), ax.set_xlabel("||code||"), ax.set_ylabel("training images")
    ctx.savefig(fig, "fig4_2_norms", "norms of the training codes (encoder means)")
    fig, axes = plt.subplots(2, (K + 1) // 2, figsize=(2 * ((K + 1) // 2), 4), sharex=True)
    for k, ax in enumerate(axes.ravel()[:K]):
        ax.hist(n[M.train.y == k], bins=30), ax.set_title(f"{M.train.classes[k]}: c_o={c[k]:.2f}", fontsize=8)
    ctx.savefig(fig, "fig4_3_norms_by_class", "code norms per class; c_o = their mean")
    ctx.table("Class-wise mean code norm c_o (the target norm of morphing)", ["class", "c_o", "std"],
              [[M.train.classes[k], c[k], n[M.train.y == k].std()] for k in range(K)])
    out = {"norm_mean": float(n.mean()), "norm_skew": sk, "norm_skew_lo": float(sk_lo), "norm_skew_hi": float(sk_hi)}
    out.update({f"c_o_{k}": float(c[k]) for k in range(K)})
    return out


# --------------------------------------------------------------------------------------------------
def interpolation(cfg, ctx) -> dict:
    """Fig 4.4 (nearest training pair of another class by cosine), Fig 4.5 (norm along linear vs radial
    interpolation between random pairs of training codes), Fig 4.6 (a decoded radial path)."""
    from common.plotting import plt
    from pathmask import latent
    M = _models(cfg, ctx)
    rng = np.random.default_rng(ctx.seed)
    mu, _ = M.encode(M.train.x)
    tn = np.linalg.norm(mu, axis=1)
    lo_r, hi_r = np.quantile(tn, [0.025, 0.975])
    i, j = rng.integers(0, len(mu), (2, cfg.interp_pairs))
    curves = {k: np.linalg.norm(np.asarray(latent.path(mu[i], mu[j], cfg.path_steps, k)), axis=-1)
              for k in ("linear", "radial")}                             # (P, n)
    out = {}
    for k, cv in curves.items():
        outside = ((cv < lo_r) | (cv > hi_r)).mean(axis=1)               # per pair: fraction of steps outside
        out[f"{k}_outside"] = float(outside.mean())
        out[f"{k}_outside_lo"], out[f"{k}_outside_hi"] = bootstrap_ci(outside)
        # the norm in the middle of the path relative to the endpoints' mean
        out[f"{k}_mid_ratio"] = float((cv[:, cfg.path_steps // 2] / cv[:, [0, -1]].mean(1)).mean())
    diff = ((curves["linear"] < lo_r) | (curves["linear"] > hi_r)).mean(1) - \
           ((curves["radial"] < lo_r) | (curves["radial"] > hi_r)).mean(1)
    out["outside_diff"] = float(diff.mean())
    out["outside_diff_lo"], out["outside_diff_hi"] = bootstrap_ci(diff)
    out["train_norm_lo"], out["train_norm_hi"] = float(lo_r), float(hi_r)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
    a = np.linspace(0, 1, cfg.path_steps)
    for ax, (k, cv) in zip(axes, curves.items()):
        ax.plot(a, cv[:50].T, lw=0.5, alpha=0.6)
        ax.axhspan(lo_r, hi_r, color="0.85", zorder=0, label="training norms 2.5-97.5 %")
        ax.set_title(f"{k} interpolation"), ax.set_xlabel("alpha")
    axes[0].set_ylabel("||code||"), axes[0].legend(fontsize=7)
    ctx.savefig(fig, "fig4_5_norm_evolution", "code norm along linear (left) and radial (right) interpolation, "
                                               "random training pairs; grey: the training range")
    # Fig 4.4: for test inputs, the training image of the second most probable class nearest by cosine
    xq = M.test.x[:cfg.n_examples]
    other = latent.top2(M.logits(xq))[:, 1]
    mq, _ = M.encode(xq)
    fig, axes = plt.subplots(2, len(xq), figsize=(len(xq) * 0.9, 2))
    pairs = []
    for q in range(len(xq)):
        pool = np.flatnonzero(M.train.y == other[q])
        nn_ = pool[latent.nearest_by_cosine(mq[q:q + 1], mu[pool])[0]]
        pairs.append(nn_)
        _img(axes[0, q], xq[q]), _img(axes[1, q], M.train.x[nn_], f"{M.train.classes[other[q]]}")
    ctx.savefig(fig, "fig4_4_nearest_pairs", "test inputs (top) and the nearest training code (cosine) of their "
                                             "second most probable class (bottom)")
    # Fig 4.6: the decoded radial path of the first pair
    z = np.asarray(latent.path(mq[0], mu[pairs[0]], 10))
    imgs = M.decode(z)
    fig, axes = plt.subplots(1, 10, figsize=(9, 1))
    for t in range(10):
        _img(axes[t], imgs[t])
    ctx.savefig(fig, "fig4_6_path", "radial interpolation path between the pair of Fig 4.4, column 1")
    ctx.table("Code norm along interpolation paths (random training pairs)",
              ["path", "fraction of steps outside the training range", "95 % CI", "mid-path / endpoint norm"],
              [[k, out[f"{k}_outside"], f"[{out[f'{k}_outside_lo']:.3f}, {out[f'{k}_outside_hi']:.3f}]",
                out[f"{k}_mid_ratio"]] for k in curves])
    return out


# --------------------------------------------------------------------------------------------------
def entropy_gradient(cfg, ctx) -> dict:
    """4.4, Fig 4.7 / 4.8: two-class entropy vs gradient magnitude of p_self along radial paths from a
    training image to its nearest (cosine) training image of its second most probable class."""
    from common.plotting import plt
    from pathmask import latent
    M = _models(cfg, ctx)
    mu, _ = M.encode(M.train.x)
    idx = fixed_subset(len(mu), cfg.corr_pairs, ctx.seed)
    t2 = latent.top2(M.logits(M.train.x[idx]))
    a, b = t2[:, 0], t2[:, 1]
    partner = np.empty(len(idx), int)
    for k in np.unique(b):
        pool = np.flatnonzero(M.train.y == k)
        sel = np.flatnonzero(b == k)
        partner[sel] = pool[latent.nearest_by_cosine(mu[idx[sel]], mu[pool])]
    H, G = latent.entropy_gradient_along_paths(M, mu[idx], mu[partner], a, b, cfg.corr_path_steps)
    r_pairs = np.array([latent.pearson(h, g) for h, g in zip(H, G)])
    r_all = latent.pearson(H, G)
    lo, hi = latent.pooled_r_interval(H, G, seed=ctx.seed)
    # the thesis' example pair: we take the pair whose entropy peak is most central (a full window)
    windows = np.array([latent.entropy_window(h) for h in H])
    n = cfg.corr_path_steps
    central = (windows[:, 1] > 0) & (windows[:, 2] < n - 1)
    ex = int(np.flatnonzero(central)[0]) if central.any() else 0
    out = {"r_example": float(r_pairs[ex]), "r_pooled": r_all, "r_pooled_lo": lo, "r_pooled_hi": hi,
           "r_pair_median": float(np.nanmedian(r_pairs)), "pairs": int(len(idx)),
           "frac_left": float((windows[:, 1] <= 0).mean()), "frac_right": float((windows[:, 2] >= n - 1).mean())}
    # "gradient magnitude radically increases in the bounds" (L1484-1488): per pair, the log of the
    # mean gradient magnitude inside the entropy window over the mean outside it (pairs whose window
    # leaves steps on both sides of the comparison), 95 % bootstrap interval over pairs
    lr_in_out = latent.window_log_ratio(H, G)
    out["grad_window_pairs"] = int(np.isfinite(lr_in_out).sum())
    out["grad_window_log_ratio"] = float(np.nanmean(lr_in_out)) if out["grad_window_pairs"] else float("nan")
    out["grad_window_log_ratio_lo"], out["grad_window_log_ratio_hi"] = (
        bootstrap_ci(lr_in_out[np.isfinite(lr_in_out)]) if out["grad_window_pairs"] > 1 else (float("nan"),) * 2)
    m, wl, wr = windows[ex]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    axes[0].plot(H[ex]), axes[0].set_title("two-class entropy (bits)")
    axes[1].plot(G[ex]), axes[1].set_title("mean |d p_self / d x|")
    for ax in axes[:2]:
        ax.axvline(m, color="r", ls="--"), ax.axvline(wl, color="k", ls="--"), ax.axvline(wr, color="k", ls="--")
        ax.set_xlabel("path step")
    axes[2].scatter(H[ex], G[ex], s=5), axes[2].set_xlabel("entropy"), axes[2].set_ylabel("gradient magnitude")
    axes[2].set_title(f"r = {r_pairs[ex]:.3f}")
    ctx.savefig(fig, "fig4_7_entropy_gradient_pair", "one pair: entropy and gradient magnitude along the path, "
                                                     "mean entropy step (red) +- 1.96 weighted std (black)")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3), sharey=True)
    groups = {"left": windows[:, 1] <= 0, "right": windows[:, 2] >= n - 1}
    groups["center"] = ~(groups["left"] | groups["right"])
    for ax, (g, sel) in zip(axes, groups.items()):
        if sel.any():
            ax.scatter(H[sel].ravel(), G[sel].ravel(), s=1, alpha=0.3)
        ax.set_title(f"{g}: {int(sel.sum())} pairs"), ax.set_xlabel("entropy")
    axes[0].set_ylabel("gradient magnitude")
    ctx.savefig(fig, "fig4_8_entropy_gradient_all", f"{len(idx)} pairs, split by where the entropy window lies; "
                                                    f"pooled Pearson r = {r_all:.3f} [{lo:.3f}, {hi:.3f}]")
    ctx.table("Entropy vs gradient magnitude (4.4)", ["", "ours", "thesis"],
              [["r, example pair", out["r_example"], 0.663], ["r, pooled over pairs", r_all, 0.593],
               ["95 % CI of pooled r (bootstrap over pairs)", f"[{lo:.3f}, {hi:.3f}]", "-"],
               ["pairs", len(idx), 1000], ["path steps", n, 100]])
    return out


# --------------------------------------------------------------------------------------------------
def _morph_inputs(M, cfg, seed):
    """Test inputs for morphing (a seeded random choice), self = CNN top-1, other = top-2."""
    from pathmask import latent
    idx = fixed_subset(len(M.test.x), cfg.morph_samples, seed)
    t2 = latent.top2(M.logits(M.test.x[idx]))
    return idx, t2[:, 0], t2[:, 1]


def morphing(cfg, ctx) -> dict:
    """4.5 / 5.1-5.3: semantic morphing of test inputs into their second most probable class; the
    morphing error rate (Wilson interval), Fig 4.9 (loss terms of one run), Fig 5.2 (pairs with the
    new image's logits and probabilities)."""
    import time
    import jax
    from common.plotting import plt
    from pathmask import latent
    from pathmask.morphing import BatchedMorph
    M = _models(cfg, ctx)
    idx, s, o = _morph_inputs(M, cfg, ctx.seed)
    x = M.test.x[idx]
    codes, kept = latent.best_embedding(M, x, jax.random.PRNGKey(ctx.seed), cfg.best_of)
    mu, _ = M.encode(M.train.x)
    c_norm = latent.class_norms(mu, M.train.y, len(M.train.classes))
    t0 = time.time()
    r = BatchedMorph(M, cfg)(codes, s, o, c_norm[o], progress=cfg.progress)
    secs = time.time() - t0
    errors = int((~r.stopped).sum())
    lo, hi = binomial_ci(errors, len(idx))
    new_lg = M.logits(M.decode(r.codes))
    st = r.stopped
    out = {"error_rate": errors / len(idx), "error_rate_lo": lo, "error_rate_hi": hi, "samples": int(len(idx)),
           "alpha_lk": cfg.resolved_alpha_lk(), "max_steps": int(cfg.morph_max_steps),
           "argmax_other": float((new_lg.argmax(1) == o).mean()),
           "best_embedding_kept": float(kept.mean()), "morph_seconds": secs,
           "norm_gap_after": float(np.mean(np.abs(np.linalg.norm(r.codes, axis=1) - c_norm[o])))}
    # the stop fires early (the thesis' example: < 350 of 5000 steps, L1600): median over stopped
    # samples with a bootstrap interval of the median
    out["steps_median"] = float(np.median(r.steps[st])) if st.any() else float("nan")
    out["steps_max"] = float(r.steps[st].max()) if st.any() else float("nan")     # what a lower cap would cut
    out["steps_median_lo"], out["steps_median_hi"] = (latent.median_ci(r.steps[st])
                                                      if st.sum() > 1 else (float("nan"),) * 2)
    # early stopping instead of a similarity term (L1567-1575): the morph's code stays nearer the
    # input's code than the nearest training code of the other class is (Euclidean, in code space)
    d_morph = np.linalg.norm(r.codes - codes, axis=1)
    d_nn = latent.nearest_of_class_distance(codes, mu, M.train.y, o)
    nearer = (d_morph < d_nn)[st]
    out["morph_nearer"] = float(nearer.mean()) if st.any() else float("nan")
    out["morph_nearer_lo"], out["morph_nearer_hi"] = (binomial_ci(int(nearer.sum()), int(st.sum())) if st.any()
                                                      else (float("nan"),) * 2)
    out["morph_distance_ratio_median"] = float(np.median((d_morph / d_nn)[st])) if st.any() else float("nan")
    ctx.table("Semantic morphing error rate", ["", "ours", "thesis"],
              [["error rate", f"{out['error_rate']:.3f} [{lo:.3f}, {hi:.3f}] (Wilson 95 %)", "0.03 (MNIST), 0.02 (NotMNIST), "
                                                                                      "0.19 (FashionMNIST)"],
               ["samples", len(idx), 100], ["max steps", cfg.morph_max_steps, 5000], ["Adam lr", cfg.morph_lr, 1e-3],
               ["alpha_lk", out["alpha_lk"], "0.1 (MNIST), 10 (NotMNIST, FashionMNIST)"],
               ["median steps to stop", out["steps_median"], "< 350 (one example, L1600)"]])
    # Fig 4.9: the loss terms of the first sample that stopped
    ex = int(np.flatnonzero(r.stopped)[0]) if r.stopped.any() else 0
    fig, axes = plt.subplots(1, 4, figsize=(12, 2.6))
    _img(axes[0], x[ex], f"input ({M.train.classes[s[ex]]})")
    _img(axes[1], M.decode(r.codes[ex:ex + 1])[0], f"morph ({M.train.classes[o[ex]]}), {r.steps[ex]} steps")
    axes[2].plot(r.objective[ex], label="-logit_o"), axes[2].plot(r.regulariser[ex], label="(||c||-c_o)^2")
    axes[2].plot(r.loss[ex], label="loss"), axes[2].legend(fontsize=6), axes[2].set_xlabel("step")
    p = jax.nn.softmax(new_lg[ex])
    axes[3].bar(range(len(p)), np.asarray(p)), axes[3].set_title("probabilities of the morph", fontsize=8)
    ctx.savefig(fig, "fig4_9_morph_example", "semantic morphing of one input: loss terms and the result")
    # Fig 5.2: pairs
    k = min(cfg.n_examples, len(idx))
    fig, axes = plt.subplots(k, 3, figsize=(6, 1.3 * k))
    morphs = M.decode(r.codes[:k])
    for q in range(k):
        _img(axes[q, 0], x[q], f"{M.train.classes[s[q]]}")
        _img(axes[q, 1], morphs[q], f"-> {M.train.classes[o[q]]}{'' if r.stopped[q] else ' (error)'}")
        axes[q, 2].bar(range(new_lg.shape[1]), new_lg[q], color="0.5")
        axes[q, 2].bar([o[q]], [new_lg[q, o[q]]], color="r"), axes[q, 2].tick_params(labelsize=5)
    ctx.savefig(fig, "fig5_2_morph_pairs", "inputs, their morphs into the second class, the morph's logits (red: other)")
    return out


# --------------------------------------------------------------------------------------------------
def _path_mask_figure(ctx, M, ex, q, name, caption, titles):
    from common.plotting import plt
    n = ex.paths.shape[1]
    cols = 8
    fig, axes = plt.subplots(4, cols, figsize=(cols * 1.1, 5))
    for a in axes.ravel():
        a.set_xticks([]), a.set_yticks([])
    _img(axes[0, 0], ex.images[q], titles[0]), _img(axes[0, 1], ex.paths[q, -1], titles[1])
    _img(axes[0, 2], ex.paths[q, 0], titles[2])
    for t, step in enumerate(np.linspace(0, n - 1, cols).astype(int)):
        _img(axes[1, t], ex.paths[q, step], f"step {step + 1}")
    m, sg = ex.mask.masks[q], ex.signed[q]
    axes[2, 0].imshow(m, cmap="Greens", vmin=0, vmax=1), axes[2, 0].set_title("mask", fontsize=7)
    v = np.abs(sg).max() + 1e-9
    axes[2, 1].imshow(sg, cmap="bwr", vmin=-v, vmax=v), axes[2, 1].set_title("red +, blue -", fontsize=7)
    for k, base in ((2, ex.paths[q, -1]), (3, ex.paths[q, 0])):
        axes[2, k].imshow(base[..., 0] if base.shape[-1] == 1 else base, cmap="gray")
        axes[2, k].imshow(m, cmap="Greens", alpha=0.5), axes[2, k].set_title("mask on " + ("recon" if k == 2 else "morph"),
                                                                             fontsize=7)
    axes[3, 0].remove(), axes[3, 1].remove()
    lax = fig.add_subplot(4, 4, 13)
    lax.plot(ex.mask.loss[q]), lax.set_title("loss", fontsize=7), lax.tick_params(labelsize=5)
    gax = fig.add_subplot(4, 4, 14)
    gax.bar(range(n - 1), ex.mask.gains[q]), gax.set_title("gain of p_self per step", fontsize=7)
    gax.tick_params(labelsize=5)
    for a in axes[3, 2:]:
        a.remove()
    ctx.savefig(fig, name, caption)


def path_mask(cfg, ctx) -> dict:
    """4.6 / 5.1: path-mask attribution for correctly classified test inputs (Fig 4.12, 5.3) and for
    misclassified ones (Fig 5.5: the morph goes to the true label, the mask explains the wrong one)."""
    from pathmask.attribution import explain
    from pathmask import latent
    M = _models(cfg, ctx)
    lg = M.logits(M.test.x)
    pred = lg.argmax(1)
    right = np.flatnonzero(pred == M.test.y)[:cfg.mask_samples]
    wrong = np.flatnonzero(pred != M.test.y)[:cfg.mask_wrong]
    sel = np.concatenate([right, wrong])
    t2 = latent.top2(lg[sel])
    self_l = pred[sel]
    other_l = np.where(np.arange(len(sel)) < len(right), t2[:, 1], M.test.y[sel])
    ex = explain(M, M.test.x[sel], self_l, other_l, cfg, seed=ctx.seed, progress=cfg.progress)
    C = M.train.classes
    for q in range(len(sel)):
        is_wrong = q >= len(right)
        titles = ((f"true {C[M.test.y[sel[q]]]}", f"predicted {C[self_l[q]]}", f"morph {C[other_l[q]]}") if is_wrong
                  else (f"input {C[self_l[q]]}", "reconstruction", f"morph {C[other_l[q]]}"))
        name = f"fig5_5_wrong_{q - len(right)}" if is_wrong else f"fig5_3_path_mask_{q}"
        if is_wrong or q < 4:
            _path_mask_figure(ctx, M, ex, q, name, ("misclassified input: " if is_wrong else "") +
                              f"{C[other_l[q]]} -> {C[self_l[q]]}{'' if ex.morph.stopped[q] else ' (morphing error)'}",
                              titles)
    import jax.numpy as jnp
    from pathmask.mask import gain_window_excess, loss_drop, mask_floor
    norms = np.linalg.norm(ex.path_codes, axis=-1)                        # (B, n)
    overshoot = norms.max(1) / norms[:, [0, -1]].max(1)
    total_gain = ex.mask.gains.sum(1)
    B, n = ex.paths.shape[:2]
    plg = M.logits(ex.paths.reshape((-1,) + ex.paths.shape[2:])).reshape(B, n, -1)
    h = np.asarray(latent.entropy2(jnp.asarray(plg[np.arange(B), :, self_l]),
                                   jnp.asarray(plg[np.arange(B), :, other_l])))          # (B, n)
    excess = gain_window_excess(ex.mask.gains, 0.5 * (h[:, :-1] + h[:, 1:]))
    drop = loss_drop(ex.mask, cfg.mask_l1)
    floor = mask_floor(0.5, cfg.mask_lr, cfg.mask_steps)
    out = {"inputs": int(len(sel)), "wrong_inputs": int(len(wrong)),
           "morph_stopped": float(ex.morph.stopped.mean()), "mask_mean": float(ex.mask.masks.mean()),
           "mask_floor": floor, "mask_near_zero": float((ex.mask.masks < 0.01).mean()),
           "mask_stopped": float(ex.mask.stopped.mean()), "max_mask_steps": int(cfg.mask_steps),
           "gain_mean": float(total_gain.mean()), "mask_steps_mean": float(ex.mask.steps.mean()),
           "loss_drop": float(drop.mean()),
           "radial_overshoot_mean": float(overshoot.mean()), "radial_overshoot_max": float(overshoot.max())}
    # 4.6: the optimised gain is positive and the loss falls; 4.4's conclusion: the gains sit at the
    # high-entropy steps. 95 % bootstrap intervals over the inputs
    out["gain_mean_lo"], out["gain_mean_hi"] = bootstrap_ci(total_gain)
    out["loss_drop_lo"], out["loss_drop_hi"] = bootstrap_ci(drop)
    fin = excess[np.isfinite(excess)]
    out["gain_window_inputs"] = int(len(fin))
    out["gain_window_excess"] = float(fin.mean()) if len(fin) else float("nan")
    out["gain_window_excess_lo"], out["gain_window_excess_hi"] = bootstrap_ci(fin) if len(fin) > 1 else (float("nan"),) * 2
    ctx.table(f"Path-mask runs (mask floor within the budget: {floor:g}; early stop: no blurred-mask pixel moves "
              f"by {cfg.mask_tol:g} for {cfg.mask_patience} steps)",
              ["input", "self", "other", "morph stopped", "mask steps", "mask stopped", "mean mask",
               "pixels < 0.01", "sum of gains", "loss drop", "gain share in entropy window - step share",
               "max path norm / endpoint norm"],
              [[int(sel[q]), C[self_l[q]], C[other_l[q]], bool(ex.morph.stopped[q]), int(ex.mask.steps[q]),
                bool(ex.mask.stopped[q]), float(ex.mask.masks[q].mean()), float((ex.mask.masks[q] < 0.01).mean()),
                float(total_gain[q]), float(drop[q]), float(excess[q]), float(overshoot[q])] for q in range(len(sel))])
    ctx.note("Radial interpolation between a code and its morph (correlated endpoints of unequal norm) overshoots "
             "the endpoints' norm: the last column (max norm along the path / the larger endpoint norm) is > 1.")
    return out


# --------------------------------------------------------------------------------------------------
def beyond_saliency(cfg, ctx) -> dict:
    """Beyond the document: is path-mask a good explanation? Path-mask beside every generic method of
    the repository's grid (captum's Saliency, IG, Occlusion, pytorch-grad-cam's CAMs, Opti-CAM,
    extremal and meaningful perturbation, RISE, Fake-CAM ...) and an |input - morph| baseline on the
    very same classifier (a torch copy of the Flax CNN, tested to give its logits), scored under the
    one protocol (``common.saliency.run_benchmark`` over the config's ``saliency`` grid: AD / AI /
    AG, insertion, deletion) and by the contrastive score: the drop of p_self - p_other when the
    top-k % pixels of a map take the morph's values (moved to the other end of the path)."""
    import torch
    from common.saliency import benchmark_methods, benchmark_metrics, get_method, run_benchmark, score_maps
    from common.saliency_metrics import minmax
    from pathmask.saliency import contrastive_drop, explainable_cnn
    M = _models(cfg, ctx)
    net = explainable_cnn(M)
    pred = M.logits(M.test.x).argmax(1)
    right = np.flatnonzero(pred == M.test.y)
    sel = right[fixed_subset(len(right), cfg.saliency.n_images, ctx.seed)]
    x = torch.as_tensor(M.test.x[sel]).permute(0, 3, 1, 2).contiguous()
    y = torch.as_tensor(pred[sel])
    names, skipped = benchmark_methods(cfg.saliency, net)
    if "pathmask" not in names:
        raise ValueError(f"the contrastive score needs path-mask's morphs: 'pathmask' is not scored ({names})")
    kept = []
    torch.manual_seed(ctx.seed)
    scores = run_benchmark(net, x, y, cfg.saliency, batch_size=len(sel), layer=net.features[-1],
                           extra_options={"pathmask": {"seed": ctx.seed, "keep": kept}}, progress=cfg.progress)
    ex = kept[-1]                                                     # the morphs of path-mask's run
    morphs = torch.as_tensor(ex.paths[:, 0]).permute(0, 3, 1, 2)
    other = ex.other_labels
    # baselines: random pixels, and |input - morph| (no optimisation; it knows the morph as path-mask does)
    rand = torch.rand(len(sel), *x.shape[2:], generator=torch.Generator().manual_seed(ctx.seed))
    absdiff = minmax((x - morphs).abs().sum(1))
    scores["absdiff"] = score_maps(net, x, y, absdiff, n_steps=cfg.saliency.insertion_steps)
    # a costly method scored the first n images: its contrastive score is over those
    contrast = {n: contrastive_drop(net, x[:scores[n]["n"]], scores[n]["maps"], morphs[:scores[n]["n"]],
                                    y[:scores[n]["n"]], other[:scores[n]["n"]], cfg.bench_top)
                for n in [*names, "absdiff"]}
    contrast["random"] = contrastive_drop(net, x, rand, morphs, y, other, cfg.bench_top)
    out = benchmark_metrics({n: scores[n] for n in names}, model_key="mnist5k-pathmask-cnn" if cfg.dataset == "mnist5k"
                            else f"{cfg.dataset}-pathmask-cnn")
    for k_ in ("AD", "AI", "AG", "insertion", "deletion"):
        out[f"absdiff_{k_}"] = float(scores["absdiff"][k_])
    for n, d in contrast.items():
        lo, hi = bootstrap_ci(d)
        out[f"contrast_{n}"], out[f"contrast_{n}_lo"], out[f"contrast_{n}_hi"] = float(d.mean()), lo, hi
    for n in [*names, "absdiff"]:                 # scores that do not know the morph, with intervals over images
        for k_ in ("insertion", "deletion"):
            out[f"{k_}_{n}_lo"], out[f"{k_}_{n}_hi"] = bootstrap_ci(scores[n][f"{k_}_each"])
    out["bench_images"] = int(len(sel))
    out["morph_stopped"] = float(ex.morph.stopped.mean())
    labels = {n: get_method(n).label for n in names}
    labels["random"], labels["absdiff"] = "random pixels", "abs(input - morph), baseline"
    impl = {n: get_method(n).implementation for n in names}
    impl["random"], impl["absdiff"] = "-", "ours (no optimisation)"
    ci = lambda n, k_: f"{scores[n][k_]:.1f} [{out[f'{k_}_{n}_lo']:.1f}, {out[f'{k_}_{n}_hi']:.1f}]"
    ctx.table(f"Path-mask against attribution methods on the same CNN ({len(sel)} correctly classified test "
              f"images; a costly method scores the first 'images' of them). Scores that do not know the morph: "
              f"AD / AI / AG, insertion, deletion (95 % CI over images). "
              f"Score that knows the morph: contrastive (top {cfg.bench_top:.0%} pixels moved to the morph); "
              f"path-mask and abs(input - morph) are built from the morph, the others are not"
              + (f". Skipped (not applicable): {', '.join(skipped)}" if skipped else "."),
              ["method", "implementation", "images", "AD (lower better)", "AI", "AG", "insertion",
               "deletion (lower better)", "contrastive drop of p_self - p_other [95 % CI]", "s / image"],
              [[labels[n], impl[n], scores[n]["n"] if n in scores else len(sel),
                *([scores[n][k_] for k_ in ("AD", "AI", "AG")] + [ci(n, "insertion"), ci(n, "deletion")]
                  if n in scores else ["-"] * 5),
                f"{contrast[n].mean():.3f} [{out[f'contrast_{n}_lo']:.3f}, {out[f'contrast_{n}_hi']:.3f}]",
                scores[n].get("seconds_per_image", "-") if n in scores else "-"] for n in [*names, "absdiff", "random"]])
    from common.plotting import plt
    k = min(6, len(sel))
    fig, axes = plt.subplots(k, len(names) + 2, figsize=(1.2 * (len(names) + 2), 1.2 * k))
    for r in range(k):
        _img(axes[r, 0], M.test.x[sel[r]], M.train.classes[int(y[r])] if r else "input")
        _img(axes[r, 1], ex.paths[r, 0], f"morph {M.train.classes[other[r]]}" if r == 0 else M.train.classes[other[r]])
        for c, n in enumerate(names):
            if r < scores[n]["n"]:          # a costly method: only the images it scored
                axes[r, c + 2].imshow(scores[n]["maps"][r].numpy(), cmap="jet", vmin=0, vmax=1)
            axes[r, c + 2].set_xticks([]), axes[r, c + 2].set_yticks([])
            if r == 0:
                axes[r, c + 2].set_title(labels[n], fontsize=7)
    ctx.savefig(fig, "beyond_saliency_maps", "inputs, their morphs, and each method's map on the same CNN")
    return out
