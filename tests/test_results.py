import dataclasses
import json
import os

import pytest

from common import claims as C
from common import results as R
from common.claims import Claim
from common.config import TrainConfig
from common.experiment import run_experiment
from common.registry import Experiment, register
from common.report import write_report
from common.results import markdown_table, reported_vs_measured


@dataclasses.dataclass
class ToyConfig:
    value: float = 0.7
    fail: bool = False


def toy(cfg, ctx):
    from common.plotting import plt
    if cfg.fail or os.environ.get("TOY_PLANTED_FAILURE"):   # a failure of the canonical run, no overrides
        raise RuntimeError("planned failure")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, cfg.value])
    ctx.savefig(fig, "line", "a line")
    ctx.table("Toy", ["a", "b"], [[1, cfg.value]])
    import torch
    return {"acc": cfg.value * 100, "chance": 50.0, "threads_seen": torch.get_num_threads()}


register(Experiment(name="toy.exp", target="tests.test_results:toy", config=ToyConfig, title="toy",
                    source="test", presets={"smoke": {}, "default": {}, "paper": {"value": 0.9}},
                    reported={"acc": 71.0, "chance": {"value": 50.0, "note": "as printed"}},
                    claims=(Claim("acc above chance", C.greater("acc", "chance")),
                            Claim("paper-only", C.greater("acc", "chance"), presets=("paper",)))))


def test_result_record_has_provenance_and_tables(tmp_path):
    rec = run_experiment("toy.exp", "default", out_root=tmp_path, seed=5)
    d = tmp_path / "toy.exp" / "default+seeds-5"
    on_disk = json.loads((d / "result.json").read_text())
    prov = on_disk["provenance"]
    for key in ("config", "preset", "datasets", "seed", "device", "versions", "git", "wall_time_s", "started_utc"):
        assert key in prov, key
    assert prov["seed"] == 5 and prov["config"] == {"value": 0.7, "fail": False}
    assert prov["versions"]["torch"] and prov["versions"]["python"]
    assert on_disk["metrics"]["acc"] == pytest.approx(70.0)
    assert [c["status"] for c in rec["claims"]] == ["PASS", "SKIP"]
    md = (d / "tables.md").read_text()
    # default preset, embedded data: the thesis' number beside ours, no "difference" column
    assert "| acc | 70.00 | 71.00 |  |" in md and "difference" not in md and "as printed" in md
    assert "seed-5/line.png" in md and (d / "seed-5" / "line.png").stat().st_size > 1000


def test_failed_run_keeps_previous_result(tmp_path, monkeypatch):
    run_experiment("toy.exp", "smoke", out_root=tmp_path)
    good = (tmp_path / "toy.exp" / "smoke" / "result.json").read_text()
    # a failing run of the canonical folder (the failure planted through the config class itself)
    monkeypatch.setenv("TOY_PLANTED_FAILURE", "1")
    with pytest.raises(RuntimeError, match="planned failure"):
        run_experiment("toy.exp", "smoke", out_root=tmp_path)
    monkeypatch.delenv("TOY_PLANTED_FAILURE")
    assert (tmp_path / "toy.exp" / "smoke" / "result.json").read_text() == good
    failed = list((tmp_path / "toy.exp").glob("smoke.failed-*"))
    assert len(failed) == 1 and "planned failure" in (failed[0] / "error.txt").read_text()
    # a second good run replaces the current one and archives the first, never deletes it
    run_experiment("toy.exp", "smoke", out_root=tmp_path)
    archived = list((tmp_path / "toy.exp" / ".archive").glob("smoke-*/result.json"))
    assert len(archived) == 1 and archived[0].read_text() == good
    assert not list((tmp_path / "toy.exp").glob("smoke.partial-*"))


