"""Config of the chapter's experiments (no torch here: experiments/attribution.py imports it at
load time). Defaults = the default preset: a 56 x 56 digit canvas, so every size the sources give at
224 x 224 is scaled by 56 / 224 = 1/4 (named ``*_px`` fields say so); the paper preset sets the
sources' values (see experiments/attribution.py and README "Decisions")."""
from __future__ import annotations

import dataclasses

from common.config import ConfigError, TrainConfig, param

ALL_METHODS = ("fakecam", "center", "gradcam", "gradcampp", "scorecam", "ablationcam", "xgradcam", "layercam",
               "saliency", "ig", "occlusion", "rise", "meaningful", "extremal", "opticam")


@dataclasses.dataclass
class AttributionConfig:
    # data and model
    dataset: str = "mnist5k-canvas"        # default: classifier data; paper: the evaluation set ("imagenet")
    eval_split: str = "test"
    model: str = param("canvas_cnn", choices=("canvas_cnn", "vgg16_bn", "resnet50"))
    weights: str = param("cached", choices=("cached", "random"))   # torchvision models only
    width: int = param(32, ge=4)
    image_size: int = param(56, ge=8)       # paper: 224 (every image resized to it, 002 L1029)
    n_images: int = param(16, ge=1)         # images scored per method (paper: 1000, 002's subset)
    batch_size: int = param(16, ge=1)       # images per method call (002 times batches of 8)
    methods: tuple = ALL_METHODS
    # the pointing game: boxes of the evaluation set itself, plus detection sets (paper: voc2007, coco2014)
    pointing_sets: tuple = ()
    pointing_weights: str = ""              # safetensors of the same architecture with 20 / 80 outputs; "random"
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
    ep_areas: tuple = (0.025, 0.05, 0.1, 0.2)   # 001's VOC pointing areas (COCO: 0.018, 0.025, 0.05, 0.1)
    ep_coco_areas: tuple = (0.018, 0.025, 0.05, 0.1)
    ep_figure_areas: tuple = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8)   # 001 L1635
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
        epochs=4, batch_size=64, lr=2e-3, optimizer="adam", ckpt_every=200, log_every=20))

    def validate(self) -> None:
        from common.saliency import discover   # torch: only when a run's config is resolved
        known = discover()
        unknown = [m for m in self.methods if m not in known]
        if unknown or not self.methods:
            raise ConfigError(f"methods {self.methods}: unknown {unknown} (known: {', '.join(sorted(known))})")
        for a in (*self.ep_areas, *self.ep_coco_areas, *self.ep_figure_areas):
            if not 0 < float(a) < 1:
                raise ConfigError(f"extremal areas must lie in (0, 1), got {a}")
        bad = [s for s in self.pointing_sets if s not in ("voc2007", "coco2014")]
        if bad:
            raise ConfigError(f"pointing_sets {bad}: choose from voc2007, coco2014")
        if self.model == "canvas_cnn" and self.pointing_sets:
            raise ConfigError("pointing_sets need a torchvision model (model=vgg16_bn or resnet50)")
