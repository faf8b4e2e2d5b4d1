"""The shared pipeline of every capacity experiment: data -> classifiers f_i -> A_S -> A_i ->
one evaluation pass. Each stage lives in ``ctx.work_dir(stage, config, depends_on=, datasets=)``
keyed by the config as it reads it (``_read_by``), the stages it reads and the descriptions of
exactly the datasets it reads, so all capacity experiments (and reruns, and other chapters through
``capacity.models.trained_models``, whatever else they loaded before) share the trained models and
the evaluation, and a changed setting or dataset trains afresh.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from capacity.data import ArraySource, FolderSource, ordered_batches, pad_to
from capacity.models import CapacityModels
from common.data import fixed_subset

PAPER_LETTERS = {"lenet": "L", "alexnet": "A", "vgg16": "V", "resnet50": "R", "inception_v3": "I"}


def short(name: str) -> str:
    """Subscript used in tables: the thesis' letters for its classifiers, the name otherwise."""
    return PAPER_LETTERS.get(name, name)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def _source(ds, cfg):
    from common.data import ImageClassification
    if isinstance(ds, ImageClassification):
        x = ds.x
        if x.shape[1] != cfg.image_size or x.shape[2] != cfg.image_size:
            x = pad_to(x, cfg.image_size)
        return ArraySource(x, ds.y)
    return FolderSource(ds.dataset, resize=cfg.resize or cfg.image_size, crop=cfg.image_size,
                        num_workers=cfg.num_workers)


def _materialize(src, cfg):
    """A small folder source held in memory (tests, small folders): no DataLoader workers later."""
    if isinstance(src, FolderSource) and len(src) <= cfg.materialize_max:
        xs, ys = zip(*src.batches(ordered_batches(np.arange(len(src)), 256)))
        return ArraySource(np.concatenate(xs), np.concatenate(ys))
    return src


def _limit(src, n, seed):
    if not n or n >= len(src):
        return src
    idx = fixed_subset(len(src), n, seed)
    if isinstance(src, ArraySource):
        return src.subset(idx)
    from torch.utils.data import Subset
    return FolderSource(Subset(src.dataset, idx.tolist()), src.resize, src.crop, src.num_workers)


def load_sources(cfg, ctx) -> dict:
    """train (classifiers, fine-tuning), pretrain (A_S), eval (accuracy) and nmi (eval + extra), and
    under "datasets" the description of the dataset behind each (the stages' work-folder identity).
    Every dataset is loaded (and recorded in the run) here, before any stage asks for a folder."""
    from common.data import image_folder
    from capacity.config import check_config
    from common.jax_loop import maybe_init_distributed
    check_config(cfg)
    maybe_init_distributed()   # under torchrun / SLURM: JAX joins the other processes before any JAX work
    train_ds = ctx.load_dataset(cfg.dataset, cfg.train_split)
    eval_ds = ctx.load_dataset(cfg.dataset, cfg.eval_split)
    train = _materialize(_limit(_source(train_ds, cfg), cfg.max_train, 1), cfg)
    ev = _materialize(_limit(_source(eval_ds, cfg), cfg.max_eval, 2), cfg)
    described = {"train": train_ds.describe(), "eval": eval_ds.describe()}
    if cfg.pretrain_folder:
        root = Path(cfg.pretrain_folder)
        if not root.is_absolute() and ctx.data_root:
            root = Path(ctx.data_root) / root
        folder = image_folder(root, name="pretrain-folder")
        ctx.record_dataset(folder)
        described["pretrain"] = folder.describe()
        pre = _materialize(_limit(_source(folder, cfg), cfg.max_pretrain, 3), cfg)
    else:
        described["pretrain"] = described["train"]
        pre = train
    extra = None
    if cfg.nmi_extra_split == cfg.train_split and isinstance(train, ArraySource):
        extra = train
        described["extra"] = described["train"]
    elif cfg.nmi_extra_split:
        extra_ds = ctx.load_dataset(cfg.dataset, cfg.nmi_extra_split)
        described["extra"] = extra_ds.describe()
        extra = _limit(_source(extra_ds, cfg), cfg.max_train, 1)
    if extra is not None and isinstance(ev, ArraySource) and isinstance(extra, ArraySource):
        nmi = ArraySource(np.concatenate([ev.x, extra.x]), np.concatenate([ev.y, extra.y]))
        is_eval = np.arange(len(nmi)) < len(ev)
    else:
        nmi, is_eval = ev, np.ones(len(ev), bool)
    return {"train": train, "pretrain": pre, "eval": ev, "nmi": nmi, "is_eval": is_eval, "datasets": described}


