import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from common.checkpoint import UnsafeCheckpointError, load_weights, save_state_dict
from common.trainer import NonFiniteLossError, TrainConfig, accuracy, fit, load_checkpoint, predict

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "helpers"))
import train_tiny  # noqa: E402


def _cfg(**kw):
    base = dict(epochs=6, batch_size=32, lr=0.01, device="cpu", seed=0, progress=False, ckpt_every=10, log_every=4)
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_model_learns(tmp_path):
    x, y = train_tiny.data()
    res = fit(train_tiny.model(0.0), (x, y), _cfg(), tmp_path / "w")
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < 0.6 * losses[0]
    assert accuracy(predict(res.model, [x], device="cpu"), y) > 60.0   # 4 classes: chance 25 %
    assert (tmp_path / "w" / "metrics.jsonl").exists()
    logged = [json.loads(l) for l in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == res.steps and "img_s" in logged[-1]


def test_same_seed_same_numbers(tmp_path):
    x, y = train_tiny.data()
    a = fit(train_tiny.model(0.3), (x, y), _cfg(), tmp_path / "a")
    b = fit(train_tiny.model(0.3), (x, y), _cfg(), tmp_path / "b")
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    c = fit(train_tiny.model(0.3), (x, y), _cfg(seed=1), tmp_path / "c")
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]


def test_finished_run_is_loaded_not_retrained(tmp_path):
    x, y = train_tiny.data()
    a = fit(train_tiny.model(0.0), (x, y), _cfg(), tmp_path / "w")
    b = fit(train_tiny.model(0.0), (x, y), _cfg(), tmp_path / "w")
    assert b.resumed_from == a.steps
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])


def test_frozen_params_stay(tmp_path):
    x, y = train_tiny.data()
    m = train_tiny.model(0.0)
    first = m[1].weight.detach().clone()
    res = fit(m, (x, y), _cfg(epochs=1), tmp_path / "w", params=list(m[4].parameters()))
    assert torch.equal(res.model[1].weight, first)


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, env_with_root):
    script = str(HERE / "helpers" / "train_tiny.py")
    ref = subprocess.run([sys.executable, script, str(tmp_path / "ref"), str(tmp_path / "ref.safetensors")],
                         env=env_with_root, capture_output=True, text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    # Second run: slowed down, killed with SIGKILL once a mid-training checkpoint exists.
    work = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, script, str(work), str(tmp_path / "k.safetensors"), "--sleep", "0.05"],
                            env=env_with_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    step = 0
    while time.time() < deadline:
        st = work / "ckpt" / "state.json"
        if st.exists():
            try:
                step = json.loads(st.read_text())["step"]
            except ValueError:
                step = 0
            if step >= 10:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "k.safetensors").exists(), "the run finished before it was killed"
    assert step >= 10
    resumed = subprocess.run([sys.executable, script, str(work), str(tmp_path / "k.safetensors")],
                             env=env_with_root, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed_from=0" not in resumed.stdout
    a, b = load_weights(tmp_path / "ref.safetensors"), load_weights(tmp_path / "k.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = [json.loads(l)["step"] for l in (work / "metrics.jsonl").read_text().splitlines()]
    assert log == sorted(set(log)), "the resumed log repeats or skips steps"


class _Boom:
    """Unpickling this runs code (creates a file): the payload a checkpoint must never execute."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickle_is_refused(tmp_path):
    import pickle
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weight": _Boom(marker)})
    for name in ("model.pt", "model.safetensors"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(UnsafeCheckpointError):
            load_weights(tmp_path / name)
    assert not marker.exists()
    # ... and the trainer's own checkpoint folder with a planted pickle is refused too
    x, y = train_tiny.data()
    fit(train_tiny.model(0.0), (x, y), _cfg(epochs=1), tmp_path / "w")
    (tmp_path / "w" / "ckpt" / "model.safetensors").write_bytes(payload)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(tmp_path / "w", train_tiny.model(0.0))
    assert not marker.exists()


def test_torch_file_with_plain_tensors_loads(tmp_path):
    sd = {"w": torch.arange(4.0)}
    torch.save(sd, tmp_path / "plain.pt")
    assert torch.equal(load_weights(tmp_path / "plain.pt")["w"], sd["w"])
    save_state_dict(sd, tmp_path / "plain.safetensors")
    assert torch.equal(load_weights(tmp_path / "plain.safetensors")["w"], sd["w"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    x, y = train_tiny.data()
    calls = {"n": 0}

    def step(m, batch):
        calls["n"] += 1
        logits = m(batch[0])
        loss = nn.functional.cross_entropy(logits, batch[1])
        if calls["n"] > 12:
            loss = loss * float("nan")
        return loss, {}

    with pytest.raises(NonFiniteLossError, match="step 12.*Last good checkpoint kept"):
        fit(train_tiny.model(0.0), (x, y), _cfg(ckpt_every=5), tmp_path / "w", step_fn=step)
    state = json.loads((tmp_path / "w" / "ckpt" / "state.json").read_text())
    assert state["step"] == 10 and not state["done"]
    sd = load_weights(tmp_path / "w" / "ckpt" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in sd.values())


def test_gpu_code_path_runs_on_cpu(tmp_path):
    """bf16 autocast and channels_last are what a GPU run uses; CI has no GPU, so run them here."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, 8, 8, generator=g)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    res = fit(m, (x, y), _cfg(amp="bf16", channels_last="on", epochs=8), tmp_path / "w")
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert accuracy(predict(res.model, [x], device="cpu"), y) > 70.0


def test_bench_trainer_runs_on_cpu(env_with_root):
    r = subprocess.run([sys.executable, str(HERE.parent / "bench" / "trainer.py"), "--steps", "2",
                        "--batch-size", "4", "--warmup", "1"], env=env_with_root, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "plain fp32 loop" in r.stdout and "trainer," in r.stdout
