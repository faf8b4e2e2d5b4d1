"""The bottom-up top-down VQA model of ch. 4 (Anderson et al. 2018), split into ``Phi`` and ``f``.

    phi = Phi(question tokens, visual input)      the joint embedding (element-wise product)
    logits = f(phi)                               2-layer classifier; softmax in the loss

``Phi`` = word embeddings -> GRU (question) ; k = 36 region features -> top-down attention
conditioned on the question -> attended image vector ; both projected (ReLU, not GatedTanh, as the
thesis says L912) and multiplied element-wise. ``f`` = Linear -> ReLU -> Dropout -> Linear.

The visual input is given by index into a *bank* that ``Phi`` refers to but does not own: either
raw easy-VQA images (default preset; a small CNN turns each into a 6 x 6 grid = 36 region
features, trained with the model) or precomputed bottom-up features (paper preset;
``(n_images, 36, 2048)``, fixed, a read-only memory map of the converted file). The bank is a plain
attribute, not a buffer: ``model.to(device)`` leaves it on the host, it is not in checkpoints, and
``copy_sharing_bank`` copies Phi without it. Each forward gathers the batch's rows on the host and
moves only those to the model's device, so the Omega, P, NP and hybrid models share one bank and the
device holds one batch of features, not a copy of the bank per model. Indexing a bank keeps the
per-question tensors small, so the shared trainer can hold them on the device.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vqa.config import ModelConfig


class RegionCNN(nn.Module):
    """uint8 images (B, H, W, 3) -> (B, grid*grid, width) region features (default preset)."""

    def __init__(self, width: int = 32, image_size: int = 32, grid: int = 6):
        super().__init__()
        self.image_size, self.grid = image_size, grid
        self.net = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width // 2, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveMaxPool2d(grid),
            nn.Conv2d(width, width, 1), nn.ReLU(),
        )
        self.out_dim = width

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != self.image_size:
            x = F.adaptive_avg_pool2d(x, self.image_size)
        x = self.net(x)                                     # (B, C, g, g)
        return x.flatten(2).transpose(1, 2)                 # (B, g*g, C)


class Phi(nn.Module):
    """Everything up to the joint embedding phi: question encoder, regions, top-down attention."""

    def __init__(self, n_words: int, cfg: ModelConfig, feature_dim: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(n_words, cfg.emb_dim, padding_idx=0)
        self.gru = nn.GRU(cfg.emb_dim, cfg.q_dim, batch_first=True)
        if feature_dim is None:                              # default preset: raw images
            self.regions = RegionCNN(cfg.cnn_width, cfg.image_size, cfg.grid)
            v_dim = self.regions.out_dim
        else:                                                # paper preset: precomputed features
            self.regions = None
            v_dim = feature_dim
        # top-down attention (Anderson et al. eq. 3-4): a_i = w^T relu(W [v_i ; q]); softmax over i
        self.att = nn.Sequential(nn.Linear(v_dim + cfg.q_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))
        self.q_proj = nn.Sequential(nn.Linear(cfg.q_dim, cfg.hidden), nn.ReLU())
        self.v_proj = nn.Sequential(nn.Linear(v_dim, cfg.hidden), nn.ReLU())
        self.bank = None              # plain attribute (see the module docstring); set_bank

    def set_bank(self, bank) -> "Phi":
        """The visual inputs questions index into (images or region features): a host tensor or a
        numpy array / memory map, referred to, never copied nor moved to the device."""
        self.bank = bank
        return self

    def copy_sharing_bank(self) -> "Phi":
        """A deep copy of the parameters that refers to the same bank (copy.deepcopy alone would
        copy the bank: 18 GB at the paper preset)."""
        return copy.deepcopy(self, memo={id(self.bank): self.bank})

    def encode_question(self, q: torch.Tensor) -> torch.Tensor:
        lengths = (q != 0).sum(1).clamp(min=1)
        out, _ = self.gru(self.embed(q))                      # (B, T, q_dim); padding at the end
        return out[torch.arange(len(q), device=q.device), lengths - 1]

    def visual(self, img_idx: torch.Tensor) -> torch.Tensor:
        v = gather_rows(self.bank, img_idx).to(img_idx.device, non_blocking=True)
        return self.regions(v) if self.regions is not None else v.float()

    def forward(self, q: torch.Tensor, img_idx: torch.Tensor) -> torch.Tensor:
        return self.joint(q, self.visual(img_idx))

    def joint(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """phi from question tokens (B, T) and region features (B, k, v_dim)."""
        qh = self.encode_question(q)                          # (B, q_dim)
        qk = qh[:, None, :].expand(-1, v.shape[1], -1)
        a = torch.softmax(self.att(torch.cat([v, qk], -1)).squeeze(-1), dim=1)   # (B, k)
        v_hat = (a[..., None] * v).sum(1)
        return self.q_proj(qh) * self.v_proj(v_hat)          # phi: element-wise product


def gather_rows(bank, idx: torch.Tensor) -> torch.Tensor:
    """bank[idx] on the bank's side (host): a torch tensor is indexed where it lives; a numpy array
    or memory map reads only the asked rows (fancy indexing of a memmap copies just those)."""
    if bank is None:
        raise RuntimeError("Phi has no bank: call set_bank(images or region features) first")
    if isinstance(bank, torch.Tensor):
        return bank[idx.to(bank.device)]
    return torch.from_numpy(np.ascontiguousarray(bank[idx.cpu().numpy()]))


class Classifier(nn.Module):
    """f: the 2-layer output classifier on phi (softmax applied in the loss / at prediction)."""

    def __init__(self, in_dim: int, hidden: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_classes))

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        return self.net(phi)


class VQAModel(nn.Module):
    """f o Phi. ``phi`` and ``f`` are separate modules so either can be frozen or swapped."""

    def __init__(self, phi: Phi, f: Classifier):
        super().__init__()
        self.phi, self.f = phi, f

    def forward(self, q: torch.Tensor, img_idx: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Per question: q (B, T), img_idx (B,). Grouped by image (training): q (B, Q, T) holds up to
        Q questions of image img_idx[b], ``valid`` (B, Q) marks the real ones; the regions of each
        image are computed once and the logits of the valid questions are returned, flattened."""
        if valid is None:
            return self.f(self.phi(q, img_idx))
        v = self.phi.visual(img_idx).repeat_interleave(valid.sum(1), dim=0)
        return self.f(self.phi.joint(q[valid], v))


