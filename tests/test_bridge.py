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
    net64 = _net().double().requires_grad_(False)
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
    xt = torch.from_numpy(np.array(x)).requires_grad_(True)
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


# --------------------------------------------------------------------------------------------------
# torch_as_jax under jit / vmap / while_loop
# --------------------------------------------------------------------------------------------------
def _target_loss(f):
    """Per-sample objective: -log p(c | x) of the torch classifier, x one image (2, 4, 4)."""
    return lambda x, c: -jax.nn.log_softmax(f(x[None])[0])[c]


def _descend(f, lr=2.0, max_iter=12):
    """Gradient descent on one input until its loss is below `stop` or max_iter steps: a data-dependent
    number of iterations per sample, as pathmask's per-sample optimisations run."""
    loss = _target_loss(f)

    def run(x, c, stop):
        def cond(s):
            i, _, l = s
            return (i < max_iter) & (l > stop)

        def body(s):
            i, x, _ = s
            l, g = jax.value_and_grad(loss)(x, c)
            x = x - lr * g
            return i + 1, x, loss(x, c)
        return jax.lax.while_loop(cond, body, (0, x, loss(x, c)))
    return run


def test_torch_as_jax_in_jit_vmap_while_loop_matches_per_sample_python_loop():
    f = torch_as_jax(_net())
    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.standard_normal((5, 2, 4, 4)).astype(np.float32))
    cs = jnp.asarray([0, 1, 2, 3, 4])
    stops = jnp.asarray([1.2, 1.3, 1.62, 1.0, 1.45], jnp.float32)
    run = _descend(f)
    n_b, x_b, l_b = jax.jit(jax.vmap(run))(xs, cs, stops)
    # reference: each sample alone, in Python, through the eager (DLPack, no callback) path
    n_ref, x_ref, l_ref = [], [], []
    loss = _target_loss(f)
    for x, c, stop in zip(xs, cs, stops):
        i, l = 0, float(loss(x, c))
        while i < 12 and l > float(stop):
            x = x - 2.0 * jax.grad(loss)(x, c)
            i, l = i + 1, float(loss(x, c))
        n_ref.append(i), x_ref.append(np.asarray(x)), l_ref.append(l)
    assert len(set(n_ref)) > 2, n_ref          # the samples really stop after different iteration counts
    assert np.asarray(n_b).tolist() == n_ref
    np.testing.assert_allclose(np.asarray(x_b), np.stack(x_ref), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(l_b), l_ref, rtol=1e-4, atol=1e-5)


def test_torch_as_jax_grad_under_jit_and_vmap_matches_finite_differences():
    f = torch_as_jax(_net())
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 4, 4)).astype(np.float32)
    w = rng.standard_normal(5).astype(np.float32)
    per_sample = lambda xi, ww: jnp.sum(jnp.sin(f(xi[None])[0]) * ww)     # w shared: not vmapped
    g_vmap = jax.vmap(jax.grad(per_sample), in_axes=(0, None))(jnp.asarray(x), jnp.asarray(w))
    g_jit_vmap = jax.jit(jax.vmap(jax.grad(per_sample), in_axes=(0, None)))(jnp.asarray(x), jnp.asarray(w))
    g_jit = jnp.stack([jax.jit(jax.grad(per_sample))(jnp.asarray(xi), jnp.asarray(w)) for xi in x])
    # d/dw too: the shared, unbatched argument receives the sum over the vmapped samples
    gw = jax.jit(jax.grad(lambda xx, ww: jnp.sum(jax.vmap(per_sample, in_axes=(0, None))(xx, ww)), argnums=1))(
        jnp.asarray(x), jnp.asarray(w))
    net64 = _net().double()
    w64 = torch.from_numpy(w).double()

    def loss64(xi):
        with torch.no_grad():
            return float((torch.sin(net64(torch.from_numpy(xi)[None])[0]) * w64).sum())
    for b in range(3):
        for idx in [(0, 0, 0), (1, 2, 3), (0, 3, 1)]:
            e = np.zeros((2, 4, 4))
            e[idx] = 1e-6
            x64 = x[b].astype(np.float64)
            fd = (loss64(x64 + e) - loss64(x64 - e)) / 2e-6
            for g in (g_vmap, g_jit_vmap, g_jit):
                assert abs(float(g[b][idx]) - fd) < 1e-4 * max(1.0, abs(fd)), (b, idx, float(g[b][idx]), fd)
    with torch.no_grad():
        gw_ref = torch.sin(net64(torch.from_numpy(x).double())).sum(0).numpy()
    np.testing.assert_allclose(np.asarray(gw), gw_ref, rtol=1e-5, atol=1e-6)


