"""One signature for every saliency method: ``method(model, images, targets, **options) -> maps``.

``images`` is a batch (N, C, H, W) exactly as the model takes it (normalised), ``targets`` the N
class indices; the result is an (N, H, W) float tensor at input resolution with values in [0, 1]
(per-map min-max, on the images' device), what ``common.saliency_metrics`` expects. Batched like
TorchRay's functions: a method may process the N images together (Opti-CAM, extremal and
meaningful perturbations optimise all of them in one loop) or loop inside.

The benchmark names methods by registry name, so anything registered here becomes a row of the
table. Another chapter cannot import this module (chapters never import each other); the
extension point for path-mask / SSAL branch CAMs is the ``icv.saliency_methods`` entry-point group
read by ``discover()`` (the mechanism common/data.py uses for datasets), and the lead's report asks
for this registry to move to ``common/`` (see attribution/README.md, "Extension point").
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
from typing import Callable

ENTRY_POINT_GROUP = "icv.saliency_methods"


@dataclasses.dataclass(frozen=True)
class SaliencyMethod:
    name: str                 # registry name, e.g. "gradcam"
    fn: Callable              # fn(model, images, targets, **options) -> (N, H, W) in [0, 1]
    label: str                # as printed in the tables ("Grad-CAM")
    family: str               # "cam" | "gradient" | "perturbation" | "baseline"
    implementation: str       # "pytorch-grad-cam" | "captum" | "torchray" | "ours (attribution/...)"
    source: str = ""          # where the method is defined in the sources
    needs_layer: bool = False  # takes a ``layer`` option (a module of the model; see layers.default_layer)


_METHODS: dict[str, SaliencyMethod] = {}


def register_method(name: str, *, label: str, family: str, implementation: str, source: str = "",
                    needs_layer: bool = False):
    """Decorator registering ``fn(model, images, targets, **options)`` under ``name``."""
    def deco(fn):
        _METHODS[name] = SaliencyMethod(name, fn, label, family, implementation, source, needs_layer)
        return fn
    return deco


def discover() -> dict[str, SaliencyMethod]:
    """This chapter's methods, plus those declared by installed packages under the entry-point
    group ``icv.saliency_methods`` (value ``module:function`` registering with the same signature)."""
    importlib.import_module("attribution.methods")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _METHODS:
            importlib.import_module(ep.value.split(":")[0])
    return dict(_METHODS)


def get_method(name: str) -> SaliencyMethod:
    methods = discover()
    if name not in methods:
        raise KeyError(f"unknown saliency method '{name}' (known: {', '.join(sorted(methods))})")
    return methods[name]