def build_model(n_words: int, n_classes: int, cfg: ModelConfig, feature_dim: int | None = None,
                seed: int = 0) -> VQAModel:
    torch.manual_seed(seed)
    phi = Phi(n_words, cfg, feature_dim)
    return VQAModel(phi, Classifier(cfg.hidden, cfg.cls_hidden, n_classes, cfg.dropout))


def freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def soft_target_step(model: nn.Module, batch):
    """Cross-entropy of the softmax output against the normalised soft scores of each sample.

    batch = (*inputs, target_idx (B, A) int64 with -1 padding, target_val (B, A) float). With one
    answer per question (easy-VQA) this is the ordinary cross-entropy.
    """
    *inputs, t_idx, t_val = batch
    logits = model(*inputs).float()
    target = soft_target_matrix(t_idx, t_val, logits.shape[1])
    loss = -(target * F.log_softmax(logits, 1)).sum(1).mean()
    hit = target.gather(1, logits.argmax(1, keepdim=True)).squeeze(1) > 0
    return loss, {"acc": hit.float().mean()}


def grouped_soft_target_step(model: nn.Module, batch):
    """``soft_target_step`` for image-grouped batches: (img_idx, q, valid, target_idx, target_val)."""
    img, q, valid, t_idx, t_val = batch
    return soft_target_step(model, (q, img, valid, t_idx[valid], t_val[valid]))


def soft_target_matrix(t_idx: torch.Tensor, t_val: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Dense (B, n_classes) target distribution from padded (index, score) pairs, rows sum to 1."""
    valid = t_idx >= 0
    dense = torch.zeros(len(t_idx), n_classes, device=t_val.device)
    dense.scatter_add_(1, t_idx.clamp(min=0), torch.where(valid, t_val.float(), torch.zeros_like(t_val.float())))
    return dense / dense.sum(1, keepdim=True).clamp(min=1e-12)
