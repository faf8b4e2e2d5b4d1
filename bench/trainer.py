"""Throughput of the project's trainer against a plain fp32 PyTorch loop, in one run.

    python bench/trainer.py                 # GPU: ResNet-18, CIFAR shape, 100 classes, batch 512
    python bench/trainer.py --compile       # also the trainer with torch.compile
    python bench/trainer.py --augment       # also the trainer with on-device random_crop_flip(4)
    python bench/trainer.py --steps 3 --batch-size 64    # a quick look on CPU

Reference (issue 2, one H100): plain fp32 loop 19.7k img/s, bf16 + channels_last 48.8k, with
torch.compile 51.6k. Target on GPU: trainer >= 0.9 x 48.8k, i.e. >= 2.3 x the plain loop.
Data are synthetic and held on the device, so this measures the training step, not the input pipeline.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from common.trainer import TrainConfig, fit, pick_device, random_crop_flip


def resnet18_cifar(num_classes: int = 100) -> nn.Module:
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)   # CIFAR stem: 3x3 stride 1, no max-pool
    m.maxpool = nn.Identity()
    return m


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_loop(device, bs, warmup, steps) -> float:
    """The reference: fp32, contiguous NCHW, no autocast, a bare SGD loop."""
    torch.manual_seed(0)
    model = resnet18_cifar().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(bs, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (bs,), device=device)
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return bs * steps / (time.perf_counter() - t0)


def project_trainer(device, bs, warmup, steps, compile_: bool, augment: bool = False) -> float:
    """common.trainer.fit on on-device synthetic data; images/s of the steps after warm-up."""
    torch.manual_seed(0)
    n = bs * (warmup + steps)
    x = torch.randn(n, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (n,), device=device)
    cfg = TrainConfig(epochs=1, batch_size=bs, lr=0.1, optimizer="sgd", ckpt_every=10**9, log_every=10**9,
                      device=str(device), compile=compile_, progress=False)
    marks = {}

    def step(model, batch):
        # timestamps around the measured window (synchronised so queued GPU work is counted)
        k = len(marks)
        if k in (warmup, warmup + steps - 1):
            _sync(device)
            marks[k] = time.perf_counter()
        else:
            marks[k] = None
        *inputs, labels = batch
        return F.cross_entropy(model(*inputs).float(), labels), {}

    with tempfile.TemporaryDirectory() as work:
        fit(resnet18_cifar(), (x, y), cfg, work, step_fn=step, augment=random_crop_flip(4) if augment else None)
    _sync(device)
    # window from the start of step `warmup` to the start of the last step: steps - 1 full steps
    return bs * (steps - 1) / (marks[warmup + steps - 1] - marks[warmup])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=None, help="default 512 on GPU, 32 on CPU")
    p.add_argument("--steps", type=int, default=None, help="measured steps (default 50 on GPU, 4 on CPU)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="also time the trainer with torch.compile")
    p.add_argument("--augment", action="store_true", help="also time the trainer with random_crop_flip(4)")
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    device = pick_device(a.device)
    gpu = device.type == "cuda"
    bs = a.batch_size or (512 if gpu else 32)
    steps = a.steps or (50 if gpu else 4)
    warmup = a.warmup if a.warmup is not None else (10 if gpu else 1)
    if gpu:
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device {name}; ResNet-18 CIFAR shape, 100 classes, batch {bs}, {steps} steps after {warmup} warm-up; "
          f"torch {torch.__version__}")
    plain = plain_loop(device, bs, warmup, steps)
    print(f"{'plain fp32 loop':34s}{plain:10.1f} img/s   1.00x")
    ours = project_trainer(device, bs, warmup, steps, compile_=False)
    mode = "bf16 + channels_last" if gpu else "fp32 (CPU: no autocast)"
    print(f"{'trainer, ' + mode:34s}{ours:10.1f} img/s   {ours / plain:.2f}x")
    if a.compile:
        comp = project_trainer(device, bs, warmup, steps, compile_=True)
        print(f"{'trainer + torch.compile':34s}{comp:10.1f} img/s   {comp / plain:.2f}x")
    if a.augment:
        aug = project_trainer(device, bs, warmup, steps, compile_=False, augment=True)
        print(f"{'trainer + random_crop_flip(4)':34s}{aug:10.1f} img/s   {aug / plain:.2f}x")
    if gpu:
        print(f"target: trainer >= 2.3x the plain loop (0.9 x the H100 reference of 48.8k img/s); "
              f"here {ours / plain:.2f}x")


if __name__ == "__main__":
    main()
