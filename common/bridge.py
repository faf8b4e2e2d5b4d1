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
_SEP = "/"


def _flatten(tree, prefix=""):
    out = {}
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            if _SEP in str(k):
                raise ValueError(f"pytree key {k!r} contains '{_SEP}'")
            out.update(_flatten(v, f"{prefix}{k}{_SEP}"))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(_flatten(v, f"{prefix}#{i}{_SEP}"))
    else:
        out[prefix[:-1]] = np.asarray(tree)
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
        if node and all(k.startswith("#") for k in node):
            return [fix(node[f"#{i}"]) for i in range(len(node))]
        return {k: fix(v) for k, v in node.items()}
    return fix(root)


def save_pytree(tree, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> None:
    """Nested dicts / lists of arrays -> one safetensors file, written atomically.
    ``metadata`` (JSON-able) is stored in the file's header."""
    from safetensors.numpy import save_file
    path = Path(path)
    flat = {k: np.ascontiguousarray(v) for k, v in _flatten(tree).items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(flat, str(tmp), metadata={"json": json.dumps(metadata or {})})
    os.replace(tmp, path)


def load_pytree(path: str | os.PathLike, as_jax: bool = True):
    """The pytree saved by ``save_pytree`` (nested dicts/lists), as jax arrays (or numpy)."""
    from safetensors.numpy import load_file
    flat = load_file(str(path))
    tree = _unflatten(flat)
    if as_jax:
        import jax
        import jax.numpy as jnp
        tree = jax.tree_util.tree_map(jnp.asarray, tree)
    return tree


def load_pytree_metadata(path: str | os.PathLike) -> dict:
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    return json.loads(meta.get("json", "{}"))
