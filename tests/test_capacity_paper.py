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
    for name in ("capacity.tab5_2", "capacity.fig5_6", "capacity.reconstructions"):
        recs[name] = run_experiment(name, "paper", out_root=out, data_root=str(root), overrides=overrides)
        assert recs[name]["metrics"]
    assert "fca_concepts_t90" in recs["capacity.fig5_6"]["metrics"]
    rec = recs["capacity.reconstructions"]
    # A_S pre-trained on another folder: no training-split MSE to compare with, the claim SKIPs
    assert np.isnan(rec["metrics"]["mse_A_S_train"]) and rec["metrics"]["mse_A_S_eval"] > 0
    assert [c["status"] for c in rec["claims"] if "held-out" in c["claim"]] == ["SKIP"]
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


ZOO = ("alexnet", "vgg16", "resnet50", "inception_v3")


def test_zoo_preprocessing_is_the_weights_own():
    """Every zoo builder (random weights, no download): the wrapper's mean / std / crop /
    interpolation are what torchvision's weight enum declares (V1 by default), and Inception-v3 is
    built with transform_input on, as torchvision builds it when weights are given."""
    import torch
    import torchvision.models as tvm
    from capacity.classifiers import zoo_classifier
    from capacity.config import CapacityConfig
    cfg = CapacityConfig(zoo=True)
    for name in ZOO:
        member = getattr(cfg.weights, name)
        assert member.endswith("IMAGENET1K_V1"), member          # the thesis' weights, not DEFAULT (V2 for ResNet50)
        enum_cls, m = member.split(".")
        w = getattr(tvm, enum_cls)[m]
        t = w.transforms()
        torch.manual_seed(0)
        f = zoo_classifier(name, "random", 1000, member)
        assert f.weights_enum == str(w)
        assert tuple(f.mean.flatten().tolist()) == pytest.approx(tuple(t.mean))
        assert tuple(f.std.flatten().tolist()) == pytest.approx(tuple(t.std))
        assert f.size == t.crop_size[0] and f.interpolation == t.interpolation.value
        assert f.preprocessing["resize_size"] == t.resize_size[0]
        assert sum(p.numel() for p in f.model.parameters() if p.requires_grad) > 0
        if name == "inception_v3":
            assert f.model.transform_input is True and f.model.AuxLogits is None
    # a weight enum of another model, or no such member, is refused before any stage
    from common.config import ConfigError
    from capacity.config import check_config
    for bad in ("VGG16_Weights.IMAGENET1K_V1", "ResNet50_Weights.IMAGENET1K_V9"):
        c = CapacityConfig(zoo=True, classifiers=("lenet", "resnet50"))
        c.weights.resnet50 = bad
        with pytest.raises(ConfigError, match="weights.resnet50"):
            check_config(c)


def test_inception_behaves_as_torchvision_builds_it_with_weights(tmp_path, monkeypatch):
    """A random Inception-v3 state dict placed in a temporary torch hub cache: our cached-weights
    wrapper on [0, 1] images gives the logits of torchvision's own ``inception_v3(weights=V1)``
    (which sets transform_input) on the images its weights' preprocessing produces (normalised,
    at the 299 crop). Nothing is downloaded: both read the cache file."""
    import torch
    import torch.nn.functional as F
    import torchvision.models as tvm
    from capacity.classifiers import zoo_classifier
    w = tvm.Inception_V3_Weights.IMAGENET1K_V1
    torch.manual_seed(0)
    sd = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save(sd, tmp_path / "checkpoints" / w.url.rsplit("/", 1)[1])
    ours = zoo_classifier("inception_v3", "cached", 1000)
    theirs = tvm.inception_v3(weights=w, progress=False).eval()
    assert theirs.transform_input
    x = torch.rand(2, 3, 224, 224)
    t = w.transforms()
    xn = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
    xn = (xn - torch.tensor(t.mean).view(1, 3, 1, 1)) / torch.tensor(t.std).view(1, 3, 1, 1)
    seen = {}     # what the first conv receives (transform_input re-normalises to [-1, 1] for the V1 weights)
    ours.model.Conv2d_1a_3x3.register_forward_hook(lambda m, i, o: seen.__setitem__("ours", i[0]))
    theirs.Conv2d_1a_3x3.register_forward_hook(lambda m, i, o: seen.__setitem__("theirs", i[0]))
    with torch.no_grad():
        a, b = ours(x), theirs(xn)
    assert seen["ours"].min() >= -1.0 - 1e-5 and seen["ours"].max() <= 1.0 + 1e-5
    assert torch.allclose(seen["ours"], seen["theirs"], atol=1e-5)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
