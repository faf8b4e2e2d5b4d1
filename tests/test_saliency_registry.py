"""common.saliency: the registry, the protocol's flat metrics, and the one benchmark table gathered
from every chapter's results."""
import json

import pytest
import torch

from common.readme_tables import update_text
from common.saliency import (_METHODS, benchmark_metrics, collect_benchmark, discover, get_method, register_method,
                             render_benchmark, score_methods)


def _result(root, name, metrics, std, seeds=(0, 1, 2)):
    d = root / name / "default"
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps({
        "experiment": name, "metrics": metrics, "metrics_std": std, "claims": [], "tables": [], "figures": [],
        "provenance": {"seeds": list(seeds), "git": {"commit": "abcdef1234567"}, "wall_time_s": 1.0}}))


def test_benchmark_gathers_rows_of_every_chapter(tmp_path):
    _result(tmp_path, "chapA.bench", {"saliency/digits-cnn/gradcam/AD": 12.5, "saliency/digits-cnn/gradcam/deletion": 3.0,
                                      "acc": 99.0}, {"saliency/digits-cnn/gradcam/AD": 1.5})
    _result(tmp_path, "chapB.table", {"saliency/ssal-net/branch_cam/AD": 40.0}, {}, seeds=(0,))
    rows = collect_benchmark(tmp_path)
    assert [(r["model"], r["method"]) for r in rows] == [("digits-cnn", "gradcam"), ("ssal-net", "branch_cam")]
    assert rows[0]["scores"]["AD"] == (12.5, 1.5) and rows[0]["scores"]["deletion"] == (3.0, None)
    table = render_benchmark(rows)
    assert "12.50 ± 1.50" in table and "Grad-CAM" in table and "chapB.table (1 seed" in table
    text = "x\n<!-- results saliency-benchmark default -->\nold\n<!-- end results sha256:0 -->\n"
    new, missing = update_text(text, tmp_path)
    assert not missing and "12.50 ± 1.50" in new and "old" not in new


def test_one_row_from_two_experiments_is_refused(tmp_path):
    _result(tmp_path, "a.x", {"saliency/m/gradcam/AD": 1.0}, {})
    _result(tmp_path, "b.y", {"saliency/m/gradcam/AD": 2.0}, {})
    with pytest.raises(ValueError, match="two experiments"):
        collect_benchmark(tmp_path)


@pytest.fixture
def registry_restored():
    before = dict(_METHODS)
    yield
    _METHODS.clear()
    _METHODS.update(before)


def test_protocol_scores_a_registered_method_and_names_its_keys(registry_restored):
    @register_method("test_left_half", label="left half", family="baseline", implementation="test",
                     applies_to=lambda model: isinstance(model, torch.nn.Sequential))
    def left_half(model, images, targets):
        m = torch.zeros(images.shape[0], *images.shape[2:])
        m[..., : images.shape[-1] // 2] = 1
        return m
    assert "test_left_half" in discover() and "gradcam" in discover()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 8 * 8, 3)).eval()
    # class 0 reads only the left half of the image: keeping it keeps the score
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight.view(3, 2, 8, 8)[0, :, :, :4] = 1.0
    x = torch.rand(4, 2, 8, 8)
    scores = score_methods(model, x, torch.zeros(4, dtype=torch.long), ["test_left_half"], {}, batch_size=2)
    assert scores["test_left_half"]["AD"] == pytest.approx(0.0, abs=1e-6)
    flat = benchmark_metrics(scores, "toy")
    assert flat["saliency/toy/test_left_half/AD"] == pytest.approx(0.0, abs=1e-6)
    assert get_method("test_left_half").applicable(model) and not get_method("test_left_half").applicable(object())
    with pytest.raises(ValueError):
        benchmark_metrics(scores, "a/b")
