"""Grouping criterion of 000 ch. 7.2.1, as ../shared/notes/auxiliary.md settles it.

From a k x k confusion matrix C (rows: true label, columns: predicted label) of a plain baseline
evaluated on a held-out part of the training split:

- Eq 7.1 (as meant: the printed ``C - CI`` is zero) ``Dhat = (C - C * I) / (sum C - tr C)``: the
  off-diagonal confusions as a share of all errors;
- Eq 7.2 ``Shat = 1 - Dhat`` (1 the all-ones matrix);
- the distance of the **similar** grouping ``D = (Shat + Shat^T) / 2`` (often-confused labels are
  close); the **dissimilar** variant skips Eq 7.2: ``D = (Dhat + Dhat^T) / 2``.

The diagonal is left out of every average. ``greedy_balanced_groups`` is the thesis' greedy
clustering (L1649): G seeds, then always the (pooled label, non-full cluster) pair of smallest
average distance; clusters hold at most ceil(k / G) labels; ties go to a random cluster among the
tied ones (seeded). ``seeding="farthest"`` is our variant (not the thesis'): each next seed maximises
its smallest distance to the seeds already taken, so two seeds cannot come from one block of
mutually confused labels.
"""
from __future__ import annotations

import math

import numpy as np

SEEDINGS = ("thesis", "farthest")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """c[i, j] = number of samples of true label i predicted as j."""
    c = np.zeros((k, k), dtype=np.float64)
    np.add.at(c, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1.0)
    return c


