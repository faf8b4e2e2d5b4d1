"""The chapter's experiments: one function per figure or table of 000 ch. 7 (and the grouping study
the note adds). Each is ``fn(cfg, ctx) -> metrics`` for one training seed; models are trained
through ``common.trainer.fit`` in ``ctx.work_dir`` stages whose keys are shared across experiments
(the baseline, the three-branch SSAL model), so a default run trains each model once.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import auxiliary.data  # noqa: F401  (registers twodigit100 before ctx.load_dataset)
from auxiliary import grouping as GR
from auxiliary import models as M
from auxiliary import ssal as S
from common.claims import bootstrap_ci
from common.data import fixed_subset, train_val_split
from common.trainer import count_params, fit, random_crop_flip

# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
_HOLDOUT_SEED = 0   # the held-out part of train is fixed: every training seed groups from the same labels


@dataclasses.dataclass
class Data:
    x_fit: torch.Tensor
    y_fit: torch.Tensor
    x_hold: torch.Tensor
    y_hold: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list
    raw_test: np.ndarray       # uint8 images of the test split (figures)

    @property
    def k(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.x_fit.shape[1]


def _to_tensor(x: np.ndarray, downsample: int) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float() / 255.0
    return F.avg_pool2d(t, downsample) if downsample > 1 else t


def load_data(cfg, ctx) -> Data:
    train = ctx.load_dataset(cfg.dataset, cfg.train_split)
    test = ctx.load_dataset(cfg.dataset, cfg.test_split)
    if cfg.max_train:
        train = train.subset(np.sort(train_val_split(len(train), 1 - cfg.max_train / len(train), 0, train.y)[1]
                                     if cfg.max_train < len(train) else np.arange(len(train))))
    if cfg.max_test and cfg.max_test < len(test):
        test = test.subset(np.arange(cfg.max_test))
    fit_idx, hold_idx = train_val_split(len(train), cfg.holdout_frac, _HOLDOUT_SEED, labels=train.y)
    if len(hold_idx) == 0 or len(fit_idx) == 0:
        from common.config import ConfigError
        raise ConfigError(f"holdout_frac = {cfg.holdout_frac} of {len(train)} training images leaves "
                          f"{len(fit_idx)} to fit and {len(hold_idx)} to group by: raise max_train or holdout_frac")
    x = _to_tensor(train.x, cfg.downsample)
    mean, std = x[fit_idx].mean((0, 2, 3), keepdim=True), x[fit_idx].std((0, 2, 3), keepdim=True) + 1e-6
    x = (x - mean) / std
    xt = (_to_tensor(test.x, cfg.downsample) - mean) / std
    y, yt = torch.from_numpy(train.y), torch.from_numpy(test.y)
    return Data(x[fit_idx], y[fit_idx], x[hold_idx], y[hold_idx], xt, yt, list(train.classes), test.x)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------
def backbone(arch: str, k: int, in_ch: int, cfg, capacity: str = "") -> M.Backbone:
    """``capacity``: "" | "wide" (1.5 x filters) | "deep" (four 4w conv layers before the first residual
    block) | "dw" (four 8w layers), w the first stage's width (256 / 512 for ResNet18 as in Tab 7.2)."""
    if capacity and not arch.startswith("resnet"):
        raise ValueError(f"the capacity-matched baselines of Tab 7.2 are defined for ResNets, not {arch}")
    if arch == "resnet_mini":
        widths, depth, blocks = tuple(cfg.mini_widths), 10, (1,) * len(cfg.mini_widths)
    elif arch in ("resnet18", "resnet50"):
        widths, depth, blocks = (64, 128, 256, 512), int(arch[6:]), None
    elif arch == "resnet50_imagenet":
        return M.resnet50_imagenet(k)
    elif arch == "wrn28-10":
        return M.wide_resnet(28, 10, k, in_channels=in_ch)
    elif arch == "se-wrn16-8":
        return M.wide_resnet(16, 8, k, se=True, in_channels=in_ch)
    elif arch == "densenet-bc100-12":
        return M.densenet_bc(100, 12, k, in_channels=in_ch)
    elif arch == "densenet190-40":
        return M.densenet_bc(190, 40, k, in_channels=in_ch)
    else:
        raise ValueError(f"unknown architecture {arch}")
    extra = ()
    if capacity == "wide":
        widths = tuple(int(round(1.5 * w)) for w in widths)
    elif capacity in ("deep", "dw"):
        extra = ((4 if capacity == "deep" else 8) * widths[0],) * 4
    return M.resnet(depth, k, widths=widths, blocks=blocks, extra_stem=extra, in_channels=in_ch)


# Tab A.2-A.5 as we reconstruct them (merged cells lost in the text; AuxInception from Fig A.7):
# (kernel, channels, stride) convs, number of AuxInception layers, FC hidden units.
_THESIS_LAYOUTS = {
    "resnet18": {"*": ("conv", {"convs": (128, 128, 256, 256), "hidden": 256})},                       # Tab A.2
    "resnet50": {"g2": ((5, 128, 2), (3, 128, 1)), "g3": ((5, 128, 1), (3, 128, 1)), "g4": ((3, 128, 1), (3, 128, 1)),
                 "inc": 1, "hidden": 0},                                                                # Tab A.3
    "se-wrn16-8": {"g2": ((5, 128, 2), (3, 128, 1)), "g5": ((5, 128, 1), (3, 128, 1)), "g6": ((3, 128, 1), (3, 128, 1)),
                   "inc": 1, "hidden": 0},                                                              # Tab A.4
    "wrn28-10": {"g2": ((5, 128, 2), (3, 128, 1), (3, 256, 1), (3, 256, 1)), "g5": ((5, 128, 1), (3, 128, 1)),
                 "g6": ((3, 128, 1), (3, 128, 1)), "inc": 2, "hidden": 0},                              # Tab A.5
    "resnet50_imagenet": {"g2": ((3, 256, 2),), "g3": ((3, 256, 1),), "g4": ((3, 256, 1),), "inc": 2, "hidden": 0},
}
_THESIS_LAYOUTS["densenet-bc100-12"] = _THESIS_LAYOUTS["densenet190-40"] = _THESIS_LAYOUTS["wrn28-10"]


