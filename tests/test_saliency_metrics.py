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
    assert g["insertion_curves"].shape == (3, 225)      # 224 steps at any resolution
    assert g["deletion"] < b["deletion"] and g["insertion"] > b["insertion"]


class FractionModel(nn.Module):
    """Class-1 probability = the fraction of non-zero pixels of channel 0 (exactly, via log-odds)."""

    def forward(self, x):
        f = (x[:, 0] != 0).flatten(1).double().mean(1).clamp(1e-9, 1 - 1e-9)
        return torch.stack([torch.log1p(-f), torch.log(f)], 1)


def test_224_steps_of_hw_over_224_pixels_at_28x28():
    """Hand-computed: at 28 x 28, 784 / 224 = 3.5 pixels a step; after step k, floor(3.5 k) pixels
    are changed: 0, 3, 7, 10, 14, ... 784 at step 224 (not hw // 224 = 3 a step, 262 steps)."""
    counts = S.step_counts(28 * 28)
    assert len(counts) == 225 and counts[:5].tolist() == [0, 3, 7, 10, 14] and counts[-1] == 784
    assert counts[112] == 392 and S.step_counts(224 * 224)[:3].tolist() == [0, 224, 448]   # 002's 224 pixels a step
    x = torch.ones(1, 1, 28, 28)
    r = S.insertion_deletion(FractionModel(), x, torch.rand(1, 28, 28), torch.tensor([1]), blur=torch.zeros_like)
    expected = counts.double().numpy() / 784
    np.testing.assert_allclose(r["deletion_curves"][0], 1 - expected, atol=1e-6)
    np.testing.assert_allclose(r["insertion_curves"][0], expected, atol=1e-6)
    assert r["insertion"] == pytest.approx(S.auc(expected), abs=1e-7)


def test_rise_blur_zero_pads_at_any_size():
    """RISE's kernel (gaussian_filter of a delta, sigma 5, 11 x 11), zero padding: a 1 x 1 image
    keeps only the kernel's centre weight; the inside of a large constant image is unchanged."""
    from scipy.ndimage import gaussian_filter
    delta = np.zeros((11, 11))
    delta[5, 5] = 1
    k = gaussian_filter(delta, 5)
    assert S.rise_blur(torch.ones(1, 3, 1, 1))[0, :, 0, 0].tolist() == pytest.approx([k[5, 5]] * 3, rel=1e-6)
    big = S.rise_blur(torch.ones(1, 1, 40, 40))[0, 0]
    assert big[20, 20] == pytest.approx(1.0, rel=1e-6) and big[0, 0] == pytest.approx(k[5:, 5:].sum(), rel=1e-6)
    small = S.rise_blur(torch.ones(2, 1, 5, 3))
    assert small.shape == (2, 1, 5, 3) and float(small.max()) < 1.0


def test_pointing_game_strict_tolerance_hand_values():
    """The point (10, 10); a box starting at column 25 is exactly 15 px away: a miss (TorchRay's
    strict <); at column 24 (14 px) a hit. Same with masks."""
    maps = torch.zeros(2, 50, 50)
    maps[:, 10, 10] = 1.0
    far, near = np.array([[25.0, 0.0, 30.0, 20.0]]), np.array([[24.0, 0.0, 30.0, 20.0]])
    r = S.pointing_game(maps, [far, near], classes=[0, 1], num_classes=2)
    assert r["hits"] == [0, 1] and r["misses"] == [1, 0] and r["accuracy"] == pytest.approx(50.0)
    # diagonal: (9, 12) from (10, 10)... a pixel at dx = 9, dy = 12 is exactly 15 away
    diag = np.zeros((50, 50), bool)
    diag[22, 19] = True
    diag_near = np.zeros((50, 50), bool)
    diag_near[21, 19] = True
    r = S.pointing_game(maps, [diag, diag_near], classes=[0, 0], num_classes=1)
    assert r["hits"] == [1] and r["misses"] == [1]


def test_pointing_game_averages_over_classes_with_scored_samples():
    """Classes without a scored sample do not count (TorchRay counts them as 0: on a subset where
    a class is absent that caps the score, e.g. 90 % with 9 of 10 digit classes present)."""
    maps = np.zeros((3, 50, 50))
    maps[:, 10, 10] = 1.0
    boxes = [np.array([(30, 30, 40, 40)]), np.array([(20, 5, 25, 8)]), np.array([(20, 5, 25, 8), (0, 0, 1, 1)])]
    r = S.pointing_game(maps, boxes, classes=[0, 0, 1], num_classes=4)
    assert r["per_class"][:2] == [50.0, 100.0] and all(np.isnan(r["per_class"][2:]))
    assert r["accuracy"] == pytest.approx(75.0) and r["classes_scored"] == 2
    # every sample a hit: 100 %, whatever num_classes says
    assert S.pointing_game(maps[1:], boxes[1:], [0, 1], num_classes=10)["accuracy"] == 100.0
    r = S.pointing_game(maps, boxes[:2] + [None], classes=[0, 0, 1], num_classes=2)
    assert r["skipped"] == 1 and r["per_class"][0] == 50.0 and np.isnan(r["per_class"][1]) and r["accuracy"] == 50.0
    assert r["each"] == [False, True, None]
    assert S.pointing_game(maps[:1], boxes[:1], [0], num_classes=1, tolerance=30)["accuracy"] == 100.0
    assert np.isnan(S.pointing_game(maps[:1], [None], [0], num_classes=3)["accuracy"])


