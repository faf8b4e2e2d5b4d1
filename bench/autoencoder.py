"""Pre-training throughput of the SegNet autoencoder: JAX/Flax (capacity.autoencoder, unpooling by
a one-hot mask) against the same network in torch (native max_pool2d indices + max_unpool2d).

Same sizes, batch, optimiser (SGD momentum 0.9) and loss (per-sample MSE) in one run; torch in
bf16 autocast + channels_last on GPU and fp32 on CPU; JAX computes in bf16 on GPU (params fp32)
and fp32 on CPU. Also times pool + unpool alone. Prints images/s of both and the ratio.

    python bench/autoencoder.py                      # CPU defaults: 64x64, batch 4, VGG16 widths
    python bench/autoencoder.py --size 224 --batch 32 --steps 20   # GPU (paper sizes)
"""
from __future__ import annotations

import argparse
import json
import time


def bench_jax(widths, convs, size, batch, steps, warmup, bf16):
    import jax
    import jax.numpy as jnp
    from capacity.autoencoder import SegNet, init_segnet, max_pool_with_mask, max_unpool_with_mask
    from capacity.training import make_pretrain_step
    dtype = jnp.bfloat16 if bf16 else jnp.float32
    model = SegNet(widths, convs, 3, dtype=dtype)
    v = init_segnet(model, jax.random.PRNGKey(0), (size, size, 3))
    step, tx = make_pretrain_step(model, 0.9)
    p, b, m = v["params"], v["batch_stats"], tx.init(v["params"])
    x = jax.random.randint(jax.random.PRNGKey(1), (batch, size, size, 3), 0, 256).astype(jnp.uint8)
    t = time.perf_counter()
    for _ in range(warmup):
        p, b, m, loss = step(p, b, m, x, 0.01)
    loss.block_until_ready()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        p, b, m, loss = step(p, b, m, x, 0.01)
    loss.block_until_ready()
    ips = batch * steps / (time.perf_counter() - t)
    # pool + unpool alone, on the first block's activation size
    a = jax.random.normal(jax.random.PRNGKey(2), (batch, size, size, widths[0]), dtype)
    f = jax.jit(lambda a: max_unpool_with_mask(*max_pool_with_mask(a)))
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(20):
        out = f(a)
    out.block_until_ready()
    return ips, compile_s, (time.perf_counter() - t) / 20 * 1e3, float(loss)


def bench_torch(widths, convs, size, batch, steps, warmup):
    import torch
    import torch.nn.functional as F
    from capacity.segnet_torch import SegNetTorch
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    model = SegNetTorch(widths, convs, 3, 3).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch, 3, size, size), device=dev, dtype=torch.uint8)

    def step():
        xf = x.float() / 255.0
        if cuda:
            xf = xf.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            r = model(xf)
        loss = ((r.float() - xf) ** 2).mean(dim=(1, 2, 3)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def sync():
        if cuda:
            torch.cuda.synchronize()
    for _ in range(warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    ips = batch * steps / (time.perf_counter() - t)
    a = torch.randn(batch, widths[0], size, size, device=dev, dtype=torch.bfloat16 if cuda else torch.float32)
    if cuda:
        a = a.contiguous(memory_format=torch.channels_last)

    def pu(a):
        y, i = F.max_pool2d(a, 2, 2, return_indices=True)
        return F.max_unpool2d(y, i, 2, 2, output_size=a.shape[-2:])
    pu(a)
    sync()
    t = time.perf_counter()
    for _ in range(20):
        out = pu(a)
    sync()
    return ips, (time.perf_counter() - t) / 20 * 1e3, float(loss)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=None, help="image side (default 224 on GPU, 64 on CPU)")
    ap.add_argument("--batch", type=int, default=None, help="batch (default 32 on GPU, 4 on CPU)")
    ap.add_argument("--widths", default="64,128,256,512,512")
    ap.add_argument("--convs", default="2,2,3,3,3")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on GPU, 5 on CPU)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", default="", help="also write the figures to this file")
    a = ap.parse_args(argv)
    import jax
    import torch
    gpu = torch.cuda.is_available() and jax.default_backend() == "gpu"
    size = a.size or (224 if gpu else 64)
    batch = a.batch or (32 if gpu else 4)
    steps = a.steps or (20 if gpu else 5)
    widths = tuple(int(w) for w in a.widths.split(","))
    convs = tuple(int(c) for c in a.convs.split(","))
    print(f"SegNet widths {widths} convs {convs}, {size}x{size}x3, batch {batch}, {steps} timed steps; "
          f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({'cuda' if torch.cuda.is_available() else 'cpu'}, {torch.get_num_threads()} threads)")
    j_ips, j_comp, j_pu, j_loss = bench_jax(widths, convs, size, batch, steps, a.warmup, bf16=gpu)
    t_ips, t_pu, t_loss = bench_torch(widths, convs, size, batch, steps, a.warmup)
    res = {"size": size, "batch": batch, "widths": widths, "convs": convs, "device": "gpu" if gpu else "cpu",
           "jax_img_s": j_ips, "torch_img_s": t_ips, "ratio_jax_over_torch": j_ips / t_ips,
           "jax_compile_s": j_comp, "jax_pool_unpool_ms": j_pu, "torch_pool_unpool_ms": t_pu}
    print(f"JAX   pre-training: {j_ips:8.1f} images/s  (first {a.warmup} steps incl. compile: {j_comp:.1f} s; "
          f"{'bf16' if gpu else 'fp32'})")
    print(f"torch pre-training: {t_ips:8.1f} images/s  ({'bf16 autocast + channels_last' if gpu else 'fp32'})")
    print(f"ratio JAX / torch : {j_ips / t_ips:8.2f}")
    print(f"pool + unpool alone ({batch}x{size}x{size}x{widths[0]}): JAX {j_pu:.2f} ms, torch {t_pu:.2f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
