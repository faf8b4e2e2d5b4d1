"""Config of the pathmask chapter (dataclasses only: experiments/pathmask.py imports this at load time,
without JAX). One config for every experiment, so the CNN and the VAE are trained once per seed and
shared through identical work-folder keys."""
from __future__ import annotations

import dataclasses

from common.config import ConfigError, param
from common.saliency import SaliencyBenchmark

# alpha_lk of semantic morphing per dataset (003 L1601/L1753: MNIST 0.1; L1826-1828: NotMNIST 10;
# L1907: FashionMNIST "the same as with NotMNIST")
ALPHA_LK = {"mnist5k": 0.1, "mnist": 0.1, "notmnist_small": 10.0, "fashion-mnist": 10.0, "cifar10": 10.0}
# appendix C: MNIST and NotMNIST share one architecture; FashionMNIST and CIFAR10 have their own
ARCH = {"mnist5k": "mnist", "mnist": "mnist", "notmnist_small": "mnist", "fashion-mnist": "fashion",
        "cifar10": "cifar"}
# datasets with only an "all" split: we split them (stratified, fixed seed) into train / test
SPLIT_OURSELVES = ("notmnist_small",)


@dataclasses.dataclass
class NetTrain:
    """Training of the CNN or the VAE (epochs, lr, batch size are not in document 003: ours)."""
    epochs: int = param(8, ge=1)
    batch_size: int = param(64, ge=1)
    lr: float = param(1e-3, gt=0)          # Adam
    ckpt_every: int = param(500, ge=1)
    log_every: int = param(50, ge=1, identity=False)


