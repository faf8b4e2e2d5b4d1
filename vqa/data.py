"""VQA data for ch. 4: answer normalisation, the VQA accuracy, a tokeniser, and the VQA 2.0 loader.

- ``normalize_answer``: the official VQA evaluation's answer processing (punctuation, digits from
  number words, articles dropped, contractions restored), written after the algorithm of the VQA
  challenge's ``vqaEval.py``.
- ``answer_scores(answers)``: the standard VQA accuracy of every candidate answer against the ten
  human answers: for each of the 10 leave-one-out subsets of 9 answers, min(#matches / 3, 1),
  averaged. These are also the soft training targets.
- ``vqa_accuracy(pred, answers)``: the score of one prediction (0 when no human gave it).
- ``Tokenizer``: lower-case word tokens, a vocabulary from the training questions, index 0 = pad,
  1 = unknown.
- ``VQAData`` (questions, answers, images) and the two VQA datasets, registered here with
  ``@register_dataset`` and declared in pyproject.toml's ``icv.datasets`` entry points, so
  ``common.data.load_dataset("easyvqa")`` imports this module on first use:
  - ``easyvqa``: pip easy-vqa's files (embedded; fingerprint = sha256 of the files' bytes);
  - ``vqa2``: VQA 2.0 questions + annotations (official JSON files) and precomputed bottom-up
    features (36 x 2048 per image) under the data root.
  A malformed file raises ``common.errors.DataError`` naming it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from common.data import DatasetMissingError, data_error, fingerprint_files, package_dir, register_dataset

POLAR_ANSWERS = ("yes", "no")

# ------------------------------------------------------------------------------------------------
# Official answer normalisation
# ------------------------------------------------------------------------------------------------
_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")   # sic: the official pattern (a look-ahead, not behind)
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
# contractions written without the apostrophe -> with it (the official table's entries)
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}


def _strip_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def _process_punctuation(text: str) -> str:
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out)


def _process_digit_article(text: str) -> str:
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(ans: str) -> str:
    """The official VQA answer processing (whitespace, punctuation, number words, articles)."""
    return _process_digit_article(_process_punctuation(_strip_whitespace(ans)))


def answer_scores(answers: Sequence[str], normalized: bool = False) -> dict[str, float]:
    """VQA accuracy of every answer a human gave: mean over the leave-one-out subsets of
    min(#matches in the subset / 3, 1). Answers nobody gave score 0 (absent from the dict)."""
    ans = list(answers) if normalized else [normalize_answer(a) for a in answers]
    counts = Counter(ans)
    n = len(ans)
    out = {}
    for a, c in counts.items():
        # c subsets drop one copy of a (c - 1 matches left); n - c subsets keep all c copies
        out[a] = (c * min((c - 1) / 3.0, 1.0) + (n - c) * min(c / 3.0, 1.0)) / n
    return out


def vqa_accuracy(pred: str, answers: Sequence[str]) -> float:
    """The standard VQA accuracy of one predicted answer against the (ten) human answers."""
    return answer_scores(answers).get(normalize_answer(pred), 0.0)


def _leave_one_out(res: str, gts: Sequence[str]) -> float:
    """The official evaluator's accuracy loop: for each human answer left out, min(#matches among
    the other nine / 3, 1), averaged."""
    accs = [min(1.0, sum(g == res for j, g in enumerate(gts) if j != i) / 3.0) for i in range(len(gts))]
    return sum(accs) / len(accs)


def official_vqa_accuracy_2016(pred: str, answers: Sequence[str]) -> float:
    """The accuracy exactly as the official evaluator computed it from 2016 to March 2021
    (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py at commit 458a8b2,
    2016-10-08, "fixed the apostrophe symbol issue in contractions dictionary"; the file then
    unchanged until a013f00, 2021-03-11): the prediction gets the whole processing (whitespace,
    punctuation, then lower case / number words / articles / contractions); the human answers get
    the punctuation step only, and only when they are not all the same string; they never get lower
    case, number words, articles or contractions. ``answers`` are the ten answers as in the
    annotation file. (Its period pattern's ``re.UNICODE`` lands in ``sub``'s ``count``, so at most
    32 periods go per string: no VQA answer has that many.)"""
    res = normalize_answer(pred)
    gts = list(answers)
    if len(set(gts)) > 1:
        gts = [_process_punctuation(a) for a in gts]
    return _leave_one_out(res, gts)


def official_vqa_accuracy_2021(pred: str, answers: Sequence[str]) -> float:
    """The accuracy as the current official evaluator computes it (the same file at commit a013f00,
    2021-03-11, "Fixed processing answers bug"): the human answers' whitespace is stripped; then,
    when they are not all the same string, the human answers *and* the prediction get the whole
    processing (punctuation, lower case, number words, articles, contractions), which is our
    ``vqa_accuracy``; when all ten are the same string, neither side is processed beyond whitespace
    (sic: ten "Yes" against the prediction "yes" score 0, ten "two" against "2" score 0)."""
    res = _strip_whitespace(pred)
    gts = [_strip_whitespace(a) for a in answers]
    if len(set(gts)) > 1:
        gts = [_process_digit_article(_process_punctuation(a)) for a in gts]
        res = _process_digit_article(_process_punctuation(res))
    return _leave_one_out(res, gts)


OFFICIAL_EVALUATORS = {"2016": official_vqa_accuracy_2016, "2021": official_vqa_accuracy_2021}


def simple_vqa_accuracy(pred: str, answers: Sequence[str]) -> float:
    """Eq 2.10 as printed (L480): min(#humans who gave the answer / 3, 1), no leave-one-out."""
    p = normalize_answer(pred)
    return min(sum(normalize_answer(a) == p for a in answers) / 3.0, 1.0)


def is_polar(label: str) -> bool:
    """A sample is polar when its answer label is yes or no (notes/vqa.md, L816)."""
    return label in POLAR_ANSWERS


# ------------------------------------------------------------------------------------------------
# Tokeniser
# ------------------------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(question: str) -> list[str]:
    return _WORD.findall(question.lower())


class Tokenizer:
    PAD, UNK = 0, 1

    def __init__(self, questions: Sequence[str], max_len: int = 14, min_count: int = 1):
        counts = Counter(w for q in questions for w in tokenize(q))
        self.words = ["<pad>", "<unk>"] + sorted(w for w, c in counts.items() if c >= min_count)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, questions: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(questions), self.max_len), dtype=np.int64)
        for i, q in enumerate(questions):
            ids = [self.index.get(w, self.UNK) for w in tokenize(q)][: self.max_len]
            out[i, : len(ids)] = ids
        return out


