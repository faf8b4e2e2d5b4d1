"""Claim checks: a thesis' qualitative finding as a small function over an experiment's metrics.

A check returns ``(passed, detail)``; ``detail`` shows the numbers behind the verdict so that
REPORT.md can be read without opening result.json. A claim may be limited to some presets (a
finding that only makes sense at paper scale); elsewhere it is reported as SKIP, never as PASS.

Small effects must be compared with the noise (notes/README.md): pass interval bounds as metrics
(``x_lo``/``x_hi``) and use ``interval_above`` rather than comparing two point estimates.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

import numpy as np

Check = Callable[[Mapping[str, float]], "tuple[bool, str]"]


@dataclasses.dataclass(frozen=True)
class Claim:
    text: str                       # the finding, in the thesis' words where possible
    check: Check
    presets: tuple[str, ...] | None = None   # None: every preset
    source: str = ""                # where the thesis says it (e.g. "000 L942")

    def evaluate(self, metrics: Mapping[str, float], preset: str) -> dict:
        out = {"claim": self.text, "source": self.source}
        if self.presets is not None and preset not in self.presets:
            return dict(out, status="SKIP", detail=f"checked at preset(s) {', '.join(self.presets)} only")
        try:
            ok, detail = self.check(metrics)
        except KeyError as e:
            return dict(out, status="ERROR", detail=f"metric {e} missing from the results")
        return dict(out, status="PASS" if ok else "FAIL", detail=detail)


def _fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def greater(a: str, b: str, margin: float = 0.0) -> Check:
    """metrics[a] > metrics[b] + margin."""
    return lambda m: (m[a] > m[b] + margin, f"{a}={_fmt(m[a])} vs {b}={_fmt(m[b])}"
                      + (f" (+{margin})" if margin else ""))


def at_least(a: str, b: str, tol: float = 0.0) -> Check:
    """metrics[a] >= metrics[b] - tol."""
    return lambda m: (m[a] >= m[b] - tol, f"{a}={_fmt(m[a])} vs {b}={_fmt(m[b])} (tolerance {tol})")


def within(a: str, b: str, tol: float) -> Check:
    """|metrics[a] - metrics[b]| <= tol."""
    return lambda m: (abs(m[a] - m[b]) <= tol, f"|{a}-{b}| = {_fmt(abs(m[a] - m[b]))} (tolerance {tol})")


def descending(keys: Sequence[str]) -> Check:
    """metrics[k0] > metrics[k1] > ... (strictly)."""
    def check(m):
        vals = [m[k] for k in keys]
        return all(x > y for x, y in zip(vals, vals[1:])), " > ".join(f"{k}={_fmt(m[k])}" for k in keys)
    return check


def interval_above(lo_key: str, hi_key: str) -> Check:
    """The lower bound of one interval lies above the upper bound of another."""
    return lambda m: (m[lo_key] > m[hi_key], f"{lo_key}={_fmt(m[lo_key])} > {hi_key}={_fmt(m[hi_key])}")


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                 chunk_bytes: int = 64 << 20) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (nan, nan for an empty set).

    For a paired comparison pass the per-sample differences ``a - b``. Resamples are drawn in row
    chunks of at most ``chunk_bytes`` so that large evaluation sets (VQA 2.0 val) fit in memory; the
    chunking does not change the numbers (one generator stream either way).
    """
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    rows = max(1, chunk_bytes // (8 * len(v)))
    means = np.concatenate([v[rng.integers(0, len(v), size=(min(rows, n_boot - s), len(v)))].mean(axis=1)
                            for s in range(0, n_boot, rows)])
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def binomial_ci(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion (in [0, 1])."""
    if n == 0:
        return 0.0, 1.0
    from statistics import NormalDist
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
