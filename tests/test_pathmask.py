"""pathmask/: models of app. C (KL, log-variance head), radial interpolation, the morphing stop rule,
per-sample early stopping inside jit(vmap), batch independence, the path-mask objective on a
hand-computed case, training through run_steps, and smoke / paper-preset runs."""
from __future__ import annotations

import dataclasses
import gzip
import struct
from types import SimpleNamespace

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from pathmask import latent, mask as M, morphing  # noqa: E402
from pathmask.config import PathMaskConfig  # noqa: E402
from pathmask.models import CNN, VAE, init_variables, kl_to_standard_normal, vae_loss  # noqa: E402


# ---------------------------------------------------------------------------------------------- models
def test_kl_matches_torch_closed_form():
    import torch
    from torch.distributions import Normal, kl_divergence
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(4, 7)).astype(np.float32), rng.normal(size=(4, 7)).astype(np.float32)
    ours = np.asarray(kl_to_standard_normal(jnp.asarray(mu), jnp.asarray(logvar)))
    ref = kl_divergence(Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar))),
                        Normal(torch.zeros(4, 7), torch.ones(4, 7))).sum(-1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    assert np.allclose(np.asarray(kl_to_standard_normal(jnp.zeros(3), jnp.zeros(3))), 0.0)
    # loss = sum of squared pixel errors + KL
    x, r = jnp.ones((2, 2, 2, 1)), jnp.zeros((2, 2, 2, 1))
    total, (l2, kl) = vae_loss(r, x, jnp.zeros((2, 3)), jnp.zeros((2, 3)))
    assert float(l2) == 4.0 and float(kl) == 0.0 and float(total) == 4.0


def test_vae_head_is_log_variance_and_shapes_follow_appendix_c():
    vae = VAE("mnist", 100)
    v = init_variables(vae, jax.random.PRNGKey(0), (28, 28, 1), 100)
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 28, 28, 1))
    eps = jax.random.normal(jax.random.PRNGKey(2), (3, 100))
    mu, logvar = vae.apply(v, x, method="encode")
    recon, mu2, lv2 = vae.apply(v, x, eps)
    direct = vae.apply(v, mu + jnp.exp(0.5 * logvar) * eps, method="decode")   # z = mu + sigma eps, sigma = e^(lv/2)
    np.testing.assert_allclose(np.asarray(recon), np.asarray(direct), atol=1e-6)
    assert recon.shape == (3, 28, 28, 1) and float(recon.min()) >= 0 and float(recon.max()) <= 1
    cnn = CNN("mnist")
    p = init_variables(cnn, jax.random.PRNGKey(0), (28, 28, 1))["params"]
    n = sum(a.size for a in jax.tree_util.tree_leaves(p))
    # C.1: 16*25 + 32*16*9 + 64*32*9 (no bias) + 2304*128 (no bias) + 128*10+10, BN scales/biases
    assert n == 400 + 4608 + 18432 + 294912 + 1290 + 2 * (16 + 32 + 64 + 128)
    for arch, shape in (("fashion", (28, 28, 1)), ("cifar", (32, 32, 3))):
        m = VAE(arch, 100)
        r, _, _ = m.apply(init_variables(m, jax.random.PRNGKey(0), shape, 100), jnp.zeros((2,) + shape),
                          jnp.zeros((2, 100)))
        assert r.shape == (2,) + shape


# ---------------------------------------------------------------------------------------------- latent
def test_radial_keeps_norm_of_orthogonal_endpoints_linear_does_not():
    x0, x1 = 3.0 * jnp.eye(5)[0], 3.0 * jnp.eye(5)[3]
    for kind, expect_mid in (("radial", 3.0), ("linear", 3.0 / np.sqrt(2))):
        norms = np.linalg.norm(np.asarray(latent.path(x0, x1, 11, kind)), axis=-1)
        assert abs(norms[5] - expect_mid) < 1e-5
        if kind == "radial":
            np.testing.assert_allclose(norms, 3.0, rtol=1e-6)
    # correlated endpoints: radial overshoots (cross term 2 sqrt(a(1-a)) <x0, x1> > 0)
    y = np.linalg.norm(np.asarray(latent.radial(x0, x0, 0.5)))
    assert y > 3.0 * 1.4