def branch_spec(cfg, arch: str, point: str, n_groups: int) -> M.BranchSpec:
    if cfg.branch_layout == "thesis" and arch in _THESIS_LAYOUTS:
        lay = _THESIS_LAYOUTS[arch]
        if "*" in lay:
            kind, kw = lay["*"]
            return M.BranchSpec(point, n_groups, kind, tuple(kw.items()))
        convs = lay.get(point, ((3, 128, 1), (3, 128, 1)))
        return M.BranchSpec(point, n_groups, "inception", (("convs", convs), ("n_inception", lay["inc"]),
                                                           ("inception_width", 64), ("hidden", lay["hidden"])))
    if cfg.branch_kind == "conv":
        return M.BranchSpec(point, n_groups, "conv", (("convs", tuple(cfg.branch_convs)), ("hidden", cfg.branch_hidden),
                                                      ("strides", tuple(cfg.branch_strides) or None)))
    c = cfg.branch_convs[0]
    return M.BranchSpec(point, n_groups, "inception", (("convs", ((3, c, 1), (3, c, 1))), ("n_inception", 1),
                                                       ("inception_width", cfg.inception_width), ("hidden", 0)))


def build_model(cfg, arch: str, k: int, in_ch: int, points: Sequence[str] = (), groups: Sequence[int] = (),
                combine: str = "ssal", capacity: str = "") -> nn.Module:
    bb = backbone(arch, k, in_ch, cfg, capacity)
    if not points:
        return bb
    return M.SSALNet(bb, [branch_spec(cfg, arch, p, g) for p, g in zip(points, groups)], combine=combine)


