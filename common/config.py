"""One config mechanism for every experiment: a (possibly nested) dataclass plus presets.

A preset is a dict of overrides on the dataclass defaults, never a copy of the config.
Keys are dotted paths into nested dataclasses (``"train.epochs": 3``). Unknown keys raise
``ConfigError``, which the CLI turns into one clear line and exit code 2.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping


class ConfigError(ValueError):
    """A config key or value that does not fit the experiment's config dataclass."""


def to_dict(cfg: Any) -> dict:
    """Plain-JSON view of a config dataclass (nested dataclasses become dicts)."""
    return dataclasses.asdict(cfg)


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
    epochs: int = 5
    batch_size: int = 128               # global batch (split across DDP ranks)
    lr: float = 1e-3
    optimizer: str = "adam"             # sgd | adam | adamw | adamax
    momentum: float = 0.9               # sgd only
    weight_decay: float = 0.0
    schedule: str = "constant"          # constant | cosine | onecycle
    warmup_frac: float = 0.0            # onecycle: fraction of steps to the peak
    ckpt_every: int = 200               # steps between checkpoints (and one at the end)
    log_every: int = 20
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    amp: str = "auto"                   # auto (bf16 on CUDA) | bf16 | off
    channels_last: str = "auto"         # auto (on CUDA) | on | off
    compile: bool = False
    seed: int = 0
    grad_clip: float = 0.0              # 0 = off
    progress: bool = True
    num_workers: int = 4                # DataLoader workers (a torch Dataset only; 0 after JAX started)
