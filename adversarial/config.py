"""Config of the chapter (dataclasses only: experiments/adversarial.py imports this at load time).

The models are capacity/'s (chapter 5): ``capacity`` is a whole ``CapacityConfig`` whose presets are
capacity's own smoke / default / paper settings, so ``capacity.models.trained_models`` finds the
classifiers and autoencoders capacity's runs trained (identical stage keys) or trains them once.
Only the two classifiers playing the thesis' R and I roles are asked for: capacity's stage keys are
per classifier, so the folders are the same ones capacity's five-classifier run wrote.
"""
from __future__ import annotations

import dataclasses

from capacity.config import PRESETS as CAPACITY_PRESETS
from capacity.config import CapacityConfig
from common.config import ConfigError, item, param


@dataclasses.dataclass
class AdversarialConfig:
    capacity: CapacityConfig = dataclasses.field(
        default_factory=lambda: CapacityConfig(classifiers=("residual", "wide")))
    role_R: str = param("residual", kind="name")   # plays ResNet50 (f_R): the digit ResNet
    role_I: str = param("wide", kind="name")       # plays Inception-v3 (f_I): the wide shallow net (Inception's
                                                   # wide modules)
    n_eval: int = param(200, ge=1)    # test images attacked (paper: the 50,000 of ImageNet val)
    batch_size: int = param(200, ge=1)
    # --- the threat model of 6.2.2 (eps in 0-255 units) -----------------------------------------
    fgsm_eps: tuple = param((0.5, 1.0, 2.0, 4.0, 8.0, 16.0), items=item(float, gt=0), min_length=1)
    # bim_eps: the STEP size (Eq 6.3); total change up to steps * eps
    bim_eps: tuple = param((0.5, 1.0, 2.0, 4.0, 8.0), items=item(float, gt=0), min_length=1)
    bim_steps: int = param(10, ge=1)
    # cw_eps: a dimensionless factor on C&W's final delta (L1424)
    cw_eps: tuple = param((0.5, 1.0, 2.0, 4.0), items=item(float, gt=0), min_length=1)
    cw_steps: int = param(100, ge=1)
    cw_lr: float = param(1e-3, gt=0)
    cw_c: float = param(10.0, gt=0)
    cw_kappa: float = param(0.0, ge=0)
    cw_box: str = param("tanh", choices=("tanh", "clip"))   # C&W's change of variables, or projected Adam on delta
    # --- how gradients cross the JAX autoencoder --------------------------------------------------
    ae_backend: str = param("torch", choices=("torch", "bridge"))   # torch SegNet twin, or jax_as_torch (bench)
    fold_bn: bool = True              # fold eval-mode batch norm into the convolutions (same function, faster)
    # --- Tab 6.1 / Fig 6.6 ------------------------------------------------------------------------
    n_ssim: int = param(100, ge=1)    # images whose gradient maps are compared (the thesis does not say)
    ssim_win: int = param(7, ge=3)    # skimage's default window; odd, <= image side
    # --- beyond the thesis: adaptive attacks ------------------------------------------------------
    n_adaptive: int = param(50, ge=1)    # AutoAttack standard is costly where the model resists APGD-CE
    adaptive_linf: float = param(0.3, gt=0)        # MNIST convention (ImageNet: 4/255)
    adaptive_l2: float = param(2.0, ge=0)          # MNIST convention; 0 = skip the L2 row (ImageNet)
    autoattack_version: str = param("standard", choices=("standard", "rand", "plus"))
    autoattack_steps: int = param(0, ge=0)         # 0: torchattacks' own (10 APGD / APGD-T / FAB iterations)
    autoattack_queries: int = param(0, ge=0)       # 0: torchattacks' own (5000 Square queries)
    pgd_steps: int = param(100, ge=1)
    pgd_restarts: int = param(5, ge=1)
    # --- claim tolerances (accuracy points) -----------------------------------------------------------
    tol: float = param(2.0, gt=0)     # "at least as robust / as strong": non-inferiority margin
    margin: float = param(2.0, gt=0)  # "no clean cost": f_i o A_i not worse than f_i by more than this
    n_boot: int = param(500, ge=50)
    n_grid: int = param(25, ge=2)     # points of the matched-L2 grid
    progress: bool = param(True, identity=False)

    def validate(self) -> None:   # after every field and self.capacity (common.config.validate)
        for role in (self.role_R, self.role_I):
            if role not in self.capacity.classifiers:
                raise ConfigError(f"role classifier '{role}' is not in capacity.classifiers {self.capacity.classifiers}")
        if self.role_R == self.role_I:
            raise ConfigError("role_R and role_I name the same classifier")
        for name in ("fgsm_eps", "bim_eps", "cw_eps"):
            v = getattr(self, name)
            if list(v) != sorted(v):
                raise ConfigError(f"{name} = {v} must be increasing")
        if self.ssim_win % 2 == 0 or self.ssim_win > self.capacity.image_size:
            raise ConfigError(f"ssim_win = {self.ssim_win} must be odd and at most image_size")


# --------------------------------------------------------------------------------------------------
# Presets: overrides of the defaults above (the default preset is the defaults themselves), beside
# the config they override; experiments/adversarial.py registers with them. The nested capacity
# config takes capacity's own presets (imported, not copied): the same stage keys as capacity's runs
# --------------------------------------------------------------------------------------------------
def _cap(preset):
    return {f"capacity.{k}": v for k, v in CAPACITY_PRESETS[preset].items()}


PRESETS = {
    "smoke": {**_cap("smoke"), "capacity.classifiers": ("lenet", "small"), "role_R": "lenet", "role_I": "small",
              "n_eval": 24, "batch_size": 24, "bim_steps": 3, "cw_steps": 10, "n_ssim": 6, "n_adaptive": 12,
              "pgd_steps": 5, "pgd_restarts": 2, "autoattack_steps": 3, "autoattack_queries": 20, "n_boot": 50, "n_grid": 8, "progress": False},
    "default": {},
    "paper": {**_cap("paper"), "capacity.classifiers": ("resnet50", "inception_v3"), "role_R": "resnet50",
              "role_I": "inception_v3", "n_eval": 50_000, "batch_size": 100, "n_ssim": 1000, "n_adaptive": 1000,
              "adaptive_linf": 4 / 255, "adaptive_l2": 0.0},
}