def soft_confusion(y_true: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """c[i, j] = summed predicted probability of j over the samples of true label i: the expected hard
    confusion matrix under the model's own predictive distribution. Every sample adds its whole
    distribution of doubt, not one count when it happens to be wrong, so a held-out part with few
    errors still shows which labels the model mixes up. Rows sum to the samples per label, the
    off-diagonal sum is the expected number of errors: Eq 7.1-7.3 apply unchanged."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise ValueError(f"probs must be (n, {k}), got shape {probs.shape}")
    c = np.zeros((k, k), dtype=np.float64)
    np.add.at(c, np.asarray(y_true, dtype=np.int64), probs)
    return c


def structureless_confusion(k: int, n_errors: int, n_correct: int, seed: int = 0) -> np.ndarray:
    """A confusion matrix with no structure: ``n_errors`` errors scattered uniformly over the k(k-1)
    off-diagonal cells, ``n_correct`` spread evenly on the diagonal. The reference a grouping must beat
    out of sample: grouped on one such matrix and scored on an independent one, any grouping is random."""
    rng = np.random.default_rng(seed)
    off = rng.multinomial(int(n_errors), np.full(k * (k - 1), 1.0 / (k * (k - 1))))
    c = np.zeros((k, k))
    c[~np.eye(k, dtype=bool)] = off
    np.fill_diagonal(c, n_correct / k)
    return c


def normalized_confusion(c: np.ndarray) -> np.ndarray:
    """Eq 7.1: off-diagonal confusions divided by the number of errors (zero diagonal)."""
    c = np.asarray(c, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {c.shape}")
    off = c * (1.0 - np.eye(len(c)))
    errors = c.sum() - np.trace(c)
    if errors <= 0:
        raise ValueError("the confusion matrix has no off-diagonal entries (no errors): nothing to group by")
    return off / errors


def distance_matrix(c: np.ndarray, similar: bool = True) -> np.ndarray:
    """Eq 7.1-7.3 as the note reads them; the diagonal is set to 0 and never averaged."""
    dhat = normalized_confusion(c)
    m = (1.0 - dhat) if similar else dhat          # Eq 7.2 (skipped by the dissimilar variant)
    d = 0.5 * (m + m.T)
    np.fill_diagonal(d, 0.0)
    return d


def _mean_off_diagonal(d: np.ndarray) -> np.ndarray:
    k = len(d)
    return (d.sum(1) - np.diag(d)) / (k - 1)


def _argmax_ties(values: np.ndarray, candidates: list[int], rng: np.random.Generator) -> int:
    v = values[candidates]
    best = [candidates[i] for i in np.flatnonzero(np.abs(v - v.max()) <= 1e-12)]   # isclose(rtol=0, atol=1e-12)
    return int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])


def greedy_balanced_groups(d: np.ndarray, n_groups: int, seed: int = 0, seeding: str = "thesis") -> np.ndarray:
    """gamma: label -> group id (0..G-1), by the thesis' greedy balanced clustering on distances ``d``.

    Seeding ``"thesis"``: while a cluster is empty, the pooled label with the highest average
    distance to all other labels goes into an empty cluster. ``"farthest"``: the first seed as the
    thesis', each next one the pooled label whose smallest distance to the seeds taken is largest.
    Then, until the pool is empty, the (pooled label, cluster with fewer than ceil(k/G) labels) pair
    of smallest average distance from the label to the cluster's members is assigned; a tie between
    clusters goes to a random one of them (``seed``), a tie between labels to the lowest label.
    """
    d = np.asarray(d, dtype=np.float64)
    k = len(d)
    if seeding not in SEEDINGS:
        raise ValueError(f"seeding '{seeding}': choose from {', '.join(SEEDINGS)}")
    if not 2 <= n_groups <= k // 2:
        raise ValueError(f"{n_groups} groups for {k} labels: the thesis needs 2 <= G <= k/2 (L1657)")
    rng = np.random.default_rng(seed)
    avg = _mean_off_diagonal(d)
    pool = list(range(k))
    clusters: list[list[int]] = []
    while len(clusters) < n_groups:          # every cluster gets its seed first: none stays empty
        if seeding == "thesis" or not clusters:
            pick = _argmax_ties(avg, pool, rng)
        else:
            seeds = [c[0] for c in clusters]
            pick = _argmax_ties(d[:, seeds].min(1), pool, rng)
        pool.remove(pick)
        clusters.append([pick])
    cap = math.ceil(k / n_groups)
    while pool:
        open_ = [g for g, c in enumerate(clusters) if len(c) < cap]
        # average distance of every pooled label (rows) to every open cluster's members (columns)
        members = np.zeros((k, len(open_)))
        for j, g in enumerate(open_):
            members[clusters[g], j] = 1.0 / len(clusters[g])
        cost = d[pool] @ members
        best = cost.min()
        tied = np.isclose(cost, best, rtol=0, atol=1e-12)
        row = int(np.flatnonzero(tied.any(1))[0])
        cols = np.flatnonzero(tied[row])
        g = open_[int(cols[rng.integers(len(cols))]) if len(cols) > 1 else int(cols[0])]
        clusters[g].append(pool.pop(row))
    gamma = np.empty(k, dtype=np.int64)
    for g, members in enumerate(clusters):
        gamma[members] = g
    return gamma


def group_labels(c: np.ndarray, n_groups: int, seed: int = 0, seeding: str = "thesis",
                 similar: bool = True) -> np.ndarray:
    """Confusion matrix -> gamma, the thesis' pipeline in one call."""
    return greedy_balanced_groups(distance_matrix(c, similar), n_groups, seed, seeding)


def random_balanced_groups(k: int, n_groups: int, seed: int = 0) -> np.ndarray:
    """A random partition into G groups whose sizes differ by at most one (the reference for the share)."""
    rng = np.random.default_rng(seed)
    gamma = np.empty(k, dtype=np.int64)
    gamma[rng.permutation(k)] = np.arange(k) % n_groups
    return gamma


def within_group_share(c: np.ndarray, gamma: np.ndarray) -> float:
    """Share of the off-diagonal confusion mass that falls between labels of one group."""
    c = np.asarray(c, dtype=np.float64)
    off = c * (1.0 - np.eye(len(c)))
    same = gamma[:, None] == gamma[None, :]
    return float((off * same).sum() / off.sum())


def planted_block_confusion(k: int, n_blocks: int, n_per_label: int = 100, accuracy: float = 0.6,
                            in_block: float = 0.9, seed: int = 0,
                            blocks_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A confusion matrix with a known structure: labels in ``n_blocks`` random balanced blocks;
    each label's errors fall inside its block with probability ``in_block``. Returns (C, blocks).
    ``blocks_seed`` (default: ``seed``) draws the blocks, ``seed`` the counts: two seeds with one
    ``blocks_seed`` are independent samples of one structure."""
    rng = np.random.default_rng(seed)
    bs = seed if blocks_seed is None else blocks_seed
    blocks = random_balanced_groups(k, n_blocks, 1_000_003 + bs)   # a stream apart from share_table's draws
    c = np.zeros((k, k))
    for i in range(k):
        mates = np.flatnonzero((blocks == blocks[i]) & (np.arange(k) != i))
        others = np.flatnonzero(blocks != blocks[i])
        p = np.zeros(k)
        p[i] = accuracy
        p[mates] = (1 - accuracy) * in_block / len(mates)
        p[others] = (1 - accuracy) * (1 - in_block) / len(others)
        c[i] = rng.multinomial(n_per_label, p / p.sum())
    return c, blocks


def share_table(c: np.ndarray, group_counts, seed: int = 0, n_random: int = 200) -> dict:
    """Within-group confusion share of the thesis' grouping, the farthest-point variant and random
    balanced partitions (mean and 95 % quantile range over ``n_random`` draws), for every G."""
    k = len(c)
    out = {}
    for g in group_counts:
        rand = np.array([within_group_share(c, random_balanced_groups(k, g, seed * 10_000 + r))
                         for r in range(n_random)])
        out[g] = {"thesis": within_group_share(c, group_labels(c, g, seed, "thesis")),
                  "farthest": within_group_share(c, group_labels(c, g, seed, "farthest")),
                  "random_mean": float(rand.mean()), "random_q975": float(np.quantile(rand, 0.975)),
                  "random_q025": float(np.quantile(rand, 0.025))}
    return out


def out_of_sample_shares(c_group: np.ndarray, c_score: np.ndarray, group_counts, seed: int = 0,
                         n_random: int = 200, n_null: int = 20, seeding: str = "thesis",
                         similar: bool = True) -> dict:
    """The grouping judged out of sample: gamma from ``c_group`` (the thesis' rule), its within-group
    share scored on ``c_score``, a confusion matrix of independent images. References, scored the same
    way: random balanced partitions on ``c_score`` (95 % quantile range over ``n_random``), and the
    grouping of a structureless matrix with ``c_group``'s error count scored on a structureless matrix
    with ``c_score``'s (97.5 % quantile over ``n_null`` pairs). In sample, the greedy rule maximises
    the share of whatever matrix it is given, noise included; out of sample only structure carries over."""
    k = len(c_group)
    errs = [int(round(m.sum() - np.trace(m))) for m in (c_group, c_score)]
    correct = [float(np.trace(m)) for m in (c_group, c_score)]
    out = {}
    for g in group_counts:
        rand = np.array([within_group_share(c_score, random_balanced_groups(k, g, seed * 10_000 + r))
                         for r in range(n_random)])
        null = []
        for r in range(n_null):
            base = 2_000_003 + 1000 * seed + 2 * r
            ng = structureless_confusion(k, errs[0], correct[0], base)
            ns = structureless_confusion(k, errs[1], correct[1], base + 1)
            null.append(within_group_share(ns, group_labels(ng, g, seed, seeding, similar)))
        out[g] = {"thesis": within_group_share(c_score, group_labels(c_group, g, seed, seeding, similar)),
                  "in_sample": within_group_share(c_group, group_labels(c_group, g, seed, seeding, similar)),
                  "random_mean": float(rand.mean()), "random_q975": float(np.quantile(rand, 0.975)),
                  "null_mean": float(np.mean(null)), "null_q975": float(np.quantile(null, 0.975))}
    return out
