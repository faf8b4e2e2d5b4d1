"""The experiment registry: what an experiment is, its presets and seeds, and how names are found.

An experiment is registered (in ``experiments/<chapter>.py``) with its config dataclass, its
three presets as overrides, the thesis' reported numbers and its claim checks. The science lives
in the chapter folder and is named by a ``"module:function"`` target, imported only when run, so
``--list`` stays fast and one chapter's missing dependency cannot break another.

Seeds: a preset names its training seeds (``DEFAULT_SEEDS``: three at the default preset, where
effects are small and a single seed can be lucky).
"""
from __future__ import annotations

import dataclasses
import importlib
import sys
from typing import Any, Callable, Mapping, Sequence

from common.claims import Claim
from common.config import ConfigError, apply_overrides, check_datasets, validate

PRESETS = ("smoke", "default", "paper")
DEFAULT_SEEDS = {"smoke": (0,), "default": (0, 1, 2), "paper": (0,)}
VARIANT_SEP = "@"


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str                                   # "<chapter>.<table or figure>", e.g. "vqa.tab4_1"
    target: str                                 # "vqa.tables:table_4_1"
    config: type                                # dataclass; its defaults are the default preset
    presets: Mapping[str, Mapping[str, Any]]    # smoke / paper overrides ("default" may be {})
    title: str = ""
    source: str = ""                            # "000 ch. 4, Tab 4.1"
    reported: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    reported_on: str = ""                       # data the thesis measured on ("ImageNet val"); paper preset only
    claims: tuple[Claim, ...] = ()
    seeds: Mapping[str, Sequence[int]] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SEEDS))
    variants: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # name -> overrides
    variant_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)       # set on a variant
    registered_in: str = ""                     # module that registered it (re-imported by worker processes)
    # experiments that train the same stages must never run at once: one lane per (lane, seed); a
    # chapter that reuses another's trained models names that chapter here (adversarial: "capacity")
    lane: str = ""

    @property
    def chapter(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def lane_key(self) -> str:
        return self.lane or self.chapter

    def resolve_config(self, preset: str, overrides: Mapping[str, Any] | None = None):
        """Defaults, then the preset, then the variant, then the user's overrides; every value checked,
        dataset and split names against the data registry included (a ConfigError before any work)."""
        from common.data import available_datasets   # numpy, and the chapters' dataset modules: not at --list
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
        cfg = apply_overrides(self.config(), self.presets.get(preset, {}))
        cfg = apply_overrides(cfg, self.variant_overrides)
        cfg = validate(apply_overrides(cfg, overrides or {}))
        return check_datasets(cfg, {name: entry.splits for name, entry in available_datasets().items()})

    def seeds_for(self, preset: str) -> tuple[int, ...]:
        return tuple(self.seeds.get(preset, DEFAULT_SEEDS[preset]))

    def function(self) -> Callable:
        module, fn = self.target.split(":")
        return getattr(importlib.import_module(module), fn)


_EXPERIMENTS: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    """Register an experiment and each of its named variants (``<name>@<variant>``: own result folder,
    own REPORT section, run by ``--only`` only when named exactly or by its chapter)."""
    missing = [p for p in ("smoke", "paper") if p not in exp.presets]
    if missing:
        raise ValueError(f"experiment {exp.name} lacks preset(s) {missing}: every experiment has three")
    if not exp.registered_in:
        exp = dataclasses.replace(exp, registered_in=sys._getframe(1).f_globals.get("__name__", ""))
    _EXPERIMENTS[exp.name] = exp
    for vname, vover in exp.variants.items():
        v = dataclasses.replace(exp, name=f"{exp.name}{VARIANT_SEP}{vname}", variants={}, variant_overrides=dict(vover),
                                title=f"{exp.title} (variant {vname}: "
                                      + ", ".join(f"{k}={val}" for k, val in vover.items()) + ")")
        _EXPERIMENTS[v.name] = v
    return exp


def discover() -> dict[str, Experiment]:
    """Import every module of the ``experiments`` package (they only register; nothing heavy)."""
    import pkgutil
    import experiments
    for info in pkgutil.iter_modules(experiments.__path__):
        importlib.import_module(f"experiments.{info.name}")
    return dict(sorted(_EXPERIMENTS.items()))


def get(name: str) -> Experiment:
    exps = discover()
    if name not in exps:
        raise ConfigError(f"unknown experiment '{name}' (python -m common.run --list shows them)")
    return exps[name]


def select(names: Sequence[str], only: Sequence[str]) -> list[str]:
    """``--only`` items: an exact experiment name (``vqa.tab4_1``, not its variants) or a whole
    chapter (``vqa``, variants included)."""
    if not only:
        return list(names)
    unknown = [o for o in only if o not in names and not any(n.split(".", 1)[0] == o for n in names)]
    if unknown:
        raise ConfigError(f"--only: no experiment or chapter named {', '.join(unknown)} (see --list)")
    return [n for n in names if n in only or n.split(".", 1)[0] in only]
