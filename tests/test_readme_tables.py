"""README results blocks: written by the command from results/, and a hand edit is detected."""
from common.experiment import run_experiment
from common.readme_tables import chapter_readmes, stale_blocks, update_text


def test_every_readme_block_is_what_the_command_wrote():
    for path in chapter_readmes():
        assert stale_blocks(path.read_text()) == [], f"{path}: a results block was edited by hand; " \
                                                     f"rerun python -m common.run --readme-tables"


def test_block_filled_from_results_and_hand_edit_detected(tmp_path):
    import tests.test_results  # noqa: F401  (registers toy.exp)
    run_experiment("toy.exp", "default", out_root=tmp_path, seeds=[0, 1])
    text = "intro\n<!-- results toy.exp default: acc -->\nold\n<!-- end results sha256: -->\nend\n"
    new, missing = update_text(text, tmp_path)
    assert not missing and "| acc | 70.00 ± 0.00 | 70.00, 70.00 | 71.00 |" in new and "seeds 0, 1" in new
    assert new.startswith("intro\n") and new.endswith("end\n") and stale_blocks(new) == []
    edited = new.replace("70.00 ± 0.00", "72.00 ± 0.00")
    assert stale_blocks(edited) == ["toy.exp default"]
    # a block whose result does not exist is left as it was and reported
    same, missing = update_text(text.replace("toy.exp", "toy.none"), tmp_path)
    assert same == text.replace("toy.exp", "toy.none") and missing
