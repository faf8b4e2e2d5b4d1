"""A tiny demo experiment that exercises the whole stack (registry, trainer, results, claims)."""
from __future__ import annotations

import dataclasses

from common.claims import Claim, Fixtures, greater
from common.registry import Experiment, register
from common.config import TrainConfig, param


@dataclasses.dataclass
class DigitsConfig:
    dataset: str = param("digits", kind="dataset")
    val_fraction: float = param(0.1, gt=0, lt=1)   # part of train held out (seeded, stratified)
    width: int = param(32, ge=1)                    # channels of both convolutions
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=15, batch_size=64, lr=2e-3, optimizer="adam", ckpt_every=100, log_every=10))


def digits_classifier(cfg: DigitsConfig, ctx) -> dict:
    """A small CNN on an embedded digits set: test accuracy, loss curve and a few predictions."""
    import numpy as np
    import torch
    import torch.nn as nn

    from common.data import train_val_split
    from common.plotting import plt
    from common.trainer import accuracy, fit, predict

    train, test = ctx.load_dataset(cfg.dataset, "train"), ctx.load_dataset(cfg.dataset, "test")
    tr_idx, va_idx = train_val_split(len(train), cfg.val_fraction, ctx.seed, labels=train.y)

    def tensors(ds, idx=None):
        x, y = (ds.x, ds.y) if idx is None else (ds.x[idx], ds.y[idx])
        return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0, torch.from_numpy(y)

    torch.manual_seed(ctx.seed)
    c, w = train.x.shape[-1], cfg.width
    model = nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * w, 10))
    res = fit(model, tensors(train, tr_idx), ctx.train_config(cfg.train),
              ctx.work_dir("demo-digits", cfg), desc="digits-cnn")
    out = {}
    for split, (x, y) in {"val": tensors(train, va_idx), "test": tensors(test)}.items():
        out[f"acc_{split}"] = accuracy(predict(res.model, [x]), y)
    out["chance"] = 100.0 * float(np.bincount(train.y).max() / len(train.y))
    out["train_steps"] = res.steps

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([h["step"] for h in res.history], [h["loss"] for h in res.history])
    ax.set_xlabel("step"), ax.set_ylabel("training loss"), ax.set_yscale("log")
    ctx.savefig(fig, "loss", "training loss of the demo CNN")
    ctx.table("Demo accuracy (%)", ["split", "accuracy", "chance"],
              [["val", out["acc_val"], out["chance"]], ["test", out["acc_test"], out["chance"]]])
    return out


register(Experiment(
    name="demo.digits_cnn",
    target="experiments.demo:digits_classifier",
    config=DigitsConfig,
    title="Demo: small CNN on sklearn digits through the shared trainer",
    source="not from a thesis; a check of the shared layer",
    presets={
        "smoke": {"train.epochs": 1, "width": 8},
        "default": {},
        "paper": {"dataset": "mnist", "width": 64, "train.epochs": 5, "train.batch_size": 256},
    },
    claims=(Claim("the CNN learns: test accuracy far above chance", greater("acc_test", "chance", margin=50.0),
                  presets=("default", "paper"),
                  fixtures=Fixtures(PASS={"acc_test": 97.2, "chance": 10.2},
                                    FAIL={"acc_test": 41.5},          # trained, but not 50 points above chance
                                    SKIP={"acc_test": float("nan")})),),
))
