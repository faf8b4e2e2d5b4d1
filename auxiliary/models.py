"""SSAL models (000 ch. 7.2.2): a backbone cut at named attachment points g1..g6, auxiliary
branches hanging from them (hard parameter sharing), and the Tab 7.2 ablation models.

Every backbone is a list of ``segments`` with a point after each (``points[i]`` follows
``segments[i]``), then a ``head`` (final norm where the architecture has one, GAP, linear). The
points exist only in the thesis' Fig 7.2 (an image); our mapping, consistent with the text's
fragments (g1 before the first residual block, g2 after it, "before, after and in-between
macro-blocks"; ResNet50 uses g2-g4, WRN and DenseNet g2, g5, g6), is:

- ResNet (CIFAR and ImageNet, also the small default ``resnet_mini``): g1 after the stem, then one
  point after every stage (g2 after layer1 ... g5 after layer4);
- WRN / SE-WRN (3 groups): g1 after the stem, g2 after group 1, g3 half-way through group 2, g4
  after group 2, g5 half-way through group 3, g6 after group 3;
- DenseNet-BC (3 dense blocks): g1 after the stem, g2 after block 1, g3 after transition 1, g4 after
  block 2, g5 after transition 2, g6 after block 3.

Branches: ``ConvBranch`` (Fig 7.3 / Tab A.2: 3x3 conv+BN+ReLU layers, GAP, FC + ReLU, output FC) and
``InceptionBranch`` (Tab 7.1, A.3-A.5: a few conv+BN+ReLU, inception-like layers, GAP, optional FC,
linear). Fig A.7's AuxInception blocks survive only as an image; ``AuxInception`` is our
reconstruction of the E-type block (1x1; 1x1 -> 1x3 | 3x1; 1x1 -> 3x3 -> 1x3 | 3x1; pool -> 1x1).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import resnet as tv_resnet
from torchvision.models.densenet import _DenseBlock, _Transition


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Backbone(nn.Module):
    """Segments with a named point after each, then the head (``head_norm``, GAP, ``fc``)."""

    def __init__(self, segments: Sequence[nn.Module], points: Sequence[str], channels: Sequence[int],
                 n_classes: int, head_norm: nn.Module | None = None, name: str = ""):
        super().__init__()
        assert len(segments) == len(points) == len(channels)
        self.segments = nn.ModuleList(segments)
        self.points, self.channels, self.name = list(points), list(channels), name
        self.head_norm = head_norm if head_norm is not None else nn.Identity()
        self.features_dim = channels[-1]
        self.fc = nn.Linear(channels[-1], n_classes)

    def point_channels(self, point: str) -> int:
        return self.channels[self.points.index(point)]

    def run(self, x: torch.Tensor, taps: Sequence[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Final feature map (after ``head_norm``) and the feature maps at the points in ``taps``."""
        out = {}
        for seg, p in zip(self.segments, self.points):
            x = seg(x)
            if p in taps:
                out[p] = x
        return self.head_norm(x), out

    def forward(self, x):
        fmap, _ = self.run(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(fmap, 1), 1))


def keras_param_count(model: nn.Module) -> int:
    """Parameters as Keras' ``model.summary()`` "Total params" counts them, the convention of the
    thesis' printed counts (its CIFAR / TinyImageNet code is Keras): every conv has a bias (Keras'
    ``use_bias=True`` default; ours have none, being followed by batch norm) and every batch norm
    holds 4 numbers per channel (gamma, beta, and the moving mean and variance, non-trainable but in
    the total). With it ResNet18 (CIFAR100) is 11.23 M, WRN-28-10 36.56 M, DenseNet-190-40 26.1 M and
    Tab 7.2's DWRResNet18 19.0 M as printed; PyTorch's own count gives 11.22 / 36.54 / 25.8 / 18.9."""
    n = sum(p.numel() for p in model.parameters())
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d) and mod.bias is None:
            n += mod.out_channels
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats:
            n += 2 * mod.num_features
    return n


# --------------------------------------------------------------------------------------------------
# Backbones
# --------------------------------------------------------------------------------------------------
def _stage(block, inplanes: int, planes: int, n: int, stride: int) -> tuple[nn.Sequential, int]:
    out = planes * block.expansion
    down = None
    if stride != 1 or inplanes != out:
        down = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
    layers = [block(inplanes, planes, stride, down)] + [block(out, planes) for _ in range(n - 1)]
    return nn.Sequential(*layers), out


