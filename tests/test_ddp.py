"""DDP through torchrun (gloo, CPU): two processes on one global batch = one process on it."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from common.checkpoint import load_weights

HELPER = Path(__file__).resolve().parent / "helpers" / "train_tiny.py"
sys.path.insert(0, str(HELPER.parent))
import train_tiny  # noqa: E402


def _eval_records(work: Path) -> list[dict]:
    return [r for r in map(json.loads, (work / "metrics.jsonl").read_text().splitlines()) if "eval_loss" in r]


def test_torchrun_two_processes_match_one(tmp_path, env_with_root):
    """One pair of runs (torchrun is slow to start) checks training, sharded evaluation and sharded predict."""
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    # No dropout (its masks differ per rank by design); SGD so the update is linear in the gradient.
    common = ["--dropout", "0", "--optimizer", "sgd", "--epochs", "3", "--eval"]
    one = subprocess.run([sys.executable, str(HELPER), str(tmp_path / "w1"), str(tmp_path / "one.safetensors"),
                          *common, "--predict-out", str(tmp_path / "pred1")],
                         env=env_with_root, capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([*launcher, "--standalone", "--nproc_per_node=2", str(HELPER), str(tmp_path / "w2"),
                          str(tmp_path / "two.safetensors"), *common, "--predict-out", str(tmp_path / "pred2")],
                         env=env_with_root, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-4000:]
    a, b = load_weights(tmp_path / "one.safetensors"), load_weights(tmp_path / "two.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    # every rank's RNG state is in the checkpoint (ranks draw different dropout masks)
    ranks = json.loads((tmp_path / "w2" / "ckpt" / "state.json").read_text())["rng_ranks"]
    assert len(ranks) == 2 and ranks[0] != ranks[1]
    # and training did move the weights (the comparison is not between two untouched inits)
    init = train_tiny.model(0.0).state_dict()
    assert any(not torch.allclose(init[k], a[k]) for k in init)

    # periodic evaluation: each rank evaluated half of the held-out split; the all-reduced means are
    # those of one process evaluating all of it
    ev1, ev2 = _eval_records(tmp_path / "w1"), _eval_records(tmp_path / "w2")
    assert [r["step"] for r in ev1] == [r["step"] for r in ev2] == [10, 20, 24]
    for r1, r2 in zip(ev1, ev2):
        assert abs(r1["eval_loss"] - r2["eval_loss"]) < 1e-5 and abs(r1["eval_acc"] - r2["eval_acc"]) < 1e-6

    # predict: each rank ran the model on its shard only (18 and 19 of 37 rows), and every rank got
    # all outputs, in input order: those of a one-process predict with the same weights
    p0, p1 = (load_weights(tmp_path / f"pred2.rank{r}.safetensors") for r in (0, 1))
    assert (int(p0["rows_seen"]), int(p1["rows_seen"])) == (18, 19)
    assert int(load_weights(tmp_path / "pred1.rank0.safetensors")["rows_seen"]) == 37
    assert torch.equal(p0["pred"], p1["pred"])
    m = train_tiny.model(0.0)
    m.load_state_dict(b)
    with torch.no_grad():
        expected = m(train_tiny.predict_inputs())
    assert p0["pred"].shape == (37, 4)
    torch.testing.assert_close(p0["pred"], expected, rtol=1e-6, atol=1e-6)
