"""capacity/findings.py: the findings of ch. 5 with paired bootstrap intervals, judged by the
registered claims on the thesis' own tables (they must pass there) and on matrices where a finding
is absent (they must fail); CR_min's diagonal; A_S's training vs held-out MSE; artefact constancy."""
import math
import types

import numpy as np
import pytest

from capacity.findings import (accuracy_findings, artefact_findings, concept_count, mse_findings, ratio_key,
                               spearman, sweep_ratios)
from capacity.metrics import cr_min, cr_min_printed, fca_lattice
from capacity.pipeline import artefact_constancy
from experiments import capacity as X

ZOO = ["lenet", "alexnet", "vgg16", "resnet50", "inception_v3"]
TAB_5_1_TOP1 = [32.30, 54.96, 71.35, 74.02, 77.12]    # f_i on the originals (Tab 5.1)


def _nested(acc: np.ndarray, orig, n: int = 4000):
    """Per-image correctness with exactly these accuracies (%), nested within each column (the images a
    classifier gets right on one input are a prefix of those on a better input), as one classifier on
    slightly changed inputs behaves; the original images go in the same column order."""
    acc = np.asarray(acc, float)
    k = np.arange(n)
    correct = k[None, None, :] < np.rint(acc[:, :, None] / 100 * n)
    correct_orig = k[None, :] < np.rint(np.asarray(orig, float)[:, None] / 100 * n)
    return correct, correct_orig


def _thesis_findings(**kw):
    correct, orig = _nested(np.array(X.TAB_5_2), TAB_5_1_TOP1)
    return accuracy_findings(correct, orig, ZOO, 90.0, n_boot=200, seed=0, **kw)


def test_cr_min_diagonal_is_100_by_its_denominator():
    """CR_min divides by the composite self-accuracies, so its diagonal is 100 whatever the matrix;
    the printed Eq 5.5 (bare classifiers' accuracies) is not."""
    acc = np.random.default_rng(0).uniform(5, 95, (5, 5))
    np.testing.assert_allclose(np.diag(cr_min(acc)), 100.0, rtol=1e-14)
    assert not np.allclose(np.diag(cr_min_printed(acc, np.random.default_rng(1).uniform(5, 95, 5))), 100.0)


def test_concept_count_equals_the_lattice():
    objs, attrs = [f"f{i}" for i in range(5)], [f"A{i}" for i in range(5)]
    assert concept_count(np.array(X.TAB_5_3).T > 90) == 6 == len(fca_lattice(np.array(X.TAB_5_3), objs, attrs, 90))
    rng = np.random.default_rng(0)
    for _ in range(20):
        cr = rng.uniform(0, 120, (4, 4))
        assert concept_count(cr.T > 60) == len(fca_lattice(cr, objs[:4], attrs[:4], 60))


def test_findings_of_the_thesis_tables_pass_their_claims():
    f = _thesis_findings()
    # Tab 5.2: every column's maximum is its own autoencoder (f_R: 74.94 vs 73.00 on A_V)
    assert f["own_columns_beyond_noise"] == 5 and f["own_margin_resnet50"] == pytest.approx(1.94, abs=0.03)
    assert f["crmin_below_t_cells"] == 13 and f["crmin_above100_cells"] == 4 and f["crmin_asym_pairs"] == 7
    assert f["gain_acc_spearman"] == pytest.approx(-0.9)
    assert f["fca_concepts"] == 6 and f["fca_top_margin"] == 2      # f_I has all 5 signals, f_R the next 3
    for claim in X.SWEEP_CLAIMS:
        assert claim.check(f, None)[0] is True, claim.text


def test_findings_fail_where_the_thesis_finding_is_absent():
    acc = np.array(X.TAB_5_2)
    acc[3, 3] = 72.0           # f_R on its own A_R below f_R on A_V (73.00): column R's maximum is off the diagonal
    correct, orig = _nested(acc, TAB_5_1_TOP1)
    f = accuracy_findings(correct, orig, ZOO, 90.0, n_boot=200, seed=0)
    assert X._own_best(f)[0] is False and f["own_columns_beyond_noise"] == 4
    # every signal works for every classifier (off-diagonal CR_min 99): no weak cells, no asymmetry, one
    # concept, every classifier with every signal; and the strongest classifiers gain most
    orig = np.array([85.0, 86, 87, 88, 89])
    own = orig + np.array([0.5, 1, 1.5, 2, 2.5])
    flat = 0.99 * np.minimum(own[:, None], own[None, :])
    np.fill_diagonal(flat, own)
    correct, orig = _nested(flat, orig)
    f = accuracy_findings(correct, orig, ZOO, 90.0, n_boot=200, seed=0)
    for check in (X._drastic, X._asymmetric, X._above_100, X._weakest_gain, X._fca_concepts, X._fca_top):
        assert check(f, None)[0] is False, check.__name__