@dataclasses.dataclass
class PathMaskConfig:
    dataset: str = param("mnist5k", choices=tuple(ARCH))
    arch: str = param("auto", choices=("auto", "mnist", "fashion", "cifar"))   # auto: ARCH[dataset]
    test_fraction: float = param(0.2, gt=0, lt=1)   # SPLIT_OURSELVES datasets only
    latent_dim: int = param(100, ge=2)              # app. C: 100
    # app. B: "L2 + KL", no weights given. Sum of squared errors + kl_weight x KL is the Gaussian
    # likelihood with decoder variance sigma^2 = kl_weight / 2: weight 1 (sigma^2 0.5) collapses the
    # latent space on mnist5k (11-12 of 100 dimensions used, no better than a 5-component PCA);
    # 0.1 (sigma^2 0.05) keeps it in use (README, Decisions)
    kl_weight: float = param(0.1, gt=0)
    cnn: NetTrain = dataclasses.field(default_factory=lambda: NetTrain(epochs=6))
    # VAE: 30 epochs (with kl_weight 0.1 the latent space keeps filling up past 15), Adam lr 3e-3
    # (README, Decisions: what each lever does, measured)
    vae: NetTrain = dataclasses.field(default_factory=lambda: NetTrain(epochs=30, lr=3e-3))
    # best embedding (5.1): codes sampled from the encoder's distribution
    best_of: int = param(32, ge=1)
    recon_label_samples: int = param(500, ge=1)     # test inputs for the mean-code / best-embedding label change
    # interpolation (4.3, Fig 4.5): random pairs of training codes, path length n
    interp_pairs: int = param(200, ge=1)
    path_steps: int = param(100, ge=3)              # n: 4.4 uses 100 steps (L1480)
    # entropy vs gradient magnitude (4.4): pairs = nearest training code by cosine of another class
    corr_pairs: int = param(200, ge=2)              # thesis 1000 (L1499)
    corr_path_steps: int = param(50, ge=3)           # thesis 100
    # semantic morphing (4.5)
    # weight of the norm term (||c|| - c_o)^2 relative to -logit_o (after the normalisation, README):
    # -1 = the dataset's value from the thesis (ALPHA_LK), 0 = the norm term off, > 0 that weight
    alpha_lk: float = param(-1.0, ge=-1)
    morph_lr: float = param(1e-2, gt=0)             # thesis: Adam 1e-3 (L1601) over <= 5000 steps
    morph_max_steps: int = param(2000, ge=1)        # thesis 5000 at lr 1e-3 (L1752); ours 10x the lr
    entropy_threshold: float = param(0.01, gt=0, lt=1)   # 0.01, base 2, over the two classes' softmax
    morph_samples: int = param(300, ge=1)           # error rate: thesis 100; the note asks >= 300
    morph_batch: int = param(64, ge=1)              # slots of the jit(vmap) program
    morph_segment: int = param(10, ge=1)            # steps per call before finished slots are refilled
    # the steps of one call: a lax.while_loop, or written out (XLA:CPU runs conv nets ~8x slower inside
    # loop bodies); auto: unrolled on CPU, while elsewhere
    morph_loop: str = param("auto", choices=("auto", "while", "unrolled"))
    # path-mask (4.6)
    mask_lr: float = param(1e-2, gt=0)              # thesis: Adam 1e-3 over 3000 steps
    mask_steps: int = param(200, ge=1)              # thesis 3000 (L1756)
    mask_l1: float = param(1.0, ge=0)               # 1 (L1756)
    mask_blur_sigma: float = param(1.0, gt=0)       # ours: the thesis does not give the blur's sigma
    mask_patience: int = param(10, ge=0)            # per-sample early stop: max |change of m| < mask_tol for this many steps (0: never)
    # lr / 2: Adam keeps moving a pixel that is not at a bound by ~lr per step around its optimum (and
    # the running normalisation weight shifts that optimum), so 1e-3 at lr 1e-2 never fired (README)
    mask_tol: float = param(5e-3, ge=0)
    mask_path_steps: int = param(16, ge=3)          # n of the path-mask path (thesis: not given; 4.4 uses 100)
    mask_samples: int = param(6, ge=1)              # Fig 5.3: correctly classified test inputs
    mask_wrong: int = param(2, ge=0)                # Fig 5.5: misclassified test inputs
    # beyond the document: path-mask beside every generic method of common.saliency's grid on the same
    # CNN and correctly classified test images (28 x 28 px); the costly methods on a few images, with
    # fewer iterations and pixel sizes for the small images (README "Decisions": its cost). The methods
    # scored before the grid (Saliency, IG, occlusion, Grad-CAM, Grad-CAM++, Score-CAM, Layer-CAM) keep
    # all images; every other scores the first 4 (scoring, 224 steps, costs as much as most maps)
    saliency: SaliencyBenchmark = param(default_factory=lambda: SaliencyBenchmark(
        extra_methods=("pathmask",), n_images=16,
        slow_methods=("fakecam", "center", "ablationcam", "xgradcam", "opticam", "rise", "meaningful",
                      "meaningful-top5"),
        n_images_slow=4, n_images_extremal=2, insertion_steps=224, ig_steps=32, opticam_iters=50, rise_masks=500,
        occlusion_window_px=4, extremal_iters=30, extremal_jitter=False, extremal_step_px=2, extremal_sigma_px=4.0,
        extremal_max_blur_px=2.5, meaningful_iters=50, meaningful_mask_size=7, meaningful_blur_px=1.25,
        meaningful_mask_blur_px=0.6), identity=False)
    bench_top: float = param(0.1, gt=0, lt=1)       # contrastive score: fraction of top pixels moved to the morph
    # claims
    error_rate_tol: float = param(0.05, gt=0)       # |error rate - 0.03| tolerance of the Wilson interval
    eval_batch: int = param(500, ge=1)
    n_examples: int = param(8, ge=1)
    progress: bool = param(True, identity=False)

    def validate(self) -> None:
        if -1 < self.alpha_lk < 0:
            raise ConfigError(f"alpha_lk = {self.alpha_lk}: -1 (the dataset's value) or >= 0 (0: norm term off)")
        if self.resolved_arch() == "cifar" and self.dataset != "cifar10":
            raise ConfigError(f"arch 'cifar' needs 3-channel 32x32 data, not '{self.dataset}'")
        if self.resolved_arch() != "cifar" and self.dataset == "cifar10":
            raise ConfigError("dataset 'cifar10' needs arch 'cifar' (or 'auto')")

    def resolved_arch(self) -> str:
        return ARCH[self.dataset] if self.arch == "auto" else self.arch

    def resolved_alpha_lk(self) -> float:
        return ALPHA_LK[self.dataset] if self.alpha_lk == -1 else self.alpha_lk


# --------------------------------------------------------------------------------------------------
# Presets: overrides of the defaults above (the default preset is the defaults themselves), beside
# the config they override; experiments/pathmask.py registers with them
# --------------------------------------------------------------------------------------------------
PRESETS = {
    "smoke": {"cnn.epochs": 1, "vae.epochs": 1, "best_of": 4, "recon_label_samples": 20, "interp_pairs": 20, "path_steps": 20,
              "corr_pairs": 8, "corr_path_steps": 10, "morph_samples": 8, "morph_batch": 4, "morph_segment": 10,
              "morph_max_steps": 30, "morph_lr": 0.05, "mask_steps": 10, "mask_path_steps": 5, "mask_patience": 0,
              "mask_samples": 2, "mask_wrong": 1, "n_examples": 3, "saliency.n_images": 3, "saliency.ig_steps": 4,
              "saliency.methods": ("saliency", "ig", "occlusion", "gradcam", "gradcampp", "scorecam", "layercam"),
              "progress": False},
    "default": {},
    "paper": {"dataset": "mnist", "cnn.epochs": 10, "vae.epochs": 50, "cnn.batch_size": 128, "vae.batch_size": 128,
              "interp_pairs": 1000, "corr_pairs": 1000, "corr_path_steps": 100, "morph_lr": 1e-3,
              "morph_max_steps": 5000, "morph_batch": 512, "morph_segment": 100, "mask_lr": 1e-3, "mask_steps": 3000,
              "mask_patience": 0, "mask_path_steps": 100, "mask_samples": 8, "mask_wrong": 3},
}