def test_entropy2_and_class_norms():
    assert abs(float(latent.entropy2(jnp.float32(2.0), jnp.float32(2.0))) - 1.0) < 1e-6
    assert float(latent.entropy2(jnp.float32(20.0), jnp.float32(0.0))) < 1e-6
    codes = np.array([[3.0, 4.0], [6.0, 8.0], [1.0, 0.0]])
    np.testing.assert_allclose(latent.class_norms(codes, np.array([0, 0, 1]), 2), [7.5, 1.0])


# ---------------------------------------------------------------------------------------------- morphing
def _linear_models(W):
    """decode = identity, classify = W c: the morphing program on a problem with known logits."""
    Wj = jnp.asarray(W, jnp.float32)
    return SimpleNamespace(classify_fn=lambda: (lambda x: x @ Wj.T), decode_fn=lambda: (lambda z: z))


def _cfg(**kw):
    base = dict(morph_lr=0.05, morph_max_steps=400, morph_batch=4, morph_segment=7, alpha_lk=0.1, entropy_threshold=0.01)
    base.update(kw)
    return dataclasses.replace(PathMaskConfig(), **base)


def test_morph_stop_rule_and_per_sample_early_stopping_inside_vmap():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 6))
    models = _linear_models(W)
    codes = rng.normal(size=(6, 6)).astype(np.float32)
    codes[3] *= 5.0                                        # a far-away start: takes longer
    s = np.zeros(6, int)
    o = np.array([1, 2, 1, 2, 1, 1])
    target = np.full(6, 8.0)                               # large enough for a decisive logit gap
    bm = morphing.BatchedMorph(models, _cfg())
    r = bm(codes, s, o, target)
    assert r.stopped.all()
    assert len(set(r.steps.tolist())) > 2, r.steps        # different samples stop at different steps
    lg = codes @ W.T
    for i in range(6):
        lg_final = r.codes[i] @ W.T
        h = float(latent.entropy2(jnp.float32(lg_final[s[i]]), jnp.float32(lg_final[o[i]])))
        p_o = 1 / (1 + np.exp(lg_final[s[i]] - lg_final[o[i]]))
        assert h < 0.01 and p_o > 0.5
        # the step before stopping did not satisfy the rule: history holds exactly `steps` entries
        assert np.isfinite(r.loss[i, :r.steps[i]]).all() and np.isnan(r.loss[i, r.steps[i]:]).all()
        assert lg[i, o[i]] < lg_final[o[i]]
    # too few steps: the rule never fires -> morphing errors, counted
    r2 = morphing.BatchedMorph(models, _cfg(morph_max_steps=3))(codes, s, o, target)
    assert (~r2.stopped).sum() >= 1 and (r2.steps == 3).all()


def test_morph_result_does_not_depend_on_the_batch():
    """Real Flax models (random weights, BN in eval mode): sample 0 alone, in one batch, in another
    batch, and through the sequential loop gives the same trajectory."""
    from pathmask.training import Models
    cnn, vae = CNN("mnist"), VAE("mnist", 100)
    cv = init_variables(cnn, jax.random.PRNGKey(0), (28, 28, 1))
    vv = init_variables(vae, jax.random.PRNGKey(1), (28, 28, 1), 100)
    models = Models(None, None, None, cnn, cv, vae, vv, {}, {})
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(5, 100)).astype(np.float32)
    s, o, t = np.array([0, 1, 2, 3, 4]), np.array([5, 6, 7, 8, 9]), np.full(5, 3.0, np.float32)
    bm = morphing.BatchedMorph(models, _cfg(morph_max_steps=40, morph_segment=9, morph_batch=3, morph_lr=0.01))
    a = bm(codes[[0, 1, 2]], s[[0, 1, 2]], o[[0, 1, 2]], t[:3])
    b = bm(codes[[3, 0, 4]], s[[3, 0, 4]], o[[3, 0, 4]], t[:3])
    seq = bm.sequential(codes[:1], s[:1], o[:1], t[:1])
    assert a.steps[0] == b.steps[1] == seq.steps[0]
    np.testing.assert_allclose(a.codes[0], b.codes[1], atol=1e-5)
    np.testing.assert_allclose(a.codes[0], seq.codes[0], atol=1e-4)
    np.testing.assert_allclose(a.loss[0], b.loss[1], atol=1e-4, equal_nan=True)


