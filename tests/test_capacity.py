"""capacity/: unpooling, SegNet (against its torch twin), nMI, CR_min on the thesis' tables, FCA,
the JAX training loops (resume, NaN, decoder-only fine-tuning with gradients through torch)."""
import dataclasses

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
import jax.numpy as jnp  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from capacity.autoencoder import (SegNet, bottleneck_ratio, init_segnet, mask_to_torch_indices,  # noqa: E402
                                  max_pool_with_mask, max_unpool_with_mask)
from capacity.metrics import (bc_nmi, bc_pairs, cr_min, fca_lattice, ic_nmi, mutual_information,  # noqa: E402
                              to_uint8)
from capacity.segnet_torch import SegNetTorch, load_flax_variables  # noqa: E402
from capacity.config import AEConfig  # noqa: E402
from experiments.capacity import TAB_5_2, TAB_5_3  # noqa: E402


# --------------------------------------------------------------------------------------------------
# pooling / unpooling
# --------------------------------------------------------------------------------------------------
def test_pool_unpool_match_torch_including_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(2, 6, 8, 3)).astype(np.float32)   # small ints: many ties
    pooled, mask = max_pool_with_mask(jnp.asarray(x))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    pt, it = F.max_pool2d(xt, 2, 2, return_indices=True)
    np.testing.assert_array_equal(np.asarray(pooled), pt.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(np.asarray(mask_to_torch_indices(mask)), it.numpy())
    y = rng.standard_normal(pooled.shape).astype(np.float32)
    up = max_unpool_with_mask(jnp.asarray(y), mask)
    upt = F.max_unpool2d(torch.from_numpy(y).permute(0, 3, 1, 2), it, 2, 2, output_size=(6, 8))
    np.testing.assert_array_equal(np.asarray(up), upt.permute(0, 2, 3, 1).numpy())


def test_pool_gradient_goes_to_argmax_only():
    x = jnp.asarray(np.array([[1.0, 3.0], [3.0, 0.0]], np.float32)[None, :, :, None])
    g = jax.grad(lambda v: max_pool_with_mask(v)[0].sum())(x)
    assert np.asarray(g)[0, :, :, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]     # first max (row-major)


def test_segnet_matches_torch_twin_and_ratio():
    m = SegNet((4, 8, 8), (2, 1, 2), 3)
    v = init_segnet(m, jax.random.PRNGKey(0), (16, 16, 3))
    rng = np.random.default_rng(0)
    v = jax.tree_util.tree_map(lambda a: np.asarray(a) + 0.05 * rng.standard_normal(a.shape).astype(np.float32), v)
    v["batch_stats"] = jax.tree_util.tree_map(np.abs, v["batch_stats"])
    x = np.random.default_rng(1).random((2, 16, 16, 3)).astype(np.float32)
    y = jax.jit(m.apply)(v, jnp.asarray(x))
    tm = load_flax_variables(SegNetTorch((4, 8, 8), (2, 1, 2), 3, 3), v).eval()
    yt = tm(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
    np.testing.assert_allclose(np.asarray(y), yt, atol=1e-5)
    n_convs = sum(1 for p in jax.tree_util.tree_leaves_with_path(v["params"]) if str(p[0][-1]) .endswith("'kernel']"))
    assert n_convs == 2 * (2 + 1 + 2)
    assert bottleneck_ratio((64, 128, 256, 512, 512), 224, 224, 3) == pytest.approx(6.0)


# --------------------------------------------------------------------------------------------------
# nMI, CR_min, FCA
# --------------------------------------------------------------------------------------------------
def test_mutual_information_equals_sklearn():
    from sklearn.metrics import mutual_info_score
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (3, 10, 10), dtype=np.uint8)
    for b in (a, a // 7, rng.integers(0, 256, a.shape, dtype=np.uint8), np.zeros_like(a), 255 - a):
        assert mutual_information(a, b) == pytest.approx(mutual_info_score(a.ravel(), b.ravel()), abs=1e-10)
    assert mutual_information(a, np.zeros_like(a)) == 0.0
    assert to_uint8(np.array([0.0, 0.5, 1.0, 1.2])).tolist() == [0, 128, 255, 255]


def test_ic_bc_nmi_protocol():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (10, 4, 4, 1), dtype=np.uint8)
    assert np.allclose(ic_nmi(x, x), [mutual_information(v, v) for v in x])
    pairs = bc_pairs(10, 4, seed=0)
    assert pairs.shape == (4, 2) and len(set(pairs.ravel())) == 8
    assert np.array_equal(pairs, bc_pairs(10, 4, seed=0))
    const = np.repeat(x[:1], 10, axis=0)                  # a constant pattern: BC-nMI = its entropy
    assert np.allclose(bc_nmi(const, pairs), mutual_information(x[0], x[0]))
    with pytest.raises(ValueError):
        bc_pairs(10, 6, seed=0)


def test_cr_min_reproduces_thesis_table_5_3():
    cr = cr_min(np.array(TAB_5_2))
    ref = np.array(TAB_5_3)
    keep = [0, 1, 3, 4]                                  # VGG16 row/column left out (notes/capacity.md)
    np.testing.assert_allclose(cr[np.ix_(keep, keep)], ref[np.ix_(keep, keep)], atol=0.03)
    assert np.allclose(np.diag(cr), 100.0)


def test_fca_on_thesis_table_5_3():
    names = ["L", "A", "V", "R", "I"]
    lat = fca_lattice(np.array(TAB_5_3), [f"f_{n}" for n in names], [f"A_{n}" for n in names], 90)
    assert len(lat) == 6
    bottom = [c for c in lat if len(c.intent) == 5][0]
    assert set(bottom.extent) == {"f_I"}      # "Inception-v3 ... works well with all other signals" (L1283)
    # strictly greater: a cell exactly at t is not an attribute
    lat2 = fca_lattice(np.array([[100.0, 90.0], [50.0, 100.0]]), ["f_a", "f_b"], ["A_a", "A_b"], 90)
    assert all("A_a" not in c.intent or "f_b" not in c.extent for c in lat2)


# --------------------------------------------------------------------------------------------------
# training loops
# --------------------------------------------------------------------------------------------------
def _tiny_source(n=24, size=8, seed=0):
    from capacity.data import ArraySource
    rng = np.random.default_rng(seed)
    return ArraySource(rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8), rng.integers(0, 3, n))


