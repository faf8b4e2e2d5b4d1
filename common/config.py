"""One config mechanism for every experiment: a (possibly nested) dataclass plus presets.

A preset is a dict of overrides on the dataclass defaults, never a copy of the config.
Keys are dotted paths into nested dataclasses (``"train.epochs": 3``). Unknown keys raise
``ConfigError``, which the CLI turns into one clear line and exit code 2.

Fields declare their valid values where they are defined, with ``param``::

    epochs: int = param(5, ge=1)
    lr: float = param(1e-3, gt=0)
    optimizer: str = param("adam", choices=("sgd", "adam"))

``validate(cfg)`` checks every field (non-finite floats are always refused), then calls the config's
own ``validate()`` method if it has one (checks that relate fields, e.g. an image size that the
autoencoder's poolings must divide); it runs when a run's config is resolved, before anything is
trained or written. A field set by the run itself
(``param(0, run_level="--seed")``) cannot be overridden with ``--set``: the error points to the flag.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Mapping, Sequence


class ConfigError(ValueError):
    """A config key or value that does not fit the experiment's config dataclass."""


def param(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
          lt: float | None = None, choices: Sequence[Any] | None = None, run_level: str | None = None,
          identity: bool = True):
    """A dataclass field with its valid range (bounds inclusive with ge/le, exclusive with gt/lt),
    or its allowed ``choices``; ``run_level`` names the CLI flag that sets it instead of ``--set``.
    ``identity=False``: the field never changes what a stage produces (a progress bar, a log
    interval), so ``identity_dict`` leaves it out of the stage keys."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=tuple(choices) if choices else None,
                                  run_level=run_level).items() if v is not None}
    if not identity:
        meta["identity"] = False
    return dataclasses.field(default=default, metadata=meta)


def _range_text(meta: Mapping[str, Any]) -> str:
    if "choices" in meta:
        return "one of " + ", ".join(map(str, meta["choices"]))
    lo = f"{'>=' if 'ge' in meta else '>'} {meta.get('ge', meta.get('gt'))}" if ("ge" in meta or "gt" in meta) else ""
    hi = f"{'<=' if 'le' in meta else '<'} {meta.get('le', meta.get('lt'))}" if ("le" in meta or "lt" in meta) else ""
    return " and ".join(t for t in (lo, hi) if t) or "a finite number"


def _bad(value: Any, meta: Mapping[str, Any]) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return True
    if "choices" in meta:
        return value not in meta["choices"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (("ge" in meta and not value >= meta["ge"]) or ("gt" in meta and not value > meta["gt"])
            or ("le" in meta and not value <= meta["le"]) or ("lt" in meta and not value < meta["lt"]))


def validate(cfg: Any, prefix: str = "") -> Any:
    """Raise ConfigError (key, value, valid range) at the first field outside its declared range."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
        elif _bad(value, f.metadata):
            raise ConfigError(f"config key '{key}' = {value!r} is invalid: must be {_range_text(f.metadata)}")
    if callable(getattr(type(cfg), "validate", None)):   # checks that relate fields, defined by the config
        cfg.validate()
    return cfg


def to_dict(cfg: Any) -> dict:
    """Plain-JSON view of a config dataclass (nested dataclasses become dicts)."""
    return dataclasses.asdict(cfg)


def identity_dict(cfg: Any) -> dict:
    """``to_dict`` without the fields declared ``param(..., identity=False)``, at any depth: what a
    stage reading ``cfg`` is keyed by (common.context.RunContext.work_dir)."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("identity", True):
            v = getattr(cfg, f.name)
            out[f.name] = identity_dict(v) if dataclasses.is_dataclass(v) else v
    return out


def config_hash(obj: Any, n: int = 10) -> str:
    """Short stable hash of a config (or any JSON-able value); names cached work directories."""
    if dataclasses.is_dataclass(obj):
        obj = to_dict(obj)
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def _coerce(value: Any, current: Any, key: str) -> Any:
    """Convert a CLI string (or a preset value) to the type of the field's current value."""
    if not isinstance(value, str) or isinstance(current, str):
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(current, tuple) and isinstance(value, list):
            return tuple(value)
        return value
    if current is None:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    try:
        if isinstance(current, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        if isinstance(current, (list, tuple)):
            parsed = json.loads(value)
            if not isinstance(parsed, list):
                raise ValueError(value)
            return type(current)(parsed)
    except (ValueError, json.JSONDecodeError):
        raise ConfigError(f"config key '{key}': cannot read {value!r} as {type(current).__name__}") from None
    return value


def apply_overrides(cfg: Any, overrides: Mapping[str, Any]) -> Any:
    """Return a copy of ``cfg`` with dotted-key overrides applied; unknown keys raise ConfigError."""
    for key, value in overrides.items():
        parts = key.split(".")
        cfg = _replace_path(cfg, parts, value, key)
    return cfg


def _replace_path(node: Any, parts: list[str], value: Any, full_key: str) -> Any:
    if not dataclasses.is_dataclass(node):
        raise ConfigError(f"unknown config key '{full_key}'")
    names = {f.name for f in dataclasses.fields(node)}
    head = parts[0]
    if head not in names:
        raise ConfigError(
            f"unknown config key '{full_key}' (known at this level: {', '.join(sorted(names))})")
    current = getattr(node, head)
    flag = next(f for f in dataclasses.fields(node) if f.name == head).metadata.get("run_level")
    if flag:
        raise ConfigError(f"config key '{full_key}' is set by the run: use {flag} instead of --set")
    if len(parts) == 1:
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{full_key}' is a group; set its fields with dots")
            new = apply_overrides(current, value)
        else:
            new = _coerce(value, current, full_key)
    else:
        new = _replace_path(current, parts[1:], value, full_key)
    return dataclasses.replace(node, **{head: new})


def parse_set_args(items: list[str]) -> dict[str, str]:
    """``["train.epochs=3", "lr=0.1"]`` -> dict; a malformed item raises ConfigError."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@dataclasses.dataclass
class TrainConfig:
    """Settings of common.trainer.fit; here (not in trainer.py) so that registrations need no torch."""
    epochs: int = param(5, ge=1)
    batch_size: int = param(128, ge=1)      # global batch (split across DDP ranks)
    lr: float = param(1e-3, gt=0)
    optimizer: str = param("adam", choices=("sgd", "adam", "adamw", "adamax"))
    momentum: float = param(0.9, ge=0, lt=1)   # sgd only
    weight_decay: float = param(0.0, ge=0)
    schedule: str = param("constant", choices=("constant", "cosine", "onecycle"))
    warmup_frac: float = param(0.0, ge=0, le=1)   # onecycle: fraction of steps to the peak
    ckpt_every: int = param(200, ge=1)      # steps between checkpoints (and one at the end)
    log_every: int = param(20, ge=1, identity=False)
    eval_every: int = param(0, ge=0)        # steps between evaluations of fit's eval_data (0: at the end only)
    device: str = param("auto", run_level="--device")   # auto | cpu | cuda | cuda:N, from the run
    amp: str = param("auto", choices=("auto", "bf16", "off"))        # auto: bf16 on CUDA
    channels_last: str = param("auto", choices=("auto", "on", "off"))  # auto: on CUDA
    compile: bool = False
    seed: int = param(0, ge=0, run_level="--seed")   # the run's seed (RunContext.train_config)
    grad_clip: float = param(0.0, ge=0)     # 0 = off
    progress: bool = param(True, identity=False)
    num_workers: int = param(4, ge=0, identity=False)   # DataLoader workers (a torch Dataset only; 0 after JAX started)
