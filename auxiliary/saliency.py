"""SSAL's per-head CAMs under common/'s one signature (registered on import; declared under the
icv.saliency_methods entry points in pyproject.toml).

``ssal-cam-f`` is the CAM of the main head f, ``ssal-cam-g1`` .. ``ssal-cam-g3`` that of branch b for
the group of the target label (Fig 7.5 / A.8). They explain an ``auxiliary.ssal.SSALClassifier``
(an SSAL model with its group maps, scored through Eq 7.5's joint probability); ``applies_to`` is
true only for those (with at least b branches), so benchmarks over other models skip them."""
from __future__ import annotations

import numpy as np
import torch

from auxiliary import ssal as S
from common.saliency import register_method
from common.saliency_metrics import minmax


def _applies(min_branches: int):
    def applies(model) -> bool:
        return isinstance(model, S.SSALClassifier) and len(model.ssal.branches) >= min_branches
    return applies


def _head_cam(index: int):
    def run(model, images, targets):
        if not _applies(index)(model):
            raise TypeError(f"ssal-cam-{'f' if index == 0 else f'g{index}'} explains an auxiliary.ssal.SSALClassifier "
                            f"with at least {index} branches, got {type(model).__name__}")
        gamma = model.gammas[index - 1] if index else None
        t = np.asarray(torch.as_tensor(targets).cpu(), dtype=np.int64)
        maps = S.cam_function(index, gamma)(model.ssal, images, t)
        return minmax(torch.as_tensor(np.asarray(maps), dtype=torch.float32, device=images.device))
    return run


register_method("ssal-cam-f", label="SSAL CAM (main head f)", family="cam",
                implementation="pytorch-grad-cam (auxiliary/ssal.py)", source="000 Fig 7.5, A.8",
                applies_to=_applies(0))(_head_cam(0))
for _b in (1, 2, 3):
    register_method(f"ssal-cam-g{_b}", label=f"SSAL branch CAM (g{_b}, its group)", family="cam",
                    implementation="pytorch-grad-cam (auxiliary/ssal.py)", source="000 Fig 7.5, A.8",
                    applies_to=_applies(_b))(_head_cam(_b))
