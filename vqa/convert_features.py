"""Convert the bottom-up-attention ``trainval_36`` TSV into the one memory-mapped feature bank the
VQA 2.0 loader reads (set-up step of the paper preset; vqa/README.md).

    python -m vqa.convert_features \\
        --tsv D/vqa2/trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv \\
        --questions D/vqa2/v2_OpenEnded_mscoco_train2014_questions.json \\
                    D/vqa2/v2_OpenEnded_mscoco_val2014_questions.json \\
        --out D/vqa2/features

writes ``<out>/trainval_features.npy`` (n_images, 36, 2048) float16 and ``<out>/trainval_image_ids.npy``
(n_images,) int64, row i of the first being the regions of image ``image_ids[i]``. Train and val
share the file: the loader opens it once with ``np.load(mmap_mode="r")`` and reads only the rows a
batch needs, so neither the conversion nor training ever holds the bank (18 GB in float16) in memory.

The TSV (Anderson et al., github.com/peteanderson80/bottom-up-attention) has one row per image and
no header: image_id, image_w, image_h, num_boxes, boxes, features; ``boxes`` and ``features`` are
base64 strings of float32 arrays (num_boxes x 4, num_boxes x 2048). A feature field is ~400 kB, far
above csv's default field limit, hence the raised limit. Rows are streamed: the output is written
row by row into a preallocated memory-mapped .npy (its row count is the number of question-file
images, or the TSV's line count without --questions) and shrunk in place at the end when fewer rows
were written. ``--questions`` keeps only the images those files ask about (the official trainval TSV
holds exactly the 123,287 train + val images; other rows are counted and skipped).
"""
from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from common.data import data_error

TSV_FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
BANK_NAME = "trainval"          # <out>/trainval_features.npy + <out>/trainval_image_ids.npy
TSV_FIX = ("download trainval_36.zip again from https://github.com/peteanderson80/bottom-up-attention "
           "(the fixed 36-box features) and rerun python -m vqa.convert_features")


def bank_paths(out_dir: str | os.PathLike, name: str = BANK_NAME) -> tuple[Path, Path]:
    out = Path(out_dir)
    return out / f"{name}_features.npy", out / f"{name}_image_ids.npy"


def question_image_ids(files: Iterable[str | os.PathLike]) -> set[int]:
    """The image ids the VQA question files ask about."""
    ids: set[int] = set()
    for f in files:
        try:
            qs = json.loads(Path(f).read_bytes())["questions"]
            ids.update(int(q["image_id"]) for q in qs)
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
            raise data_error(f, f"not a VQA questions file ({type(e).__name__}: {e})",
                             "download the questions file again from https://visualqa.org/download.html") from e
    return ids


def _rows(tsv: Path):
    """(line number, row) of the TSV, streamed; the field size limit raised for the base64 columns."""
    csv.field_size_limit(sys.maxsize)
    with open(tsv, newline="") as f:
        for line_no, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
            yield line_no, row


def _decode(tsv: Path, line_no: int, row: Sequence[str], k: int) -> tuple[int, np.ndarray]:
    if len(row) != len(TSV_FIELDS):
        raise data_error(tsv, f"line {line_no} has {len(row)} columns, expected {len(TSV_FIELDS)} "
                              f"({', '.join(TSV_FIELDS)})", TSV_FIX)
    try:
        image_id, num_boxes = int(row[0]), int(row[3])
        feats = np.frombuffer(base64.b64decode(row[5]), dtype=np.float32)
    except (ValueError, TypeError) as e:    # binascii.Error is a ValueError
        raise data_error(tsv, f"line {line_no}: unreadable image_id / num_boxes / features ({e})", TSV_FIX) from e
    if num_boxes < k or feats.size % num_boxes:
        raise data_error(tsv, f"line {line_no} (image {image_id}): {num_boxes} boxes and {feats.size} feature "
                              f"values; need at least {k} boxes of equal size (the fixed-36 file)", TSV_FIX)
    return image_id, feats.reshape(num_boxes, -1)[:k]


def check_representable(tsv: Path, line_no: int, image_id: int, x: np.ndarray, dtype: np.dtype) -> None:
    """Refuse a row the bank's dtype cannot hold: a value beyond float16's largest (65504) would be
    stored as inf (numpy casts silently) and make every model that reads the image's regions give
    NaN; a NaN or inf already in the file is refused too. Bottom-up features are ReLU activations of
    a few units to a few hundred, so such a value means a wrong or corrupt file, or a bank that needs
    ``--dtype float32``."""
    finite = np.isfinite(x)
    if not finite.all():
        raise data_error(tsv, f"line {line_no} (image {image_id}): {int((~finite).sum())} feature values are NaN or "
                              f"infinite", TSV_FIX)
    limit = float(np.finfo(dtype).max)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > limit:
        n = int((np.abs(x) > limit).sum())
        raise data_error(tsv, f"line {line_no} (image {image_id}): {n} feature values beyond {dtype}'s largest "
                              f"{limit:g} (largest magnitude {peak:g}); stored as {dtype} they would become inf",
                         f"convert with --dtype float32 (twice the size) if such values are meant (bottom-up "
                         f"features are far below this); else {TSV_FIX}")


