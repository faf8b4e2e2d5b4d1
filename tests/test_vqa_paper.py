"""vqa/ at the paper preset on a tiny root in the real VQA 2.0 layout: the trainval_36 TSV through
python -m vqa.convert_features into the memory-mapped bank, the loader, the shared bank, missing
features, n_classes, Fig 4.1's share and the official evaluator's quirk."""
from __future__ import annotations

import base64
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "vqa2"
FAST = {"train.epochs": 3, "hybrid_train.epochs": 3, "model.q_dim": 64, "model.hidden": 64,
        "model.cls_hidden": 64, "model.emb_dim": 32, "n_boot": 50, "train.progress": False,
        "hybrid_train.progress": False}
TSV_NAME = "trainval_resnet101_faster_rcnn_genome_36.tsv"


def _fixture_images():
    """(image_ids, float32 features) of the fixture, train images first, then val."""
    ids, feats = [], []
    for split in ("train", "val"):
        with np.load(FIXTURE / "features" / f"{split}2014.npz") as z:
            ids += list(z["image_ids"])
            feats += list(z["features"].astype(np.float32))
    return ids, feats


def write_tsv(path: Path, ids, feats, rng=None) -> None:
    """The bottom-up-attention format: no header; image_id, image_w, image_h, num_boxes, boxes,
    features; boxes (num_boxes x 4) and features (num_boxes x 2048) base64 float32."""
    rng = rng or np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        for i, x in zip(ids, feats):
            boxes = (rng.random((len(x), 4)) * 400).astype(np.float32)
            w.writerow([int(i), 640, 480, len(x), base64.b64encode(boxes.tobytes()).decode(),
                        base64.b64encode(np.asarray(x, np.float32).tobytes()).decode()])


def make_root(tmp: Path, drop_images=()) -> Path:
    """<tmp>/vqa2/ with the four official JSON files and trainval_36/<tsv> (no features/ yet)."""
    d = tmp / "vqa2"
    d.mkdir(parents=True)
    for f in FIXTURE.glob("*.json"):
        shutil.copy(f, d / f.name)
    ids, feats = _fixture_images()
    keep = [k for k, i in enumerate(ids) if int(i) not in set(drop_images)]
    write_tsv(d / "trainval_36" / TSV_NAME, [ids[k] for k in keep], [feats[k] for k in keep])
    return d


def convert(d: Path, extra=()):
    from vqa.convert_features import main
    return main(["--tsv", str(d / "trainval_36" / TSV_NAME), "--questions",
                 str(d / "v2_OpenEnded_mscoco_train2014_questions.json"),
                 str(d / "v2_OpenEnded_mscoco_val2014_questions.json"), "--out", str(d / "features"),
                 "--no-progress", *extra])


def test_tsv_converts_to_one_memory_mapped_bank(tmp_path):
    from common.data import load_dataset
    import vqa.data  # noqa: F401
    d = make_root(tmp_path)
    info = convert(d)
    assert info["images"] == 27 and info["question_images_without_features"] == 0
    bank = np.load(d / "features" / "trainval_features.npy", mmap_mode="r")
    ids = np.load(d / "features" / "trainval_image_ids.npy")
    assert bank.shape == (27, 36, 2048) and bank.dtype == np.float16
    ref_ids, ref = _fixture_images()
    assert list(ids) == [int(i) for i in ref_ids]
    assert np.array_equal(bank.astype(np.float32), np.stack(ref))        # the fixture's values are fp16-exact
    tr, va = load_dataset("vqa2", "train", tmp_path), load_dataset("vqa2", "val", tmp_path)
    assert isinstance(tr.features, np.memmap) and tr.features is va.features    # one bank, never read whole
    assert tr.describe()["features_memory_mapped"]
    assert va.image_ids[va.image_index[0]] == 2000 and tr.skipped == va.skipped == 0


