import gzip
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.data import (DatasetMissingError, DetectionData, ImageClassification, available_datasets,
                         boxes_to_mask, fingerprint_files, load_dataset, read_idx, train_val_split)
from common.errors import DataError
from vqa.data import VQAData

REPO = Path(__file__).resolve().parents[1]
VQA2_FIXTURE = Path(__file__).parent / "fixtures" / "vqa2"


def test_mnist5k_real_digits():
    full = load_dataset("mnist5k", "all")
    assert isinstance(full, ImageClassification)
    assert full.x.shape == (5000, 28, 28, 1) and full.x.dtype == np.uint8
    assert np.array_equal(np.bincount(full.y), np.full(10, 500))
    assert full.x.max() == 255 and full.x.min() == 0
    # MNIST digits: dark background, the border is almost always empty, the centre is not
    assert full.x[:, :2].mean() < 1.0 and full.x[:, 10:18, 10:18].mean() > 60
    tr, te = load_dataset("mnist5k", "train"), load_dataset("mnist5k", "test")
    assert len(tr) == 4000 and len(te) == 1000
    assert np.array_equal(np.bincount(te.y), np.full(10, 100))       # stratified
    assert np.array_equal(load_dataset("mnist5k", "test").x, te.x)    # fixed split
    # the fingerprint is the content hash of the file read (same helper, same value)
    path = Path(full.source)
    assert full.fingerprint == fingerprint_files([path], base=path.parent, content=True)


def test_digits():
    d = load_dataset("digits", "all")
    assert d.x.shape == (1797, 8, 8, 1) and d.x.max() == 255
    assert set(np.unique(d.y)) == set(range(10))
    assert len(load_dataset("digits", "train")) + len(load_dataset("digits", "test")) == 1797
    assert Path(d.source).name == "digits.csv.gz" and Path(d.source).is_file()


def test_easyvqa_counts():
    tr = load_dataset("easyvqa", "train")
    assert isinstance(tr, VQAData)
    assert len(tr) == 38575 and tr.images.shape == (4000, 64, 64, 3)
    assert len(tr.answer_vocab) == 13 and {"yes", "no", "circle", "teal"} <= set(tr.answer_vocab)
    assert sum(a in ("yes", "no") for a in tr.answers) == 28407        # the package README's count
    assert tr.image_index.min() == 0 and tr.image_index.max() == 3999
    te = load_dataset("easyvqa", "test")
    assert len(te) == 9673 and te.images.shape[0] == 1000
    assert sum(a in ("yes", "no") for a in te.answers) == 7136
    assert te.describe()["fingerprint"].startswith("sha256:") and te.fingerprint != tr.fingerprint