# --------------------------------------------------------------------------------------------------
# Training stages (shared through identical keys)
# --------------------------------------------------------------------------------------------------
def _train(cfg, ctx, data: Data, stage: str, model: nn.Module, desc: dict, step_fn=None, gammas=None,
           epochs: int | None = None) -> nn.Module:
    """Train ``model`` in the shared stage ``stage`` (its key: ``desc``, the epochs trained and the whole
    config but ``lc_train``, read by the +LC stage only). With ``cfg.eval_each_epoch`` the held-out part
    of train is scored after every epoch (the trainer's history: Fig A.6's curves); ``gammas`` (SSAL
    models) adds the JP accuracy."""
    tc = ctx.train_config(cfg.train)
    if epochs is not None:
        tc = dataclasses.replace(tc, epochs=epochs)
    if not cfg.progress_bars:
        tc = dataclasses.replace(tc, progress=False)
    if cfg.eval_each_epoch:
        tc = dataclasses.replace(tc, eval_every=max(1, len(data.x_fit) // tc.batch_size))
    work = ctx.work_dir(stage, {"ssal": dataclasses.replace(cfg, lc_train=None), "model": desc, "epochs": tc.epochs})
    kw = {"step_fn": step_fn} if step_fn is not None else {}
    if cfg.eval_each_epoch:
        kw["eval_data"] = (data.x_hold, data.y_hold)
        if gammas is not None:
            kw["eval_fn"] = _ssal_eval(gammas, cfg)
    res = fit(model, (data.x_fit, data.y_fit), tc, work, desc=stage,
              augment=random_crop_flip(4) if cfg.augment else None, **kw)
    model.stage_dir = str(work)
    model.history = res.history
    return model.eval()


def _ssal_eval(gammas, cfg):
    """Held-out scores of an SSAL model during training: f alone, JP (Eq 7.5), each branch's group accuracy."""
    def score(model, d):
        x, y = d
        heads = S.predict_heads(model, x, cfg.eval_batch_size)
        heads = tuple(h.cpu() for h in heads)
        y = y.cpu()
        out = {"acc": float((heads[0].argmax(1) == y).float().mean()),
               "loss": float(F.cross_entropy(heads[0].float(), y)),
               "jp_acc": float((S.joint_log_scores(heads[0], heads[1:], gammas, cfg.eta).argmax(1) == y)
                               .float().mean())}
        for b, (h, g) in enumerate(zip(heads[1:], gammas)):
            out[f"g{b + 1}_acc"] = float((h.argmax(1) == torch.as_tensor(g)[y]).float().mean())
        return out
    return score


def train_baseline(cfg, ctx, data: Data, arch: str, capacity: str = "") -> nn.Module:
    torch.manual_seed(ctx.seed)   # initial weights from the seed alone, not from what ran before in the process
    m = build_model(cfg, arch, data.k, data.in_channels, capacity=capacity)
    return _train(cfg, ctx, data, f"aux-{arch}-{capacity or 'base'}", m,
                  {"arch": arch, "capacity": capacity, "mini_widths": list(cfg.mini_widths)})


def groupings(cfg, ctx, data: Data, arch: str, group_counts: Sequence[int]) -> tuple[np.ndarray, dict]:
    """Confusion matrix of the plain baseline on the held-out part of train, and gamma for every G."""
    base = train_baseline(cfg, ctx, data, arch)
    pred = S.predict_heads(base, data.x_hold, cfg.eval_batch_size)[0].argmax(1).numpy()
    c = GR.confusion_matrix(data.y_hold.numpy(), pred, data.k)
    gammas = {g: GR.group_labels(c, g, seed=ctx.seed, seeding=cfg.seeding, similar=cfg.similar)
              for g in sorted(set(group_counts))}
    return c, gammas


def train_ssal(cfg, ctx, data: Data, arch: str, points: Sequence[str], gammas: Sequence[np.ndarray],
               combine: str = "ssal", epochs: int | None = None) -> nn.Module:
    groups = [int(g.max()) + 1 for g in gammas]
    torch.manual_seed(ctx.seed)
    m = build_model(cfg, arch, data.k, data.in_channels, points, groups, combine)
    desc = {"arch": arch, "points": list(points), "combine": combine, "layout": cfg.branch_layout,
            "branch": [dataclasses.asdict(s) for s in m.specs], "mini_widths": list(cfg.mini_widths)}
    step = None
    if combine == "ssal":
        desc.update(gammas=[g.tolist() for g in gammas], lambdas=list(cfg.lambdas))
        step = S.ssal_step(gammas, list(cfg.lambdas) or None)
    tag = "ssal" if combine == "ssal" else combine
    return _train(cfg, ctx, data, f"aux-{arch}-{tag}{len(points)}-{'-'.join(points)}", m, desc, step,
                  gammas=list(gammas) if combine == "ssal" else None, epochs=epochs)


def linear_comb(cfg, ctx, data: Data, model: nn.Module) -> nn.Module:
    """+LC: the linear classifier over the concatenated outputs, trained afterwards on the held-out part
    of train (the fit split's outputs are those of memorised images: a layer trained on them learns to
    trust overconfident heads; measured on seed 0 of the default: 79 % against 90 % for f alone)."""
    heads = S.predict_heads(model, data.x_hold, cfg.eval_batch_size)
    tc = ctx.train_config(cfg.lc_train)
    work = ctx.work_dir("aux-lc", cfg, depends_on=[model.stage_dir])
    return S.train_linear_combination(heads, data.y_hold, tc, work)


# --------------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------------
def correct(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return (logits.argmax(1) == y).numpy().astype(np.float64)


def acc_with_ci(hits: np.ndarray, cfg, seed: int) -> tuple[float, float, float]:
    lo, hi = bootstrap_ci(hits, cfg.n_boot, seed=seed)
    return 100 * hits.mean(), 100 * lo, 100 * hi


def diff_ci(a: np.ndarray, b: np.ndarray, cfg, seed: int) -> tuple[float, float, float]:
    """Paired difference a - b in accuracy points with its bootstrap interval over test items."""
    lo, hi = bootstrap_ci(a - b, cfg.n_boot, seed=seed)
    return 100 * (a - b).mean(), 100 * lo, 100 * hi


def ssal_outputs(cfg, ctx, data: Data, model, gammas, lin=None) -> dict[str, np.ndarray]:
    """Per test item: correct or not for +TR (f alone), +JP (Eq 7.5) and +LC; each branch's group accuracy."""
    heads = S.predict_heads(model, data.x_test, cfg.eval_batch_size)
    y = data.y_test
    out = {"tr": correct(heads[0], y), "jp": correct(S.joint_log_scores(heads[0], heads[1:], gammas, cfg.eta), y)}
    for b, (h, g) in enumerate(zip(heads[1:], gammas)):
        out[f"branch{b + 1}"] = correct(h, torch.as_tensor(g)[y])
    if lin is not None:
        out["lc"] = correct(S.linear_combination_logits(lin, heads), y)
    return out


# --------------------------------------------------------------------------------------------------
# Experiments
# --------------------------------------------------------------------------------------------------
def grouping_study(cfg, ctx) -> dict:
    """Within-group share of off-diagonal confusion: thesis seeding, farthest-point seeding, random
    balanced partitions; on a planted block matrix and on the baseline's real confusion matrix."""
    data = load_data(cfg, ctx)
    counts = sorted(set((*cfg.fig7_3_groups, *cfg.three_groups)))
    c, _ = groupings(cfg, ctx, data, cfg.arch, counts)
    planted, blocks = GR.planted_block_confusion(data.k, 20, seed=ctx.seed)
    metrics, rows = {}, []
    for label, mat in (("planted", planted), ("real", c)):
        table = GR.share_table(mat, [g for g in counts if g <= data.k // 2], ctx.seed, cfg.n_random_partitions)
        for g, r in table.items():
            rows.append([label, g, r["thesis"], r["farthest"], r["random_mean"], f"[{r['random_q025']:.3f}, "
                         f"{r['random_q975']:.3f}]"])
            for k, v in r.items():
                metrics[f"{label}_G{g}_{k}"] = v
    metrics["real_errors"] = float(c.sum() - np.trace(c))
    metrics["baseline_holdout_acc"] = float(100 * np.trace(c) / c.sum())
    ctx.table("Share of off-diagonal confusion inside groups", ["matrix", "G", "thesis seeding", "farthest-point",
                                                               "random mean", "random 95 % range"], rows, digits=3)
    ctx.note(f"Planted matrix: k = {data.k} labels in 20 balanced blocks, 90 % of errors inside the block. Real: the "
             f"plain {cfg.arch} trained on the fit part of train, evaluated on the held-out {cfg.holdout_frac:.0%} "
             f"({int(c.sum())} images, {metrics['baseline_holdout_acc']:.1f} % correct).")
    _plot_confusion(ctx, c, data)
    return metrics


def _plot_confusion(ctx, c, data):
    from common.plotting import plt
    fig, ax = plt.subplots(figsize=(5, 4.5))
    off = c * (1 - np.eye(len(c)))
    ax.imshow(off, cmap="magma")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("held-out confusions (diagonal removed)")
    ctx.savefig(fig, "confusion", "Confusions of the plain baseline on the held-out part of train")


def figure_7_3(cfg, ctx) -> dict:
    """Number of groups: one branch at ``fig7_3_point``, G in ``fig7_3_groups``; ensemble (JP) and branch alone."""
    data = load_data(cfg, ctx)
    _, gammas = groupings(cfg, ctx, data, cfg.arch, cfg.fig7_3_groups)
    base = train_baseline(cfg, ctx, data, cfg.arch)
    base_hits = correct(S.predict_heads(base, data.x_test, cfg.eval_batch_size)[0], data.y_test)
    metrics = {"acc_baseline": 100 * base_hits.mean()}
    rows = []
    for g in cfg.fig7_3_groups:
        m = train_ssal(cfg, ctx, data, cfg.arch, [cfg.fig7_3_point], [gammas[g]])
        o = ssal_outputs(cfg, ctx, data, m, [gammas[g]])
        jp, lo, hi = acc_with_ci(o["jp"], cfg, ctx.seed)
        d, dlo, dhi = diff_ci(o["jp"], base_hits, cfg, ctx.seed)
        metrics.update({f"acc_jp_G{g}": jp, f"acc_jp_G{g}_lo": lo, f"acc_jp_G{g}_hi": hi,
                        f"acc_branch_G{g}": 100 * o["branch1"].mean(), f"acc_tr_G{g}": 100 * o["tr"].mean(),
                        f"gain_G{g}": d, f"gain_G{g}_lo": dlo, f"gain_G{g}_hi": dhi})
        rows.append([g, jp, f"[{lo:.1f}, {hi:.1f}]", 100 * o["tr"].mean(), 100 * o["branch1"].mean(),
                     f"{d:+.2f} [{dlo:+.2f}, {dhi:+.2f}]"])
    ctx.table(f"Fig 7.3: one branch at {cfg.fig7_3_point}, {cfg.arch} on {cfg.dataset}",
              ["G", "SSAL (JP) %", "95 % CI", "f alone (TR) %", "branch alone (group acc) %", "JP - baseline"], rows)
    from common.plotting import plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    gs = list(cfg.fig7_3_groups)
    axes[0].plot(gs, [metrics[f"acc_jp_G{g}"] for g in gs], "o-", label="SSAL (JP)")
    axes[0].axhline(metrics["acc_baseline"], color="grey", ls="--", label="baseline")
    axes[0].set_xlabel("groups G")
    axes[0].set_ylabel("test accuracy %")
    axes[0].legend()
    axes[1].plot(gs, [metrics[f"acc_branch_G{g}"] for g in gs], "o-", color="C1")
    axes[1].set_xlabel("groups G")
    axes[1].set_ylabel("branch accuracy % (groups)")
    ctx.savefig(fig, "figure_7_3", "Ensemble accuracy (left) and the branch alone (right) against the number of groups")
    return metrics


def figure_7_4(cfg, ctx) -> dict:
    """Branch placement: one branch (``fig7_4_groups`` groups) at each named point of each
    architecture in turn; the ensemble (JP) and the branch alone. The g1 and g2 models at the default
    are Fig 7.3's G = 20 model and Tab 7.1's one-branch model (same stage keys: trained once)."""
    from common.plotting import plt
    data = load_data(cfg, ctx)
    g = cfg.fig7_4_groups
    metrics, rows = {}, []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for arch in cfg.fig7_4_archs:
        _, gammas = groupings(cfg, ctx, data, arch, [g])
        base = train_baseline(cfg, ctx, data, arch)
        base_hits = correct(S.predict_heads(base, data.x_test, cfg.eval_batch_size)[0], data.y_test)
        points = backbone(arch, data.k, data.in_channels, cfg).points
        metrics[f"{arch}_baseline"] = 100 * base_hits.mean()
        outs = {}
        for p in points:
            m = train_ssal(cfg, ctx, data, arch, [p], [gammas[g]])
            o = outs[p] = ssal_outputs(cfg, ctx, data, m, [gammas[g]])
            jp, lo, hi = acc_with_ci(o["jp"], cfg, ctx.seed)
            br, blo, bhi = acc_with_ci(o["branch1"], cfg, ctx.seed)
            d, dlo, dhi = diff_ci(o["jp"], base_hits, cfg, ctx.seed)
            metrics.update({f"{arch}_{p}_jp": jp, f"{arch}_{p}_jp_lo": lo, f"{arch}_{p}_jp_hi": hi,
                            f"{arch}_{p}_branch": br, f"{arch}_{p}_branch_lo": blo, f"{arch}_{p}_branch_hi": bhi,
                            f"{arch}_{p}_tr": 100 * o["tr"].mean(), f"{arch}_{p}_gain": d})
            rows.append([arch, p, jp, f"[{lo:.1f}, {hi:.1f}]", 100 * o["tr"].mean(), br, f"[{blo:.1f}, {bhi:.1f}]",
                         f"{d:+.2f} [{dlo:+.2f}, {dhi:+.2f}]"])
        # deepest minus shallowest point, paired over test items (the claim)
        first, last = points[0], points[-1]
        for col in ("jp", "branch1"):
            d, lo, hi = diff_ci(outs[last][col], outs[first][col], cfg, ctx.seed)
            name = "jp" if col == "jp" else "branch"
            metrics.update({f"{arch}_{name}_deep_minus_shallow": d, f"{arch}_{name}_deep_minus_shallow_lo": lo,
                            f"{arch}_{name}_deep_minus_shallow_hi": hi})
        axes[0].plot(points, [metrics[f"{arch}_{p}_jp"] for p in points], "o-", label=f"{arch} SSAL (JP)")
        axes[0].axhline(metrics[f"{arch}_baseline"], ls="--", color=axes[0].lines[-1].get_color(), alpha=0.6)
        axes[1].plot(points, [metrics[f"{arch}_{p}_branch"] for p in points], "o-", label=arch)
    axes[0].set_ylabel("test accuracy % (dashed: baseline)")
    axes[1].set_ylabel(f"branch alone: group accuracy % ({g} groups)")
    for ax in axes:
        ax.set_xlabel("attachment point")
        ax.legend(fontsize=7)
    ctx.savefig(fig, "figure_7_4", f"One branch with {g} groups at each attachment point: the ensemble (left) and "
                                   f"the branch alone (right)")
    ctx.table(f"Fig 7.4: one branch ({g} groups) at each point, {cfg.dataset}",
              ["architecture", "point", "SSAL (JP) %", "95 % CI", "f alone (TR) %", "branch alone %", "95 % CI",
               "JP - baseline"], rows)
    return metrics


def figure_a_6(cfg, ctx) -> dict:
    """Convergence (Fig A.6): left, held-out accuracy per epoch of SSAL x1 (trained train.epochs) and
    of CatFCNoSSAL (the same architecture without the SSAL loss) trained ``figA6_epoch_factors`` times
    as long; right, training accuracy and loss of SSAL's main head against the plain baseline. All
    curves are the trainer's history; the SSAL x1, baseline and 1 x CatFC models are Tab 7.1 / 7.2's."""
    from common.plotting import plt
    data = load_data(cfg, ctx)
    arch = cfg.arch
    _, gammas = groupings(cfg, ctx, data, arch, cfg.three_groups)
    gs = [gammas[cfg.three_groups[0]]]
    base = train_baseline(cfg, ctx, data, arch)
    ssal = train_ssal(cfg, ctx, data, arch, [cfg.single_point], gs)
    cat = {}
    for f in cfg.figA6_epoch_factors:
        ep = max(1, int(round(f * cfg.train.epochs)))
        cat[ep] = train_ssal(cfg, ctx, data, arch, [cfg.single_point], gs, "catfc",
                             epochs=None if ep == cfg.train.epochs else ep)
    y = data.y_test
    base_hits = correct(S.predict_heads(base, data.x_test, cfg.eval_batch_size)[0], y)
    ssal_hits = ssal_outputs(cfg, ctx, data, ssal, gs)["jp"]
    metrics = {"baseline_acc": 100 * base_hits.mean(), "ssal_jp_acc": 100 * ssal_hits.mean(),
               "epochs": cfg.train.epochs}
    d, lo, hi = diff_ci(ssal_hits, base_hits, cfg, ctx.seed)
    metrics.update({"ssal_minus_baseline": d, "ssal_minus_baseline_lo": lo, "ssal_minus_baseline_hi": hi})
    rows = [["baseline", cfg.train.epochs, metrics["baseline_acc"], f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"],
            ["SSAL x1 (JP)", cfg.train.epochs, metrics["ssal_jp_acc"], ""]]
    for ep, m in cat.items():
        h = correct(S.predict_heads(m, data.x_test, cfg.eval_batch_size)[0], y)
        d, lo, hi = diff_ci(ssal_hits, h, cfg, ctx.seed)
        metrics.update({f"catfc_{ep}ep_acc": 100 * h.mean(), f"ssal_minus_catfc_{ep}ep": d,
                        f"ssal_minus_catfc_{ep}ep_lo": lo, f"ssal_minus_catfc_{ep}ep_hi": hi})
        rows.append(["CatFCNoSSAL", ep, 100 * h.mean(), f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"])
    metrics["catfc_longest_epochs"] = max(cat)

    def curve(model, key):
        pts = [(r["epoch"], r[key]) for r in model.history if key in r]
        return [p[0] for p in pts], [100 * p[1] if key.endswith("acc") else p[1] for p in pts]

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    if cfg.eval_each_epoch:
        axes[0].plot(*curve(ssal, "eval_jp_acc"), "o-", color="C3", label=f"SSAL x1 (JP), {cfg.train.epochs} ep")
        axes[0].plot(*curve(base, "eval_acc"), "o-", color="C2", label="baseline")
        for i, (ep, m) in enumerate(cat.items()):
            axes[0].plot(*curve(m, "eval_acc"), ".-", color=f"C{4 + i}", label=f"CatFCNoSSAL, {ep} ep")
        axes[0].set_ylabel("held-out accuracy %")
    for model, key, lab, col in ((ssal, "f", "SSAL (f)", "C3"), (base, "", "baseline", "C2")):
        acc_key, loss_key = (f"{key}_acc", f"{key}_loss") if key else ("acc", "loss")
        axes[1].plot(*curve(model, acc_key), "-", color=col, label=lab)
        axes[2].plot(*curve(model, loss_key), "-", color=col, label=lab)
    # faster convergence: mean training accuracy over the logged points (area under the curve)
    for name, model, key in (("ssal", ssal, "f_acc"), ("baseline", base, "acc")):
        metrics[f"{name}_train_acc_auc"] = float(np.mean(curve(model, key)[1]))
        if cfg.eval_each_epoch:
            k = "eval_acc"
            metrics[f"{name}_holdout_acc_epoch1"] = curve(model, k)[1][0]
    axes[1].set_ylabel("training accuracy % (batches)")
    axes[2].set_ylabel("training loss (main head)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    ctx.savefig(fig, "figure_A_6", "Convergence: held-out accuracy per epoch (left), training accuracy (middle) "
                                   "and loss (right) of SSAL's main head and the plain baseline")
    ctx.table(f"Fig A.6: test accuracy ({arch} on {cfg.dataset})", ["model", "epochs", "test acc %",
                                                                     "SSAL x1 (JP) minus it"], rows)
    return metrics


def _three(cfg, ctx, data, arch):
    _, gammas = groupings(cfg, ctx, data, arch, cfg.three_groups)
    gs = [gammas[g] for g in cfg.three_groups]
    return train_ssal(cfg, ctx, data, arch, cfg.three_points, gs), gs


def table_7_3(cfg, ctx) -> dict:
    """Architectures: ours (plain) / +TR / +JP / +LC with three branches, and parameter counts."""
    data = load_data(cfg, ctx)
    metrics, rows = {}, []
    for arch in cfg.archs:
        base = train_baseline(cfg, ctx, data, arch)
        base_hits = correct(S.predict_heads(base, data.x_test, cfg.eval_batch_size)[0], data.y_test)
        model, gs = _three(cfg, ctx, data, arch)
        o = ssal_outputs(cfg, ctx, data, model, gs, linear_comb(cfg, ctx, data, model))
        a = arch
        metrics[f"{a}_ours"] = 100 * base_hits.mean()
        for col in ("tr", "jp", "lc"):
            metrics[f"{a}_{col}"] = 100 * o[col].mean()
        for name, x, y in (("tr_minus_ours", o["tr"], base_hits), ("jp_minus_tr", o["jp"], o["tr"]),
                           ("jp_minus_ours", o["jp"], base_hits)):
            d, lo, hi = diff_ci(x, y, cfg, ctx.seed)
            metrics.update({f"{a}_{name}": d, f"{a}_{name}_lo": lo, f"{a}_{name}_hi": hi})
        metrics[f"{a}_params_org"] = count_params(base) / 1e6
        metrics[f"{a}_params_ssal"] = count_params(model) / 1e6
        rows.append([a, metrics[f"{a}_ours"], metrics[f"{a}_tr"], metrics[f"{a}_jp"], metrics[f"{a}_lc"],
                     f"{metrics[f'{a}_params_org']:.3f}M", f"{metrics[f'{a}_params_ssal']:.3f}M"])
    ctx.table(f"Tab 7.3 on {cfg.dataset}: groups {cfg.three_groups} at {cfg.three_points}, eta = {cfg.eta}",
              ["architecture", "ours %", "+TR %", "+JP %", "+LC %", "params org", "params SSAL"], rows)
    return metrics


def table_7_2(cfg, ctx) -> dict:
    """Ablations: capacity-matched baselines, SSAL architectures without the SSAL loss, LinearComb,
    SSAL x1 / x3. Accuracy on the test split with the paired interval of each row minus the baseline."""
    data = load_data(cfg, ctx)
    arch = cfg.arch
    _, gammas = groupings(cfg, ctx, data, arch, cfg.three_groups)
    gs = [gammas[g] for g in cfg.three_groups]
    base = train_baseline(cfg, ctx, data, arch)
    hits, params = {}, {}

    def plain(m):
        return correct(S.predict_heads(m, data.x_test, cfg.eval_batch_size)[0], data.y_test)

    for row in cfg.tab7_2_rows:
        if row == "ResNet":
            m, h = base, plain(base)
        elif row in ("WideResNet", "DeepResNet", "DWRResNet"):
            cap = {"WideResNet": "wide", "DeepResNet": "deep", "DWRResNet": "dw"}[row]
            m = train_baseline(cfg, ctx, data, arch, cap)
            h = plain(m)
        elif row == "GapCatNoSSAL":
            m = train_ssal(cfg, ctx, data, arch, cfg.three_points, gs, "gapcat")
            h = plain(m)
        elif row == "CatFCNoSSAL":
            m = train_ssal(cfg, ctx, data, arch, [cfg.single_point], gs[:1], "catfc")
            h = plain(m)
        elif row == "SSAL x1":
            m = train_ssal(cfg, ctx, data, arch, [cfg.single_point], gs[:1])
            h = ssal_outputs(cfg, ctx, data, m, gs[:1])["jp"]
        elif row == "SSAL x3":   # Tab 7.3's three-branch model
            m = train_ssal(cfg, ctx, data, arch, cfg.three_points, gs)
            h = ssal_outputs(cfg, ctx, data, m, gs)["jp"]
        else:   # LinearComb: SSAL x1 with a linear layer over the concatenated outputs (printed 12.8 M vs 12.6 M)
            m = train_ssal(cfg, ctx, data, arch, [cfg.single_point], gs[:1])
            h = ssal_outputs(cfg, ctx, data, m, gs[:1], linear_comb(cfg, ctx, data, m))["lc"]
            params[row] = (count_params(m) + (data.k + cfg.three_groups[0]) * data.k + data.k) / 1e6
        hits[row] = h
        params.setdefault(row, count_params(m) / 1e6)
    metrics, rows = {}, []
    ref = hits.get("ResNet")
    for row, h in hits.items():
        key = row.replace(" ", "_")
        acc, lo, hi = acc_with_ci(h, cfg, ctx.seed)
        metrics.update({f"{key}_acc": acc, f"{key}_acc_lo": lo, f"{key}_acc_hi": hi, f"{key}_params": params[row]})
        diff = ""
        if ref is not None:
            d, dlo, dhi = diff_ci(h, ref, cfg, ctx.seed)
            metrics.update({f"{key}_diff": d, f"{key}_diff_lo": dlo, f"{key}_diff_hi": dhi})
            diff = f"{d:+.2f} [{dlo:+.2f}, {dhi:+.2f}]"
        rows.append([row, acc, f"[{lo:.1f}, {hi:.1f}]", diff, f"{params[row]:.4f}M"])
    # SSAL x3 against the best capacity-matched baseline, paired, for the claim
    caps = [r for r in ("WideResNet", "DeepResNet", "DWRResNet", "GapCatNoSSAL", "CatFCNoSSAL") if r in hits]
    if "SSAL x3" in hits and caps:
        best = max(caps, key=lambda r: hits[r].mean())
        d, lo, hi = diff_ci(hits["SSAL x3"], hits[best], cfg, ctx.seed)
        metrics.update({"ssal3_minus_best_capacity": d, "ssal3_minus_best_capacity_lo": lo,
                        "ssal3_minus_best_capacity_hi": hi})
        ctx.note(f"Best capacity-matched baseline this seed: {best}.")
    ctx.table(f"Tab 7.2 ablations ({arch} on {cfg.dataset})", ["model", "test acc %", "95 % CI", "minus baseline (p.p.)",
                                                              "parameters"], rows)
    return metrics


def figure_7_5(cfg, ctx) -> dict:
    """CAM of the plain baseline (org), of the SSAL model's main head (g_f) and of every branch, with
    the labels of the predicted group under each branch (Fig 7.5 / A.8)."""
    from common.plotting import plt
    data = load_data(cfg, ctx)
    base = train_baseline(cfg, ctx, data, cfg.arch)
    model, gs = _three(cfg, ctx, data, cfg.arch)
    n = min(cfg.n_cam_examples, len(data.y_test))
    idx = fixed_subset(len(data.y_test), n, ctx.seed)
    x, y = data.x_test[idx], data.y_test[idx]
    heads = S.predict_heads(model, x)
    pred = S.joint_log_scores(heads[0], heads[1:], gs, cfg.eta).argmax(1)
    base_pred = S.predict_heads(base, x)[0].argmax(1)
    maps = {"org": S.cam_function(0)(base, x, base_pred), "g_f": S.cam_function(0)(model, x, pred)}
    for b, g in enumerate(gs):
        maps[f"g{b + 1}"] = S.cam_function(b + 1, g)(model, x, pred)
    cols = list(maps)
    fig, axes = plt.subplots(n, len(cols) + 1, figsize=(1.9 * (len(cols) + 1), 1.3 * n), squeeze=False)
    for r in range(n):
        img = data.raw_test[idx[r]][..., 0]
        axes[r, 0].imshow(img, cmap="gray")
        axes[r, 0].set_title(f"true {data.classes[int(y[r])]}", fontsize=7)
        for c, name in enumerate(cols):
            ax = axes[r, c + 1]
            ax.imshow(img, cmap="gray")
            ax.imshow(np.kron(maps[name][r], np.ones((cfg.downsample, cfg.downsample))), cmap="jet", alpha=0.45)
            if name == "org":
                title = f"org: {data.classes[int(base_pred[r])]}"
            elif name == "g_f":
                title = f"SSAL: {data.classes[int(pred[r])]}"
            else:
                b = int(name[1:]) - 1
                grp = int(heads[b + 1][r].argmax())
                members = [data.classes[i] for i in np.flatnonzero(gs[b] == grp)]
                title = f"{name}: " + " ".join(members[:6]) + (" ..." if len(members) > 6 else "")
            ax.set_title(title, fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    ctx.savefig(fig, "figure_7_5", "CAM of the baseline (org), of the SSAL main head (g_f) and of each branch; "
                                   "titles: prediction, or the labels of the branch's predicted group")
    concentration = {name: float(np.mean(m.reshape(n, -1).max(1))) for name, m in maps.items()}
    return {"n_examples": n, "ssal_correct": int((pred == y).sum()), "org_correct": int((base_pred == y).sum()),
            **{f"cam_peak_{k}": v for k, v in concentration.items()}}


def saliency_benchmark(cfg, ctx) -> dict:
    """The CAM of SSAL's main head and of every branch beside Grad-CAM / Grad-CAM++ / Saliency / IG,
    all explaining the three-branch SSAL model's joint prediction (Eq 7.5) of the same test images,
    scored by ``common.saliency.score_methods``; the rows go to the repository-wide benchmark
    (``saliency/<dataset>-ssal/<method>/<score>``)."""
    from common.plotting import plt
    from common.saliency import benchmark_metrics, get_method, score_methods
    data = load_data(cfg, ctx)
    model, gs = _three(cfg, ctx, data, cfg.arch)
    clf = S.SSALClassifier(model, gs, cfg.eta).eval()
    for p in clf.parameters():
        p.requires_grad_(True)
    n = min(cfg.n_saliency_images, len(data.y_test))
    idx = fixed_subset(len(data.y_test), n, seed=0)   # the same images every seed
    x, y = data.x_test[idx], data.y_test[idx]
    methods = [m for m in cfg.saliency_methods if get_method(m).applicable(clf)]
    skipped = sorted(set(cfg.saliency_methods) - set(methods))
    options = {m: {"layer": clf.cam_layer} for m in methods if get_method(m).needs_layer}
    if "ig" in methods:
        options["ig"] = {"n_steps": cfg.ig_steps}
    scores = score_methods(clf, x, y, methods, options, batch_size=cfg.eval_batch_size, progress=cfg.progress_bars)
    metrics = benchmark_metrics(scores, model_key=f"{cfg.dataset}-ssal")
    rows = []
    for name, r in scores.items():
        lo, hi = bootstrap_ci(np.asarray(r["insertion_each"]), cfg.n_boot, seed=ctx.seed)
        metrics.update({f"{name}_insertion": float(r["insertion"]), f"{name}_insertion_lo": float(lo),
                        f"{name}_insertion_hi": float(hi), f"{name}_deletion": float(r["deletion"]),
                        f"{name}_AD": float(r["AD"]), f"{name}_AI": float(r["AI"])})
        rows.append([get_method(name).label, r["AD"], r["AI"], r["AG"], r["insertion"], f"[{lo:.1f}, {hi:.1f}]",
                     r["deletion"], r["seconds_per_image"]])
    with torch.no_grad():
        metrics["jp_acc_on_images"] = 100 * float((clf(x).argmax(1) == y).float().mean())
    metrics["n_images"] = n
    ctx.table(f"Saliency benchmark on the three-branch SSAL model ({cfg.arch}, {cfg.dataset}, {n} test images, "
              f"explaining the joint prediction's probability of the true label)",
              ["method", "AD ↓", "AI ↑", "AG ↑", "insertion ↑", "95 % CI", "deletion ↓", "s / image"], rows,
              note="AD / AI / AG and insertion / deletion from common.saliency.score_methods; the model's output "
                   "is Eq 7.5's joint probability (auxiliary.ssal.SSALClassifier)" +
                   (f"; skipped (not applicable): {', '.join(skipped)}" if skipped else ""))
    show = min(4, n)
    fig, axes = plt.subplots(show, len(methods) + 1, figsize=(1.6 * (len(methods) + 1), 1.0 * show), squeeze=False)
    for r in range(show):
        img = data.raw_test[idx[r]][..., 0]
        axes[r, 0].imshow(img, cmap="gray")
        axes[r, 0].set_title(data.classes[int(y[r])], fontsize=6)
        for c, name in enumerate(methods):
            mp = scores[name]["maps"][r].cpu().numpy()
            axes[r, c + 1].imshow(img, cmap="gray")
            axes[r, c + 1].imshow(np.kron(mp, np.ones((cfg.downsample, cfg.downsample))), cmap="jet", alpha=0.45)
            if r == 0:
                axes[r, c + 1].set_title(name, fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    ctx.savefig(fig, "saliency_maps", "Maps of every method on the first benchmark images (SSAL heads' CAMs first)")
    return metrics


# --------------------------------------------------------------------------------------------------
# Parameter counts (no training)
# --------------------------------------------------------------------------------------------------
TAB_7_2_PRINTED = {"ResNet18": 11.2, "WideResNet18": 25.3, "DeepResNet18": 13.3, "DWRResNet18": 19.0,
                   "GapCatNoSSAL": 15.6, "CatFCNoSSAL": 13.6, "LinearComb": 12.8, "SSAL x1": 12.6, "SSAL x3": 15.6}


def tab_7_2_counts(keras: bool = True) -> dict[str, int]:
    """Our counts of Tab 7.2's models (ResNet18, TinyImageNet: 200 classes, 3x3 kernels, Tab A.2
    branches), as Keras counts them (``models.keras_param_count``; ``keras=False``: PyTorch's count)."""
    count = M.keras_param_count if keras else count_params
    out = {}
    for name in TAB_7_2_PRINTED:
        model_name = "SSAL x1" if name == "LinearComb" else name
        n = count(M.tab_7_2_model(model_name))
        if name == "LinearComb":    # + the linear layer over f (200) and the branch's outputs (20)
            n += (200 + M.TAB_7_2_GROUPS[0]) * 200 + 200
        out[name] = n
    return out


# (architecture, branches) -> printed count, Tab 7.1 and 7.3 (CIFAR100)
PRINTED_OTHER = {("resnet18", 0): 11.23, ("resnet18", 1): 11.92, ("resnet18", 2): 12.83, ("resnet50", 0): 23.77,
                 ("resnet50", 1): 25.07, ("resnet50", 3): 28.89, ("wrn28-10", 0): 36.56, ("wrn28-10", 1): 38.19,
                 ("wrn28-10", 3): 43.25, ("se-wrn16-8", 0): 11.1, ("se-wrn16-8", 3): 14.9, ("densenet190-40", 0): 26.1,
                 ("densenet190-40", 3): 38.3}
POINTS = {"resnet18": ("g2", "g3", "g4"), "resnet50": ("g2", "g3", "g4"), "wrn28-10": ("g2", "g5", "g6"),
          "se-wrn16-8": ("g2", "g5", "g6"), "densenet190-40": ("g2", "g5", "g6"), "densenet-bc100-12": ("g2", "g5", "g6"),
          "resnet50_imagenet": ("g2", "g3", "g4")}


def _printed_digits(v: float) -> int:
    return len(repr(float(v)).split(".")[1])


def parameter_counts(cfg, ctx) -> dict:
    """Every model of Tab 7.1, 7.2 and 7.3 built at the thesis' size and counted as Keras counts
    (conv biases, batch norm's moving statistics; PyTorch's own count beside it), against the printed
    count at its printed precision."""
    metrics, rows = {}, []
    torch_counts = tab_7_2_counts(keras=False)
    for name, n in tab_7_2_counts().items():
        key = f"tab7_2_{name.replace(' ', '_')}"
        metrics[f"{key}_M"], metrics[f"{key}_torch_M"] = n / 1e6, torch_counts[name] / 1e6
        pr = TAB_7_2_PRINTED[name]
        rows.append(["Tab 7.2", name, f"{n / 1e6:.3f}", f"{torch_counts[name] / 1e6:.3f}", pr,
                     "yes" if round(n / 1e6, 1) == pr else f"no ({n / 1e6 - pr:+.2f})"])
    thesis_cfg = dataclasses.replace(cfg, branch_layout="thesis")
    groups = {1: (20,), 2: (20, 50), 3: (20, 33, 50)}
    for (arch, nb), printed in PRINTED_OTHER.items():
        pts = ("g2", "g3") if arch == "resnet18" else POINTS[arch]
        m = build_model(thesis_cfg, arch, 100, 3, pts[:nb], groups.get(nb, ()))
        n, nt = M.keras_param_count(m), count_params(m)
        metrics[f"{arch}_{nb}br_M"], metrics[f"{arch}_{nb}br_torch_M"] = n / 1e6, nt / 1e6
        same = round(n / 1e6, _printed_digits(printed)) == printed
        rows.append(["Tab 7.1/7.3", f"{arch}, {nb} branches", f"{n / 1e6:.3f}", f"{nt / 1e6:.3f}", printed,
                     "yes" if same else f"no ({n / 1e6 - printed:+.2f})"])
    ctx.table("Parameter counts (millions): computed by the code beside the thesis' printed ones",
              ["table", "model", "ours, Keras count (M)", "ours, PyTorch count (M)", "thesis (M)",
               "same at the printed precision"], rows, digits=3)
    ctx.note("Counts follow Keras' 'Total params' (conv biases, batch norm's moving statistics), the convention "
             "that reproduces the printed backbones (ResNet18 11.23, WRN-28-10 36.56, DenseNet-190-40 26.1 M). "
             "Tab 7.1/7.3 branches use our reconstruction of Tab A.3-A.5 (merged cells and Fig A.7 lost in the "
             "text), so their SSAL counts are ours, not the thesis'.")
    return metrics


def table_7_1(cfg, ctx) -> dict:
    """Number of branches and eta: 0 branches (the baseline), 1 branch (20 groups after the first
    residual block, g2), 2 branches (+ 50 groups after the second, g3), and Tab 7.3's three-branch
    model; every multi-branch model evaluated with eta in ``tab7_1_etas`` (Eq 7.5, no retraining)."""
    data = load_data(cfg, ctx)
    arch = cfg.arch
    _, gammas = groupings(cfg, ctx, data, arch, (*cfg.three_groups, 20, 50))
    base = train_baseline(cfg, ctx, data, arch)
    base_hits = correct(S.predict_heads(base, data.x_test, cfg.eval_batch_size)[0], data.y_test)
    metrics = {"acc_0br": 100 * base_hits.mean(), "params_0br": count_params(base) / 1e6}
    rows = [[0, "-", metrics["acc_0br"], "", f"{metrics['params_0br']:.4f}M"]]
    setups = [(1, [cfg.single_point], [gammas[cfg.three_groups[0]]]),
              (2, ["g2", "g3"], [gammas[20], gammas[50]]),
              (len(cfg.three_points), list(cfg.three_points), [gammas[g] for g in cfg.three_groups])]
    for nb, points, gs in setups:
        m = train_ssal(cfg, ctx, data, arch, points, gs)
        heads = S.predict_heads(m, data.x_test, cfg.eval_batch_size)
        metrics[f"params_{nb}br"] = count_params(m) / 1e6
        for eta in (cfg.tab7_1_etas if nb > 1 else (1.0,)):
            hits = correct(S.joint_log_scores(heads[0], heads[1:], gs, eta), data.y_test)
            d, lo, hi = diff_ci(hits, base_hits, cfg, ctx.seed)
            key = f"{nb}br_eta{eta:g}"
            metrics.update({f"acc_{key}": 100 * hits.mean(), f"gain_{key}": d, f"gain_{key}_lo": lo,
                            f"gain_{key}_hi": hi})
            rows.append([nb, f"{eta:g}", 100 * hits.mean(), f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]",
                         f"{metrics[f'params_{nb}br']:.4f}M"])
    ctx.table(f"Tab 7.1: branches and eta ({arch} on {cfg.dataset})",
              ["branches", "eta", "test acc % (JP)", "minus 0 branches (p.p.)", "parameters"], rows)
    return metrics
