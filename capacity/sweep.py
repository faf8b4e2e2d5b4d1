"""Where does specialisation appear? The thesis' finding (a decoder fine-tuned for one classifier
produces signals other classifiers cannot read, Tab 5.3, Fig 5.6) needs an autoencoder that cannot
pass the whole image through. ``bottleneck_sweep`` trains A_S and the A_i at several bottleneck
ratios (the last block's width sets it; everything else as the main config, with the sweep's own,
smaller, training budget) and reports, per ratio, the off-diagonal CR_min (mean and min over
classifier pairs) and the number of FCA concepts, each with a bootstrap interval over the
evaluation images. The classifiers are the main experiments' own (same stage keys), and a sweep
point with the main config's settings reuses its autoencoders.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from capacity.autoencoder import bottleneck_ratio
from capacity.data import ordered_batches
from capacity.findings import SWEEP_KEYS, accuracy_findings, ratio_key
from capacity.pipeline import load_sources, short, train_models


def sweep_configs(cfg) -> list:
    """(ratio, config) per sweep point, in increasing ratio."""
    h, w, c = cfg.image_size, cfg.image_size, (3 if cfg.zoo else 1)
    out = []
    for widths in cfg.sweep_widths:
        widths = tuple(int(v) for v in widths)
        ae = dataclasses.replace(cfg.ae, widths=widths, pretrain_images=cfg.sweep_pretrain_images,
                                 finetune_epochs=cfg.sweep_finetune_epochs)
        sub = dataclasses.replace(cfg, ae=ae, classifiers=tuple(cfg.sweep_classifiers or cfg.classifiers))
        out.append((bottleneck_ratio(widths, h, w, c), sub))
    return sorted(out, key=lambda p: p[0])


def correctness(models, source, batch_size: int, originals: bool = False) -> np.ndarray:
    """correct[a, j, k]: classifier j right on image k of ``source`` after input a (0: A_S, 1..: A_i;
    with ``originals`` a last row: the image itself)."""
    import jax
    import torch
    names = list(models.classifiers)
    dev = next(models.classifiers[names[0]].parameters()).device
    inputs = ["A_S"] + names + (["original"] if originals else [])
    out = np.zeros((len(inputs), len(names), len(source)), bool)
    pos = 0
    for xb, yb in source.batches(ordered_batches(np.arange(len(source)), batch_size)):
        yt = torch.as_tensor(yb)
        for a, ae in enumerate(inputs):
            if ae == "original":
                r = xb.astype(np.float32) / 255.0
            else:
                r = np.array(jax.device_get(models.autoencode(ae, jax.numpy.asarray(xb))))   # writable copy
            xt = torch.from_numpy(np.ascontiguousarray(r)).permute(0, 3, 1, 2).to(dev)
            with torch.no_grad():
                for j, n in enumerate(names):
                    out[a, j, pos:pos + len(xb)] = (models.classifiers[n](xt).argmax(1).cpu() == yt).numpy()
        pos += len(xb)
    return out


def specialisation(acc: np.ndarray, names, t: float) -> tuple[float, float, int]:
    """(mean, min) of the off-diagonal CR_min and the FCA concept count at threshold t, from
    ``acc[i, j] = acc(f_j o A_i)``."""
    from capacity.metrics import cr_min, fca_context
    cr = cr_min(acc)
    off = cr[~np.eye(len(names), dtype=bool)]
    labels = [short(n) for n in names]
    lat = fca_context(np.nan_to_num(cr, nan=0.0), [f"f_{x}" for x in labels], [f"A_{x}" for x in labels], t).lattice
    return float(np.nanmean(off)), float(np.nanmin(off)), len(lat)


def bottleneck_sweep(cfg, ctx) -> dict:
    """Off-diagonal CR_min (mean, min) and FCA concepts at t = cfg.sweep_threshold against the
    bottleneck ratio; one figure, 95 % bootstrap intervals over the evaluation images."""
    from common.plotting import plt
    from capacity.config import check_sweep
    check_sweep(cfg)
    sources = load_sources(cfg, ctx)
    rng = np.random.default_rng(ctx.seed)
    n_eval = len(sources["eval"])
    boots = [rng.integers(0, n_eval, n_eval) for _ in range(cfg.sweep_bootstrap)]
    t = cfg.sweep_threshold
    out, rows, series = {}, [], []
    orig = None
    for ratio, sub in sweep_configs(cfg):
        models = train_models(sub, ctx, sources)
        names = list(models.classifiers)
        ok = correctness(models, sources["eval"], cfg.eval_batch_size, originals=orig is None)
        if orig is None:                      # the classifiers are the same at every point
            ok, orig = ok[:-1], ok[-1]
        found = accuracy_findings(ok[1:], orig, names, t, cfg.finding_bootstrap, ctx.seed)
        out.update({f"{k}_{ratio_key(ratio)}": found[k] for k in SWEEP_KEYS})
        acc = 100.0 * ok[1:].mean(-1)
        mean, low, n_concepts = specialisation(acc, names, t)
        b = np.array([specialisation(100.0 * ok[1:, :, i].mean(-1), names, t) for i in boots])
        ci = np.nanpercentile(b, [2.5, 97.5], axis=0)         # columns: mean, min, concepts
        self_acc = float(np.mean(np.diag(acc)))
        as_acc = float(np.mean(100.0 * ok[0].mean(-1)))
        k = ratio_key(ratio)
        out.update({f"offdiag_crmin_mean_{k}": mean, f"offdiag_crmin_min_{k}": low,
                    f"fca_concepts_t{t:g}_{k}": float(n_concepts), f"self_acc_mean_{k}": self_acc,
                    f"A_S_acc_mean_{k}": as_acc})
        series.append((ratio, mean, low, n_concepts, ci))
        rows.append([f"{ratio:g}:1", str(sub.ae.widths), f"{mean:.1f} [{ci[0, 0]:.1f}, {ci[1, 0]:.1f}]",
                     f"{low:.1f} [{ci[0, 1]:.1f}, {ci[1, 1]:.1f}]", f"{n_concepts} [{ci[0, 2]:g}, {ci[1, 2]:g}]",
                     self_acc, as_acc])
    ctx.table(f"Specialisation against the bottleneck ratio (values only; CR_min of Tab 5.3, FCA at t = {t:g})",
              ["ratio", "ae.widths", "off-diagonal CR_min mean [95%]", "off-diagonal CR_min min [95%]",
               f"FCA concepts t={t:g} [95%]", "mean acc f_i o A_i", "mean acc f_j o A_S"], rows,
              note=f"Intervals: percentile bootstrap over the {n_eval} evaluation images ({cfg.sweep_bootstrap} "
                   f"resamples), this training seed; the run's seed table gives mean and std over seeds. Each point: "
                   f"A_S pre-trained on {cfg.sweep_pretrain_images} images, decoders fine-tuned "
                   f"{cfg.sweep_finetune_epochs} epoch(s); the pooling masks are not counted in the ratio.")
    r = np.array([s[0] for s in series])
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for col, label, fmt in ((1, "off-diagonal CR_min, mean", "o-"), (2, "off-diagonal CR_min, min", "s--")):
        y = np.array([s[col] for s in series])
        err = np.array([[s[col] - s[4][0, col - 1], s[4][1, col - 1] - s[col]] for s in series]).T
        ax.errorbar(r, y, yerr=np.clip(err, 0, None), fmt=fmt, capsize=3, label=label)
    ax.axhline(t, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xticks(r, [f"{v:g}:1" for v in r])
    ax.set_xlabel("bottleneck ratio (input values / latent values)")
    ax.set_ylabel("CR_min (%)")
    ax2 = ax.twinx()
    y = np.array([s[3] for s in series], float)
    err = np.array([[s[3] - s[4][0, 2], s[4][1, 2] - s[3]] for s in series]).T
    ax2.errorbar(r * 1.04, y, yerr=np.clip(err, 0, None), fmt="^:", color="C3", capsize=3,
                 label=f"FCA concepts (t = {t:g})")
    ax2.set_ylabel(f"FCA concepts (t = {t:g})", color="C3")
    ax2.set_ylim(0, max(len(cfg.sweep_classifiers or cfg.classifiers) + 2, y.max() + 1))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)   # below
    fig.tight_layout()
    ctx.savefig(fig, "bottleneck_sweep", "Off-diagonal CR_min (mean, min) and FCA concept count against the "
                                         "bottleneck ratio; 95 % bootstrap intervals over evaluation images")
    return out
