import json
import math
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
from common.errors import CheckpointError, RunInterrupted
from common.trainer import (NonFiniteLossError, TrainConfig, accuracy, classification_step, count_params, fit,
                            load_checkpoint, lr_factor, multi_head_step, predict, random_crop_flip)

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
    args = ["--ckpt-every", "10", "--log-every", "5"]   # logs between checkpoints: a kill can strand one
    ref = subprocess.run([sys.executable, script, str(tmp_path / "ref"), str(tmp_path / "ref.safetensors"), *args],
                         env=env_with_root, capture_output=True, text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    # Second run: it stalls at step 17 (checkpoint at 10, log lines up to 15 written) and gets SIGKILL there.
    work = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, script, str(work), str(tmp_path / "k.safetensors"), *args,
                             "--stall-at", "17"], env=env_with_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stalled = Path(str(work) + ".stalled")
    deadline = time.time() + 120
    while not stalled.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (tmp_path / "k.safetensors").exists(), "the run finished before it was killed"
    step = json.loads((work / "ckpt" / "state.json").read_text())["step"]
    assert step == 10
    # the situation the log truncation exists for: a line beyond the checkpoint the rerun resumes from
    assert [json.loads(l)["step"] for l in (work / "metrics.jsonl").read_text().splitlines()] == [5, 10, 15]
    resumed = subprocess.run([sys.executable, script, str(work), str(tmp_path / "k.safetensors"), *args],
                             env=env_with_root, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed_from=10" in resumed.stdout
    a, b = load_weights(tmp_path / "ref.safetensors"), load_weights(tmp_path / "k.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = [json.loads(l)["step"] for l in (work / "metrics.jsonl").read_text().splitlines()]
    assert log == sorted(set(log)), "the resumed log repeats or skips steps"
    ref_log = [json.loads(l)["step"] for l in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    assert log == ref_log, "each logged step exactly once, in order"


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


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _images(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    return x, (x[:, 0, :4].mean(dim=(1, 2)) > 0).long()   # depends on where things are: augmentation matters


def _conv_model(dropout=0.2):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(dropout), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 2))


# ---------------------------------------------------------------------------------------- augmentation
def test_random_crop_flip_is_a_padded_crop_or_its_mirror():
    p, n = 2, 64
    x = torch.arange(n * 3 * 6 * 5, dtype=torch.float32).reshape(n, 3, 6, 5) + 1   # non-square, no zeros
    y = torch.arange(n)
    out, y_out = random_crop_flip(padding=p)([x, y], torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(y_out, y)
    padded = nn.functional.pad(x, (p, p, p, p))
    seen = set()
    for i in range(n):
        matches = [(dy, dx, flip) for dy in range(2 * p + 1) for dx in range(2 * p + 1) for flip in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if flip else c)(padded[i, :, dy:dy + 6, dx:dx + 5]))]
        assert len(matches) == 1, f"image {i} is not one crop of the padded image (or its mirror)"
        seen.add(matches[0])
    assert {f for _, _, f in seen} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in seen}) > 10   # offsets spread over the 25 possible
    # the same generator seed gives the same batch; another seed another one
    again, _ = random_crop_flip(padding=p)([x, y], torch.Generator().manual_seed(0))
    other, _ = random_crop_flip(padding=p)([x, y], torch.Generator().manual_seed(1))
    assert torch.equal(again, out) and not torch.equal(other, out)


def test_ctrl_c_names_the_resume_step_and_rerun_equals_uninterrupted(tmp_path):
    """With dropout and augmentation, both drawn from RNGs the resume must restore or re-derive."""
    x, y = _images()
    cfg = _cfg(epochs=4, ckpt_every=5)
    aug = random_crop_flip(padding=2)
    ref = fit(_conv_model(), (x, y), cfg, tmp_path / "ref", augment=aug)
    plain = fit(_conv_model(), (x, y), cfg, tmp_path / "plain")
    assert not _same_weights(ref.model, plain.model), "augment had no effect on training"

    calls = {"n": 0}

    def ctrl_c_at_step_13(m, batch):
        if calls["n"] == 13:
            raise KeyboardInterrupt
        calls["n"] += 1
        return classification_step(m, batch)

    work = tmp_path / "w"
    with pytest.raises(KeyboardInterrupt) as info:    # (a bare one would stop pytest itself)
        fit(_conv_model(), (x, y), cfg, work, augment=aug, step_fn=ctrl_c_at_step_13)
    assert isinstance(info.value, RunInterrupted)
    msg = str(info.value)
    assert str(work) in msg and "rerun the same command to resume from step 10" in msg.lower()
    res = fit(_conv_model(), (x, y), cfg, work, augment=aug)
    assert res.resumed_from == 10 and res.steps == ref.steps
    assert _same_weights(res.model, ref.model)
    assert [h["loss"] for h in res.history] == [h["loss"] for h in ref.history]


