"""Semantic morphing (pathmask/morphing.py): samples/s of the batched program (ONE jit(vmap) of the
per-sample while_loop, slots refilled as samples stop) against the same per-sample program called
one sample at a time in a Python loop, in one run, with their ratio.

Same models (the MNIST CNN and VAE of appendix C, random weights: the timing does not depend on
them, and with random weights no sample stops early, so both sides do exactly ``--steps`` steps per
sample), same steps, same stopping rule.

    python bench/pathmask.py                      # CPU: 64 samples batched, 4 sequential, 50 steps
    python bench/pathmask.py --n 1024 --seq 8 --steps 200      # GPU
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="samples for the batched program")
    ap.add_argument("--seq", type=int, default=4, help="samples for the sequential loop")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--segment", type=int, default=25)
    args = ap.parse_args()
    import jax
    import numpy as np
    from pathmask.config import PathMaskConfig
    from pathmask.models import CNN, VAE, init_variables
    from pathmask.morphing import BatchedMorph
    from pathmask.training import Models

    cnn, vae = CNN("mnist"), VAE("mnist", 100)
    models = Models(None, None, None, cnn, init_variables(cnn, jax.random.PRNGKey(0), (28, 28, 1)), vae,
                    init_variables(vae, jax.random.PRNGKey(1), (28, 28, 1), 100), {}, {})
    cfg = dataclasses.replace(PathMaskConfig(), morph_max_steps=args.steps, morph_segment=args.segment,
                              morph_batch=args.n, entropy_threshold=1e-9)    # never stops: equal work both sides
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(args.n, 100)).astype(np.float32)
    s, o = rng.integers(0, 5, args.n), rng.integers(5, 10, args.n)
    t = np.full(args.n, 3.0, np.float32)
    bm = BatchedMorph(models, cfg, record=False)
    bm(codes[:args.n], s, o, t)                               # compile
    bm.sequential(codes[:1], s[:1], o[:1], t[:1])
    t0 = time.perf_counter()
    r = bm(codes, s, o, t)
    batched = args.n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    q = bm.sequential(codes[:args.seq], s[:args.seq], o[:args.seq], t[:args.seq])
    seq = args.seq / (time.perf_counter() - t0)
    assert (r.steps == args.steps).all() and (q.steps == args.steps).all()
    dev = jax.devices()[0]
    print(f"device {dev.platform} ({dev.device_kind}), {args.steps} steps per sample")
    print(f"batched jit(vmap) over {args.n}: {batched:.2f} samples/s ({1000 / batched:.2f} ms/sample)")
    print(f"python loop over {args.seq}:      {seq:.2f} samples/s ({1000 / seq:.2f} ms/sample)")
    print(f"ratio batched / loop: {batched / seq:.1f}x")


if __name__ == "__main__":
    main()
