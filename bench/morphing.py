"""Semantic morphing (pathmask/morphing.py): seconds per sample of the batched JAX program (ONE
jit(vmap) of the per-sample while_loop, slots refilled as samples stop) against the per-sample
PyTorch-style eager loop the thesis' method implies (torch, one sample at a time, a Python loop over
Adam steps with the stopping check at every step), in one run, with their ratio.

Same models (the MNIST CNN and VAE decoder of appendix C, random weights, the torch side a
weight-for-weight copy: pathmask/torch_models.py, tested to give the same logits), same steps
(Adam, lr, alpha_lk, the running-mean loss normalisation), same stopping rule (base-2 two-class
entropy < threshold and p_other > 0.5, checked before each step). With random weights the rule
would fire at random times, so the threshold is set unreachably low (1e-9): both sides do exactly
``--steps`` steps per sample and the work is equal.

Three lines: the batched JAX program, the same jitted JAX program one sample at a time (a Python
loop over samples), and eager torch one sample at a time. eager / JAX per-sample is the framework
gain (compilation, same batch of one), JAX per-sample / batched the batching gain. ``--threads N``
pins the whole process to N cores before JAX and torch load, so XLA's pool and torch's intra-op
threads get the same cores (torch alone at 1 thread while XLA used every core was not like for like).

    python bench/morphing.py --threads 1            # CPU: 256 samples batched, 4 one at a time, 100 steps
    python bench/morphing.py --n 4096 --seq 8 --steps 200 --slots 1024    # GPU
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def torch_eager_morph(cnn, decoder, code, s: int, o: int, target: float, *, lr: float, alpha_lk: float,
                      threshold: float, max_steps: int) -> tuple[int, bool]:
    """One sample, eager torch: the reference loop (returns steps taken, stopped)."""
    import torch
    c = torch.tensor(code, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([c], lr=lr)
    sum_obj = sum_reg = 0.0
    for step in range(max_steps):
        logits = cnn(decoder(c[None]))[0]
        two = torch.softmax(torch.stack([logits[s], logits[o]]), 0)
        h = -(two * torch.log2(two.clamp_min(1e-30))).sum()
        if float(h) < threshold and float(two[1]) > 0.5:              # the stopping check, every step
            return step, True
        obj = -logits[o]
        reg = (c.norm() - target) ** 2
        sum_obj += abs(float(obj))
        sum_reg += abs(float(reg))
        loss = obj + alpha_lk * (sum_obj / (sum_reg + 1e-12)) * reg
        opt.zero_grad()
        loss.backward()
        opt.step()
    return max_steps, False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="samples for the batched program")
    ap.add_argument("--slots", type=int, default=256, help="slots of the jit(vmap) program")
    ap.add_argument("--seq", type=int, default=4, help="samples for the eager torch loop")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--segment", type=int, default=10, help="steps per call of the batched program")
    ap.add_argument("--loop", default="auto", choices=("auto", "while", "unrolled"))
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU cores for BOTH sides: the process is pinned to this many cores before JAX and torch "
                         "load (XLA sizes its pool from the affinity mask) and torch uses as many intra-op "
                         "threads (0: every core this process may use)")
    args = ap.parse_args()
    import os
    cores = sorted(os.sched_getaffinity(0))
    if args.threads:
        cores = cores[:args.threads]
        os.sched_setaffinity(0, cores)
    import jax
    import numpy as np
    import torch
    from pathmask.config import PathMaskConfig
    from pathmask.models import CNN, VAE, init_variables
    from pathmask.morphing import BatchedMorph
    from pathmask.torch_models import TorchCNN, TorchDecoder
    from pathmask.training import Models

    torch.set_num_threads(len(cores))
    cnn, vae = CNN("mnist"), VAE("mnist", 100)
    models = Models(None, None, None, cnn, init_variables(cnn, jax.random.PRNGKey(0), (28, 28, 1)), vae,
                    init_variables(vae, jax.random.PRNGKey(1), (28, 28, 1), 100), {}, {})
    cfg = dataclasses.replace(PathMaskConfig(), morph_max_steps=args.steps, morph_segment=args.segment, morph_loop=args.loop,
                              morph_batch=args.slots, entropy_threshold=1e-9)    # never stops: equal work
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(args.n, 100)).astype(np.float32)
    s, o = rng.integers(0, 5, args.n), rng.integers(5, 10, args.n)
    t = np.full(args.n, 3.0, np.float32)
    bm = BatchedMorph(models, cfg, record=False)
    bm(codes[:args.slots], s, o, t)                               # compile
    t0 = time.perf_counter()
    r = bm(codes, s, o, t)
    batched = (time.perf_counter() - t0) / args.n
    assert (r.steps == args.steps).all()
    tcnn, tdec = TorchCNN("mnist", models.cnn_vars), TorchDecoder("mnist", models.vae_vars)
    for p in [*tcnn.parameters(), *tdec.parameters()]:
        p.requires_grad_(False)
    kw = dict(lr=cfg.morph_lr, alpha_lk=cfg.resolved_alpha_lk(), threshold=cfg.entropy_threshold,
              max_steps=args.steps)
    torch_eager_morph(tcnn, tdec, codes[0], int(s[0]), int(o[0]), 3.0, **dict(kw, max_steps=3))   # warm up
    t0 = time.perf_counter()
    for i in range(args.seq):
        steps, _ = torch_eager_morph(tcnn, tdec, codes[i], int(s[i]), int(o[i]), float(t[i]), **kw)
        assert steps == args.steps
    eager = (time.perf_counter() - t0) / args.seq
    # JAX one sample at a time: the same jitted per-sample program without vmap, in a Python loop
    # over samples. eager / this = the framework gain (compiled JAX vs eager torch, same batch of 1);
    # this / batched = the batching gain
    bm.sequential(codes[:1], s[:1], o[:1], t[:1])                 # compile
    t0 = time.perf_counter()
    rs = bm.sequential(codes[:args.seq], s[:args.seq], o[:args.seq], t[:args.seq])
    per_sample = (time.perf_counter() - t0) / args.seq
    assert (rs.steps == args.steps).all()
    dev = jax.devices()[0]
    print(f"device {dev.platform} ({dev.device_kind}), {len(cores)} CPU core(s) for both sides "
          f"(torch {torch.get_num_threads()} thread(s)), {args.steps} Adam steps per sample, stop check every step")
    print(f"JAX jit(vmap) ({bm.loop} steps, {args.segment} per call), {args.n} samples in {args.slots} slots: "
          f"{batched * 1e3:.3f} ms/sample")
    print(f"JAX jit, one sample at a time ({args.seq} samples): {per_sample * 1e3:.2f} ms/sample")
    print(f"torch eager, one sample at a time ({args.seq} samples): {eager * 1e3:.1f} ms/sample")
    print(f"framework gain (torch eager / JAX per-sample): {eager / per_sample:.1f}x")
    print(f"batching gain (JAX per-sample / JAX batched): {per_sample / batched:.1f}x")
    print(f"ratio eager / batched: {eager / batched:.1f}x")


if __name__ == "__main__":
    main()
