"""torch <-> JAX: zero-copy array exchange, torch functions inside JAX (custom VJP), JAX functions
inside torch autograd, and JAX pytrees saved as safetensors (no pickle).

    f = torch_as_jax(classifier)          # JAX function; jax.grad / jax.vjp flow into torch
    g = jax_as_torch(jax_fn)              # torch callable; .backward() flows into JAX
    save_pytree(params, "p.safetensors"); params = load_pytree("p.safetensors")

Arrays cross by DLPack (zero-copy on CPU and on GPU when both sides live on the same device).
A torch tensor that requires grad is detached before export. x64 stays off in JAX (the project
default): float64 is converted to float32 explicitly, never silently.

Two call paths for ``torch_as_jax``:
- eager (concrete ``jax.Array`` inputs, including under ``jax.vjp`` outside ``jit``): the torch
  function runs directly on the DLPack views, no host copy;
- traced (inside ``jax.jit``): ``jax.pure_callback``, which hands host numpy arrays to torch (a copy
  on GPU). Use the eager path where speed matters (capacity/training.py splits its step into a
  jitted JAX part, the torch part, and a jitted JAX update, so that nothing is copied).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np


# --------------------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------------------
def _jax_device_for(t):
    import jax
    if t.device.type == "cuda":
        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return gpus[t.device.index or 0] if gpus else None
    return jax.devices("cpu")[0]


def torch_to_jax(t):
    """A torch tensor as a jax.Array, by DLPack (zero-copy where the device allows)."""
    import jax
    import torch
    t = t.detach()
    if t.dtype == torch.float64:
        t = t.float()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    t = t.contiguous()
    try:
        return jax.dlpack.from_dlpack(t)
    except Exception:  # device mismatch (torch on GPU, JAX on CPU) or an exotic dtype
        return jax.numpy.asarray(t.cpu().numpy())


def jax_to_torch(a, device=None):
    """A jax.Array as a torch tensor, by DLPack (zero-copy); ``device`` moves it afterwards."""
    import torch
    a = _as_jax(a)
    t = torch.from_dlpack(a)
    return t if device is None else t.to(device)


def _as_jax(a):
    import jax
    import jax.numpy as jnp
    if isinstance(a, jax.Array):
        return a
    a = np.asarray(a)
    if a.dtype == np.float64:
        a = a.astype(np.float32)
    return jnp.asarray(a)


def _is_concrete(a) -> bool:
    import jax
    return isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer)


# --------------------------------------------------------------------------------------------------
# torch inside JAX
# --------------------------------------------------------------------------------------------------
def torch_as_jax(fn: Callable, device=None) -> Callable:
    """Wrap ``fn`` (torch tensors -> one torch tensor, e.g. an ``nn.Module`` in eval mode) as a JAX
    function of the same arrays, differentiable by a custom VJP that calls torch autograd.

    Gradients are taken w.r.t. every floating input. ``device``: where torch runs (default: where
    DLPack puts the arrays). Parameters of ``fn`` receive no gradient (they are frozen).
    """
    import jax
    import jax.numpy as jnp
    import torch

    shape_cache: dict = {}

    def to_torch(arrs):
        out = []
        for a in arrs:
            t = torch.from_dlpack(a) if _is_concrete(a) else torch.from_numpy(np.array(a))
            out.append(t if device is None else t.to(device))
        return out

    def run_fwd(*arrs):
        with torch.no_grad():
            y = fn(*to_torch(arrs))
        return y.detach().float() if y.is_floating_point() else y.detach()

    def run_bwd(g, *arrs):
        ts = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in to_torch(arrs)]
        with torch.enable_grad():
            y = fn(*ts)
            gt = (torch.from_dlpack(g) if _is_concrete(g) else torch.from_numpy(np.array(g))).to(y.device)
            need = [t for t in ts if t.requires_grad]
            grads = torch.autograd.grad(y.float(), need, grad_outputs=gt, allow_unused=True)
        it = iter(grads)
        out = []
        for t in ts:
            gi = next(it) if t.requires_grad else None
            out.append(torch.zeros_like(t) if gi is None else gi.detach())
        return out

    def out_spec(arrs):
        key = tuple((a.shape, str(a.dtype)) for a in arrs)
        if key not in shape_cache:
            zs = [torch.zeros(a.shape, dtype=getattr(torch, str(a.dtype))) for a in arrs]
            if device is not None:
                zs = [z.to(device) for z in zs]
            with torch.no_grad():
                y = fn(*zs)
            dt = jnp.float32 if y.is_floating_point() else getattr(jnp, str(y.dtype).replace("torch.", ""))
            shape_cache[key] = jax.ShapeDtypeStruct(tuple(y.shape), dt)
        return shape_cache[key]

    def call(*arrs):
        if all(_is_concrete(a) for a in arrs):
            return torch_to_jax(run_fwd(*arrs))
        spec = out_spec(arrs)
        return jax.pure_callback(lambda *xs: run_fwd(*xs).cpu().numpy(), spec, *arrs)

    def grad_call(g, *arrs):
        if _is_concrete(g) and all(_is_concrete(a) for a in arrs):
            return tuple(torch_to_jax(t) for t in run_bwd(g, *arrs))
        specs = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrs)
        return jax.pure_callback(lambda gg, *xs: tuple(t.cpu().numpy().astype(s.dtype)
                                                       for t, s in zip(run_bwd(gg, *xs), specs)),
                                 specs, g, *arrs)

    @jax.custom_vjp
    def f(*arrs):
        return call(*arrs)

    def f_fwd(*arrs):
        return call(*arrs), arrs

    def f_bwd(arrs, g):
        grads = grad_call(g, *arrs)
        return tuple(gr.astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else
                     np.zeros(a.shape, dtype=jax.dtypes.float0) for gr, a in zip(grads, arrs))

    f.defvjp(f_fwd, f_bwd)
    return f


def torch_loss_and_input_grad(fn: Callable, x, *extra) -> tuple[float, Any]:
    """Eager helper: ``fn(x_torch, *extra) -> scalar loss``; returns (loss, d loss / d x) with x
    given and the gradient returned as jax.Arrays, all by DLPack (no copy). ``extra`` are torch
    tensors (labels, ...)."""
    import torch
    xt = jax_to_torch(x).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = fn(xt, *extra)
        (g,) = torch.autograd.grad(loss, [xt])
    return loss.detach(), torch_to_jax(g)


# --------------------------------------------------------------------------------------------------
# JAX inside torch
# --------------------------------------------------------------------------------------------------
def jax_as_torch(fn: Callable, jit: bool = True) -> Callable:
    """Wrap a JAX function of arrays (returning one array) as a torch function with autograd:
    ``y = g(x1, x2); y.sum().backward()`` fills ``x1.grad`` through ``jax.vjp``."""
    import jax
    import torch

    def fwd(*xs):
        return jax.vjp(fn, *xs)

    fwd_c = jax.jit(fwd) if jit else fwd
    apply_vjp = jax.jit(lambda vjp_fn, g: vjp_fn(g)) if jit else (lambda vjp_fn, g: vjp_fn(g))

    class _Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *ts):
            devices = [t.device for t in ts]
            y, vjp_fn = fwd_c(*[torch_to_jax(t) for t in ts])
            ctx.vjp_fn, ctx.devices, ctx.dtypes = vjp_fn, devices, [t.dtype for t in ts]
            return jax_to_torch(y, devices[0]).clone()

        @staticmethod
        def backward(ctx, g):
            grads = apply_vjp(ctx.vjp_fn, torch_to_jax(g.contiguous()))
            return tuple(jax_to_torch(gr, d).to(dt).clone() if dt.is_floating_point else None
                         for gr, d, dt in zip(grads, ctx.devices, ctx.dtypes))

    def call(*ts):
        return _Fn.apply(*ts)

    return call


# --------------------------------------------------------------------------------------------------
# JAX pytrees as safetensors
# --------------------------------------------------------------------------------------------------
# One tensor per array leaf, named by its key path joined with "/": dict keys as they are, sequence
# positions as "#i", attributes (namedtuple fields such as optax's ``ScaleByAdamState.mu``) by name.
# Structure without leaves (None, empty dicts, ``optax.EmptyState()``) and the container types are not
# stored: they come back from the template given to ``load_pytree(..., like=)``. Without a template the
# names are unflattened into nested dicts/lists, the format files had before key paths were used.
_SEP = "/"
_FORMAT = 2                    # metadata["pytree"]["format"]; files without it are the format-1 files


def _key_name(k) -> str:
    import jax.tree_util as jtu
    if isinstance(k, jtu.SequenceKey):
        name = f"#{k.idx}"
    elif isinstance(k, jtu.DictKey):
        name = str(k.key)
    elif isinstance(k, jtu.GetAttrKey):
        name = k.name
    elif isinstance(k, jtu.FlattenedIndexKey):
        name = f"#{k.key}"
    else:
        name = str(k)
    if _SEP in name:
        raise ValueError(f"pytree key {name!r} contains '{_SEP}'")
    return name


def _named_leaves(tree) -> list[tuple[str, str, Any]]:
    """(stored name, keystr for messages, leaf) of every leaf, in ``tree_flatten`` order."""
    import jax.tree_util as jtu
    out, seen = [], {}
    for path, leaf in jtu.tree_flatten_with_path(tree)[0]:
        name = _SEP.join(_key_name(k) for k in path)
        shown = jtu.keystr(path) or "<root>"
        if name in seen:   # e.g. {0: a, "0": b}: two paths, one file name
            raise ValueError(f"pytree paths {seen[name]} and {shown} would both be stored as {name!r}")
        seen[name] = shown
        out.append((name, shown, leaf))
    return out


def _unflatten(flat: Mapping[str, np.ndarray]):
    root: dict = {}
    for key, v in flat.items():
        parts = key.split(_SEP)
        node = root
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v

    def fix(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.startswith("#") and k[1:].isdigit() for k in node):
            # positions without array leaves (None, empty containers) were not stored: None there
            return [fix(node[f"#{i}"]) if f"#{i}" in node else None
                    for i in range(1 + max(int(k[1:]) for k in node))]
        return {k: fix(v) for k, v in node.items()}
    return fix(root)


def save_pytree(tree, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> None:
    """Any JAX pytree of arrays -> one safetensors file, written atomically (no pickle).

    Leaves are stored under their key-path names; the header keeps ``metadata`` (JSON-able) and, for
    the check in ``load_pytree(like=)``, every leaf's key path, shape and dtype and the tree structure.
    """
    import jax
    from safetensors.numpy import save_file
    path = Path(path)
    named = _named_leaves(tree)
    # np.asarray(order="C"), not np.ascontiguousarray, which turns a 0-d leaf (optax's count) into shape (1,)
    flat = {name: np.asarray(leaf, order="C") for name, _, leaf in named}
    layout = {"format": _FORMAT, "treedef": str(jax.tree_util.tree_structure(tree)),
              "leaves": [[name, shown, list(flat[name].shape), str(flat[name].dtype)] for name, shown, _ in named]}
    tmp = path.with_name(path.name + ".tmp")
    save_file(flat, str(tmp), metadata={"json": json.dumps(metadata or {}), "pytree": json.dumps(layout)})
    os.replace(tmp, path)


def _leaf_shape_dtype(leaf) -> tuple[tuple, np.dtype]:
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):   # arrays, jax.ShapeDtypeStruct
        return tuple(leaf.shape), np.dtype(leaf.dtype)
    a = np.asarray(leaf)
    return a.shape, a.dtype


def load_pytree(path: str | os.PathLike, like=None, as_jax: bool = True):
    """The pytree saved by ``save_pytree``, as jax arrays (or numpy with ``as_jax=False``).

    ``like``: a template pytree (arrays or ``jax.ShapeDtypeStruct`` leaves, e.g. ``optax.adam(1e-3).init
    (params)`` or ``jax.eval_shape`` of it). The file is restored into the template's exact structure:
    namedtuples, tuples, int dict keys, empty dicts and None come back as they were. A file whose leaves
    do not match the template's (key path, shape, dtype) raises ``ValueError`` naming the file and the
    first mismatch. Without ``like`` the result is nested dicts/lists (dict keys as strings), which is
    also how files written before key paths were stored load.
    """
    from safetensors.numpy import load_file
    flat = load_file(str(path))
    if like is None:
        tree = _unflatten(flat)
    else:
        import jax
        named = _named_leaves(like)
        leaves = []
        for name, shown, leaf in named:
            if name not in flat:
                raise ValueError(f"{path}: the template's leaf {shown} (stored name {name!r}) is not in the file; "
                                 f"the file holds {sorted(flat)[:8]}{' ...' if len(flat) > 8 else ''}")
            shape, dtype = _leaf_shape_dtype(leaf)
            got = flat[name]
            if got.shape != shape or got.dtype != dtype:
                raise ValueError(f"{path}: leaf {shown} is {got.dtype}{list(got.shape)} in the file, "
                                 f"the template expects {dtype}{list(shape)}")
            leaves.append(got)
        extra = sorted(set(flat) - {name for name, _, _ in named})
        if extra:
            raise ValueError(f"{path}: the file holds {len(extra)} leaves the template lacks, first {extra[0]!r}")
        tree = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), leaves)
    if as_jax:
        import jax
        import jax.numpy as jnp
        tree = jax.tree_util.tree_map(jnp.asarray, tree)
    return tree


def load_pytree_metadata(path: str | os.PathLike) -> dict:
    """The ``metadata`` given to ``save_pytree``."""
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    return json.loads(meta.get("json", "{}"))
