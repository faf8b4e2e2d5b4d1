"""The chapter's trained models as one object, for this chapter's evaluation and for other chapters
(adversarial/ attacks the classifiers f_i and the autoencoders A_S, A_i): ``trained_models(cfg,
ctx)`` trains every stage through the capacity pipeline the first time and loads it from its work
folder afterwards (same folders as the capacity experiments with the same config and seed).

    from capacity.config import CapacityConfig
    from capacity.models import trained_models
    m = trained_models(cfg, ctx)
    logits = m.classifiers["lenet"](x_nchw_01)              # torch, frozen, eval mode
    recon = m.autoencode("lenet", x_u8_nhwc)                # A_lenet(x) in [0, 1], NHWC (JAX)

No torch or JAX at import time (experiments/ may import this module while registering).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass
class CapacityModels:
    classifiers: dict                 # name -> f_i: torch module taking [0, 1] NCHW images; frozen, eval mode,
                                      # on the run's device
    segnet: Any                       # the Flax SegNet module shared by A_S and every A_i
    variables: dict                   # "A_S" -> variables of the pre-trained A_S; classifier name -> those of A_i
    reconstruct: Callable             # jitted (variables, uint8 NHWC) -> reconstruction, float32 NHWC in [0, 1]
    image_shape: tuple                # (H, W, C) the autoencoders and classifiers take
    clf_info: dict = dataclasses.field(default_factory=dict)   # how each f_i was obtained (trained / zoo)
    ae_info: dict = dataclasses.field(default_factory=dict)    # final losses, lr drops, steps
    classifier_dirs: dict = dataclasses.field(default_factory=dict)   # name -> stage folder of a trained f_i
    autoencoder_dirs: dict = dataclasses.field(default_factory=dict)  # "A_S" / name -> stage folder of A_S / A_i

    def autoencode(self, name: str, x_u8):
        """A_name(x): ``name`` is "A_S" or a classifier's name (its fine-tuned A_i)."""
        return self.reconstruct(self.variables[name], x_u8)


def trained_models(cfg, ctx) -> CapacityModels:
    """Load (or train, the first time) the f_i, A_S and every A_i of ``cfg`` (a CapacityConfig).

    Loads the chapter's datasets through ``ctx`` (so they are recorded in the caller's run); the
    stages' work folders name exactly the datasets each reads, so what the caller loaded before does
    not change them.
    """
    from capacity.pipeline import load_sources, train_models
    return train_models(cfg, ctx, load_sources(cfg, ctx))
