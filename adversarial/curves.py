"""Accuracy-vs-budget curves (Fig 6.3-6.5) and their comparison at matched normalised L2.

One attack run keeps, per attack and budget, each image's correctness under every evaluated model
and its ratio ||x - x_adv|| / ||x|| (Eq 6.1's terms). A curve is (Lbar_2, accuracy) per budget plus
the clean point (0, clean accuracy); Lbar_2 averages the ratio over the evaluated model's clean
true positives (misclassified clean images count as adversarial with delta = 0, L1406), accuracy is
top-1 over every image.

Two curves are compared at matched Lbar_2 (the note: "matched budget" is the x-axis, not eps): both
are interpolated linearly on a grid over [0, the smaller of their largest Lbar_2] and the mean
vertical gap over that grid (accuracy points; an area between the curves divided by its width) is
the statistic; its 95 % interval is a paired bootstrap over images (both curves recomputed on each
resample). No overlap -> nan (claims SKIP).
"""
from __future__ import annotations

import numpy as np


def curve(correct: np.ndarray, ratio: np.ndarray, clean: np.ndarray, idx=None):
    """correct (k, n) bool, ratio (k, n), clean (n,) bool -> (lbar2 (k+1,), acc % (k+1,)), sorted by lbar2."""
    if idx is not None:
        correct, ratio, clean = correct[:, idx], ratio[:, idx], clean[idx]
    tp = clean.astype(bool)
    l2 = np.array([0.0] + [float(r[tp].mean()) if tp.any() else np.nan for r in ratio])
    acc = 100.0 * np.array([clean.mean()] + [c.mean() for c in correct])
    order = np.argsort(l2, kind="stable")
    return l2[order], acc[order]


def _gap(a, b, n_grid):
    (la, aa), (lb, ab) = a, b
    top = min(np.nanmax(la), np.nanmax(lb))
    if not np.isfinite(top) or top <= 0:
        return np.nan
    grid = np.linspace(0.0, top, n_grid)
    return float(np.mean(np.interp(grid, la, aa) - np.interp(grid, lb, ab)))


def matched_gap(run_a: dict, run_b: dict, n_grid: int = 25, n_boot: int = 500, seed: int = 0):
    """Mean accuracy gap a - b at matched Lbar_2, with its paired bootstrap 95 % interval.

    ``run_*``: {"correct": (k, n), "ratio": (k, n), "clean": (n,)} over the same n images."""
    n = len(run_a["clean"])
    point = _gap(curve(**run_a), curve(**run_b), n_grid)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        boots.append(_gap(curve(**run_a, idx=idx), curve(**run_b, idx=idx), n_grid))
    boots = np.asarray(boots)
    if np.isnan(point) or np.isnan(boots).all():
        return np.nan, np.nan, np.nan
    return point, float(np.nanquantile(boots, 0.025)), float(np.nanquantile(boots, 0.975))


def max_rise(run: dict, n_boot: int = 500, seed: int = 0):
    """Largest increase of accuracy from one budget to the next (points), and the largest upper bound
    of its paired bootstrap interval over consecutive budgets (clean -> first budget included)."""
    acc_rows = np.vstack([run["clean"][None].astype(float), run["correct"].astype(float)])
    diffs = acc_rows[1:] - acc_rows[:-1]                   # (k, n) per-image change
    rng = np.random.default_rng(seed)
    n = diffs.shape[1]
    boot = np.stack([diffs[:, rng.integers(0, n, n)].mean(1) for _ in range(n_boot)])   # (B, k)
    hi = np.quantile(boot, 0.975, axis=0)
    return 100.0 * float(diffs.mean(1).max()), 100.0 * float(hi.max())


def paired_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0):
    """Mean of a - b (bools -> points) with a paired bootstrap interval."""
    from common.claims import bootstrap_ci
    d = 100.0 * (a.astype(float) - b.astype(float))
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    return float(d.mean()), lo, hi


def _gaps_at(a, b):
    """a's accuracy minus b's, at each of a's budgets, b interpolated at a's Lbar_2 there (nan where
    a's Lbar_2 lies beyond b's largest). a, b: (lbar2, acc) of ``curve`` (clean point first)."""
    (la, aa), (lb, ab) = a, b
    la, aa = la[1:], aa[1:]                       # the budgets, not the clean point
    top = np.nanmax(lb) if np.isfinite(lb).any() else np.nan
    out = aa - np.interp(la, lb, ab)
    out[~(la <= top)] = np.nan
    return out


def gaps_at_budgets(run_a: dict, run_b: dict, n_boot: int = 500, seed: int = 0):
    """Per budget of ``run_a``: its accuracy minus ``run_b``'s at the same Lbar_2 (points), with a
    paired bootstrap 95 % interval over images. Returns (gap, lo, hi), each (k,); nan where ``run_b``
    does not reach that Lbar_2. The k values come in increasing-Lbar_2 order (``curve`` sorts), which
    is the budgets' order wherever a larger budget gives a larger perturbation."""
    n = len(run_a["clean"])
    point = _gaps_at(curve(**run_a), curve(**run_b))
    rng = np.random.default_rng(seed)
    boots = np.stack([_gaps_at(curve(**run_a, idx=idx), curve(**run_b, idx=idx))
                      for idx in (rng.integers(0, n, n) for _ in range(n_boot))])
    import warnings
    with warnings.catch_warnings():            # a budget no resample reaches: all-nan column, nan bounds
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(boots, 0.025, axis=0), np.nanquantile(boots, 0.975, axis=0)
    lo[np.isnan(point)], hi[np.isnan(point)] = np.nan, np.nan
    return point, lo, hi


def matched_gap_difference(pair_1: tuple, pair_2: tuple, n_grid: int = 25, n_boot: int = 500, seed: int = 0):
    """(gap of pair_1) - (gap of pair_2), each a mean matched-Lbar_2 gap a - b (``matched_gap``), with
    a paired bootstrap interval: all four runs over the same images, resampled together."""
    (a1, b1), (a2, b2) = pair_1, pair_2
    n = len(a1["clean"])

    def stat(idx=None):
        return (_gap(curve(**a1, idx=idx), curve(**b1, idx=idx), n_grid)
                - _gap(curve(**a2, idx=idx), curve(**b2, idx=idx), n_grid))
    point = stat()
    rng = np.random.default_rng(seed)
    boots = np.asarray([stat(rng.integers(0, n, n)) for _ in range(n_boot)])
    if np.isnan(point) or np.isnan(boots).all():
        return np.nan, np.nan, np.nan
    return float(point), float(np.nanquantile(boots, 0.025)), float(np.nanquantile(boots, 0.975))