def evaluation_images(cfg, ctx, n: int, seed: int = 12345):
    """``n`` images of the evaluation split prepared as capacity's stages see them (digits zero-padded
    to image_size; folders: short side resized, centre crop), a fixed random subset
    (``fixed_subset(len, n, seed)``, the same for every training seed): (uint8 NHWC, int64 labels,
    the dataset's description). Public: adversarial/ attacks exactly these inputs."""
    ds = ctx.load_dataset(cfg.dataset, cfg.eval_split)
    src = _source(ds, cfg)
    x, y = next(iter(src.batches([fixed_subset(len(src), n, seed)])))
    return x, np.asarray(y, dtype=np.int64), ds.describe()


def _reads(sources, *roles) -> list:
    """Descriptions of the datasets behind ``roles`` (each once, in order): a stage's ``datasets=``."""
    out = []
    for r in roles:
        d = sources["datasets"].get(r)
        if d is not None and d not in out:
            out.append(d)
    return out


# --------------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------------
def _read_by(cfg, classifier: str | None = None, *, ae: bool = True, train: bool = True):
    """The config as one stage reads it (its work-folder key): the whole config, its classifier list
    narrowed to the one classifier the stage is about (none: A_S), without the subtree a stage never
    reads (``ae`` for a classifier, ``train`` for the autoencoder pre-training). Capacity's
    five-classifier run and adversarial's two-classifier one thus share each classifier's stages."""
    return dataclasses.replace(cfg, classifiers=(classifier,) if classifier else (),
                               ae=cfg.ae if ae else None, train=cfg.train if train else None)


def get_classifiers(cfg, ctx, sources) -> tuple[dict, dict, dict]:
    """name -> frozen torch classifier in eval mode (trained once, or loaded from the zoo); how each
    was obtained; the stage folder of each trained one."""
    import torch
    from common.trainer import fit, pick_device
    from capacity.classifiers import Preprocessed, digit_classifier, zoo_classifier, LeNet
    out, info, dirs = {}, {}, {}
    dev = pick_device(ctx.device)   # classifiers stay on the run's device (GPU at paper scale)
    train = sources["train"]
    c = train.image_shape[-1]
    for name in cfg.classifiers:
        if cfg.zoo and name != "lenet":
            model = zoo_classifier(name, cfg.zoo_weights, cfg.n_classes, getattr(cfg.weights, name))
            info[name] = {"source": f"torchvision {name}, {model.weights_enum} ({cfg.zoo_weights}); preprocessing "
                                    f"from the weights' transforms(): {model.preprocessing}"}
        else:
            torch.manual_seed(ctx.seed)
            if cfg.zoo:   # our LeNet at ImageNet scale: RGB, normalised like the zoo models
                from capacity.classifiers import IMAGENET_MEAN, IMAGENET_STD
                model = Preprocessed(LeNet(c, cfg.n_classes, cfg.image_size), IMAGENET_MEAN, IMAGENET_STD)
            else:
                model = digit_classifier(name, c, cfg.n_classes, cfg.image_size)
            data = train.tensors() if isinstance(train, ArraySource) else train
            dirs[name] = ctx.work_dir(f"capacity-clf-{name}", _read_by(cfg, name, ae=False),
                                      datasets=_reads(sources, "train"))
            res = fit(model, data, ctx.train_config(cfg.train), dirs[name], desc=f"classifier {name}")
            model = res.model
            info[name] = {"source": "trained here", "steps": res.steps, "wall_s": res.wall_s}
        model = model.to(dev).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        out[name] = model
    return out, info, dirs


