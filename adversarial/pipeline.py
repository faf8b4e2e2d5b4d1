"""Shared by every experiment of the chapter: capacity's models as torch modules, the test images,
and cached attack runs (one work folder per attacked model and setting, shared by Fig 6.3 and 6.4).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

ATTACKS = ("fgsm", "bim", "cw")
LABEL = {"fgsm": "FGSM", "bim": "BIM", "cw": "C&W"}


def slug(model_name: str) -> str:
    """'f_R o A_S' -> 'fR_AS', 'BPDA f_R o A_R' -> 'bpda_fR_AR' (metric keys, folder names)."""
    s = model_name.replace("BPDA ", "bpda_").replace(" o ", "_").replace("f_", "f").replace("A_", "A")
    return s.replace(" ", "_")


# --------------------------------------------------------------------------------------------------
# Test images
# --------------------------------------------------------------------------------------------------
def _pad(x: np.ndarray, size: int) -> np.ndarray:
    h, w = x.shape[1:3]
    t, l = (size - h) // 2, (size - w) // 2
    return np.pad(x, ((0, 0), (t, size - h - t), (l, size - w - l), (0, 0)))


def load_eval_images(cfg, ctx):
    """(x float NCHW in [0, 1], y int64, the dataset's description): ``cfg.n_eval`` images of
    capacity's evaluation split, a fixed random subset (the same for every training seed), prepared
    as capacity prepares them (digits zero-padded to image_size; folders: short side resized, centre
    crop)."""
    import torch
    from common.data import ImageClassification, fixed_subset
    cap = cfg.capacity
    ds = ctx.load_dataset(cap.dataset, cap.eval_split)
    n = len(ds) if isinstance(ds, ImageClassification) else len(ds.dataset)
    idx = fixed_subset(n, cfg.n_eval, seed=12345)
    if isinstance(ds, ImageClassification):
        x, y = ds.x[idx], ds.y[idx]
        if x.shape[1] != cap.image_size or x.shape[2] != cap.image_size:
            x = _pad(x, cap.image_size)
    else:
        from torchvision.transforms import functional as TF
        xs, ys = [], []
        for i in idx:
            item = ds.dataset[int(i)]
            img, label = item if isinstance(item, tuple) else (item, -1)
            img = TF.center_crop(TF.resize(img.convert("RGB"), cap.resize or cap.image_size), cap.image_size)
            xs.append(np.asarray(img, dtype=np.uint8))
            ys.append(int(label))
        x, y = np.stack(xs), np.asarray(ys, dtype=np.int64)
    # contiguous NCHW: torchattacks' FAB and Square .view() their inputs (a permuted RGB batch fails)
    xt = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous().float() / 255.0
    return xt, torch.from_numpy(np.asarray(y, dtype=np.int64)), ds.describe()


# --------------------------------------------------------------------------------------------------
# Models and data, once per experiment
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class State:
    cfg: object
    ctx: object
    ensemble: object
    x: object
    y: object
    data_desc: dict
    model_dirs: list         # capacity's stage folders read, by role: A_S, f_R, A_R, f_I, A_I (names hash
                             # config, data and code: a stage keyed by them is keyed by which models it read)


def prepare(cfg, ctx) -> State:
    from capacity.models import trained_models
    from adversarial.ensemble import build_ensemble
    models = trained_models(cfg.capacity, ctx)
    model_dirs = [models.autoencoder_dirs["A_S"]]
    for name in (cfg.role_R, cfg.role_I):   # a zoo classifier (paper) has no folder: its weights are in the config
        model_dirs += [d for d in (models.classifier_dirs.get(name), models.autoencoder_dirs[name]) if d is not None]
    ens = build_ensemble(models, {"R": cfg.role_R, "I": cfg.role_I}, cfg.ae_backend, cfg.fold_bn)
    x, y, desc = load_eval_images(cfg, ctx)
    dev = next(ens.models["f_R"].parameters()).device
    return State(cfg, ctx, ens, x.to(dev), y.to(dev), desc, model_dirs)


def _batches(n, bs):
    return [slice(i, min(i + bs, n)) for i in range(0, n, bs)]


def attack_run(state: State, attacked: str, evaluated: list) -> dict:
    """FGSM, BIM and C&W computed on model ``attacked`` (Eq 6.2-6.4), every adversarial image
    evaluated on each model of ``evaluated``. Cached in a work folder. Returns
    {attack: {eval name: {"correct": (k, n), "ratio": (k, n), "clean": (n,)}}} (numpy)."""
    import torch
    from adversarial import attacks as A
    cfg, ctx = state.cfg, state.ctx
    wd = ctx.work_dir(f"adversarial-attack-{slug(attacked)}",
                      {"adversarial": cfg, "attacked": attacked, "evaluated": list(evaluated)},
                      depends_on=state.model_dirs, datasets=[state.data_desc])
    f = wd / "attacks.npz"
    if f.exists():
        with np.load(f, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    else:
        model = state.ensemble.models[attacked]
        evals = {e: state.ensemble.models[e] for e in evaluated}
        x, y = state.x, state.y
        n = len(y)
        flat = {}
        for e, m in evals.items():
            flat[f"clean|{e}"] = (A.predict(m, x) == y).cpu().numpy()
        budgets = {"fgsm": cfg.fgsm_eps, "bim": cfg.bim_eps, "cw": cfg.cw_eps}
        for atk in ATTACKS:
            k = len(budgets[atk])
            ratio = np.zeros((k, n), np.float32)
            correct = {e: np.zeros((k, n), bool) for e in evals}
            from common.progress import progress
            for sl in progress(_batches(n, cfg.batch_size), desc=f"{LABEL[atk]} on {attacked}", enabled=cfg.progress,
                               leave=False):
                xb, yb = x[sl], y[sl]
                if atk == "fgsm":
                    advs = A.fgsm(model, xb, yb, cfg.fgsm_eps)
                elif atk == "bim":
                    advs = [A.bim(model, xb, yb, e, cfg.bim_steps) for e in cfg.bim_eps]
                else:
                    delta = A.cw_delta(model, xb, yb, cfg.cw_steps, cfg.cw_lr, cfg.cw_c, cfg.cw_kappa, cfg.cw_box)
                    advs = A.cw_scaled(xb, delta, cfg.cw_eps)
                for j, adv in enumerate(advs):
                    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
                    ratio[j, sl] = A.normalised_l2_ratios(xb, adv).cpu().numpy()
                    for e, m in evals.items():
                        correct[e][j, sl] = (A.predict(m, adv) == yb).cpu().numpy()
            flat[f"{atk}|ratio"] = ratio
            for e in evals:
                flat[f"{atk}|{e}"] = correct[e]
        tmp = wd / "attacks.tmp.npz"
        np.savez(tmp, **flat)
        tmp.replace(f)
        (wd / "done.json").write_text(json.dumps({"attacked": attacked, "evaluated": list(evaluated)}))
    out = {}
    for atk in ATTACKS:
        out[atk] = {e: {"correct": flat[f"{atk}|{e}"], "ratio": flat[f"{atk}|ratio"], "clean": flat[f"clean|{e}"]}
                    for e in evaluated}
    return out