def _tree_close(a, b):
    return all(np.allclose(x, y, atol=1e-6) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_pretrain_resumes_exactly_and_stops_on_nan(tmp_path):
    from capacity.training import pretrain_autoencoder
    from common.trainer import NonFiniteLossError
    src, m = _tiny_source(), SegNet((4,), (1,), 1)
    cfg = AEConfig(batch_size=4, pretrain_images=32, plateau_images=8, ckpt_every=2, log_every=2)
    full, st = pretrain_autoencoder(m, src, cfg, tmp_path / "full", seed=0, progress=False)
    assert st["step"] == 8 and st["done"]
    half, _ = pretrain_autoencoder(m, src, dataclasses.replace(cfg, pretrain_images=16), tmp_path / "re", 0, progress=False)
    resumed, st2 = pretrain_autoencoder(m, src, cfg, tmp_path / "re", seed=0, progress=False)
    assert _tree_close(full, resumed) and st2["lr_drops"] == st["lr_drops"]
    again, _ = pretrain_autoencoder(m, src, cfg, tmp_path / "full", seed=0, progress=False)   # finished: loaded
    assert _tree_close(full, again)
    with pytest.raises(NonFiniteLossError):
        pretrain_autoencoder(m, src, dataclasses.replace(cfg, lr=float("nan")), tmp_path / "nan", 0, progress=False)


def test_plateau_rule_divides_lr_by_five(tmp_path):
    from capacity.training import pretrain_autoencoder
    src, m = _tiny_source(), SegNet((4,), (1,), 1)
    lr0 = 1e-12   # so small that the loss cannot fall: the rule must fire, and each time divide by 5
    cfg = AEConfig(batch_size=4, lr=lr0, pretrain_images=48, plateau_images=8, ckpt_every=2, log_every=2)
    _, st = pretrain_autoencoder(m, src, cfg, tmp_path, seed=0, progress=False)
    lrs = [d["lr"] for d in st["lr_drops"]]
    assert len(lrs) >= 2
    assert lrs[0] == pytest.approx(lr0 / 5) and all(b == pytest.approx(a / 5) for a, b in zip(lrs, lrs[1:]))


def test_finetune_updates_decoder_only_with_torch_gradients(tmp_path):
    from capacity.training import finetune_decoder, make_finetune_fns
    from common.bridge import jax_to_torch, torch_to_jax
    src, m = _tiny_source(size=8), SegNet((4, 4), (1, 1), 1)
    v = init_segnet(m, jax.random.PRNGKey(0), (8, 8, 1))
    torch.manual_seed(0)
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval()
    # one step's decoder gradient equals the gradient of the same network in pure torch
    forward, update, tx = make_finetune_fns(m, 0.9)
    xb, yb = src.x[:4], src.y[:4]
    recon, vjp_fn = forward(v["params"]["decoder"], v, jnp.asarray(xb))
    xt = jax_to_torch(recon).permute(0, 3, 1, 2).detach().requires_grad_(True)
    loss = F.cross_entropy(clf(xt), torch.as_tensor(yb))
    (gx,) = torch.autograd.grad(loss, [xt])
    (grads,) = vjp_fn(torch_to_jax(gx.permute(0, 2, 3, 1).contiguous()))
    twin = load_flax_variables(SegNetTorch((4, 4), (1, 1), 1, 1), v).eval()
    F.cross_entropy(clf(twin(torch.from_numpy(xb).permute(0, 3, 1, 2).float() / 255)), torch.as_tensor(yb)).backward()
    last = twin.dec[-1][-1]
    np.testing.assert_allclose(np.asarray(grads["Conv_0"]["kernel"]).transpose(3, 2, 0, 1), last.weight.grad.numpy(),
                               rtol=1e-4, atol=1e-7)
    # the loop: encoder untouched, decoder changed, loss history recorded, resumable
    cfg = AEConfig(finetune_batch_size=4, finetune_epochs=2, finetune_lr=0.05, ckpt_every=3, log_every=3)
    v2, st = finetune_decoder(m, v, clf, src, cfg, tmp_path, seed=0, progress=False)
    assert _tree_close(v2["params"]["encoder"], v["params"]["encoder"])
    assert not _tree_close(v2["params"]["decoder"], v["params"]["decoder"])
    assert st["done"] and st["step"] == 12 and not any(p.requires_grad for p in clf.parameters())
    v3, _ = finetune_decoder(m, v, clf, src, cfg, tmp_path, seed=0, progress=False)
    assert _tree_close(v2, v3)


# --------------------------------------------------------------------------------------------------
# claim checks on hand-made metrics, config ranges
# --------------------------------------------------------------------------------------------------
def _margin_claim():
    from common.registry import get
    exp = get("capacity.tab5_1")
    cfg = dataclasses.replace(exp.resolve_config("default"), classifiers=("lenet", "small"))
    return next(c for c in exp.claims if "margin" in c.text), cfg


def _diffs(**per):
    m = {}
    for n, (d, lo, hi) in per.items():
        m[f"top1_{n}_diff"], m[f"top1_{n}_diff_lo"], m[f"top1_{n}_diff_hi"] = d, lo, hi
    return m


def test_margin_claim_is_two_sided_and_strict():
    claim, cfg = _margin_claim()
    assert cfg.margin == 2.0
    inside = _diffs(lenet=(0.1, -1.5, 1.2), small=(-0.3, -1.9, 1.9))
    assert claim.evaluate(inside, "default", cfg)["status"] == "PASS"
    at_bound = _diffs(lenet=(0.1, -2.0, 1.2), small=(-0.3, -1.9, 1.9))      # exactly -margin: not inside
    assert claim.evaluate(at_bound, "default", cfg)["status"] == "FAIL"
    gain = _diffs(lenet=(3.8, 2.5, 5.0), small=(-0.3, -1.9, 1.9))           # a large gain is no "small margin"
    assert claim.evaluate(gain, "default", cfg)["status"] == "FAIL"
    assert claim.evaluate(gain, "default", dataclasses.replace(cfg, margin=6.0))["status"] == "PASS"
    empty = _diffs(lenet=(float("nan"),) * 3, small=(-0.3, -1.9, 1.9))
    assert claim.evaluate(empty, "default", cfg)["status"] == "SKIP"


def test_config_ranges_and_cross_field_checks():
    from capacity.config import CapacityConfig, check_config
    from common.config import ConfigError
    from common.registry import get
    exp = get("capacity.tab5_1")
    for preset in ("smoke", "default", "paper"):
        check_config(exp.resolve_config(preset))
    for key, bad in (("ae.momentum", 1.0), ("bc_pairs", 0), ("zoo_weights", "imagenet"), ("margin", 0.0),
                     ("ae.finetune_lr", float("inf"))):
        with pytest.raises(ConfigError, match=key.split(".")[-1]):
            exp.resolve_config("default", {key: bad})
    with pytest.raises(ConfigError, match="multiple of 8"):
        check_config(CapacityConfig(image_size=28))                        # 3 poolings of 28 x 28
    with pytest.raises(ConfigError, match="alexnet"):
        check_config(CapacityConfig(classifiers=("lenet", "alexnet")))     # a zoo model without zoo=True


# --------------------------------------------------------------------------------------------------
# one in-memory source for numpy batches and torch training
# --------------------------------------------------------------------------------------------------
def test_array_source_serves_numpy_batches_and_torch_items():
    src = _tiny_source(n=10, size=4)
    xb, yb = next(src.batches([[3, 1]]))
    assert xb.dtype == np.uint8 and np.array_equal(xb, src.x[[3, 1]]) and np.array_equal(yb, src.y[[3, 1]])
    x, y = src[3]
    assert x.shape == (1, 4, 4) and x.dtype == torch.float32 and y == int(src.y[3])
    xs, ys = src.tensors()
    assert torch.equal(xs[3], x) and torch.equal(ys, torch.from_numpy(src.y))
    loader = torch.utils.data.DataLoader(src, batch_size=4, shuffle=False)    # a map-style torch Dataset
    xl, yl = next(iter(loader))
    assert torch.equal(xl, xs[:4]) and torch.equal(yl, ys[:4])
    sub = src.subset(np.array([2, 5]))
    assert np.array_equal(sub.x, src.x[[2, 5]]) and len(sub) == 2


# --------------------------------------------------------------------------------------------------
# trained_models: the public entry point for other chapters
# --------------------------------------------------------------------------------------------------
def _ctx(out_root, tmp):
    from common.context import RunContext
    return RunContext(experiment="adversarial.test", preset="smoke", seed=0, device="cpu", data_root=None,
                      out_root=out_root, out_dir=tmp, reported={})


def test_trained_models_trains_once_then_loads(tmp_path):
    from capacity.models import CapacityModels, trained_models
    from common.registry import get
    cfg = get("capacity.tab5_1").resolve_config("smoke")
    out = tmp_path / "out"
    m1 = trained_models(cfg, _ctx(out, tmp_path))
    assert isinstance(m1, CapacityModels)
    assert set(m1.classifiers) == set(cfg.classifiers) and set(m1.variables) == {"A_S", *cfg.classifiers}
    work = {p: p.stat().st_mtime_ns for p in (out / "_work").rglob("*") if p.is_file()}
    assert len({p.parts[len((out / "_work").parts)] for p in work}) == 1 + 2 * len(cfg.classifiers)
    # a caller that loaded other data first still gets the same stages (each names the data it reads)
    ctx2 = _ctx(out, tmp_path)
    ctx2.load_dataset("easyvqa", "test")
    m2 = trained_models(cfg, ctx2)
    assert {p: p.stat().st_mtime_ns for p in (out / "_work").rglob("*") if p.is_file()} == work   # loaded only
    assert _tree_close(m1.variables, m2.variables)
    x = m1.autoencode("lenet", jnp.zeros((2, *m1.image_shape), jnp.uint8))
    assert x.shape == (2, *m1.image_shape) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    clf = m2.classifiers["lenet"]
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())
    logits = clf(torch.from_numpy(np.array(x)).permute(0, 3, 1, 2))
    assert logits.shape == (2, cfg.n_classes)


