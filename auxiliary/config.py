"""Config of the SSAL chapter (no torch here: experiments/auxiliary.py imports it at load time).

One dataclass for every experiment of the chapter, so that experiments that train the same model
(the baseline, the three-branch SSAL model) ask for the same work folder and share it."""
from __future__ import annotations

import dataclasses

from common.config import ConfigError, TrainConfig, item, param
from common.saliency import SaliencyBenchmark

ARCHS = ("resnet_mini", "resnet18", "resnet50", "resnet50_imagenet", "wrn28-10", "se-wrn16-8",
         "densenet-bc100-12", "densenet190-40")
TAB_7_2_ROWS = ("ResNet", "WideResNet", "DeepResNet", "DWRResNet", "GapCatNoSSAL", "CatFCNoSSAL", "LinearComb",
                "SSAL x1", "SSAL x3")


@dataclasses.dataclass
class SSALConfig:
    # paper: cifar100 (Fig 7.3, 7.4, Tab 7.1, 7.3), tiny-imagenet (Tab 7.2)
    dataset: str = param("twodigit100", kind="dataset")
    train_split: str = param("train", kind="split")
    test_split: str = param("test", kind="split")   # CIFAR100's official test split is the thesis' "validation" (L521)
    # part of train held out for the grouping's confusion matrix and +LC (twodigit100 has its own: 20 % of
    # the train digits held out before composing, auxiliary/data.py)
    holdout_frac: float = param(0.2, gt=0, lt=1)
    downsample: int = param(2, ge=1)      # average-pool the images by this factor (28x56 -> 14x28 on 2 cores)
    max_train: int = param(0, ge=0)       # 0 = all (tests: a tiny fixture)
    max_test: int = param(0, ge=0)
    arch: str = param("resnet_mini", choices=ARCHS)
    archs: tuple = param(("resnet_mini",), items=item(str, choices=ARCHS), min_length=1)   # Tab 7.3's
    # resnet_mini: channels of its stages, one basic block each
    mini_widths: tuple = param((16, 32, 64), items=item(int, ge=1), min_length=1)
    branch_layout: str = param("config", choices=("config", "thesis"))   # thesis: Tab A.2-A.5 reconstructed
    branch_kind: str = param("conv", choices=("conv", "inception"))      # Fig 7.3 | Tab 7.1 branch type
    # conv branch: 3x3 conv+BN+ReLU channels (Tab A.2: 128, 128, 256, 256)
    branch_convs: tuple = param((16, 16, 32, 32), items=item(int, ge=1), min_length=1)
    branch_hidden: int = param(32, ge=0)     # conv branch FC (Tab A.2: 256)
    # conv branch strides: a receptive field over both digits (paper: () = all 1)
    branch_strides: tuple = param((2, 1, 2, 1), items=item(int, ge=1))
    inception_width: int = param(8, ge=1)
    fig7_3_groups: tuple = param((2, 4, 10, 20), items=item(int, ge=2), min_length=1)   # groups per branch
    fig7_3_point: str = param("g1", kind="name")   # "before the first residual block" (L1713)
    # which models Fig 7.4 / A.6 train, not what one of them is (its arch / epochs are in its own stage
    # key): out of the keys, so that Fig 7.3's paper stages serve Fig 7.4's too
    # Fig 7.4 (paper: resnet50, wrn28-10, densenet-bc100-12)
    fig7_4_archs: tuple = param(("resnet_mini",), items=item(str, choices=ARCHS), min_length=1, identity=False)
    fig7_4_groups: int = param(20, ge=2)  # "20 visually similar groups" (Fig 7.4 caption)
    # CatFCNoSSAL trained this many times train.epochs (paper 1, 2.5, 5; default 1 and 2.5, the thesis' middle
    # factor: 5 cost ~95 CPU-s of the 45-minute run_all)
    figA6_epoch_factors: tuple = param((1.0, 2.5), items=item(float, gt=0), min_length=1, identity=False)
    # auxiliary.branch_sweep: the one-branch model (single_point, three_groups[0] groups) with its branch's
    # conv widths and FC scaled by each factor (1 = Tab 7.1's one-branch model, loaded, not retrained)
    branch_sweep_factors: tuple = param((1.0, 2.0, 4.0), items=item(float, gt=0), min_length=1, identity=False)
    eval_each_epoch: bool = True          # score the held-out part of train after every epoch (Fig A.6's curves)
    three_groups: tuple = param((20, 33, 50), items=item(int, ge=2), min_length=1)   # Tab 7.3 (Tab 7.1: 20, 30, 50)
    three_points: tuple = param(("g1", "g2", "g3"), items=item(str, kind="name"), min_length=1)
    single_point: str = param("g2", kind="name")   # Tab 7.2's SSAL x1: "after the first residual block"
    eta: float = param(0.4, gt=0, le=1)   # Eq 7.5 exponent with more than one branch (Tab 7.1's best: 0.3 / 0.4)
    tab7_1_etas: tuple = param((1.0, 0.4, 0.3), items=item(float, gt=0, le=1), min_length=1)   # Tab 7.1's values
    # Eq 7.4 loss weights; () = all 1. (lambda_f, lambda_b): every branch of every model takes lambda_b;
    # (lambda_f, lambda_1, ..., lambda_n): the n-branch model's, in order; a model with fewer branches
    # takes lambda_f and, per branch, the lambda of the n-branch model's branch at the same point
    lambdas: tuple = param((), items=item(float, ge=0))
    similar: bool = True                  # similar (Eq 7.2) or dissimilar grouping
    # the grouping's confusion matrix: hard argmax counts (the thesis') or summed softmax mass (enough
    # evidence on a small held-out part: every image adds its doubt, not only its errors)
    confusion: str = param("soft", choices=("hard", "soft"))
    n_null_matrices: int = param(20, ge=5, identity=False)   # structureless matrix pairs, the grouping claim's reference
    seeding: str = param("thesis", choices=("thesis", "farthest"))
    tab7_2_rows: tuple = param(("ResNet", "WideResNet", "DeepResNet", "GapCatNoSSAL", "LinearComb", "SSAL x1",
                                "SSAL x3"), items=item(str, choices=TAB_7_2_ROWS), min_length=1)
    n_random_partitions: int = param(200, ge=10)
    n_boot: int = param(1000, ge=100)
    tol: float = param(1.0, ge=0)         # p.p. tolerance of "+JP >= +TR >= baseline" (note: thesis' own exceptions)
    image_size: int = param(224, ge=8)    # Tab 7.4 (ImageNet): training crop / evaluation centre crop
    resize: int = param(256, ge=8)        # Tab 7.4: evaluation resize before the centre crop
    imagenet_groups: tuple = param((200, 334, 500), items=item(int, ge=2), min_length=1)   # Tab 7.4 (L1772)
    imagenet_points: tuple = param(("g2", "g3", "g4"), items=item(str, kind="name"), min_length=1)   # Tab A.6
    imagenet_holdout_frac: float = param(0.02, gt=0, lt=1)   # part of ImageNet train held out for the grouping
    n_cam_examples: int = param(4, ge=1)
    # the saliency benchmark (common.saliency's grid): SSAL's head CAMs beside every generic method, on
    # the same test images (fixed: seed 0) of 14 x 28 px. Scoring (224 insertion / deletion steps) costs
    # more than most maps here: every method beside the four scored before the grid scores the first 4
    # images (extremal 2), with fewer iterations and pixel sizes for the small images (README "Decisions")
    saliency: SaliencyBenchmark = param(default_factory=lambda: SaliencyBenchmark(
        extra_methods=("ssal-cam-f", "ssal-cam-g1", "ssal-cam-g2", "ssal-cam-g3"), n_images=24,
        slow_methods=("fakecam", "center", "scorecam", "ablationcam", "xgradcam", "layercam", "opticam", "occlusion",
                      "rise", "meaningful", "meaningful-top5"),
        n_images_slow=4, n_images_extremal=2, insertion_steps=224, ig_steps=32, opticam_iters=25, rise_masks=500,
        occlusion_window_px=4, extremal_iters=30, extremal_jitter=False, extremal_step_px=2, extremal_sigma_px=4.0,
        extremal_max_blur_px=2.5, meaningful_iters=30, meaningful_mask_size=7, meaningful_blur_px=1.25,
        meaningful_mask_blur_px=0.6), identity=False)
    augment: bool = False                 # random crop + flip (CIFAR); off for digits: a flip changes the number
    eval_batch_size: int = param(500, ge=1)
    progress_bars: bool = param(True, identity=False)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=5, batch_size=128, lr=4e-3, optimizer="adam", schedule="onecycle", warmup_frac=0.4,
        weight_decay=0.0, ckpt_every=400, log_every=20))
    lc_train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=40, batch_size=128, lr=2e-3, optimizer="adam", ckpt_every=1000, log_every=50, progress=False))

    def validate(self) -> None:
        if len(self.three_groups) != len(self.three_points):
            raise ConfigError(f"three_groups {self.three_groups} and three_points {self.three_points} differ in length")
        n = len(self.three_groups)
        if self.lambdas and len(self.lambdas) not in (2, n + 1):
            raise ConfigError(f"lambdas {self.lambdas}: give (lambda_f, lambda for every branch of every model) or "
                              f"lambda_f and one per branch of the {n}-branch model ({n + 1} values)")
        if self.lambdas and len(self.lambdas) == n + 1 and n != 1:
            # models with fewer branches take the weight of the n-branch model's branch at the same point
            needed = {self.fig7_3_point, self.single_point, "g2", "g3"}     # Fig 7.3, Tab 7.1 / 7.2, Fig A.6
            missing = sorted(needed - set(self.three_points))
            if missing:
                raise ConfigError(f"lambdas {self.lambdas} weigh the branches at {self.three_points}; the one- and "
                                  f"two-branch models have branches at {missing} too: give two values "
                                  f"(lambda_f, lambda for every branch)")
        if self.branch_strides and len(self.branch_strides) != len(self.branch_convs):
            raise ConfigError(f"branch_strides {self.branch_strides} and branch_convs {self.branch_convs} differ in length")
        if len(self.imagenet_groups) != len(self.imagenet_points):
            raise ConfigError(f"imagenet_groups {self.imagenet_groups} and imagenet_points {self.imagenet_points} "
                              f"differ in length")
        if self.resize < self.image_size:
            raise ConfigError(f"resize {self.resize} is smaller than the crop image_size {self.image_size}")


