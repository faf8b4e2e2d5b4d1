"""README results blocks: written by the command from results/ (the preset's canonical run only),
a hand edit detected, every block checked against a results folder cell by cell, and each mean
against its own per-seed cells."""
import shutil

import pytest

import common.readme_tables as RT
from common.config import ConfigError
from common.experiment import run_experiment
from common.readme_tables import (BLOCK, body_hash, chapter_readmes, seed_mean_mismatches, stale_blocks,
                                  update_text)
from common.run import main

import tests.test_results  # noqa: F401  (registers toy.exp)

TOY_BLOCK = "<!-- results toy.exp default: acc -->\nold\n<!-- end results sha256: -->\n"


def test_every_readme_block_is_what_the_command_wrote():
    for path in chapter_readmes():
        assert stale_blocks(path.read_text()) == [], f"{path}: a results block was edited by hand; " \
                                                     f"rerun python -m common.run --readme-tables"


def test_block_filled_from_results_and_hand_edit_detected(tmp_path):
    run_experiment("toy.exp", "default", out_root=tmp_path)
    text = "intro\n" + TOY_BLOCK + "end\n"
    new, missing = update_text(text, tmp_path)
    assert not missing and "| acc | 70.00 ± 0.00 | 70.00, 70.00, 70.00 | 71.00 |" in new and "seeds 0, 1, 2" in new
    assert new.startswith("intro\n") and new.endswith("end\n") and stale_blocks(new) == []
    edited = new.replace("70.00 ± 0.00", "72.00 ± 0.00")
    assert stale_blocks(edited) == ["toy.exp default"]
    # a block whose result does not exist is left as it was and reported
    same, missing = update_text(text.replace("toy.exp", "toy.none"), tmp_path)
    assert same == text.replace("toy.exp", "toy.none") and missing


@pytest.mark.parametrize("run", [dict(seed=1), dict(overrides={"value": 0.2})], ids=["one-seed", "set"])
def test_readme_tables_refuses_a_result_that_is_not_the_preset_run(tmp_path, run):
    run_experiment("toy.exp", "default", out_root=tmp_path, **run)
    # a 1-seed or tweaked result in the canonical folder, as an older version left it there
    (written,) = [p for p in (tmp_path / "toy.exp").iterdir() if p.name.startswith("default+")]
    shutil.copytree(written, tmp_path / "toy.exp" / "default")
    with pytest.raises(ConfigError, match="not the preset's canonical run") as e:
        update_text(TOY_BLOCK, tmp_path)
    assert str(tmp_path / "toy.exp" / "default") in str(e.value)
    assert ("seeds 1 where preset default runs 0, 1, 2" if "seed" in run else "--set overrides") in str(e.value)


@pytest.fixture
def toy_readme(tmp_path, monkeypatch):
    """A chapter README with a toy.exp block, in a repository root of its own."""
    root = tmp_path / "repo"
    (root / "toychapter").mkdir(parents=True)
    readme = root / "toychapter" / "README.md"
    readme.write_text("# toy\n\n" + TOY_BLOCK + "\n" + TOY_BLOCK.replace("toy.exp", "toy.none"))
    monkeypatch.setattr(RT, "ROOT", root)
    return readme


