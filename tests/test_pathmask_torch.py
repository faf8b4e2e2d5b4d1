"""pathmask/: the torch copies (same logits and decodings as the Flax models), the saliency-method
registration (applies_to), the contrastive score on a hand-made case, and the unrolled step loop
giving the while_loop's trajectory (per-sample stopping inside vmap in both)."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402

from pathmask import morphing  # noqa: E402
from pathmask.config import PathMaskConfig  # noqa: E402
from pathmask.models import CNN, IMAGE_SHAPE, VAE, init_variables  # noqa: E402


def _jitter(tree, seed):
    """Non-trivial BN statistics and weights (fresh init has mean 0 / var 1), on the host."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda a: np.asarray(a) + 0.05 * rng.uniform(size=a.shape).astype(np.float32), tree)


@pytest.mark.parametrize("arch", ["mnist", "fashion", "cifar"])
def test_torch_copies_compute_the_flax_functions(arch):
    from pathmask.torch_models import TorchCNN, TorchDecoder
    shape = IMAGE_SHAPE[arch]
    cnn, vae = CNN(arch), VAE(arch, 100)
    cv = _jitter(init_variables(cnn, jax.random.PRNGKey(0), shape), 3)
    vv = _jitter(init_variables(vae, jax.random.PRNGKey(1), shape, 100), 4)
    x = np.random.default_rng(0).uniform(size=(3,) + shape).astype(np.float32)
    z = np.random.default_rng(1).normal(size=(3, 100)).astype(np.float32)
    ref = np.asarray(cnn.apply(cv, x))
    got = TorchCNN(arch, cv)(torch.tensor(x).permute(0, 3, 1, 2)).detach().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    dec = np.asarray(vae.apply(vv, z, method="decode"))
    tdec = TorchDecoder(arch, vv)(torch.tensor(z)).permute(0, 2, 3, 1).detach().numpy()
    np.testing.assert_allclose(tdec, dec, atol=1e-5)


def test_path_mask_is_registered_and_applies_only_to_models_carrying_the_vae():
    from common.saliency import discover
    methods = discover()
    assert {"pathmask", "saliency", "ig", "occlusion", "gradcam"} <= set(methods)
    pm = methods["pathmask"]
    assert not pm.applicable(torch.nn.Linear(2, 2))
    net = torch.nn.Linear(2, 2)
    net.pathmask_models = object()
    assert pm.applicable(net)


def test_contrastive_drop_hand_computed():
    """Logits (sum of pixel 0, 0): moving pixel 0 to the morph's value changes p_self - p_other;
    a map ranking pixel 0 first gets that drop, a map ranking pixel 3 first gets none."""
    from pathmask.saliency import contrastive_drop
    model = lambda x: torch.stack([x.reshape(len(x), -1)[:, 0] * 4.0, torch.zeros(len(x))], 1)
    x = torch.zeros(1, 1, 2, 2); x[0, 0, 0, 0] = 1.0
    morph = torch.zeros(1, 1, 2, 2)
    sig = lambda v: 1 / (1 + np.exp(-v))
    expect = (sig(4.0) - sig(-4.0)) - 0.0
    good = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    bad = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    assert abs(contrastive_drop(model, x, good, morph, [0], [1], 0.25)[0] - expect) < 1e-6
    assert abs(contrastive_drop(model, x, bad, morph, [0], [1], 0.25)[0]) < 1e-6


def test_unrolled_steps_follow_the_while_loop_and_stop_per_sample():
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.normal(size=(3, 6)), jnp.float32)
    models = SimpleNamespace(classify_fn=lambda: (lambda x: x @ W.T), decode_fn=lambda: (lambda z: z))
    codes = rng.normal(size=(6, 6)).astype(np.float32)
    codes[3] *= 5.0
    s, o, t = np.zeros(6, int), np.array([1, 2, 1, 2, 1, 1]), np.full(6, 8.0)
    base = dataclasses.replace(PathMaskConfig(), morph_lr=0.05, morph_max_steps=400, morph_batch=4, morph_segment=7,
                               alpha_lk=0.1)
    a = morphing.BatchedMorph(models, dataclasses.replace(base, morph_loop="while"))(codes, s, o, t)
    b = morphing.BatchedMorph(models, dataclasses.replace(base, morph_loop="unrolled"))(codes, s, o, t)
    assert a.stopped.all() and len(set(a.steps.tolist())) > 2
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_allclose(a.codes, b.codes, atol=1e-5)
    np.testing.assert_allclose(a.loss, b.loss, atol=1e-4, equal_nan=True)
