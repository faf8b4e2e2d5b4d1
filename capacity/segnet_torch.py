"""The same SegNet in torch (NCHW, native max_pool2d indices + max_unpool2d): the bench's reference
and a test oracle (``load_flax_variables`` copies the Flax weights, outputs must agree)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _cbr(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5),
                         nn.ReLU(inplace=True))


class SegNetTorch(nn.Module):
    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512, 512), convs: Sequence[int] = (2, 2, 3, 3, 3),
                 in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        self.widths, self.convs = tuple(widths), tuple(convs)
        self.enc = nn.ModuleList()
        cin = in_channels
        for w, k in zip(widths, convs):
            layers = []
            for _ in range(k):
                layers.append(_cbr(cin, w))
                cin = w
            self.enc.append(nn.Sequential(*layers))
        self.dec = nn.ModuleList()
        for b in reversed(range(len(widths))):
            layers = []
            for i in range(convs[b]):
                last = i == convs[b] - 1
                if last and b == 0:
                    layers.append(nn.Conv2d(widths[b], out_channels, 3, padding=1))
                else:
                    layers.append(_cbr(widths[b], widths[b - 1] if last else widths[b]))
            self.dec.append(nn.Sequential(*layers))

    def forward(self, x):
        idx, sizes = [], []
        for blk in self.enc:
            x = blk(x)
            sizes.append(x.shape[-2:])
            x, i = F.max_pool2d(x, 2, 2, return_indices=True)
            idx.append(i)
        for j, blk in enumerate(self.dec):
            b = len(self.enc) - 1 - j
            x = F.max_unpool2d(x, idx[b], 2, 2, output_size=sizes[b])
            x = blk(x)
        return torch.sigmoid(x)


def load_flax_variables(model: SegNetTorch, variables) -> SegNetTorch:
    """Copy Flax SegNet variables (capacity.autoencoder) into the torch twin."""
    p, s = variables["params"], variables.get("batch_stats", {})

    def put_cbr(mod, fp, fs):
        conv, bn = mod[0], mod[1]
        conv.weight.data = torch.from_numpy(np.asarray(fp["Conv_0"]["kernel"]).transpose(3, 2, 0, 1).copy())
        bn.weight.data = torch.from_numpy(np.asarray(fp["BatchNorm_0"]["scale"]).copy())
        bn.bias.data = torch.from_numpy(np.asarray(fp["BatchNorm_0"]["bias"]).copy())
        bn.running_mean.data = torch.from_numpy(np.asarray(fs["BatchNorm_0"]["mean"]).copy())
        bn.running_var.data = torch.from_numpy(np.asarray(fs["BatchNorm_0"]["var"]).copy())

    n = 0
    for blk in model.enc:
        for mod in blk:
            put_cbr(mod, p["encoder"][f"ConvBNReLU_{n}"], s["encoder"][f"ConvBNReLU_{n}"])
            n += 1
    n = 0
    for blk in model.dec:
        for mod in blk:
            if isinstance(mod, nn.Conv2d):
                mod.weight.data = torch.from_numpy(np.asarray(p["decoder"]["Conv_0"]["kernel"]).transpose(3, 2, 0, 1).copy())
                mod.bias.data = torch.from_numpy(np.asarray(p["decoder"]["Conv_0"]["bias"]).copy())
            else:
                put_cbr(mod, p["decoder"][f"ConvBNReLU_{n}"], s["decoder"][f"ConvBNReLU_{n}"])
                n += 1
    return model