def resnet(depth: int = 18, n_classes: int = 100, widths: Sequence[int] = (64, 128, 256, 512), stem: str = "cifar",
           extra_stem: Sequence[int] = (), blocks: Sequence[int] | None = None, in_channels: int = 3) -> Backbone:
    """ResNet with torchvision's blocks. ``stem="cifar"``: 3x3 conv, no max-pool (CIFAR / TinyImageNet
    variant); ``"imagenet"``: 7x7 stride 2 + max-pool. ``extra_stem``: conv+BN+ReLU layers (3x3) added
    before the first residual block (Tab 7.2's DeepResNet18 / DWResNet18). ``widths`` scale every conv
    (WideResNet18 = 1.5 x)."""
    block = tv_resnet.BasicBlock if depth in (10, 18, 34) else tv_resnet.Bottleneck
    blocks = blocks or {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    w0 = widths[0]
    if stem == "cifar":
        layers = [nn.Conv2d(in_channels, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True)]
    else:
        layers = [nn.Conv2d(in_channels, w0, 7, 2, 3, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True),
                  nn.MaxPool2d(3, 2, 1)]
    c = w0
    for e in extra_stem:
        layers.append(conv_bn_relu(c, e))
        c = e
    segments, channels = [nn.Sequential(*layers)], [c]
    for i, (w, n) in enumerate(zip(widths, blocks)):
        seg, c = _stage(block, c, w, n, 1 if i == 0 else 2)
        segments.append(seg)
        channels.append(c)
    points = [f"g{i + 1}" for i in range(len(segments))]
    return Backbone(segments, points, channels, n_classes, name=f"resnet{depth}")


def resnet50_imagenet(n_classes: int = 1000) -> Backbone:
    """torchvision's ResNet50 (random weights) cut into stem + 4 stages."""
    tv = tv_resnet.resnet50(weights=None, num_classes=n_classes)
    segs = [nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool), tv.layer1, tv.layer2, tv.layer3, tv.layer4]
    b = Backbone(segs, ["g1", "g2", "g3", "g4", "g5"], [64, 256, 512, 1024, 2048], n_classes, name="resnet50_imagenet")
    b.fc = tv.fc
    return b


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, reduction: int = 16):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, max(1, c // reduction)), nn.Linear(max(1, c // reduction), c)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class WideBasic(nn.Module):
    """Pre-activation wide block (Zagoruyko & Komodakis), optionally with squeeze-excitation."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0, se: bool = False):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.se = SqueezeExcite(cout) if se else nn.Identity()
        self.short = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        short = x if self.short is None else self.short(o)
        o = self.conv2(self.drop(F.relu(self.bn2(self.conv1(o)))))
        return self.se(o) + short


def wide_resnet(depth: int = 28, widen: int = 10, n_classes: int = 100, se: bool = False, dropout: float = 0.0,
                in_channels: int = 3, base: int = 16) -> Backbone:
    """WRN-depth-widen (CIFAR); ``se=True`` gives SE-WRN. Groups 2 and 3 are cut half-way (g3, g5)."""
    if (depth - 4) % 6:
        raise ValueError(f"WRN depth {depth} is not 6n + 4 (the thesis' 'WRN 20-10' is not valid: we use 28-10)")
    n = (depth - 4) // 6
    widths = [base * widen, 2 * base * widen, 4 * base * widen]
    stem = nn.Conv2d(in_channels, base, 3, 1, 1, bias=False)
    groups, c = [], base
    for i, w in enumerate(widths):
        groups.append([WideBasic(c if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1, dropout, se)
                       for j in range(n)])
        c = w
    h = max(1, n // 2)
    segs = [stem, nn.Sequential(*groups[0]), nn.Sequential(*groups[1][:h]), nn.Sequential(*groups[1][h:]),
            nn.Sequential(*groups[2][:h]), nn.Sequential(*groups[2][h:])]
    chans = [base, widths[0], widths[1], widths[1], widths[2], widths[2]]
    head = nn.Sequential(nn.BatchNorm2d(widths[2]), nn.ReLU(inplace=True))
    return Backbone(segs, [f"g{i}" for i in range(1, 7)], chans, n_classes, head,
                    name=f"{'se-' if se else ''}wrn{depth}-{widen}")


def densenet_bc(depth: int = 100, growth: int = 12, n_classes: int = 100, compression: float = 0.5,
                in_channels: int = 3) -> Backbone:
    """DenseNet-BC (CIFAR: 3 dense blocks of (depth - 4) / 6 bottleneck layers) with torchvision's blocks."""
    n = (depth - 4) // 6
    c = 2 * growth
    segs, chans = [nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)], [c]
    for i in range(3):
        segs.append(_DenseBlock(n, c, 4, growth, 0.0))
        c += n * growth
        chans.append(c)
        if i < 2:
            out = int(math.floor(c * compression))
            segs.append(_Transition(c, out))
            c = out
            chans.append(c)
    head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
    return Backbone(segs, [f"g{i}" for i in range(1, 7)], chans, n_classes, head, name=f"densenet-bc{depth}-{growth}")


