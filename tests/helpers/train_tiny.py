"""A tiny training run used by the trainer tests (kill/resume) and the DDP test.

    python tests/helpers/train_tiny.py WORK_DIR OUT.safetensors [--sleep S] [--steps-per-ckpt N]
    torchrun --standalone --nproc_per_node=2 tests/helpers/train_tiny.py WORK_DIR OUT.safetensors
"""
import argparse
import time

import torch
import torch.nn as nn

from common.checkpoint import save_state_dict
from common.trainer import TrainConfig, classification_step, fit, dist_info


def data(n=256, seed=123):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()   # 4 learnable classes
    return x, y


def model(dropout: float):
    torch.manual_seed(7)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 4))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("work_dir")
    p.add_argument("out")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--ckpt-every", type=int, default=5)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--optimizer", default="adam")
    a = p.parse_args()

    def slow_step(m, batch):
        if a.sleep:
            time.sleep(a.sleep)
        return classification_step(m, batch)

    cfg = TrainConfig(epochs=a.epochs, batch_size=32, lr=0.01, optimizer=a.optimizer, ckpt_every=a.ckpt_every,
                      log_every=5, device="cpu", seed=3, progress=False, schedule="cosine")
    res = fit(model(a.dropout), data(), cfg, a.work_dir, step_fn=slow_step)
    if dist_info()[0] == 0:
        save_state_dict(res.model.state_dict(), a.out)
        print(f"done steps={res.steps} resumed_from={res.resumed_from}", flush=True)


if __name__ == "__main__":
    main()