def build_model(cfg, channels: int):
    from capacity.autoencoder import SegNet
    return SegNet(tuple(cfg.ae.widths), tuple(cfg.ae.convs), channels)


def get_autoencoders(cfg, ctx, sources, classifiers, clf_dirs) -> tuple[Any, dict, dict, dict]:
    """(model, {"A_S": variables, name: variables of A_name}, info, their stage folders). ``clf_dirs``:
    the stage folder of each trained classifier (a fine-tuned decoder is keyed by the one it read)."""
    from capacity.training import finetune_decoder, make_finetune_fns, pretrain_autoencoder
    c = sources["train"].image_shape[-1]
    model = build_model(cfg, c)
    fns = make_finetune_fns(model, cfg.ae.momentum)
    dirs = {"A_S": ctx.work_dir("capacity-AS", _read_by(cfg, train=False), datasets=_reads(sources, "pretrain"))}
    v_s, st = pretrain_autoencoder(model, sources["pretrain"], cfg.ae, dirs["A_S"], ctx.seed, progress=cfg.progress)
    aes = {"A_S": v_s}
    info = {"A_S": {"final_mse": st["history"][-1]["loss"] if st.get("history") else None,
                    "lr_drops": st.get("lr_drops", []), "images": st.get("images")}}
    for name, clf in classifiers.items():
        dirs[name] = ctx.work_dir(f"capacity-A-{name}", _read_by(cfg, name),
                                  depends_on=[dirs["A_S"]] + ([clf_dirs[name]] if name in clf_dirs else []),
                                  datasets=_reads(sources, "pretrain", "train"))
        v, st = finetune_decoder(model, v_s, clf, sources["train"], cfg.ae, dirs[name], ctx.seed,
                                 desc=f"fine-tune A_{short(name)}", progress=cfg.progress, fns=fns)
        aes[name] = v
        info[name] = {"final_ce": st["history"][-1]["loss"] if st.get("history") else None, "steps": st["step"]}
    return model, aes, info, dirs


def train_models(cfg, ctx, sources) -> CapacityModels:
    """Every trained model of the chapter (each stage trained once, then loaded from its folder)."""
    from capacity.training import make_reconstruct
    classifiers, clf_info, clf_dirs = get_classifiers(cfg, ctx, sources)
    model, aes, ae_info, ae_dirs = get_autoencoders(cfg, ctx, sources, classifiers, clf_dirs)
    return CapacityModels(classifiers=classifiers, segnet=model, variables=aes, reconstruct=make_reconstruct(model),
                          image_shape=tuple(sources["train"].image_shape), clf_info=clf_info, ae_info=ae_info,
                          classifier_dirs=clf_dirs, autoencoder_dirs=ae_dirs)


