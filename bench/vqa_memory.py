"""Peak host and device memory of vqa/'s paper-preset pipeline on full-size synthetic features,
against the old design's estimate, in one run.

    python bench/vqa_memory.py                   # 123,287 images x 36 x 2048 float16 bank in /tmp
    python bench/vqa_memory.py --scale 0.1       # a tenth of the images (a smaller disk)
    python bench/vqa_memory.py --fill            # write every row (18 GB of writes), not only the read ones

A child process writes the bank as the converter does (``features/trainval_features.npy``, a
memory-mapped float16 .npy of the real shape) plus VQA 2.0-format question and annotation files
(train images = the first 82,783, val = the rest, 5 questions per asked image, 3129 answer classes of
9 labels each so the classifier has the paper's output size). Without --fill only the rows of images
that questions ask about are written; the others are holes of the sparse file (they read as zeros
and take no disk). The parent then runs the paper preset's code path (vqa.pipeline.prepare,
trained_models: Omega, P, NP, hybrid; predict on val) at the paper's model sizes for a few steps
(one epoch over a few hundred questions, batches of 32 images), and prints its peak resident set
size (ru_maxrss: anonymous memory plus the bank pages it touched) and, on CUDA, the peak allocated
device memory, beside the old design's estimate for the same shapes (vqa.pipeline.old_design_estimate).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FULL_IMAGES, TRAIN_IMAGES = 123_287, 82_783          # trainval_36 rows; train2014 images
K, D = 36, 2048
N_CLASSES, PER_CLASS, Q_PER_IMAGE = 3129, 9, 5
GiB = 2 ** 30


def make(root: Path, n_images: int, fill: bool, seed: int = 0) -> None:
    """The bank and the question / annotation files (run in a child process: the pages it writes
    must not count in the measuring process' peak RSS)."""
    rng = np.random.default_rng(seed)
    d = root / "vqa2"
    (d / "features").mkdir(parents=True, exist_ok=True)
    n_train = round(n_images * TRAIN_IMAGES / FULL_IMAGES)
    image_ids = np.sort(rng.choice(600_000, n_images, replace=False)).astype(np.int64)   # COCO-like ids
    answers = [f"answer{i}" for i in range(N_CLASSES - 2)] + ["yes", "no"]
    # 3127 non-polar classes of 9 labels each, yes and no making up 38 % of the questions (Fig 4.1)
    n_np = (N_CLASSES - 2) * PER_CLASS
    n_polar = round(n_np * 0.38 / 0.62)
    labels = np.concatenate([np.repeat(np.arange(N_CLASSES - 2), PER_CLASS),
                             np.full(n_polar // 2, N_CLASSES - 2), np.full(n_polar - n_polar // 2, N_CLASSES - 1)])
    rng.shuffle(labels)
    n_val_q = len(labels) // 8
    # Q_PER_IMAGE questions per asked image (more where a small --scale has too few images)
    asked = {"train": rng.choice(n_train, min(n_train, (len(labels) - n_val_q) // Q_PER_IMAGE + 1), replace=False),
             "val": n_train + rng.choice(n_images - n_train, min(n_images - n_train, n_val_q // Q_PER_IMAGE + 1),
                                         replace=False)}
    feats = np.lib.format.open_memmap(d / "features" / "trainval_features.npy.part", mode="w+", dtype=np.float16,
                                      shape=(n_images, K, D))
    rows = np.arange(n_images) if fill else np.sort(np.concatenate(list(asked.values())))
    for s in range(0, len(rows), 1024):
        r = rows[s:s + 1024]
        feats[r] = rng.random((len(r), K, D), dtype=np.float32).astype(np.float16)
    feats.flush()
    del feats
    (d / "features" / "trainval_features.npy.part").rename(d / "features" / "trainval_features.npy")
    np.save(d / "features" / "trainval_image_ids.npy", image_ids)
    pos = 0
    for split, imgs in asked.items():
        lab = labels[:len(labels) - n_val_q] if split == "train" else labels[len(labels) - n_val_q:]
        qs, anns = [], []
        for j, a in enumerate(lab):
            img = int(image_ids[imgs[(j // Q_PER_IMAGE) % len(imgs)]])
            qid = pos = pos + 1
            qs.append({"image_id": img, "question": f"what is shown in picture number {j % 97}?", "question_id": qid})
            anns.append({"question_id": qid, "image_id": img, "question_type": "what", "answer_type": "other",
                         "multiple_choice_answer": answers[a],
                         "answers": [{"answer": answers[a], "answer_confidence": "yes", "answer_id": i + 1}
                                     for i in range(10)]})
        (d / f"v2_OpenEnded_mscoco_{split}2014_questions.json").write_text(json.dumps({"questions": qs}))
        (d / f"v2_mscoco_{split}2014_annotations.json").write_text(json.dumps({"annotations": anns}))


class BenchContext:
    """The few RunContext members vqa.pipeline uses."""

    def __init__(self, root: Path, device: str):
        self.seed, self.device, self.data_root, self.root = 0, device, str(root), root

    def load_dataset(self, name, split):
        from common.data import load_dataset
        import vqa.data  # noqa: F401
        return load_dataset(name, split, self.data_root)

    def work_dir(self, stage, config, *, depends_on=(), datasets=None):
        return self.root / "work" / stage

    def train_config(self, c):
        return dataclasses.replace(c, seed=self.seed, device=self.device)

    def note(self, text):
        pass


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB    # Linux: kB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the 123,287 images")
    ap.add_argument("--dir", default="/tmp/vqa_memory_bench")
    ap.add_argument("--fill", action="store_true", help="write every row of the bank")
    ap.add_argument("--questions", type=int, default=256, help="training (and val) questions used")
    ap.add_argument("--batch-images", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--keep", action="store_true", help="keep the files in --dir")
    ap.add_argument("--make", action="store_true", help=argparse.SUPPRESS)      # the child process
    a = ap.parse_args()
    root = Path(a.dir)
    n_images = round(FULL_IMAGES * a.scale)
    if a.make:
        make(root, n_images, a.fill)
        return

    need = n_images * K * D * 2
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    print(f"bank: {n_images:,} images x {K} x {D} float16 = {need / GiB:.2f} GiB (scale {a.scale}); "
          f"free disk under {root}: {free / GiB:.1f} GiB")
    if need + GiB > free:
        fit = (free - GiB) / (FULL_IMAGES * K * D * 2)
        sys.exit(f"the full-size bank does not fit: rerun with --scale {fit:.3f} or less (the scale is printed "
                 f"with the results)")
    if (root / "vqa2").exists():
        shutil.rmtree(root / "vqa2")
    if (root / "work").exists():
        shutil.rmtree(root / "work")
    t0 = time.time()
    subprocess.run([sys.executable, __file__, "--make", "--scale", str(a.scale), "--dir", str(root)]
                   + (["--fill"] if a.fill else []), check=True)
    written = sum(f.stat().st_blocks * 512 for f in (root / "vqa2" / "features").iterdir())
    print(f"wrote the bank and the question files in {time.time() - t0:.0f} s ({written / GiB:.2f} GiB on disk"
          f"{'' if a.fill else ', the unread rows are holes'})")

    import torch
    from common.config import apply_overrides, validate
    from vqa.config import PAPER, VQAConfig
    from vqa.pipeline import (format_estimate, memory_estimate, old_design_estimate, predict_classes, prepare,
                              trained_models)
    from common.trainer import pick_device
    torch.set_num_threads(max(1, torch.get_num_threads()))
    base_rss = rss_gib()
    cfg = validate(apply_overrides(apply_overrides(VQAConfig(), PAPER), {
        "train.epochs": 1, "train.batch_size": a.batch_images, "train.progress": False,
        "hybrid_train.epochs": 1, "hybrid_train.progress": False, "eval_batch_size": 256,
        "max_train_questions": a.questions, "max_eval_questions": a.questions}))
    device = pick_device(a.device)
    ctx = BenchContext(root, str(device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    data = prepare(cfg, ctx)
    assert isinstance(data.train_bank, np.memmap) and data.train_bank is data.eval_bank
    est = memory_estimate(cfg, data)
    models = trained_models(cfg, ctx, data)
    for m in models.values():
        predict_classes(m, data.eval, data.eval_bank, cfg.eval_batch_size, str(device))
    seconds = time.time() - t0
    assert all(m.phi.bank is data.train_bank for m in models.values())
    peak_rss = rss_gib()
    peak_dev = torch.cuda.max_memory_allocated() / GiB if device.type == "cuda" else None

    n_train = round(n_images * TRAIN_IMAGES / FULL_IMAGES)
    row = K * D * 2
    split_files = old_design_estimate(n_train * row, (n_images - n_train) * row)
    one_file = old_design_estimate(n_images * row, n_images * row)
    print(f"\nvqa paper preset, {device}: {len(data.vocab)} classes, {est['n_params_per_model'] / 1e6:.1f} M "
          f"parameters per model, {len(data.train)} training / {len(data.eval)} val questions, "
          f"batches of {a.batch_images} images, {seconds:.0f} s (prepare, Omega + P + NP + hybrid, predict)")
    print(f"this design's {format_estimate(est)}")
    print(f"{'GiB':34s}{'host':>10s}{'device':>10s}")
    print(f"{'old design, split npz (estimate)':34s}{split_files['host_total'] / GiB:10.1f}"
          f"{split_files['device_total'] / GiB:10.1f}")
    print(f"{'old design, one-file work-around':34s}{one_file['host_total'] / GiB:10.1f}"
          f"{one_file['device_total'] / GiB:10.1f}")
    print(f"{'this design (estimate)':34s}{est['host_total'] / GiB:10.2f}{est['device_total'] / GiB:10.2f}"
          f"   (+ the mapped bank's page cache on the host)")
    print(f"{'this design (measured, peak)':34s}{peak_rss:10.2f}"
          + (f"{peak_dev:10.2f}" if peak_dev is not None else "   device not measured (no CUDA device)"))
    print(f"  peak RSS includes {base_rss:.2f} GiB of the interpreter, torch and numpy before loading; "
          f"scale {a.scale} ({n_images:,} images)")
    if not a.keep:
        shutil.rmtree(root / "vqa2")
        shutil.rmtree(root / "work", ignore_errors=True)


if __name__ == "__main__":
    main()
