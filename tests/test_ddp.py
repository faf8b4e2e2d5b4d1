"""DDP through torchrun (gloo, CPU): two processes on one global batch = one process on it."""
import subprocess
import sys
from pathlib import Path

import torch

from common.checkpoint import load_weights

HELPER = Path(__file__).resolve().parent / "helpers" / "train_tiny.py"


def test_torchrun_two_processes_match_one(tmp_path, env_with_root):
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    # No dropout (its masks differ per rank by design); SGD so the update is linear in the gradient.
    common = ["--dropout", "0", "--optimizer", "sgd", "--epochs", "3"]
    one = subprocess.run([sys.executable, str(HELPER), str(tmp_path / "w1"), str(tmp_path / "one.safetensors"),
                          *common], env=env_with_root, capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([*launcher, "--standalone", "--nproc_per_node=2", str(HELPER), str(tmp_path / "w2"),
                          str(tmp_path / "two.safetensors"), *common],
                         env=env_with_root, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-4000:]
    a, b = load_weights(tmp_path / "one.safetensors"), load_weights(tmp_path / "two.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    # every rank's RNG state is in the checkpoint (ranks draw different dropout masks)
    import json
    ranks = json.loads((tmp_path / "w2" / "ckpt" / "state.json").read_text())["rng_ranks"]
    assert len(ranks) == 2 and ranks[0] != ranks[1]
    # and training did move the weights (the comparison is not between two untouched inits)
    sys.path.insert(0, str(HELPER.parent))
    import train_tiny
    init = train_tiny.model(0.0).state_dict()
    assert any(not torch.allclose(init[k], a[k]) for k in init)
