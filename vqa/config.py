"""Config dataclasses of the chapter (no torch here: experiments/vqa.py imports this at load time)."""
from __future__ import annotations

import dataclasses

from common.config import TrainConfig


@dataclasses.dataclass
class ModelConfig:
    emb_dim: int = 64            # word embedding size (trained from scratch; no GloVe, see README)
    q_dim: int = 128             # GRU hidden size
    hidden: int = 128            # size of the joint embedding phi (and of the attention layer)
    cls_hidden: int = 256        # hidden layer of the 2-layer classifier f
    dropout: float = 0.2         # in f only (Phi has none, so frozen Phi_P features are deterministic)
    cnn_width: int = 32          # default preset: channels of the region CNN (= region feature size)
    image_size: int = 32         # default preset: easy-VQA images (64 px) are average-pooled to this
    grid: int = 6                # 6 x 6 grid = k = 36 regions



@dataclasses.dataclass
class VQAConfig:
    dataset: str = "easyvqa"                 # easyvqa (embedded) | vqa2 (under --data-root)
    heldout_fraction: float = 0.1            # easy-VQA: seeded part of train held out (model selection)
    answer_min_count: int = 1                # answer vocabulary threshold (paper: 9 -> 3129 classes)
    expected_classes: int = 0                # paper: 3129; asserted on the full VQA 2.0 (0 = no check)
    max_question_len: int = 10               # tokens (easy-VQA questions have <= 9 words; paper 14)
    max_train_questions: int = 0             # 0 = all; smoke runs subsample (seeded)
    max_eval_questions: int = 0
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=12, batch_size=6, lr=2e-3, optimizer="adamax", ckpt_every=1000, log_every=100))
    # train.batch_size counts IMAGES: each step takes all questions of batch_size images (~9.6 each on
    # easy-VQA, ~5.4 on VQA 2.0), so the region CNN runs once per image (vqa.pipeline.group_by_image)
    hybrid_train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=20, batch_size=64, lr=2e-3, optimizer="adamax", ckpt_every=5000, log_every=100))
    eval_batch_size: int = 512
    # matching and brackets (Sec. 4.2.3, L950)
    bracket_rule: str = "equal"              # equal (default preset) | thesis (paper preset)
    min_matches: int = 0                     # thesis: 30
    top_min: int = 100                       # thesis: bracket 1 = classes with >= 100 matches
    second_size: int = 50                    # thesis: bracket 2 = the next 50 classes
    table_a1_rows: int = 100                 # Tab A.1: top 100 classes by matches
    # noise
    n_boot: int = 1000                       # paired bootstrap resamples of the evaluation set
    close_tol: float = 2.0                   # p.p.: "close" = the 95 % interval of the gap within +-tol
    well_below: float = 5.0                  # p.p.: "well below" = the interval lies below -margin
