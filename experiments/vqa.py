"""Thesis 000, chapter 4 (P ≈ NP in VQA) and appendix A.1: registrations only (nothing heavy here).

All four experiments share one config (vqa.pipeline.VQAConfig) and the same presets, so the models
trained for Tab 4.1 are loaded, not retrained, by Tab 4.2 (same work-dir stage names and keys).
"""
from __future__ import annotations

import math

from common.claims import (Claim, Fixtures, interval_above, interval_below, interval_metrics as iv, interval_within,
                           intervals_descending)
from common.registry import Experiment, register
from vqa.config import PRESETS   # dataclasses and dicts only


def _config():
    from vqa.config import VQAConfig   # dataclasses only
    return VQAConfig


def _f(m, k):
    v = m[k]
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _gap(m, key):
    return (f"{_f(m, f'gap_{key}')} p.p., 95 % paired bootstrap [{_f(m, f'gap_{key}_lo')}, "
            f"{_f(m, f'gap_{key}_hi')}]")


# ------------------------------------------------------------------------------------------------
# Claim checks: check(metrics, cfg) -> (True | False | None, detail); tolerances come from cfg
# ------------------------------------------------------------------------------------------------
def _polar_overrepresented(m, cfg=None):
    ratio = m["polar_to_np_per_class_ratio"]
    if math.isnan(ratio):
        return None, "no non-polar class in the training set"
    return (ratio > 10,
            f"per class: polar {_f(m, 'polar_share_per_class')} % vs NP mean {_f(m, 'np_share_per_class_mean')} % "
            f"(ratio {_f(m, 'polar_to_np_per_class_ratio')}; needs > 10)")


def _hybrid_above_chance(m, cfg=None):
    ok, detail = interval_above(m["acc_hybrid_NP_lo"], m["chance_np_majority"], "hybrid on NP (95 % bootstrap)",
                                "chance (majority NP answer)")
    return ok, f"hybrid on NP {_f(m, 'acc_hybrid_NP')} %: {detail}; uniform chance {_f(m, 'chance_np_uniform')} %"


def _baseline_not_below_ensemble(m, cfg):
    """L933: the ensemble lies 0.2 p.p. below the baseline, 'the baseline would be a better option'.
    Demonstrated as non-inferiority: the whole interval of baseline - ensemble lies above
    -not_worse_tol (a wide interval around 0 is no evidence and fails)."""
    ok, detail = interval_above(m["gap_omega_minus_ensemble_lo"], -cfg.not_worse_tol,
                                "baseline − ensemble", "the non-inferiority bound")
    return ok, (f"baseline {_f(m, 'acc_omega_all')} − ensemble {_f(m, 'ensemble_estimate')} = "
                f"{_gap(m, 'omega_minus_ensemble')}: {detail}")


GAP_NAMES = {"P_minus_omega_on_P": "P-only − baseline on P", "NP_minus_omega_on_NP": "NP-only − baseline on NP"}


def _close(key):
    def check(m, cfg):
        ok, detail = interval_within(m[f"gap_{key}_lo"], m[f"gap_{key}_hi"], cfg.close_tol,
                                     "95 % paired bootstrap")
        return ok, f"{GAP_NAMES[key]} = {_f(m, f'gap_{key}')} p.p.; {detail} p.p."
    return check


def _p_close_and_baseline_not_worse(m, cfg):
    """L925, L931: P-only close to the baseline on P, and the baseline not worse there (the thesis'
    baseline is 0.8 p.p. better). Not worse = non-inferiority: the interval of P-only − baseline lies
    below +not_worse_tol, so a P-only model clearly better than the baseline fails this half."""
    ok_close, d_close = _close("P_minus_omega_on_P")(m, cfg)
    ok_nw, d_nw = interval_below(m["gap_P_minus_omega_on_P_hi"], cfg.not_worse_tol, "P-only − baseline on P",
                                 "the non-inferiority bound")
    ok = None if ok_close is None or ok_nw is None else (ok_close and ok_nw)
    return ok, f"{d_close}; baseline not worse on P: {d_nw}"


def _hybrid_well_below_np(m, cfg):
    ok, detail = interval_below(m["gap_hybrid_minus_NP_on_NP_hi"], -cfg.well_below, "hybrid − NP-only on NP",
                                "the 'well below' bound")
    return ok, f"hybrid − NP-only on NP = {_gap(m, 'hybrid_minus_NP_on_NP')}; {detail} p.p."


def _brackets_ordered(m, cfg=None):
    """Each bracket's 95 % bootstrap interval wholly above the next one's (40.01 > 40.00 as point
    estimates is no evidence); an empty bracket (no interval) is SKIP."""
    return intervals_descending([(f"b{b}", m[f"acc_b{b}_lo"], m[f"acc_b{b}_hi"]) for b in (1, 2, 3)])