def test_override_run_never_displaces_the_canonical_result(tmp_path):
    run_experiment("toy.exp", "smoke", out_root=tmp_path)
    good = (tmp_path / "toy.exp" / "smoke" / "result.json").read_text()
    rec = run_experiment("toy.exp", "smoke", out_root=tmp_path, overrides={"value": 0.1})
    assert (tmp_path / "toy.exp" / "smoke" / "result.json").read_text() == good
    tweaked = list((tmp_path / "toy.exp").glob("smoke+set-*/result.json"))
    assert len(tweaked) == 1 and rec["provenance"]["overrides"] == {"value": 0.1}
    assert "Not the preset's canonical run" in (tweaked[0].parent / "tables.md").read_text()
    assert "acc | 10.00" not in write_report(tmp_path, "smoke").read_text()   # REPORT: canonical only


def test_a_run_on_other_seeds_never_displaces_the_canonical_result(tmp_path):
    run_experiment("toy.exp", "default", out_root=tmp_path)                   # the preset's seeds 0, 1, 2
    canonical = tmp_path / "toy.exp" / "default"
    good = (canonical / "result.json").read_text()
    run_experiment("toy.exp", "default", out_root=tmp_path, seed=1)           # --seed 1
    run_experiment("toy.exp", "default", out_root=tmp_path, seeds=[0, 3])     # --seeds 0,3
    run_experiment("toy.exp", "default", out_root=tmp_path, seeds=[1], overrides={"value": 0.2})
    assert (canonical / "result.json").read_text() == good and not (tmp_path / "toy.exp" / ".archive").exists()
    seeds_of = {p.parent.name: json.loads(p.read_text())["provenance"]["seeds"]
                for p in (tmp_path / "toy.exp").glob("*/result.json")}
    tweak = next(n for n in seeds_of if "+set-" in n)
    assert seeds_of == {"default": [0, 1, 2], "default+seeds-1": [1], "default+seeds-0-3": [0, 3], tweak: [1]}
    assert tweak.startswith("default+seeds-1+set-")                         # seeds first, then overrides
    # the same set in another order is the preset's run: it replaces the canonical result (archived)
    run_experiment("toy.exp", "default", out_root=tmp_path, seeds=[2, 1, 0])
    assert len(list((tmp_path / "toy.exp" / ".archive").glob("default-*/result.json"))) == 1
    report = write_report(tmp_path, "default").read_text()                  # REPORT: canonical only
    assert report.count("## toy.exp: ") == 1 and "seeds 2, 1, 0," in report and "seed 1," not in report


def test_cli_summary_names_the_folder_a_seed_run_wrote(tmp_path, capsys):
    from common.run import main
    assert main(["toy.exp", "--seed", "1", "--out", str(tmp_path), "--jobs", "1"]) == 0
    written = tmp_path / "toy.exp" / "default+seeds-1"
    assert f"-> {written}\n" in capsys.readouterr().out and (written / "result.json").exists()
    assert not (tmp_path / "toy.exp" / "default").exists()


@dataclasses.dataclass
class SeededConfig:
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


def seeded_toy(cfg, ctx):
    train = ctx.train_config(cfg.train)       # what a chapter hands to the trainer
    return {"train_seed": train.seed}


register(Experiment(name="toyseeded.exp", target="tests.test_results:seeded_toy", config=SeededConfig,
                    presets={"smoke": {}, "default": {}, "paper": {}}))


def test_provenance_config_holds_the_seed_the_run_used(tmp_path):
    rec = run_experiment("toyseeded.exp", "default", out_root=tmp_path, seed=5, device="cpu")
    assert rec["metrics"]["train_seed"] == 5
    train = json.loads((tmp_path / "toyseeded.exp" / "default+seeds-5" / "result.json").read_text()
                       )["provenance"]["config"]["train"]
    assert train["seed"] == 5 and train["device"] == "cpu"                 # not the dataclass' 0 and "auto"
    several = run_experiment("toyseeded.exp", "default", out_root=tmp_path, seeds=[3, 4])
    assert several["provenance"]["config"]["train"]["seed"] == [3, 4] == several["provenance"]["seeds"]


def test_report_gathers_tables_and_claims(tmp_path):
    run_experiment("toy.exp", "default", out_root=tmp_path)
    report = write_report(tmp_path, "default").read_text()
    assert "toy.exp" in report and "PASS" in report and "toy.exp/default/seed-0/line.png" in report
    assert "Metrics over 3 training seeds" in report and "passes on 3/3 training seeds" in report
    assert "1 PASS, 1 SKIP" in report


