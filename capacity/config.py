"""Config dataclasses of the chapter (no torch, no JAX here: experiments/capacity.py imports this at
load time). Each field declares its valid values (``common.config.param``) where a bad one would
crash or give wrong numbers after training started; ``check_config`` adds the checks that relate
two fields, run before the first stage."""
from __future__ import annotations

import dataclasses

from common.config import ConfigError, TrainConfig, item, param


@dataclasses.dataclass
class AEConfig:
    # channels per block (VGG16: 64, 128, 256, 512, 512); 32x32x1 -> 4x4x8, 8:1
    widths: tuple = param((4, 8, 8), items=item(int, ge=1), min_length=1)
    convs: tuple = param((2, 2, 2), items=item(int, ge=1), min_length=1)   # convs per block (VGG16: 2, 2, 3, 3, 3)
    batch_size: int = param(16, ge=1)
    lr: float = param(0.1, gt=0)          # paper 0.01 (5.3.2) over 99 M images; 0.1 for 8 k images (README)
    momentum: float = param(0.9, ge=0, lt=1)   # 5.3.2
    pretrain_images: int = param(8_000, ge=1)   # paper: one epoch of YFCC100m (> 99 M)
    plateau_images: int = param(4_000, ge=1)    # paper: 2 M images
    plateau_factor: float = param(5.0, ge=1)    # paper: lr / 5 (1 = never lower the lr)
    finetune_batch_size: int = param(16, ge=1)
    finetune_epochs: int = param(1, ge=1)
    finetune_lr: float = param(0.001, gt=0)     # not in the thesis; 0.01 diverged here
    ckpt_every: int = param(200, ge=1)
    log_every: int = param(25, ge=1, identity=False)


@dataclasses.dataclass
class ZooWeights:
    """The torchvision weights of each zoo classifier (paper preset), as "<Enum>.<member>". V1 as in
    the thesis (2019): torchvision's DEFAULT for ResNet50 is IMAGENET1K_V2 (80.9 % top-1, a 2021
    recipe), not what the thesis measured. Each model's build options and preprocessing follow the
    weights named here (capacity.classifiers.zoo_classifier)."""
    alexnet: str = param("AlexNet_Weights.IMAGENET1K_V1", kind="name")
    vgg16: str = param("VGG16_Weights.IMAGENET1K_V1", kind="name")
    resnet50: str = param("ResNet50_Weights.IMAGENET1K_V1", kind="name")
    inception_v3: str = param("Inception_V3_Weights.IMAGENET1K_V1", kind="name")


@dataclasses.dataclass
class CapacityConfig:
    dataset: str = param("mnist5k", kind="dataset")
    train_split: str = param("train", kind="split")   # classifiers, fine-tuning (and pre-training unless a folder)
    eval_split: str = param("test", kind="split")     # accuracies (Tab 5.1, 5.2)
    nmi_extra_split: str = param("train", kind="split", optional=True)   # added to eval_split for IC-/BC-nMI
                                                                        # ("" = none)
    pretrain_folder: str = param("", kind="path")   # image folder for A_S (under the data root); "" = train split
    image_size: int = param(32, ge=2)     # digits zero-padded 28 -> 32 (3 poolings need multiples of 8)
    resize: int = param(0, ge=0)          # folder sources: short side before the centre crop (paper 256)
    # names checked against capacity.classifiers by check_config (torch: not imported here)
    classifiers: tuple = param(("lenet", "small", "wide", "deep", "residual"), items=item(str, kind="name"),
                               min_length=1)
    zoo: bool = False                     # torchvision classifiers (paper) instead of our digit models
    zoo_weights: str = param("cached", choices=("cached", "random"))   # where the zoo's weights come from
    weights: ZooWeights = dataclasses.field(default_factory=ZooWeights)   # which weights (--set weights.resnet50=...)
    n_classes: int = param(10, ge=2)
    max_train: int = param(0, ge=0)       # 0 = all
    max_eval: int = param(0, ge=0)
    max_pretrain: int = param(0, ge=0)
    num_workers: int = param(4, ge=0, identity=False)
    materialize_max: int = param(20_000, ge=0)   # image-folder sources this small are held in memory
    bc_pairs: int = param(2500, ge=1)     # paper: 25,000 on ImageNet val
    nmi_seed: int = param(0, ge=0)
    # Poisson-bootstrap replicates of the artefact constancy, summed during the evaluation pass (each
    # holds one image-sized sum per autoencoder: keep it small at 224 x 224 x 3)
    artefact_bootstrap: int = param(200, ge=2)
    # the findings' checks (capacity/findings.py); they read the evaluation, never change a stage
    finding_bootstrap: int = param(1000, ge=10, identity=False)   # resamples of the evaluation images
    mse_tolerance: float = param(0.10, gt=0, identity=False)     # A_S: held-out / training MSE within 1 ± this
    finding_threshold: float = param(90.0, ge=0, le=100, identity=False)   # CR_min t of the findings (thesis' 90)
    eval_batch_size: int = param(250, ge=1)
    thresholds: tuple = param((80.0, 85.0, 90.0, 95.0), items=item(float, ge=0, le=100), min_length=1)   # CR_min, %
    n_examples: int = param(8, ge=1)
    margin: float = param(2.0, gt=0)      # "within a small margin": top-1 points, both directions (Tab 5.1 claim)
    # capacity.bottleneck_sweep: one A_S + A_i per entry of sweep_widths (the last width sets the ratio)
    # the whole SegNet narrows (fewer values at the bottleneck and fewer pooling masks): 2, 4, 8, 16 : 1;
    # the 8:1 point with the sweep's budget below is the main default (its stages are shared)
    sweep_widths: tuple = param(((8, 16, 32), (4, 8, 16), (4, 8, 8), (2, 4, 4)),
                                items=item(tuple, items=item(int, ge=1), min_length=1), min_length=1)
    sweep_classifiers: tuple = param((), items=item(str, kind="name"))   # () = classifiers
    sweep_pretrain_images: int = param(8_000, ge=1)   # per point (= ae.pretrain_images at default)
    sweep_finetune_epochs: int = param(1, ge=1)       # per point (= ae.finetune_epochs at default)
    sweep_threshold: float = param(90.0, ge=0, le=100)   # FCA threshold of the sweep (the thesis' t = 90)
    sweep_bootstrap: int = param(100, ge=1)
    progress: bool = param(True, identity=False)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=5, batch_size=64, lr=2e-3, optimizer="adam", ckpt_every=200, log_every=20))
    ae: AEConfig = dataclasses.field(default_factory=AEConfig)

    def validate(self) -> None:
        """Called by common.config.validate when a run's config is resolved (CLI: exit 2)."""
        check_config(self)