def test_paired_bootstrap_keeps_a_small_margin_on_the_same_images():
    """Two inputs that differ on 1 % of the images: the paired interval of the margin stays above 0
    (resampling the two cells independently would give an interval of about ±3.5 points)."""
    acc = np.full((2, 2), 80.0)
    acc[0, 0], acc[1, 1] = 81.0, 81.0
    correct, orig = _nested(acc, [80.0, 80.0], n=1000)
    f = accuracy_findings(correct, orig, ["a", "b"], 90.0, n_boot=300, seed=0)
    assert f["own_margin_a"] == pytest.approx(1.0) and f["own_margin_a_lo"] > 0.3


def test_spearman_and_sweep_ratios():
    assert spearman(np.array([1.0, 2, 3]), np.array([3.0, 2, 1])) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.array([1.0, 1, 1]), np.array([3.0, 2, 1])))
    from capacity.config import CapacityConfig
    d = CapacityConfig()
    assert [ratio_key(r) for r in sweep_ratios(d.sweep_widths, d.image_size, 1)] == ["r2", "r4", "r8", "r16"]


def test_artefact_constancy_and_its_claim_numbers():
    rng = np.random.default_rng(0)
    n, d = 400, 64
    pattern = rng.normal(0, 1, d)
    noise = rng.normal(0, 1, (n, d))
    for res, expect in ((np.tile(pattern, (n, 1)), 1.0), (noise, 1 / n)):
        c = artefact_constancy(res.sum(0), (res ** 2).sum(), n)
        assert c == pytest.approx(expect, rel=0.5 if expect < 1 else 1e-12)
    # paired replicates: A_1 carries the pattern on top of A_S's noise, A_2 does not
    w = rng.poisson(1.0, (50, n)).astype(float)
    res = np.stack([noise, noise + pattern, rng.normal(0, 1, (n, d))])
    const = np.array([artefact_constancy(r.sum(0), (r ** 2).sum(), n) for r in res])
    rep = np.array([artefact_constancy(w @ r, w @ (r ** 2).sum(1), w.sum(1)) for r in res])
    f = artefact_findings(const, rep, ["A_S", "one", "two"])
    assert f["artefact_gap_one_lo"] > 0.3 and f["artefact_gap_two_lo"] < 0 < f["artefact_gap_two_hi"]
    assert X._artefacts(f)[0] is False
    assert X._artefacts(artefact_findings(const[:2], rep[:2], ["A_S", "one"]))[0] is True


def test_mse_held_out_vs_training():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 0.01, 3000)
    is_eval = np.arange(3000) < 1000
    f = mse_findings(x, is_eval, n_boot=300)
    assert f["mse_A_S_train"] != f["mse_A_S_eval"] and f["mse_A_S_ratio_lo"] < 1 < f["mse_A_S_ratio_hi"]
    cfg = types.SimpleNamespace(mse_tolerance=0.10)
    assert X._mse_held_out(f, cfg)[0] is True
    x[is_eval] *= 1.5                                  # held-out images reconstructed worse: fails
    assert X._mse_held_out(mse_findings(x, is_eval, n_boot=300), cfg)[0] is False
    assert X._mse_held_out(mse_findings(x[is_eval], is_eval[is_eval]), cfg)[0] is None   # no training items


def test_reconstructions_reports_training_and_held_out_mse_apart(monkeypatch):
    """capacity.reconstructions: mse_A_S_train from the training items, mse_A_S_eval from the
    evaluation items (they were one number before)."""
    import capacity.tables as T
    from capacity.config import CapacityConfig
    rng = np.random.default_rng(0)
    n_ev, n_tr, names = 50, 150, ["A_S", "lenet"]
    mse_items = np.concatenate([np.full((2, n_ev), 0.03), np.full((2, n_tr), 0.02)], 1)
    ev = {"clf_names": ["lenet"], "ae_names": names, "ex_orig": rng.integers(0, 255, (2, 8, 8, 1), dtype=np.uint8),
          "ex_rec": rng.integers(0, 255, (2, 2, 8, 8, 1), dtype=np.uint8), "mse": mse_items[:, :n_ev].mean(1),
          "mse_items": mse_items, "is_eval_items": np.arange(n_ev + n_tr) < n_ev,
          "artefact_const": np.array([0.1, 0.2]), "artefact_const_rep": rng.uniform(0, 0.3, (2, 20)),
          "ae_info": {"A_S": {}}, "n_eval": n_ev, "n_nmi": n_ev + n_tr}
    monkeypatch.setattr(T, "evaluate", lambda cfg, ctx: ev)
    ctx = types.SimpleNamespace(seed=0, savefig=lambda *a, **k: None, table=lambda *a, **k: None,
                                note=lambda *a, **k: None)
    out = T.reconstructions(CapacityConfig(finding_bootstrap=50), ctx)
    assert out["mse_A_S_eval"] == pytest.approx(0.03) and out["mse_A_S_train"] == pytest.approx(0.02)
    assert out["mse_A_S_ratio"] == pytest.approx(1.5) and "mse_A_S" not in out
