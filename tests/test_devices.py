"""common.devices: one device choice for torch and JAX, selection logic checked on CPU by injecting
what torch and JAX see."""
import warnings

import pytest

from common import devices
from common.devices import resolve_device


@pytest.fixture(autouse=True)
def _fresh_warnings():
    devices._warned.clear()   # "warn once" is per process; each test starts with none given
    yield
    devices._warned.clear()


def test_auto_picks_cuda_for_both_when_both_have_a_gpu():
    d = resolve_device("auto", torch_cuda_count=2, jax_platforms=["gpu", "cpu"], local_rank=1)
    assert (d.platform, d.index, d.jax_platform) == ("cuda", 1, "gpu") and d.jax_matches_torch
    assert str(d.torch_device) == "cuda:1"


def test_auto_without_torch_gpu_is_cpu_for_both():
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no GPU anywhere: nothing to warn about
        d = resolve_device("auto", torch_cuda_count=0, jax_platforms=["cpu"])
    assert (d.platform, d.jax_platform) == ("cpu", "cpu") and str(d.torch_device) == "cpu"


def test_auto_with_cpu_only_jaxlib_warns_once_with_the_fix():
    with pytest.warns(RuntimeWarning, match=r"pip install -e \.\[cuda\]") as rec:
        d = resolve_device("auto", torch_cuda_count=1, jax_platforms=["cpu"])
    assert (d.platform, d.jax_platform) == ("cuda", "cpu") and not d.jax_matches_torch
    assert len(rec) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # second time: silent
        resolve_device("auto", torch_cuda_count=1, jax_platforms=["cpu"])


def test_explicit_cuda_with_cpu_only_jaxlib_raises_with_the_fix():
    with pytest.raises(RuntimeError, match=r"JAX has no GPU backend.*pip install -e \.\[cuda\]"):
        resolve_device("cuda", torch_cuda_count=1, jax_platforms=["cpu"])


def test_explicit_cuda_index_and_its_errors():
    assert resolve_device("cuda:1", torch_cuda_count=2, jax_platforms=["gpu"]).index == 1
    assert resolve_device("gpu", torch_cuda_count=2, jax_platforms=["gpu"], local_rank=0).index == 0
    with pytest.raises(RuntimeError, match="only 2 CUDA"):
        resolve_device("cuda:2", torch_cuda_count=2, jax_platforms=["gpu"])
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda", torch_cuda_count=0, jax_platforms=["gpu", "cpu"])
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("mps", torch_cuda_count=0, jax_platforms=["cpu"])


def test_cpu_is_cpu_even_with_gpus():
    d = resolve_device("cpu", torch_cuda_count=4, jax_platforms=["gpu", "cpu"])
    assert (d.platform, d.jax_platform) == ("cpu", "cpu")


def test_this_machine_resolves_to_devices_that_exist():
    d = resolve_device("auto")
    assert d.jax_device.platform == d.jax_platform
    assert d.torch_device.type == d.platform


def test_torch_only_choice_never_asks_jax(monkeypatch):
    import common.devices as D

    def boom():
        raise AssertionError("JAX was asked")
    monkeypatch.setattr(D, "_jax_platforms", boom)
    assert D.resolve_device("cuda", torch_cuda_count=2, local_rank=1, for_jax=False).torch_device.index == 1
    assert D.resolve_device("auto", torch_cuda_count=0, for_jax=False).platform == "cpu"
    from common.trainer import pick_device
    assert pick_device("cpu").type == "cpu" and pick_device("auto").type in ("cpu", "cuda")
