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
class FGSMSettings:       # Eq 6.2: one signed gradient step of eps
    fn: str = param("fgsm", kind="name")
    label: str = param("FGSM", kind="name", identity=False)   # table and plot text only
    eps: tuple = param((0.5, 1.0, 2.0, 4.0, 8.0, 16.0), items=item(float, gt=0), min_length=1)


@dataclasses.dataclass
class BIMSettings:        # Eq 6.3: eps is the STEP size; total change up to steps * eps, no eps-ball
    fn: str = param("bim", kind="name")
    label: str = param("BIM", kind="name", identity=False)   # table and plot text only
    eps: tuple = param((0.5, 1.0, 2.0, 4.0, 8.0), items=item(float, gt=0), min_length=1)
    steps: int = param(10, ge=1)


@dataclasses.dataclass
class CWSettings:         # Eq 6.4: eps is a dimensionless factor on C&W's final delta (L1424)
    fn: str = param("cw", kind="name")
    label: str = param("C&W", kind="name", identity=False)   # table and plot text only
    eps: tuple = param((0.5, 1.0, 2.0, 4.0), items=item(float, gt=0), min_length=1)
    steps: int = param(100, ge=1)
    lr: float = param(1e-3, gt=0)
    c: float = param(10.0, gt=0)
    kappa: float = param(0.0, ge=0)
    box: str = param("tanh", choices=("tanh", "clip"))   # C&W's change of variables, or projected Adam on delta


@dataclasses.dataclass
class Attacks:
    """The attacks of Fig 6.3-6.5, by name (the name is the metric key's: ``gap_<name>_...``)."""
    fgsm: FGSMSettings = dataclasses.field(default_factory=FGSMSettings)
    bim: BIMSettings = dataclasses.field(default_factory=BIMSettings)
    cw: CWSettings = dataclasses.field(default_factory=CWSettings)
    # the same C&W with the clip box: the tanh box freezes every pixel at exactly 0 or 1 (most of a
    # digit), so both boxes are reported (issue 23)
    cw_clip: CWSettings = dataclasses.field(default_factory=lambda: CWSettings(label="C&W clip-box", box="clip"))


def attack_items(attacks) -> list:
    """[(name, settings)] of an ``Attacks`` (or any dataclass of attack settings), in field order."""
    return [(f.name, getattr(attacks, f.name)) for f in dataclasses.fields(attacks)]


@dataclasses.dataclass
class AdversarialConfig:
    capacity: CapacityConfig = dataclasses.field(
        default_factory=lambda: CapacityConfig(classifiers=("residual", "wide")))
    role_R: str = param("residual", kind="name")   # plays ResNet50 (f_R): the digit ResNet
    role_I: str = param("wide", kind="name")       # plays Inception-v3 (f_I): the wide shallow net (Inception's
                                                   # wide modules)
    n_eval: int = param(100, ge=1)    # test images attacked (paper: the 50,000 of ImageNet val; default: 100, cost)
    batch_size: int = param(100, ge=1)
    # --- the threat model of 6.2.2 (eps in 0-255 units): attacks as data ---------------------------
    # one entry per attack: its settings dataclass, whose ``fn`` names a function registered in
    # adversarial/attacks.py (ATTACKS); tables, plots, stage keys and claims iterate over the entries
    attacks: Attacks = dataclasses.field(default_factory=Attacks)
    # --- how gradients cross the JAX autoencoder --------------------------------------------------
    ae_backend: str = param("torch", choices=("torch", "bridge"))   # torch SegNet twin, or jax_as_torch (bench)
    fold_bn: bool = True              # fold eval-mode batch norm into the convolutions (same function, faster)
    # --- Tab 6.1 / Fig 6.6 ------------------------------------------------------------------------
    n_ssim: int = param(100, ge=1)    # images whose gradient maps are compared (the thesis does not say)
    ssim_win: int = param(7, ge=3)    # skimage's default window; odd, <= image side
    # --- beyond the thesis: the adaptive curve (adversarial/adaptive.py) -------------------------
    # budgets: every L_inf radius of Fig 6.3's FGSM / BIM (derived from ``attacks``), and as L2 balls
    n_adaptive: int = param(12, ge=1)    # the first n of the n_eval images (default: fewer, for cost)
    # default: L_inf only (BIM's threat model; cost), the paper preset adds the L2 balls
    adaptive_norms: tuple = param(("Linf",), items=item(str, choices=("Linf", "L2")), min_length=1)
    # which of the L_inf radii also run as L2 balls, and where AutoAttack's later stages (APGD-T, FAB-T,
    # Square) run: "all" radii, those of the iterative attacks (BIM: the budgets the claim judges), or
    # "check": check_eps alone (default, for cost: ~25 CPU-s per model and budget on 16 digits)
    l2_budgets: str = param("iterative", choices=("all", "iterative"))
    autoattack_budgets: str = param("check", choices=("all", "iterative", "check"))
    adaptive_steps: int = param(100, ge=1)          # APGD-CE / -DLR / -T and FAB-T: AutoAttack's published 100
    # APGD-CE and APGD-DLR random restarts: 1, as AutoAttack standard runs APGD-CE (2 doubled the
    # default's dominant cost; the table keeps APGD-CE's first run beside all restarts to show what they add)
    adaptive_restarts: int = param(1, ge=1)
    square_queries: int = param(5000, ge=1)         # AutoAttack standard's Square: the published 5000
    pgd_steps: int = param(50, ge=1)                # PGD is the reference beside APGD's 100 (paper: 100; cost)
    pgd_restarts: int = param(1, ge=1)              # later restarts only on the survivors (paper: 2)
    check_eps: float = param(20.0, gt=0)            # L_inf (0-255) of the Square-alone and transfer checks
    check_square_queries: int = param(1000, ge=1)   # Square alone at check_eps (a black-box reference)
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
        for name, settings in attack_items(self.attacks):
            v = settings.eps
            if list(v) != sorted(v):
                raise ConfigError(f"attacks.{name}.eps = {v} must be increasing")
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
              "n_eval": 24, "batch_size": 24, "attacks.bim.steps": 3, "attacks.cw.steps": 10,
              "attacks.cw_clip.steps": 10, "n_ssim": 6, "n_adaptive": 12,
              "pgd_steps": 5, "pgd_restarts": 2, "adaptive_steps": 3, "square_queries": 20, "check_square_queries": 20,
              "adaptive_norms": ("Linf", "L2"), "check_eps": 6.0, "n_boot": 50, "n_grid": 8, "progress": False},
    "default": {},
    "paper": {**_cap("paper"), "capacity.classifiers": ("resnet50", "inception_v3"), "role_R": "resnet50",
              "role_I": "inception_v3", "n_eval": 50_000, "batch_size": 100, "n_ssim": 1000, "n_adaptive": 1000,
              "check_eps": 4.0, "adaptive_norms": ("Linf", "L2"), "l2_budgets": "all", "pgd_steps": 100,
              "pgd_restarts": 2,
              "autoattack_budgets": "all"},
}