# --------------------------------------------------------------------------------------------------
# Branches
# --------------------------------------------------------------------------------------------------
class ConvBranch(nn.Module):
    """Fig 7.3 / Tab A.2 branch: 3x3 conv+BN+ReLU layers (``convs``: channels; ``strides`` per conv, or
    ``stride`` for the first one only), GAP, ``hidden`` FC + ReLU (0: none), linear output over the groups."""

    def __init__(self, cin: int, n_groups: int, convs: Sequence[int] = (128, 128, 256, 256), hidden: int = 256,
                 stride: int = 1, strides: Sequence[int] | None = None):
        super().__init__()
        layers, c = [], cin
        strides = tuple(strides) if strides else (stride,) + (1,) * (len(convs) - 1)
        for w, s in zip(convs, strides):
            layers.append(conv_bn_relu(c, w, 3, s))
            c = w
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(inplace=True)) if hidden else nn.Identity()
        self.out = nn.Linear(hidden or c, n_groups)

    def forward(self, x):
        return self.out(self.hidden(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)))


class AuxInception(nn.Module):
    """Inception-like layer (our reconstruction of Fig A.7's E-type block): four parallel paths,
    ``width`` channels each (the split 1x3 | 3x1 paths give 2 x width), concatenated."""

    def __init__(self, cin: int, width: int):
        super().__init__()
        w = width
        self.p1 = conv_bn_relu(cin, w, 1)
        self.p3 = conv_bn_relu(cin, w, 1)
        self.p3a, self.p3b = self._asym(w, w, (1, 3)), self._asym(w, w, (3, 1))
        self.pd = nn.Sequential(conv_bn_relu(cin, w, 1), conv_bn_relu(w, w, 3))
        self.pda, self.pdb = self._asym(w, w, (1, 3)), self._asym(w, w, (3, 1))
        self.pp = conv_bn_relu(cin, w, 1)
        self.out_channels = 6 * w

    @staticmethod
    def _asym(cin, cout, k):
        return nn.Sequential(nn.Conv2d(cin, cout, k, 1, (k[0] // 2, k[1] // 2), bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True))

    def forward(self, x):
        a = self.p3(x)
        b = self.pd(x)
        pooled = self.pp(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([self.p1(x), self.p3a(a), self.p3b(a), self.pda(b), self.pdb(b), pooled], 1)


class InceptionBranch(nn.Module):
    """Tab 7.1 / A.3-A.5 branch: conv+BN+ReLU layers (``convs``: (kernel, channels, stride)), then
    ``n_inception`` AuxInception layers of ``inception_width``, GAP, optional FC + ReLU, linear."""

    def __init__(self, cin: int, n_groups: int, convs: Sequence[tuple[int, int, int]] = ((3, 64, 1), (3, 64, 1)),
                 n_inception: int = 1, inception_width: int = 32, hidden: int = 0):
        super().__init__()
        layers, c = [], cin
        for k, w, s in convs:
            layers.append(conv_bn_relu(c, w, k, s))
            c = w
        for _ in range(n_inception):
            inc = AuxInception(c, inception_width)
            layers.append(inc)
            c = inc.out_channels
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(inplace=True)) if hidden else nn.Identity()
        self.out = nn.Linear(hidden or c, n_groups)

    def forward(self, x):
        return self.out(self.hidden(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)))


@dataclasses.dataclass(frozen=True)
class BranchSpec:
    """One auxiliary branch: where it attaches, how many groups, which layout (kwargs of the class)."""
    point: str
    n_groups: int
    kind: str = "conv"                 # "conv" (Fig 7.3) | "inception" (Tab 7.1)
    kwargs: tuple = ()                 # ((name, value), ...) for ConvBranch / InceptionBranch

    def build(self, cin: int) -> nn.Module:
        cls = {"conv": ConvBranch, "inception": InceptionBranch}[self.kind]
        return cls(cin, self.n_groups, **dict(self.kwargs))


# --------------------------------------------------------------------------------------------------
# SSAL ensemble and the ablation models of Tab 7.2
# --------------------------------------------------------------------------------------------------
class SSALNet(nn.Module):
    """Backbone + auxiliary branches. ``combine``:

    - ``"ssal"``: returns (f(x), g_1(x), ..., g_B(x)) logits; trained with Eq 7.4;
    - ``"gapcat"`` (GapCatNoSSAL): branch outputs concatenated with the main GAP features, one linear
      classifier on top; returns one logits tensor (trained on y alone);
    - ``"catfc"`` (CatFCNoSSAL): f(x) and the branch outputs concatenated, FC-``cat_hidden`` + ReLU,
      linear; one logits tensor (trained on y alone).
    """

    def __init__(self, backbone: Backbone, branches: Sequence[BranchSpec], combine: str = "ssal",
                 cat_hidden: int = 2048):
        super().__init__()
        self.backbone, self.specs, self.combine = backbone, list(branches), combine
        for s in self.specs:
            if s.point not in backbone.points:
                raise ValueError(f"{backbone.name} has no attachment point {s.point} (points: {backbone.points})")
        self.branches = nn.ModuleList([s.build(backbone.point_channels(s.point)) for s in self.specs])
        total_groups = sum(s.n_groups for s in self.specs)
        n_classes = backbone.fc.out_features
        if combine == "gapcat":
            self.backbone.fc = nn.Linear(backbone.features_dim + total_groups, n_classes)
        elif combine == "catfc":
            self.cat = nn.Sequential(nn.Linear(n_classes + total_groups, cat_hidden), nn.ReLU(inplace=True),
                                     nn.Linear(cat_hidden, n_classes))
        elif combine != "ssal":
            raise ValueError(f"combine '{combine}' (ssal, gapcat, catfc)")

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(main GAP features, final feature map, branch logits)."""
        fmap, taps = self.backbone.run(x, [s.point for s in self.specs])
        feats = torch.flatten(F.adaptive_avg_pool2d(fmap, 1), 1)
        return feats, fmap, [b(taps[s.point]) for s, b in zip(self.specs, self.branches)]

    def forward(self, x):
        feats, _, outs = self.heads(x)
        if self.combine == "gapcat":
            return self.backbone.fc(torch.cat([feats, *outs], 1))
        main = self.backbone.fc(feats)
        if self.combine == "catfc":
            return self.cat(torch.cat([main, *outs], 1))
        return (main, *outs)


# --------------------------------------------------------------------------------------------------
# Named architectures (thesis) and the Tab 7.2 family
# --------------------------------------------------------------------------------------------------
def tiny_imagenet_branch(point: str, n_groups: int) -> BranchSpec:
    """Tab A.2 AuxNet1 (used at g1 and g2): [3x3, 128] x 2, [3x3, 256] x 2, GAP, FC-256, output."""
    return BranchSpec(point, n_groups, "conv", (("convs", (128, 128, 256, 256)), ("hidden", 256)))


# Tab 7.2 groups per branch: one branch takes 20 groups (Fig 7.3's best); three take 20, 33, 50 (Tab 7.3's)
TAB_7_2_POINTS = ("g1", "g2", "g3")
TAB_7_2_GROUPS = (20, 33, 50)


def tab_7_2_model(name: str, n_classes: int = 200, groups: Sequence[int] = TAB_7_2_GROUPS) -> nn.Module:
    """The models of Tab 7.2 (ResNet18 on TinyImageNet, 3x3 stem)."""
    if name == "ResNet18":
        return resnet(18, n_classes)
    if name == "WideResNet18":
        return resnet(18, n_classes, widths=(96, 192, 384, 768))
    if name == "DeepResNet18":
        return resnet(18, n_classes, extra_stem=(256,) * 4)
    if name == "DWRResNet18":
        return resnet(18, n_classes, extra_stem=(512,) * 4)
    three = [tiny_imagenet_branch(p, g) for p, g in zip(TAB_7_2_POINTS, groups)]
    if name == "SSAL x1":
        return SSALNet(resnet(18, n_classes), [tiny_imagenet_branch("g2", groups[0])])
    if name == "SSAL x3":
        return SSALNet(resnet(18, n_classes), three)
    if name == "GapCatNoSSAL":
        return SSALNet(resnet(18, n_classes), three, combine="gapcat")
    if name == "CatFCNoSSAL":
        return SSALNet(resnet(18, n_classes), [tiny_imagenet_branch("g2", groups[0])], combine="catfc")
    raise ValueError(f"unknown Tab 7.2 model '{name}'")
