"""The paper preset's code path (torchvision zoo classifier, image folders, ImageNet layout) on a
tiny synthetic image folder: randomly initialised ResNet50 (no download), tiny sizes."""
import json

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("torchvision")


def test_paper_preset_code_path_on_tiny_folder(tmp_path):
    from common.experiment import run_experiment
    from tests.helpers.image_folders import imagenet_root
    root = imagenet_root(tmp_path / "data", train=6, val=4)
    overrides = {"classifiers": ("lenet", "resnet50"), "zoo_weights": "random", "image_size": 32, "resize": 36,
                 "pretrain_folder": "yfcc", "num_workers": 0, "bc_pairs": 2, "eval_batch_size": 4, "n_examples": 2,
                 "train.epochs": 1, "train.batch_size": 4, "ae.widths": (4, 4), "ae.convs": (1, 1),
                 "ae.batch_size": 4, "ae.pretrain_images": 8, "ae.plateau_images": 4, "ae.finetune_batch_size": 4,
                 "ae.finetune_epochs": 1, "ae.ckpt_every": 2, "ae.log_every": 1, "progress": False,
                 "thresholds": (90.0,)}
    out = tmp_path / "out"
    recs = {}
    for name in ("capacity.tab5_2", "capacity.fig5_6"):
        recs[name] = run_experiment(name, "paper", out_root=out, data_root=str(root), overrides=overrides)
        assert recs[name]["metrics"]
    assert "fca_concepts_t90" in recs["capacity.fig5_6"]["metrics"]
    written = sorted((out / "capacity.tab5_2").glob("paper+set-*/result.json"))   # --set runs: their own folder
    assert len(written) == 1
    r52 = json.loads(written[0].read_text())
    m52 = r52["metrics"]
    for j in ("lenet", "resnet50"):
        assert 0.0 <= m52[f"acc_{j}_on_A_{j}"] <= 100.0
        cr = m52[f"crmin_{j}_on_A_{j}"]        # 0/0 (random weights, 0 % accuracy) gives nan
        assert (m52[f"acc_{j}_on_A_{j}"] == 0 and np.isnan(cr)) or abs(cr - 100.0) < 1e-9
    names = {d["name"] for d in r52["provenance"]["datasets"]}
    assert {"imagenet", "pretrain-folder"} <= names
    # trained once: the second experiment reused every stage (one folder per stage)
    work = sorted(p.name.split("-paper-")[0] for p in (out / "_work").iterdir())
    assert work == ["capacity-A-lenet", "capacity-A-resnet50", "capacity-AS", "capacity-clf-lenet", "capacity-eval"]
