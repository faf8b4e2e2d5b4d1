"""The claim harness: every registered claim is fed the hand-made metrics declared beside it
(``Claim(..., fixtures=Fixtures(PASS=..., FAIL=..., SKIP=...))`` in experiments/<chapter>.py) and must
say PASS, FAIL and SKIP for them. A claim that cannot fail, that passes on missing numbers or that
declares no fixtures fails here, named by its test id. No training: claims only."""
from __future__ import annotations

import dataclasses
import math
import re

import pytest

from common import registry
from common.claims import (VERDICTS, Claim, Fixtures, fixture_preset, fixture_problem, fixture_problems, greater,
                           judge_fixture)


def _registered() -> dict[str, registry.Experiment]:
    """The experiments of the experiments package, variants included (not the toys other tests register)."""
    return {n: e for n, e in registry.discover().items() if e.registered_in.startswith("experiments.")}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower())[:40].strip("-")


CLAIMS = [(name, i) for name, exp in _registered().items() for i in range(len(exp.claims))]
CASES = [(name, i, verdict) for name, i in CLAIMS for verdict in VERDICTS]


def _claim_id(name: str, i: int) -> str:
    return f"{name}[{i}]:{_slug(_registered()[name].claims[i].text)}"


def test_the_walk_reaches_every_chapter():
    chapters = {name.split(".")[0] for name, _ in CLAIMS}
    assert {"demo", "vqa", "capacity", "adversarial", "auxiliary", "pathmask", "attribution"} <= chapters
    assert len(CLAIMS) >= 49


@pytest.mark.parametrize("name, index, verdict", CASES, ids=[f"{_claim_id(n, i)}:{v}" for n, i, v in CASES])
def test_claim_gives_its_verdict_on_its_fixture(name, index, verdict):
    exp = _registered()[name]
    assert fixture_problem(exp, exp.claims[index], verdict) is None


@pytest.mark.parametrize("name, index", CLAIMS, ids=[_claim_id(n, i) for n, i in CLAIMS])
def test_a_missing_number_never_fails_a_passing_claim(name, index):
    """NaN in any one key of the PASS fixture: PASS (a key only the detail reads) or SKIP, never FAIL,
    ERROR or a crash. A NaN is a number that is not there; it cannot refute a finding."""
    exp = _registered()[name]
    claim = exp.claims[index]
    assert claim.fixtures is not None, f"{name}: {claim.text!r} has no fixtures"
    preset = fixture_preset(claim)
    cfg = exp.resolve_config(preset)
    wrong = {}
    for key in claim.fixtures.PASS:
        m = dict(claim.fixtures.PASS, **{key: math.nan})
        try:
            status = claim.evaluate(m, preset, cfg)["status"]
        except Exception as e:
            status = f"crash ({type(e).__name__}: {e})"
        if status not in ("PASS", "SKIP"):
            wrong[key] = status
    assert not wrong, f"{name}: {claim.text!r}: a NaN in these keys gives {wrong}"


# ------------------------------------------------------------------------------------------------
# The harness itself: it reports what it must
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _ToyConfig:
    width: int = 4


def _throwaway(monkeypatch, *claims):
    """Register an experiment as if experiments/ had (so that the walk reaches it), in a copy of the
    registry that the test throws away."""
    monkeypatch.setattr(registry, "_EXPERIMENTS", dict(registry._EXPERIMENTS))
    monkeypatch.setattr(registry, "discover", lambda: dict(sorted(registry._EXPERIMENTS.items())))
    return registry.register(registry.Experiment(
        name="throwaway.exp", target="none:none", config=_ToyConfig, presets={"smoke": {}, "paper": {}},
        registered_in="experiments.throwaway", claims=claims))


def test_the_harness_reports_a_claim_without_fixtures(monkeypatch):
    _throwaway(monkeypatch, Claim("acc above chance", greater("acc", "chance", margin=50.0)))
    exp = _registered()["throwaway.exp"]
    assert fixture_problems(exp) == ["throwaway.exp: 'acc above chance' has no fixtures"]
    for verdict in VERDICTS:
        assert judge_fixture(exp, exp.claims[0], verdict)["status"] == "NO FIXTURES"


def test_the_harness_reports_fixtures_that_do_not_give_their_verdict(monkeypatch):
    paper_only = Claim("paper-only finding", greater("acc", "chance", margin=50.0), presets=("paper",),
                       fixtures=Fixtures(PASS={"acc": 97.0, "chance": 10.0}, FAIL={"acc": 95.0},   # still passes
                                         SKIP={"acc": math.nan}))
    skip_by_a_number = Claim("skips on a number", greater("acc", "chance", margin=50.0),
                             fixtures=Fixtures(PASS={"acc": 97.0, "chance": 10.0}, FAIL={"acc": 40.0},
                                               SKIP={"acc": 0.0}))
    crashing = Claim("crashes", lambda m, cfg: (int(m["epochs"]) > 0, ""),
                     fixtures=Fixtures(PASS={"epochs": 5}, FAIL={"epochs": 0}, SKIP={"epochs": math.nan}))
    exp = _throwaway(monkeypatch, paper_only, skip_by_a_number, crashing)
    problems = fixture_problems(exp)
    assert fixture_preset(paper_only) == "paper"   # judged where it applies: the PASS fixture passes
    assert problems[0].startswith("throwaway.exp: 'paper-only finding': the FAIL fixture gives PASS")
    assert "'skips on a number': the SKIP fixture sets ['acc'] to numbers" in problems[1]
    assert problems[2].startswith("throwaway.exp: 'crashes': the SKIP fixture gives CRASH (ValueError")
    assert len(problems) == 3