def check_config(cfg: CapacityConfig) -> None:
    """The checks ``param`` cannot express (they relate fields): raise ConfigError before any stage
    runs, rather than a shape error after the classifiers were trained."""
    from capacity.classifiers import DIGIT_NAMES, ZOO_NAMES   # torch: called by the pipeline only
    a = cfg.ae
    if len(a.widths) != len(a.convs):
        raise ConfigError(f"ae.widths {a.widths} and ae.convs {a.convs} must be of equal length")
    k = 2 ** len(a.widths)
    if cfg.image_size % k:
        raise ConfigError(f"image_size = {cfg.image_size} must be a multiple of {k}: the autoencoder pools "
                          f"{len(a.widths)} times by 2 (ae.widths {a.widths})")
    known = ZOO_NAMES if cfg.zoo else DIGIT_NAMES
    unknown = [n for n in cfg.classifiers if n not in known]
    if unknown:
        raise ConfigError(f"classifiers {cfg.classifiers}: unknown {unknown} (choose from {', '.join(known)})")
    if len(set(cfg.classifiers)) != len(cfg.classifiers):
        raise ConfigError(f"classifiers {cfg.classifiers} names one twice")
    if cfg.zoo:
        from capacity.classifiers import zoo_weights_enum
        for name in cfg.classifiers:
            if name != "lenet":
                try:
                    zoo_weights_enum(name, getattr(cfg.weights, name))
                except ValueError as e:
                    raise ConfigError(f"weights.{name}: {e}") from None


def check_sweep(cfg: CapacityConfig) -> None:
    """The sweep's own fields (checked by capacity.bottleneck_sweep before its first stage, not by
    the other experiments, which do not read them)."""
    for widths in cfg.sweep_widths:
        if len(widths) != len(cfg.ae.convs) or any(int(w) < 1 for w in widths):
            raise ConfigError(f"sweep_widths entry {tuple(widths)} must have {len(cfg.ae.convs)} widths >= 1 "
                              f"(ae.convs {cfg.ae.convs})")
    bad = [n for n in cfg.sweep_classifiers if n not in cfg.classifiers]
    if bad:
        raise ConfigError(f"sweep_classifiers {cfg.sweep_classifiers}: {bad} not in classifiers {cfg.classifiers}")


# --------------------------------------------------------------------------------------------------
# Presets: overrides of the defaults above (the default preset is the defaults themselves), beside
# the config they override; experiments/capacity.py registers with them, and adversarial/config.py
# builds its nested capacity presets from them
# --------------------------------------------------------------------------------------------------
PRESETS = {
    "smoke": {"classifiers": ("lenet", "small"), "train.epochs": 1, "image_size": 28, "max_train": 512, "max_eval": 128,
              "nmi_extra_split": "", "bc_pairs": 32, "eval_batch_size": 64, "n_examples": 3,
              "ae.widths": (8, 8), "ae.convs": (1, 1), "ae.pretrain_images": 1024, "ae.plateau_images": 256,
              "ae.finetune_epochs": 1, "progress": False,
              "sweep_widths": ((8, 8), (8, 2)), "sweep_pretrain_images": 512, "sweep_bootstrap": 20},
    "default": {},
    "paper": {"dataset": "imagenet", "eval_split": "val", "nmi_extra_split": "", "pretrain_folder": "",
              "image_size": 224, "resize": 256, "zoo": True, "n_classes": 1000,
              "classifiers": ("lenet", "alexnet", "vgg16", "resnet50", "inception_v3"),
              "bc_pairs": 25_000, "eval_batch_size": 100, "n_examples": 4, "artefact_bootstrap": 25,
              "train.epochs": 30, "train.batch_size": 256, "train.lr": 0.01, "train.optimizer": "sgd",
              "train.schedule": "cosine",
              "ae.widths": (64, 128, 256, 512, 512), "ae.convs": (2, 2, 3, 3, 3), "ae.batch_size": 64, "ae.lr": 0.01,
              "ae.pretrain_images": 99_000_000, "ae.plateau_images": 2_000_000,
              "ae.finetune_batch_size": 64, "ae.finetune_epochs": 1, "ae.finetune_lr": 0.001,
              "ae.ckpt_every": 2000, "ae.log_every": 100,
              # 224x224x3 -> 7x7xw: 3, 6 (the thesis'), 12, 24 : 1
              "sweep_widths": ((64, 128, 256, 512, 1024), (64, 128, 256, 512, 512), (64, 128, 256, 512, 256),
                               (64, 128, 256, 512, 128)),
              "sweep_pretrain_images": 10_000_000, "sweep_finetune_epochs": 1},
}