# ---------------------------------------------------------------------------------------------- path-mask
def test_mask_objective_hand_computed():
    """2x1 images, a path of 3 steps, logits (sum of pixels, 0): p_self = sigmoid(sum x)."""
    classify = lambda x: jnp.stack([x.reshape(x.shape[0], -1).sum(-1), jnp.zeros(x.shape[0])], -1)
    xs = jnp.asarray(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]]).reshape(3, 2, 1, 1), jnp.float32)
    m = jnp.asarray([[0.5], [0.25]], jnp.float32)        # (H=2, W=1)
    sig = lambda v: 1 / (1 + np.exp(-v))
    # mix_1 = (1-m) x1 + m x2 = [0.5, 0]; mix_2 = (1-m) x2 + m x3 = [1, 0.5]
    gains = (sig(0.5) - sig(0.0)) + (sig(1.5) - sig(1.0))
    expected = -gains + 2.0 * 0.75
    got = float(M.mask_objective(classify, m, xs, 0, l1=2.0))
    assert abs(got - expected) < 1e-6
    np.testing.assert_allclose(np.asarray(M.gain_terms(classify, m, xs, 0)),
                               [sig(0.5) - sig(0.0), sig(1.5) - sig(1.0)], atol=1e-6)
    # the blur keeps a constant map constant and stays in [0, 1]
    np.testing.assert_allclose(np.asarray(M.blur(jnp.full((6, 5), 0.7), 1.0)), 0.7, atol=1e-6)


def test_path_mask_batched_finds_the_pixel_that_matters_and_stops_per_sample():
    """Only pixel (0, 0) changes class evidence along the path; the mask should favour it."""
    w = np.zeros((4, 4)); w[0, 0] = 4.0
    Wj = jnp.asarray(w.reshape(-1), jnp.float32)
    classify = lambda x: jnp.stack([x.reshape(x.shape[0], -1) @ Wj, jnp.zeros(x.shape[0])], -1)
    n = 6
    start, end = np.zeros((4, 4, 1)), np.ones((4, 4, 1))
    path = np.stack([start + (end - start) * a for a in np.linspace(0, 1, n)])[None].repeat(2, 0)
    path[1] = 0.3                                          # the second: a path that changes nothing (no gain)
    cfg = dataclasses.replace(PathMaskConfig(), mask_lr=0.1, mask_steps=300, mask_l1=1.0, mask_blur_sigma=0.3,
                              mask_patience=10, mask_tol=2e-3)
    res = M.path_mask(M.make_batched_mask(classify, cfg, (4, 4)), path.astype(np.float32), np.array([0, 0]), batch=2)
    assert res.masks.shape == (2, 4, 4)
    assert res.masks[0, 0, 0] > res.masks[0, 2:, 2:].max() + 0.2
    assert (res.steps < 300).all() and res.steps[1] < res.steps[0]    # each sample stopped on its own
    sg = M.signed_map(res.masks, path)
    assert sg[0, 0, 0] > 0 and np.allclose(sg[1], 0)     # intensity increases toward the self class: red
    alone = M.path_mask(M.make_batched_mask(classify, cfg, (4, 4)), path[:1].astype(np.float32), np.array([0]), 1)
    assert alone.steps[0] == res.steps[0]
    np.testing.assert_allclose(alone.masks[0], res.masks[0], atol=1e-5)