def test_torch_as_jax_vmap_rows_are_batch_independent():
    f = torch_as_jax(_net())
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.standard_normal((6, 2, 4, 4)).astype(np.float32))
    others = xs.at[1:].set(jnp.asarray(100 * rng.standard_normal((5, 2, 4, 4)).astype(np.float32)))
    one = jax.jit(jax.vmap(lambda x: f(x[None])[0]))
    alone = np.asarray(f(xs[:1])[0])
    np.testing.assert_allclose(np.asarray(one(xs))[0], alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(one(others))[0], alone, rtol=1e-5, atol=1e-6)
    # nested vmap over (groups, samples) of per-sample batches of 2: rows of the same image agree
    nested = jax.jit(jax.vmap(jax.vmap(lambda x: f(jnp.stack([x, -x])))))(xs.reshape(2, 3, 2, 4, 4))
    np.testing.assert_allclose(np.asarray(nested)[0, 0, 0], alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(nested)[0, 0, 1], np.asarray(f(-xs[:1])[0]), rtol=1e-5, atol=1e-6)


def test_torch_as_jax_vmap_without_common_batch_axis_runs_each_element():
    net = _net()
    f = torch_as_jax(lambda x, t: net(x) / t)       # t: a scalar temperature, no batch axis to fold
    rng = np.random.default_rng(6)
    xs = jnp.asarray(rng.standard_normal((4, 1, 2, 4, 4)).astype(np.float32))
    ts = jnp.asarray([0.5, 1.0, 2.0, 4.0], jnp.float32)
    got = jax.jit(jax.vmap(f))(xs, ts)
    for i in range(4):
        np.testing.assert_allclose(np.asarray(got[i]), np.asarray(f(xs[i], ts[i])), rtol=1e-5, atol=1e-6)
    g = jax.jit(jax.vmap(jax.grad(lambda x, t: jnp.sum(f(x, t) ** 2), argnums=1)))(xs, ts)
    for i in range(4):
        assert abs(float(g[i]) - float(jax.grad(lambda t: jnp.sum(f(xs[i], t) ** 2))(ts[i]))) < 1e-4 * abs(float(g[i]))


def test_torch_as_jax_warns_for_training_mode_module_under_vmap():
    torch.manual_seed(0)
    bn = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))   # train mode
    f = torch_as_jax(bn)
    xs = jnp.asarray(np.random.default_rng(7).standard_normal((4, 2, 4)).astype(np.float32))
    with pytest.warns(RuntimeWarning, match="training mode"):
        mixed = jax.jit(jax.vmap(f))(xs.reshape(4, 2, 1, 4))
    # why it warns: batch statistics over the folded batch of 8 rows, not the 2 rows of each element
    assert not np.allclose(np.asarray(mixed[0]), np.asarray(f(xs[0].reshape(2, 1, 4))), atol=1e-3)


