"""The classifiers f_i (torch). Every classifier here takes images in [0, 1], NCHW, at the
autoencoder's size, and does its own normalisation / resizing inside (``Preprocessed``), so that
``f(A(x))`` needs no glue.

Default preset (digits, 1 x 32 x 32): five classifiers of different capacity, named for their role
  lenet     LeNet-5 (LeCun et al. 1998, 32x32 input, tanh-free ReLU variant)   ~ 62k params
  small     one 5x5 conv of 6 channels + linear                               ~ 4k params
  wide      one 5x5 conv of 32 maps + a 256-unit hidden layer                  ~ 0.5M params
  deep      eight narrow (12) 3x3 conv layers with batch norm                  ~ 9k params
  residual  a small ResNet (stem + 3 basic blocks, 16/32/32 channels)          ~ 60k params
Paper preset (RGB 224 x 224): LeNet of our own (same layout, widened to 3 channels / 224 input),
torchvision AlexNet, VGG16, ResNet50, Inception-v3 with the weights the config names (IMAGENET1K_V1
by default, as in the thesis), each built and preprocessed as those weights declare (mean / std,
crop, interpolation from ``weights.transforms()``; Inception resized to its 299 crop inside, with
``transform_input=True``). Pretrained weights come from torch's hub cache only (never downloaded);
``weights="random"`` gives a randomly initialised model of the same configuration (tests).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGIT_NAMES = ("lenet", "small", "wide", "deep", "residual")
ZOO_NAMES = ("lenet", "alexnet", "vgg16", "resnet50", "inception_v3")


class Preprocessed(nn.Module):
    """[0, 1] images -> (resize) -> (x - mean) / std -> model."""

    def __init__(self, model: nn.Module, mean=None, std=None, size: int | None = None,
                 interpolation: str = "bilinear"):
        super().__init__()
        self.model, self.size, self.interpolation = model, size, interpolation
        c = len(mean) if mean is not None else 1
        self.register_buffer("mean", torch.tensor(mean if mean is not None else [0.0]).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std if std is not None else [1.0]).view(1, c, 1, 1))

    def forward(self, x):
        if self.size is not None and x.shape[-1] != self.size:
            # the autoencoder's crop (e.g. 224 of a 256 resize) scaled to the model's crop (Inception:
            # 299 of 342): the same field of view as the weights' own resize + crop, to rounding
            x = F.interpolate(x, size=(self.size, self.size), mode=self.interpolation, align_corners=False,
                              antialias=self.interpolation in ("bilinear", "bicubic"))
        out = self.model((x - self.mean) / self.std)
        return out.logits if hasattr(out, "logits") else out


class LeNet(nn.Module):
    def __init__(self, in_channels: int = 1, n_classes: int = 10, size: int = 32):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        s = ((size - 4) // 2 - 4) // 2
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * s * s, 120), nn.ReLU(), nn.Linear(120, 84),
                                        nn.ReLU(), nn.Linear(84, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class Small(nn.Module):
    def __init__(self, in_channels=1, n_classes=10, size=32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                                 nn.Linear(6 * (size // 4) ** 2, n_classes))

    def forward(self, x):
        return self.net(x)


class Wide(nn.Module):
    """One wide conv layer (32 maps, 5x5) and a wide hidden layer (256): shallow, many parameters."""

    def __init__(self, in_channels=1, n_classes=10, size=32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                                 nn.Linear(32 * (size // 4) ** 2, 256), nn.ReLU(), nn.Linear(256, n_classes))

    def forward(self, x):
        return self.net(x)


class Deep(nn.Module):
    """Eight narrow 3x3 conv layers with batch norm (pooling after every second)."""

    def __init__(self, in_channels=1, n_classes=10, width=12, depth=8):
        super().__init__()
        layers, c = [], in_channels
        for i in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            c = width
            if i % 2 == 1 and i < depth - 1:
                layers.append(nn.MaxPool2d(2))
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, n_classes))

    def forward(self, x):
        return self.net(x)


class _Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential() if stride == 1 and cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.short(x))


class Residual(nn.Module):
    def __init__(self, in_channels=1, n_classes=10, widths=(16, 32, 32)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(), nn.MaxPool2d(2))
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(_Basic(c, w, 1 if i == 0 else 2))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def digit_classifier(name: str, in_channels: int = 1, n_classes: int = 10, size: int = 32) -> nn.Module:
    """One of the five default-preset classifiers (randomly initialised; trained in training.py)."""
    make = {"lenet": lambda: LeNet(in_channels, n_classes, size), "small": lambda: Small(in_channels, n_classes, size),
            "wide": lambda: Wide(in_channels, n_classes, size), "deep": lambda: Deep(in_channels, n_classes),
            "residual": lambda: Residual(in_channels, n_classes)}
    if name not in make:
        raise ValueError(f"unknown digit classifier '{name}' (choose from {', '.join(make)})")
    return make[name]()


class WeightsNotCachedError(FileNotFoundError):
    pass


# The torchvision builder and weight-enum class of every zoo classifier; which member (V1, V2, ...)
# is a config value (``CapacityConfig.weights``, V1 by default: the weights of the thesis' time).
ZOO_BUILDERS = {"alexnet": ("alexnet", "AlexNet_Weights"), "vgg16": ("vgg16", "VGG16_Weights"),
                "resnet50": ("resnet50", "ResNet50_Weights"), "inception_v3": ("inception_v3", "Inception_V3_Weights")}


def zoo_weights_enum(name: str, member: str):
    """The torchvision weight enum member named ``member`` ("ResNet50_Weights.IMAGENET1K_V1" or just
    "IMAGENET1K_V1") for zoo classifier ``name``; ValueError when it is not one of that model's."""
    import torchvision.models as tvm
    if name not in ZOO_BUILDERS:
        raise ValueError(f"unknown zoo classifier '{name}' (choose from {', '.join(ZOO_BUILDERS)})")
    enum_cls = getattr(tvm, ZOO_BUILDERS[name][1])
    cls_name, _, short_name = member.rpartition(".")
    if cls_name and cls_name != enum_cls.__name__:
        raise ValueError(f"weights '{member}' are not {name}'s (expected {enum_cls.__name__}.<member>)")
    try:
        return enum_cls[short_name]
    except KeyError:
        raise ValueError(f"{enum_cls.__name__} has no member '{short_name}' (choose from "
                         f"{', '.join(m.name for m in enum_cls)})") from None


