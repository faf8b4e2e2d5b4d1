"""Config of the chapter's experiments (no torch here: experiments/attribution.py imports it at
load time). Defaults = the default preset: a 56 x 56 digit canvas, so every size the sources give at
224 x 224 is scaled by 56 / 224 = 1/4 (named ``*_px`` fields say so); the paper preset sets the
sources' values (see experiments/attribution.py and README "Decisions")."""
from __future__ import annotations

import dataclasses

from common.config import ConfigError, TrainConfig, item, param

ALL_METHODS = ("fakecam", "center", "gradcam", "gradcampp", "scorecam", "ablationcam", "xgradcam", "layercam",
               "saliency", "ig", "occlusion", "rise", "meaningful", "extremal", "opticam")

# methods whose maps cost tens to thousands of forward passes per image (n_images_slow)
SLOW_METHODS = ("scorecam", "ablationcam", "occlusion", "rise", "opticam", "meaningful")


@dataclasses.dataclass
class AttributionConfig:
    # data and model
    # default: the classifier's data; paper: the evaluation set ("imagenet")
    dataset: str = param("mnist5k-canvas", kind="dataset")
    eval_split: str = param("test", kind="split")
    model: str = param("canvas_cnn", choices=("canvas_cnn", "vgg16_bn", "resnet50"))
    weights: str = param("cached", choices=("cached", "random"))   # torchvision models only
    width: int = param(32, ge=4)
    batch_norm: bool = True                 # the canvas CNN's BN after each conv (README "Decisions")
    image_size: int = param(56, ge=8)       # paper: 224 (every image resized to it, 002 L1029)
    n_images: int = param(200, ge=1)        # images scored per method (paper: 1000, 002's subset)
    # the costly methods score the first so many of the same images (0: all; README "Decisions")
    n_images_slow: int = param(32, ge=0)    # Score-/Ablation-CAM, occlusion, RISE, Opti-CAM, meaningful
    n_images_extremal: int = param(12, ge=0)
    insertion_steps: int = param(28, ge=1)  # 002: 224 (paper); 28 steps of 112 px at 56 x 56
    batch_size: int = param(16, ge=1)       # images per method call (002 times batches of 8)
    methods: tuple = param(ALL_METHODS, items=item(str, kind="name"), min_length=1)   # common.saliency's names
    # the pointing game: boxes of the evaluation set itself, plus detection sets (paper: voc2007, coco2014)
    pointing_sets: tuple = param((), items=item(str, choices=("voc2007", "coco2014")))
    # safetensors of the same architecture with 20 / 80 outputs, or "random"
    pointing_weights: str = param("", kind="path")
    pointing_max_pairs: int = param(0, ge=0)   # 0 = every (image, class) pair
    pointing_tolerance: float = param(3.75, gt=0)   # TorchRay's 15 px at 224, scaled to 56 (paper 15)
    # method settings (paper values in the paper preset)
    opticam_iters: int = param(100, ge=1)   # 002: at most 100 (same at every preset)
    ig_steps: int = param(20, ge=1)         # captum's default is 50 (paper)
    rise_masks: int = param(1000, ge=1)     # TorchRay's default 8000 (paper)
    occlusion_window_px: int = param(8, ge=1)
    ep_iters: int = param(100, ge=1)        # 001's tables: 1600 (paper)
    ep_schedule: str = param("thesis", choices=("thesis", "torchray"))
    ep_kernel: str = param("thesis", choices=("thesis", "torchray"))
    ep_step_px: int = param(4, ge=1)        # TorchRay's 7 at 224 (scaled: 2; 4 costs less, README)
    ep_sigma_px: float = param(8.0, gt=0)   # TorchRay's 21 at 224 (scaled: 5)
    ep_max_blur_px: float = param(5.0, gt=0)  # TorchRay's 20 at 224
    # extremal areas: fractions of the image in (0, 1)
    ep_areas: tuple = param((0.025, 0.05, 0.1, 0.2), items=item(float, gt=0, lt=1), min_length=1)   # 001's VOC pointing
    ep_coco_areas: tuple = param((0.018, 0.025, 0.05, 0.1), items=item(float, gt=0, lt=1), min_length=1)
    ep_figure_areas: tuple = param((0.05, 0.1, 0.2, 0.4, 0.6, 0.8), items=item(float, gt=0, lt=1),
                                   min_length=1)   # 001 L1635
    mp_iters: int = param(100, ge=1)        # 001: 300 (paper)
    mp_mask_size: int = param(7, ge=2)      # 001: 28 at 224 (upsampling factor 8)
    mp_blur_px: float = param(2.5, gt=0)    # sigma0 = 10 at 224
    mp_mask_blur_px: float = param(1.25, ge=0)   # sigma_m = 5 at 224
    mp_jitter_px: int = param(1, ge=0)      # tau = 4 at 224
    # outputs
    n_figure_images: int = param(4, ge=1)
    n_area_images: int = param(3, ge=0)
    progress: bool = param(True, identity=False)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=6, batch_size=128, lr=5e-3, optimizer="adam", schedule="onecycle", warmup_frac=0.3,
        ckpt_every=200, log_every=20))

    def validate(self) -> None:
        from common.saliency import discover   # torch: only when a run's config is resolved
        known = discover()
        unknown = [m for m in self.methods if m not in known]
        if unknown:
            raise ConfigError(f"methods {self.methods}: unknown {unknown} (known: {', '.join(sorted(known))})")
        if self.model == "canvas_cnn" and self.pointing_sets:
            raise ConfigError("pointing_sets need a torchvision model (model=vgg16_bn or resnet50)")


# --------------------------------------------------------------------------------------------------
# Presets: overrides of the defaults above (the default preset is the defaults themselves), beside
# the config they override; experiments/attribution.py registers with them
# --------------------------------------------------------------------------------------------------
PAPER = {"dataset": "imagenet", "eval_split": "val", "model": "vgg16_bn", "image_size": 224, "n_images": 1000,
         "n_images_slow": 0, "n_images_extremal": 0, "insertion_steps": 224,
         "batch_size": 8, "pointing_sets": ("voc2007", "coco2014"), "pointing_tolerance": 15.0,
         "ig_steps": 50, "rise_masks": 8000, "occlusion_window_px": 32,
         "ep_iters": 1600, "ep_schedule": "thesis", "ep_kernel": "thesis", "ep_step_px": 7, "ep_sigma_px": 21.0,
         "ep_max_blur_px": 20.0, "mp_iters": 300, "mp_mask_size": 28, "mp_blur_px": 10.0, "mp_mask_blur_px": 5.0,
         "mp_jitter_px": 4}
SMOKE = {"n_images": 6, "n_images_slow": 4, "n_images_extremal": 4, "insertion_steps": 8, "batch_size": 4, "train.epochs": 1, "width": 8, "rise_masks": 64, "ig_steps": 4,
         "ep_iters": 4, "mp_iters": 4, "opticam_iters": 4, "n_figure_images": 2, "n_area_images": 2, "progress": False,
         "methods": ("fakecam", "gradcam", "opticam", "extremal", "meaningful")}
PRESETS = {"smoke": SMOKE, "default": {}, "paper": PAPER}
