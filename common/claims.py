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

Missing numbers. SKIP means the results hold the keys but the numbers are not there: NaN (an empty
bracket, no matched-L2 overlap), or a part of the experiment not run at this preset, which the check
tests for explicitly (``if key not in m: return None, ...``) and reports as SKIP. Any other key that a
check reads and the results lack is ERROR ("metric 'x' missing from the results"): a renamed or
forgotten metric is a wiring bug, which SKIP would hide. Neither is ever PASS.

Fixtures. Every registered claim declares ``Fixtures`` beside it: hand-made metrics for which it must
say PASS, FAIL and SKIP (``tests/test_claims_harness.py`` walks the registry and checks each with
``fixture_problems``; a claim without them fails there).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

Verdict = "tuple[bool | None, str]"
Check = Callable[[Mapping[str, float], Any], Verdict]


VERDICTS = ("PASS", "FAIL", "SKIP")


class _Absent:
    def __repr__(self):
        return "ABSENT"


ABSENT = _Absent()   # in a fixture's changes: the key is removed (the results lack it)


@dataclasses.dataclass(frozen=True)
class Fixtures:
    """Hand-made metrics for which a claim must say PASS, FAIL and SKIP, judged at ``fixture_preset``.

    ``PASS`` is a whole metrics dict: the keys the check reads, at magnitudes the experiment produces.
    ``FAIL`` and ``SKIP`` are *changes* to ``PASS``, so that the pair reads as the finding: what moves
    from PASS to FAIL is what the claim is about. SKIP changes are NaN (the numbers are not there) or
    ``ABSENT`` (a part of the experiment that was not run, where the check looks for the key)."""
    PASS: Mapping[str, float]
    FAIL: Mapping[str, Any]
    SKIP: Mapping[str, Any]

    def metrics(self, verdict: str) -> dict:
        if verdict == "PASS":
            return dict(self.PASS)
        merged = {**self.PASS, **getattr(self, verdict)}
        return {k: v for k, v in merged.items() if v is not ABSENT}


@dataclasses.dataclass(frozen=True)
class Claim:
    text: str                       # the finding, in the thesis' words where possible
    check: Check                    # (metrics, cfg) -> (True | False | None, detail)
    presets: tuple[str, ...] | None = None   # None: every preset
    source: str = ""                # where the thesis says it (e.g. "000 L942")
    fixtures: Fixtures | None = None   # required of every registered claim (tests/test_claims_harness.py)

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


# --------------------------------------------------------------------------------------------------
# The claim harness: every registered claim against its own fixtures
# --------------------------------------------------------------------------------------------------
def fixture_preset(claim: Claim) -> str:
    """The preset a claim's fixtures are judged at: "default" where the claim applies there, else its
    first preset (a paper-only claim is judged at "paper", never skipped for its preset)."""
    return "default" if claim.presets is None or "default" in claim.presets else claim.presets[0]


def judge_fixture(exp, claim: Claim, verdict: str) -> dict:
    """``claim.evaluate`` on its ``verdict`` fixture, with the experiment's config at ``fixture_preset``.
    Status "NO FIXTURES" when the claim declares none, "CRASH" when the check raises."""
    if claim.fixtures is None:
        return {"claim": claim.text, "source": claim.source, "status": "NO FIXTURES",
                "detail": "declare Claim(..., fixtures=Fixtures(PASS=..., FAIL=..., SKIP=...))"}
    preset = fixture_preset(claim)
    try:
        return claim.evaluate(claim.fixtures.metrics(verdict), preset, exp.resolve_config(preset))
    except Exception as e:   # a check that crashes on its own fixture is reported, not raised
        return {"claim": claim.text, "source": claim.source, "status": "CRASH", "detail": f"{type(e).__name__}: {e}"}


def fixture_problem(exp, claim: Claim, verdict: str) -> str | None:
    """What is wrong with ``claim``'s ``verdict`` fixture (missing, a SKIP fixture that changes numbers
    rather than removing them, or a fixture that does not give its verdict); None when nothing is."""
    name = f"{exp.name}: {claim.text!r}"
    if claim.fixtures is None:
        return f"{name} has no fixtures"
    if verdict == "SKIP":
        numbers = sorted(k for k, v in claim.fixtures.SKIP.items() if v is not ABSENT and not _nan(v))
        if numbers:
            return f"{name}: the SKIP fixture sets {numbers} to numbers (only NaN or ABSENT: numbers not there)"
    got = judge_fixture(exp, claim, verdict)
    if got["status"] != verdict:
        return f"{name}: the {verdict} fixture gives {got['status']} ({got['detail']})"
    return None


def fixture_problems(exp) -> list[str]:
    """Every problem of every claim's fixtures of ``exp`` (``fixture_problem``); [] when there are none."""
    found = (fixture_problem(exp, claim, verdict) for claim in exp.claims for verdict in VERDICTS)
    return list(dict.fromkeys(p for p in found if p))   # a claim without fixtures is one line, not three


def interval_metrics(key: str, value: float, lo: float, hi: float) -> dict[str, float]:
    """``{key: value, key_lo: lo, key_hi: hi}``: the three keys an interval is stored under, for fixtures."""
    return {key: value, f"{key}_lo": lo, f"{key}_hi": hi}
