"""Shared data preparation, training and evaluation of the four models of Tab 4.1.

All four experiments of the chapter use one config (``VQAConfig``) and call ``prepare`` and
``trained_models``; each model is trained in a ``ctx.work_dir`` named by the settings that determine
it, so Tab 4.1 and Tab 4.2 use the very same models (the second run loads them).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from common.config import TrainConfig
from common.data import fixed_subset
from vqa.config import ModelConfig, VQAConfig  # noqa: F401

MODEL_NAMES = ("omega", "P", "NP")


@dataclasses.dataclass
class Split:
    questions: list[str]
    labels: list[str]
    q: Any                 # LongTensor (N, T)
    img: Any               # LongTensor (N,) into the split's bank
    t_idx: Any             # LongTensor (N, A): answer-vocab indices of the soft scores (-1 = pad)
    t_val: Any             # FloatTensor (N, A): VQA accuracy of each of those answers
    polar: np.ndarray      # bool (N,)
    raw_answers: list | None = None   # VQA 2.0: the ten answers as in the file (official evaluator)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask_or_idx) -> "Split":
        idx = np.flatnonzero(mask_or_idx) if np.asarray(mask_or_idx).dtype == bool else np.asarray(mask_or_idx)
        import torch
        t = torch.from_numpy(idx)
        return Split([self.questions[i] for i in idx], [self.labels[i] for i in idx], self.q[t], self.img[t],
                     self.t_idx[t], self.t_val[t], self.polar[idx],
                     None if self.raw_answers is None else [self.raw_answers[i] for i in idx])


@dataclasses.dataclass
class Prepared:
    vocab: list[str]                # answer classes (index = class id)
    n_words: int
    feature_dim: int | None         # None: raw images through the region CNN
    train: Split                    # what the models are trained on
    heldout: Split | None           # easy-VQA: held-out part of train
    eval: Split                     # reported on (easy-VQA test / VQA 2.0 val)
    train_bank: Any
    eval_bank: Any
    n_train_all: int                # questions in the training file before filtering to the vocab
    class_info: dict = dataclasses.field(default_factory=dict)   # n_classes etc., in every experiment's metrics
    train_labels_all: list = dataclasses.field(default_factory=list)  # label of every training question (Fig 4.1)


def _pool_images(images: np.ndarray, size: int) -> np.ndarray:
    """Average-pool uint8 NHWC images to ``size`` (an integer factor), once, before training."""
    n, h, w, c = images.shape
    if h == size:
        return images
    f = h // size
    x = images.reshape(n, size, f, size, f, c).astype(np.float32).mean((2, 4))
    return np.round(x).astype(np.uint8)


def _targets(score_dicts, vocab_index, width: int = 10):
    import torch
    idx = np.full((len(score_dicts), width), -1, np.int64)
    val = np.zeros((len(score_dicts), width), np.float32)
    for i, d in enumerate(score_dicts):
        items = [(vocab_index[a], s) for a, s in d.items() if a in vocab_index and s > 0][:width]
        for j, (a, s) in enumerate(items):
            idx[i, j], val[i, j] = a, s
    return torch.from_numpy(idx), torch.from_numpy(val)


def _make_split(questions, labels, all_answers, img_index, tok, vocab_index) -> Split:
    import torch
    from vqa.data import answer_scores, is_polar
    if all_answers is None:
        scores = [{a: 1.0} for a in labels]          # one answer per question: exact match
    else:
        scores = [answer_scores(a, normalized=True) for a in all_answers]
    t_idx, t_val = _targets(scores, vocab_index)
    return Split(list(questions), list(labels), torch.from_numpy(tok.encode(questions)),
                 torch.from_numpy(np.asarray(img_index, np.int64)), t_idx, t_val,
                 np.array([is_polar(a) for a in labels], dtype=bool))


def check_missing_features(ds, max_share: float, ctx=None) -> None:
    """Questions whose image has no row in the feature bank: above ``max_share`` of the split's
    questions a DataError naming the count, some image ids and the files; below it a warning."""
    from common.data import data_error
    if not ds.skipped:
        return
    share = ds.skipped / max(ds.n_questions_file, 1)
    ids = ds.missing_image_ids
    what = (f"{ds.skipped} of its {ds.n_questions_file} questions ({100 * share:.2f} %) ask about {len(ids)} images "
            f"with no features in {ds.features_file} (image ids {', '.join(map(str, ids[:5]))}"
            f"{', ...' if len(ids) > 5 else ''})")
    if share > max_share:
        raise data_error(ds.questions_file, f"{what}; more than max_missing_features = {100 * max_share:g} %",
                         "convert the features of these images (python -m vqa.convert_features --tsv <trainval_36 "
                         "tsv> --questions <both questions files> --out <root>/vqa2/features), or accept leaving them "
                         "out with --set max_missing_features=<share>")
    msg = f"WARNING: {ds.questions_file}: {what}; left out (at most max_missing_features = {100 * max_share:g} %)"
    print(f"[vqa] {msg}", flush=True)
    if ctx is not None:
        ctx.note(msg)


def prepare(cfg: VQAConfig, ctx) -> Prepared:
    import torch
    from common.data import train_val_split
    from vqa.data import Tokenizer, answer_vocab

    if cfg.dataset == "easyvqa":
        tr, ev = ctx.load_dataset("easyvqa", "train"), ctx.load_dataset("easyvqa", "test")
        train_bank = torch.from_numpy(_pool_images(tr.images, cfg.model.image_size))
        eval_bank = torch.from_numpy(_pool_images(ev.images, cfg.model.image_size))
        feature_dim = None
    elif cfg.dataset == "vqa2":
        import vqa.data  # noqa: F401  (registers the dataset)
        tr, ev = ctx.load_dataset("vqa2", "train"), ctx.load_dataset("vqa2", "val")
        for ds in (tr, ev):
            check_missing_features(ds, cfg.max_missing_features, ctx)
        # the banks as read: memory maps (one shared object with the converted trainval bank), never
        # copied here nor moved to the device (vqa.model.gather_rows moves a batch's rows only)
        train_bank, eval_bank = tr.features, ev.features
        feature_dim = int(train_bank.shape[-1])
        if train_bank.shape[1] != 36:
            ctx.note(f"region features have k = {train_bank.shape[1]} regions per image (the thesis uses 36)")
    else:
        raise ValueError(f"unknown dataset '{cfg.dataset}' (easyvqa, vqa2)")

    label_lists = [tr.answers] if cfg.dataset == "easyvqa" else [tr.answers, ev.answers]
    vocab = answer_vocab(label_lists, cfg.answer_min_count)
    class_info = check_n_classes(vocab, label_lists, cfg, tr, ev)
    vi = {a: i for i, a in enumerate(vocab)}

    keep = np.array([a in vi for a in tr.answers])                  # train on in-vocabulary labels only
    keep_idx = np.flatnonzero(keep)[fixed_subset(int(keep.sum()), cfg.max_train_questions, 1)]
    labels_all = np.array([vi[tr.answers[i]] for i in keep_idx])
    if cfg.heldout_fraction > 0:
        fit_pos, ho_pos = train_val_split(len(keep_idx), cfg.heldout_fraction, ctx.seed, labels=labels_all)
    else:
        fit_pos, ho_pos = np.arange(len(keep_idx)), np.arange(0)
    tok = Tokenizer([tr.questions[i] for i in keep_idx[fit_pos]], cfg.max_question_len)

    def split_of(ds, idx):
        aa = None if ds.all_answers is None else [ds.all_answers[i] for i in idx]
        sp = _make_split([ds.questions[i] for i in idx], [ds.answers[i] for i in idx], aa,
                         ds.image_index[idx], tok, vi)
        raw = getattr(ds, "raw_answers", None)
        sp.raw_answers = None if raw is None else [raw[i] for i in idx]
        return sp

    ev_idx = fixed_subset(len(ev), cfg.max_eval_questions, 2)
    return Prepared(vocab, len(tok), feature_dim, split_of(tr, keep_idx[fit_pos]),
                    split_of(tr, keep_idx[ho_pos]) if len(ho_pos) else None, split_of(ev, ev_idx),
                    train_bank, eval_bank, len(tr), class_info, list(tr.answers))


def is_full_vqa2(tr, ev) -> bool:
    """The full VQA 2.0 release: the official file names (the loader reads no others) holding exactly
    443,757 train and 214,354 val questions (vqa.data.FULL_VQA2_QUESTIONS), counted in the files
    before any question is left out."""
    from vqa import data as vdata
    return (getattr(tr, "n_questions_file", None) == vdata.FULL_VQA2_QUESTIONS["train"]
            and getattr(ev, "n_questions_file", None) == vdata.FULL_VQA2_QUESTIONS["val"])


def check_n_classes(vocab, label_lists, cfg: VQAConfig, tr, ev) -> dict:
    """The class count of the data actually loaded, reported by every experiment: the vocabulary
    (labels occurring at least ``answer_min_count`` times over the loaded labels) is recounted from
    the labels, and on the full VQA 2.0 files it must be ``expected_classes`` (3129, L910)."""
    from collections import Counter
    from common.data import data_error
    counts = Counter(a for labels in label_lists for a in labels)
    recount = sum(c >= cfg.answer_min_count for c in counts.values())
    if recount != len(vocab):
        raise AssertionError(f"answer vocabulary of {len(vocab)} classes, but {recount} loaded labels occur at "
                             f"least {cfg.answer_min_count} times")
    full = cfg.dataset == "vqa2" and is_full_vqa2(tr, ev)
    if full and cfg.expected_classes and len(vocab) != cfg.expected_classes:
        raise data_error(tr.questions_file, f"the full VQA 2.0 train + val labels give {len(vocab)} answer classes "
                                            f"with answer_min_count = {cfg.answer_min_count}, expected "
                                            f"{cfg.expected_classes} (notes/vqa.md, L910)",
                         "check that the annotations are the official v2 ones (v2_mscoco_{train,val}2014_annotations.json)")
    return {"n_classes": len(vocab), "answer_min_count": cfg.answer_min_count, "full_vqa2": int(full),
            "n_classes_at_least_8": sum(c >= 8 for c in counts.values())}


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def group_by_image(split: Split):
    """(img_idx (G,), q (G, Q, T), valid (G, Q), t_idx (G, Q, A), t_val (G, Q, A)): the questions of
    each image together, so that the region CNN runs once per image and step (not per question)."""
    import torch
    img = split.img.numpy()
    order = np.argsort(img, kind="stable")
    uniq, start, counts = np.unique(img[order], return_index=True, return_counts=True)
    G, Q = len(uniq), int(counts.max()) if len(uniq) else 1
    pos = np.arange(len(order)) - np.repeat(start, counts)          # slot of each question in its group
    grp = np.repeat(np.arange(G), counts)
    o = torch.from_numpy(order)
    g, p = torch.from_numpy(grp), torch.from_numpy(pos)

    def scatter(t, fill):
        out = torch.full((G, Q) + tuple(t.shape[1:]), fill, dtype=t.dtype)
        out[g, p] = t[o]
        return out
    valid = torch.zeros(G, Q, dtype=torch.bool)
    valid[g, p] = True
    return (torch.from_numpy(uniq), scatter(split.q, 0), valid, scatter(split.t_idx, -1), scatter(split.t_val, 0.0))


def train_model(cfg: VQAConfig, ctx, data: Prepared, name: str):
    """f_name o Phi_name, trained on all (omega), polar (P) or non-polar (NP) training samples; its
    stage folder in ``.stage_dir``. Keyed by the whole config but ``hybrid_train`` (read by the hybrid
    stage only)."""
    from common.trainer import fit
    from vqa.model import build_model, grouped_soft_target_step
    split = {"omega": data.train, "P": data.train.subset(data.train.polar),
             "NP": data.train.subset(~data.train.polar)}[name]
    model = build_model(data.n_words, len(data.vocab), cfg.model, data.feature_dim, seed=ctx.seed)
    model.phi.set_bank(data.train_bank)
    work = ctx.work_dir(f"vqa-{name}", {"vqa": dataclasses.replace(cfg, hybrid_train=None), "model_name": name})
    res = fit(model, group_by_image(split), ctx.train_config(cfg.train), work, step_fn=grouped_soft_target_step,
              desc=f"vqa f_{name} o Phi_{name}")
    res.model.stage_dir = work
    return res.model


def train_hybrid(phi_p, split: Split, n_classes: int, model_cfg: ModelConfig, train_cfg: TrainConfig,
                 work_dir, seed: int = 0, batch_size: int = 512):
    """f_NP o Phi_P: Phi_P frozen; a fresh f_NP trained on Phi_P's features of the NP samples.

    Phi has no dropout, so its features in eval mode are exactly what a frozen Phi_P computes in
    every step; they are computed once and f_NP is trained on them (params = f_NP's only).
    """
    import torch
    from common.trainer import fit, predict
    from vqa.model import Classifier, VQAModel, freeze, soft_target_step
    freeze(phi_p)
    feats = predict(phi_p, [split.q, split.img], batch_size, device=train_cfg.device)
    torch.manual_seed(seed)
    f_np = Classifier(model_cfg.hidden, model_cfg.cls_hidden, n_classes, model_cfg.dropout)
    res = fit(f_np, (feats, split.t_idx, split.t_val), train_cfg, work_dir, step_fn=soft_target_step,
              params=list(f_np.parameters()), desc="vqa f_NP o Phi_P (hybrid)")
    return VQAModel(phi_p, res.model.eval())


# ------------------------------------------------------------------------------------------------
# Expected memory (printed before training; bench/vqa_memory.py measures it)
# ------------------------------------------------------------------------------------------------
GiB = 2 ** 30


def bank_bytes(bank) -> int:
    return int(bank.nbytes) if hasattr(bank, "nbytes") else int(bank.numel() * bank.element_size())


def count_model_params(n_words: int, n_classes: int, cfg: ModelConfig, feature_dim: int | None) -> int:
    """Parameters of one f o Phi, counted on the meta device (nothing allocated)."""
    import torch
    from vqa.model import build_model
    with torch.device("meta"):
        m = build_model(n_words, n_classes, cfg, feature_dim)
    return sum(p.numel() for p in m.parameters())


def memory_estimate(cfg: VQAConfig, data: Prepared) -> dict:
    """Expected peak memory of trained_models + evaluation in bytes, this design: one bank on the
    host (memory-mapped: file-backed pages, read on demand, at most the bank's size in the page
    cache and reclaimable), only a batch's rows on the device."""
    import numpy as np
    banks = {id(data.train_bank): data.train_bank, id(data.eval_bank): data.eval_bank}
    host_bank = sum(bank_bytes(b) for b in banks.values())
    mapped = all(isinstance(b, np.memmap) for b in banks.values())
    splits = [s for s in (data.train, data.heldout, data.eval) if s is not None]
    host_tensors = sum(t.numel() * t.element_size() for s in splits for t in (s.q, s.img, s.t_idx, s.t_val))
    n_params = count_model_params(data.n_words, len(data.vocab), cfg.model, data.feature_dim)
    p_bytes = 4 * n_params
    # device: omega, P, NP and the hybrid's Phi_P copy + f_NP stay on the device (~4 models), plus
    # gradients and Adamax's two moments of the model in training
    device_params = 4 * p_bytes + 3 * p_bytes
    counts = np.unique(data.train.img.numpy(), return_counts=True)[1]
    G, Q = len(counts), int(counts.max()) if len(counts) else 1
    T, A = data.train.q.shape[1], data.train.t_idx.shape[1]
    device_data = G * Q * (T * 8 + 1 + A * 12) + G * 8          # group_by_image's tensors (omega)
    if data.feature_dim is None:
        k, d = 36, cfg.model.cnn_width
        row = bank_bytes(data.train_bank) // max(len(data.train_bank), 1)
    else:
        k, d = data.train_bank.shape[1], data.train_bank.shape[2]
        row = k * d * data.train_bank.dtype.itemsize
    nq = cfg.train.batch_size * float(counts.mean()) if len(counts) else 1.0
    m = cfg.model
    # one step: the batch's rows (+ float32 copy), per-question regions (repeat_interleave) and the
    # attention's concat / hidden, kept for the backward pass (x2)
    act = cfg.train.batch_size * (row + k * d * 4) + 2 * nq * k * (2 * d + m.q_dim + m.hidden) * 4
    ev = cfg.eval_batch_size * (row + 4 * k * d * 4)
    return {"host_bank": host_bank, "host_bank_mapped": mapped, "host_tensors": host_tensors,
            "device_params": device_params, "device_data": device_data, "device_step": max(act, ev),
            # RAM the process must own: the bank only when it is not memory-mapped (legacy npz)
            "host_total": host_tensors + (0 if mapped else host_bank),
            "device_total": device_params + device_data + max(act, ev), "n_params_per_model": n_params}


def old_design_estimate(train_bank: int, eval_bank: int) -> dict:
    """The design before the shared bank, by a reading of its code: both banks read whole into host
    memory (np.asarray of the npz), a device copy of the training bank per model (Phi.set_bank moved
    it: Omega, P, NP) plus copy.deepcopy(P.phi) for the hybrid, and the evaluation bank moved once
    more. With the one-TSV work-around (the trainval file for both splits), both banks are the full
    one."""
    return {"host_total": train_bank + eval_bank, "device_total": 4 * train_bank + eval_bank}


def format_estimate(e: dict) -> str:
    bank = (f"+ the {e['host_bank'] / GiB:.2f} GiB bank memory-mapped (file-backed page cache: rows read on "
            f"demand, reclaimable)" if e["host_bank_mapped"] else f"of which the bank {e['host_bank'] / GiB:.2f} GiB")
    return (f"expected memory: host {e['host_total'] / GiB:.2f} GiB in RAM (question tensors "
            f"{e['host_tensors'] / GiB:.2f} GiB) {bank}, plus the interpreter and Python lists of the questions; device {e['device_total'] / GiB:.2f} GiB "
            f"(4 models + gradients + Adamax {e['device_params'] / GiB:.2f} GiB, grouped training tensors "
            f"{e['device_data'] / GiB:.2f} GiB, one step's features and activations {e['device_step'] / GiB:.2f} GiB; "
            f"{e['n_params_per_model'] / 1e6:.1f} M parameters per model)")


def trained_models(cfg: VQAConfig, ctx, data: Prepared, names=("omega", "P", "NP", "hybrid")) -> dict:
    estimate = format_estimate(memory_estimate(cfg, data))
    print(f"[vqa] {estimate}", flush=True)
    if cfg.dataset == "vqa2":
        ctx.note(f"Before training, {estimate}.")
    models = {}
    for name in ("omega", "P", "NP"):
        if name in names or (name == "P" and "hybrid" in names):
            models[name] = train_model(cfg, ctx, data, name)
    if "hybrid" in names:
        phi_p = models["P"].phi.copy_sharing_bank()     # parameters copied, the bank shared
        work = ctx.work_dir("vqa-hybrid", cfg, depends_on=[models["P"].stage_dir])
        models["hybrid"] = train_hybrid(phi_p, data.train.subset(~data.train.polar), len(data.vocab), cfg.model,
                                        ctx.train_config(cfg.hybrid_train), work,
                                        seed=ctx.seed, batch_size=cfg.eval_batch_size)
    return models


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------
def predict_classes(model, split: Split, bank, batch_size: int = 512, device: str = "auto") -> np.ndarray:
    from common.trainer import predict
    model.phi.set_bank(bank)
    if len(split) == 0:
        return np.zeros(0, np.int64)
    return predict(model, [split.q, split.img], batch_size, device=device).argmax(1).numpy()


def vqa_scores(pred: np.ndarray, split: Split) -> np.ndarray:
    """Per-sample VQA accuracy (0..1) of predicted class ids (the soft score of the predicted answer)."""
    idx, val = split.t_idx.numpy(), split.t_val.numpy()
    return (val * (idx == pred[:, None])).sum(1)


def pct(x: np.ndarray) -> float:
    return float(100.0 * np.mean(x)) if len(x) else float("nan")


def boot_pct(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """95 % bootstrap interval of the mean, in percent (common.claims.bootstrap_ci)."""
    from common.claims import bootstrap_ci
    lo, hi = bootstrap_ci(values, n_boot, seed=seed)
    return 100 * lo, 100 * hi
