"""A tiny training run used by the trainer tests (kill/resume) and the DDP test.

    python tests/helpers/train_tiny.py WORK_DIR OUT.safetensors [--stall-at STEP] [--ckpt-every N]
    torchrun --standalone --nproc_per_node=2 tests/helpers/train_tiny.py WORK_DIR OUT.safetensors \
        [--eval] [--predict-out PREFIX]
"""
import argparse
import time
from pathlib import Path

import torch
import torch.nn as nn

from common.checkpoint import save_state_dict
from common.trainer import TrainConfig, classification_step, fit, dist_info, predict


def data(n=256, seed=123):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()   # 4 learnable classes
    return x, y


def eval_data():
    return data(n=50, seed=9)


def predict_inputs():
    return data(n=37, seed=5)[0]   # odd, so the two ranks' shards differ in size (18 and 19)


def model(dropout: float):
    torch.manual_seed(7)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 4))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("work_dir")
    p.add_argument("out")
    p.add_argument("--stall-at", type=int, default=-1,
                   help="at this step, touch WORK_DIR.stalled and wait to be killed")
    p.add_argument("--ckpt-every", type=int, default=5)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--eval", action="store_true", help="evaluate on eval_data() every 10 steps")
    p.add_argument("--predict-out", help="each rank saves predict(model, predict_inputs()) to PREFIX.rankR.safetensors")
    a = p.parse_args()
    calls = {"n": 0}

    def step_fn(m, batch):
        if calls["n"] == a.stall_at:
            Path(a.work_dir + ".stalled").touch()
            time.sleep(600)
        calls["n"] += 1
        return classification_step(m, batch)

    cfg = TrainConfig(epochs=a.epochs, batch_size=32, lr=0.01, optimizer=a.optimizer, ckpt_every=a.ckpt_every,
                      log_every=a.log_every, device="cpu", seed=3, progress=False, schedule="cosine")
    res = fit(model(a.dropout), data(), cfg, a.work_dir, step_fn=step_fn,
              eval_data=eval_data() if a.eval else None, eval_every=10 if a.eval else 0)
    rank = dist_info()[0]
    if a.predict_out:
        rows_seen = []   # rows this rank's model was asked to predict: shows the work was split
        res.model.register_forward_hook(lambda mod, inp, out: rows_seen.append(len(inp[0])))
        pred = predict(res.model, [predict_inputs()], batch_size=8, device="cpu")
        save_state_dict({"pred": pred, "rows_seen": torch.tensor(sum(rows_seen))},
                        f"{a.predict_out}.rank{rank}.safetensors")
    if rank == 0:
        save_state_dict(res.model.state_dict(), a.out)
        print(f"done steps={res.steps} resumed_from={res.resumed_from}", flush=True)


if __name__ == "__main__":
    main()