# ---------------------------------------------------------------------------------------------- training, runs
def test_training_through_run_steps_then_loaded(tmp_path):
    from pathmask.config import NetTrain
    from pathmask.training import Split, train
    rng = np.random.default_rng(0)
    data = Split(rng.uniform(size=(64, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 64), list("0123456789"))
    tcfg = NetTrain(epochs=2, batch_size=16, lr=1e-3, ckpt_every=3, log_every=2)
    v1, info1 = train(VAE("mnist", 8), "vae", data, tcfg, tmp_path / "vae", 0, progress=False)
    assert info1["resumed_from"] == 0 and info1["step"] == 8
    v2, info2 = train(VAE("mnist", 8), "vae", data, tcfg, tmp_path / "vae", 0, progress=False)
    assert info2["resumed_from"] == 8                    # loaded, exact structure
    for a, b in zip(jax.tree_util.tree_leaves(v1), jax.tree_util.tree_leaves(v2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    losses = [h["loss"] for h in info1["history"]]
    assert losses[-1] < losses[0]


def test_smoke_run_path_mask(tmp_path):
    from common.experiment import run_experiment
    rec = run_experiment("pathmask.path_mask", "smoke", out_root=tmp_path, device="cpu")
    m = rec["metrics"]
    assert m["inputs"] == 3 and 0 <= m["mask_mean"] <= 1
    assert (tmp_path / "pathmask.path_mask" / "smoke" / "seed-0" / "fig5_3_path_mask_0.png").exists()


def _idx(path, arr):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_paper_preset_on_tiny_fixtures(tmp_path):
    """The paper preset's code path (NotMNIST (split here, alpha_lk 10) and FashionMNIST
    (its own architecture)) on tiny fixtures, with the step counts overridden down."""
    from PIL import Image
    from common.experiment import run_experiment
    rng = np.random.default_rng(0)
    for folder in ("MNIST", "FashionMNIST"):
        raw = tmp_path / "data" / folder / "raw"
        raw.mkdir(parents=True)
        for pre, n in (("train", 80), ("t10k", 40)):
            y = np.arange(n) % 10
            x = (rng.uniform(size=(n, 28, 28)) * 60 + (y[:, None, None] * 20)).clip(0, 255)
            _idx(raw / f"{pre}-images-idx3-ubyte.gz", x), _idx(raw / f"{pre}-labels-idx1-ubyte.gz", y)
    for c in "ABCDEFGHIJ":
        d = tmp_path / "data" / "notMNIST_small" / c
        d.mkdir(parents=True)
        for k in range(8):
            Image.fromarray((rng.uniform(size=(28, 28)) * 255).astype(np.uint8)).save(d / f"{k}.png")
    small = {"cnn.epochs": 1, "vae.epochs": 1, "morph_samples": 4, "morph_max_steps": 5, "morph_batch": 4,
             "progress": False, "best_of": 2}
    rec = run_experiment("pathmask.morphing", "paper", out_root=tmp_path / "out", data_root=str(tmp_path / "data"),
                         device="cpu", overrides=dict(small, dataset="notmnist_small"))
    assert rec["metrics"]["alpha_lk"] == 10.0 and rec["metrics"]["samples"] == 4
    rec = run_experiment("pathmask.reconstructions", "paper", out_root=tmp_path / "out",
                         data_root=str(tmp_path / "data"), device="cpu", overrides=dict(small, dataset="fashion-mnist"))
    assert rec["provenance"]["config"]["dataset"] == "fashion-mnist"


# ---------------------------------------------------------------------------------------------- issue 25
def test_alpha_lk_zero_switches_the_norm_term_off_and_minus_one_means_the_datasets_value():
    from common.config import ConfigError
    assert PathMaskConfig(alpha_lk=0.0).resolved_alpha_lk() == 0.0
    assert PathMaskConfig().resolved_alpha_lk() == 0.1                       # -1: mnist5k's value
    assert PathMaskConfig(dataset="fashion-mnist", alpha_lk=-1.0).resolved_alpha_lk() == 10.0
    assert PathMaskConfig(alpha_lk=2.5).resolved_alpha_lk() == 2.5
    with pytest.raises(ConfigError):
        PathMaskConfig(alpha_lk=-0.5).validate()
    # with the term off, a far-off target norm changes nothing; with it on, it does (one call each:
    # the same codes with target norms 1 and 50 side by side)
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 6))
    codes = np.tile(rng.normal(size=(3, 6)).astype(np.float32), (2, 1))
    s, o, t = np.zeros(6, int), np.array([1, 2, 1] * 2), np.repeat([1.0, 50.0], 3)
    runs = {a: morphing.BatchedMorph(_linear_models(W), _cfg(alpha_lk=PathMaskConfig(alpha_lk=a).resolved_alpha_lk(),
                                                             morph_max_steps=30, morph_batch=6, morph_loop="while"))(
        codes, s, o, t) for a in (0.0, -1.0)}
    np.testing.assert_allclose(runs[0.0].codes[:3], runs[0.0].codes[3:], atol=1e-6)
    assert np.abs(runs[-1.0].codes[:3] - runs[-1.0].codes[3:]).max() > 1e-3


def test_path_mask_pixels_reach_zero_within_the_budget_and_the_early_stop_fires():
    """Only pixel (0, 0) carries class evidence along the path: every pixel beyond the blur's reach
    of it must reach 0 within 0.5 / lr steps (a sigmoid parameterisation never does: it stays above
    sigmoid(-lr x steps)), and once the mask sits at its bounds it stops moving, so the per-sample
    early stop fires before the step cap."""
    w = np.zeros((6, 6)); w[0, 0] = 4.0
    Wj = jnp.asarray(w.reshape(-1), jnp.float32)
    classify = lambda x: jnp.stack([x.reshape(x.shape[0], -1) @ Wj, jnp.zeros(x.shape[0])], -1)
    path = np.stack([np.full((6, 6, 1), a) for a in np.linspace(0, 1, 5)])[None].astype(np.float32)
    cfg = dataclasses.replace(PathMaskConfig(), mask_lr=0.05, mask_steps=150, mask_l1=1.0, mask_blur_sigma=0.5,
                              mask_patience=5, mask_tol=1e-4)
    assert M.mask_floor(0.5, cfg.mask_lr, cfg.mask_steps) == 0.0
    res = M.path_mask(M.make_batched_mask(classify, cfg, (6, 6)), path, np.array([0]), batch=1)
    assert res.masks[0, 3:, 3:].max() < 1e-6, res.masks[0]
    assert res.masks[0, 0, 0] > 0.5
    assert res.stopped[0] and res.steps[0] < 150, res.steps


def test_mask_loss_drop_and_gain_window_excess_by_hand():
    res = M.MaskResult(masks=np.zeros((2, 1, 1)), steps=np.array([3, 2]), gains=np.zeros((2, 4)),
                       loss=np.zeros((2, 3)), objective=np.array([[-1.0, -2.0, -3.0], [-1.0, -0.5, np.nan]]),
                       l1=np.array([[4.0, 2.0, 1.0], [1.0, 1.0, np.nan]]), weight=np.array([0.5, 1.0]),
                       stopped=np.array([False, True]))
    # sample 0: first -1 + 0.5 * 4 = 1, last -3 + 0.5 * 1 = -2.5 -> 3.5; sample 1: 0 - 0.5 = -0.5
    np.testing.assert_allclose(M.loss_drop(res, 1.0), [3.5, -0.5])
    h = np.array([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])     # window = step 2 only
    g = np.array([[0.0, 0.0, 0.6, 0.0, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(M.gain_window_excess(g, h), [1.0 - 1 / 6, 1 / 6 - 1 / 6], atol=1e-12)


def test_latent_helpers_window_ratio_nearest_distance_median_ci_and_pca():
    H = np.array([[0.0, 0.0, 1.0, 0.0, 0.0], [0.2] * 5])
    G = np.array([[1.0, 1.0, 4.0, 1.0, 1.0], [1.0] * 5])
    r = latent.window_log_ratio(H, G)
    assert abs(r[0] - np.log(4.0)) < 1e-12 and np.isnan(r[1])               # flat entropy: window holds all steps
    pool = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    d = latent.nearest_of_class_distance(np.array([[0.0, 0.0], [0.0, 0.0]]), pool, np.array([0, 1, 1]), np.array([1, 0]))
    np.testing.assert_allclose(d, [1.0, 0.0], atol=1e-9)
    lo, hi = latent.median_ci(np.arange(101))
    assert lo < 50 < hi and hi - lo < 30
    assert latent.active_dims(np.c_[np.random.default_rng(0).normal(size=500), np.full(500, 0.3)]) == 1
    rng = np.random.default_rng(0)
    tr = (rng.normal(size=(200, 2)) @ np.array([[3.0, 0, 0, 0], [0, 1.0, 0, 0]])).reshape(200, 2, 2, 1)
    curve = latent.pca_test_l2_curve(tr, tr)
    assert curve[2] < 1e-9 < curve[1] < curve[0]                             # two components hold everything
    assert latent.pca_equivalent_dims(curve, curve[1] + 1e-9) == 1


def test_path_mask_unrolled_steps_equal_the_while_loop():
    w = np.zeros((5, 5)); w[1, 1] = 3.0; w[3, 2] = -2.0
    Wj = jnp.asarray(w.reshape(-1), jnp.float32)
    classify = lambda x: jnp.stack([x.reshape(x.shape[0], -1) @ Wj, jnp.zeros(x.shape[0])], -1)
    rng = np.random.default_rng(0)
    path = rng.uniform(size=(2, 4, 5, 5, 1)).astype(np.float32)
    cfg = dataclasses.replace(PathMaskConfig(), mask_lr=0.05, mask_steps=37, mask_blur_sigma=0.5, mask_patience=4,
                              mask_tol=2e-3, morph_segment=6)
    res = {k: M.path_mask(M.make_batched_mask(classify, cfg, (5, 5), loop=k), path, np.array([0, 0]), 2)
           for k in ("while", "unrolled")}
    np.testing.assert_array_equal(res["while"].steps, res["unrolled"].steps)
    np.testing.assert_allclose(res["while"].masks, res["unrolled"].masks, atol=1e-6)
    np.testing.assert_allclose(res["while"].loss, res["unrolled"].loss, atol=1e-5)