def test_chapter_dataset_found_without_importing_the_chapter(tmp_path):
    """A fresh interpreter that imports only common.data (from an unrelated folder) gets easyvqa:
    the registry imports the module declared under the icv.datasets entry points."""
    code = ("import sys; from common.data import load_dataset; assert 'vqa.data' not in sys.modules; "
            "d = load_dataset('easyvqa', 'test'); print(type(d).__module__, type(d).__name__, len(d))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["vqa.data", "VQAData", "9673"]


@pytest.mark.parametrize("name,split,folder", [("cifar100", "train", "cifar-100-python"),
                                               ("cifar10", "test", "test_batch"),
                                               ("tiny-imagenet", "train", "tiny-imagenet-200"),
                                               ("imagenet", "val", "imagenet"),
                                               ("mnist", "test", "t10k-images-idx3-ubyte"),
                                               ("fashion-mnist", "train", "FashionMNIST"),
                                               ("notmnist_small", "all", "notMNIST_small"),
                                               ("voc2007", "test", "VOC2007"),
                                               ("coco2014", "val", "val2014")])
def test_missing_real_dataset_is_a_clear_error(tmp_path, name, split, folder):
    with pytest.raises(DatasetMissingError) as e:
        load_dataset(name, split, data_root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and folder in msg and "expected layout" in msg and "how to obtain" in msg


def test_missing_data_root_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("ICV_DATA_ROOT", raising=False)
    with pytest.raises(DatasetMissingError, match="ICV_DATA_ROOT"):
        load_dataset("cifar10", "train")


def test_unknown_dataset_and_split():
    with pytest.raises(KeyError):
        load_dataset("nope")
    with pytest.raises(ValueError):
        load_dataset("easyvqa", "val")
    assert {"mnist5k", "digits", "easyvqa", "vqa2", "imagenet", "cifar100", "voc2007", "coco2014"} <= set(available_datasets())


def test_train_val_split_deterministic_and_disjoint():
    y = np.repeat(np.arange(5), 20)
    a_tr, a_va = train_val_split(100, 0.2, seed=3, labels=y)
    b_tr, b_va = train_val_split(100, 0.2, seed=3, labels=y)
    assert np.array_equal(a_tr, b_tr) and np.array_equal(a_va, b_va)
    assert len(np.intersect1d(a_tr, a_va)) == 0 and len(a_tr) + len(a_va) == 100
    assert np.array_equal(np.bincount(y[a_va]), np.full(5, 4))
    c_tr, _ = train_val_split(100, 0.2, seed=4, labels=y)
    assert not np.array_equal(a_tr, c_tr)


# --------------------------------------------------------------------------------------------------
# Tiny layouts
# --------------------------------------------------------------------------------------------------
def _idx_images(imgs: np.ndarray) -> bytes:
    return struct.pack(">IIII", 2051, *imgs.shape) + imgs.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def make_mnist(root: Path, imgs=None, labels=(3, 1, 4, 1, 5), gz=False, folder="MNIST") -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, np.uint8)
    if imgs is None:
        imgs = (np.arange(len(labels) * 28 * 28).reshape(len(labels), 28, 28) % 256).astype(np.uint8)
    for prefix in ("train", "t10k"):
        for stem, data in ((f"{prefix}-images-idx3-ubyte", _idx_images(imgs)), (f"{prefix}-labels-idx1-ubyte", _idx_labels(labels))):
            if gz:
                (raw / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / stem).write_bytes(data)
    return raw


def make_cifar10(root: Path, n=4) -> Path:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / f, "wb") as fh:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}, fh)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"]}, fh)
    return base


def make_cifar100(root: Path, n=3) -> Path:
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    for f in ("train", "test"):
        with open(base / f, "wb") as fh:
            pickle.dump({"data": np.zeros((n, 3072), np.uint8), "fine_labels": [0, 99, 5][:n]}, fh)
    with open(base / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh)
    return base


def make_notmnist(root: Path) -> Path:
    from PIL import Image
    base = root / "notMNIST_small"
    for c in "ABCDEFGHIJ":
        (base / c).mkdir(parents=True)
        Image.fromarray(np.full((28, 28), ord(c), np.uint8)).save(base / c / "a.png")
    return base


