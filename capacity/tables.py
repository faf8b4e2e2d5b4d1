"""The experiments of 000 ch. 5, one function per table / figure (registered in
experiments/capacity.py). All share ``pipeline.evaluate`` (trained once, cached)."""
from __future__ import annotations

import numpy as np

from capacity.pipeline import evaluate, short


def _names(ev):
    return list(ev["clf_names"]), list(ev["ae_names"])


def _ae_label(name):
    return "A_S" if name == "A_S" else f"A_{short(name)}"


def _findings(ev, cfg, ctx) -> dict:
    """capacity.findings.accuracy_findings on this run's evaluation (paired bootstrap over its images)."""
    from capacity.findings import accuracy_findings
    return accuracy_findings(ev["top1"][2:], ev["top1"][0], list(ev["clf_names"]), cfg.finding_threshold,
                             cfg.finding_bootstrap, ctx.seed)


def _common_notes(ctx, ev, cfg):
    info = ev["ae_info"]
    ctx.note(f"A_S: {cfg.ae.pretrain_images} pre-training images, batch {cfg.ae.batch_size}, final training MSE "
             f"{info['A_S'].get('final_mse')}, lr drops (lr / {cfg.ae.plateau_factor:g} when the mean loss over "
             f"{cfg.ae.plateau_images} images did not fall): {info['A_S'].get('lr_drops')}.")
    ctx.note(f"Accuracies on {ev['n_eval']} images of {cfg.dataset}/{cfg.eval_split}; nMI over {ev['n_nmi']} images.")


# --------------------------------------------------------------------------------------------------
def table_5_1(cfg, ctx) -> dict:
    """Tab 5.1: top-1 / top-5 of f_i and f_i o A_i with differences; paired bootstrap intervals."""
    from common.claims import bootstrap_ci
    ev = evaluate(cfg, ctx)
    clfs, aes = _names(ev)
    out, rows = {}, []
    lows, diffs = [], []
    for j, n in enumerate(clfs):
        a = 2 + j                     # input index of A_n
        t1, t1a = float(ev["acc1"][0, j]), float(ev["acc1"][a, j])
        t5, t5a = float(ev["acc5"][0, j]), float(ev["acc5"][a, j])
        # paired: the interval of the mean per-digit difference
        lo, hi = bootstrap_ci(ev["top1"][a, j].astype(float) * 100 - ev["top1"][0, j].astype(float) * 100,
                              seed=ctx.seed)
        out.update({f"top1_{n}": t1, f"top1_{n}_ae": t1a, f"top1_{n}_diff": t1a - t1, f"top1_{n}_diff_lo": lo,
                    f"top1_{n}_diff_hi": hi, f"top5_{n}": t5, f"top5_{n}_ae": t5a, f"top5_{n}_diff": t5a - t5})
        lows.append(lo)
        diffs.append(t1a - t1)
        rows.append([f"f_{short(n)}", t1, "", t5, ""])
        rows.append([f"f_{short(n)} o A_{short(n)}", t1a, f"{t1a - t1:+.2f} [{lo:+.2f}, {hi:+.2f}]", t5a,
                     f"{t5a - t5:+.2f}"])
    out["min_diff_top1_lo"], out["min_diff_top1"] = float(min(lows)), float(min(diffs))
    f = _findings(ev, cfg, ctx)
    out.update({k: f[k] for k in ("gain_acc_spearman", "gain_acc_spearman_lo", "gain_acc_spearman_hi")})
    ctx.note(f"Gain of f_i o A_i over f_i against the accuracy of f_i: Spearman {f['gain_acc_spearman']:+.2f} "
             f"[{f['gain_acc_spearman_lo']:+.2f}, {f['gain_acc_spearman_hi']:+.2f}] (95 % paired bootstrap over "
             f"the evaluation images, {cfg.finding_bootstrap} resamples); the thesis' Tab 5.1 gives -0.9.")
    ctx.table("Tab 5.1: top-1 / top-5 accuracy (%) of f_i and f_i o A_i",
              ["network", "top-1", "diff [95% paired bootstrap]", "top-5", "diff"], rows,
              note="Differences are composite minus plain; the interval is a paired bootstrap over evaluation images.")
    _common_notes(ctx, ev, cfg)
    for n, inf in ev["clf_info"].items():
        ctx.note(f"f_{short(n)} = {n}: {inf.get('source')}.")
    return out


