"""Overhead per call of common.bridge, against the same work without the bridge, in one run.

torch_as_jax: a small torch CNN classifier called (a) directly in torch, (b) through torch_as_jax
eagerly (DLPack, no callback), (c) under jax.jit (jax.pure_callback), (d) under jax.jit(jax.vmap(...))
of a per-sample function (the callback folds the vmapped axis into torch's batch: one torch call).
Forward, and forward + backward (gradient w.r.t. the input; the network's parameters are frozen in
every variant, as the bridge keeps them).
jax_as_torch: a small JAX MLP called from torch with a dict of parameter tensors, against the same
function jitted in plain JAX; forward, and forward + backward (gradients w.r.t. parameters and input).

    python bench/bridge.py                          # CPU defaults: batch 8, 3x32x32 images
    python bench/bridge.py --batch 64 --json bridge.json
    python bench/bridge.py --threads 0              # torch's and XLA's default thread pools

Times are the minimum over --repeats of the mean over --calls calls, after --warmup calls (compiles);
the variants take turns within each repeat. --threads (default 1) pins both torch's and XLA's CPU
threads: the figures are the bridge's overhead, not the machine's parallel throughput, and two thread
pools spinning against each other on a shared machine would swamp them.
Ratios are against direct torch (torch_as_jax) or plain JAX (jax_as_torch) measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def timeit(variants: dict, calls: int, repeats: int, warmup: int) -> dict:
    """Microseconds per call of each variant (a callable that blocks until done): the minimum over
    `repeats` of the mean of `calls` calls. Variants take turns within each repeat, so that load from
    other processes falls on all of them alike; the minimum is the least disturbed estimate."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    per = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            per[name].append((time.perf_counter() - t) / calls * 1e6)
    return {name: min(v) for name, v in per.items()}


def classifier(num_classes: int = 10):
    import torch.nn as nn
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))


def bench_torch_as_jax(batch: int, size: int, calls: int, repeats: int, warmup: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from common.bridge import torch_as_jax

    torch.manual_seed(0)
    net = classifier().eval().requires_grad_(False)
    x_np = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    xt, xj = torch.from_numpy(x_np), jnp.asarray(x_np)
    f = torch_as_jax(net)

    def torch_fwd():
        with torch.no_grad():
            net(xt)

    def torch_fwd_bwd():
        x = xt.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((net(x) ** 2).sum(), [x])

    loss = lambda x: jnp.sum(f(x) ** 2)
    per_sample = lambda xi: f(xi[None])[0]
    per_sample_loss = lambda xi: jnp.sum(per_sample(xi) ** 2)
    jit_fwd, jit_grad = jax.jit(f), jax.jit(jax.grad(loss))
    vmap_fwd, vmap_grad = jax.jit(jax.vmap(per_sample)), jax.jit(jax.vmap(jax.grad(per_sample_loss)))
    eager_grad = jax.grad(loss)
    cases = {
        "forward": {"torch": torch_fwd,
                    "eager": lambda: f(xj).block_until_ready(),
                    "jit": lambda: jit_fwd(xj).block_until_ready(),
                    "jit_vmap": lambda: vmap_fwd(xj).block_until_ready()},
        "forward_backward": {"torch": torch_fwd_bwd,
                             "eager": lambda: eager_grad(xj).block_until_ready(),
                             "jit": lambda: jit_grad(xj).block_until_ready(),
                             "jit_vmap": lambda: vmap_grad(xj).block_until_ready()},
    }
    # the variants compute the same thing: check before timing
    with torch.no_grad():
        ref = net(xt).numpy()
    for out in (f(xj), jit_fwd(xj), vmap_fwd(xj)):
        np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-5)
    x = xt.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad((net(x) ** 2).sum(), [x])
    for g in (eager_grad(xj), jit_grad(xj), vmap_grad(xj)):
        np.testing.assert_allclose(np.asarray(g), g_ref.numpy(), rtol=1e-3, atol=1e-5)
    return {kind: timeit(fns, calls, repeats, warmup) for kind, fns in cases.items()}