def _shrink_npy(path: Path, n_rows: int) -> None:
    """Set the first dimension of a C-order .npy to ``n_rows`` in place (header rewritten at the
    same length, file truncated): no copy of the data."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(f))
        offset = f.tell()
        assert not fortran
        new_shape = (n_rows,) + tuple(shape[1:])
        body = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
            np.lib.format.dtype_to_descr(dtype), new_shape)
        len_bytes = 2 if version == (1, 0) else 4
        pad = offset - (6 + 2 + len_bytes) - len(body) - 1
        assert pad >= 0, "the new header is longer than the old one"
        header = body + " " * pad + "\n"
        f.seek(6 + 2)
        f.write(len(header).to_bytes(len_bytes, "little"))
        f.write(header.encode("latin1"))
        f.truncate(offset + n_rows * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)


def convert(tsv: str | os.PathLike, out_dir: str | os.PathLike, questions: Sequence[str | os.PathLike] = (),
            k: int = 36, dtype: str = "float16", name: str = BANK_NAME, progress: bool = True) -> dict:
    """Stream ``tsv`` into ``<out_dir>/<name>_features.npy`` + ``<name>_image_ids.npy``; returns counts."""
    tsv, out_dir = Path(tsv), Path(out_dir)
    if not tsv.exists():
        raise FileNotFoundError(f"{tsv}: no such file. {TSV_FIX}")
    wanted = question_image_ids(questions) if questions else None
    if wanted is not None:
        n_max = len(wanted)
    else:
        with open(tsv, "rb") as f:       # one cheap pass for the row count
            n_max = sum(1 for _ in f)
    rows = _rows(tsv)
    try:
        first_line, first = next(rows)
    except StopIteration:
        raise data_error(tsv, "empty file", TSV_FIX) from None
    _, x0 = _decode(tsv, first_line, first, k)
    out_dir.mkdir(parents=True, exist_ok=True)
    feat_path, ids_path = bank_paths(out_dir, name)
    part = feat_path.with_name(feat_path.name + ".part")
    bank = np.lib.format.open_memmap(part, mode="w+", dtype=np.dtype(dtype), shape=(n_max, k, x0.shape[1]))
    ids: list[int] = []
    seen: set[int] = set()
    skipped_unasked = duplicates = 0
    from common.progress import progress as show_progress
    bar = show_progress(desc="trainval_36 tsv -> feature bank", total=n_max, unit="img", enabled=progress,
                        mininterval=2.0)

    def rest():
        yield first_line, first
        yield from rows
    for line_no, row in rest():
        image_id, x = _decode(tsv, line_no, row, k)
        if wanted is not None and image_id not in wanted:
            skipped_unasked += 1
            continue
        if image_id in seen:
            duplicates += 1
            continue
        if len(ids) == n_max:
            raise data_error(tsv, f"more rows than the {n_max} counted", TSV_FIX)
        if x.shape[1] != bank.shape[2]:
            raise data_error(tsv, f"line {line_no} (image {image_id}): feature size {x.shape[1]}, the first row "
                                  f"has {bank.shape[2]}", TSV_FIX)
        check_representable(tsv, line_no, image_id, x, bank.dtype)
        bank[len(ids)] = x              # float32 -> the bank's dtype
        ids.append(image_id)
        seen.add(image_id)
        bar.update(1)
    bar.close()
    bank.flush()
    del bank
    if len(ids) < n_max:
        _shrink_npy(part, len(ids))
    np.save(ids_path, np.asarray(ids, np.int64))
    os.replace(part, feat_path)         # the loader never sees a half-written bank
    missing = sorted(wanted - seen) if wanted is not None else []
    return {"images": len(ids), "features": str(feat_path), "image_ids": str(ids_path),
            "shape": [len(ids), k, int(x0.shape[1])], "dtype": dtype,
            "bytes": len(ids) * k * int(x0.shape[1]) * np.dtype(dtype).itemsize,
            "skipped_not_in_questions": skipped_unasked, "duplicates": duplicates,
            "question_images_without_features": len(missing), "some_missing": missing[:10]}


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m vqa.convert_features", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tsv", required=True, help="trainval_resnet101_faster_rcnn_genome_36.tsv")
    ap.add_argument("--questions", nargs="*", default=[],
                    help="VQA question files: keep only the images they ask about (recommended: train + val)")
    ap.add_argument("--out", required=True, help="the data root's features/ folder (<root>/vqa2/features)")
    ap.add_argument("--k", type=int, default=36, help="regions kept per image (36)")
    ap.add_argument("--dtype", default="float16", choices=("float16", "float32"),
                    help="bank dtype (float16: 18 GB for the 123,287 trainval images; float32: 36 GB)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    info = convert(a.tsv, a.out, a.questions, a.k, a.dtype, progress=not a.no_progress)
    print(f"wrote {info['features']} {tuple(info['shape'])} {info['dtype']} ({info['bytes'] / 2**30:.2f} GiB) "
          f"and {info['image_ids']}")
    print(f"  TSV rows not asked about by the question files: {info['skipped_not_in_questions']}; "
          f"duplicate rows: {info['duplicates']}")
    if info["question_images_without_features"]:
        print(f"  WARNING: {info['question_images_without_features']} images of the question files have no "
              f"row in the TSV (e.g. {info['some_missing']}); the loader stops if too many of their questions "
              f"lack features (VQAConfig.max_missing_features)")
    return info


if __name__ == "__main__":
    main()
