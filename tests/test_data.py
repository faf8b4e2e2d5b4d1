import numpy as np
import pytest

from common.data import (DatasetMissingError, ImageClassification, VQAData, available_datasets, load_dataset,
                         train_val_split)


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


def test_digits():
    d = load_dataset("digits", "all")
    assert d.x.shape == (1797, 8, 8, 1) and d.x.max() == 255
    assert set(np.unique(d.y)) == set(range(10))
    assert len(load_dataset("digits", "train")) + len(load_dataset("digits", "test")) == 1797


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


@pytest.mark.parametrize("name,split,folder", [("cifar100", "train", "cifar-100-python"),
                                               ("tiny-imagenet", "train", "tiny-imagenet-200"),
                                               ("imagenet", "val", "imagenet"),
                                               ("mnist", "test", "MNIST"),
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
    assert {"mnist5k", "digits", "easyvqa", "imagenet", "cifar100"} <= set(available_datasets())


def test_real_folder_layout_loads(tmp_path):
    """notMNIST-small layout: readable PNGs load, an unreadable one is skipped and counted."""
    from PIL import Image
    for c in "ABCDEFGHIJ":
        (tmp_path / "notMNIST_small" / c).mkdir(parents=True)
        Image.fromarray(np.full((28, 28), ord(c), np.uint8)).save(tmp_path / "notMNIST_small" / c / "a.png")
    (tmp_path / "notMNIST_small" / "A" / "broken.png").write_bytes(b"not a png")
    ds = load_dataset("notmnist_small", "all", tmp_path)
    assert ds.x.shape == (10, 28, 28, 1) and list(ds.y) == list(range(10)) and ds.skipped == 1


def test_train_val_split_deterministic_and_disjoint():
    y = np.repeat(np.arange(5), 20)
    a_tr, a_va = train_val_split(100, 0.2, seed=3, labels=y)
    b_tr, b_va = train_val_split(100, 0.2, seed=3, labels=y)
    assert np.array_equal(a_tr, b_tr) and np.array_equal(a_va, b_va)
    assert len(np.intersect1d(a_tr, a_va)) == 0 and len(a_tr) + len(a_va) == 100
    assert np.array_equal(np.bincount(y[a_va]), np.full(5, 4))
    c_tr, _ = train_val_split(100, 0.2, seed=4, labels=y)
    assert not np.array_equal(a_tr, c_tr)


def test_mnist_idx_layout_loads(tmp_path):
    """The real-data path: MNIST in torchvision's raw idx format under <root>/MNIST/raw."""
    import struct
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.arange(5 * 28 * 28, dtype=np.uint32).reshape(5, 28, 28) % 256
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 5, 28, 28) + imgs.astype(np.uint8).tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 5) + labels.tobytes())
    ds = load_dataset("mnist", "train", tmp_path)
    assert ds.x.shape == (5, 28, 28, 1) and list(ds.y) == [3, 1, 4, 1, 5]
    assert np.array_equal(ds.x[..., 0], imgs.astype(np.uint8)) and ds.name == "mnist"
