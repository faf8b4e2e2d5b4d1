"""Throughput of SSAL training through the project's trainer (``common.trainer.fit``, the path every
experiment trains on): ResNet18 (CIFAR variant, 100 classes) with 0, 1 and 3 Tab A.2 branches on
CIFAR shapes (synthetic data on the device). Each model trains ``--reps`` times one epoch of
``--steps`` steps in a fresh work folder, after one warm-up run; prints the median images/s, the
range over repetitions and the median time per image against the plain network of the same run.

    python bench/ssal_branches.py                 # CPU: batch 32, 4 steps, 3 repetitions
    python bench/ssal_branches.py --device cuda --batch 256 --steps 50 --reps 5   (bf16 + channels_last)
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch

from auxiliary import models as M
from auxiliary.ssal import ssal_step
from common.config import TrainConfig
from common.trainer import classification_step, fit

GROUPS = (20, 33, 50)


def one_run(model, x, y, cfg, step_fn) -> float:
    """Images/s of one ``fit`` of a fresh copy of ``model`` (one epoch over (x, y)), wall clock."""
    m = copy.deepcopy(model)
    with tempfile.TemporaryDirectory() as work:
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fit(m, (x, y), cfg, work, step_fn=step_fn, desc="bench")
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        return len(y) / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args()
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    cfg = TrainConfig(epochs=1, batch_size=a.batch, lr=0.01, optimizer="sgd", device=str(device),
                      ckpt_every=10 ** 9, log_every=10 ** 9, progress=False)
    n = a.batch * a.steps
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 100, (n,), generator=g).to(device)
    torch.manual_seed(0)
    models = {"0 branches": (M.resnet(18, 100), classification_step),
              "1 branch (g2)": (M.SSALNet(M.resnet(18, 100), [M.tiny_imagenet_branch("g2", 20)]),
                                ssal_step([torch.arange(100) % 20])),
              "3 branches (g1-g3)": (M.SSALNet(M.resnet(18, 100), [M.tiny_imagenet_branch(p, k) for p, k in
                                                                   zip(("g1", "g2", "g3"), GROUPS)]),
                                     ssal_step([torch.arange(100) % k for k in GROUPS]))}
    print(f"device {device}, batch {a.batch}, {a.steps} steps per run, {a.reps} runs after a warm-up, "
          f"trainer defaults (bf16 + channels_last on CUDA)")
    base = None
    for name, (model, step) in models.items():
        one_run(model, x, y, cfg, step)                       # warm-up: allocator, kernels, first-call costs
        ips = [one_run(model, x, y, cfg, step) for _ in range(a.reps)]
        med = statistics.median(ips)
        base = base or med
        print(f"{name:20s} median {med:9.1f} img/s  (range {min(ips):.1f}-{max(ips):.1f})   "
              f"time per image x{base / med:.2f} of the plain ResNet18")


if __name__ == "__main__":
    main()
