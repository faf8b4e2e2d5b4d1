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
- Metrics go to ``metrics.jsonl``; tqdm shows loss and images/s.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from common.config import TrainConfig  # noqa: F401  (defined torch-free, re-exported here)
from common.checkpoint import latest_checkpoint_dir, load_weights, save_state_dict, write_checkpoint_dir


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


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
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_info()[2])
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' asked for, but CUDA is not available here")
    return dev


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
    """Multiplier of cfg.lr at ``step`` (a pure function of the step, so resuming needs no state)."""
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
    d = _ckpt_dir(Path(work_dir))
    if d is None:
        return None
    unwrap(model).load_state_dict(load_weights(d / "model.safetensors"))
    state = json.loads((d / "state.json").read_text())
    if opt is not None:
        _optim_from_flat(opt, load_weights(d / "optim.safetensors"), state["optimizer"])
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


def _to_device(batch, device, channels_last: bool):
    out = []
    for t in batch:
        t = t.to(device, non_blocking=True)
        if channels_last and t.dim() == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        out.append(t)
    return out


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
        desc: str = "train") -> FitResult:
    """Train ``model`` on ``train`` (tuple of tensors, or a torch Dataset); resume from ``work_dir``.

    ``step_fn(model, batch) -> (loss, {name: scalar tensor})`` defines the objective; ``params``
    restricts what the optimiser updates (the rest stays frozen).
    """
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

    bar = None
    if is_main and cfg.progress:
        from tqdm.auto import tqdm
        import sys
        # in a log file (not a terminal) one line every 10 s is enough
        bar = tqdm(total=total, initial=step, desc=desc, unit="step", dynamic_ncols=True, leave=False,
                   mininterval=0.1 if sys.stderr.isatty() else 10.0)
    window_t, window_imgs, running = time.time(), 0, {}

    def checkpoint(done: bool):
        state = {"step": step, "done": done, "history": history, "config": dataclasses.asdict(cfg)}
        if distributed:  # every rank's RNG state, so that a resumed DDP run replays each rank exactly
            ranks: list = [None] * world
            dist.all_gather_object(ranks, _rng_state())
            state["rng_ranks"] = ranks
        if is_main:
            save_checkpoint(work_dir, model, opt, state)
        if distributed:
            dist.barrier()

    while step < total:
        epoch, start = divmod(step, data.steps_per_epoch)
        for batch in data.batches(epoch, start):
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(step, total, cfg)
            batch = _to_device(batch, device, use_cl)
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
            if step % cfg.log_every == 0 or step == total:
                rec = {"step": step, "epoch": step / data.steps_per_epoch, "lr": opt.param_groups[0]["lr"]}
                rec.update({k: float(torch.stack(v).float().mean()) for k, v in running.items()})
                rec["img_s"] = window_imgs / max(time.time() - window_t, 1e-9)
                history.append(rec)
                if is_main:
                    with open(work_dir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(rec) + "\n")
                    if bar:
                        bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{rec['img_s']:.0f}")
                window_t, window_imgs, running = time.time(), 0, {}
            if bar:
                bar.update(1)
            if step % cfg.ckpt_every == 0 and step < total:
                checkpoint(done=False)
    checkpoint(done=True)
    if bar:
        bar.close()
    model.eval()
    return FitResult(model, step, cfg.epochs, resumed_from, history, time.time() - t0, str(device))


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be written again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


# --------------------------------------------------------------------------------------------------
# Inference helpers
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model: nn.Module, inputs: Sequence[torch.Tensor], batch_size: int = 512,
            device: str | torch.device = "auto") -> torch.Tensor:
    """Concatenated float32 outputs of ``model(*inputs)`` over batches (eval mode, on CPU after)."""
    device = pick_device(device) if isinstance(device, str) else device
    model = model.to(device).eval()
    use_amp = device.type == "cuda"
    outs = []
    for i in range(0, len(inputs[0]), batch_size):
        chunk = [t[i:i + batch_size].to(device) for t in inputs]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            outs.append(model(*chunk).float().cpu())
    return torch.cat(outs)


def accuracy(logits: torch.Tensor, y: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy in percent."""
    topk = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((topk == y[:, None]).any(1).float().mean() * 100.0)