# ------------------------------------------------------------------------------------------------
# Datasets
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class VQAData:
    """Questions with their answers and the image each one is about.

    ``images[image_index[i]]`` is the image of question i. ``all_answers`` holds the ten human
    answers per question where the dataset has them (VQA 2.0); easy-VQA has one answer each.
    """
    name: str
    split: str
    questions: list[str]
    answers: list[str]
    image_index: np.ndarray
    images: np.ndarray | None
    answer_vocab: list[str]
    source: str
    all_answers: list[list[str]] | None = None
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.questions)

    def describe(self) -> dict:
        return {"name": self.name, "split": self.split, "n_questions": len(self),
                "n_images": None if self.images is None else int(len(self.images)),
                "answers": len(self.answer_vocab), "source": self.source, "fingerprint": self.fingerprint}


def _read_json(path: Path, fix: str):
    try:
        return json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise data_error(path, f"not valid JSON ({e})", fix) from e


def _field(path: Path, obj, *keys, fix: str):
    """``obj[k0][k1]...`` or a DataError naming the file and the missing field."""
    cur = obj
    for k in keys:
        try:
            cur = cur[k]
        except (KeyError, IndexError, TypeError) as e:
            where = "".join(f"[{k!r}]" for k in keys)
            raise data_error(path, f"no field {where} (not the expected format)", fix) from e
    return cur