# ---------------------------------------------------------------------------------------- evaluation
def test_periodic_eval_recorded_model_back_in_train_mode_training_unchanged(tmp_path):
    x, y = train_tiny.data()
    xe, ye = train_tiny.data(n=50, seed=9)
    cfg = _cfg(epochs=2, log_every=4)          # 16 steps
    modes = {"train": [], "eval": []}

    def step(m, batch):
        modes["train"].append(m.training)
        return classification_step(m, batch)

    def eval_fn(m, data):
        modes["eval"].append(m.training)
        torch.rand(100)                        # an eval that draws random numbers must not shift training
        return {"acc": accuracy(predict(m, [data[0]], device="cpu"), data[1])}

    res = fit(train_tiny.model(0.3), (x, y), cfg, tmp_path / "w", step_fn=step, eval_data=(xe, ye),
              eval_every=6, eval_fn=eval_fn)
    assert [h["step"] for h in res.history if "eval_acc" in h] == [6, 12, 16]
    assert modes["eval"] == [False] * 3 and all(modes["train"]) and len(modes["train"]) == 16
    logged = [json.loads(l) for l in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert logged == res.history and [h["step"] for h in logged] == [4, 6, 8, 12, 16]
    assert "eval_acc" not in logged[0] and "loss" not in logged[1]    # step 4: train only; step 6: eval only
    assert res.history[-1]["eval_acc"] == accuracy(predict(res.model, [xe], device="cpu"), ye)
    # the same run without evaluation ends with the same weights (eval touched neither mode nor RNG)
    assert _same_weights(res.model, fit(train_tiny.model(0.3), (x, y), cfg, tmp_path / "no_eval").model)
    with pytest.raises(ValueError, match="without eval_data"):
        fit(train_tiny.model(0.3), (x, y), cfg, tmp_path / "x", eval_every=6)


def test_default_eval_is_the_step_metrics_over_the_held_out_split(tmp_path):
    x, y = train_tiny.data()
    xe, ye = train_tiny.data(n=50, seed=9)
    res = fit(train_tiny.model(0.0), (x, y), _cfg(epochs=1, batch_size=32), tmp_path / "w", eval_data=(xe, ye))
    last = res.history[-1]        # 50 held-out rows in batches of 32 and 18: the means must be per sample
    with torch.no_grad():
        logits = res.model(xe)
    assert last["eval_loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, ye)), rel=1e-6)
    assert last["eval_acc"] == pytest.approx(float((logits.argmax(1) == ye).float().mean()), rel=1e-6)
    assert [h["step"] for h in res.history if "eval_loss" in h] == [res.steps]


# ---------------------------------------------------------------------------------------- multi-head
class _FixedHeads(nn.Module):
    def __init__(self, *heads):
        super().__init__()
        self.heads = heads

    def forward(self, x):
        return tuple(h.clone() for h in self.heads)


def test_multi_head_loss_is_the_weighted_sum_of_head_cross_entropies():
    y = torch.tensor([0, 2])
    head0 = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])     # sample 1 right, sample 2 wrong
    head1 = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])     # sample 1 wrong, sample 2 right
    # CE = log(sum_j e^z_j) - z_y, by hand
    ce0 = ((math.log(math.e ** 2 + 2) - 2) + math.log(2 + math.e)) / 2
    ce1 = ((math.log(2 + math.e ** 3) - 0) + (math.log(2 + math.e ** 3) - 3)) / 2
    loss, metrics = multi_head_step([0.7, 0.3])(_FixedHeads(head0, head1), [torch.zeros(2, 1), y])
    assert float(loss) == pytest.approx(0.7 * ce0 + 0.3 * ce1, rel=1e-6)
    assert float(metrics["head0_loss"]) == pytest.approx(ce0, rel=1e-6)
    assert float(metrics["head1_loss"]) == pytest.approx(ce1, rel=1e-6)
    assert float(metrics["head0_acc"]) == 0.5 and float(metrics["head1_acc"]) == 0.5
    with pytest.raises(ValueError, match="expects the model to return 3 logits"):
        multi_head_step([1, 1, 1])(_FixedHeads(head0, head1), [torch.zeros(2, 1), y])


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.coarse, self.fine = nn.Linear(32, 4), nn.Linear(32, 4)

    def forward(self, x):
        h = self.trunk(x)
        return self.coarse(h), self.fine(h)