# --------------------------------------------------------------------------------------------------
# bottleneck sweep and the BC-nMI ranking claim
# --------------------------------------------------------------------------------------------------
def test_specialisation_summary_on_thesis_table_5_2():
    from capacity.sweep import ratio_key, specialisation
    names = ["lenet", "alexnet", "vgg16", "resnet50", "inception_v3"]
    keep = [0, 1, 3, 4]        # VGG16 left out: its CR_min cells use a denominator printed nowhere
    acc = np.array(TAB_5_2)[np.ix_(keep, keep)]
    mean, low, n = specialisation(acc, [names[k] for k in keep], 90.0)
    ref = np.array(TAB_5_3)[np.ix_(keep, keep)][~np.eye(4, dtype=bool)]
    assert mean == pytest.approx(ref.mean(), abs=0.03) and low == pytest.approx(ref.min(), abs=0.03)
    # every signal works for every classifier: one concept; a diagonal matrix of strangers: one per classifier + 2
    assert specialisation(np.full((3, 3), 90.0), names[:3], 90.0)[2] == 1
    assert specialisation(np.eye(3) * 90 + 1, names[:3], 90.0)[2] == 5
    assert (ratio_key(8.0), ratio_key(6.4)) == ("r8", "r6p4")


def test_bottleneck_sweep_runs_and_reuses_the_classifiers(tmp_path):
    from capacity.sweep import bottleneck_sweep
    from common.registry import get
    cfg = get("capacity.bottleneck_sweep").resolve_config("smoke")
    cfg = dataclasses.replace(cfg, max_train=128, max_eval=64, sweep_widths=((8, 8), (8, 1)), sweep_pretrain_images=64,
                              sweep_bootstrap=5)
    out = tmp_path / "out"
    m = bottleneck_sweep(cfg, _ctx(out, tmp_path))
    stages = sorted(p.name.split("-smoke-")[0] for p in (out / "_work").iterdir())
    assert stages == sorted(["capacity-clf-lenet", "capacity-clf-small"] + ["capacity-AS"] * 2
                            + ["capacity-A-lenet", "capacity-A-small"] * 2)     # classifiers shared by the points
    assert set(m) >= {"offdiag_crmin_mean_r2", "offdiag_crmin_min_r16", "fca_concepts_t90_r16", "A_S_acc_mean_r16"}
    from capacity.findings import SWEEP_KEYS      # the findings' numbers per point, for the per-ratio claims
    assert set(m) >= {f"{k}_{r}" for k in SWEEP_KEYS for r in ("r2", "r16")}
    assert m["own_columns_r2"] == len(cfg.classifiers) and m["crmin_offdiag_cells_r16"] == 2
    assert 1 <= m["fca_concepts_t90_r2"] <= 2 + len(cfg.classifiers)
    assert m["offdiag_crmin_min_r16"] <= m["offdiag_crmin_mean_r16"]
    assert (tmp_path / "bottleneck_sweep.png").exists()