def test_paper_preset_on_converted_tsv_equals_the_npz_layout(tmp_path, monkeypatch, capsys):
    """The whole paper code path on the converted bank gives the numbers of the legacy npz layout
    (same features, train rows in the same order); the four models share the one memory-mapped
    bank, and the expected memory is printed before training."""
    from common.experiment import run_experiment
    import vqa.tables
    seen = {}

    def spy(cfg, ctx, data, *a, **k):
        models = trained(cfg, ctx, data, *a, **k)
        if "data" not in seen:                                # the converted-TSV run (the first)
            seen.update(models=models, data=data)
        return models
    trained = vqa.tables.trained_models
    monkeypatch.setattr(vqa.tables, "trained_models", spy)
    make_root(tmp_path / "tsvroot")
    convert(tmp_path / "tsvroot" / "vqa2")
    r = run_experiment("vqa.tab4_1", "paper", out_root=tmp_path / "out1", data_root=str(tmp_path / "tsvroot"),
                       device="cpu", overrides=FAST)
    ref = run_experiment("vqa.tab4_1", "paper", out_root=tmp_path / "out2", data_root=str(FIXTURE.parent),
                         device="cpu", overrides=FAST)
    assert "expected memory: host" in capsys.readouterr().out
    m = r["metrics"]
    assert m["n_eval"] == 45 and m["n_classes"] == 8 and m["full_vqa2"] == 0     # reported, not asserted
    assert 0 <= m["n_eval_official_differs"] <= 45 and 0 <= m["acc_omega_all_official"] <= 100
    for k in ("acc_omega_all", "acc_P_P", "acc_NP_NP", "acc_hybrid_NP"):
        assert m[k] == pytest.approx(ref["metrics"][k]), k
    assert r["provenance"]["datasets"][0]["features_memory_mapped"] is True
    bank = seen["data"].train_bank
    assert isinstance(bank, np.memmap) and seen["data"].eval_bank is bank
    assert [n for n, m in seen["models"].items() if m.phi.bank is not bank] == []      # omega, P, NP, hybrid


def test_hybrid_copy_of_phi_p_shares_the_bank_and_copies_parameters():
    import torch
    from vqa.config import ModelConfig
    from vqa.model import build_model
    bank = np.zeros((4, 36, 8), np.float16)
    phi = build_model(10, 3, ModelConfig(emb_dim=4, q_dim=4, hidden=4, cls_hidden=4), feature_dim=8).phi
    phi.set_bank(bank)
    cp = phi.copy_sharing_bank()
    assert cp.bank is bank                                   # copy.deepcopy would copy it
    assert all(a.data_ptr() != b.data_ptr() and torch.equal(a, b) for a, b in zip(cp.parameters(), phi.parameters()))
    assert "bank" not in dict(phi.named_buffers())           # model.to(device) never moves it


def test_memory_estimate_against_the_old_design():
    from vqa.pipeline import old_design_estimate
    row = 36 * 2048 * 2
    old = old_design_estimate(82_783 * row, 40_504 * row)
    assert old["device_total"] / 2**30 == pytest.approx(51.0, abs=0.1)    # 4 x 12.1 + 6.0 GiB (~55 GB)
    assert old_design_estimate(123_287 * row, 123_287 * row)["device_total"] / 1e9 > 90


def test_converter_rejects_a_malformed_row(tmp_path):
    from common.errors import DataError
    d = make_root(tmp_path)
    with open(d / "trainval_36" / TSV_NAME, "a") as f:
        f.write("123\t640\t480\t36\tAAAA\n")                      # five columns
    with pytest.raises(DataError, match=r"trainval_36.*line 28 has 5 columns"):
        convert(d)


def test_questions_without_features_stop_above_the_share_and_warn_below(tmp_path, capsys):
    from common.experiment import ExperimentFailed, run_experiment
    d = make_root(tmp_path, drop_images=[2000])          # one val image: 5 of 45 val questions (11 %)
    info = convert(d)
    assert info["images"] == 26 and info["question_images_without_features"] == 1
    assert np.load(d / "features" / "trainval_features.npy", mmap_mode="r").shape == (26, 36, 2048)  # shrunk
    with pytest.raises(ExperimentFailed, match=r"v2_OpenEnded_mscoco_val2014_questions.json: 5 of its 45 questions "
                                        r"\(11.11 %\) ask about 1 images with no features .*image ids 2000"):
        run_experiment("vqa.fig4_1", "paper", out_root=tmp_path / "a", data_root=str(tmp_path), device="cpu",
                       overrides=FAST)
    r = run_experiment("vqa.fig4_1", "paper", out_root=tmp_path / "b", data_root=str(tmp_path), device="cpu",
                       overrides=dict(FAST, max_missing_features=0.2))
    assert "WARNING" in capsys.readouterr().out and "5 of its 45 questions" in " ".join(r.get("notes", []))


