"""One benchmark for every saliency method of the registry (002's classification metrics, 002's
insertion / deletion, 001's pointing game), with seconds per image.

``common.saliency.run_benchmark`` is the protocol: it scores the grid of the config's ``saliency``
section (methods **by registry name**, their options, images per method) with the one signature on
the same images, every map with ``common.saliency_metrics``. The experiment functions
(``table_benchmark``, ``figure_extremal_areas``) wire it to the data and models; this module adds
the chapter's intervals and table rows.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from common.saliency import benchmark_metrics, get_method
from common.claims import binomial_ci, bootstrap_ci


def paired_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95 % bootstrap interval of mean(a - b) over the images both scored: every method scores a
    prefix of the same ordered images, so the shorter prefix is the common set."""
    k = min(len(a), len(b))
    d = np.asarray(a[:k], dtype=np.float64) - np.asarray(b[:k], dtype=np.float64)
    return bootstrap_ci(d[~np.isnan(d)])


def model_key(cfg) -> str:
    """The model / data name of the benchmark rows (``saliency/<model_key>/<method>/<score>``)."""
    return "mnist5k-canvas-cnn" if cfg.model == "canvas_cnn" else f"{cfg.model}-{cfg.dataset}"


def metrics_of(scores: Mapping[str, dict], key: str, prefix: str = "") -> dict[str, float]:
    """The benchmark rows (``common.saliency.benchmark_metrics``: ``saliency/<key>/<method>/<score>``,
    the keys the repository-wide table collects) plus the intervals the claims read (chapter keys
    ``<method>_pointing_lo/hi``, ``fakecam_minus_gradcam_AD_hi``, ...; no score is stored twice)."""
    m = benchmark_metrics(scores, key)
    for name, r in scores.items():
        if "pointing_n" in r:
            lo, hi = binomial_ci(r["pointing_hits"], r["pointing_n"])
            m[f"{prefix}{name}_pointing_lo"], m[f"{prefix}{name}_pointing_hi"] = 100 * lo, 100 * hi
    for other in ("gradcam", "opticam"):
        if "fakecam" in scores and other in scores:
            f, g = scores["fakecam"], scores[other]
            for key, each in (("AD", "drop"), ("AG", "gain"), ("insertion", "insertion_each"),
                              ("deletion", "deletion_each")):
                lo, hi = paired_interval(f[each], g[each])
                m[f"{prefix}fakecam_minus_{other}_{key}_lo"], m[f"{prefix}fakecam_minus_{other}_{key}_hi"] = lo, hi
    if "opticam" in scores and "gradcam" in scores:
        for key, each in (("AD", "drop"), ("AG", "gain")):
            lo, hi = paired_interval(scores["opticam"][each], scores["gradcam"][each])
            m[f"{prefix}opticam_minus_gradcam_{key}_lo"], m[f"{prefix}opticam_minus_gradcam_{key}_hi"] = lo, hi
    # 002's O1 as stated (Tab 2.1, bold = best excluding Fake-CAM): Opti-CAM's AD below and AG above
    # every other method's; the least favourable paired interval over the others
    others = [n for n in scores if n not in ("opticam", "fakecam")]
    if "opticam" in scores and others:
        o = scores["opticam"]
        ad = {n: paired_interval(o["drop"], scores[n]["drop"]) for n in others}
        ag = {n: paired_interval(o["gain"], scores[n]["gain"]) for n in others}
        worst_ad = max(ad, key=lambda n: ad[n][1])
        worst_ag = min(ag, key=lambda n: ag[n][0])
        m[f"{prefix}opticam_minus_best_other_AD_hi"] = ad[worst_ad][1]
        m[f"{prefix}opticam_minus_best_other_AG_lo"] = ag[worst_ag][0]
    # extremal vs the centre baseline, like with like: the same images, per-image hits paired
    if "extremal" in scores and "center" in scores and "pointing_each" in scores["extremal"]:
        lo, hi = paired_interval(scores["extremal"]["pointing_each"], scores["center"]["pointing_each"])
        m[f"{prefix}extremal_minus_center_pointing_lo"], m[f"{prefix}extremal_minus_center_pointing_hi"] = lo, hi
    return m


def table_rows(scores: Mapping[str, dict], reported: Mapping[str, float] | None = None, model_key: str = ""):
    """Rows: method, implementation, AD, AG, AI, insertion, deletion, pointing, s/img (+ reported)."""
    rows = []
    for name, r in scores.items():
        meth = get_method(name)
        row = [meth.label, meth.implementation, r["n"], r["AD"], r["AG"], r["AI"], r["insertion"], r["deletion"],
               r.get("pointing", "-"), r["seconds_per_image"]]
        if reported is not None:
            row += [reported.get(f"{model_key}{name}_{k}", {"value": "-"}).get("value", "-")
                    if isinstance(reported.get(f"{model_key}{name}_{k}"), dict)
                    else reported.get(f"{model_key}{name}_{k}", "-") for k in ("AD", "AG", "AI", "insertion", "deletion")]
        rows.append(row)
    return rows


def interval_rows(scores: Mapping[str, dict]):
    """Per method: images scored and the 95 % interval of each score over them."""
    def ci(v):
        lo, hi = bootstrap_ci(np.asarray(v))
        return f"[{lo:.1f}, {hi:.1f}]"
    rows = []
    for name, r in scores.items():
        pg = "-"
        if "pointing_n" in r:
            lo, hi = binomial_ci(r["pointing_hits"], r["pointing_n"])
            pg = f"[{100 * lo:.1f}, {100 * hi:.1f}]"
        rows.append([get_method(name).label, r["n"], ci(r["drop"]), ci(r["gain"]), ci(r["insertion_each"]),
                     ci(r["deletion_each"]), pg])
    return rows


HEADERS = ["method", "implementation", "images", "AD ↓", "AG ↑", "AI ↑", "insertion ↑", "deletion ↓", "pointing ↑", "s / image"]


def figure_grid(x_show: np.ndarray, scores: Mapping[str, dict], n: int, boxes=None):
    """One row per image, one column per method: the map over the image (and the target box)."""
    from common.plotting import plt
    names = list(scores)
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(1.3 * (len(names) + 1), 1.4 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(x_show[i], cmap="gray")
        if i == 0:
            axes[i, 0].set_title("image", fontsize=7)
        for j, name in enumerate(names, 1):
            axes[i, j].imshow(x_show[i], cmap="gray")
            axes[i, j].imshow(scores[name]["maps"][i].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if i == 0:
                axes[i, j].set_title(get_method(name).label, fontsize=7)
        for j in range(len(names) + 1):
            if boxes is not None:
                x0, y0, x1, y1 = boxes[i]
                axes[i, j].add_patch(plt.Rectangle((x0 - .5, y0 - .5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                                                   edgecolor="w", lw=0.6))
            axes[i, j].axis("off")
    fig.tight_layout()
    return fig


def is_nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)
