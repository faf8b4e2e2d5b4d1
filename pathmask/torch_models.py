"""PyTorch copies of the trained Flax CNN and VAE decoder (eval mode), weight for weight.

Two uses: the "beyond the document" table scores path-mask against captum / pytorch-grad-cam on
the very same classifier (those libraries take torch modules), and ``bench/morphing.py`` runs the
thesis-style per-sample eager torch loop as the speed reference. Both need the copy to compute what
the Flax model computes: ``tests/test_pathmask_torch.py`` checks identical logits and decodings.

Translations (Flax NHWC -> torch NCHW):
- Conv kernel (kh, kw, in, out) -> (out, in, kh, kw).
- Flax ``ConvTranspose`` (transpose_kernel=False) is a fractionally strided convolution with the
  kernel as is; torch's ``ConvTranspose2d`` is the gradient of a convolution, i.e. the same with the
  kernel flipped: torch weight (in, out, kh, kw) = flax kernel flipped in both spatial axes.
  Flax's VALID transpose cropped by p each side = torch ``padding=p``.
- Flatten / reshape order: Flax flattens (H, W, C), torch (C, H, W): the Dense after the trunk has
  its input rows permuted, the decoder's first Dense its output columns.
- BatchNorm: running statistics, eps 1e-5 (Flax and torch both normalise by sqrt(var + eps)).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pathmask.models import CNN_HIDDEN, CONVS, DECONVS, IMAGE_SHAPE


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, np.float32).copy())


def _bn_from(p, s, n: int, bn: nn.Module):
    bn.weight.data, bn.bias.data = _t(p["scale"]), _t(p["bias"])
    bn.running_mean.data, bn.running_var.data = _t(s["mean"]), _t(s["var"])
    bn.eps = 1e-5
    return bn


def _trunk(convs, params, stats, in_ch):
    """ConvTrunk of pathmask.models as an nn.Sequential (Conv_i / BatchNorm_i in Flax's order)."""
    layers, ci, k_conv = [], in_ch, 0
    for c in convs:
        if c == "pool":
            layers.append(nn.MaxPool2d(2))
            continue
        f, k, s, p = c
        conv = nn.Conv2d(ci, f, k, stride=s, padding=p, bias=False)
        conv.weight.data = _t(np.transpose(np.asarray(params[f"Conv_{k_conv}"]["kernel"]), (3, 2, 0, 1)))
        bn = _bn_from(params[f"BatchNorm_{k_conv}"], stats[f"BatchNorm_{k_conv}"], f, nn.BatchNorm2d(f))
        layers += [conv, bn, nn.ReLU()]
        ci, k_conv = f, k_conv + 1
    return nn.Sequential(*layers)


class _FlattenHWC(nn.Module):
    """Flatten NCHW in Flax's (H, W, C) order, so the Dense weights copy without permutation."""
    def forward(self, x):
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class TorchCNN(nn.Module):
    """The CNN of listings C.1 / C.3 / C.5 in torch, eval mode; input NCHW in [0, 1]."""

    def __init__(self, arch: str, variables: dict):
        super().__init__()
        params, stats = variables["params"], variables["batch_stats"]
        key = "mnist" if arch == "mnist" else f"{arch}_cnn"
        tp, ts = params["ConvTrunk_0"], stats["ConvTrunk_0"]
        self.features = _trunk(CONVS[key], tp, ts, IMAGE_SHAPE[arch][-1])
        head = [_FlattenHWC()]
        for i, width in enumerate(CNN_HIDDEN[arch]):
            w = np.asarray(params[f"Dense_{i}"]["kernel"])
            lin = nn.Linear(w.shape[0], width, bias=False)
            lin.weight.data = _t(w.T)
            head += [lin, _bn_from(params[f"BatchNorm_{i}"], stats[f"BatchNorm_{i}"], width, nn.BatchNorm1d(width)),
                     nn.ReLU()]
        last = params[f"Dense_{len(CNN_HIDDEN[arch])}"]
        out = nn.Linear(last["kernel"].shape[0], last["kernel"].shape[1])
        out.weight.data, out.bias.data = _t(np.asarray(last["kernel"]).T), _t(last["bias"])
        self.head = nn.Sequential(*head, out)
        self.eval()

    def forward(self, x):
        return self.head(self.features(x))


class TorchDecoder(nn.Module):
    """The VAE decoder of listings C.2 / C.4 / C.6 in torch, eval mode: code (B, d) -> NCHW."""

    def __init__(self, arch: str, variables: dict):
        super().__init__()
        params, stats = variables["params"]["decoder"], variables["batch_stats"]["decoder"]
        self.shape, layers = DECONVS[arch]
        w = np.asarray(params["Dense_0"]["kernel"])
        self.fc = nn.Linear(w.shape[0], w.shape[1])
        self.fc.weight.data, self.fc.bias.data = _t(w.T), _t(params["Dense_0"]["bias"])
        self.fc_bn = _bn_from(params["BatchNorm_0"], stats["BatchNorm_0"], w.shape[1], nn.BatchNorm1d(w.shape[1]))
        mods, ci, k_conv = [], self.shape[2], 0
        for i, layer in enumerate(layers):
            if layer == "up":
                mods.append(nn.Upsample(scale_factor=2, mode="nearest"))
                continue
            f, k, s, p = layer
            conv = nn.ConvTranspose2d(ci, f, k, stride=s, padding=p, bias=False)
            kern = np.asarray(params[f"ConvTranspose_{k_conv}"]["kernel"])[::-1, ::-1]      # flip: see module doc
            conv.weight.data = _t(np.transpose(kern, (2, 3, 0, 1)))
            bn = _bn_from(params[f"BatchNorm_{k_conv + 1}"], stats[f"BatchNorm_{k_conv + 1}"], f, nn.BatchNorm2d(f))
            mods += [conv, bn, nn.Sigmoid() if i == len(layers) - 1 else nn.ReLU()]
            ci, k_conv = f, k_conv + 1
        self.deconv = nn.Sequential(*mods)
        self.eval()

    def forward(self, z):
        h = torch.relu(self.fc_bn(self.fc(z)))
        H, W, C = self.shape
        h = h.reshape(h.shape[0], H, W, C).permute(0, 3, 1, 2)     # Flax reshapes (H, W, C)
        return self.deconv(h)


def torch_copies(models) -> tuple[TorchCNN, TorchDecoder]:
    """(CNN, decoder) of a ``pathmask.training.Models`` as torch modules in eval mode."""
    arch = models.cfg.resolved_arch() if models.cfg is not None else "mnist"
    return TorchCNN(arch, models.cnn_vars), TorchDecoder(arch, models.vae_vars)
