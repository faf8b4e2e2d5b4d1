"""Config of the chapter's experiments (no torch here: experiments/attribution.py imports it at
load time). Defaults = the default preset: a 56 x 56 digit canvas, so every size the sources give at
224 x 224 is scaled by 56 / 224 = 1/4 (named ``*_px`` fields say so); the paper preset sets the
sources' values (see experiments/attribution.py and README "Decisions")."""
from __future__ import annotations

import dataclasses

from common.config import ConfigError, TrainConfig, item, param
from common.saliency import SaliencyBenchmark


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
    batch_size: int = param(16, ge=1)       # images per method call (002 times batches of 8)
    # the benchmark grid (common.saliency): every generic method; its defaults are this chapter's
    # default preset (56 x 56: n_images 200, the costly methods on the first 32, extremal on the first
    # 12, 28 insertion steps of 112 px; README "Decisions"), the paper preset sets the sources' values
    saliency: SaliencyBenchmark = dataclasses.field(    # digits: no flip jitter (README Decisions)
        default_factory=lambda: SaliencyBenchmark(extremal_jitter=False))
    # the pointing game: boxes of the evaluation set itself, plus detection sets (paper: voc2007, coco2014)
    pointing_sets: tuple = param((), items=item(str, choices=("voc2007", "coco2014")))
    # safetensors of the same architecture with 20 / 80 outputs, or "random"
    pointing_weights: str = param("", kind="path")
    pointing_max_pairs: int = param(0, ge=0)   # 0 = every (image, class) pair
    pointing_tolerance: float = param(3.75, gt=0)   # TorchRay's 15 px at 224, scaled to 56 (paper 15)
    # extremal areas beside the benchmark's (saliency.extremal_areas): fractions of the image in (0, 1)
    ep_coco_areas: tuple = param((0.018, 0.025, 0.05, 0.1), items=item(float, gt=0, lt=1), min_length=1)
    ep_figure_areas: tuple = param((0.05, 0.1, 0.2, 0.4, 0.6, 0.8), items=item(float, gt=0, lt=1),
                                   min_length=1)   # 001 L1635
    # outputs
    n_figure_images: int = param(4, ge=1)
    n_area_images: int = param(3, ge=0)
    progress: bool = param(True, identity=False)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=6, batch_size=128, lr=5e-3, optimizer="adam", schedule="onecycle", warmup_frac=0.3,
        ckpt_every=200, log_every=20))

    def validate(self) -> None:
        if self.model == "canvas_cnn" and self.pointing_sets:
            raise ConfigError("pointing_sets need a torchvision model (model=vgg16_bn or resnet50)")


# --------------------------------------------------------------------------------------------------
# Presets: overrides of the defaults above (the default preset is the defaults themselves), beside
# the config they override; experiments/attribution.py registers with them
# --------------------------------------------------------------------------------------------------
PAPER = {"dataset": "imagenet", "eval_split": "val", "model": "vgg16_bn", "image_size": 224,
         "batch_size": 8, "pointing_sets": ("voc2007", "coco2014"), "pointing_tolerance": 15.0,
         "saliency.n_images": 1000, "saliency.n_images_slow": 0, "saliency.n_images_extremal": 0,
         "saliency.insertion_steps": 224, "saliency.ig_steps": 50, "saliency.rise_masks": 8000,
         "saliency.occlusion_window_px": 32, "saliency.extremal_iters": 1600, "saliency.extremal_schedule": "thesis",
         "saliency.extremal_kernel": "thesis", "saliency.extremal_step_px": 7, "saliency.extremal_sigma_px": 21.0,
         "saliency.extremal_max_blur_px": 20.0, "saliency.meaningful_iters": 300, "saliency.meaningful_mask_size": 28,
         "saliency.meaningful_blur_px": 10.0, "saliency.meaningful_mask_blur_px": 5.0, "saliency.meaningful_jitter_px": 4,
         "saliency.extremal_jitter": True}
SMOKE = {"saliency.n_images": 6, "saliency.n_images_slow": 4, "saliency.n_images_extremal": 4,
         "saliency.insertion_steps": 8, "batch_size": 4, "train.epochs": 1, "width": 8, "saliency.rise_masks": 64,
         "saliency.ig_steps": 4, "saliency.extremal_iters": 4, "saliency.meaningful_iters": 4,
         "saliency.opticam_iters": 4, "n_figure_images": 2, "n_area_images": 2, "progress": False,
         "saliency.methods": ("fakecam", "gradcam", "opticam", "extremal", "meaningful")}
PRESETS = {"smoke": SMOKE, "default": {}, "paper": PAPER}
