"""The one trainer for torch models: CPU, one GPU, or N GPUs / N nodes through torchrun.

    result = fit(model, (x, y), TrainConfig(epochs=3), work_dir="results/_work/foo")

What it does, and why:
- Device chosen automatically (``cfg.device="auto"``); on CUDA bf16 autocast and channels_last,
  because that is where the throughput is (see bench/trainer.py); optional ``torch.compile``.
- Data given as a tuple of tensors is held on the device and indexed per step (no DataLoader:
  small datasets are faster that way). A torch ``Dataset`` goes through a DataLoader instead.
- The batch order of epoch e is a permutation drawn from (seed, e) alone, so a run resumed at any
  step sees exactly the batches an uninterrupted run would. Under DDP each rank takes its slice of
  the same global batch, so N processes compute the same update as one process on that batch.
- Checkpoints every ``ckpt_every`` steps, atomically: ``model.safetensors`` + ``optim.safetensors``
  + ``state.json`` (step, optimizer/scheduler state, RNG states, metrics) written into a temporary
  folder that then replaces the last one. A rerun with the same ``work_dir`` resumes from it; a
  finished run is loaded, not retrained. Nothing is unpickled on load.
- A non-finite loss stops the run with ``NonFiniteLossError``; the last good checkpoint stays.
  Ctrl-C raises ``RunInterrupted`` naming the step a rerun resumes from; an unreadable checkpoint
  raises ``CheckpointError`` naming the folder to delete; a full disk keeps the previous checkpoint.
- Metrics go to ``metrics.jsonl``; progress (common.progress) is a bar with loss and images/s on a
  terminal, one line per epoch in a log file.
- Hooks: ``augment`` (on-device, seeded per step: e.g. ``random_crop_flip()``), periodic evaluation
  on a held-out split (``eval_data``), ``multi_head_step`` for weighted sums of per-head losses.
  ``predict`` and the default evaluation split their inputs across DDP ranks.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from common.config import TrainConfig  # noqa: F401  (defined torch-free, re-exported here)
from common.checkpoint import (UnsafeCheckpointError, checkpoint_step, latest_checkpoint_dir, load_weights,
                               save_state_dict, write_checkpoint_dir)
from common.errors import CheckpointError, NonFiniteLossError, RunInterrupted  # noqa: F401 (re-exported)
from common.progress import progress


@dataclasses.dataclass
class FitResult:
    model: nn.Module
    steps: int
    epochs: int
    resumed_from: int          # step the run resumed from (0 = fresh, total steps = loaded finished run)
    history: list[dict]
    wall_s: float
    device: str


# --------------------------------------------------------------------------------------------------
# Distributed / device helpers
# --------------------------------------------------------------------------------------------------
def dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def pick_device(name: str = "auto") -> torch.device:
    """The run's torch device: the same rule as JAX's (common.devices.resolve_device), without
    asking JAX anything (a torch-only run must not initialise JAX's GPU backend)."""
    from common.devices import resolve_device
    return resolve_device(name, local_rank=dist_info()[2], for_jax=False).torch_device


def _init_distributed(device: torch.device) -> bool:
    rank, world, local = dist_info()
    if world <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(local)
    return True


def seed_everything(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    while True:
        if hasattr(model, "module"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones once); ``trainable_only`` counts those with requires_grad."""
    return sum(p.numel() for p in unwrap(model).parameters() if p.requires_grad or not trainable_only)


def _distributed_world() -> tuple[int, int]:
    """(rank, world) of an initialised process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _shard(n: int, rank: int, world: int) -> slice:
    """Rank's contiguous share of n items; the shares are in rank order and differ by at most one."""
    return slice(rank * n // world, (rank + 1) * n // world)


# --------------------------------------------------------------------------------------------------
# Optimiser / schedule
# --------------------------------------------------------------------------------------------------
def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    name = cfg.optimizer.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamax":
        return torch.optim.Adamax(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}' (sgd, adam, adamw, adamax)")


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr at ``step`` (a pure function of the step, so resuming needs no state).

    onecycle: 0 at step 0, 1 at ``peak = int(warmup_frac * total)`` (at least 1), 0 at ``total``.
    """
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    if cfg.schedule == "onecycle":  # triangular: linear up to the peak, linear down to 0
        peak = max(1, int(cfg.warmup_frac * total))
        return step / peak if step < peak else max(0.0, (total - step) / max(total - peak, 1))
    raise ValueError(f"unknown schedule '{cfg.schedule}' (constant, cosine, onecycle)")


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------
def _rng_state() -> dict:
    st = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        st["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(torch.from_numpy(np.frombuffer(base64.b64decode(st["torch"]), dtype=np.uint8).copy()))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())
                                      for s in st["cuda"]])


def _optim_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, pstate in sd["state"].items():
        meta["state"][str(pid)] = {}
        for k, v in pstate.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
                meta["state"][str(pid)][k] = "__tensor__"
            else:
                meta["state"][str(pid)][k] = v
    return tensors, meta


def _optim_from_flat(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state = {}
    for pid, pstate in meta["state"].items():
        state[int(pid)] = {k: (tensors[f"{pid}.{k}"] if v == "__tensor__" else v) for k, v in pstate.items()}
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _ckpt_dir(work_dir: Path) -> Path | None:
    return latest_checkpoint_dir(work_dir, required=("model.safetensors",))


def save_checkpoint(work_dir: Path, model: nn.Module, opt, state: dict) -> None:
    otensors, ometa = _optim_to_flat(opt)

    def write(tmp: Path):
        save_state_dict(unwrap(model).state_dict(), tmp / "model.safetensors")
        save_state_dict(otensors, tmp / "optim.safetensors")

    write_checkpoint_dir(work_dir, write, dict(state, optimizer=ometa, rng=_rng_state()))


def load_checkpoint(work_dir: Path, model: nn.Module, opt=None) -> dict | None:
    """Load the last checkpoint of ``work_dir`` into model (and optimiser); its state, or None if none.

    Anything unreadable (truncated file, garbage JSON, weights of another architecture) raises
    ``CheckpointError`` naming the folder and the fix, instead of a traceback from deep inside.
    """
    work_dir = Path(work_dir)
    d = _ckpt_dir(work_dir)
    if d is None:
        return None
    try:
        state = json.loads((d / "state.json").read_text())
        int(state["step"])
        unwrap(model).load_state_dict(load_weights(d / "model.safetensors"))
        if opt is not None:
            _optim_from_flat(opt, load_weights(d / "optim.safetensors"), state["optimizer"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        # a refused pickle keeps its own type (still a CheckpointError) so callers can tell it apart
        cls = UnsafeCheckpointError if isinstance(e, UnsafeCheckpointError) else CheckpointError
        raise cls(f"checkpoint {d} cannot be loaded ({type(e).__name__}: {e}). "
                  f"Delete {work_dir} to retrain.") from e
    return state


# --------------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------------
def classification_step(model: nn.Module, batch: Sequence[torch.Tensor]):
    """Default step: ``model(*inputs)`` against the last tensor (labels); returns (loss, metrics)."""
    *inputs, y = batch
    logits = model(*inputs)
    loss = F.cross_entropy(logits.float(), y)
    acc = (logits.argmax(1) == y).float().mean()
    return loss, {"acc": acc}


def multi_head_step(weights: Sequence[float], target_maps: Sequence[torch.Tensor | None] | None = None,
                    names: Sequence[str] | None = None) -> Callable:
    """Step for a model returning one logits tensor per head: L = sum_k weights[k] * CE(head_k, t_k).

    (Thesis Eq 7.4.) ``t_k`` is the label ``y``, or ``target_maps[k][y]`` when head k predicts
    something derived from the label (SSAL's branches predict its group). Logs ``<name>_loss`` and
    ``<name>_acc`` per head (names default to ``head0``, ``head1``, ...) beside the weighted ``loss``.
    """
    weights = [float(w) for w in weights]
    maps = list(target_maps) if target_maps is not None else [None] * len(weights)
    names = list(names) if names is not None else [f"head{k}" for k in range(len(weights))]
    if not len(maps) == len(names) == len(weights):
        raise ValueError(f"multi_head_step: {len(weights)} weights, {len(maps)} target maps, {len(names)} names")
    on_device: dict = {}   # the label maps, moved once to the batch's device

    def step(model: nn.Module, batch: Sequence[torch.Tensor]):
        *inputs, y = batch
        heads = model(*inputs)
        if not isinstance(heads, (tuple, list)) or len(heads) != len(weights):
            got = f"{len(heads)} heads" if isinstance(heads, (tuple, list)) else f"a {type(heads).__name__}"
            raise ValueError(f"multi_head_step({weights}) expects the model to return {len(weights)} logits "
                             f"tensors (a tuple or list), got {got}")
        if y.device not in on_device:
            on_device[y.device] = [None if m is None else torch.as_tensor(m, dtype=torch.long).to(y.device)
                                   for m in maps]
        loss, metrics = 0.0, {}
        for w, logits, m, name in zip(weights, heads, on_device[y.device], names):
            t = y if m is None else m[y]
            head_loss = F.cross_entropy(logits.float(), t)
            loss = loss + w * head_loss
            metrics[f"{name}_loss"] = head_loss
            metrics[f"{name}_acc"] = (logits.argmax(1) == t).float().mean()
        return loss, metrics

    return step


def random_crop_flip(padding: int = 4) -> Callable:
    """CIFAR augmentation for ``fit(augment=...)``: zero-pad the images (the batch's first tensor,
    NCHW) by ``padding``, crop back to the original size at a random offset, flip horizontally with
    probability 1/2. One gather for the whole batch, on the batch's device; other tensors untouched."""

    def augment(batch: Sequence[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
        x, *rest = batch
        n, c, h, w = x.shape
        dev = x.device
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=generator)
        flip = torch.randint(0, 2, (n,), device=dev, generator=generator).bool()
        rows = dy[:, None] + torch.arange(h, device=dev)                    # (n, h) rows of `padded`
        cols = dx[:, None] + torch.arange(w, device=dev)                    # (n, w) columns of `padded`
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        out = padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                     rows[:, None, :, None], cols[:, None, None, :]]
        return [out, *rest]

    return augment


def _augment_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The generator ``augment`` draws from at ``step``: a function of (seed, step, rank) only, so a
    resumed run augments exactly as an uninterrupted one, and each DDP rank draws differently."""
    mixed = int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0]) >> 1
    return torch.Generator(device=device).manual_seed(mixed)


def _to_device(batch, device):
    return [t.to(device, non_blocking=True) for t in batch]


def _channels_last(batch):
    return [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 and t.is_floating_point() else t
            for t in batch]


class _TensorBatches:
    """Per-epoch seeded permutation over on-device tensors; each DDP rank takes its slice."""

    def __init__(self, tensors, batch_size, seed, rank, world, device):
        self.tensors = [t.to(device) for t in tensors]
        self.n = len(self.tensors[0])
        if any(len(t) != self.n for t in self.tensors):
            raise ValueError("all training tensors must have the same first dimension")
        self.bs = min(batch_size, self.n)
        if self.bs % world:
            raise ValueError(f"batch size {self.bs} is not divisible by the {world} DDP processes")
        self.seed, self.rank, self.world = seed, rank, world
        self.steps_per_epoch = max(1, self.n // self.bs)   # drop the ragged last batch
        self.images = self.bs

    def batches(self, epoch: int, start: int):
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.n, generator=g).to(self.tensors[0].device)
        local = self.bs // self.world
        for s in range(start, self.steps_per_epoch):
            idx = perm[s * self.bs:(s + 1) * self.bs][self.rank * local:(self.rank + 1) * local]
            yield [t[idx] for t in self.tensors]


class _LoaderBatches:
    """A torch Dataset through a DataLoader with a DistributedSampler-style seeded order."""

    def __init__(self, dataset, batch_size, seed, rank, world, num_workers=4):
        from torch.utils.data import DataLoader, DistributedSampler
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by the {world} DDP processes")
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.loader = DataLoader(dataset, batch_size=batch_size // world, sampler=self.sampler, drop_last=True,
                                 num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                                 persistent_workers=num_workers > 0)
        self.steps_per_epoch = max(1, len(self.loader))
        self.images = batch_size

    def batches(self, epoch: int, start: int):
        self.sampler.set_epoch(epoch)
        for s, batch in enumerate(self.loader):
            if s >= start:
                yield list(batch)


# --------------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------------
def fit(model: nn.Module, train, cfg: TrainConfig, work_dir: str | os.PathLike, *,
        step_fn: Callable = classification_step,
        params: Sequence[nn.Parameter] | None = None,
        desc: str = "train",
        augment: Callable | None = None,
        eval_data: Sequence[torch.Tensor] | None = None,
        eval_every: int | None = None,
        eval_fn: Callable | None = None) -> FitResult:
    """Train ``model`` on ``train`` (tuple of tensors, or a torch Dataset); resume from ``work_dir``.

    ``step_fn(model, batch) -> (loss, {name: scalar tensor})`` defines the objective; ``params``
    restricts what the optimiser updates (the rest stays frozen).
    ``augment(batch, generator) -> batch`` transforms each training batch on the device, drawing
    only from ``generator`` (seeded per step and rank: see ``_augment_generator``).
    ``eval_data`` (tuple of tensors) is evaluated every ``eval_every`` steps (0: only at the end)
    and at the end, by ``eval_fn(model, eval_data) -> {name: float}`` (default: ``evaluate`` with
    ``step_fn``), with the model in eval mode and the RNG untouched; the numbers go into the
    history and metrics.jsonl as ``eval_<name>``.
    """
    eval_every = cfg.eval_every if eval_every is None else eval_every
    if eval_data is None and (eval_fn is not None or eval_every):
        raise ValueError("eval_fn / eval_every given without eval_data: pass the held-out tensors as eval_data")
    t0 = time.time()
    work_dir = Path(work_dir)
    device = pick_device(cfg.device)
    distributed = _init_distributed(device)
    rank, world, _ = dist_info() if distributed else (0, 1, 0)
    is_main = rank == 0
    use_amp = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    use_cl = cfg.channels_last == "on" or (cfg.channels_last == "auto" and device.type == "cuda")
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    seed_everything(cfg.seed + rank)
    model = model.to(device)
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    trainable = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(trainable, cfg)

    if isinstance(train, (tuple, list)):
        data = _TensorBatches(train, cfg.batch_size, cfg.seed, rank, world, device)
    else:
        data = _LoaderBatches(train, cfg.batch_size, cfg.seed, rank, world, cfg.num_workers)
    total = cfg.epochs * data.steps_per_epoch
    if eval_data is not None and eval_fn is None:
        def eval_fn(m, d):
            return evaluate(m, d, step_fn=step_fn, batch_size=cfg.batch_size, device=device, amp=use_amp,
                            channels_last=use_cl)

    state = load_checkpoint(work_dir, model, opt)
    step = state["step"] if state else 0
    history: list[dict] = state.get("history", []) if state else []
    if state:
        # each DDP rank draws its own dropout masks: restore the rank's own generator state
        _set_rng_state(state.get("rng_ranks", [state["rng"]] * world)[rank] if distributed else state["rng"])
        if state.get("done") and step >= total:
            return FitResult(model.eval(), step, cfg.epochs, step, history, time.time() - t0, str(device))
    resumed_from = step
    if is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        _truncate_log(work_dir / "metrics.jsonl", step)

    net = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    net.train()

    bar = progress(desc=desc, total=total, initial=step, unit="step", enabled=is_main and cfg.progress, leave=False)
    # per-step values since the last log line; a checkpoint carries them, so that the first log line
    # after a resume averages the same steps as in an uninterrupted run
    running: dict[str, list] = {k: [torch.tensor(v, device=device) for v in vs]
                                for k, vs in (state or {}).get("running", {}).items()}
    window_t, window_imgs = time.time(), 0

    def checkpoint(done: bool):
        state = {"step": step, "done": done, "history": history, "config": dataclasses.asdict(cfg),
                 "running": {k: [float(v) for v in vs] for k, vs in running.items()}}
        if distributed:  # every rank's RNG state, so that a resumed DDP run replays each rank exactly
            ranks: list = [None] * world
            dist.all_gather_object(ranks, _rng_state())
            state["rng_ranks"] = ranks
        if is_main:
            save_checkpoint(work_dir, model, opt, state)
        if distributed:
            dist.barrier()

    def run_eval() -> dict:
        # fork_rng: an eval_fn that draws random numbers must not change the training that follows
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            model.eval()
            try:
                scores = eval_fn(model, eval_data)
            finally:
                net.train()
        return {f"eval_{k}": float(v) for k, v in scores.items()}

    try:
        while step < total:
            epoch, start = divmod(step, data.steps_per_epoch)
            for batch in data.batches(epoch, start):
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * lr_factor(step, total, cfg)
                batch = _to_device(batch, device)
                if augment is not None:
                    batch = augment(batch, _augment_generator(cfg.seed, step, rank, device))
                if use_cl:
                    batch = _channels_last(batch)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss, metrics = step_fn(net, batch)
                if not torch.isfinite(loss.detach()).all():
                    last = _ckpt_dir(work_dir)
                    raise NonFiniteLossError(
                        f"loss became {loss.item()} at step {step} (epoch {epoch}) of '{desc}'; stopped. "
                        f"Last good checkpoint kept: {last if last else 'none yet'}. "
                        f"Lower the learning rate or check the data.")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                opt.step()
                step += 1
                window_imgs += data.images
                running.setdefault("loss", []).append(loss.detach())
                for k, v in metrics.items():
                    running.setdefault(k, []).append(v.detach())

                # one record per step at most: training metrics when a log is due, eval ones when due
                rec = {}
                if step % cfg.log_every == 0 or step == total:
                    rec["lr"] = opt.param_groups[0]["lr"]
                    rec.update({k: float(torch.stack(v).float().mean()) for k, v in running.items()})
                    rec["img_s"] = window_imgs / max(time.time() - window_t, 1e-9)
                    window_t, window_imgs, running = time.time(), 0, {}
                if eval_data is not None and ((eval_every and step % eval_every == 0) or step == total):
                    rec.update(run_eval())
                if rec:
                    rec = {"step": step, "epoch": step / data.steps_per_epoch, **rec}
                    history.append(rec)
                    if is_main:
                        with open(work_dir / "metrics.jsonl", "a") as f:
                            f.write(json.dumps(rec) + "\n")
                        if "loss" in rec:
                            bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{rec['img_s']:.0f}")
                bar.update(1)
                if step % data.steps_per_epoch == 0:
                    bar.epoch_done(step // data.steps_per_epoch, cfg.epochs)
                if step % cfg.ckpt_every == 0 and step < total:
                    checkpoint(done=False)
        checkpoint(done=True)
    except KeyboardInterrupt as e:
        if isinstance(e, RunInterrupted):   # from a nested fit: its message is already the right one
            raise
        raise _interrupted(work_dir, step, desc) from None
    finally:
        bar.close()
    model.eval()
    return FitResult(model, step, cfg.epochs, resumed_from, history, time.time() - t0, str(device))


def _interrupted(work_dir: Path, step: int, desc: str) -> RunInterrupted:
    """The Ctrl-C message: the step a rerun resumes from is read from disk, so it is the last
    *complete* checkpoint even if the interrupt landed while one was being written."""
    last = _ckpt_dir(work_dir)
    resume_step = (checkpoint_step(last) if last is not None else None) or 0
    where = f"from step {resume_step}" if resume_step else "from step 0 (no checkpoint was written yet)"
    return RunInterrupted(f"'{desc}' interrupted at step {step}; work folder {work_dir}. "
                          f"Rerun the same command to resume {where}.")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be written again).

    A kill while a line was being appended leaves a cut last line: it is dropped with a note (every
    line after the checkpoint is rewritten anyway). A bad line anywhere else is not a kill's doing:
    a ``CheckpointError`` names the file and the fix."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    keep = []
    for i, ln in enumerate(lines):
        try:
            rec_step = json.loads(ln)["step"]
        except (ValueError, KeyError, TypeError) as e:
            if i == len(lines) - 1:
                print(f"note: dropped the cut last line of {path} (a run stopped while writing it); "
                      f"resuming from step {step} rewrites it", file=sys.stderr)
                break
            raise CheckpointError(f"{path} line {i + 1} is not a metrics record ({type(e).__name__}: {e}). "
                                  f"Delete {path.parent} to retrain.") from e
        if rec_step <= step:
            keep.append(ln)
    path.write_text("".join(ln + "\n" for ln in keep))


# --------------------------------------------------------------------------------------------------
# Inference helpers (each DDP rank takes a contiguous shard; the results are gathered in order)
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, data: Sequence[torch.Tensor], step_fn: Callable = classification_step,
             batch_size: int = 512, device: str | torch.device = "auto", amp: bool | None = None,
             channels_last: bool = False) -> dict[str, float]:
    """The means of ``step_fn``'s loss and metrics over ``data`` (tuple of tensors, labels last).

    Batch means are weighted by batch size, so the result is the mean over all samples. Under DDP
    each rank evaluates its shard and the sums are all-reduced: every rank gets the same numbers.
    The caller sets train/eval mode (``fit`` puts the model in eval mode around this).
    """
    device = pick_device(device) if isinstance(device, str) else device
    use_amp = device.type == "cuda" if amp is None else amp
    rank, world = _distributed_world()
    n = len(data[0])
    if world > 1 and n < world:
        raise ValueError(f"evaluation set of {n} samples is smaller than the {world} DDP processes")
    shard = _shard(n, rank, world)
    sums: dict[str, torch.Tensor] = {}
    for i in range(shard.start, shard.stop, batch_size):
        batch = _to_device([t[i:min(i + batch_size, shard.stop)] for t in data], device)
        if channels_last:
            batch = _channels_last(batch)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, metrics = step_fn(model, batch)
        rows = len(batch[0])
        for k, v in {"loss": loss, **metrics}.items():
            sums[k] = sums.get(k, 0.0) + v.detach().double() * rows
    names = sorted(sums)
    totals = torch.stack([sums[k] for k in names])
    if world > 1:
        comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
        totals = totals.to(comm)
        dist.all_reduce(totals)
    return {k: float(v) / n for k, v in zip(names, totals.cpu())}


@torch.no_grad()
def predict(model: nn.Module, inputs: Sequence[torch.Tensor], batch_size: int = 512,
            device: str | torch.device = "auto", shard: bool | None = None):
    """Concatenated float32 outputs of ``model(*inputs)`` over batches (eval mode, on CPU after).

    A model returning a tuple of tensors (several heads) gives a tuple of concatenated outputs.
    Under DDP (``shard=None``: whenever a process group is initialised) each rank predicts its
    contiguous shard and every rank receives all outputs, in input order; every rank must call it.
    ``shard=False`` predicts everything in this process alone.
    """
    device = pick_device(device) if isinstance(device, str) else device
    # the plain module: a DDP wrapper would broadcast buffers in each forward, and the ranks' shards
    # may need different numbers of forwards
    model = unwrap(model).to(device).eval()
    use_amp = device.type == "cuda"
    rank, world = _distributed_world() if shard is not False else (0, 1)
    n = len(inputs[0])
    if n < world:   # too few rows to give each rank one: not worth a collective
        rank, world = 0, 1
    part = _shard(n, rank, world)
    outs, multi = [], False
    for i in range(part.start, part.stop, batch_size):
        chunk = [t[i:min(i + batch_size, part.stop)].to(device) for t in inputs]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = model(*chunk)
        multi = isinstance(out, (tuple, list))
        outs.append(tuple(o.float() for o in out) if multi else (out.float(),))
    columns = [torch.cat(parts) for parts in zip(*outs)]
    if world > 1:
        counts = [_shard(n, r, world).stop - _shard(n, r, world).start for r in range(world)]
        comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
        columns = [_gather_rows(c.to(comm), counts) for c in columns]
    columns = [c.cpu() for c in columns]
    return tuple(columns) if multi else columns[0]


def _gather_rows(local: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """All ranks' row blocks (sizes ``counts``, in rank order) concatenated, on every rank."""
    padded = local.new_zeros((max(counts), *local.shape[1:]))
    padded[:len(local)] = local
    blocks = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(blocks, padded)
    return torch.cat([b[:c] for b, c in zip(blocks, counts)])


def accuracy(logits: torch.Tensor, y: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy in percent."""
    topk = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((topk == y[:, None]).any(1).float().mean() * 100.0)