def test_n_classes_reported_always_and_asserted_on_the_full_vqa2_files(tmp_path, monkeypatch):
    """The full release is recognised by its question counts; the fixture stands in for it here."""
    from common.experiment import ExperimentFailed, run_experiment
    import vqa.data
    run = run_experiment("vqa.fig4_1", "paper", out_root=tmp_path / "a", data_root=str(FIXTURE.parent),
                         device="cpu", overrides=FAST)
    r = run["metrics"]
    assert (r["n_classes"], r["full_vqa2"], r["answer_min_count"]) == (8, 0, 9)
    assert r["polar_to_np_per_class_ratio"] > 0 and {c["status"] for c in run["claims"]} <= {"PASS", "FAIL"}
    monkeypatch.setattr(vqa.data, "FULL_VQA2_QUESTIONS", {"train": 90, "val": 45})
    with pytest.raises(ExperimentFailed, match="full VQA 2.0 train [+] val labels give 8 answer classes with "
                                               "answer_min_count = 9, expected 3129"):
        run_experiment("vqa.fig4_1", "paper", out_root=tmp_path / "b", data_root=str(FIXTURE.parent),
                       device="cpu", overrides=FAST)
    r = run_experiment("vqa.fig4_1", "paper", out_root=tmp_path / "c", data_root=str(FIXTURE.parent),
                       device="cpu", overrides=dict(FAST, expected_classes=8))["metrics"]
    assert (r["n_classes"], r["full_vqa2"]) == (8, 1)


def test_fig_4_1_counts_every_training_question_not_only_the_vocabulary(tmp_path):
    """answer_min_count 10 leaves only yes/no in the fixture's vocabulary (colours and animals occur
    9 times): the polar share is still that of all 90 training questions (54 yes/no), not 100 %."""
    from common.experiment import run_experiment
    m = run_experiment("vqa.fig4_1", "paper", out_root=tmp_path, data_root=str(FIXTURE.parent), device="cpu",
                       overrides=dict(FAST, answer_min_count=10))["metrics"]
    assert m["n_classes"] == 2 and m["n_samples"] == 90 and m["n_samples_out_of_vocab"] == 36
    assert m["polar_share"] == pytest.approx(60.0) and m["polar_share_in_vocab"] == pytest.approx(100.0)


def test_official_evaluator_quirk_against_our_accuracy():
    """Ours normalises the human answers always; the official script (vqaEval.py) never applies
    lower case / number words / articles to them, and skips even the punctuation step when all ten
    are the same string."""
    from vqa.data import official_vqa_accuracy, vqa_accuracy
    ten_caps = ["Yes"] * 10
    assert vqa_accuracy("yes", ten_caps) == 1.0 and official_vqa_accuracy("yes", ten_caps) == 0.0
    assert vqa_accuracy("Yes", ten_caps) == 1.0 and official_vqa_accuracy("Yes", ten_caps) == 0.0   # pred lowered
    assert vqa_accuracy("yes", ["yes"] * 10) == official_vqa_accuracy("yes", ["yes"] * 10) == 1.0
    mixed = ["Two"] * 3 + ["3"] * 7                  # not uniform: punctuation only, "Two" stays "Two"
    assert vqa_accuracy("2", mixed) == pytest.approx(0.9) and official_vqa_accuracy("2", mixed) == 0.0
    dots = ["horse."] * 4 + ["cow"] * 6              # the punctuation step the official does apply
    assert official_vqa_accuracy("horse", dots) == pytest.approx(1.0) == vqa_accuracy("horse", dots)
    assert official_vqa_accuracy("horse", ["horse."] * 10) == 0.0                # uniform: not even that
