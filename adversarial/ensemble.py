"""The models under attack, all torch modules on [0, 1] NCHW images returning logits:

- f_i: capacity's frozen classifier (the vulnerable baseline);
- StSNet f_i o A_i (6.2.1): the classifier behind the autoencoder fine-tuned for it; f_R o A_S
  behind the pre-trained one;
- BPDA f_i o A_i (Fig 6.5, the note's reading): forward through the whole ensemble, backward
  through the classifier only: the gradient of the loss w.r.t. the reconstruction A(x) is applied
  to x as if A were the identity (straight-through).

Gradients must flow through the JAX autoencoder. Two ways, same numbers (tests/test_adversarial.py
checks outputs and input gradients agree): ``"torch"`` copies the Flax weights into capacity's torch
twin of the SegNet (capacity/segnet_torch.py) and stays in torch autograd; ``"bridge"`` calls the
jitted Flax forward through ``common.bridge.jax_as_torch``. bench/attacks.py times both; "torch" is
the default: the ensemble is then a plain torch module (torchattacks' AutoAttack needs nothing else)
and, with batch norm folded, the faster of the two on CPU.

Every attacked module is frozen (parameters without gradients: C&W's backward and torchattacks'
then compute input gradients only) and, with ``fold_bn``, its eval-mode batch norms are folded into
the convolutions before them (``torch.fx`` conv-bn fusion on the largest submodules that trace): the same function (tests: outputs and input gradients equal to float
tolerance), without batch norm's forward and backward passes, about a fifth of an ensemble input
gradient on CPU (profiled in bench/attacks.py).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn


def _fold_sequential(module: nn.Module) -> nn.Module:
    """Fold every Conv2d -> BatchNorm2d pair that sits inside an nn.Sequential (in place)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    for child in module.children():
        _fold_sequential(child)
    if isinstance(module, nn.Sequential):
        mods = list(module)
        for i in range(len(mods) - 1):
            if isinstance(mods[i], nn.Conv2d) and isinstance(mods[i + 1], nn.BatchNorm2d) \
                    and mods[i + 1].track_running_stats:
                module[i] = fuse_conv_bn_eval(mods[i], mods[i + 1])
                module[i + 1] = nn.Identity()
    return module


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` with batch norm folded into the preceding convolutions."""
    import copy
    return _fold_traceable(copy.deepcopy(module).eval())


def _fold_traceable(module: nn.Module) -> nn.Module:
    """torch.fx conv-bn fusion on the largest traceable submodules: the module itself, else each
    child in turn (torchvision's Inception-v3 and capacity's preprocessing wrapper do not trace as a
    whole, their blocks do), plus the Conv-BN pairs of an untraceable nn.Sequential."""
    import torch.fx.experimental.optimization as fx_opt
    if not any(isinstance(m, nn.BatchNorm2d) for m in module.modules()):
        return module
    try:
        return fx_opt.fuse(module, inplace=True)
    except Exception:   # untraceable forward (control flow on values, namedtuple outputs, ...)
        for name, child in module.named_children():
            setattr(module, name, _fold_traceable(child))
        return _fold_sequential(module)


def prepare_frozen(module: nn.Module, fold_bn: bool = True) -> nn.Module:
    """The module as attacked: eval mode, parameters frozen, batch norm folded (``fold_bn``)."""
    import copy
    module = fold_batch_norm(module) if fold_bn else copy.deepcopy(module).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


class TorchAutoencoder(nn.Module):
    """A (Flax variables) as capacity's torch SegNet twin, frozen, eval mode (batch-norm statistics,
    folded into the convolutions with ``fold_bn``)."""

    def __init__(self, segnet, variables, channels: int, fold_bn: bool = True):
        super().__init__()
        from capacity.segnet_torch import SegNetTorch, load_flax_variables
        net = SegNetTorch(tuple(segnet.widths), tuple(segnet.convs), channels, channels)
        net = load_flax_variables(net, variables).eval()
        self.net = prepare_frozen(_fold_sequential(net) if fold_bn else net, fold_bn=False)

    def forward(self, x):
        return self.net(x)


class BridgeAutoencoder(nn.Module):
    """A as the jitted Flax forward inside torch autograd (common.bridge.jax_as_torch)."""

    def __init__(self, segnet, variables):
        super().__init__()
        import jax.numpy as jnp
        from common.bridge import jax_as_torch

        def fwd(x_nchw):
            y = segnet.apply(variables, jnp.transpose(x_nchw, (0, 2, 3, 1)), train=False)
            return jnp.transpose(y, (0, 3, 1, 2))
        self._fn = jax_as_torch(fwd)

    def forward(self, x):
        return self._fn(x.contiguous())


class Composite(nn.Module):
    """f o A. ``straight_through``: backward skips A (d x_hat / d x := identity), Fig 6.5."""

    def __init__(self, classifier: nn.Module, autoencoder: nn.Module, straight_through: bool = False):
        super().__init__()
        self.classifier, self.autoencoder, self.straight_through = classifier, autoencoder, straight_through

    def reconstruct(self, x):
        r = self.autoencoder(x)
        if self.straight_through:
            r = x + (r - x).detach()    # value A(x), gradient to x = gradient at A(x)
        return r

    def forward(self, x):
        return self.classifier(self.reconstruct(x))


@dataclasses.dataclass
class Ensemble:
    """Every model the chapter attacks, by name, and the autoencoders alone (Tab 6.1)."""
    models: dict            # "f_R", "f_I", "f_R o A_R", "f_I o A_I", "f_R o A_S", "BPDA f_R o A_R", ...
    autoencoders: dict      # "A_R", "A_I", "A_S" -> torch module [0, 1] NCHW -> [0, 1] NCHW
    names: dict             # role letter -> capacity classifier name ("R": "residual")


def autoencoder_module(backend: str, segnet, variables, channels: int, fold_bn: bool = True) -> nn.Module:
    if backend == "torch":
        return TorchAutoencoder(segnet, variables, channels, fold_bn)
    if backend == "bridge":
        return BridgeAutoencoder(segnet, variables)
    raise ValueError(f"unknown ae_backend '{backend}' (torch or bridge)")


def build_ensemble(models, role_names: dict, backend: str = "torch", fold_bn: bool = True) -> Ensemble:
    """``models``: capacity's CapacityModels; ``role_names``: {"R": name, "I": name}. The classifiers
    are frozen copies (``prepare_frozen``); capacity's objects are left as they were."""
    channels = models.image_shape[-1]
    dev = next(next(iter(models.classifiers.values())).parameters()).device
    aes = {"A_S": autoencoder_module(backend, models.segnet, models.variables["A_S"], channels, fold_bn).to(dev)}
    out = {}
    frozen = {}
    for role, name in role_names.items():
        f = frozen[name] = prepare_frozen(models.classifiers[name], fold_bn)
        a = autoencoder_module(backend, models.segnet, models.variables[name], channels, fold_bn).to(dev)
        aes[f"A_{role}"] = a
        out[f"f_{role}"] = f
        out[f"f_{role} o A_{role}"] = Composite(f, a)
        out[f"BPDA f_{role} o A_{role}"] = Composite(f, a, straight_through=True)
    out["f_R o A_S"] = Composite(frozen[role_names["R"]], aes["A_S"])
    out["f_I o A_S"] = Composite(frozen[role_names["I"]], aes["A_S"])   # the adaptive curve's f_i o A_S
    for m in out.values():
        m.eval()
    return Ensemble(models=out, autoencoders=aes, names=dict(role_names))