def bench_jax_as_torch(batch: int, width: int, calls: int, repeats: int, warmup: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from common.bridge import jax_as_torch

    def mlp(params, x):
        h = jax.nn.relu(x @ params["w1"] + params["b1"])
        return h @ params["w2"] + params["b2"]

    rng = np.random.default_rng(1)
    p_np = {"w1": rng.standard_normal((width, width)).astype(np.float32) / np.sqrt(width),
            "b1": np.zeros(width, np.float32),
            "w2": rng.standard_normal((width, 10)).astype(np.float32) / np.sqrt(width),
            "b2": np.zeros(10, np.float32)}
    x_np = rng.standard_normal((batch, width)).astype(np.float32)
    pj, xj = {k: jnp.asarray(v) for k, v in p_np.items()}, jnp.asarray(x_np)
    pt = {k: torch.from_numpy(v).requires_grad_(True) for k, v in p_np.items()}
    xt = torch.from_numpy(x_np).requires_grad_(True)
    g = jax_as_torch(mlp)
    jax_fwd = jax.jit(mlp)
    jax_grad = jax.jit(jax.grad(lambda p, x: jnp.sum(mlp(p, x) ** 2), argnums=(0, 1)))

    def bridged_fwd():
        with torch.no_grad():
            g(pt, xt)

    def bridged_fwd_bwd():
        for t in (*pt.values(), xt):
            t.grad = None
        (g(pt, xt) ** 2).sum().backward()

    np.testing.assert_allclose(g(pt, xt).detach().numpy(), np.asarray(jax_fwd(pj, xj)), rtol=1e-5, atol=1e-5)
    bridged_fwd_bwd()
    np.testing.assert_allclose(pt["w1"].grad.numpy(), np.asarray(jax_grad(pj, xj)[0]["w1"]), rtol=1e-4, atol=1e-5)
    cases = {
        "forward": {"jax": lambda: jax_fwd(pj, xj).block_until_ready(), "jax_as_torch": bridged_fwd},
        "forward_backward": {"jax": lambda: jax.block_until_ready(jax_grad(pj, xj)),
                             "jax_as_torch": bridged_fwd_bwd},
    }
    return {kind: timeit(fns, calls, repeats, warmup) for kind, fns in cases.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=32, help="image side for the torch classifier")
    ap.add_argument("--width", type=int, default=256, help="hidden width of the JAX MLP")
    ap.add_argument("--calls", type=int, default=50, help="calls per timed repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of torch and of XLA (0: their defaults)")
    ap.add_argument("--json", default="", help="also write the figures to this file")
    a = ap.parse_args(argv)
    if a.threads:
        # read by XLA when JAX starts its CPU backend: set before the first import of jax
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                   f"intra_op_parallelism_threads={a.threads}").strip()
    import jax
    import torch
    from common.bridge import host_copy_count
    if a.threads:
        torch.set_num_threads(a.threads)
    t2j = bench_torch_as_jax(a.batch, a.size, a.calls, a.repeats, a.warmup)
    j2t = bench_jax_as_torch(a.batch, a.width, a.calls, a.repeats, a.warmup)
    print(f"JAX {jax.__version__} on {jax.default_backend()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); batch {a.batch}; min over {a.repeats} x {a.calls} calls")
    print(f"torch_as_jax, CNN classifier on {a.batch}x3x{a.size}x{a.size}:  us/call (x direct torch)")
    for kind, row in t2j.items():
        base = row["torch"]
        print(f"  {kind:17s} " + "  ".join(f"{k} {v:8.1f} ({v / base:5.2f}x)" for k, v in row.items()))
    print(f"jax_as_torch, MLP {a.width} wide with a dict of parameters:  us/call (x plain JAX)")
    for kind, row in j2t.items():
        base = row["jax"]
        print(f"  {kind:17s} " + "  ".join(f"{k} {v:8.1f} ({v / base:5.2f}x)" for k, v in row.items()))
    print(f"host copies counted by common.bridge: {host_copy_count()}")
    if a.json:
        res = {"args": vars(a), "backend": jax.default_backend(), "torch_threads": torch.get_num_threads(),
               "torch_as_jax_us": t2j, "jax_as_torch_us": j2t,
               "torch_as_jax_ratio": {k: {n: v / row["torch"] for n, v in row.items()} for k, row in t2j.items()},
               "jax_as_torch_ratio": {k: {n: v / row["jax"] for n, v in row.items()} for k, row in j2t.items()},
               "host_copies": host_copy_count()}
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