def make_tiny_imagenet(root: Path) -> Path:
    from PIL import Image
    base = root / "tiny-imagenet-200"
    wnids = ["n01", "n02"]
    for w in wnids:
        (base / "train" / w / "images").mkdir(parents=True)
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(base / "train" / w / "images" / f"{w}_0.JPEG")
    (base / "wnids.txt").write_text("\n".join(wnids))
    (base / "val" / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(base / "val" / "images" / "val_0.JPEG")
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t10\t10\n")
    return base


VOC_XML = """<annotation><filename>{id}.jpg</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
VOC_OBJ = ("<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
           "<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
# two images: a dog (1-based box 3..10 x 2..8) and a person; a difficult cat and a dog
VOC_OBJECTS = {"000001": (32, 24, [("dog", 0, 3, 2, 10, 8), ("person", 0, 20, 5, 30, 20)]),
               "000002": (20, 16, [("cat", 1, 1, 1, 5, 5), ("dog", 0, 6, 6, 20, 16)])}


def make_voc(root: Path) -> Path:
    from PIL import Image
    path = root / "VOCdevkit" / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (path / d).mkdir(parents=True)
    for i, (w, h, objs) in VOC_OBJECTS.items():
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path / "JPEGImages" / f"{i}.jpg")
        objects = "".join(VOC_OBJ.format(name=n, difficult=d, x0=a, y0=b, x1=c, y1=e) for n, d, a, b, c, e in objs)
        (path / "Annotations" / f"{i}.xml").write_text(VOC_XML.format(id=i, w=w, h=h, objects=objects))
    (path / "ImageSets" / "Main" / "test.txt").write_text("\n".join(VOC_OBJECTS) + "\n")
    return path


COCO_JSON = {
    "images": [{"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "width": 20, "height": 10},
               {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "width": 8, "height": 8}],
    # category ids are not contiguous (COCO skips 12, 26, ...): labels index the sorted ids
    "categories": [{"id": 1, "name": "person"}, {"id": 13, "name": "stop sign"}, {"id": 90, "name": "toothbrush"}],
    "annotations": [
        {"id": 1, "image_id": 42, "category_id": 13, "bbox": [2.0, 1.0, 4.0, 3.0], "area": 12.0, "iscrowd": 0,
         "segmentation": [[2.0, 1.0, 6.0, 1.0, 6.0, 4.0, 2.0, 4.0]]},
        {"id": 2, "image_id": 42, "category_id": 90, "bbox": [10.0, 5.0, 5.0, 5.0], "area": 25.0, "iscrowd": 0,
         "segmentation": [[10.0, 5.0, 15.0, 5.0, 15.0, 10.0, 10.0, 10.0]]},
    ],
}


def make_coco(root: Path) -> Path:
    from PIL import Image
    (root / "coco" / "val2014").mkdir(parents=True)
    (root / "coco" / "annotations").mkdir(parents=True)
    for im in COCO_JSON["images"]:
        Image.fromarray(np.zeros((im["height"], im["width"], 3), np.uint8)).save(root / "coco" / "val2014" / im["file_name"])
    (root / "coco" / "annotations" / "instances_val2014.json").write_text(json.dumps(COCO_JSON))
    return root / "coco"


IMAGENET_BOX_XML = """<annotation><filename>ILSVRC2012_val_00000001</filename><size><width>16</width><height>12</height></size>
<object><name>n02</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>9</xmax><ymax>12</ymax></bndbox></object></annotation>"""


def make_imagenet(root: Path, boxes=True) -> Path:
    from PIL import Image
    base = root / "imagenet"
    for w, stem in (("n01", "ILSVRC2012_val_00000002"), ("n02", "ILSVRC2012_val_00000001")):
        (base / "val" / w).mkdir(parents=True)
        Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(base / "val" / w / f"{stem}.JPEG")
    if boxes:
        (base / "val_boxes").mkdir()
        (base / "val_boxes" / "ILSVRC2012_val_00000001.xml").write_text(IMAGENET_BOX_XML)
    return base


def make_vqa2(root: Path) -> Path:
    shutil.copytree(VQA2_FIXTURE, root / "vqa2", ignore=shutil.ignore_patterns("*.py"))
    return root / "vqa2"


# every loader under the data root, with the builder of a tiny layout for it
LAYOUTS = {("mnist", "train"): make_mnist, ("fashion-mnist", "test"): lambda r: make_mnist(r, folder="FashionMNIST"),
           ("cifar10", "train"): make_cifar10, ("cifar100", "test"): make_cifar100,
           ("notmnist_small", "all"): make_notmnist, ("tiny-imagenet", "val"): make_tiny_imagenet,
           ("voc2007", "test"): make_voc, ("coco2014", "val"): make_coco, ("imagenet", "val"): make_imagenet,
           ("vqa2", "train"): make_vqa2}


def test_every_dataset_has_a_layout_test():
    """Each registered dataset is either embedded or has a tiny layout above (so the next test
    covers it): a new loader without a fingerprint cannot slip in untested."""
    embedded = {n for n, e in available_datasets().items() if e.embedded}
    assert set(available_datasets()) - embedded == {n for n, _ in LAYOUTS}


@pytest.mark.parametrize("name,split", sorted(LAYOUTS))
def test_fingerprint_identifies_the_files(tmp_path, monkeypatch, name, split):
    """describe() has the resolved absolute source and a fingerprint: the same root twice gives the
    same one, a root whose files differ gives another."""
    a, b = tmp_path / "a", tmp_path / "b"
    made = LAYOUTS[(name, split)](a)
    LAYOUTS[(name, split)](b)
    monkeypatch.chdir(tmp_path)
    d1 = load_dataset(name, split, "a").describe()          # a relative data root
    d2 = load_dataset(name, split, a).describe()
    assert os.path.isabs(d1["source"]) and Path(d1["source"]).resolve() == Path(d1["source"])
    assert d1["source"].startswith(str(a.resolve()))
    assert d1["fingerprint"] and d1 == d2
    # b: the same layout, then one file of it changed (content and size)
    read = sorted(p for p in (b / made.relative_to(a)).rglob("*") if p.is_file())
    target = next(p for p in read if p.suffix in (".json", ".txt", ".xml", ".npz", ".png", ".jpg", ".JPEG", "")
                  and "meta" not in p.name and "wnids" not in p.name and "ImageSets" not in str(p))
    target.write_bytes(target.read_bytes() + b" ")
    try:
        d3 = load_dataset(name, split, b).describe()
    except DataError:      # formats that refuse trailing bytes: touch the mtime instead
        target.write_bytes(target.read_bytes()[:-1])
        os.utime(target, ns=(1, 1))
        d3 = load_dataset(name, split, b).describe()
    assert d3["fingerprint"] != d1["fingerprint"]


def test_fixed_subset_sorted_distinct_deterministic():
    from common.data import fixed_subset
    idx = fixed_subset(1000, 50, seed=7)
    assert len(idx) == 50 and len(set(idx.tolist())) == 50 and np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < 1000
    assert np.array_equal(idx, fixed_subset(1000, 50, seed=7))
    assert not np.array_equal(idx, fixed_subset(1000, 50, seed=8))
    # the formula capacity's and adversarial's pickers used before: their selections are unchanged
    assert np.array_equal(fixed_subset(1000, 200, seed=12345),
                          np.sort(np.random.default_rng(12345).permutation(1000)[:200]))
    # a larger n extends a smaller one's draw (both are prefixes of one permutation)
    assert set(fixed_subset(1000, 10, seed=3).tolist()) <= set(fixed_subset(1000, 20, seed=3).tolist())
    for everything in (1000, 5000, 0, None):       # no limit: all indices, in order
        assert np.array_equal(fixed_subset(1000, everything, seed=7), np.arange(1000))
    with pytest.raises(ValueError, match=">= 0"):
        fixed_subset(10, -1, seed=0)


def test_fingerprint_files_stat_and_content(tmp_path):
    (tmp_path / "a").mkdir()
    f, g = tmp_path / "a" / "x.bin", tmp_path / "a" / "y.bin"
    f.write_bytes(b"12345")
    g.write_bytes(b"abc")
    stat = fingerprint_files([f, g], base=tmp_path / "a")
    assert stat.startswith("stat:") and stat == fingerprint_files([g, f], base=tmp_path / "a")   # order-free
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1))
    assert fingerprint_files([f, g], base=tmp_path / "a") != stat                                 # mtime counts
    content = fingerprint_files([f, g], base=tmp_path / "a", content=True)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert content == fingerprint_files([tmp_path / "b" / "x.bin", tmp_path / "b" / "y.bin"], base=tmp_path / "b", content=True)
    f.write_bytes(b"12346")                                                                        # same size
    assert fingerprint_files([f, g], base=tmp_path / "a", content=True) != content


# --------------------------------------------------------------------------------------------------
# MNIST idx files: raw, .gz, and every way they break
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_layout_loads(tmp_path, gz):
    """The real-data path: MNIST in torchvision's raw idx format under <root>/MNIST/raw, raw or .gz."""
    imgs = (np.arange(5 * 28 * 28).reshape(5, 28, 28) % 256).astype(np.uint8)
    make_mnist(tmp_path, imgs, gz=gz)
    ds = load_dataset("mnist", "train", tmp_path)
    assert ds.x.shape == (5, 28, 28, 1) and list(ds.y) == [3, 1, 4, 1, 5]
    assert np.array_equal(ds.x[..., 0], imgs) and ds.name == "mnist" and len(ds.classes) == 10


@pytest.mark.parametrize("damage,expected", [
    (lambda b: b[:-100], "truncated"),
    (lambda b: b[:10], "truncated inside the header"),
    (lambda b: b"\x89PNG garbage" * 50, "not an idx file"),
    (lambda b: b"", "empty"),
    (lambda b: struct.pack(">I", 2049) + b[8:], "dimensions"),
])
def test_broken_mnist_idx_is_a_data_error_naming_the_file(tmp_path, damage, expected):
    raw = make_mnist(tmp_path)
    f = raw / "train-images-idx3-ubyte"
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(DataError, match=expected) as e:
        load_dataset("mnist", "train", tmp_path)
    assert str(f) in str(e.value) and "download" in str(e.value)
    assert not isinstance(e.value, FileNotFoundError)          # not reported as "not found"


def test_broken_gz_idx_and_count_mismatch(tmp_path):
    raw = make_mnist(tmp_path, gz=True)
    f = raw / "train-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-8])                          # a cut gzip stream
    with pytest.raises(DataError, match="gzip") as e:
        load_dataset("mnist", "train", tmp_path)
    assert str(f) in str(e.value)
    f.write_bytes(gzip.compress(_idx_labels(np.array([1, 2, 3]))))
    with pytest.raises(DataError, match="5 images but train-labels-idx1-ubyte.gz has 3 labels"):
        load_dataset("mnist", "train", tmp_path)


def test_read_idx_dtype_and_shape(tmp_path):
    f = tmp_path / "x-idx2"
    f.write_bytes(struct.pack(">BBBB", 0, 0, 0x0C, 2) + struct.pack(">II", 2, 3) + np.arange(6, dtype=">i4").tobytes())
    assert np.array_equal(read_idx(f, 2), np.arange(6).reshape(2, 3))


# --------------------------------------------------------------------------------------------------
# CIFAR, notMNIST, VQA files that are there but broken
# --------------------------------------------------------------------------------------------------
def test_cifar_layouts_load(tmp_path):
    c10 = load_dataset("cifar10", "train", make_cifar10(tmp_path / "a").parent)
    assert c10.x.shape == (20, 32, 32, 3) and c10.classes[9] == "truck" and list(c10.y[:4]) == [0, 1, 2, 3]
    with open(Path(c10.source) / "data_batch_1", "rb") as fh:
        first = pickle.load(fh)["data"][0]
    assert np.array_equal(c10.x[0], first.reshape(3, 32, 32).transpose(1, 2, 0))   # CHW rows -> HWC
    c100 = load_dataset("cifar100", "train", make_cifar100(tmp_path / "b").parent)
    assert len(c100.classes) == 100 and list(c100.y) == [0, 99, 5]


@pytest.mark.parametrize("damage", ["cut", "garbage", "not a dict"])
def test_corrupt_cifar_batch_is_a_data_error(tmp_path, damage):
    base = make_cifar10(tmp_path)
    f = base / "data_batch_3"
    if damage == "cut":
        f.write_bytes(f.read_bytes()[:500])
    elif damage == "garbage":
        f.write_bytes(b"\x00\x01garbage" * 20)
    else:
        f.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="corrupt") as e:
        load_dataset("cifar10", "train", tmp_path)
    assert str(f) in str(e.value) and "download" in str(e.value)


