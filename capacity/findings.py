"""The findings of 000 ch. 5 as numbers with intervals, from per-image correctness (pure numpy).

Every interval is a percentile bootstrap over the evaluation images, *paired*: one resample of the
images is applied to every (autoencoder, classifier) cell at once, so a column's margin, a CR_min
(whose denominators are other cells) and a rank correlation are recomputed on the same images.
``tables.py`` (the main default) and ``sweep.py`` (per bottleneck ratio) both call
``accuracy_findings``; the claim checks in experiments/capacity.py read the summary keys it returns.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

LO, HI = 2.5, 97.5     # 95 % percentile interval

# what the sweep reports per bottleneck ratio (suffix ``_<ratio_key>``): the keys the claims read
SWEEP_KEYS = ("own_margin_worst_lo", "own_columns_beyond_noise", "own_columns", "crmin_offdiag_cells",
              "crmin_below_t_cells", "crmin_above100_cells", "crmin_asym_pairs", "crmin_offdiag_min",
              "crmin_offdiag_median", "crmin_offdiag_max", "gain_acc_spearman", "gain_acc_spearman_lo",
              "gain_acc_spearman_hi", "fca_top_margin", "fca_top_margin_lo", "fca_top_margin_hi", "fca_concepts",
              "fca_concepts_lo", "fca_concepts_hi")


def ratio_key(r: float) -> str:
    """8.0 -> 'r8', 6.4 -> 'r6p4' (metric names of the sweep)."""
    return "r" + f"{r:g}".replace(".", "p")


def sweep_ratios(sweep_widths, image_size: int, channels: int) -> list[float]:
    """The bottleneck ratio of each sweep point (capacity.autoencoder.bottleneck_ratio's formula,
    without JAX: the registrations compute their claims' ratios from the presets)."""
    out = []
    for widths in sweep_widths:
        k = 2 ** len(widths)
        out.append(image_size * image_size * channels / ((image_size // k) ** 2 * int(widths[-1])))
    return out


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) float counts: how often each image is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n_boot, n))
    idx = rng.integers(0, n, size=(n_boot, n))
    np.add.at(out, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
    return out


def concept_count(incidence: np.ndarray) -> int:
    """Number of formal concepts of a context (objects x attributes, bool): the distinct intents of
    every subset of objects (the empty one has every attribute). Exact; for the handful of
    classifiers of the chapter (2^objects subsets)."""
    inc = np.asarray(incidence, bool)
    n_obj = inc.shape[0]
    subsets = np.array(list(itertools.product((False, True), repeat=n_obj)), bool).reshape(-1, n_obj)
    intents = np.all(~subsets[:, :, None] | inc[None, :, :], axis=1)
    return len({row.tobytes() for row in intents})


def _cr_min(acc: np.ndarray) -> np.ndarray:
    """CR_min of capacity.metrics.cr_min over a leading batch axis: acc[..., i, j] = acc(f_j o A_i)."""
    d = np.diagonal(acc, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * acc / np.minimum(d[..., :, None], d[..., None, :])


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    from scipy.stats import rankdata
    return rankdata(x, axis=-1)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation along the last axis (nan when one side is constant)."""
    ra, rb = _rank(a), _rank(b)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(ra * rb, -1) / np.sqrt(np.sum(ra ** 2, -1) * np.sum(rb ** 2, -1))


def _interval(samples: np.ndarray) -> tuple[float, float]:
    s = np.asarray(samples, np.float64)
    s = s[~np.isnan(s)]
    if len(s) == 0:
        return float("nan"), float("nan")
    return float(np.percentile(s, LO)), float(np.percentile(s, HI))


def accuracy_findings(correct: np.ndarray, correct_orig: np.ndarray, names: Sequence[str], t: float,
                      n_boot: int = 1000, seed: int = 0) -> dict:
    """The findings of Tab 5.1-5.3 and Fig 5.6 from ``correct[i, j, k]`` (classifier j right on image k
    reconstructed by A_i, the autoencoder fine-tuned for classifier i; same order as ``names``) and
    ``correct_orig[j, k]`` (on the original image k). Returns metrics (floats):

    - ``own_margin_<j>`` (+ ``_lo``, ``_hi``): acc(f_j o A_j) - max_{i != j} acc(f_j o A_i), Tab 5.2's
      column; ``own_columns_beyond_noise`` (columns whose lower end > 0), ``own_margin_worst_lo``;
    - off-diagonal CR_min: ``crmin_below_t_cells`` (upper end < t), ``crmin_above100_cells`` (lower
      end > 100), ``crmin_asym_pairs`` (pairs {i, j} with one direction's lower end > t and the other's
      upper end < t), ``crmin_offdiag_cells``, ``crmin_offdiag_min`` / ``_median`` / ``_max``;
    - ``gain_acc_spearman`` (+ ``_lo``, ``_hi``): Spearman correlation over classifiers between
      acc(f_j) and the gain acc(f_j o A_j) - acc(f_j) (Tab 5.1);
    - FCA at t (f_j has A_i when CR_min > t): ``fca_concepts`` (+ ``_lo``, ``_hi``) and
      ``fca_top_margin`` (+ ``_lo``, ``_hi``): attributes of the most accurate classifier (on the
      originals, in each resample) minus the most any other classifier has.
    """
    correct = np.asarray(correct, bool)
    orig = np.asarray(correct_orig, bool)
    m, n = correct.shape[1], correct.shape[2]
    if n == 0:
        raise ValueError("no evaluation images")
    w = resample_counts(n, n_boot, seed)
    flat = np.concatenate([correct.reshape(-1, n), orig], 0).astype(np.float64)          # (m*m + m, n)
    acc_all = 100.0 * np.concatenate([flat.mean(1)[None], (w @ flat.T) / n], 0)           # row 0: the point
    acc = acc_all[:, :m * m].reshape(-1, m, m)
    acc0 = acc_all[:, m * m:]
    out = {}
    # Tab 5.2: each column's own autoencoder against the best other one
    eye = np.eye(m, dtype=bool)
    others = np.where(eye[None], -np.inf, acc)
    margin = np.diagonal(acc, axis1=1, axis2=2) - others.max(1)        # (1 + B, m)
    los = []
    for j, name in enumerate(names):
        lo, hi = _interval(margin[1:, j])
        out.update({f"own_margin_{name}": float(margin[0, j]), f"own_margin_{name}_lo": lo,
                    f"own_margin_{name}_hi": hi})
        los.append(lo)
    out["own_columns"] = float(m)
    out["own_columns_beyond_noise"] = float(sum(lo > 0 for lo in los))
    out["own_margin_worst_lo"] = float(min(los))
    # Tab 5.3: off-diagonal CR_min, every cell with its interval
    cr = _cr_min(acc)
    off = ~eye
    lo_cr = np.full((m, m), np.nan)
    hi_cr = np.full((m, m), np.nan)
    for i, j in zip(*np.nonzero(off)):
        lo_cr[i, j], hi_cr[i, j] = _interval(cr[1:, i, j])
    out["crmin_offdiag_cells"] = float(off.sum())
    out["crmin_below_t_cells"] = float(np.sum(hi_cr[off] < t))
    out["crmin_above100_cells"] = float(np.sum(lo_cr[off] > 100.0))
    out["crmin_asym_pairs"] = float(sum((lo_cr[i, j] > t and hi_cr[j, i] < t) or (lo_cr[j, i] > t and hi_cr[i, j] < t)
                                        for i in range(m) for j in range(i + 1, m)))
    point = cr[0][off]
    out["crmin_offdiag_min"] = float(np.nanmin(point)) if point.size else float("nan")
    out["crmin_offdiag_median"] = float(np.nanmedian(point)) if point.size else float("nan")
    out["crmin_offdiag_max"] = float(np.nanmax(point)) if point.size else float("nan")
    # Tab 5.1: the weakest classifiers gain most from their own autoencoder
    gain = np.diagonal(acc, axis1=1, axis2=2) - acc0
    rho = spearman(acc0, gain) if m >= 2 else np.full(len(acc0), np.nan)
    out["gain_acc_spearman"] = float(rho[0])
    out["gain_acc_spearman_lo"], out["gain_acc_spearman_hi"] = _interval(rho[1:])
    # Fig 5.6: FCA at t; objects = classifiers (columns), attributes = signals (rows)
    has = cr > t                                                        # (1 + B, i, j)
    concepts = np.array([concept_count(h.T) for h in has], np.float64)
    attrs = has.sum(1).astype(np.float64)                               # per classifier j
    best = acc0.argmax(1)
    rows = np.arange(len(best))
    rest = np.where(np.arange(m)[None] == best[:, None], -np.inf, attrs)
    top = attrs[rows, best] - rest.max(1) if m >= 2 else np.full(len(best), np.nan)
    out["fca_concepts"] = float(concepts[0])
    out["fca_concepts_lo"], out["fca_concepts_hi"] = _interval(concepts[1:])
    out["fca_top_margin"] = float(top[0])
    out["fca_top_margin_lo"], out["fca_top_margin_hi"] = _interval(top[1:])
    return out


def mse_findings(mse_items: np.ndarray, is_eval: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """A_S on held-out against training images: ``mse_A_S_eval``, ``mse_A_S_train`` and the ratio
    eval / train with a bootstrap interval (the two sets resampled independently); nan without
    training items."""
    x = np.asarray(mse_items, np.float64)
    ev = np.asarray(is_eval, bool)
    e, tr = x[ev], x[~ev]
    out = {"mse_A_S_eval": float(e.mean()) if len(e) else float("nan"),
           "mse_A_S_train": float(tr.mean()) if len(tr) else float("nan")}
    if not len(e) or not len(tr):
        return dict(out, mse_A_S_ratio=float("nan"), mse_A_S_ratio_lo=float("nan"), mse_A_S_ratio_hi=float("nan"))
    rng = np.random.default_rng(seed)
    be = np.array([e[rng.integers(0, len(e), len(e))].mean() for _ in range(n_boot)])
    bt = np.array([tr[rng.integers(0, len(tr), len(tr))].mean() for _ in range(n_boot)])
    lo, hi = _interval(be / bt)
    return dict(out, mse_A_S_ratio=out["mse_A_S_eval"] / out["mse_A_S_train"], mse_A_S_ratio_lo=lo,
                mse_A_S_ratio_hi=hi)


def artefact_findings(const: np.ndarray, const_rep: np.ndarray, ae_names: Sequence[str]) -> dict:
    """Fig 5.4's "checkerboard artefacts consistent across samples": per autoencoder the share of its
    residual that is one image for every sample (``pipeline.artefact_constancy``), and for every
    fine-tuned A_i the paired (same Poisson-bootstrap weights) interval of its share minus A_S's.
    ``ae_names[0]`` is A_S."""
    const = np.asarray(const, np.float64)
    rep = np.asarray(const_rep, np.float64)
    out, los = {}, []
    for a, name in enumerate(ae_names):
        out[f"artefact_const_{name}"] = float(const[a])
        if a == 0:
            continue
        lo, hi = _interval(rep[a] - rep[0])
        out.update({f"artefact_gap_{name}_lo": lo, f"artefact_gap_{name}_hi": hi})
        los.append(lo)
    out["artefact_gap_worst_lo"] = float(min(los)) if los else float("nan")
    out["artefact_const_min_ft"] = float(const[1:].min()) if len(const) > 1 else float("nan")
    return out
