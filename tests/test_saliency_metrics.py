import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from common import saliency_metrics as S


def test_ad_ai_ag_values():
    r = S.average_drop_increase_gain([0.5, 0.8], [0.25, 0.9])
    assert r["AD"] == pytest.approx(25.0) and r["AI"] == pytest.approx(50.0) and r["AG"] == pytest.approx(25.0)


class RegionModel(nn.Module):
    """Class-1 logit = log(3) * (mean of channel 0 over the first 16 pixels); class 0 logit = 0.

    With those pixels at 1 the class-1 probability is 3/4; with them at 0 it is 1/2.
    """

    def forward(self, x):
        region = x[:, 0].flatten(1)[:, :16].mean(1)
        return torch.stack([torch.zeros_like(region), math.log(3) * region], 1)


def test_masked_metrics_and_fake_cam():
    m, x, t = RegionModel(), torch.ones(2, 1, 8, 8), torch.tensor([1, 1])
    keep_all = torch.ones(2, 8, 8)
    assert S.masked_metrics(m, x, keep_all, t) == {"AD": 0.0, "AI": 0.0, "AG": 0.0}
    fake = S.fake_cam(8, 8).expand(2, 8, 8)
    r = S.masked_metrics(m, x, fake, t)   # the top-left pixel is non-zero here, so Fake-CAM changes it
    p_o = 3 ** (15 / 16) / (1 + 3 ** (15 / 16))
    assert r["AD"] == pytest.approx((0.75 - p_o) / 0.75 * 100, rel=1e-5) and r["AI"] == 0.0
    with pytest.raises(ValueError):
        S.masked_metrics(m, x, keep_all * 2, t)
    with pytest.raises(ValueError):
        S.masked_metrics(m, x, torch.ones(2, 4, 4), t)


@pytest.mark.parametrize("saliency", ["ranked", "constant"])
def test_insertion_deletion_exact_curves(saliency):
    m, x, t = RegionModel(), torch.ones(1, 1, 8, 8), torch.tensor([1])
    if saliency == "ranked":   # the first 16 pixels first
        maps = torch.linspace(1, 0, 64).view(1, 8, 8)
    else:                      # all equal: ties keep pixel-index order, i.e. the same order
        maps = torch.full((1, 8, 8), 0.5)
    r = S.insertion_deletion(m, x, maps, t, step_pixels=16, blur=torch.zeros_like)
    np.testing.assert_allclose(r["deletion_curves"][0], [0.75, 0.5, 0.5, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(r["insertion_curves"][0], [0.5, 0.75, 0.75, 0.75, 0.75], rtol=1e-6)
    assert r["deletion"] == pytest.approx(0.53125) and r["insertion"] == pytest.approx(0.71875)


def test_a_good_map_beats_a_reversed_one():
    m, t = RegionModel(), torch.tensor([1] * 3)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    x[:, :, 0, :] = 1.0   # the evidence (first 16 pixels) is bright; blurring dims it
    good = torch.zeros(3, 16, 16)
    good.view(3, -1)[:, :16] = 1.0
    bad = 1.0 - good
    g, b = S.insertion_deletion(m, x, good, t), S.insertion_deletion(m, x, bad, t)
    assert g["insertion_curves"].shape == (3, 257)      # 256 pixels, 256 // 224 = 1 pixel per step
    assert g["deletion"] < b["deletion"] and g["insertion"] > b["insertion"]


def test_pointing_game_per_class_mean():
    maps = np.zeros((3, 50, 50))
    maps[:, 10, 10] = 1.0
    boxes = [[(30, 30, 40, 40)], [(20, 5, 25, 8)], [(20, 5, 25, 8), (0, 0, 1, 1)]]
    r = S.pointing_game(maps, boxes, classes=[0, 0, 1])
    assert r["per_class"] == {0: 50.0, 1: 100.0} and r["accuracy"] == pytest.approx(75.0)
    assert S.pointing_game(maps[:1], [[(30, 30, 40, 40)]], [0], tolerance=30)["accuracy"] == 100.0


def test_minmax_and_upsample():
    m = S.minmax(torch.tensor([[[1.0, 3.0], [2.0, 5.0]]]))
    assert m.min() == 0 and m.max() == 1 and m[0, 1, 0] == pytest.approx(0.25)
    assert S.upsample(m, (8, 8)).shape == (1, 8, 8)