def test_multi_head_fit_logs_each_head_and_predict_returns_each_head(tmp_path):
    x, y = train_tiny.data()
    xe, ye = train_tiny.data(n=50, seed=9)
    res = fit(_TwoHeads(), (x, y), _cfg(epochs=3), tmp_path / "w", step_fn=multi_head_step([1.0, 0.5]),
              eval_data=(xe, ye))
    for h in res.history:
        assert h["loss"] == pytest.approx(h["head0_loss"] + 0.5 * h["head1_loss"], rel=1e-5)
    assert res.history[-1]["head0_loss"] < res.history[0]["head0_loss"]
    assert res.history[-1]["head1_loss"] < res.history[0]["head1_loss"]
    coarse, fine = predict(res.model, [xe], batch_size=16, device="cpu")
    assert coarse.shape == fine.shape == (50, 4)
    assert res.history[-1]["eval_head1_acc"] == pytest.approx(accuracy(fine, ye) / 100, rel=1e-6)


# ---------------------------------------------------------------------------------------- schedule, params
def test_onecycle_is_triangular_and_cosine_halves_midway():
    one = TrainConfig(schedule="onecycle", warmup_frac=0.3)          # total 100: peak at step 30
    assert [lr_factor(s, 100, one) for s in (0, 15, 30, 65, 100)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])
    assert lr_factor(31, 100, one) == pytest.approx(69 / 70)
    assert lr_factor(1, 100, TrainConfig(schedule="onecycle", warmup_frac=0.0)) == pytest.approx(99 / 99)
    cos = TrainConfig(schedule="cosine")
    assert [lr_factor(s, 100, cos) for s in (0, 25, 50, 100)] == pytest.approx([1.0, (1 + 0.5 ** 0.5) / 2, 0.5, 0.0])
    assert lr_factor(7, 100, TrainConfig()) == 1.0


def test_onecycle_lr_reaches_the_optimizer(tmp_path):
    x, y = train_tiny.data()    # 8 steps per epoch, 2 epochs: peak at int(0.25 * 16) = 4
    res = fit(train_tiny.model(0.0), (x, y), _cfg(epochs=2, schedule="onecycle", warmup_frac=0.25, log_every=1),
              tmp_path / "w")
    # the lr logged at step s is the one used for the s-th update, i.e. at step index s - 1
    assert [h["lr"] for h in res.history] == pytest.approx([0.01 * f for f in
                                                           (0, .25, .5, .75, 1, 11 / 12, 10 / 12, 9 / 12, 8 / 12,
                                                            7 / 12, 6 / 12, 5 / 12, 4 / 12, 3 / 12, 2 / 12, 1 / 12)])


def test_count_params_counts_all_or_trainable():
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))     # 15 + 8
    m[0].weight.requires_grad_(False)                        # 12 frozen
    assert count_params(m) == 23 and count_params(m, trainable_only=True) == 11
    tied = nn.Sequential(m[1], m[1])
    assert count_params(tied) == 8                           # a shared layer counts once


# ---------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("damage", ["truncated model", "garbage state"])
def test_corrupt_checkpoint_raises_checkpoint_error_naming_the_folder(tmp_path, damage):
    x, y = train_tiny.data()
    work = tmp_path / "w"
    fit(train_tiny.model(0.0), (x, y), _cfg(epochs=1), work)
    if damage == "truncated model":
        f = work / "ckpt" / "model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    else:
        (work / "ckpt" / "state.json").write_bytes(b"\x00\x17{not json")
    with pytest.raises(CheckpointError) as info:
        fit(train_tiny.model(0.0), (x, y), _cfg(epochs=1), work)
    assert str(work / "ckpt") in str(info.value) and f"Delete {work} to retrain" in str(info.value)


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno
    import common.checkpoint as ckpt_mod
    x, y = train_tiny.data()
    cfg = _cfg(epochs=2, ckpt_every=5)
    real_save_file, saves = ckpt_mod.save_file, {"n": 0}

    def disk_fills_on_the_second_checkpoint(tensors, path):
        saves["n"] += 1
        if saves["n"] > 2:                       # checkpoint 1 = model + optim; checkpoint 2 fails
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save_file(tensors, path)

    monkeypatch.setattr(ckpt_mod, "save_file", disk_fills_on_the_second_checkpoint)
    work = tmp_path / "w"
    with pytest.raises(CheckpointError, match=r"no space left on device.*step 10.*step 5\) is intact") as info:
        fit(train_tiny.model(0.0), (x, y), cfg, work)
    assert str(work) in str(info.value)
    monkeypatch.undo()
    assert not list(work.glob(".ckpt.tmp-*"))               # the half-written one is gone, space freed
    assert load_checkpoint(work, train_tiny.model(0.0))["step"] == 5
    res = fit(train_tiny.model(0.0), (x, y), cfg, work)
    assert res.resumed_from == 5
    assert _same_weights(res.model, fit(train_tiny.model(0.0), (x, y), cfg, tmp_path / "ref").model)