def test_pointing_game_matches_torchray():
    """Random maps against random VOC-style boxes (1-based, TorchRay's voc_as_mask) and random masks:
    hits, misses and mean accuracy equal TorchRay's PointingGame."""
    pg_module = pytest.importorskip("torchray.benchmark.pointing_game",
                                    reason="torchray does not import with this torch")
    from torchray.benchmark.datasets import VOC_CLASSES, voc_as_mask
    rng = np.random.default_rng(0)
    h, w, n, num_classes = 40, 50, 80, 6
    maps = torch.rand(n, h, w, generator=torch.Generator().manual_seed(1))
    classes = rng.integers(0, num_classes - 1, n)      # the last class never occurs
    for tolerance in (15, 5):
        ours_regions, theirs_masks = [], []
        for i in range(n):
            if i % 2:
                k = rng.integers(1, 3)
                x0, y0 = rng.integers(1, w, k), rng.integers(1, h, k)
                x1, y1 = np.minimum(x0 + rng.integers(0, 8, k), w), np.minimum(y0 + rng.integers(0, 8, k), h)
                objs = [{"name": VOC_CLASSES[classes[i]], "bndbox": {"xmin": str(a), "ymin": str(b), "xmax": str(c),
                                                                     "ymax": str(d)}}
                        for a, b, c, d in zip(x0, y0, x1, y1)]
                label = {"annotation": {"size": {"width": str(w), "height": str(h)}, "object": objs}}
                theirs_masks.append(voc_as_mask(label, int(classes[i])))
                ours_regions.append(np.stack([x0, y0, x1, y1], 1).astype(float) - 1)   # 0-based, as DetectionData
            else:
                mask = torch.from_numpy(rng.random((h, w)) < 0.003)
                theirs_masks.append(mask)
                ours_regions.append(mask.numpy())
        pg = pg_module.PointingGame(num_classes, tolerance=tolerance)
        for i in range(n):
            y, x = divmod(int(maps[i].argmax()), w)
            pg.aggregate(pg.evaluate(theirs_masks[i], (x, y)), int(classes[i]))
        r = S.pointing_game(maps, ours_regions, classes, num_classes, tolerance=tolerance)
        assert r["hits"] == pg.hits.long().tolist() and r["misses"] == pg.misses.long().tolist()
        assert 0 < sum(r["hits"]) and 0 < sum(r["misses"])            # both outcomes exercised
        # TorchRay averages over all classes (the absent last one as 0); ours over the present ones:
        # equal on the present classes, and equal in the mean when every class is present (VOC, COCO)
        assert r["accuracy"] == pytest.approx(100 * float(pg.accuracy) * num_classes / (num_classes - 1))
        assert r["classes_scored"] == num_classes - 1
        pg_present = pg_module.PointingGame(num_classes - 1, tolerance=tolerance)
        pg_present.hits, pg_present.misses = pg.hits[:-1], pg.misses[:-1]
        assert r["accuracy"] == pytest.approx(100 * float(pg_present.accuracy))


def _detection(names, targets):
    from common.data import VOC_CLASSES, DetectionData
    return DetectionData("voc2007", "test", [None] * len(names), targets, list(VOC_CLASSES), names,
                         [(10, 10)] * len(names), "/nowhere", "stat:0")


def test_pointing_game_pairs_voc_difficult():
    """TorchRay's PointingGameBenchmark rules: a class whose VOC boxes are all difficult is left out;
    the EBP "difficult" subset (TorchRay's list: image 000001 flags only class 11, dog) keeps only
    flagged pairs, and every pair of an image absent from the list."""
    pytest.importorskip("torchray")
    dog, cat, person = 11, 7, 14
    t = lambda labels, difficult: {"boxes": np.zeros((len(labels), 4)), "labels": np.array(labels),
                                   "difficult": np.array(difficult)}
    data = _detection(["000001", "000002", "not_listed"],
                      [t([dog, cat, person], [False, True, False]), t([dog], [False]), t([cat], [False])])
    assert S.pointing_game_pairs(data) == [(0, dog), (0, person), (1, dog), (2, cat)]
    assert S.pointing_game_pairs(data, "difficult") == [(0, dog), (2, cat)]
    with pytest.raises(ValueError):
        S.pointing_game_pairs(data, "hard")


def test_minmax_and_upsample():
    m = S.minmax(torch.tensor([[[1.0, 3.0], [2.0, 5.0]]]))
    assert m.min() == 0 and m.max() == 1 and m[0, 1, 0] == pytest.approx(0.25)
    assert S.upsample(m, (8, 8)).shape == (1, 8, 8)
