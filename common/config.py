"""One config mechanism for every experiment: a (possibly nested) dataclass plus presets.

A preset is a dict of overrides on the dataclass defaults, never a copy of the config.
Keys are dotted paths into nested dataclasses (``"train.epochs": 3``). Unknown keys raise
``ConfigError``, which the CLI turns into one clear line and exit code 2.

Every field declares its valid values where it is defined, with ``param``; the field's type is its
annotation (a str where a float belongs is refused), floats are always finite::

    epochs: int = param(5, ge=1)
    lr: float = param(1e-3, gt=0)
    optimizer: str = param("adam", choices=("sgd", "adam"))
    dataset: str = param("mnist5k", kind="dataset")      # a string without fixed choices says what it is
    eps: tuple = param((0.5, 1.0), items=item(float, gt=0), min_length=1)
    widths: tuple = param(((8, 8),), items=item(tuple, items=item(int, ge=1), length=2))

A bool is declared by its type, a nested config by its own fields (``undeclared_fields`` lists any
other field without a domain; a test holds every registered experiment to it).

``validate(cfg)`` checks every field, tuple items included, then calls the config's own
``validate()`` method if it has one (checks that relate fields, e.g. an image size that the
autoencoder's poolings must divide); whatever that method raises becomes a ConfigError. It runs
when a run's config is resolved, before anything is trained or written, and so does
``check_datasets`` (dataset and split names against the data registry). A field set by the run
itself (``param(0, run_level="--seed")``) cannot be overridden with ``--set``: the error points to
the flag.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import typing
from typing import Any, Mapping, Sequence


class ConfigError(ValueError):
    """A config key or value that does not fit the experiment's config dataclass."""


# kinds of string without fixed choices; "dataset" and "split" are checked against the data registry
# before any work (check_datasets), "device" by common.devices.check_device
KINDS = ("name", "path", "dataset", "split", "device")


@dataclasses.dataclass(frozen=True)
class Domain:
    """The valid values of a config field, or of each item of a tuple field (``item``)."""
    type: type | None = None               # None: the field's annotation
    ge: float | None = None                # bounds: inclusive with ge / le, exclusive with gt / lt
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    kind: str | None = None                # a string without fixed choices: what it is (KINDS)
    optional: bool = False                 # a string of a kind that may be "" (the field says what "" means)
    items: Domain | None = None            # tuples: the domain of each item
    length: int | None = None              # tuples: exactly this many items
    min_length: int | None = None          # tuples: at least this many items

    def __post_init__(self):
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"unknown string kind {self.kind!r} (one of {', '.join(KINDS)})")


def item(type: type, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
         lt: float | None = None, choices: Sequence[Any] | None = None, kind: str | None = None,
         optional: bool = False, items: Domain | None = None, length: int | None = None,
         min_length: int | None = None) -> Domain:
    """The domain of each item of a tuple field: ``param((1, 2), items=item(int, ge=1))``."""
    return Domain(type, ge, gt, le, lt, tuple(choices) if choices is not None else None, kind, optional, items,
                  length, min_length)


def param(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
          ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
          choices: Sequence[Any] | None = None, kind: str | None = None, optional: bool = False,
          items: Domain | None = None, length: int | None = None, min_length: int | None = None,
          run_level: str | None = None, identity: bool = True):
    """A dataclass field with its valid values: a range (bounds inclusive with ge/le, exclusive with
    gt/lt), ``choices``, a string ``kind``, or for tuples ``items`` (each item's domain) and a
    ``length`` / ``min_length``; its type is the field's annotation. ``run_level`` names the CLI flag
    that sets the field instead of ``--set``. ``identity=False``: the field never changes what a stage
    produces (a progress bar, a log interval), so ``identity_dict`` leaves it out of the stage keys."""
    meta: dict[str, Any] = {"domain": Domain(None, ge, gt, le, lt, tuple(choices) if choices is not None else None,
                                             kind, optional, items, length, min_length)}
    if run_level is not None:
        meta["run_level"] = run_level
    if not identity:
        meta["identity"] = False
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