class _PlantedPayload:
    """What a malicious pickle carries: unpickling it calls a function (here: creating a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


_CIFAR_FILES = [("cifar10", make_cifar10, f) for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch",
                                                                                                  "batches.meta"]]
_CIFAR_FILES += [("cifar100", make_cifar100, f) for f in ("train", "test", "meta")]


@pytest.mark.parametrize("name,make,file", _CIFAR_FILES, ids=[f"{n}-{f}" for n, _, f in _CIFAR_FILES])
def test_planted_pickle_payload_never_runs(tmp_path, name, make, file):
    """A `__reduce__` payload planted in any file of a CIFAR folder is refused before it runs; the
    DataError names the file (torchvision's checked loader refused it too; plain pickle.load ran it)."""
    base = make(tmp_path / "root")
    marker = tmp_path / "payload-ran"
    target = base / file
    genuine = pickle.loads(target.read_bytes())
    first_key = next(iter(genuine))
    target.write_bytes(pickle.dumps({**genuine, first_key: _PlantedPayload(marker)}))
    split = "test" if file in ("test_batch", "test") else "train"
    with pytest.raises(DataError, match="refused") as e:
        load_dataset(name, split, tmp_path / "root")
    assert not marker.exists()
    assert str(target) in str(e.value) and "nothing in it was run" in str(e.value)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_genuine_cifar_batches_still_load(tmp_path, protocol):
    """The real files are Python 2 pickles of numpy 1 arrays (``numpy.core.multiarray._reconstruct``);
    batches like that, and ones written today, load through the restricted unpickler."""
    from common.data import safe_unpickle
    base = make_cifar10(tmp_path)
    rng = np.random.default_rng(1)
    batch = {"batch_label": "training batch 1 of 5", "data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
             "labels": [3, 1, 4, 1], "filenames": [b"a.png", b"b.png", b"c.png", b"d.png"]}
    raw = pickle.dumps(batch, protocol=protocol)
    if protocol == 2:
        raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")   # numpy 1's module name
        assert b"numpy.core.multiarray\n_reconstruct" in raw
    (base / "data_batch_1").write_bytes(raw)
    got = safe_unpickle(base / "data_batch_1")
    assert np.array_equal(got["data"], batch["data"]) and got["filenames"] == batch["filenames"]
    ds = load_dataset("cifar10", "train", tmp_path)
    assert list(ds.y[:4]) == [3, 1, 4, 1]
    assert np.array_equal(ds.x[0], batch["data"][0].reshape(3, 32, 32).transpose(1, 2, 0))


@pytest.mark.parametrize("layout", ["npz", "npy"])
def test_planted_pickle_in_vqa_features_never_runs(tmp_path, layout):
    """The VQA feature files are read by np.load, which unpickles nothing (allow_pickle=False): an
    object array carrying a payload is a DataError naming the file, and the payload never runs."""
    base = make_vqa2(tmp_path)
    marker = tmp_path / "payload-ran"
    planted = np.array([_PlantedPayload(marker)], dtype=object)
    fdir = base / "features"
    if layout == "npz":
        target = fdir / "train2014.npz"
        with np.load(target) as z:
            np.savez(target, features=z["features"], image_ids=planted)
    else:
        with np.load(fdir / "train2014.npz") as z:
            np.save(fdir / "train2014_features.npy", z["features"])
        (fdir / "train2014.npz").unlink()
        target = fdir / "train2014_image_ids.npy"
        np.save(target, planted, allow_pickle=True)
    with pytest.raises(DataError) as e:
        load_dataset("vqa2", "train", tmp_path)
    assert not marker.exists()
    assert str(target) in str(e.value)


def test_notmnist_unreadable_skipped_and_counted(tmp_path):
    """notMNIST-small layout: readable PNGs load, an unreadable one is skipped and counted."""
    base = make_notmnist(tmp_path)
    (base / "A" / "broken.png").write_bytes(b"not a png")
    (base / "B" / "empty.png").write_bytes(b"")
    ds = load_dataset("notmnist_small", "all", tmp_path)
    assert ds.x.shape == (10, 28, 28, 1) and list(ds.y) == list(range(10)) and ds.skipped == 2
    assert ds.describe()["skipped_unreadable"] == 2


def test_notmnist_wrong_size_is_a_data_error(tmp_path):
    """A readable 32x32 PNG among the 28x28 letters: raised (naming it), neither resized nor dropped."""
    from PIL import Image
    base = make_notmnist(tmp_path)
    odd = base / "C" / "big.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(odd)
    with pytest.raises(DataError, match="32x32") as e:
        load_dataset("notmnist_small", "all", tmp_path)
    assert str(odd) in str(e.value)


@pytest.mark.parametrize("file,damage,expected", [
    ("v2_OpenEnded_mscoco_train2014_questions.json", lambda s: s[:-40], "not valid JSON"),
    ("v2_mscoco_train2014_annotations.json", lambda s: s.replace('"multiple_choice_answer"', '"mca"', 1),
     "multiple_choice_answer"),
    ("v2_mscoco_train2014_annotations.json", lambda s: json.dumps({"annotations": json.loads(s)["annotations"][1:]}),
     "no annotation for question_id"),
    ("v2_OpenEnded_mscoco_train2014_questions.json", lambda s: json.dumps({"qs": []}), r"\['questions'\]"),
    ("features/train2014.npz", lambda s: s[:100], "not a readable numpy file"),
])
def test_malformed_vqa2_files_are_data_errors(tmp_path, file, damage, expected):
    base = make_vqa2(tmp_path)
    f = base / file
    if f.suffix == ".npz":
        f.write_bytes(damage(f.read_bytes()))
    else:
        f.write_text(damage(f.read_text()))
    with pytest.raises(DataError, match=expected) as e:
        load_dataset("vqa2", "train", tmp_path)
    assert str(f) in str(e.value) and "fix:" in str(e.value)


def test_malformed_easyvqa_json_is_a_data_error(tmp_path, monkeypatch):
    import vqa.data
    pkg = tmp_path / "easy_vqa"
    (pkg / "data" / "test").mkdir(parents=True)
    (pkg / "data" / "answers.txt").write_text("yes\nno\n")
    (pkg / "data" / "test" / "questions.json").write_text('[["is it red?", "yes", 0], ["is')
    monkeypatch.setattr(vqa.data, "package_dir", lambda name: pkg)
    with pytest.raises(DataError, match="not valid JSON") as e:
        load_dataset("easyvqa", "test")
    assert str(pkg / "data" / "test" / "questions.json") in str(e.value)
    (pkg / "data" / "test" / "questions.json").write_text('[["is it red?", "yes"]]')
    with pytest.raises(DataError, match=r"\[question, answer, image id\]"):
        load_dataset("easyvqa", "test")


# --------------------------------------------------------------------------------------------------
# Boxes: VOC 2007, COCO 2014, ImageNet val
# --------------------------------------------------------------------------------------------------
def test_voc2007_boxes_zero_based_with_classes(tmp_path):
    make_voc(tmp_path)
    ds = load_dataset("voc2007", "test", tmp_path)
    assert isinstance(ds, DetectionData) and len(ds) == 2 and len(ds.classes) == 20
    dog, person, cat = ds.classes.index("dog"), ds.classes.index("person"), ds.classes.index("cat")
    t0, t1 = ds.targets
    assert list(t0["labels"]) == [dog, person] and list(t1["labels"]) == [cat, dog]
    np.testing.assert_array_equal(t0["boxes"], [[2, 1, 9, 7], [19, 4, 29, 19]])   # 1-based -> 0-based
    assert list(t1["difficult"]) == [True, False] and ds.image_names == ["000001", "000002"]
    assert ds.image_sizes == [(32, 24), (20, 16)] and ds.class_ids(1) == sorted([cat, dog])
    img, target = ds[1]
    assert img.size == (20, 16) and target is t1


def test_voc2007_masks_match_torchray(tmp_path):
    """class_mask is TorchRay's voc_as_mask on torchvision's VOCDetection labels of the same files."""
    pytest.importorskip("torchray")
    from torchray.benchmark.datasets import voc_as_mask
    from torchvision.datasets import VOCDetection
    make_voc(tmp_path)
    ds = load_dataset("voc2007", "test", tmp_path)
    tv = VOCDetection(str(tmp_path), year="2007", image_set="test", download=False)
    for i in range(len(ds)):
        label = tv[i][1]
        for c in ds.class_ids(i):
            np.testing.assert_array_equal(ds.class_mask(i, c), voc_as_mask(label, c).numpy())


def test_coco2014_boxes_labels_and_masks(tmp_path):
    pytest.importorskip("pycocotools")
    make_coco(tmp_path)
    ds = load_dataset("coco2014", "val", tmp_path)
    assert ds.classes == ["person", "stop sign", "toothbrush"]
    assert ds.image_names == ["COCO_val2014_000000000007", "COCO_val2014_000000000042"]   # by image id
    assert len(ds.targets[0]["labels"]) == 0 and ds.targets[0]["boxes"].shape == (0, 4)
    t = ds.targets[1]
    assert list(t["labels"]) == [1, 2]                 # category ids 13, 90 -> indices in sorted ids
    np.testing.assert_allclose(t["boxes"], [[1.5, 0.5, 5.5, 3.5], [9.5, 4.5, 14.5, 9.5]])
    # the box covers the pixels whose centre it contains: columns 2..5, rows 1..3
    expected = np.zeros((10, 20), bool)
    expected[1:4, 2:6] = True
    np.testing.assert_array_equal(boxes_to_mask(t["boxes"][:1], (10, 20)), expected)
    assert ds.class_mask(1, 1).shape == (10, 20) and ds.class_mask(1, 1)[2, 3] and not ds.class_mask(1, 1)[8, 12]
    assert not ds.class_mask(1, 0).any()


def test_malformed_coco_json_is_a_data_error(tmp_path):
    pytest.importorskip("pycocotools")
    coco = make_coco(tmp_path)
    f = coco / "annotations" / "instances_val2014.json"
    f.write_text(f.read_text()[:-10])
    with pytest.raises(DataError, match="not valid JSON") as e:
        load_dataset("coco2014", "val", tmp_path)
    assert str(f) in str(e.value)


def test_imagenet_val_boxes_where_present(tmp_path):
    make_imagenet(tmp_path)
    ds = load_dataset("imagenet", "val", tmp_path)
    assert ds.classes == ["n01", "n02"] and len(ds) == 2
    by_class = {ds.dataset.samples[i][1]: ds.boxes[i] for i in range(2)}
    assert by_class[0].shape == (0, 4)                                    # no box file for that image
    np.testing.assert_array_equal(by_class[1], [[1, 2, 8, 11]])           # 1-based -> 0-based
    assert ds.describe()["with_boxes"] == 1
    no_boxes = load_dataset("imagenet", "val", make_imagenet(tmp_path / "b", boxes=False).parent)
    assert no_boxes.boxes is None


def test_broken_xml_is_a_data_error(tmp_path):
    path = make_voc(tmp_path)
    f = path / "Annotations" / "000002.xml"
    f.write_text("<annotation><object>")
    with pytest.raises(DataError, match="malformed XML") as e:
        load_dataset("voc2007", "test", tmp_path)
    assert str(f) in str(e.value)
