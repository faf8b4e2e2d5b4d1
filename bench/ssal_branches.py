"""Throughput of SSAL training steps: ResNet18 (CIFAR variant, 100 classes) with 0, 1 and 3 Tab A.2
branches, on CIFAR shapes; prints images/s and the overhead ratio against the plain network measured
in the same run.

    python bench/ssal_branches.py                 # CPU: batch 32, a few steps
    python bench/ssal_branches.py --device cuda --batch 256 --steps 50   (bf16 + channels_last)
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from auxiliary import models as M
from auxiliary.ssal import ssal_step


def bench(model, batch, steps, device, amp):
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (batch,), device=device)
    n_branches = len(getattr(model, "branches", []))
    step = ssal_step([torch.arange(100) % g for g in (20, 33, 50)[:n_branches]]) if n_branches else None

    def one():
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            loss = step(model, (x, y))[0] if step else F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    amp = device.type == "cuda"
    models = {"0 branches": M.resnet(18, 100),
              "1 branch (g2)": M.SSALNet(M.resnet(18, 100), [M.tiny_imagenet_branch("g2", 20)]),
              "3 branches (g1-g3)": M.SSALNet(M.resnet(18, 100), [M.tiny_imagenet_branch(p, g) for p, g in
                                                                   zip(("g1", "g2", "g3"), (20, 33, 50))])}
    base = None
    print(f"device {device}, batch {a.batch}, {a.steps} steps, bf16 {'on' if amp else 'off'}")
    for name, m in models.items():
        ips = bench(m, a.batch, a.steps, device, amp)
        base = base or ips
        print(f"{name:20s} {ips:9.1f} img/s   time per image x{base / ips:.2f} of the plain ResNet18")


if __name__ == "__main__":
    main()