EASYVQA_FIX = "pip install --force-reinstall easy-vqa==1.0"


@register_dataset("easyvqa", splits=("train", "test"), embedded=True,
                  description="easy-VQA: 5000 64x64 shape images, 48k questions, 13 answers (pip easy-vqa)")
def load_easyvqa(split: str, root) -> VQAData:
    """pip easy-vqa's questions.json (rows [question, answer, image id]), answers.txt and PNGs.
    The fingerprint is the sha256 of every byte read (the files are small and read anyway)."""
    from PIL import Image
    base = package_dir("easy_vqa") / "data"
    qpath, apath = base / split / "questions.json", base / "answers.txt"
    for f in (qpath, apath):
        if not f.exists():
            raise DatasetMissingError("easyvqa", f, "easy_vqa/data/{answers.txt,{train,test}/{questions.json,images/<id>.png}}",
                                      "pip install easy-vqa==1.0")
    h = hashlib.sha256()
    raw_q, raw_a = qpath.read_bytes(), apath.read_bytes()
    for name, raw in ((f"{split}/questions.json", raw_q), ("answers.txt", raw_a)):
        h.update(f"{name}\0".encode() + hashlib.sha256(raw).digest())
    try:
        rows = json.loads(raw_q)
        questions, answers = [str(r[0]) for r in rows], [str(r[1]) for r in rows]
        image_ids = [int(r[2]) for r in rows]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise data_error(qpath, f"not valid JSON ({e})", EASYVQA_FIX) from e
    except (TypeError, IndexError, ValueError, KeyError) as e:
        raise data_error(qpath, f"not a list of [question, answer, image id] rows ({type(e).__name__}: {e})",
                         EASYVQA_FIX) from e
    vocab = [a.strip() for a in raw_a.decode().splitlines() if a.strip()]
    ids = sorted(set(image_ids))
    pos = {i: k for k, i in enumerate(ids)}
    images = []
    for i in ids:
        p = base / split / "images" / f"{i}.png"
        try:
            raw = p.read_bytes()
            images.append(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))
        except FileNotFoundError:
            raise DatasetMissingError("easyvqa", p, "easy_vqa/data/{train,test}/images/<id>.png",
                                      "pip install --force-reinstall easy-vqa==1.0") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise data_error(p, f"not a readable PNG ({e})", EASYVQA_FIX) from e
        h.update(f"{split}/images/{i}.png\0".encode() + hashlib.sha256(raw).digest())
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise data_error(base / split / "images", f"images of different sizes {sorted(shapes)}", EASYVQA_FIX)
    return VQAData("easyvqa", split, questions, answers, np.array([pos[i] for i in image_ids], dtype=np.int64),
                   np.stack(images), vocab, str(base / split), fingerprint="sha256:" + h.hexdigest()[:16])


@dataclasses.dataclass
class VQA2Data(VQAData):
    """VQAData plus the precomputed region features: ``features[image_index[i]]`` is (36, D).

    ``features`` is the bank as read from disk: a read-only memory map for the .npy layouts (only the
    rows a batch asks for are ever read), an in-memory array for the legacy npz. With the converted
    trainval bank, train and val hold the very same object."""
    features: np.ndarray | None = None
    question_ids: np.ndarray | None = None
    image_ids: np.ndarray | None = None
    skipped: int = 0          # questions whose image has no features (left out, counted)
    missing_image_ids: list[int] = dataclasses.field(default_factory=list)   # their images, sorted
    n_questions_file: int = 0  # questions in the file, before leaving any out
    questions_file: str = ""
    features_file: str = ""
    raw_answers: list[list[str]] | None = None   # the ten answers as in the file (official evaluator)

    def describe(self) -> dict:
        d = super().describe()
        if self.features is not None:
            d["features"] = list(self.features.shape)
            d["features_dtype"] = str(self.features.dtype)
            d["features_memory_mapped"] = isinstance(self.features, np.memmap)
        d["skipped_no_features"] = self.skipped
        d["n_questions_file"] = self.n_questions_file
        return d


