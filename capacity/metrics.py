"""Information and comparison metrics of 000 ch. 5: nMI (Eq 5.4), IC-/BC-nMI, CR_min (Eq 5.5 as
the chapter note corrects it) and the FCA lattice of Fig 5.6 / A.5. Pure numpy (+ ``concepts``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


# --------------------------------------------------------------------------------------------------
# nMI (Eq 5.4): plain mutual information of co-located 8-bit sub-pixels, natural log
# --------------------------------------------------------------------------------------------------
def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """MI (nats) between two uint8 arrays of the same shape, from their joint 256 x 256 histogram of
    co-located values (channels pooled). Equals ``sklearn.metrics.mutual_info_score(a.ravel(),
    b.ravel())``. Despite the thesis' name "nMI", Eq 5.4 has no normalisation."""
    a = np.asarray(a, dtype=np.uint8).ravel()
    b = np.asarray(b, dtype=np.uint8).ravel()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    n = a.size
    codes = a.astype(np.int32) * 256 + b
    if n < 65536:                      # small images: sort the codes (cheaper than a 65536-bin histogram)
        nz, pxy = np.unique(codes, return_counts=True)
    else:
        joint = np.bincount(codes, minlength=65536)
        nz = np.nonzero(joint)[0]
        pxy = joint[nz]
    pxy = pxy.astype(np.float64)
    pa = np.bincount(a, minlength=256).astype(np.float64)
    pb = np.bincount(b, minlength=256).astype(np.float64)
    ia, ib = nz // 256, nz % 256
    # sum p(x,y) log(p(x,y) / (p(x)p(y))) with counts: (c/n) log(c n / (ca cb))
    mi = np.sum(pxy / n * (np.log(pxy) + np.log(n) - np.log(pa[ia]) - np.log(pb[ib])))
    return float(max(mi, 0.0))


def ic_nmi(originals: np.ndarray, recons: np.ndarray) -> np.ndarray:
    """In-class nMI per sample: MI(original_k, reconstruction_k)."""
    return np.array([mutual_information(o, r) for o, r in zip(originals, recons)])


def bc_pairs(n: int, n_pairs: int, seed: int) -> np.ndarray:
    """Shuffle once with ``seed`` and take consecutive disjoint pairs: (n_pairs, 2) indices, the same
    for every autoencoder."""
    if 2 * n_pairs > n:
        raise ValueError(f"{n_pairs} disjoint pairs need {2 * n_pairs} samples, have {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:2 * n_pairs].reshape(n_pairs, 2)


def bc_nmi(recons: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Between-class nMI per pair: MI between two reconstructions of one autoencoder."""
    return np.array([mutual_information(recons[i], recons[j]) for i, j in pairs])


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> 8-bit values (round half to even, clipped)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# CR_min (Eq 5.5, as Tab 5.3 computes it)
# --------------------------------------------------------------------------------------------------
def cr_min(acc: np.ndarray) -> np.ndarray:
    """``acc[i, j] = acc(f_j o A_i)`` (rows: autoencoders, columns: classifiers, same order).
    Returns 100 * acc(f_j o A_i) / min(acc(f_i o A_i), acc(f_j o A_j)) in percent.

    The printed Eq 5.5 divides by min(acc(f_i), acc(f_j)) (the bare classifiers); Tab 5.3 is only
    reproduced with the composite self-accuracies (the diagonal), which makes the diagonal 100
    by construction (notes/capacity.md)."""
    acc = np.asarray(acc, dtype=np.float64)
    if acc.ndim != 2 or acc.shape[0] != acc.shape[1]:
        raise ValueError(f"acc must be square (autoencoders x classifiers), got {acc.shape}")
    d = np.diag(acc)
    with np.errstate(divide="ignore", invalid="ignore"):   # 0 / 0 (a classifier at 0 %) -> nan
        return 100.0 * acc / np.minimum(d[:, None], d[None, :])


def cr_min_printed(acc: np.ndarray, acc_plain: Sequence[float]) -> np.ndarray:
    """Eq 5.5 exactly as printed (denominator: the bare classifiers' accuracies); for comparison."""
    acc = np.asarray(acc, dtype=np.float64)
    p = np.asarray(acc_plain, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * acc / np.minimum(p[:, None], p[None, :])


# --------------------------------------------------------------------------------------------------
# FCA (Fig 5.6 / A.5)
# --------------------------------------------------------------------------------------------------
def fca_context(cr: np.ndarray, classifiers: Sequence[str], signals: Sequence[str], t: float):
    """Formal context: objects = classifiers, attributes = signals; classifier j has signal i when
    CR_min(f_j o A_i) > t (strictly, L1275). ``cr`` rows: signals (A_i), columns: classifiers."""
    import concepts
    cr = np.asarray(cr)
    bools = [tuple(bool(cr[i, j] > t) for i in range(len(signals))) for j in range(len(classifiers))]
    return concepts.Context(tuple(classifiers), tuple(signals), bools)


def fca_lattice(cr: np.ndarray, classifiers: Sequence[str], signals: Sequence[str], t: float):
    """The concept lattice; ``len(lattice)`` is the number of concepts."""
    return fca_context(cr, classifiers, signals, t).lattice


def draw_lattice(lattice, ax, title: str = ""):
    """Hasse diagram on a matplotlib axis: top concept (all objects) at the top; each node shows
    the objects (classifiers, above) and attributes (signals, below) it introduces."""
    concepts_ = list(lattice)
    levels: dict[int, list] = {}
    for c in concepts_:
        levels.setdefault(len(c.intent), []).append(c)
    keys = sorted(levels)
    pos = {}
    for row, k in enumerate(keys):
        row_items = sorted(levels[k], key=lambda c: (-len(c.extent), c.extent))
        for col, c in enumerate(row_items):
            pos[c.index] = ((col + 1) / (len(row_items) + 1), 1.0 - row / max(len(keys) - 1, 1))
    for c in concepts_:
        for u in c.upper_neighbors:
            (x0, y0), (x1, y1) = pos[c.index], pos[u.index]
            ax.plot([x0, x1], [y0, y1], color="0.6", lw=1, zorder=1)
    for c in concepts_:
        x, y = pos[c.index]
        ax.scatter([x], [y], s=80, color="white", edgecolor="k", zorder=2)
        if c.objects:
            ax.text(x, y + 0.04, ", ".join(c.objects), ha="center", va="bottom", fontsize=7, color="tab:blue")
        if c.properties:
            ax.text(x, y - 0.04, ", ".join(c.properties), ha="center", va="top", fontsize=7, color="tab:red")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.15, 1.15)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