def _b1_above_b3(m, cfg=None):
    return interval_above(m["acc_b1_lo"], m["acc_b3_hi"], "b1 (95 % bootstrap)", "b3's upper bound")


def _b1_beats_all_np(m, cfg=None):
    """L959: the best-covered classes are answered better than the hybrid's NP samples overall
    (40.4 % vs 28.7 %): the paired interval of bracket 1 minus all NP lies above 0."""
    ok, detail = interval_above(m["gap_b1_minus_hybrid_NP_lo"], 0.0, "b1 − all NP (95 % paired bootstrap)", "")
    return ok, (f"b1 {_f(m, 'acc_b1')} % vs all NP {_f(m, 'acc_hybrid_NP')} %: "
                f"{_gap(m, 'b1_minus_hybrid_NP')}; {detail}")


def _a1_variants(m):
    """The count ratio under each of the four (questions x case folding) choices, for the detail."""
    return "; ".join(f"{w}/{f} {_f(m, k)}" for w in ("train", "all") for f in ("fold", "nofold")
                     if (k := f"a1_count_ratio_median_{w}_{f}") in m)


def _a1_ranking(m, cfg):
    """Tab A.1: the classes most matched in polar questions are the thesis' (overlap of the top 100)
    and in its order (Spearman rho of the counts over its 100 classes). Matching is deterministic
    given the data set: no seed or resampling noise, the thresholds are the tolerance."""
    if math.isnan(m["a1_overlap"]) or math.isnan(m["a1_rank_corr"]):
        return None, "no Tab A.1 comparison (VQA 2.0 only)"
    ok = m["a1_overlap"] >= cfg.a1_min_overlap and m["a1_rank_corr"] >= cfg.a1_min_rank_corr
    return ok, (f"{m['a1_overlap']:.0f} of the printed 100 classes in our top 100 (needs >= {cfg.a1_min_overlap}); "
                f"Spearman rho of the counts {m['a1_rank_corr']:.3f} (needs >= {cfg.a1_min_rank_corr})")


def _a1_counts(m, cfg):
    """Tab A.1's counts themselves: the median of ours / printed within 1 ± a1_count_tol (fails when
    the questions matched or the case folding differ from the thesis')."""
    r = m["a1_count_ratio_median"]
    if math.isnan(r):
        return None, "no Tab A.1 comparison (VQA 2.0 only)"
    return abs(r - 1.0) < cfg.a1_count_tol, (f"median ours / printed {r:.3f} (needs within 1 ± {cfg.a1_count_tol}); "
                                             f"per choice of questions / case folding: {_a1_variants(m)}")


def _matched_70(m, cfg=None):
    if math.isnan(m["frac_np_matched"]):
        return None, "no non-polar class to match"
    return m["frac_np_matched"] > 70.0, f"{_f(m, 'frac_np_matched')} % of NP classes matched at least once"


# ------------------------------------------------------------------------------------------------
# Fixtures: hand-made metrics for PASS / FAIL / SKIP (magnitudes of the default run on easy-VQA)
# ------------------------------------------------------------------------------------------------
NAN = float("nan")
_NAN3 = (NAN, NAN, NAN)


def _gap_fixture(key, passing, failing):
    """PASS / FAIL / SKIP metrics of one gap claim: ``gap_<key>`` (mean, lo, hi) in each case."""
    return Fixtures(PASS=iv(f"gap_{key}", *passing), FAIL=iv(f"gap_{key}", *failing), SKIP=iv(f"gap_{key}", *_NAN3))


_A1_VARIANTS = {"a1_count_ratio_median_train_fold": 1.01, "a1_count_ratio_median_train_nofold": 0.93,
                "a1_count_ratio_median_all_fold": 1.49, "a1_count_ratio_median_all_nofold": 1.38}
_BRACKETS = {**iv("acc_b1", 77.8, 75.9, 79.7), **iv("acc_b2", 61.9, 59.0, 64.8), **iv("acc_b3", 45.1, 42.5, 47.7)}