FEATURES_BANK = "trainval"   # features/trainval_{features,image_ids}.npy (python -m vqa.convert_features)
VQA2_LAYOUT = ("<root>/vqa2/ (or <root> itself) holding v2_OpenEnded_mscoco_{train,val}2014_questions.json, "
               "v2_mscoco_{train,val}2014_annotations.json and the region features as "
               "features/trainval_features.npy (N, 36, D) + features/trainval_image_ids.npy (N,) "
               "[written by python -m vqa.convert_features; memory-mapped, one bank for both splits; "
               "also read: features/{train,val}2014_features.npy + features/{train,val}2014_image_ids.npy, "
               "or features/{train,val}2014.npz with arrays 'image_ids' and 'features' (loaded whole)]")
VQA2_HOW = ("questions/annotations from https://visualqa.org/download.html; bottom-up features (36 per image) from "
            "https://github.com/peteanderson80/bottom-up-attention (trainval_36.zip, tsv), converted with "
            "python -m vqa.convert_features --tsv <tsv> --questions <train and val questions files> "
            "--out <root>/vqa2/features")
VQA2_FIX = "delete it and download it again (" + VQA2_HOW.split(";")[0] + ")"
FEATURES_FIX = "delete it and convert the features again with python -m vqa.convert_features"
# the full VQA 2.0 release (v2, train2014 / val2014): questions per file; the 3129-class assertion
# runs only when both files hold exactly these counts (vqa.pipeline.check_n_classes)
FULL_VQA2_QUESTIONS = {"train": 443_757, "val": 214_354}

_BANKS: dict = {}   # (path, size, mtime) -> (image_ids, memory-mapped features): one object per file


def _vqa2_dir(root: Path) -> Path:
    for d in (Path(root) / "vqa2", Path(root)):
        if (d / "v2_OpenEnded_mscoco_train2014_questions.json").exists():
            return d
    return Path(root) / "vqa2"


