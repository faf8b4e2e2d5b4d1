"""Every config value has a declared domain, and a value outside it is refused before any work.

The CLI cases run ``common.run.main`` in this process with the experiment's function replaced by a
recorder: a refused run must exit 2 with one line on stderr, never call the function, and leave
nothing in ``--out`` (no staging folder, no ``_work``).
"""
import ast
import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from common import devices, run
from common.config import ConfigError, TrainConfig, check_datasets, item, param, undeclared_fields, validate
from common.registry import PRESETS, Experiment, discover

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ("vqa", "capacity", "adversarial", "auxiliary", "pathmask", "attribution")


def _registered() -> dict[str, Experiment]:
    """The repository's experiments (not the toys other test modules register)."""
    return {n: e for n, e in discover().items() if e.registered_in.startswith("experiments.")}


# --------------------------------------------------------------------------------------------------
# (a) a domain for every field
# --------------------------------------------------------------------------------------------------
def test_every_field_of_every_registered_config_declares_its_domain():
    missing = {}
    for name, exp in _registered().items():
        fields = undeclared_fields(exp.resolve_config("default"))
        if fields:
            missing[exp.config.__name__] = fields
    assert not missing, f"config fields without a declared domain (param(..., ge=/choices=/kind=/items=)): {missing}"


def test_undeclared_fields_finds_numbers_strings_and_tuples_without_a_domain_nested_too():
    @dataclasses.dataclass
    class Inner:
        ratio: float = 0.5
        ok: float = param(0.5, ge=0)

    @dataclasses.dataclass
    class Outer:
        width: int = 8
        name: str = "a"
        label: str = param("a", kind="name")
        sizes: tuple = param((1, 2))                       # no item domain
        grid: tuple = param(((1,),), items=item(tuple))    # items without their own domain
        widths: tuple = param((1, 2), items=item(int, ge=1))
        flag: bool = True
        inner: Inner = dataclasses.field(default_factory=Inner)
        train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    assert undeclared_fields(Outer()) == ["width", "name", "sizes", "grid", "inner.ratio"]


# --------------------------------------------------------------------------------------------------
# (b) bad values: exit 2, one line, before any work
# --------------------------------------------------------------------------------------------------
BAD = [
    ("auxiliary.tab7_3", ["--set", "lambdas=[-1,-1,-1,-1]"],
     "config key 'lambdas' item 0 = -1 is invalid: must be a finite number >= 0"),
    ("adversarial.fig6_3", ["--set", "attacks.fgsm.eps=[1e400]"], "config key 'attacks.fgsm.eps' item 0 = inf is invalid"),
    ("adversarial.fig6_3", ["--set", 'attacks.fgsm.eps=[1,"x"]'],
     "config key 'attacks.fgsm.eps' item 1 = 'x' is invalid: must be a finite number > 0"),
    ("auxiliary.tab7_3", ["--set", 'three_groups=["a","b","c"]'],
     "config key 'three_groups' item 0 = 'a' is invalid: must be an integer >= 2"),
    ("attribution.figure_extremal_areas", ["--set", 'saliency.extremal_areas=["x"]'],
     "config key 'saliency.extremal_areas' item 0 = 'x' is invalid: must be a finite number > 0 and < 1"),
    ("auxiliary.saliency_benchmark", ["--set", "saliency.n_images=-1"],
     "config key 'saliency.n_images' = -1 is invalid: must be an integer >= 2"),
    ("pathmask.beyond_saliency", ["--set", 'saliency.methods=["gradcam","nosuch"]'],
     "config 'saliency' is invalid: ValueError: methods ('gradcam', 'nosuch'): unknown ['nosuch']"),
    ("capacity.bottleneck_sweep", ["--set", "sweep_widths=[[8,8],[8,0]]"], "config key 'sweep_widths' item 1.1 = 0"),
    ("capacity.tab5_1", ["--set", "dataset=nosuch"], "config key 'dataset' = 'nosuch' is not a registered dataset"),
    ("capacity.tab5_1", ["--set", "eval_split=bogus"], "'eval_split' = 'bogus' is not a split of dataset 'mnist5k'"),
    ("adversarial.fig6_3", ["--set", "capacity.train_split=bogus"], "config key 'capacity.train_split' = 'bogus'"),
    ("attribution.benchmark", ["--set", "dataset=nosuch"], "'nosuch' is not a registered dataset"),
    ("demo.digits_cnn", ["--set", "width=0"], "config key 'width' = 0 is invalid: must be an integer >= 1"),
    ("demo.digits_cnn", ["--device", "bogus"], "--device: unknown device 'bogus'"),
    ("demo.digits_cnn", ["--device", "cuda:7"], "--device: device 'cuda:7' asked for, but torch sees only 1 CUDA GPU"),
]