# ------------------------------------------------------------------------------------------------
# Registrations
# ------------------------------------------------------------------------------------------------
register(Experiment(
    name="vqa.fig4_1", target="vqa.tables:fig_4_1", config=_config(), presets=PRESETS,
    title="Fig 4.1: class distribution, polar vs non-polar",
    source="000 ch. 4, Fig 4.1 (L818)",
    reported_on="VQA 2.0 (the split is not stated; 3129 answer classes)",
    reported={
        "n_classes": 3129,
        "polar_share": {"value": 38, "note": "'polar questions make up 38% of the dataset' (L818)"},
        "polar_share_per_class": {"value": 19, "note": "'or 19% per class' (L818)"},
        "np_share_per_class_mean": {"value": 0.02, "note": "'just over 0.02% of samples per class, in average'"},
    },
    claims=(Claim("polar classes are heavily overrepresented per class (> 10x the mean NP class)",
                  _polar_overrepresented, source="000 L818",
                  fixtures=Fixtures(
                      PASS={"polar_share_per_class": 36.82, "np_share_per_class_mean": 2.40,
                            "polar_to_np_per_class_ratio": 15.37},
                      FAIL={"np_share_per_class_mean": 8.77, "polar_to_np_per_class_ratio": 4.20},
                      SKIP={"np_share_per_class_mean": NAN, "polar_to_np_per_class_ratio": NAN})),),
))

register(Experiment(
    name="vqa.tab4_1", target="vqa.tables:table_4_1", config=_config(), presets=PRESETS,
    title="Tab 4.1: baseline, polar-only, non-polar-only and hybrid models",
    source="000 ch. 4, Tab 4.1 (L916-L942)",
    reported_on="VQA 2.0 val",
    reported={
        "acc_omega_all": 62.4, "acc_omega_P": 80.4, "acc_omega_NP": 51.4,
        "acc_P_P": 79.6, "acc_NP_NP": 51.6, "acc_hybrid_NP": 28.7,
        "ensemble_estimate": {"value": 62.22, "note": "79.6·11/29 + 51.6·(1−11/29) ≈ 62.22 (L933)"},
        "polar_share_eval": {"value": 37.93, "note": "s = 11/29 (L933), given as a ratio"},
        "gap_NP_minus_omega_on_NP": {"value": 0.2, "note": "'+0.2 p.p.' (L931)"},
        "gap_omega_minus_ensemble": {"value": 0.2, "note": "'0.2 p.p. below' (L933); 62.4 − 62.22 = 0.18"},
        "gap_hybrid_minus_NP_on_NP": {"value": -22.9, "note": "from Tab 4.1 (28.7 − 51.6); the text's "
                                      "'−22.7 p.p.' (L942) is against the baseline's 51.4"},
    },
    claims=(
        Claim("the hybrid f_NP∘Φ_P lies substantially above random chance", _hybrid_above_chance, source="000 L942",
              fixtures=Fixtures(PASS={**iv("acc_hybrid_NP", 54.6, 52.3, 56.9), "chance_np_majority": 17.74,
                                      "chance_np_uniform": 9.09},
                                FAIL=iv("acc_hybrid_NP", 18.1, 16.0, 20.2),      # at the majority answer's rate
                                SKIP=iv("acc_hybrid_NP", *_NAN3))),
        Claim("the baseline is not below the weighted ensemble estimate of the two exclusive models "
              "(interval of the gap above −not_worse_tol)",
              _baseline_not_below_ensemble, source="000 L933",
              fixtures=Fixtures(PASS={"acc_omega_all": 86.6, "ensemble_estimate": 86.4,
                                      **iv("gap_omega_minus_ensemble", 0.2, -0.6, 1.0)},
                                FAIL={"ensemble_estimate": 92.0, **iv("gap_omega_minus_ensemble", -5.4, -6.4, -4.5)},
                                SKIP={"ensemble_estimate": NAN, **iv("gap_omega_minus_ensemble", *_NAN3)})),
        Claim("the P-only model is close to the baseline on P (±close_tol), and the baseline is not worse "
              "(P-only − baseline below +not_worse_tol)",
              _p_close_and_baseline_not_worse, source="000 L925, L931",
              fixtures=_gap_fixture("P_minus_omega_on_P", (-0.8, -1.6, -0.1), (-3.4, -4.3, -2.5))),
        Claim("the NP-only model is close to the baseline on NP (±close_tol)", _close("NP_minus_omega_on_NP"),
              source="000 L925, L931",
              fixtures=_gap_fixture("NP_minus_omega_on_NP", (0.2, -1.1, 1.5), (24.2, 22.4, 26.0))),
        Claim("the hybrid is well below the NP-only model (by more than well_below)", _hybrid_well_below_np,
              source="000 L942",
              fixtures=_gap_fixture("hybrid_minus_NP_on_NP", (-43.7, -45.6, -41.7), (-3.1, -5.0, -1.2))),
    ),
))

