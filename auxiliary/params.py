"""Parameter counts of every model of Tab 7.1, 7.2 and 7.3 built at the thesis' size (no training),
counted as Keras counts them (``models.keras_param_count``) beside PyTorch's count and the printed one.
"""
from __future__ import annotations

import dataclasses

from auxiliary import models as M
from auxiliary.config import TAB_7_1_BRANCH
from auxiliary.pipeline import TAB_7_3_POINTS, build_model
from common.trainer import count_params

# --------------------------------------------------------------------------------------------------
# Parameter counts (no training)
# --------------------------------------------------------------------------------------------------
TAB_7_2_PRINTED = {"ResNet18": 11.2, "WideResNet18": 25.3, "DeepResNet18": 13.3, "DWRResNet18": 19.0,
                   "GapCatNoSSAL": 15.6, "CatFCNoSSAL": 13.6, "LinearComb": 12.8, "SSAL x1": 12.6, "SSAL x3": 15.6}


def tab_7_2_counts(keras: bool = True) -> dict[str, int]:
    """Our counts of Tab 7.2's models (ResNet18, TinyImageNet: 200 classes, 3x3 kernels, Tab A.2
    branches), as Keras counts them (``models.keras_param_count``; ``keras=False``: PyTorch's count)."""
    count = M.keras_param_count if keras else count_params
    out = {}
    for name in TAB_7_2_PRINTED:
        model_name = "SSAL x1" if name == "LinearComb" else name
        n = count(M.tab_7_2_model(model_name))
        if name == "LinearComb":    # + the linear layer over f (200) and the branch's outputs (20)
            n += (200 + M.TAB_7_2_GROUPS[0]) * 200 + 200
        out[name] = n
    return out


# (architecture, branches) -> printed count, Tab 7.1 and 7.3 (CIFAR100)
PRINTED_OTHER = {("resnet18", 0): 11.23, ("resnet18", 1): 11.92, ("resnet18", 2): 12.83, ("resnet50", 0): 23.77,
                 ("resnet50", 1): 25.07, ("resnet50", 3): 28.89, ("wrn28-10", 0): 36.56, ("wrn28-10", 1): 38.19,
                 ("wrn28-10", 3): 43.25, ("se-wrn16-8", 0): 11.1, ("se-wrn16-8", 3): 14.9, ("densenet190-40", 0): 26.1,
                 ("densenet190-40", 3): 38.3}
POINTS = {"resnet18": ("g2", "g3", "g4"), **TAB_7_3_POINTS}   # ResNet18 (Tab 7.1): one / two branches at g2, g3


def _printed_digits(v: float) -> int:
    return len(repr(float(v)).split(".")[1])


def parameter_counts(cfg, ctx) -> dict:
    """Every model of Tab 7.1, 7.2 and 7.3 built at the thesis' size and counted as Keras counts
    (conv biases, batch norm's moving statistics; PyTorch's own count beside it), against the printed
    count at its printed precision."""
    metrics, rows = {}, []
    torch_counts = tab_7_2_counts(keras=False)
    for name, n in tab_7_2_counts().items():
        key = f"tab7_2_{name.replace(' ', '_')}"
        metrics[f"{key}_M"], metrics[f"{key}_torch_M"] = n / 1e6, torch_counts[name] / 1e6
        pr = TAB_7_2_PRINTED[name]
        rows.append(["Tab 7.2", name, f"{n / 1e6:.3f}", f"{torch_counts[name] / 1e6:.3f}", pr,
                     "yes" if round(n / 1e6, 1) == pr else f"no ({n / 1e6 - pr:+.2f})"])
    thesis_cfg = dataclasses.replace(cfg, branch_layout="thesis")
    groups = {1: (20,), 2: (20, 50), 3: (20, 33, 50)}
    for (arch, nb), printed in PRINTED_OTHER.items():
        pts = ("g2", "g3") if arch == "resnet18" else POINTS[arch]
        # ResNet18 rows are Tab 7.1's: its own branch (two convs + an inception-like layer, L1732)
        row_cfg = dataclasses.replace(cfg, **TAB_7_1_BRANCH) if arch == "resnet18" else thesis_cfg
        m = build_model(row_cfg, arch, 100, 3, pts[:nb], groups.get(nb, ()))
        n, nt = M.keras_param_count(m), count_params(m)
        metrics[f"{arch}_{nb}br_M"], metrics[f"{arch}_{nb}br_torch_M"] = n / 1e6, nt / 1e6
        same = round(n / 1e6, _printed_digits(printed)) == printed
        rows.append(["Tab 7.1/7.3", f"{arch}, {nb} branches", f"{n / 1e6:.3f}", f"{nt / 1e6:.3f}", printed,
                     "yes" if same else f"no ({n / 1e6 - printed:+.2f})"])
    ctx.table("Parameter counts (millions): computed by the code beside the thesis' printed ones",
              ["table", "model", "ours, Keras count (M)", "ours, PyTorch count (M)", "thesis (M)",
               "same at the printed precision"], rows, digits=3)
    ctx.note("Counts follow Keras' 'Total params' (conv biases, batch norm's moving statistics), the convention "
             "that reproduces the printed backbones (ResNet18 11.23, WRN-28-10 36.56, DenseNet-190-40 26.1 M). "
             "Tab 7.1/7.3 branches use our reconstruction of Tab A.3-A.5 (merged cells and Fig A.7 lost in the "
             "text), so their SSAL counts are ours, not the thesis'.")
    return metrics
