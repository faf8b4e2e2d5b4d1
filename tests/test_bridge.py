"""common/bridge.py: DLPack exchange, torch-in-JAX and JAX-in-torch gradients, pytree safetensors."""
import json

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


def _tree_equal(a, b):
    """Same structure (container types, keys, None, empty dicts) and the same leaves, bit for bit."""
    if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
        return False
    return all(np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_pytree_restores_optax_adam_state_into_template(tmp_path):
    optax = pytest.importorskip("optax")
    params = {"enc": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3)}, "head": jnp.ones(4)}
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    state = opt.init(params)
    # a few real updates so that count, mu and nu hold distinct values
    for _ in range(3):
        grads = jax.tree_util.tree_map(lambda p: jnp.sin(p) + 0.1, params)
        upd, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, upd)
    save_pytree(state, tmp_path / "opt.safetensors")
    back = load_pytree(tmp_path / "opt.safetensors", like=opt.init(params))
    assert _tree_equal(back, state)
    assert isinstance(back[0], optax.EmptyState) and type(back[1][0]).__name__ == "ScaleByAdamState"
    assert int(back[1][0].count) == 3 and back[1][0].count.dtype == jnp.int32
    # the restored state drives the optimiser exactly like the original
    g = jax.tree_util.tree_map(jnp.cos, params)
    u1, _ = opt.update(g, state, params)
    u2, _ = opt.update(g, back, params)
    assert _tree_equal(u1, u2)
    # a template of shapes only (jax.eval_shape) is enough
    shapes = jax.eval_shape(opt.init, params)
    assert _tree_equal(load_pytree(tmp_path / "opt.safetensors", like=shapes), state)


def test_pytree_restores_flax_variables(tmp_path):
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            x = nn.Dense(4)(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            return nn.Dense(2)(nn.relu(x))

    net = Net()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32))
    variables = net.init(jax.random.PRNGKey(0), x, train=False)
    _, upd = net.apply(variables, x, train=True, mutable=["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": upd["batch_stats"]}
    save_pytree(variables, tmp_path / "v.safetensors")
    back = load_pytree(tmp_path / "v.safetensors", like=net.init(jax.random.PRNGKey(1), x, train=False))
    assert _tree_equal(back, variables)
    np.testing.assert_array_equal(np.asarray(net.apply(back, x, train=False)),
                                  np.asarray(net.apply(variables, x, train=False)))


def test_pytree_tuple_int_keys_empty_dict_and_none(tmp_path):
    tree = {"pair": (np.float32(1.5) * np.ones(2, np.float32), np.arange(3, dtype=np.int32)),
            "by_class": {0: np.zeros((1, 2), np.float32), 7: np.full((2,), 3.0, np.float32)},
            "empty": {}, "nothing": None, "nested": [None, {"x": np.ones((), np.float32)}, ()]}
    save_pytree(tree, tmp_path / "t.safetensors", metadata={"step": 1})
    back = load_pytree(tmp_path / "t.safetensors", like=tree, as_jax=False)
    assert _tree_equal(back, tree)
    assert isinstance(back["pair"], tuple) and set(back["by_class"]) == {0, 7}
    assert back["empty"] == {} and back["nothing"] is None and back["nested"][0] is None and back["nested"][2] == ()
    assert load_pytree_metadata(tmp_path / "t.safetensors") == {"step": 1}
    # without a template: nested dicts/lists, keys as strings (the format-1 reading)
    plain = load_pytree(tmp_path / "t.safetensors", as_jax=False)
    assert isinstance(plain["pair"], list) and float(plain["by_class"]["7"][1]) == 3.0


def test_pytree_template_mismatch_names_file_and_key(tmp_path):
    f = tmp_path / "m.safetensors"
    save_pytree({"a": np.zeros((2, 3), np.float32), "b": {"c": np.zeros(4, np.float32)}}, f)
    with pytest.raises(ValueError, match=r"m\.safetensors.*\['b'\]\['c'\].*float32\[4\].*float32\[5\]"):
        load_pytree(f, like={"a": np.zeros((2, 3), np.float32), "b": {"c": np.zeros(5, np.float32)}})
    with pytest.raises(ValueError, match=r"m\.safetensors.*\['b'\]\['d'\].*not in the file"):
        load_pytree(f, like={"a": np.zeros((2, 3), np.float32), "b": {"d": np.zeros(4, np.float32)}})
    with pytest.raises(ValueError, match=r"m\.safetensors.*1 leaves the template lacks.*'b/c'"):
        load_pytree(f, like={"a": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match=r"\[.a.\] is float32\[2, 3\] in the file.*expects int32\[2, 3\]"):
        load_pytree(f, like={"a": np.zeros((2, 3), np.int32), "b": {"c": np.zeros(4, np.float32)}})


def test_pytree_format1_file_still_loads(tmp_path):
    """A file as the first format wrote it: '/'-joined names, '#i' list positions, metadata 'json' only."""
    from safetensors.numpy import save_file
    f = tmp_path / "old.safetensors"
    save_file({"params/enc/w": np.ones((2, 3), np.float32), "moms/#0": np.zeros(2, np.float32),
               "moms/#1/x": np.full((1,), 7.0, np.float32)}, str(f), metadata={"json": json.dumps({"step": 3})})
    back = load_pytree(f)
    assert isinstance(back["moms"], list) and float(back["moms"][1]["x"][0]) == 7.0
    assert back["params"]["enc"]["w"].shape == (2, 3) and load_pytree_metadata(f) == {"step": 3}
    like = {"params": {"enc": {"w": jnp.zeros((2, 3))}}, "moms": [jnp.zeros(2), {"x": jnp.zeros(1)}]}
    assert _tree_equal(load_pytree(f, like=like), back)
