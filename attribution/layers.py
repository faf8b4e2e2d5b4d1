"""Which layer a CAM method reads, and reading it.

002 L1033: VGG16 block 5 conv 3 (we take the ReLU after it: the note asks for post-ReLU maps, and
with batch norm the conv output itself is not the feature map), ResNet50 the output of the last
bottleneck (already post-ReLU). Our digit models name theirs (``cam_layer``)."""
from __future__ import annotations

import torch
import torch.nn as nn


def default_layer(model: nn.Module) -> nn.Module:
    """The layer CAM methods use for ``model`` (unwrapping ``.net`` / ``.model`` wrappers)."""
    inner = model
    for _ in range(3):
        if hasattr(inner, "cam_layer"):
            return inner.cam_layer
        if hasattr(inner, "layer4"):                               # torchvision ResNet
            return inner.layer4[-1]
        if hasattr(inner, "features") and isinstance(inner.features, nn.Sequential):   # torchvision VGG
            relus = [m for m in inner.features if isinstance(m, nn.ReLU)]
            return relus[-1]                                       # block 5 conv 3 (+ BN) + ReLU
        inner = getattr(inner, "net", None) or getattr(inner, "model", None)
        if inner is None:
            break
    raise ValueError(f"no default CAM layer for {type(model).__name__}: give the model a `cam_layer` attribute "
                     "or pass layer=<module>")


def layer_activations(model: nn.Module, layer: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations of ``layer``, logits) for ``images``, without gradients."""
    store = {}
    h = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o.detach()))
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        h.remove()
    return store["a"], logits