@functools.lru_cache(maxsize=None)
def _field_types(cls: type) -> dict[str, Any]:
    """Each field's annotation as a type (annotations are strings under ``from __future__``)."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {}


_TYPE_TEXT = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
              tuple: "a list", list: "a list"}


def _fits_type(value: Any, typ: Any) -> bool:
    if typ is bool:
        return isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if typ in (tuple, list):
        return isinstance(value, (tuple, list))     # a JSON list on the CLI; tuples in the dataclass
    return not isinstance(typ, type) or isinstance(value, typ)


def _describe(dom: Domain, typ: Any) -> str:
    """What a value of this domain must be, as the end of "... is invalid: must be <this>"."""
    if dom.choices is not None:
        return "one of " + ", ".join(map(str, dom.choices))
    text = _TYPE_TEXT.get(typ, f"a {getattr(typ, '__name__', typ)}")
    if typ is str and dom.kind:
        text = f"a {'' if dom.optional else 'non-empty '}{dom.kind} name" if dom.kind != "path" else "a path"
    bounds = [f"{op} {v}" for op, v in ((">=", dom.ge), (">", dom.gt), ("<=", dom.le), ("<", dom.lt)) if v is not None]
    if bounds:
        text += " " + " and ".join(bounds)
    if typ in (tuple, list):
        if dom.length is not None:
            text += f" of {dom.length} item{'s' * (dom.length != 1)}"
        elif dom.min_length:
            text += f" of at least {dom.min_length} item{'s' * (dom.min_length != 1)}"
        if dom.items is not None:
            text += f", each {_describe(dom.items, dom.items.type)}"
    return text


def _problem(value: Any, dom: Domain, typ: Any, where: tuple = ()) -> tuple[tuple, Any, str] | None:
    """None when ``value`` fits; else (item path, the offending value, what it must be)."""
    bad = (where, value, _describe(dom, typ))
    if not _fits_type(value, typ):
        return bad
    if dom.choices is not None:
        return None if value in dom.choices else bad
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (
            (dom.ge is not None and not value >= dom.ge) or (dom.gt is not None and not value > dom.gt)
            or (dom.le is not None and not value <= dom.le) or (dom.lt is not None and not value < dom.lt)):
        return bad
    if typ is str and dom.kind and dom.kind != "path" and not dom.optional and not value:
        return bad
    if typ in (tuple, list):
        if (dom.length is not None and len(value) != dom.length) or len(value) < (dom.min_length or 0):
            return bad
        if dom.items is not None:
            for i, v in enumerate(value):
                found = _problem(v, dom.items, dom.items.type, (*where, i))
                if found:
                    return found
    return None


def _domain(f: dataclasses.Field) -> Domain:
    return f.metadata.get("domain") or Domain()


def validate(cfg: Any, prefix: str = "") -> Any:
    """Raise ConfigError (key, value, what it must be) at the first field, or tuple item, outside its
    declared domain; then run the config's own ``validate()`` (nested configs first)."""
    types = _field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
            continue
        found = _problem(value, _domain(f), types.get(f.name))
        if found:
            where, bad, text = found
            at = f" item {'.'.join(map(str, where))}" if where else ""
            raise ConfigError(f"config key '{key}'{at} = {bad!r} is invalid: must be {text}")
    if callable(getattr(type(cfg), "validate", None)):   # checks that relate fields, defined by the config
        try:
            cfg.validate()
        except ConfigError:
            raise
        except Exception as e:   # a check written as an assert or a bare ValueError is still one line, exit 2
            where = f"config '{prefix[:-1]}'" if prefix else "config"
            raise ConfigError(" ".join(f"{where} is invalid: {type(e).__name__}: {e}".split())) from e
    return cfg


def _declared(dom: Domain | None, typ: Any) -> bool:
    if typ is bool:
        return True
    if dom is None:
        return False
    if typ in (int, float):
        return dom.choices is not None or any(v is not None for v in (dom.ge, dom.gt, dom.le, dom.lt))
    if typ is str:
        return dom.choices is not None or dom.kind is not None
    if typ in (tuple, list):
        return dom.items is not None and dom.items.type is not None and _declared(dom.items, dom.items.type)
    return False


def undeclared_fields(cfg: Any, prefix: str = "") -> list[str]:
    """Keys of the fields (nested ones included) whose valid values are not declared: a number
    without a range or choices, a string without choices or a kind, a tuple without an item domain,
    anything without a type. A bool is declared by its type, a nested config by its fields."""
    types, out = _field_types(type(cfg)), []
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out += undeclared_fields(value, key + ".")
        elif not _declared(f.metadata.get("domain"), types.get(f.name)):
            out.append(key)
    return out


def check_datasets(cfg: Any, splits_of: Mapping[str, Sequence[str]], prefix: str = "") -> Any:
    """Raise ConfigError unless every dataset field (named ``dataset`` or of kind "dataset") names a
    registered dataset (``splits_of``: name -> its splits, common.data.available_datasets) and every
    split field (kind "split") one of the splits of its config's dataset."""
    dataset = None
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_datasets(value, splits_of, key + ".")
        elif f.name == "dataset" or _domain(f).kind == "dataset":
            if value not in splits_of:
                raise ConfigError(f"config key '{key}' = {value!r} is not a registered dataset "
                                  f"(one of {', '.join(sorted(splits_of))})")
            dataset = value
    for f in dataclasses.fields(cfg):
        value, dom = getattr(cfg, f.name), _domain(f)
        if dom.kind == "split" and not (dom.optional and value == ""):
            if dataset is None:
                raise ConfigError(f"config key '{prefix}{f.name}' is a split of no dataset field")
            if value not in splits_of[dataset]:
                raise ConfigError(f"config key '{prefix}{f.name}' = {value!r} is not a split of dataset "
                                  f"'{dataset}' (one of {', '.join(splits_of[dataset])})")
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
    device: str = param("auto", kind="device", run_level="--device")   # auto | cpu | cuda | cuda:N, from the run
    amp: str = param("auto", choices=("auto", "bf16", "off"))        # auto: bf16 on CUDA
    channels_last: str = param("auto", choices=("auto", "on", "off"))  # auto: on CUDA
    compile: bool = False
    seed: int = param(0, ge=0, run_level="--seed")   # the run's seed (RunContext.train_config)
    grad_clip: float = param(0.0, ge=0)     # 0 = off
    progress: bool = param(True, identity=False)
    num_workers: int = param(4, ge=0, identity=False)   # DataLoader workers (a torch Dataset only; 0 after JAX started)