def test_markdown_helpers():
    assert markdown_table(["a", "b"], [[1, 0.5], ["x", None]]) == "| a | b |\n|---|---|\n| 1 | 0.50 |\n| x | - |"
    md = reported_vs_measured({"m": 2.0}, {"m": 3.0, "missing": 1.0}, same_data=True)
    assert "| m | 2.00 | 3.00 | -1.00 |" in md and "| missing | - | 1.00 | - |" in md


def test_difference_only_where_the_run_measured_what_the_thesis_measured():
    md = reported_vs_measured({"m": 2.0}, {"m": 3.0}, same_data=False, measured_on="mnist5k/test",
                              reported_on="ImageNet val")
    assert "difference" not in md and "mnist5k/test" in md and "ImageNet val" in md
    assert "| m | 2.00 | 3.00 | -1.00 |" in reported_vs_measured({"m": 2.0}, {"m": 3.0}, same_data=True)
    assert "2.00 ± 0.50" in reported_vs_measured({"m": 2.0}, {"m": 3.0}, {"m": 0.5})


def test_claim_helpers():
    m = {"a": 3.0, "b": 2.0, "c": 1.0}
    # intervals, not point estimates: a wide interval around 0 is not "within", touching is not "above"
    assert C.interval_within(-1.0, 1.0, 2.0)[0] and not C.interval_within(-9.0, 3.0, 2.0)[0]
    assert not C.interval_within(-2.0, 1.0, 2.0)[0]              # -2.00 against a 2.0 margin is not inside
    assert not C.interval_above(2.0, 2.0)[0] and C.interval_above(2.01, 2.0)[0]
    assert C.interval_below(1.0, 2.0)[0] and not C.interval_below(2.0, 2.0)[0]
    assert C.intervals_descending([("b1", 40.0, 41.0), ("b2", 30.0, 39.9)])[0]
    assert not C.intervals_descending([("b1", 40.0, 41.0), ("b2", 39.99, 40.01)])[0]   # 40.01 > 40.00 is no order
    nan = float("nan")
    assert C.interval_above(nan, 1.0)[0] is None and C.intervals_descending([("a", nan, nan), ("b", 0, 1)])[0] is None
    assert Claim("x", lambda m, cfg: C.interval_above(m["a"], nan)).evaluate(m, "default")["status"] == "SKIP"
    assert Claim("cfg seen", lambda m, cfg: (m["a"] > cfg, "")).evaluate(m, "default", 2.5)["status"] == "PASS"
    assert Claim("x", C.greater("a", "zz")).evaluate(m, "default")["status"] == "ERROR"
    lo, hi = C.binomial_ci(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
    import numpy as np
    lo, hi = C.bootstrap_ci(np.r_[np.zeros(50), np.ones(50)], n_boot=500)
    assert lo < 0.5 < hi


def test_threads_are_set_for_the_run_and_restored(tmp_path):
    import torch
    before = torch.get_num_threads()
    want = before + 1        # differs from the process' setting, so an echo of the argument cannot pass
    rec = run_experiment("toy.exp", "default", out_root=tmp_path, threads=want, seed=0)
    assert rec["metrics"]["threads_seen"] == want                      # the function ran with them
    assert rec["provenance"]["device"]["torch_threads"] == want        # and provenance says so
    assert torch.get_num_threads() == before                           # restored afterwards


def test_several_results_in_one_second_are_all_archived(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "utc_stamp", lambda: "20260101T000000Z")     # every run in the same second
    for n in range(4):
        run_experiment("toy.exp", "smoke", out_root=tmp_path)
        (tmp_path / "toy.exp" / "smoke" / f"run-{n}").write_text("")     # tells the runs apart
    archived = sorted(p.name for p in (tmp_path / "toy.exp" / ".archive").glob("smoke-*/run-*"))
    assert archived == ["run-0", "run-1", "run-2"]
