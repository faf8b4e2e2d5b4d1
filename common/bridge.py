"""torch <-> JAX: zero-copy array exchange, torch functions inside JAX (custom VJP), JAX functions
inside torch autograd, and JAX pytrees saved as safetensors (no pickle).

    f = torch_as_jax(classifier)          # JAX function; jax.grad / jax.vjp / jit / vmap flow into torch
    g = jax_as_torch(jax_fn)              # torch callable of pytrees of tensors; .backward() flows into JAX
    save_pytree(opt_state, "o.safetensors"); opt_state = load_pytree("o.safetensors", like=opt.init(params))

Arrays cross by DLPack (zero-copy on CPU and on GPU when both sides live on the same device).
A torch tensor that requires grad is detached before export. x64 stays off in JAX (the project
default): float64 is converted to float32 explicitly, never silently.

Two call paths for ``torch_as_jax``:
- eager (concrete ``jax.Array`` inputs, including under ``jax.vjp`` outside ``jit``): the torch
  function runs directly on the DLPack views, no host copy;
- traced (inside ``jax.jit`` or ``jax.vmap``): ``jax.pure_callback``, which hands host arrays to torch
  (a copy when JAX or torch runs on a GPU). Use the eager path where speed matters (capacity/training.py
  splits its step into a jitted JAX part, the torch part, and a jitted JAX update, so that nothing is copied).

Host copies are never silent: every array that crosses through host memory because a device is
involved (DLPack refused, a callback on a GPU run, a move between CPU JAX and CUDA torch) is counted
(``host_copy_count()``), and the first such copy of a CUDA tensor warns once per process with the fix.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np


# --------------------------------------------------------------------------------------------------
# Host copies
# --------------------------------------------------------------------------------------------------
_host_copies = 0
_warned_host_copy: set[str] = set()


def host_copy_count() -> int:
    """Arrays copied through host memory by this module so far in this process, where a GPU was
    involved or DLPack refused the exchange (zero on a CPU-only run that stays zero-copy)."""
    return _host_copies


def _note_host_copy(n: int, on_gpu: bool, reason: str, fix: str) -> None:
    global _host_copies
    _host_copies += n
    if on_gpu and reason not in _warned_host_copy:
        _warned_host_copy.add(reason)
        warnings.warn(f"common.bridge: {reason}; {_host_copies} host copies so far in this process "
                      f"(common.bridge.host_copy_count()). Fix: {fix}", RuntimeWarning, stacklevel=3)


def _cuda_fix() -> str:
    from common.devices import CUDA_FIX
    return f"install JAX with CUDA so that DLPack stays on the GPU: {CUDA_FIX}"


def _on_gpu(t) -> bool:
    """Whether a torch tensor lives on a GPU (a function so that tests on CPU can pretend)."""
    return t.device.type == "cuda"


def _jax_on_gpu() -> bool:
    """Whether JAX computes on a GPU, so that a ``pure_callback`` copies its operands to the host."""
    import jax
    return jax.default_backend() not in ("cpu",)


# --------------------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------------------
def torch_to_jax(t):
    """A torch tensor as a jax.Array, by DLPack (zero-copy where the device allows).

    Where DLPack refuses (torch on GPU with a CPU-only JAX, an exotic dtype) the tensor is copied
    through host memory: counted in ``host_copy_count()``, and warned about once for CUDA tensors."""
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
        _note_host_copy(1, _on_gpu(t), "a CUDA tensor was copied to JAX through host memory (DLPack "
                        "refused it: JAX has no GPU backend here)", _cuda_fix())
        return jax.numpy.asarray(t.cpu().numpy())


def jax_to_torch(a, device=None):
    """A jax.Array as a torch tensor, by DLPack (zero-copy); ``device`` moves it afterwards (a move
    between the CPU and a GPU copies through host memory and is counted as such)."""
    import torch
    a = _as_jax(a)
    t = torch.from_dlpack(a)
    return t if device is None else _move(t, torch.device(device))


def _move(t, device):
    """``t.to(device)``, counting a CPU <-> GPU move as a host copy."""
    if t.device == device:
        return t
    if t.device.type != device.type:
        moved = t.to(device)
        _note_host_copy(1, _on_gpu(t) or _on_gpu(moved), "an array moved between JAX on the CPU and torch "
                        "on a GPU through host memory", _cuda_fix())
        return moved
    return t.to(device)


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
def _host_to_torch(x):
    """A callback operand (a host jax.Array, or numpy on older JAX) as a torch tensor, zero-copy."""
    import jax
    import torch
    if isinstance(x, jax.Array):
        return torch.from_dlpack(x)
    return torch.from_numpy(np.array(x))   # a writable copy: torch refuses read-only numpy views


def _on_callback_batch(run: Callable, xs, in_shapes, out_shapes) -> list:
    """Apply ``run`` (list of torch tensors -> list of torch tensors) to callback operands ``xs``.

    Under ``jax.vmap`` (``vmap_method="broadcast_all"``) every operand arrives with the same extra
    leading axes in front of its unbatched shape (``in_shapes``). When all unbatched inputs and outputs
    share a leading batch axis B, the extra axes are folded into it: one torch call on a batch of
    prod(extra) * B rows, then unfolded. That is exact for a row-wise (batch-independent) torch
    function, e.g. a network in eval mode. Otherwise each vmapped element is run on its own.
    """
    ts = [_host_to_torch(x) for x in xs]
    extra = ts[0].ndim - len(in_shapes[0])
    if extra == 0:
        return run(ts)
    lead = tuple(ts[0].shape[:extra])
    shapes = list(in_shapes) + list(out_shapes)
    if all(len(s) >= 1 for s in shapes) and len({s[0] for s in shapes}) == 1:
        n = math.prod(lead)
        outs = run([t.reshape((n * s[0],) + tuple(s[1:])) for t, s in zip(ts, in_shapes)])
        return [o.reshape(lead + tuple(s)) for o, s in zip(outs, out_shapes)]
    import torch
    per = [run([t[idx] for t in ts]) for idx in np.ndindex(*lead)]
    return [torch.stack([p[k] for p in per]).reshape(lead + tuple(s)) for k, s in enumerate(out_shapes)]


def torch_as_jax(fn: Callable, device=None) -> Callable:
    """Wrap ``fn`` (torch tensors -> one torch tensor, e.g. an ``nn.Module`` in eval mode) as a JAX
    function of the same arrays, differentiable by a custom VJP that calls torch autograd.

    Gradients are taken w.r.t. every floating input. ``device``: where torch runs (default: where
    DLPack puts the arrays). Parameters of ``fn`` receive no gradient (they are frozen).

    Works eagerly, under ``jax.jit``, ``jax.vmap`` (also inside ``lax.while_loop`` / ``lax.scan``) and
    ``jax.grad`` in any nesting. Under ``vmap`` the torch function is NOT called once per vmapped
    element: the callback receives the batched arrays (``vmap_method="broadcast_all"``), the vmapped
    axes are folded into ``fn``'s own leading batch axis, and ``fn`` runs once on the whole batch.
    This is exact only if ``fn`` is batch-independent: row i of its output depends on row i of its
    inputs alone (eval mode: no BatchNorm batch statistics, no dropout). It requires every input and
    the output to share the leading batch axis; if they do not (a scalar argument, an output reduced
    over the batch), the vmapped elements are run one after another instead.
    """
    import jax
    import jax.numpy as jnp
    import torch

    shape_cache: dict = {}
    torch_device = None if device is None else torch.device(device)

    def place(t):
        return t if torch_device is None else _move(t, torch_device)

    def run_fwd(ts):
        if isinstance(fn, torch.nn.Module) and fn.training and ts and ts[0].ndim > 0:
            _warn_training(fn)
        with torch.no_grad():
            y = fn(*[place(t) for t in ts])
        return [y.detach().float() if y.is_floating_point() else y.detach()]

    def run_bwd(ts_and_g):
        g, *xs = ts_and_g
        ts = [place(t).detach().clone().requires_grad_(t.is_floating_point()) for t in xs]
        with torch.enable_grad():
            y = fn(*ts)
            need = [t for t in ts if t.requires_grad]
            grads = torch.autograd.grad(y.float(), need, grad_outputs=g.to(y.device, torch.float32),
                                        allow_unused=True) if need else ()
        it = iter(grads)
        out = []
        for t in ts:
            gi = next(it) if t.requires_grad else None
            out.append(torch.zeros_like(t) if gi is None else gi.detach())
        return out

    def out_spec(arrs):
        key = tuple((a.shape, str(a.dtype)) for a in arrs)
        if key not in shape_cache:
            zs = [place(torch.zeros(a.shape, dtype=getattr(torch, str(a.dtype)))) for a in arrs]
            with torch.no_grad():
                y = fn(*zs)
            dt = jnp.float32 if y.is_floating_point() else getattr(jnp, str(y.dtype).replace("torch.", ""))
            shape_cache[key] = jax.ShapeDtypeStruct(tuple(y.shape), dt)
        return shape_cache[key]

    def count_callback_copies(n_arrays):
        # a pure_callback brings its operands to the host and its results back: copies on a GPU run
        on_gpu = _jax_on_gpu() or (torch_device is not None and torch_device.type == "cuda")
        if on_gpu:
            _note_host_copy(n_arrays, True, "torch_as_jax under jax.jit/vmap passes arrays to torch through "
                            "jax.pure_callback, i.e. through host memory, on a GPU run",
                            "call the wrapped function outside jax.jit/vmap (eager DLPack path, zero-copy); "
                            "if JAX itself runs on the CPU, " + _cuda_fix())

    def to_host(t, dtype):
        return t.detach().cpu().numpy().astype(dtype, copy=False)

    def call(*arrs):
        if all(_is_concrete(a) for a in arrs):
            return torch_to_jax(run_fwd([torch.from_dlpack(a) for a in arrs])[0])
        spec = out_spec(arrs)
        in_shapes = [tuple(a.shape) for a in arrs]

        def host_fwd(*xs):
            count_callback_copies(len(xs) + 1)
            (y,) = _on_callback_batch(run_fwd, xs, in_shapes, [spec.shape])
            return to_host(y, spec.dtype)
        return jax.pure_callback(host_fwd, spec, *arrs, vmap_method="broadcast_all")

    def grad_call(g, *arrs):
        if _is_concrete(g) and all(_is_concrete(a) for a in arrs):
            return tuple(torch_to_jax(t) for t in run_bwd([torch.from_dlpack(g)] +
                                                         [torch.from_dlpack(a) for a in arrs]))
        specs = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrs)
        in_shapes = [tuple(g.shape)] + [tuple(a.shape) for a in arrs]

        def host_bwd(*xs):
            count_callback_copies(2 * len(xs) - 1)
            grads = _on_callback_batch(run_bwd, xs, in_shapes, [s.shape for s in specs])
            return tuple(to_host(t, s.dtype) for t, s in zip(grads, specs))
        return jax.pure_callback(host_bwd, specs, g, *arrs, vmap_method="broadcast_all")

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

    def torch_fn_as_jax(*arrs):
        # concrete inputs: no JAX transformation is tracing them, so no VJP can be asked for; calling
        # the torch function directly skips custom_vjp's per-call dispatch (~150 us on a CPU)
        if all(_is_concrete(a) for a in arrs):
            return call(*arrs)
        return f(*arrs)
    return torch_fn_as_jax


_warned_training: set[int] = set()


def _warn_training(module) -> None:
    if id(module) not in _warned_training:
        _warned_training.add(id(module))
        warnings.warn(f"torch_as_jax: {type(module).__name__} is in training mode; under jax.vmap its batch "
                      "is the union of the vmapped elements, so batch statistics (BatchNorm) and dropout mix "
                      "samples. Call .eval() first.", RuntimeWarning, stacklevel=4)


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
    """Wrap a JAX function as a torch function with autograd.

    Arguments are pytrees (dicts, lists, tuples, ...) whose leaves are torch tensors (numpy arrays are
    taken as tensors; other leaves, e.g. Python numbers, are static and must be hashable). The result
    is ``fn``'s pytree with jax arrays replaced by torch tensors on the device of the first tensor
    argument. ``loss(g(params_dict, x)).backward()`` fills ``.grad`` of every floating tensor leaf that
    requires grad, through ``jax.vjp``; integer/bool outputs are non-differentiable.
    """
    import jax
    import jax.numpy as jnp
    import torch

    def fwd(treedef, static, *arrays):
        def flat_fn(*arrays):
            leaves, it = [], iter(arrays)
            for s in static:
                leaves.append(next(it) if s is _TENSOR else s[0])
            out = fn(*jax.tree_util.tree_unflatten(treedef, leaves))
            floats = [y for y in jax.tree_util.tree_leaves(out) if jnp.issubdtype(y.dtype, jnp.inexact)]
            return floats, out
        _, vjp_fn, out = jax.vjp(flat_fn, *arrays, has_aux=True)
        return out, vjp_fn

    def fwd_no_grad(treedef, static, *arrays):
        leaves, it = [], iter(arrays)
        for s in static:
            leaves.append(next(it) if s is _TENSOR else s[0])
        return fn(*jax.tree_util.tree_unflatten(treedef, leaves))

    fwd_c = jax.jit(fwd, static_argnums=(0, 1)) if jit else fwd
    fwd_no_grad_c = jax.jit(fwd_no_grad, static_argnums=(0, 1)) if jit else fwd_no_grad
    apply_vjp = jax.jit(lambda vjp_fn, g: vjp_fn(g)) if jit else (lambda vjp_fn, g: vjp_fn(g))
    result: dict = {}

    class _Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, treedef, static, *ts):
            devices = [t.device for t in ts]
            out, vjp_fn = fwd_c(treedef, static, *[torch_to_jax(t) for t in ts])
            leaves, result["treedef"] = jax.tree_util.tree_flatten(out)
            dev = devices[0] if devices else None
            outs = [jax_to_torch(y, dev).clone() for y in leaves]
            ctx.float_out = [jnp.issubdtype(y.dtype, jnp.inexact) for y in leaves]
            ctx.out_dtypes = [y.dtype for y in leaves]
            ctx.mark_non_differentiable(*[o for o, fl in zip(outs, ctx.float_out) if not fl])
            ctx.vjp_fn, ctx.devices, ctx.dtypes = vjp_fn, devices, [t.dtype for t in ts]
            return tuple(outs)

        @staticmethod
        def backward(ctx, *gs):   # one gradient per output; returns one per forward argument
            cts = [torch_to_jax(g.contiguous()).astype(dt) for g, fl, dt in zip(gs, ctx.float_out, ctx.out_dtypes)
                   if fl]
            grads = apply_vjp(ctx.vjp_fn, cts)
            return (None, None) + tuple(jax_to_torch(gr, d).to(dt).clone() if dt.is_floating_point else None
                                        for gr, d, dt in zip(grads, ctx.devices, ctx.dtypes))

    def call(*args):
        leaves, treedef = jax.tree_util.tree_flatten(args)
        tensors, static = [], []
        for leaf in leaves:
            if isinstance(leaf, np.ndarray):
                leaf = torch.from_numpy(leaf)
            if torch.is_tensor(leaf):
                tensors.append(leaf)
                static.append(_TENSOR)
            else:
                static.append((leaf,))
        if not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
            # nothing to differentiate: no VJP residuals, no autograd node
            out = fwd_no_grad_c(treedef, tuple(static), *[torch_to_jax(t) for t in tensors])
            dev = tensors[0].device if tensors else None
            return jax.tree_util.tree_map(lambda y: jax_to_torch(y, dev), out)
        outs = _Fn.apply(treedef, tuple(static), *tensors)
        return jax.tree_util.tree_unflatten(result.pop("treedef"), list(outs))

    return call


_TENSOR = "<tensor>"   # marks a tensor leaf's slot in jax_as_torch's static description of the arguments


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
