"""common/bridge.py: DLPack exchange, torch-in-JAX and JAX-in-torch gradients, pytree safetensors."""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
import jax.numpy as jnp  # noqa: E402

from common.bridge import (jax_as_torch, jax_to_torch, load_pytree, load_pytree_metadata, save_pytree,  # noqa: E402
                           torch_as_jax, torch_loss_and_input_grad, torch_to_jax)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(),
                               torch.nn.Linear(3 * 4 * 4, 5)).double().float().eval()


def test_dlpack_roundtrip_zero_copy_and_float64():
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    a = torch_to_jax(t)
    assert a.dtype == jnp.float32 and np.array_equal(np.asarray(a), t.numpy())
    back = jax_to_torch(a)
    assert back.data_ptr() == a.unsafe_buffer_pointer()          # zero-copy JAX -> torch
    assert torch_to_jax(t).unsafe_buffer_pointer() == t.data_ptr()  # zero-copy torch -> JAX
    g = torch.ones(2, requires_grad=True)
    assert np.asarray(torch_to_jax(g * 2)).tolist() == [2.0, 2.0]   # detached before export
    assert torch_to_jax(torch.ones(2, dtype=torch.float64)).dtype == jnp.float32


def _loss_jax(f):
    return lambda x, w: jnp.sum(jnp.sin(f(x)) * w)


def test_torch_as_jax_grad_matches_torch_and_finite_differences():
    net = _net()
    f = torch_as_jax(net)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    w = rng.standard_normal((2, 5)).astype(np.float32)
    # forward, eager and jitted (pure_callback) paths
    ref = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(x))), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(f)(jnp.asarray(x))), ref, rtol=1e-5, atol=1e-6)
    # gradient against pure torch
    xt = torch.from_numpy(x).requires_grad_(True)
    (torch.sin(net(xt)) * torch.from_numpy(w)).sum().backward()
    g_eager = jax.grad(_loss_jax(f))(jnp.asarray(x), jnp.asarray(w))
    g_jit = jax.jit(jax.grad(_loss_jax(f)))(jnp.asarray(x), jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(g_eager), xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g_jit), xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    # gradient against central finite differences (float64 torch for the reference)
    net64 = _net().double()
    loss64 = lambda xx: float((torch.sin(net64(torch.from_numpy(xx))) * torch.from_numpy(w).double()).sum())
    x64 = x.astype(np.float64)
    for idx in [(0, 0, 0, 0), (1, 1, 2, 3), (0, 1, 3, 1)]:
        e = np.zeros_like(x64)
        e[idx] = 1e-5
        fd = (loss64(x64 + e) - loss64(x64 - e)) / 2e-5
        assert abs(float(g_eager[idx]) - fd) < 1e-3 * max(1.0, abs(fd))


def test_torch_loss_and_input_grad():
    net = _net()
    x = jnp.asarray(np.random.default_rng(1).standard_normal((3, 2, 4, 4)).astype(np.float32))
    y = torch.tensor([0, 3, 4])
    loss, g = torch_loss_and_input_grad(lambda xt, yy: torch.nn.functional.cross_entropy(net(xt), yy), x, y)
    xt = torch.from_numpy(np.asarray(x)).requires_grad_(True)
    torch.nn.functional.cross_entropy(net(xt), y).backward()
    np.testing.assert_allclose(np.asarray(g), xt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_jax_as_torch_autograd():
    def fj(x, w):
        return jnp.tanh(x @ w) ** 2
    g = jax_as_torch(fj)
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal((4, 3)).astype(np.float32)).requires_grad_(True)
    w = torch.from_numpy(rng.standard_normal((3, 2)).astype(np.float32)).requires_grad_(True)
    out = g(x, w)
    (out * torch.arange(8.0).reshape(4, 2)).sum().backward()
    x2, w2 = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    (torch.tanh(x2 @ w2) ** 2 * torch.arange(8.0).reshape(4, 2)).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), (torch.tanh(x2 @ w2) ** 2).detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(w.grad.numpy(), w2.grad.numpy(), rtol=1e-4, atol=1e-6)
    # gradcheck in float64 semantics is not available (x64 off); finite differences on x instead
    xn = x.detach().numpy().astype(np.float64)
    f64 = lambda xx: float((np.tanh(xx @ w.detach().numpy().astype(np.float64)) ** 2 * np.arange(8.0).reshape(4, 2)).sum())
    e = np.zeros_like(xn)
    e[1, 2] = 1e-6
    assert abs((f64(xn + e) - f64(xn - e)) / 2e-6 - float(x.grad[1, 2])) < 1e-3


def test_pytree_safetensors_roundtrip(tmp_path):
    tree = {"params": {"enc": {"w": np.ones((2, 3), np.float32), "b": np.arange(3, dtype=np.int32)}},
            "moms": [np.zeros(2, np.float32), {"x": np.full((1,), 7.0, np.float32)}]}
    save_pytree(tree, tmp_path / "t.safetensors", metadata={"step": 3})
    back = load_pytree(tmp_path / "t.safetensors")
    assert isinstance(back["moms"], list) and float(back["moms"][1]["x"][0]) == 7.0
    assert back["params"]["enc"]["b"].dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(back["params"]["enc"]["w"]), tree["params"]["enc"]["w"])
    assert load_pytree_metadata(tmp_path / "t.safetensors") == {"step": 3}
    raw = (tmp_path / "t.safetensors").read_bytes()
    assert b"pickle" not in raw[:200]
