"""Claim checks: a thesis' qualitative finding as a small function over an experiment's results.

A check is called as ``check(metrics, cfg)`` (the metrics of one run and the run's config) and
returns ``(verdict, detail)``: ``True`` (PASS), ``False`` (FAIL) or ``None`` (SKIP: the numbers
needed do not exist, e.g. an empty bracket gave a NaN interval), and a detail string with the
numbers behind the verdict so that REPORT.md can be read without opening result.json. A claim may be
limited to some presets (a finding that only makes sense at paper scale); elsewhere it is SKIP,
never PASS.

Small effects are compared with the noise (notes/README.md), never as two point estimates:
- within one run, checks compare *interval bounds* (bootstrap over evaluation items, passed as
  metrics ``x_lo``/``x_hi``) with the helpers below (``interval_above``, ``interval_below``,
  ``interval_within``, ``intervals_descending``);
- over training seeds, ``evaluate_over_seeds`` passes a claim only when it passes on every seed
  (each seed's own bootstrap interval included), and says on how many seeds it held.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

Verdict = "tuple[bool | None, str]"
Check = Callable[[Mapping[str, float], Any], Verdict]


@dataclasses.dataclass(frozen=True)
class Claim:
    text: str                       # the finding, in the thesis' words where possible
    check: Check                    # (metrics, cfg) -> (True | False | None, detail)
    presets: tuple[str, ...] | None = None   # None: every preset
    source: str = ""                # where the thesis says it (e.g. "000 L942")

    def evaluate(self, metrics: Mapping[str, float], preset: str, cfg: Any = None) -> dict:
        out = {"claim": self.text, "source": self.source}
        if self.presets is not None and preset not in self.presets:
            return dict(out, status="SKIP", detail=f"checked at preset(s) {', '.join(self.presets)} only")
        try:
            ok, detail = self.check(metrics, cfg)
        except KeyError as e:
            return dict(out, status="ERROR", detail=f"metric {e} missing from the results")
        status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        return dict(out, status=status, detail=detail)


def evaluate_over_seeds(claim: Claim, metrics_by_seed: Mapping[int, Mapping[str, float]], preset: str,
                        cfg: Any = None) -> dict:
    """One verdict from several training seeds: PASS only if every seed passes (each with its own
    bootstrap interval), SKIP if every seed skips, ERROR if any errs, else FAIL ("k/n seeds").
    The detail lists each seed's numbers."""
    per = {s: claim.evaluate(m, preset, cfg) for s, m in metrics_by_seed.items()}
    statuses = [r["status"] for r in per.values()]
    n = len(per)
    first = next(iter(per.values()))
    if n == 1:
        return first
    if "ERROR" in statuses:
        status = "ERROR"
    elif all(s == "SKIP" for s in statuses):
        return dict(first, seeds={s: r["status"] for s, r in per.items()})
    elif all(s == "PASS" for s in statuses):
        status = "PASS"
    else:
        status = "FAIL"
    n_pass = statuses.count("PASS")
    detail = f"passes on {n_pass}/{n} training seeds. " + "; ".join(
        f"seed {s}: [{r['status']}] {r['detail']}" for s, r in per.items())
    return {"claim": claim.text, "source": claim.source, "status": status, "detail": detail,
            "seeds": {s: r["status"] for s, r in per.items()}}


def _fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _nan(*vals) -> bool:
    return any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals)


# --------------------------------------------------------------------------------------------------
# Interval comparisons (values). Each returns (verdict, detail); a NaN bound gives SKIP.
# --------------------------------------------------------------------------------------------------
def interval_above(lo: float, threshold: float, what: str = "interval", of: str = "threshold") -> Verdict:
    """PASS when the whole interval lies above ``threshold`` (its lower bound is > it)."""
    if _nan(lo, threshold):
        return None, f"{what}: no interval (empty set)"
    return lo > threshold, f"{what} lower bound {_fmt(lo)} > {(of + ' ') if of else ''}{_fmt(threshold)}"


def interval_below(hi: float, threshold: float, what: str = "interval", of: str = "threshold") -> Verdict:
    """PASS when the whole interval lies below ``threshold`` (its upper bound is < it)."""
    if _nan(hi, threshold):
        return None, f"{what}: no interval (empty set)"
    return hi < threshold, f"{what} upper bound {_fmt(hi)} < {(of + ' ') if of else ''}{_fmt(threshold)}"


def interval_within(lo: float, hi: float, tol: float, what: str = "difference") -> Verdict:
    """Equivalence: PASS when the whole interval of a difference lies strictly inside (-tol, +tol).
    A wide interval that merely contains 0 does not pass (absence of evidence is not evidence), and
    a bound exactly at the tolerance is not inside it."""
    if _nan(lo, hi):
        return None, f"{what}: no interval (empty set)"
    return (-tol < lo and hi < tol), f"{what} interval [{_fmt(lo)}, {_fmt(hi)}] strictly inside ±{_fmt(tol)}"


def intervals_descending(named: Sequence[tuple[str, float, float]]) -> Verdict:
    """``[(name, lo, hi), ...]``: PASS when each interval lies wholly above the next one."""
    if any(_nan(lo, hi) for _, lo, hi in named):
        empty = [n for n, lo, hi in named if _nan(lo, hi)]
        return None, f"no interval for {', '.join(empty)} (empty set)"
    ok = all(a[1] > b[2] for a, b in zip(named, named[1:]))
    return ok, " > ".join(f"{n} [{_fmt(lo)}, {_fmt(hi)}]" for n, lo, hi in named) + " (intervals must not overlap)"


# --------------------------------------------------------------------------------------------------
# Key-based factories for registrations
# --------------------------------------------------------------------------------------------------
def greater(a: str, b: str, margin: float = 0.0) -> Check:
    """metrics[a] > metrics[b] + margin, for effects far beyond any noise (a trained model vs chance
    by 50 points); anything smaller compares intervals."""
    def check(m, cfg=None):
        if _nan(m[a], m[b]):
            return None, f"{a} or {b} is nan"
        return m[a] > m[b] + margin, f"{a}={_fmt(m[a])} vs {b}={_fmt(m[b])}" + (f" (+{margin})" if margin else "")
    return check


def lower_bound_above(lo_key: str, threshold_key: str) -> Check:
    """The lower bound ``metrics[lo_key]`` lies above ``metrics[threshold_key]`` (a number or the
    upper bound of another interval)."""
    return lambda m, cfg=None: interval_above(m[lo_key], m[threshold_key], lo_key, threshold_key)

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