def _open_npy_bank(npy: Path, ids_npy: Path):
    """Memory-mapped features + image ids, opened once per file (both splits share the object)."""
    if not ids_npy.exists():
        raise DatasetMissingError("vqa2", ids_npy, VQA2_LAYOUT, VQA2_HOW)
    st = npy.stat()
    key = (str(npy.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _BANKS:
        reading = npy
        try:
            feats = np.load(npy, mmap_mode="r")
            reading = ids_npy
            image_ids = np.load(ids_npy)
        except Exception as e:  # a cut file: ValueError, EOFError, pickle refusals, ...
            raise data_error(reading, f"not a readable numpy file ({type(e).__name__}: {e})", FEATURES_FIX) from e
        _BANKS.clear()          # one bank open at a time
        _BANKS[key] = (image_ids, feats)
    return _BANKS[key]


def _load_features(base: Path, split: str):
    """(image_ids, features, files read); a corrupt or mis-shaped file is a DataError naming it.

    Looked up in this order: features/{split}2014.npz (legacy, loaded whole), features/{split}2014_
    features.npy (+ _image_ids.npy), features/trainval_features.npy (+ _image_ids.npy; the converter's
    output, shared by both splits). The .npy layouts are memory-mapped, never read whole."""
    fdir = base / "features"
    npz = fdir / f"{split}2014.npz"
    npy, ids_npy = fdir / f"{split}2014_features.npy", fdir / f"{split}2014_image_ids.npy"
    bank, bank_ids = fdir / f"{FEATURES_BANK}_features.npy", fdir / f"{FEATURES_BANK}_image_ids.npy"
    if npz.exists():
        files = [npz]
        try:
            with np.load(npz) as z:
                image_ids, feats = np.asarray(z["image_ids"]), z["features"]
        except KeyError as e:
            raise data_error(npz, f"no array {e} (expected 'image_ids' and 'features')", FEATURES_FIX) from e
        except Exception as e:  # a cut file: ValueError, EOFError, zipfile.BadZipFile, pickle refusals, ...
            raise data_error(npz, f"not a readable numpy file ({type(e).__name__}: {e})", FEATURES_FIX) from e
    elif npy.exists():
        files = [npy, ids_npy]
        image_ids, feats = _open_npy_bank(npy, ids_npy)
    elif bank.exists():
        files = [bank, bank_ids]
        image_ids, feats = _open_npy_bank(bank, bank_ids)
    else:
        raise DatasetMissingError("vqa2", bank, VQA2_LAYOUT, VQA2_HOW)
    if image_ids.ndim != 1 or feats.ndim != 3 or len(feats) != len(image_ids):
        raise data_error(files[0], f"'features' {tuple(feats.shape)} and 'image_ids' {tuple(image_ids.shape)} "
                                   "do not form (N, K, D) and (N,)", FEATURES_FIX)
    return image_ids.astype(np.int64), feats, files


@register_dataset("vqa2", splits=("train", "val"),
                  description="VQA 2.0 questions/annotations + precomputed bottom-up features (36 x D per image)")
def load_vqa2(split: str, root) -> VQA2Data:
    base = _vqa2_dir(root)
    qf = base / f"v2_OpenEnded_mscoco_{split}2014_questions.json"
    af = base / f"v2_mscoco_{split}2014_annotations.json"
    for f in (qf, af):
        if not f.exists():
            raise DatasetMissingError("vqa2", f, VQA2_LAYOUT, VQA2_HOW)
    image_ids, feats, feature_files = _load_features(base, split)
    pos = {int(i): k for k, i in enumerate(image_ids)}
    questions = _field(qf, _read_json(qf, VQA2_FIX), "questions", fix=VQA2_FIX)
    annotations = _field(af, _read_json(af, VQA2_FIX), "annotations", fix=VQA2_FIX)
    anns = {_field(af, a, "question_id", fix=VQA2_FIX): a for a in annotations}
    qs, labels, img, all_ans, raw_ans, qids, missing = [], [], [], [], [], [], []
    for q in questions:
        qid = _field(qf, q, "question_id", fix=VQA2_FIX)
        if qid not in anns:
            raise data_error(af, f"no annotation for question_id {qid} of {qf.name}",
                             "use the questions and annotations files of the same split and release")
        a = anns[qid]
        image_id = int(_field(qf, q, "image_id", fix=VQA2_FIX))
        if image_id not in pos:   # no features for this image: left out, counted (vqa.pipeline checks the share)
            missing.append(image_id)
            continue
        qs.append(_field(qf, q, "question", fix=VQA2_FIX))
        labels.append(normalize_answer(_field(af, a, "multiple_choice_answer", fix=VQA2_FIX)))
        raw = [str(_field(af, x, "answer", fix=VQA2_FIX)) for x in _field(af, a, "answers", fix=VQA2_FIX)]
        raw_ans.append(raw)
        all_ans.append([normalize_answer(x) for x in raw])
        img.append(pos[image_id])
        qids.append(qid)
    return VQA2Data("vqa2", split, qs, labels, np.asarray(img, np.int64), None, sorted(set(labels)),
                    str(base), all_answers=all_ans, fingerprint=fingerprint_files([qf, af] + feature_files, base=base),
                    features=feats, question_ids=np.asarray(qids, np.int64), image_ids=image_ids,
                    skipped=len(missing), missing_image_ids=sorted(set(missing)), n_questions_file=len(questions),
                    questions_file=str(qf), features_file=str(feature_files[0]), raw_answers=raw_ans)


def answer_vocab(label_lists: Sequence[Sequence[str]], min_count: int) -> list[str]:
    """Answers (normalised ``multiple_choice_answer``) occurring at least ``min_count`` times over
    the given label lists (train + val, as the usual Anderson et al. re-implementation does); sorted
    by count, then name."""
    counts = Counter(a for labels in label_lists for a in labels)
    keep = [(a, c) for a, c in counts.items() if c >= min_count]
    return [a for a, _ in sorted(keep, key=lambda t: (-t[1], t[0]))]