def artefact_constancy(res_sum, res_sq, count):
    """|mean residual|^2 / mean |residual|^2: the share of the reconstruction error A(x) - x that is
    the same image for every sample (1: one constant pattern, ~1/n: independent noise). ``res_sum``
    (..., D) and ``res_sq`` (...) are the sums over the samples, ``count`` their number."""
    count = np.asarray(count, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = res_sum / np.asarray(count)[..., None]
        return np.sum(mean ** 2, axis=-1) / (res_sq / count)


# --------------------------------------------------------------------------------------------------
# One evaluation pass
# --------------------------------------------------------------------------------------------------
def evaluate(cfg, ctx) -> dict:
    """Everything the tables and figures need, computed once (cached as npz + json, no pickle);
    the models themselves: ``train_models`` / ``capacity.models.trained_models``.

    acc1/acc5[a, j]: top-1/5 (%) of classifier j on input a (a = 0: original, 1: A_S, 2..: A_i);
    correct1[a, j, k]: per-sample top-1 correctness (bootstrap); ic[a', k], bc[a', p]: IC-/BC-nMI
    per sample / pair for a' over (A_S, A_i...); mse_items[a', k]: per-image MSE over every nMI
    item (is_eval_items marks the evaluation split, the rest is the training split when
    nmi_extra_split names it); artefact_const[a'] and its Poisson-bootstrap replicates
    artefact_const_rep[a', b] (``artefact_constancy``, evaluation items); examples: uint8 originals
    and reconstructions.
    """
    import torch
    import jax
    from capacity.metrics import mutual_information, to_uint8

    sources = load_sources(cfg, ctx)
    # the pass is keyed by everything that determines the models (the whole config, the data and the
    # code, which imports the training code), so a cached pass is returned without loading them (the
    # tables read arrays only)
    wd = ctx.work_dir("capacity-eval", cfg, datasets=_reads(sources, "train", "pretrain", "eval", "extra"))
    if (wd / "eval.npz").exists() and (wd / "eval.json").exists():
        with np.load(wd / "eval.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads((wd / "eval.json").read_text())
        return dict(arrays, **meta, sources=sources)
    models = train_models(cfg, ctx, sources)
    classifiers, model, aes = models.classifiers, models.segnet, models.variables
    clf_info, ae_info = models.clf_info, models.ae_info

    clf_names = list(classifiers)
    clf_device = next(classifiers[clf_names[0]].parameters()).device
    ae_names = ["A_S"] + clf_names
    nmi_src, is_eval = sources["nmi"], sources["is_eval"]
    n, n_eval = len(nmi_src), int(is_eval.sum())
    order = np.random.default_rng(cfg.nmi_seed).permutation(n)
    n_pair_items = 2 * cfg.bc_pairs
    if n_pair_items > n:
        raise ValueError(f"bc_pairs={cfg.bc_pairs} needs {n_pair_items} images, the nMI set has {n}")
    bs = cfg.eval_batch_size + cfg.eval_batch_size % 2          # even: pairs never straddle batches
    rec = models.reconstruct
    n_in = 1 + len(ae_names)
    top1 = np.zeros((n_in, len(clf_names), n), bool)
    top5 = np.zeros((n_in, len(clf_names), n), bool)
    ic = np.zeros((len(ae_names), n))
    mse_items = np.zeros((len(ae_names), n))   # every nMI item: the eval split and the extra (training) one
    # artefact constancy (Fig 5.4): sums of the residual r = A(x) - x over the evaluation items and of
    # |r|^2, once plainly and once per Poisson-bootstrap replicate (the same weights for every
    # autoencoder: paired); a replicate's sums stay one image large, so this scales to ImageNet val
    n_rep = cfg.artefact_bootstrap
    rep_w = np.random.default_rng(cfg.nmi_seed + 1).poisson(1.0, (n_rep, n)).astype(np.float64)
    d_img = int(np.prod(nmi_src.image_shape))
    res_sum = np.zeros((len(ae_names), d_img))
    res_sq = np.zeros(len(ae_names))
    res_sum_rep = np.zeros((len(ae_names), n_rep, d_img))
    res_sq_rep = np.zeros((len(ae_names), n_rep))
    rep_n = np.zeros(n_rep)
    bc = np.zeros((len(ae_names), cfg.bc_pairs))
    ev_idx = np.nonzero(is_eval)[0]           # examples: the first image of each class, in class order
    ev_labels = np.asarray(nmi_src.y)[ev_idx] if isinstance(nmi_src, ArraySource) else None
    if ev_labels is not None:
        firsts = [int(ev_idx[np.argmax(ev_labels == c)]) for c in np.unique(ev_labels)]
        ex_idx = (firsts + [int(i) for i in ev_idx if int(i) not in firsts])[:cfg.n_examples]
    else:
        ex_idx = [int(i) for i in ev_idx[:cfg.n_examples]]
    ex_orig, ex_rec = {}, {a: {} for a in ae_names}
    pos = 0
    for xb, yb in nmi_src.batches(ordered_batches(order, bs)):
        idx = order[pos:pos + len(xb)]
        ev = is_eval[idx]
        xj = jax.numpy.asarray(xb)
        inputs = [xb.astype(np.float32) / 255.0]
        for a, name in enumerate(ae_names):
            r = np.asarray(jax.device_get(rec(aes[name], xj)))
            inputs.append(r)
            mse_items[a, idx] = np.mean((r - inputs[0]) ** 2, axis=(1, 2, 3))
            if ev.any():
                res = (r[ev] - inputs[0][ev]).reshape(int(ev.sum()), -1).astype(np.float64)
                sq_norm = np.sum(res ** 2, axis=1)
                w = rep_w[:, idx[ev]]
                res_sum[a] += res.sum(0)
                res_sq[a] += sq_norm.sum()
                res_sum_rep[a] += w @ res
                res_sq_rep[a] += w @ sq_norm
            r8 = to_uint8(r)
            for k in range(len(xb)):
                ic[a, idx[k]] = mutual_information(xb[k], r8[k])
                g = pos + k
                if g % 2 == 0 and g + 1 < n_pair_items and k + 1 < len(xb):
                    bc[a, g // 2] = mutual_information(r8[k], r8[k + 1])
                if int(idx[k]) in ex_idx:
                    ex_rec[name][int(idx[k])] = r8[k]
        for k in range(len(xb)):
            if int(idx[k]) in ex_idx:
                ex_orig[int(idx[k])] = xb[k]
        if ev.any():
            rep_n += rep_w[:, idx[ev]].sum(1)
            yt = torch.as_tensor(yb[ev])
            with torch.no_grad():
                for a, inp in enumerate(inputs):
                    xt = torch.from_numpy(np.ascontiguousarray(inp[ev])).permute(0, 3, 1, 2).to(clf_device)
                    for j, cn in enumerate(clf_names):
                        logits = classifiers[cn](xt).float().cpu()
                        k5 = logits.topk(min(5, logits.shape[1]), 1).indices
                        top1[a, j, idx[ev]] = (k5[:, 0] == yt).numpy()
                        top5[a, j, idx[ev]] = (k5 == yt[:, None]).any(1).numpy()
        pos += len(xb)
    top1, top5 = top1[:, :, is_eval], top5[:, :, is_eval]
    arrays = {"top1": top1, "top5": top5, "acc1": 100.0 * top1.mean(-1), "acc5": 100.0 * top5.mean(-1),
              "ic": ic[:, is_eval], "bc": bc, "mse": mse_items[:, is_eval].mean(1) if n_eval else np.full(len(ae_names), np.nan),
              "mse_items": mse_items, "is_eval_items": is_eval,
              "artefact_const": artefact_constancy(res_sum, res_sq, n_eval),
              "artefact_const_rep": artefact_constancy(res_sum_rep, res_sq_rep, rep_n[None, :]),
              "ex_orig": np.stack([ex_orig[i] for i in ex_idx]),
              "ex_rec": np.stack([np.stack([ex_rec[a][i] for i in ex_idx]) for a in ae_names])}
    meta = {"clf_names": clf_names, "ae_names": ae_names, "n_eval": n_eval, "n_nmi": n,
            "clf_info": clf_info, "ae_info": ae_info}
    tmp = wd / "eval.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(wd / "eval.npz")
    (wd / "eval.json").write_text(json.dumps(meta, default=str))
    return dict(arrays, **meta, sources=sources)
