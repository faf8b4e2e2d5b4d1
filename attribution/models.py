"""Classifiers whose decisions are explained: a small CNN trained here on ``mnist5k-canvas``
(default preset) and torchvision's VGG16-BN / ResNet50 (paper preset, 002 L1041).

Every model takes **normalised** input: the saliency masks multiply the normalised image, as 002
does (notes/attribution.md), so Fake-CAM's zero at the top-left pixel replaces it by the mean
intensity rather than leaving an already-black pixel unchanged."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class CanvasCNN(nn.Module):
    """Conv(-BN)-ReLU x 4 with two poolings, global average pooling, linear: a CAM-friendly digit
    classifier (the CAM layer is the last ReLU, 14 x 14 on a 56 x 56 canvas). ``batch_norm``: the
    benchmark's model (without it 4-6 epochs on mnist5k-canvas reach ~70-89 % test accuracy, with it
    ~96 %: README "Decisions"); the planted-cue tests use the plain net."""

    def __init__(self, width: int = 32, n_classes: int = 10, batch_norm: bool = False):
        super().__init__()
        w = width

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), *([nn.BatchNorm2d(c_out)] if batch_norm else []), nn.ReLU()]
        self.features = nn.Sequential(
            *block(1, w // 2), nn.MaxPool2d(2),
            *block(w // 2, w), nn.MaxPool2d(2),
            *block(w, w),
            *block(w, 2 * w))
        self.head = nn.Linear(2 * w, n_classes)

    @property
    def cam_layer(self) -> nn.Module:
        return self.features[-1]

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def normalise_digits(x_uint8_nhwc) -> torch.Tensor:
    x = torch.as_tensor(x_uint8_nhwc).permute(0, 3, 1, 2).float() / 255.0
    return (x - MNIST_MEAN) / MNIST_STD


def trained_canvas_cnn(cfg, ctx) -> tuple[nn.Module, dict]:
    """The default preset's classifier, trained by the common trainer on mnist5k-canvas / train
    (shared by every experiment of the chapter: same stage key). Returns (model in eval mode, info)."""
    import attribution.data  # noqa: F401  (registers mnist5k-canvas)
    from common.trainer import accuracy, fit, predict
    train = ctx.load_dataset(cfg.dataset, "train")
    torch.manual_seed(ctx.seed)
    model = CanvasCNN(cfg.width, batch_norm=cfg.batch_norm)
    res = fit(model, (normalise_digits(train.x), torch.as_tensor(train.y)), ctx.train_config(cfg.train),
              # keyed by what the training reads only: the benchmark's method settings never retrain it
              ctx.work_dir("attribution-canvas-cnn", {"dataset": cfg.dataset, "width": cfg.width,
                                                      "batch_norm": cfg.batch_norm, "train": cfg.train}),
              desc="canvas-cnn")
    test = ctx.load_dataset(cfg.dataset, "test")
    acc = accuracy(predict(res.model, [normalise_digits(test.x)]), torch.as_tensor(test.y))
    return res.model.eval(), {"test_accuracy": acc, "train_steps": res.steps}


class WeightsNotCachedError(FileNotFoundError):
    pass


def zoo_model(name: str, weights: str = "cached") -> nn.Module:
    """torchvision ``vgg16_bn`` / ``resnet50`` taking normalised 224 x 224 input. ``cached``: the
    default weights from torch's hub cache (never downloaded; a clear error when absent);
    ``random``: the random initialisation (tests of the paper preset's code path)."""
    import torchvision.models as tvm
    from common.checkpoint import load_weights
    builders = {"vgg16_bn": (tvm.vgg16_bn, tvm.VGG16_BN_Weights.DEFAULT),
                "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.DEFAULT)}
    if name not in builders:
        raise ValueError(f"unknown model '{name}' (choose from {', '.join(builders)})")
    build, w = builders[name]
    model = build(weights=None)
    if weights == "cached":
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        if not path.exists():
            raise WeightsNotCachedError(f"pretrained weights for {name} not in torch's cache ({path}); place "
                                        f"{Path(w.url).name} there (from {w.url}); nothing is downloaded")
        model.load_state_dict(load_weights(path))
    elif weights != "random":
        raise ValueError(f"weights must be 'cached' or 'random', got {weights!r}")
    return model.eval()