def zoo_preprocessing(weights) -> dict:
    """What the weights' own ``.transforms()`` declare (torchvision's ImageClassification preset):
    resize of the short side, centre crop, mean / std, interpolation. The classifier wrapper and
    the paper preset's data pipeline take every value from here, nothing typed by hand."""
    t = weights.transforms()
    return {"resize_size": int(t.resize_size[0]), "crop_size": int(t.crop_size[0]), "mean": tuple(t.mean),
            "std": tuple(t.std), "interpolation": t.interpolation.value, "antialias": t.antialias}


def zoo_classifier(name: str, weights: str = "cached", n_classes: int = 1000,
                   weights_enum: str | None = None) -> nn.Module:
    """A torchvision ImageNet classifier wrapped to take [0, 1] images, built as torchvision builds
    it for ``weights_enum`` (default: the model's IMAGENET1K_V1), preprocessing from its meta.

    weights: "cached" loads those weights from torch's hub cache (never downloads; a clear error
    when absent), "random" keeps the random initialisation of the same configuration (tests).
    Inception-v3 is built with ``transform_input=True`` (torchvision sets it whenever weights are
    given: the V1 weights expect its re-normalisation of ImageNet-normalised input) and with the
    auxiliary head only while loading its weights (eval mode never uses it).
    """
    import torchvision.models as tvm
    from common.checkpoint import load_weights
    w = zoo_weights_enum(name, weights_enum or "IMAGENET1K_V1")
    build = getattr(tvm, ZOO_BUILDERS[name][0])
    kw = {"transform_input": True, "aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
    model = build(weights=None, num_classes=n_classes, **kw)
    if weights == "cached":
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        if not path.exists():
            raise WeightsNotCachedError(
                f"pretrained weights {w} for {name} not in torch's cache ({path}); place {Path(w.url).name} there "
                f"(from {w.url}); nothing is downloaded by this project")
        model.load_state_dict(load_weights(path))
    elif weights != "random":
        raise ValueError(f"weights must be 'cached' or 'random', got {weights!r}")
    if name == "inception_v3":        # as torchvision does after loading weights for aux_logits=False
        model.aux_logits, model.AuxLogits = False, None
    pre = zoo_preprocessing(w)
    wrapped = Preprocessed(model.eval(), pre["mean"], pre["std"], pre["crop_size"], pre["interpolation"])
    wrapped.preprocessing, wrapped.weights_enum = pre, str(w)
    return wrapped