register(Experiment(
    name="vqa.matching", target="vqa.tables:matching_fig_4_4", config=_config(), presets=PRESETS,
    title="Fig 4.4, Tab A.1, Fig 4.5: non-polar classes matched in polar questions",
    source="000 ch. 4, Fig 4.4, Fig 4.5 (L900, L950); app. A.1, Fig A.1, Tab A.1 (L2240-L2248)",
    reported_on="VQA 2.0 train (polar questions)",
    reported={
        "n_np_classes": 3127,
        "frac_np_matched": {"value": 70, "note": "'well over 70%' of NP classes matched at least once (L950)"},
        "top1_matches": {"value": 11936, "note": "class IN (Tab A.1)"},
        "n_classes_b1": 352, "n_classes_b2": {"value": 148, "note": "Tab 4.2; the text (L950) says 'the top 50'"},
        "n_classes_b3": 317,
    },
    claims=(Claim("well over 70 % of the non-polar classes match at least one polar question", _matched_70,
                  presets=("paper",), source="000 L950",
                  fixtures=Fixtures(PASS={"frac_np_matched": 83.4}, FAIL={"frac_np_matched": 52.0},
                                    SKIP={"frac_np_matched": NAN})),
            Claim("Tab A.1: the non-polar classes most matched in polar questions are the thesis' (top-100 overlap "
                  ">= a1_min_overlap, Spearman rho of the counts >= a1_min_rank_corr)", _a1_ranking,
                  presets=("paper",), source="000 L900, app. A.1 Tab A.1 (L2246-L2276)",
                  fixtures=Fixtures(PASS={"a1_overlap": 97, "a1_rank_corr": 0.96},
                                    # case not folded: CAN, IN, ON lose the questions they begin
                                    FAIL={"a1_overlap": 88, "a1_rank_corr": 0.71},
                                    SKIP={"a1_overlap": NAN, "a1_rank_corr": NAN})),
            Claim("Tab A.1's match counts are reproduced (median of ours / printed within 1 ± a1_count_tol)",
                  _a1_counts, presets=("paper",), source="000 app. A.1 Tab A.1 (L2246-L2276)",
                  fixtures=Fixtures(PASS={"a1_count_ratio_median": 1.01, **_A1_VARIANTS},
                                    FAIL={"a1_count_ratio_median": 1.49},   # train + val polar questions
                                    SKIP={"a1_count_ratio_median": NAN})),),
))

register(Experiment(
    name="vqa.tab4_2", target="vqa.tables:table_4_2", config=_config(), presets=PRESETS,
    title="Tab 4.2: hybrid accuracy per coverage bracket",
    source="000 ch. 4, Tab 4.2 (L950-L961)",
    reported_on="VQA 2.0 val",
    reported={
        "acc_b1": {"value": 40.8, "note": "Tab 4.2; the text (L959) says 40.4 and '10.8 p.p. below' the model "
                                          "of Tab 4.1: 10.8 fits 51.6 - 40.8, not the text's own 40.4 (kept as printed)"},
        "acc_b2": 31.7, "acc_b3": 21.4,
        "n_classes_b1": 352, "n_classes_b2": {"value": 148, "note": "the text (L950) says 'the top 50'"},
        "n_classes_b3": 317,
        "acc_hybrid_NP": 28.7,
        "gap_b1_minus_hybrid_NP": {"value": 12.1, "note": "Tab 4.2's 40.8 − Tab 4.1's 28.7; the text (L959) "
                                                          "compares 40.4 with 28.7, i.e. 11.7"},
    },
    claims=(
        Claim("bracket accuracies decrease with coverage (b1 > b2 > b3, intervals apart)", _brackets_ordered,
              source="000 L959-L961",
              fixtures=Fixtures(PASS=_BRACKETS, FAIL=iv("acc_b3", 73.5, 71.0, 76.0),   # b3 above b2: sorted by difficulty
                                SKIP=iv("acc_b2", *_NAN3))),                         # an empty bracket
        Claim("the best-covered bracket is above the least-covered one beyond noise", _b1_above_b3,
              source="000 L959-L961",
              fixtures=Fixtures(PASS=_BRACKETS, FAIL=iv("acc_b3", 76.5, 74.1, 78.9), SKIP=iv("acc_b3", *_NAN3))),
        Claim("the well-covered classes (bracket 1) are answered better than the hybrid's non-polar samples "
              "overall (paired interval of b1 − all NP above 0)", _b1_beats_all_np, source="000 L959",
              fixtures=Fixtures(PASS={"acc_b1": 40.8, "acc_hybrid_NP": 28.7,
                                      **iv("gap_b1_minus_hybrid_NP", 12.1, 11.6, 12.6)},
                                FAIL={"acc_b1": 40.6, "acc_hybrid_NP": 55.1,     # b1 holds the hard classes
                                      **iv("gap_b1_minus_hybrid_NP", -14.5, -16.4, -12.6)},
                                SKIP=iv("gap_b1_minus_hybrid_NP", *_NAN3))),          # an empty bracket 1
    ),
))