# --------------------------------------------------------------------------------------------------
def reconstructions(cfg, ctx) -> dict:
    """Fig 5.3 / 5.4 / A.2: originals and reconstructions of A_S and each A_i; Fig A.3 / A.4:
    zoomed crops of one sample."""
    from common.plotting import image_grid, plt
    ev = evaluate(cfg, ctx)
    clfs, aes = _names(ev)
    orig, rec = ev["ex_orig"], ev["ex_rec"]
    labels = ["original"] + [_ae_label(a) for a in aes]
    rows = [list(orig)] + [list(rec[a]) for a in range(len(aes))]
    fig = image_grid(rows, row_labels=labels)
    ctx.savefig(fig, "reconstructions", "Fig 5.3/5.4/A.2: originals (top), pre-trained A_S and fine-tuned A_i")
    # zoomed crops of the first example (Fig A.3 / A.4): three regions, nearest-neighbour upscaled
    h, w = orig.shape[1:3]
    c = max(4, h // 3)
    spots = [(h // 2 - c // 2, w // 2 - c // 2), (h // 4 - c // 2 + 2, w // 4), (3 * h // 4 - c, 3 * w // 4 - c)]
    spots = [(max(0, min(h - c, y)), max(0, min(w - c, x))) for y, x in spots]
    zrows = []
    for img in [orig[0]] + [rec[a][0] for a in range(len(aes))]:
        zrows.append([img] + [np.kron(img[y:y + c, x:x + c], np.ones((4, 4, 1), np.uint8)) for y, x in spots])
    fig = image_grid(zrows, row_labels=labels, col_labels=["full"] + [f"crop {k + 1} (x4)" for k in range(len(spots))])
    ctx.savefig(fig, "reconstructions_zoom", "Fig A.3/A.4: zoomed crops of one sample, original and every autoencoder")
    from capacity.findings import artefact_findings, mse_findings
    out = {f"mse_{a}": float(ev["mse"][i]) for i, a in enumerate(aes) if a != "A_S"}
    # A_S on its own training images (eval-mode BN, after training) against the held-out split
    # (the extra nMI items are A_S's training images when it was pre-trained on the train split;
    # otherwise there are none to compare with: nan, the claim SKIPs)
    mse_s, is_eval = ev["mse_items"][0], ev["is_eval_items"]
    if cfg.pretrain_folder or cfg.nmi_extra_split != cfg.train_split:
        mse_s, is_eval = mse_s[is_eval], is_eval[is_eval]
    out.update(mse_findings(mse_s, is_eval, cfg.finding_bootstrap, ctx.seed))
    out.update(artefact_findings(ev["artefact_const"], ev["artefact_const_rep"], aes))
    ctx.table("Reconstruction MSE (Eq 5.1, pixels in [0, 1]) on the evaluation split, and the share of the "
              "residual A(x) - x that is the same for every image",
              ["autoencoder", "MSE", "constant share of the residual", "minus A_S's [95%]"],
              [[_ae_label(a), float(ev["mse"][i]), out[f"artefact_const_{a}"],
                "" if a == "A_S" else f"[{out[f'artefact_gap_{a}_lo']:+.4f}, {out[f'artefact_gap_{a}_hi']:+.4f}]"]
               for i, a in enumerate(aes)], digits=5,
              note="Constant share: |mean residual|^2 / mean |residual|^2 over the evaluation images (1: one "
                   "pattern on every image; about 1/n: independent noise); its interval is a Poisson bootstrap "
                   f"({cfg.artefact_bootstrap} replicates) with the same weights for every autoencoder (paired).")
    ctx.note(f"A_S: MSE on its training split {out['mse_A_S_train']:.5f}, on the held-out split "
             f"{out['mse_A_S_eval']:.5f}, ratio held-out / training {out['mse_A_S_ratio']:.3f} "
             f"[{out['mse_A_S_ratio_lo']:.3f}, {out['mse_A_S_ratio_hi']:.3f}] (thesis: 8.05e-4 / 7.77e-4 = 1.036).")
    _common_notes(ctx, ev, cfg)
    return out


# --------------------------------------------------------------------------------------------------
def figure_5_5(cfg, ctx) -> dict:
    """Fig 5.5: IC-nMI (original vs reconstruction) and BC-nMI (two reconstructions of one AE over
    fixed shuffled consecutive pairs), mean +- std per autoencoder."""
    from common.plotting import plt
    from common.claims import bootstrap_ci
    ev = evaluate(cfg, ctx)
    clfs, aes = _names(ev)
    ic, bc = ev["ic"], ev["bc"]
    out, rows = {}, []
    for i, a in enumerate(aes):
        out[f"ic_nmi_{a}"], out[f"ic_nmi_{a}_std"] = float(ic[i].mean()), float(ic[i].std())
        out[f"bc_nmi_{a}"], out[f"bc_nmi_{a}_std"] = float(bc[i].mean()), float(bc[i].std())
        rows.append([_ae_label(a), ic[i].mean(), ic[i].std(), bc[i].mean(), bc[i].std()])
    best = 1 + int(np.argmax(ic[1:].mean(1)))
    lo, hi = bootstrap_ci(np.asarray(ic[0], np.float64) - np.asarray(ic[best], np.float64), seed=ctx.seed)
    out.update({"ic_nmi_best_ft": float(ic[best].mean()), "ic_nmi_gap_lo": lo, "ic_nmi_gap_hi": hi})
    ranking, pairs = bc_ranking(bc, aes, seed=ctx.seed)
    out.update(ranking)
    if pairs:
        ctx.note(f"BC-nMI ranking of the thesis (L1209-1211), per pair over the same BC pairs: {pairs}.")
    ranking, pairs = ic_ranking(ic, aes, seed=ctx.seed)
    out.update(ranking)
    if pairs:
        ctx.note(f"IC-nMI ranking of the thesis (L1213), per pair over the same images: {pairs}.")
    ctx.table("Fig 5.5: nMI (Eq 5.4, MI in nats) per autoencoder", ["autoencoder", "IC-nMI mean", "IC-nMI std",
              "BC-nMI mean", "BC-nMI std"], rows, digits=3,
              note=f"IC-nMI over {ic.shape[1]} images; BC-nMI over {bc.shape[1]} disjoint consecutive pairs of one "
                   f"shuffle (seed {cfg.nmi_seed}), the same pairs for every autoencoder.")
    fig, ax = plt.subplots(figsize=(1.1 * len(aes) + 2, 3))
    xs = np.arange(len(aes))
    ax.errorbar(xs - 0.1, ic.mean(1), yerr=ic.std(1), fmt="^", label="IC-nMI", capsize=3)
    ax.errorbar(xs + 0.1, bc.mean(1), yerr=bc.std(1), fmt="v", label="BC-nMI", capsize=3)
    ax.set_xticks(xs, [_ae_label(a) for a in aes])
    ax.set_ylabel("nMI (Eq 5.4, nats)")
    ax.legend(fontsize=8)
    ctx.savefig(fig, "fig5_5", "Fig 5.5: IC-nMI (^) and BC-nMI (v), mean +- std per autoencoder")
    return out


# The thesis ranks BC-nMI: the AlexNet and ResNet50 autoencoders "substantially larger" than VGG16's
# and Inception-v3's (L1209-1211). Judged pairwise over the same BC pairs.
BC_HIGH, BC_LOW = ("alexnet", "resnet50"), ("vgg16", "inception_v3")
BC_SUBSTANTIAL = 0.10     # "substantially": a gap of at least 10 % of the lower autoencoder's BC-nMI


# "VGG16 and Inception-v3 are again those that preserve most of the original input information, as
# shown by the higher values in IC-nMI" (L1213): their IC-nMI above AlexNet's and ResNet50's
IC_HIGH, IC_LOW = ("vgg16", "inception_v3"), ("alexnet", "resnet50")


def ic_ranking(ic, aes, seed: int = 0) -> tuple[dict, str]:
    """For every (high, low) pair of the thesis' IC-nMI ranking present in ``aes``: the paired
    bootstrap interval of IC-nMI(A_high) - IC-nMI(A_low) over the same images. Returns the worst
    pair's lower end (``ic_rank_gap_lo``) and a line per pair, or ({}, "") without the four."""
    from common.claims import bootstrap_ci
    if not all(n in aes for n in IC_HIGH + IC_LOW):
        return {}, ""
    los, pairs = [], []
    for h in IC_HIGH:
        for l in IC_LOW:
            d = np.asarray(ic[aes.index(h)], np.float64) - np.asarray(ic[aes.index(l)], np.float64)
            lo, _ = bootstrap_ci(d, seed=seed)
            los.append(lo)
            pairs.append(f"A_{short(h)} - A_{short(l)} = {d.mean():+.3f} (lower end {lo:+.3f})")
    return {"ic_rank_gap_lo": float(min(los))}, "; ".join(pairs)


def bc_ranking(bc, aes, seed: int = 0) -> dict:
    """For every (high, low) pair of the thesis' ranking present in ``aes``: the paired bootstrap
    interval of BC-nMI(A_high) - BC-nMI(A_low) over the same pairs, and the gap relative to the low
    one's mean. Returns the worst pair's numbers (``bc_rank_gap_lo``: smallest lower interval end,
    ``bc_rank_rel_gap``: smallest relative gap) and a line per pair, or ({}, "") when the four
    classifiers are not all there."""
    from common.claims import bootstrap_ci
    if not all(n in aes for n in BC_HIGH + BC_LOW):
        return {}, ""
    los, rels, pairs = [], [], []
    for h in BC_HIGH:
        for l in BC_LOW:
            d = np.asarray(bc[aes.index(h)], np.float64) - np.asarray(bc[aes.index(l)], np.float64)
            lo, _ = bootstrap_ci(d, seed=seed)
            low_mean = float(np.mean(bc[aes.index(l)]))
            rel = float(d.mean()) / abs(low_mean) if low_mean else float("nan")
            los.append(lo)
            rels.append(rel)
            pairs.append(f"A_{short(h)} - A_{short(l)} = {d.mean():+.3f} (lower end {lo:+.3f}, {100 * rel:+.1f} %)")
    return {"bc_rank_gap_lo": float(min(los)), "bc_rank_rel_gap": float(min(rels))}, "; ".join(pairs)


# --------------------------------------------------------------------------------------------------
def table_5_2_5_3(cfg, ctx) -> dict:
    """Tab 5.2 (top-1 of every f_j o A_i) and Tab 5.3 (CR_min, Eq 5.5 as the note corrects it)."""
    from capacity.metrics import cr_min, cr_min_printed
    ev = evaluate(cfg, ctx)
    clfs, aes = _names(ev)
    acc = np.asarray(ev["acc1"][2:, :], dtype=np.float64)          # rows A_i, columns f_j
    cr = cr_min(acc)
    crp = cr_min_printed(acc, ev["acc1"][0])
    heads = ["", *[f"f_{short(n)}" for n in clfs]]
    out = {}
    for i, ni in enumerate(clfs):
        for j, nj in enumerate(clfs):
            out[f"acc_{nj}_on_A_{ni}"] = float(acc[i, j])
            out[f"crmin_{nj}_on_A_{ni}"] = float(cr[i, j])
    f = _findings(ev, cfg, ctx)
    keep = [f"own_margin_{n}{s}" for n in clfs for s in ("", "_lo", "_hi")] + [
        "own_columns", "own_columns_beyond_noise", "own_margin_worst_lo", "crmin_offdiag_cells", "crmin_below_t_cells",
        "crmin_above100_cells", "crmin_asym_pairs", "crmin_offdiag_min", "crmin_offdiag_median", "crmin_offdiag_max"]
    out.update({k: f[k] for k in keep})
    ctx.table("Each classifier on its own autoencoder against the best other one (Tab 5.2's columns)",
              ["classifier", "acc(f_j o A_j) - max_i!=j acc(f_j o A_i)", "95% paired bootstrap"],
              [[f"f_{short(n)}", f[f"own_margin_{n}"], f"[{f[f'own_margin_{n}_lo']:+.2f}, {f[f'own_margin_{n}_hi']:+.2f}]"]
               for n in clfs],
              note=f"Intervals: percentile bootstrap over the {ev['n_eval']} evaluation images "
                   f"({cfg.finding_bootstrap} resamples), one resample for every cell (paired). Off-diagonal "
                   f"CR_min at t = {cfg.finding_threshold:g}: {f['crmin_below_t_cells']:g} of "
                   f"{f['crmin_offdiag_cells']:g} cells below t beyond noise, {f['crmin_above100_cells']:g} above "
                   f"100, {f['crmin_asym_pairs']:g} pairs on opposite sides of t.")
    ctx.table("Tab 5.2: top-1 accuracy (%) of f_j (columns) on reconstructions of A_i (rows)", heads,
              [[f"A_{short(n)}", *acc[i]] for i, n in enumerate(clfs)]
              + [["(A_S)", *ev["acc1"][1]], ["(original)", *ev["acc1"][0]]],
              note="The last two rows (pre-trained A_S, original images) are not in the thesis' table.")
    ctx.table("Tab 5.3: CR_min (%) = acc(f_j o A_i) / min(acc(f_i o A_i), acc(f_j o A_j))", heads,
              [[f"A_{short(n)}", *cr[i]] for i, n in enumerate(clfs)],
              note="Denominators are the composite self-accuracies (the diagonal of Tab 5.2), which is how the "
                   "thesis' Tab 5.3 was computed; the printed Eq 5.5 uses the bare classifiers (see README).")
    ctx.table("For comparison: Eq 5.5 as printed, acc(f_j o A_i) / min(acc(f_i), acc(f_j))", heads,
              [[f"A_{short(n)}", *crp[i]] for i, n in enumerate(clfs)])
    return out


# --------------------------------------------------------------------------------------------------
def figure_5_6(cfg, ctx) -> dict:
    """Fig 5.6 / A.5: FCA lattices; objects = classifiers, attributes = signals A_i,
    f_j has A_i when CR_min(f_j o A_i) > t (strictly)."""
    from common.plotting import plt
    from capacity.metrics import cr_min, draw_lattice, fca_context
    ev = evaluate(cfg, ctx)
    clfs, _ = _names(ev)
    cr = cr_min(np.asarray(ev["acc1"][2:, :], dtype=np.float64))
    objs = [f"f_{short(n)}" for n in clfs]
    attrs = [f"A_{short(n)}" for n in clfs]
    ts = list(cfg.thresholds)
    fig, axes = plt.subplots(1, len(ts), figsize=(3.6 * len(ts), 3.6), squeeze=False)
    out, rows = {}, []
    for ax, t in zip(axes[0], ts):
        context = fca_context(cr, objs, attrs, t)
        lat = context.lattice
        draw_lattice(lat, ax, f"t = {t:g}: {len(lat)} concepts")
        out[f"fca_concepts_t{t:g}"] = float(len(lat))
        rows.append([f"{t:g}", len(lat), "; ".join(f"{o}: {' '.join(context.intension([o])) or '-'}" for o in objs)])
    fig.tight_layout()
    ctx.savefig(fig, "fig5_6", "Fig 5.6 / A.5: FCA lattices of 'signal A_i works for classifier f_j' "
                               "(CR_min > t); blue: classifiers, red: signals introduced at a node")
    ctx.table("FCA contexts (CR_min > t, strictly)", ["t", "concepts", "signals each classifier works with"], rows)
    ctx.note("The thesis states t = 90 (Fig 5.6); 80, 85, 95 are read from Fig A.5, whose thresholds are only in the image.")
    f = _findings(ev, cfg, ctx)
    out.update({k: f[k] for k in ("fca_concepts", "fca_concepts_lo", "fca_concepts_hi", "fca_top_margin",
                                  "fca_top_margin_lo", "fca_top_margin_hi")})
    ctx.note(f"At t = {cfg.finding_threshold:g}: {f['fca_concepts']:g} concepts [{f['fca_concepts_lo']:g}, "
             f"{f['fca_concepts_hi']:g}]; the most accurate classifier has {f['fca_top_margin']:+g} "
             f"[{f['fca_top_margin_lo']:+g}, {f['fca_top_margin_hi']:+g}] attributes more than any other "
             f"(95 % paired bootstrap, {cfg.finding_bootstrap} resamples).")
    return out