# --------------------------------------------------------------------------------------------------
# jax_as_torch with pytrees
# --------------------------------------------------------------------------------------------------
def test_jax_as_torch_pytree_arguments_and_outputs():
    def fj(params, xs, scale):
        x, labels = xs
        h = jnp.tanh(x @ params["w"] + params["b"]) * scale
        return {"h": h, "picked": h[jnp.arange(h.shape[0]), labels], "argmax": jnp.argmax(h, axis=1)}
    g = jax_as_torch(fj)
    rng = np.random.default_rng(8)
    params = {"w": torch.from_numpy(rng.standard_normal((3, 2)).astype(np.float32)).requires_grad_(True),
              "b": torch.from_numpy(rng.standard_normal(2)).requires_grad_(True)}     # float64 leaf
    x = torch.from_numpy(rng.standard_normal((4, 3)).astype(np.float32)).requires_grad_(True)
    labels = torch.tensor([0, 1, 1, 0])
    out = g(params, (x, labels), 1.5)
    assert set(out) == {"h", "picked", "argmax"} and out["argmax"].dtype == torch.int32
    assert not out["argmax"].requires_grad and out["h"].requires_grad
    with torch.no_grad():                         # the path without autograd node gives the same values
        plain = g(params, (x, labels), 1.5)
    assert not plain["h"].requires_grad
    for k in out:
        np.testing.assert_array_equal(plain[k].numpy(), out[k].detach().numpy())
    cot = torch.arange(8.0).reshape(4, 2)
    ((out["h"] * cot).sum() + (out["picked"] ** 2).sum()).backward()
    assert params["b"].grad.dtype == torch.float64
    # reference: float64 numpy, central finite differences on every leaf
    w0, b0, x0 = (params["w"].detach().double().numpy(), params["b"].detach().numpy(), x.detach().double().numpy())

    def loss(w, b, xx):
        h = np.tanh(xx @ w + b) * 1.5
        return float((h * cot.double().numpy()).sum() + (h[np.arange(4), labels.numpy()] ** 2).sum())
    for name, arr, grad in [("w", w0, params["w"].grad), ("b", b0, params["b"].grad), ("x", x0, x.grad)]:
        fd = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            e = np.zeros_like(arr)
            e[idx] = 1e-6
            args = {"w": w0, "b": b0, "x": x0}
            hi, lo = dict(args, **{name: arr + e}), dict(args, **{name: arr - e})
            fd[idx] = (loss(hi["w"], hi["b"], hi["x"]) - loss(lo["w"], lo["b"], lo["x"])) / 2e-6
        np.testing.assert_allclose(grad.double().numpy(), fd, rtol=1e-4, atol=1e-4, err_msg=name)


# --------------------------------------------------------------------------------------------------
# Host copies are counted and warned about
# --------------------------------------------------------------------------------------------------
def test_host_copy_counted_and_warned_once_when_dlpack_refuses_a_cuda_tensor(monkeypatch):
    import warnings
    from common import bridge
    t = torch.arange(6.0).reshape(2, 3)
    n0 = bridge.host_copy_count()
    torch_to_jax(t)
    assert bridge.host_copy_count() == n0            # CPU DLPack: zero-copy, nothing counted
    monkeypatch.setattr(bridge, "_warned_host_copy", set())
    monkeypatch.setattr(bridge, "_on_gpu", lambda tensor: True)   # pretend t lives on a GPU ...

    def refuse(_):
        raise RuntimeError("no GPU backend")                       # ... and JAX is CPU-only
    monkeypatch.setattr(jax.dlpack, "from_dlpack", refuse)
    with pytest.warns(RuntimeWarning, match=rf"{n0 + 1} host copies so far.*pip install -e \.\[cuda\]"):
        a = torch_to_jax(t)
    np.testing.assert_array_equal(np.asarray(a), t.numpy())
    assert bridge.host_copy_count() == n0 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")                             # once per process: no second warning
        torch_to_jax(t)
    assert bridge.host_copy_count() == n0 + 2


def test_host_copy_counted_for_callbacks_on_a_gpu_run(monkeypatch):
    from common import bridge
    f = torch_as_jax(_net())
    x = jnp.asarray(np.random.default_rng(9).standard_normal((2, 2, 4, 4)).astype(np.float32))
    loss = jax.jit(jax.grad(lambda xx: jnp.sum(f(xx) ** 2)))
    n0 = bridge.host_copy_count()
    jax.jit(f)(x), loss(x)
    assert bridge.host_copy_count() == n0            # CPU run: the callback's arrays are already on the host
    monkeypatch.setattr(bridge, "_warned_host_copy", set())
    monkeypatch.setattr(bridge, "_jax_on_gpu", lambda: True)
    with pytest.warns(RuntimeWarning, match=rf"pure_callback.*{n0 + 2} host copies so far"):
        jax.jit(f)(x).block_until_ready()            # x in, logits out
    assert bridge.host_copy_count() == n0 + 2
    loss(x).block_until_ready()                      # forward: x in, y out; backward: g, x in, dx out
    assert bridge.host_copy_count() == n0 + 7