def test_bc_ranking_claim():
    from capacity.tables import bc_ranking
    from experiments.capacity import _bc_ranking
    rng = np.random.default_rng(0)
    aes = ["A_S", "lenet", "alexnet", "vgg16", "resnet50", "inception_v3"]
    bc = rng.normal(1.0, 0.05, (6, 400))
    bc[2] += 0.3
    bc[4] += 0.25                                  # A_A, A_R well above A_V, A_I (>= 10 %)
    m, text = bc_ranking(bc, aes)
    assert _bc_ranking(m)[0] is True and "A_R - A_I" in text
    bc[4] -= 0.2                                   # A_R only 5 % above: significant but not substantial
    assert _bc_ranking(bc_ranking(bc, aes)[0])[0] is False
    assert _bc_ranking(bc_ranking(bc, aes[:3] + ["x", "y", "z"])[0])[0] is None   # default classifiers: no check


def test_sweep_config_checked_before_any_stage():
    from capacity.config import CapacityConfig, check_sweep
    from common.config import ConfigError
    check_sweep(CapacityConfig())
    for bad in ({"sweep_widths": ((8, 16),)}, {"sweep_widths": ((8, 16, 0),)}, {"sweep_classifiers": ("vgg16",)}):
        with pytest.raises(ConfigError):
            check_sweep(CapacityConfig(**bad))