def test_cli_readme_tables_refuses_one_line_exit_2(tmp_path, toy_readme, capsys):
    out = tmp_path / "out"
    run_experiment("toy.exp", "default", out_root=out, seed=1)
    shutil.copytree(out / "toy.exp" / "default+seeds-1", out / "toy.exp" / "default")
    before = toy_readme.read_text()
    assert main(["--readme-tables", "--out", str(out)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "not the preset's canonical run" in err[0] and str(out / "toy.exp" / "default") in err[0]
    assert toy_readme.read_text() == before


def test_check_readme_names_every_cell_that_differs_from_the_results(tmp_path, toy_readme, capsys):
    out = tmp_path / "out"
    assert main(["--check-readme", "--out", str(out)]) == 1                # nothing to check against: no pass
    assert "nothing was checked" in capsys.readouterr().err
    run_experiment("toy.exp", "default", out_root=out)
    assert main(["--readme-tables", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["--check-readme", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "not checked: toychapter/README.md: block toy.none default" in printed and "0 difference(s)" in printed
    # a hand edit with its hash stamped again: the hash test passes, the check against the run does not
    text = toy_readme.read_text()
    edited = text.replace("| acc | 70.00 ± 0.00 |", "| acc | 72.00 ± 0.00 |").replace("- [PASS] acc above", "- [FAIL] acc above")
    m = next(BLOCK.finditer(edited))
    toy_readme.write_text(edited.replace(f"sha256:{m['sha']}", f"sha256:{body_hash(m['body'])}"))
    assert "toy.exp default" not in stale_blocks(toy_readme.read_text())
    assert main(["--check-readme", "--out", str(out)]) == 1
    diffs = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("differs:")]
    assert diffs == [
        "differs: toychapter/README.md: block toy.exp default: row acc, column ours (mean ± std, 3 seeds): "
        "README '72.00 ± 0.00', results '70.00 ± 0.00'",
        "differs: toychapter/README.md: block toy.exp default: row claim: acc above chance, column verdict: "
        "README 'FAIL', results 'PASS'"]


def test_every_readme_mean_is_the_mean_of_its_own_seeds():
    checked = 0
    for path in chapter_readmes():
        text = path.read_text()
        assert seed_mean_mismatches(text) == [], f"{path}: a mean that its seeds do not give"
        checked += text.count(" ± ")
    assert checked > 100          # the blocks are there and were read
    # a mean edited by one unit of its last digit, hash stamped again: found
    vqa = (RT.ROOT / "vqa" / "README.md").read_text()
    m = next(m for m in BLOCK.finditer(vqa) if m["exp"] == "vqa.tab4_1")
    row = next(ln for ln in m["body"].splitlines() if ln.startswith("| acc_omega_all |"))
    mean = row.split("|")[2].split(" ± ")[0].strip()
    bumped = row.replace(f"| {mean} ±", f"| {float(mean) + 0.02:.2f} ±")
    assert seed_mean_mismatches(vqa.replace(row, bumped)) == [
        f"vqa.tab4_1 default: row acc_omega_all: mean {float(mean) + 0.02:.2f} but its seeds "
        f"{row.split('|')[3].strip()} average {sum(map(float, row.split('|')[3].split(','))) / 3:.6g}"]


def test_claim_lines_carry_per_seed_verdicts_and_a_hand_edit_of_them_differs():
    from common.readme_tables import block_cells, render_block
    record = {"experiment": "toy.exp", "preset": "default", "metrics": {"acc": 70.0}, "metrics_std": {"acc": 1.0},
              "metrics_by_seed": {"0": {"acc": 69.0}, "1": {"acc": 70.0}, "2": {"acc": 71.0}},
              "provenance": {"seeds": [0, 1, 2]},
              "claims": [{"claim": "acc above chance", "status": "FAIL",
                          "seeds": {"0": "PASS", "1": "FAIL", "2": "PASS"}},
                         {"claim": "paper only", "status": "SKIP", "seeds": {"0": "SKIP", "1": "SKIP", "2": "SKIP"}}]}
    body = render_block(record, ["acc"])
    assert "- [FAIL] acc above chance (passes on 2/3 seeds: PASS, FAIL, PASS)" in body
    assert "- [SKIP] paper only\n" in body + "\n"           # nothing judged: no per-seed suffix
    cells = block_cells(body)
    assert cells[("claim: acc above chance", "verdict")] == "FAIL"
    assert cells[("claim: acc above chance", "per seed")] == "2/3 seeds: PASS, FAIL, PASS"
    edited = block_cells(body.replace("passes on 2/3 seeds: PASS, FAIL, PASS", "passes on 3/3 seeds: PASS, PASS, PASS"))
    assert edited[("claim: acc above chance", "per seed")] != cells[("claim: acc above chance", "per seed")]
