"""Tab 7.4: ResNet50 on ImageNet with three SSAL branches (g2, g3, g4 with 200 / 334 / 500 groups,
Tab A.6's branches as we reconstruct them), beside the plain ResNet50 (ours), +TR, +JP, +LC and
GapCatNoSSAL (GC); top-1 and top-5 on the validation split. Paper preset only: ImageNet read lazily
from ``<data root>/imagenet/{train,val}/<wnid>/`` (``common.data``), trained through the common
trainer (a torch Dataset through its DataLoader; DDP under torchrun).

The grouping needs a confusion matrix from images the baseline was not trained on: a small
stratified part of train (``imagenet_holdout_frac``, 2 % = about 25 images per class) is held out
for it and for +LC's linear layer; every model trains on the rest."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from auxiliary import grouping as GR
from auxiliary import models as M
from auxiliary import ssal as S
from common.data import train_val_split
from common.trainer import count_params, fit, predict

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_HOLDOUT_SEED = 0


class FolderSamples(Dataset):
    """Samples ``indices`` of a torchvision ImageFolder through ``transform`` (the loaded dataset is
    left untouched: the same folder serves the training and the held-out view)."""

    def __init__(self, folder, indices, transform):
        self.folder, self.indices, self.transform = folder, np.asarray(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        path, y = self.folder.samples[int(self.indices[i])]
        return self.transform(self.folder.loader(path)), y


def transforms(cfg, train: bool):
    """The usual ImageNet recipe (the thesis gives none): random-resized crop + flip for training,
    resize + centre crop for evaluation."""
    from torchvision import transforms as T
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train:
        return T.Compose([T.RandomResizedCrop(cfg.image_size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    return T.Compose([T.Resize(cfg.resize), T.CenterCrop(cfg.image_size), T.ToTensor(), norm])


def predict_folder(model: nn.Module, ds: Dataset, cfg, workers: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Every head's logits over ``ds`` and the labels: batches from a DataLoader, each forward through
    ``common.trainer.predict`` (sharded over DDP ranks, gathered on every rank)."""
    heads, ys = [], []
    for x, y in DataLoader(ds, batch_size=cfg.eval_batch_size, num_workers=workers):
        out = predict(model, [x], batch_size=cfg.eval_batch_size)
        heads.append(out if isinstance(out, tuple) else (out,))
        ys.append(y)
    return tuple(torch.cat(h) for h in zip(*heads)), torch.cat(ys)


def _stage(cfg, ctx, stage: str, model: nn.Module, desc: dict, train_ds: Dataset, step_fn=None) -> nn.Module:
    tc = ctx.train_config(cfg.train)
    if not cfg.progress_bars:
        tc = dataclasses.replace(tc, progress=False)
    work = ctx.work_dir(stage, {"ssal": dataclasses.replace(cfg, lc_train=None), "model": desc})
    fit(model, train_ds, tc, work, desc=stage, **({"step_fn": step_fn} if step_fn is not None else {}))
    model.stage_dir = str(work)
    return model.eval()


def _topk(logits: torch.Tensor, y: torch.Tensor, k: int) -> np.ndarray:
    top = logits.topk(min(k, logits.shape[1]), 1).indices
    return (top == y[:, None]).any(1).numpy().astype(np.float64)


