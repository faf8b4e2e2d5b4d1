"""Config dataclasses of the chapter (no torch here: experiments/vqa.py imports this at load time).

Each field declares its valid values (``common.config.param``) where a bad one would crash or give
wrong numbers after training started."""
from __future__ import annotations

import dataclasses

from common.config import TrainConfig, param


@dataclasses.dataclass
class ModelConfig:
    emb_dim: int = param(64, ge=1)       # word embedding size (trained from scratch; no GloVe, see README)
    q_dim: int = param(128, ge=1)        # GRU hidden size
    hidden: int = param(128, ge=1)       # size of the joint embedding phi (and of the attention layer)
    cls_hidden: int = param(256, ge=1)   # hidden layer of the 2-layer classifier f
    dropout: float = param(0.2, ge=0, lt=1)   # in f only (Phi has none, so frozen Phi_P features are deterministic)
    cnn_width: int = param(32, ge=2)     # default preset: channels of the region CNN (= region feature size; its
                                         # first layer has width // 2)
    image_size: int = param(32, ge=4)    # default preset: easy-VQA images (64 px) are average-pooled to this
                                         # (a divisor of 64; the region CNN pools twice by 2)
    grid: int = param(6, ge=1)           # 6 x 6 grid = k = 36 regions


@dataclasses.dataclass
class VQAConfig:
    dataset: str = param("easyvqa", choices=("easyvqa", "vqa2"))   # easyvqa (embedded) | vqa2 (under --data-root)
    heldout_fraction: float = param(0.1, ge=0, lt=1)   # easy-VQA: seeded part of train held out (model selection)
    answer_min_count: int = param(1, ge=1)   # answer vocabulary threshold (paper: 9 -> 3129 classes)
    expected_classes: int = param(0, ge=0)   # paper: 3129; asserted on the full VQA 2.0 (0 = no check)
    max_missing_features: float = param(0.01, ge=0, le=1)   # VQA 2.0: largest share of a split's questions whose
                                             # image has no features; above it the run stops (DataError), below
                                             # it they are left out with a printed warning
    max_question_len: int = param(10, ge=1)  # tokens (easy-VQA questions have <= 9 words; paper 14)
    max_train_questions: int = param(0, ge=0)   # 0 = all; smoke runs subsample (seeded)
    max_eval_questions: int = param(0, ge=0)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=12, batch_size=12, lr=3e-3, optimizer="adamax", ckpt_every=1000, log_every=100))
    # train.batch_size counts IMAGES: each step takes all questions of batch_size images (~9.6 each on
    # easy-VQA, ~5.4 on VQA 2.0), so the region CNN runs once per image (vqa.pipeline.group_by_image)
    hybrid_train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(
        epochs=20, batch_size=64, lr=2e-3, optimizer="adamax", ckpt_every=5000, log_every=100))
    eval_batch_size: int = param(512, ge=1)
    # matching and brackets (Sec. 4.2.3, L950)
    bracket_rule: str = param("equal", choices=("equal", "thesis"))   # equal (default preset) | thesis (paper)
    min_matches: int = param(0, ge=0)        # thesis: 30
    top_min: int = param(100, ge=0)          # thesis: bracket 1 = classes with >= 100 matches
    second_size: int = param(50, ge=0)       # thesis: bracket 2 = the next 50 classes
    table_a1_rows: int = param(100, ge=1)    # Tab A.1: top 100 classes by matches
    # what the matching counts (Tab A.1, Fig 4.5 and the brackets of Tab 4.2 depend on it; README
    # Decisions). Never part of a trained model's key: the models are the same whatever is matched.
    match_questions: str = param("train", choices=("train", "all"), identity=False)   # train: the training
                                             # polar questions (those Phi_P saw); all: + held-out + evaluation split
    match_case_fold: bool = param(True, identity=False)   # "In the picture, ..." matches IN
    match_label_words: str = param("phrase", choices=("phrase", "all_words", "any_word"), identity=False)
                                             # a label's words as one phrase / all of them anywhere / any of them
    # Tab A.1 claims (paper preset): agreement with the printed table
    a1_min_overlap: int = param(90, ge=0, le=100, identity=False)   # of its 100 classes in our top 100
    a1_min_rank_corr: float = param(0.9, ge=-1, le=1, identity=False)   # Spearman rho of the counts
    a1_count_tol: float = param(0.05, ge=0, identity=False)   # |median(ours / printed) - 1| below this
    # noise and the claims' tolerances (the claim checks read them from the run's config)
    n_boot: int = param(1000, ge=1)          # paired bootstrap resamples of the evaluation set
    close_tol: float = param(2.0, gt=0)      # p.p.: "close" = the 95 % interval of the gap within +-tol
    well_below: float = param(5.0, ge=0)     # p.p.: "well below" = the interval lies below -well_below
    not_worse_tol: float = param(1.0, ge=0)  # p.p.: "A not worse than B" = the 95 % interval of A - B lies
                                             # above -not_worse_tol (non-inferiority margin)


# --------------------------------------------------------------------------------------------------
# Presets: overrides of the defaults above (the default preset is the defaults themselves), beside
# the config they override; experiments/vqa.py registers with them
# --------------------------------------------------------------------------------------------------
SMOKE = {
    "max_train_questions": 1500, "max_eval_questions": 600,
    "model.emb_dim": 16, "model.q_dim": 32, "model.hidden": 32, "model.cls_hidden": 32, "model.cnn_width": 8,
    "train.epochs": 1, "train.batch_size": 16, "train.progress": False,
    "hybrid_train.epochs": 2, "hybrid_train.progress": False, "n_boot": 100,
}
PAPER = {
    "dataset": "vqa2", "heldout_fraction": 0.0, "answer_min_count": 9, "expected_classes": 3129,
    "max_question_len": 14,
    "model.emb_dim": 300, "model.q_dim": 1024, "model.hidden": 1024, "model.cls_hidden": 2048,
    "model.dropout": 0.5,
    "train.epochs": 20, "train.batch_size": 96, "train.ckpt_every": 1000,
    "hybrid_train.epochs": 20, "hybrid_train.batch_size": 512,
    "bracket_rule": "thesis", "min_matches": 30, "top_min": 100, "second_size": 50,
    "eval_batch_size": 1024,
}
PRESETS = {"smoke": SMOKE, "default": {}, "paper": PAPER}
