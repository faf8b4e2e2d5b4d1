"""Why extremal perturbations' pointing map does (not) beat the centre baseline on the digit canvas:
the same images and trained CNN as ``attribution.benchmark`` (default preset, one seed), extremal's
pointing hits under variants of its options against the centre's, with the per-image pairs.

    python -m attribution.extremal_variants --out results --seed 0 --images 24

Prints one line per variant: hits, images only extremal hits, images only the centre hits, CPU-s. The
CNN is the benchmark's stage (trained under ``--out`` if absent)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

VARIANTS = {"jitter": {"jitter": True},                       # TorchRay's flip on even iterations
            "no-jitter": {"jitter": False},                   # the digit chapters' default
            "no-jitter-no-smoothing": {"jitter": False, "smooth": 0.0},
            "no-jitter-400-iterations": {"jitter": False, "max_iter": 400}}


def main(argv=None) -> None:
    import numpy as np
    import torch
    from common.context import RunContext
    from common.registry import get
    from common.saliency import method_options, score_methods
    from attribution.tables import evaluation_data
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    a = p.parse_args(argv)
    names = a.variants.split(",")
    if unknown := [n for n in names if n not in VARIANTS]:       # refused before the CNN is trained
        p.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    cfg = get("attribution.benchmark").resolve_config("default")
    ctx = RunContext(experiment="attribution.extremal_variants", preset="default", seed=a.seed, device="cpu",
                     data_root=None, out_root=Path(a.out), out_dir=Path(a.out) / "_work" / "extremal_variants",
                     reported={})
    model, x, y, regions, _, _, _, info = evaluation_data(cfg, ctx)
    ctx.close()
    x, y, regions = x[:a.images], y[:a.images], regions[:a.images]
    base = method_options(cfg.saliency, tuple(x.shape[2:]))
    kw = dict(batch_size=16, regions=regions, num_classes=10, tolerance=cfg.pointing_tolerance,
              n_steps=cfg.saliency.insertion_steps)
    c = score_methods(model, x, y, ["center"], base, **kw)["center"]["pointing_each"]
    print(f"canvas CNN test accuracy {info.get('test_accuracy', float('nan')):.1f} %, seed {a.seed}, "
          f"{len(x)} images; centre: {np.nansum(c) / 100:.0f} hits", flush=True)
    for name in names:
        t = time.process_time()
        opts = {"extremal": dict(base["extremal"], **VARIANTS[name])}
        e = score_methods(model, x, y, ["extremal"], opts, **kw)["extremal"]["pointing_each"]
        both = ~np.isnan(e) & ~np.isnan(c)
        print(f"{name:28s} {np.nansum(e) / 100:3.0f} / {both.sum()} hits; only extremal {int(((e > 0) & (c == 0))[both].sum())}, "
              f"only centre {int(((e == 0) & (c > 0))[both].sum())}; {time.process_time() - t:.0f} CPU-s", flush=True)


if __name__ == "__main__":
    main()
