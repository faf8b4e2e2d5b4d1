"""The shared pipeline of every SSAL experiment: data (the fit / held-out / test parts), model
building (backbones, branches at named points), training stages shared through identical
``ctx.work_dir`` keys (the plain baseline, the groupings from its confusions, SSAL models, +LC) and
the per-item measures the tables bootstrap. The experiments are in ``auxiliary.tables``, the
parameter counts (no training) in ``auxiliary.params``.
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
from common.data import train_val_split
from common.trainer import fit, random_crop_flip

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
    test_clusters: np.ndarray | None = None   # (n_test, 2) digit images of each composite: bootstrap clusters

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
    if getattr(train, "hold", None) is not None:    # twodigit100: its held-out part is made of held-out digits
        fit_idx, hold_idx = np.flatnonzero(~train.hold), np.flatnonzero(train.hold)
    else:
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
    return Data(x[fit_idx], y[fit_idx], x[hold_idx], y[hold_idx], xt, yt, list(train.classes), test.x,
                getattr(test, "digits", None))


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


# Tab 7.3's branches per architecture as the appendix places them (Tab A.3-A.5: ResNet50 at g2-g4;
# WRN, SE-WRN and DenseNet at g2, g5, g6); used with the thesis' branch layout (paper). Tab 7.1 and
# Tab 7.2 place theirs at ``three_points`` (g1-g3, L1732-1736).
TAB_7_3_POINTS = {"resnet50": ("g2", "g3", "g4"), "resnet50_imagenet": ("g2", "g3", "g4"),
                  "wrn28-10": ("g2", "g5", "g6"), "se-wrn16-8": ("g2", "g5", "g6"),
                  "densenet190-40": ("g2", "g5", "g6"), "densenet-bc100-12": ("g2", "g5", "g6")}


def tab_7_3_points(cfg, arch: str) -> tuple:
    if cfg.branch_layout == "thesis" and arch in TAB_7_3_POINTS and len(cfg.three_groups) == 3:
        return TAB_7_3_POINTS[arch]
    return tuple(cfg.three_points)


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


def confusion(cfg, model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, kind: str | None = None) -> np.ndarray:
    """The confusion matrix of ``model`` on (x, y): ``"hard"`` counts argmax errors (the thesis'),
    ``"soft"`` sums the predicted probabilities (``grouping.soft_confusion``); ``kind`` defaults to
    ``cfg.confusion``."""
    logits = S.predict_heads(model, x, cfg.eval_batch_size)[0].float()
    if (kind or cfg.confusion) == "soft":
        return GR.soft_confusion(y.numpy(), torch.softmax(logits, 1).numpy(), k)
    return GR.confusion_matrix(y.numpy(), logits.argmax(1).numpy(), k)


def groupings(cfg, ctx, data: Data, arch: str, group_counts: Sequence[int]) -> tuple[np.ndarray, dict]:
    """Confusion matrix (``cfg.confusion``: hard counts or summed softmax mass) of the plain baseline
    on the held-out part of train, and gamma for every G."""
    base = train_baseline(cfg, ctx, data, arch)
    c = confusion(cfg, base, data.x_hold, data.y_hold, data.k)
    gammas = {g: GR.group_labels(c, g, seed=ctx.seed, seeding=cfg.seeding, similar=cfg.similar)
              for g in sorted(set(group_counts))}
    return c, gammas


def branch_lambdas(cfg, points: Sequence[str]) -> list[float] | None:
    """Eq 7.4's weights (lambda_f, one per branch) of the SSAL model with branches at ``points``, from
    ``cfg.lambdas`` (see the config). None: all 1. A model with fewer branches than ``three_points``
    whose branch sits at a point the many-branch model lacks has no weight: ConfigError (experiments
    ask for every model's weights before they train anything)."""
    lam = [float(v) for v in cfg.lambdas]
    if not lam:
        return None
    if len(lam) == 2:
        return [lam[0]] + [lam[1]] * len(points)
    if len(points) == len(lam) - 1:
        return lam
    missing = [p for p in points if p not in cfg.three_points]
    if missing:
        from common.config import ConfigError
        raise ConfigError(f"lambdas {tuple(cfg.lambdas)} weigh the branches at {tuple(cfg.three_points)}; a model "
                          f"with a branch at {missing} has no weight: give two values (lambda_f, lambda for every "
                          f"branch)")
    return [lam[0]] + [lam[1 + list(cfg.three_points).index(p)] for p in points]


def train_ssal(cfg, ctx, data: Data, arch: str, points: Sequence[str], gammas: Sequence[np.ndarray],
               combine: str = "ssal", epochs: int | None = None) -> nn.Module:
    groups = [int(g.max()) + 1 for g in gammas]
    torch.manual_seed(ctx.seed)
    m = build_model(cfg, arch, data.k, data.in_channels, points, groups, combine)
    desc = {"arch": arch, "points": list(points), "combine": combine, "layout": cfg.branch_layout,
            "branch": [dataclasses.asdict(s) for s in m.specs], "mini_widths": list(cfg.mini_widths)}
    step = None
    if combine == "ssal":
        lam = branch_lambdas(cfg, points)
        desc.update(gammas=[g.tolist() for g in gammas], lambdas=lam or [])
        step = S.ssal_step(gammas, lam)
    tag = "ssal" if combine == "ssal" else combine
    return _train(cfg, ctx, data, f"aux-{arch}-{tag}{len(points)}-{'-'.join(points)}", m, desc, step,
                  gammas=list(gammas) if combine == "ssal" else None, epochs=epochs)


def linear_comb(cfg, ctx, data: Data, model: nn.Module, gammas: Sequence[np.ndarray]) -> nn.Module:
    """+LC: the linear classifier over the concatenated outputs, trained afterwards on the held-out part
    of train (the fit split's outputs are those of memorised images: a layer trained on them learns to
    trust overconfident heads; measured on seed 0 of the default: 79 % against 90 % for f alone),
    starting at JP's weights and kept only where it beats them on a quarter of that part set aside."""
    heads = S.predict_heads(model, data.x_hold, cfg.eval_batch_size)
    tc = ctx.train_config(cfg.lc_train)
    if not cfg.progress_bars:
        tc = dataclasses.replace(tc, progress=False)
    work = ctx.work_dir("aux-lc", cfg, depends_on=[model.stage_dir])
    eta = cfg.eta if len(gammas) > 1 else 1.0
    return S.train_linear_combination(heads, data.y_hold, tc, work, gammas=gammas, eta=eta)


# --------------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------------
def correct(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return (logits.argmax(1) == y).numpy().astype(np.float64)


def cluster_bootstrap_ci(values: np.ndarray, clusters: np.ndarray | None, n_boot: int, seed: int = 0,
                         alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` when items share their sources: ``clusters`` (n, c)
    names the c source units of each item (twodigit100: its two digit images, reused across
    composites). Every replicate resamples the source units with replacement and weights each item
    by the product of its units' multiplicities (the pigeonhole bootstrap for crossed sources; an item
    whose digit was not drawn drops out). Mildly conservative; the plain bootstrap over composites
    treats 2000 composites of 978 digit images as 2000 independent draws. None: plain bootstrap."""
    values = np.asarray(values, dtype=np.float64)
    if clusters is None:
        return bootstrap_ci(values, n_boot, seed=seed, alpha=alpha)
    ids, inv = np.unique(np.asarray(clusters), return_inverse=True)
    inv = inv.reshape(np.asarray(clusters).shape)
    rng = np.random.default_rng(seed)
    w_units = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=n_boot).astype(np.float64)
    w = np.prod(w_units[:, inv], axis=2)                       # (n_boot, n): product over an item's units
    tot = w.sum(1)
    stats = (w @ values)[tot > 0] / tot[tot > 0]
    return float(np.quantile(stats, alpha / 2)), float(np.quantile(stats, 1 - alpha / 2))


def acc_with_ci(hits: np.ndarray, cfg, seed: int, clusters: np.ndarray | None = None) -> tuple[float, float, float]:
    lo, hi = cluster_bootstrap_ci(hits, clusters, cfg.n_boot, seed=seed)
    return 100 * hits.mean(), 100 * lo, 100 * hi


def diff_ci(a: np.ndarray, b: np.ndarray, cfg, seed: int, clusters: np.ndarray | None = None
            ) -> tuple[float, float, float]:
    """Paired difference a - b in accuracy points with its bootstrap interval over test items (over
    the digit images they are made of, when ``clusters`` is given)."""
    lo, hi = cluster_bootstrap_ci(a - b, clusters, cfg.n_boot, seed=seed)
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