@pytest.mark.parametrize("experiment,args,needle", BAD, ids=[f"{e} {' '.join(a)}" for e, a, _ in BAD])
def test_bad_value_exits_2_with_one_line_before_any_work(experiment, args, needle, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(Experiment, "function", lambda self: lambda cfg, ctx: calls.append(self.name) or {})
    monkeypatch.setattr(devices, "_torch_cuda_count", lambda: 1)   # a machine with one GPU
    out = tmp_path / "out"
    rc = run.main([experiment, "--preset", "smoke", "--out", str(out), "--jobs", "1", *args])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2, lines
    assert len(lines) == 1 and needle in lines[0], lines
    assert calls == []
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.rglob("*"))


def test_an_error_raised_by_a_config_check_becomes_one_config_error_line():
    @dataclasses.dataclass
    class Checked:
        n: int = param(1, ge=0)

        def validate(self):
            if self.n == 3:
                raise AssertionError("three is\n  not allowed")   # as an assert would, over two lines
            if self.n == 4:
                raise ValueError("four")

    @dataclasses.dataclass
    class Outer:
        inner: Checked = dataclasses.field(default_factory=Checked)

    validate(Outer())
    with pytest.raises(ConfigError, match=r"^config 'inner' is invalid: AssertionError: three is not allowed$"):
        validate(Outer(Checked(3)))
    with pytest.raises(ConfigError, match=r"^config is invalid: ValueError: four$"):
        validate(Checked(4))


def test_split_fields_follow_their_own_config_dataset_and_may_be_optional():
    @dataclasses.dataclass
    class Data:
        dataset: str = param("a", kind="dataset")
        split: str = param("train", kind="split")
        extra: str = param("", kind="split", optional=True)

    splits = {"a": ("train", "test"), "b": ("val",)}
    check_datasets(Data(), splits)
    with pytest.raises(ConfigError, match="'split' = 'train' is not a split of dataset 'b'"):
        check_datasets(Data(dataset="b"), splits)
    with pytest.raises(ConfigError, match="'extra' = 'val' is not a split of dataset 'a'"):
        check_datasets(Data(extra="val"), splits)
    with pytest.raises(ConfigError, match="'split' = '' is invalid"):   # not optional: "" is refused
        validate(Data(split=""))


def test_device_names_are_checked_without_a_gpu():
    assert devices.check_device("auto", torch_cuda_count=0) == "auto"
    assert devices.check_device("cuda:1", torch_cuda_count=2) == "cuda:1"
    for name, count in (("gpu:x", 2), ("cuda:2", 2), ("cuda", 0), ("cpu:0", 0)):
        with pytest.raises(ConfigError, match="--device"):
            devices.check_device(name, torch_cuda_count=count)


# --------------------------------------------------------------------------------------------------
# (c) good values still pass; presets beside each chapter's config
# --------------------------------------------------------------------------------------------------
def test_every_preset_of_every_registered_experiment_resolves():
    for name, exp in _registered().items():
        for preset in PRESETS:
            exp.resolve_config(preset)


def test_presets_live_beside_each_chapter_config_and_no_registration_imports_another():
    for name, exp in _registered().items():
        if exp.chapter == "demo":       # the demo defines its config inside its registration
            continue
        chapter_presets = importlib.import_module(f"{exp.chapter}.config").PRESETS
        assert exp.presets["smoke"] is chapter_presets["smoke"], name
        assert set(chapter_presets["paper"]) <= set(exp.presets["paper"]), name
    for path in sorted((ROOT / "experiments").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                       [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            assert not any(m == "experiments" or m.startswith("experiments.") for m in modules), \
                f"{path.name} imports {modules}: presets belong in <chapter>/config.py"


def test_chapter_configs_and_their_presets_import_without_torch_or_jax():
    code = ("import sys\n"
            f"for ch in {CHAPTERS!r}:\n"
            "    __import__(ch + '.config', fromlist=['PRESETS']).PRESETS\n"
            "heavy = sorted(m for m in ('torch', 'jax') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