# --------------------------------------------------------------------------------------------------
# Presets: overrides of the defaults above (the default preset is the defaults themselves), beside
# the config they override; experiments/auxiliary.py registers with them. A few experiments change
# some paper values there (Tab 7.2 on TinyImageNet; Tab 7.4 on ImageNet, with IMAGENET_TRAIN)
# --------------------------------------------------------------------------------------------------
_TRAIN_PAPER = {"train.epochs": 20, "train.batch_size": 128, "train.lr": 0.1, "train.optimizer": "sgd",
                "train.momentum": 0.9, "train.weight_decay": 5e-4, "train.schedule": "onecycle",
                "train.warmup_frac": 0.4, "train.ckpt_every": 500, "train.log_every": 50}
PAPER = {"dataset": "cifar100", "test_split": "test", "arch": "resnet18", "downsample": 1, "augment": True,
         "confusion": "hard",
         "branch_strides": (), "eta": 0.4,
         "branch_layout": "thesis", "eval_batch_size": 500, "saliency.extremal_jitter": True,
         "archs": ("resnet50", "se-wrn16-8", "wrn28-10", "densenet190-40"), "tab7_2_rows": TAB_7_2_ROWS,
         **_TRAIN_PAPER}
SMOKE = {"max_train": 800, "max_test": 300, "mini_widths": (8, 16, 32), "branch_convs": (8, 8, 16, 16),
         "branch_hidden": 16, "fig7_3_groups": (2, 10), "three_groups": (10, 20, 50), "n_boot": 100,
         "n_random_partitions": 20, "n_null_matrices": 5, "branch_sweep_factors": (1.0, 2.0), "n_cam_examples": 2, "saliency.n_images": 4, "saliency.ig_steps": 8,
         "saliency.methods": ("gradcam", "gradcampp", "saliency", "ig"), "progress_bars": False, "train.epochs": 1,
         "lc_train.epochs": 1, "tab7_2_rows": ("ResNet", "WideResNet", "GapCatNoSSAL", "SSAL x1", "SSAL x3")}
PRESETS = {"smoke": SMOKE, "default": {}, "paper": PAPER}
# Tab 7.1's branch as the text describes it (L1732): two conv+BN+ReLU, an inception-like layer, GAP,
# linear (not Fig 7.3's / Tab A.2's conv + FC branch); widths ours (192 channels, 96 per inception path:
# the closest of a few to the printed 11.92 / 12.83 M, which give 11.96 / 12.82)
TAB_7_1_BRANCH = {"branch_layout": "config", "branch_kind": "inception", "branch_convs": (192,), "inception_width": 96}

IMAGENET_TRAIN = {"train.epochs": 90, "train.batch_size": 256, "train.lr": 0.1, "train.optimizer": "sgd",
                  "train.momentum": 0.9, "train.weight_decay": 1e-4, "train.schedule": "cosine",
                  "train.warmup_frac": 0.0, "train.num_workers": 8, "train.ckpt_every": 1000, "train.log_every": 100,
                  "eval_batch_size": 250}