def table_7_4(cfg, ctx) -> dict:
    from auxiliary.pipeline import branch_spec, diff_ci
    if cfg.dataset != "imagenet":
        ctx.note("Tab 7.4 is ImageNet-scale (ResNet50, 1.28 M images): it runs at the paper preset only, "
                 "`python -m common.run auxiliary.tab7_4 --preset paper --data-root <root>` (torchrun for "
                 "several GPUs). At this preset nothing is trained or measured; the code path is tested on a tiny "
                 "ImageNet-format folder (tests/test_auxiliary.py).")
        return {}
    train = ctx.load_dataset("imagenet", cfg.train_split)
    val = ctx.load_dataset("imagenet", cfg.test_split)
    k = len(train.classes)
    labels = np.asarray(train.dataset.targets)
    fit_idx, hold_idx = train_val_split(len(labels), cfg.imagenet_holdout_frac, _HOLDOUT_SEED, labels=labels)
    workers = ctx.train_config(cfg.train).num_workers
    fit_ds = FolderSamples(train.dataset, fit_idx, transforms(cfg, True))
    hold_ds = FolderSamples(train.dataset, hold_idx, transforms(cfg, False))
    val_ds = FolderSamples(val.dataset, np.arange(len(val)), transforms(cfg, False))

    torch.manual_seed(ctx.seed)
    base = _stage(cfg, ctx, "aux-imagenet-resnet50-base", M.resnet50_imagenet(k), {"arch": "resnet50_imagenet"},
                  fit_ds)
    (hold_logits,), y_hold = predict_folder(base, hold_ds, cfg, workers)
    conf = GR.confusion_matrix(y_hold.numpy(), hold_logits.argmax(1).numpy(), k)
    gs = [GR.group_labels(conf, g, seed=ctx.seed, seeding=cfg.seeding, similar=cfg.similar)
          for g in cfg.imagenet_groups]
    specs = [branch_spec(cfg, "resnet50_imagenet", p, g) for p, g in zip(cfg.imagenet_points, cfg.imagenet_groups)]
    desc = {"arch": "resnet50_imagenet", "points": list(cfg.imagenet_points),
            "branch": [dataclasses.asdict(s) for s in specs]}
    torch.manual_seed(ctx.seed)
    ssal = _stage(cfg, ctx, "aux-imagenet-resnet50-ssal3", M.SSALNet(M.resnet50_imagenet(k), specs),
                  dict(desc, gammas=[g.tolist() for g in gs], lambdas=list(cfg.lambdas)), fit_ds,
                  S.ssal_step(gs, list(cfg.lambdas) or None))
    torch.manual_seed(ctx.seed)
    gapcat = _stage(cfg, ctx, "aux-imagenet-resnet50-gapcat3",
                    M.SSALNet(M.resnet50_imagenet(k), specs, combine="gapcat"), dict(desc, combine="gapcat"), fit_ds)
    # +LC: the linear layer over the concatenated outputs, trained on the held-out part (as at CIFAR scale)
    hold_heads, y_hold = predict_folder(ssal, hold_ds, cfg, workers)
    tc = ctx.train_config(cfg.lc_train)
    lin = S.train_linear_combination(hold_heads, y_hold, tc, ctx.work_dir("aux-imagenet-lc", cfg,
                                                                       depends_on=[ssal.stage_dir]),
                                     gammas=gs, eta=cfg.eta)

    (base_logits,), y = predict_folder(base, val_ds, cfg, workers)
    heads, _ = predict_folder(ssal, val_ds, cfg, workers)
    (gc_logits,), _ = predict_folder(gapcat, val_ds, cfg, workers)
    cols = {"ours": base_logits, "tr": heads[0], "jp": S.joint_log_scores(heads[0], heads[1:], gs, cfg.eta),
            "lc": S.linear_combination_logits(lin, heads), "gc": gc_logits}
    hits = {c: {t: _topk(v, y, t) for t in (1, 5)} for c, v in cols.items()}
    metrics = {f"top{t}_{c}": 100 * hits[c][t].mean() for c in cols for t in (1, 5)}
    for a, b in (("jp", "ours"), ("tr", "ours"), ("jp", "tr"), ("jp", "gc"), ("gc", "ours")):
        d, lo, hi = diff_ci(hits[a][1], hits[b][1], cfg, ctx.seed)
        metrics.update({f"top1_{a}_minus_{b}": d, f"top1_{a}_minus_{b}_lo": lo, f"top1_{a}_minus_{b}_hi": hi})
    for b, (h, g) in enumerate(zip(heads[1:], gs)):
        metrics[f"branch{b + 1}_group_acc"] = 100 * float((h.argmax(1) == torch.as_tensor(g)[y]).float().mean())
    metrics.update({"params_ours_M": M.keras_param_count(base) / 1e6, "params_ssal_M": M.keras_param_count(ssal) / 1e6,
                    "params_ssal_torch_M": count_params(ssal) / 1e6, "n_val": len(y), "n_holdout": len(y_hold)})
    ctx.table(f"Tab 7.4: ResNet50 on ImageNet ({len(y)} val images), groups {cfg.imagenet_groups} at "
              f"{cfg.imagenet_points}, eta = {cfg.eta}", ["", "ours (org)", "+TR", "+JP", "+LC", "GC"],
              [[f"Top-{t}", *[metrics[f"top{t}_{c}"] for c in cols]] for t in (1, 5)])
    return metrics
