import dataclasses

import pytest

from common.config import ConfigError, apply_overrides, config_hash, parse_set_args
from common.trainer import TrainConfig


@dataclasses.dataclass
class Cfg:
    width: int = 8
    name: str = "a"
    sizes: tuple = (1, 2)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def test_overrides_nested_and_typed():
    cfg = apply_overrides(Cfg(), {"train.epochs": "3", "width": 16, "train.lr": "0.5", "sizes": "[3, 4]",
                                  "train.compile": "true"})
    assert cfg.train.epochs == 3 and cfg.width == 16 and cfg.train.lr == 0.5
    assert cfg.sizes == (3, 4) and cfg.train.compile is True
    assert Cfg().train.epochs == TrainConfig().epochs  # the default is not mutated


@pytest.mark.parametrize("bad", [{"nope": 1}, {"train.nope": 1}, {"width.x": 1}, {"width": "abc"}])
def test_unknown_or_bad_keys_raise(bad):
    with pytest.raises(ConfigError):
        apply_overrides(Cfg(), bad)


def test_hash_changes_with_config():
    assert config_hash(Cfg()) == config_hash(Cfg())
    assert config_hash(Cfg()) != config_hash(apply_overrides(Cfg(), {"width": 9}))


def test_parse_set_args():
    assert parse_set_args(["a.b=1", "c= x"]) == {"a.b": "1", "c": "x"}
    with pytest.raises(ConfigError):
        parse_set_args(["novalue"])


def test_config_validate_hook_runs_at_resolve_time():
    """A check that relates fields (defined by the config) refuses the value before any work."""
    from common.registry import get
    exp = get("capacity.tab5_1")
    with pytest.raises(ConfigError, match="multiple of 8"):
        exp.resolve_config("default", {"image_size": "28"})
    assert exp.resolve_config("default", {"image_size": "40"}).image_size == 40
