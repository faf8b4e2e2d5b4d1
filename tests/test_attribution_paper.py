"""The paper preset's code path (torchvision VGG16-BN / ResNet50 with random weights, ImageNet val
class folders with box files, VOC07 test and COCO14 val layouts) on tiny fixtures: every metric
and the pointing game on both detection sets come out, with the sources' numbers beside them."""
import math

import pytest

pytest.importorskip("torchvision")

# the paper preset's values except the sizes and iterations (seconds, not hours, on CPU)
TINY = {"weights": "random", "image_size": 64, "saliency.n_images": 3, "batch_size": 2, "pointing_weights": "random",
        "saliency.extremal_iters": 2, "saliency.extremal_step_px": 4, "saliency.extremal_sigma_px": 8.0,
        "saliency.extremal_max_blur_px": 4.0, "saliency.meaningful_iters": 2, "saliency.meaningful_mask_size": 8,
        "saliency.opticam_iters": 2, "saliency.rise_masks": 8, "saliency.ig_steps": 2,
        "saliency.occlusion_window_px": 16, "n_figure_images": 2, "n_area_images": 1, "progress": False,
        "saliency.methods": ("fakecam", "gradcam", "opticam", "extremal")}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from tests.test_data import make_coco, make_imagenet, make_voc
    root = tmp_path_factory.mktemp("data")
    make_imagenet(root)        # 2 val images in class folders, one with a VOC-format box file
    make_voc(root)             # 2 test images, 20 classes
    make_coco(root)            # 2 val images, 3 categories
    return root


@pytest.mark.parametrize("model", ["resnet50"])   # 4x cheaper than VGG16-BN (the default model): same code path
def test_paper_preset_code_path_on_tiny_fixtures(tmp_path, data_root, model):
    from common.experiment import run_experiment
    from common.registry import get
    over = dict(TINY, model=model)
    rec = run_experiment("attribution.benchmark", "paper", out_root=tmp_path / "out", data_root=str(data_root),
                         seed=0, overrides=over)
    m = rec["metrics"] if "metrics" in rec else rec["seeds"][0]["metrics"]
    assert m["n_images"] == 2                     # the fixture's 2 ImageNet val images (subset of 1000 asked)
    rows = f"saliency/{model}-imagenet"
    for meth in TINY["saliency.methods"]:
        for k in ("AD", "AG", "AI", "insertion", "deletion", "seconds_per_image"):
            assert math.isfinite(m[f"{rows}/{meth}/{k}"]), (meth, k)
        assert 0 <= m[f"{rows}/{meth}/pointing"] <= 100   # the ImageNet box file of one image
        for s in ("voc2007", "coco2014"):
            assert 0 <= m[f"saliency/{model}-{s}/{meth}/pointing"] <= 100
    # the sources' numbers stand beside ours (VGG16 columns of 002 Tab 2.1, 001 Tab 1)
    assert get("attribution.benchmark").reported[f"{rows}/gradcam/AD"] == {"vgg16_bn": 14.2, "resnet50": 12.2}[model]


def test_paper_preset_without_pointing_weights_says_what_to_pass(tmp_path, data_root):
    from common.experiment import ExperimentFailed, run_experiment
    over = dict(TINY, model="resnet50", pointing_weights="", **{"saliency.methods": ("fakecam",)})
    with pytest.raises(ExperimentFailed, match="pointing_weights"):
        run_experiment("attribution.benchmark", "paper", out_root=tmp_path / "out", data_root=str(data_root),
                       seed=0, overrides=over)


def test_paper_preset_names_the_missing_dataset(tmp_path):
    from common.experiment import ExperimentFailed, run_experiment
    with pytest.raises(ExperimentFailed, match="imagenet"):
        run_experiment("attribution.benchmark", "paper", out_root=tmp_path / "out", data_root=str(tmp_path),
                       seed=0, overrides=dict(TINY, **{"saliency.methods": ("fakecam",)}))