def test_multi_head_step_with_target_maps_scores_each_head_against_its_own_targets():
    import torch.nn.functional as F
    torch.manual_seed(0)
    a, b = torch.randn(6, 4), torch.randn(6, 2)
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    group = torch.tensor([0, 0, 1, 1])             # label -> group: the second head predicts the group
    step = multi_head_step([1.0, 0.5], target_maps=[None, group], names=["f", "g1"])
    loss, m = step(lambda x: (a, b), (torch.zeros(6), y))
    want = F.cross_entropy(a, y) + 0.5 * F.cross_entropy(b, group[y])
    assert float(loss) == pytest.approx(float(want), rel=1e-6) and set(m) == {"f_loss", "f_acc", "g1_loss", "g1_acc"}
    with pytest.raises(ValueError, match="target maps"):
        multi_head_step([1.0, 1.0], target_maps=[None])


# --------------------------------------------------------------------------------------------------
# Logs a person can read: progress off a terminal, metrics.jsonl cut by a kill
# --------------------------------------------------------------------------------------------------
def test_progress_in_a_log_file_is_one_line_per_epoch(tmp_path, capfd):
    """stderr that is not a terminal (``./run_all.sh > log``): no carriage-return bar frames, one
    line when training starts, one per epoch with the loss, one at the end."""
    x, y = train_tiny.data()
    fit(train_tiny.model(0.0), (x, y), _cfg(epochs=2, progress=True), tmp_path / "w", desc="tiny")
    err = capfd.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("tiny: ")]
    epoch_lines = [ln for ln in lines if " epoch " in f" {ln[6:]}"]
    assert [ln.split(" done")[0] for ln in epoch_lines] == ["tiny: epoch 1/2", "tiny: epoch 2/2"], err
    assert all("loss" in ln for ln in epoch_lines)
    assert len(lines) == 4, err      # start, 2 epochs, end


def _finished_one_epoch_run(tmp_path) -> tuple[Path, tuple]:
    x, y = train_tiny.data()
    fit(train_tiny.model(0.0), (x, y), _cfg(epochs=1), tmp_path / "w")
    return tmp_path / "w", (x, y)


def test_cut_last_metrics_line_is_dropped_with_a_note(tmp_path, capfd):
    """A kill while a metrics line was being appended leaves it cut: the rerun drops it (it is
    rewritten) instead of stopping on a JSONDecodeError."""
    work, data = _finished_one_epoch_run(tmp_path)
    log = work / "metrics.jsonl"
    steps_before = [json.loads(ln)["step"] for ln in log.read_text().splitlines()]
    with open(log, "a") as f:
        f.write('{"step": 12, "epoch": 1.5, "lo')          # no newline: the write was cut
    res = fit(train_tiny.model(0.0), data, _cfg(epochs=2), work)   # resumes from the finished epoch
    assert res.resumed_from == steps_before[-1]
    assert "dropped the cut last line of" in capfd.readouterr().err
    steps = [json.loads(ln)["step"] for ln in log.read_text().splitlines()]   # every line parses
    assert steps[:len(steps_before)] == steps_before and steps == sorted(set(steps)) and steps[-1] == res.steps


def test_corrupt_metrics_line_inside_the_log_names_the_file_and_the_fix(tmp_path):
    """A bad line that is not the last one is not a kill's doing: one message naming the file and
    the folder to delete, not a JSONDecodeError traceback."""
    work, data = _finished_one_epoch_run(tmp_path)
    log = work / "metrics.jsonl"
    lines = log.read_text().splitlines()
    assert len(lines) >= 2
    log.write_text("".join(ln + "\n" for ln in ["{garbage", *lines[1:]]))
    with pytest.raises(CheckpointError) as e:
        fit(train_tiny.model(0.0), data, _cfg(epochs=2), work)
    assert str(log) in str(e.value) and f"Delete {work} to retrain" in str(e.value)
