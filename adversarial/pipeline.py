"""Shared by every experiment of the chapter: capacity's models as torch modules, the test images,
and cached attack runs (one work folder per attacked model and setting, shared by Fig 6.3 and 6.4).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np



def slug(model_name: str) -> str:
    """'f_R o A_S' -> 'fR_AS', 'BPDA f_R o A_R' -> 'bpda_fR_AR' (metric keys, folder names)."""
    s = model_name.replace("BPDA ", "bpda_").replace(" o ", "_").replace("f_", "f").replace("A_", "A")
    return s.replace(" ", "_")


def load_eval_images(cfg, ctx):
    """(x float NCHW in [0, 1], y int64, the dataset's description): ``cfg.n_eval`` images of
    capacity's evaluation split as capacity prepares them (``capacity.pipeline.evaluation_images``)."""
    import torch
    from capacity.pipeline import evaluation_images
    x, y, desc = evaluation_images(cfg.capacity, ctx, cfg.n_eval)
    # contiguous NCHW: torchattacks' FAB and Square .view() their inputs (a permuted RGB batch fails)
    xt = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous().float() / 255.0
    return xt, torch.from_numpy(y), desc


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


def attack_names(cfg) -> list:
    from adversarial.config import attack_items
    return [name for name, _ in attack_items(cfg.attacks)]


def attack_label(cfg, name: str) -> str:
    return getattr(cfg.attacks, name).label


def attack_run(state: State, attacked: str, evaluated: list) -> dict:
    """Every attack of ``cfg.attacks`` computed on model ``attacked``, every adversarial image evaluated
    on each model of ``evaluated``. One cached work folder per (attack, attacked model), keyed by that
    attack's settings (a new or changed attack computes only itself). Returns
    {attack: {eval name: {"correct": (k, n), "ratio": (k, n), "clean": (n,)}}} (numpy)."""
    from adversarial.config import attack_items
    return {name: _one_attack(state, attacked, evaluated, name, settings)
            for name, settings in attack_items(state.cfg.attacks)}


def _one_attack(state: State, attacked: str, evaluated: list, name: str, settings) -> dict:
    from adversarial import attacks as A
    from common.progress import progress
    cfg, ctx = state.cfg, state.ctx
    fn = A.attack_fn(settings)            # an unknown function name fails before any work
    wd = ctx.work_dir(f"adversarial-attack-{name}-{slug(attacked)}",
                      {"attack": settings, "capacity": cfg.capacity, "roles": [cfg.role_R, cfg.role_I],
                       "n_eval": cfg.n_eval, "ae_backend": cfg.ae_backend, "fold_bn": cfg.fold_bn,
                       "attacked": attacked, "evaluated": list(evaluated)},
                      depends_on=state.model_dirs, datasets=[state.data_desc])
    f = wd / "attacks.npz"
    if f.exists():
        with np.load(f, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    else:
        model = state.ensemble.models[attacked]
        evals = {e: state.ensemble.models[e] for e in evaluated}
        x, y = state.x, state.y
        n, k = len(y), len(settings.eps)
        flat = {f"clean|{e}": (A.predict(m, x) == y).cpu().numpy() for e, m in evals.items()}
        ratio = np.zeros((k, n), np.float32)
        correct = {e: np.zeros((k, n), bool) for e in evals}
        for sl in progress(_batches(n, cfg.batch_size), desc=f"{settings.label} on {attacked}", enabled=cfg.progress,
                           leave=False):
            xb, yb = x[sl], y[sl]
            advs = fn.fn(model, xb, yb, settings)
            assert len(advs) == k, f"attack '{name}' returned {len(advs)} batches for {k} budgets"
            for j, adv in enumerate(advs):
                assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
                ratio[j, sl] = A.normalised_l2_ratios(xb, adv).cpu().numpy()
                for e, m in evals.items():
                    correct[e][j, sl] = (A.predict(m, adv) == yb).cpu().numpy()
        flat["ratio"] = ratio
        for e in evals:
            flat[f"correct|{e}"] = correct[e]
        tmp = wd / "attacks.tmp.npz"
        np.savez(tmp, **flat)
        tmp.replace(f)
        (wd / "done.json").write_text(json.dumps({"attack": name, "attacked": attacked, "evaluated": list(evaluated)}))
    return {e: {"correct": flat[f"correct|{e}"], "ratio": flat["ratio"], "clean": flat[f"clean|{e}"]}
            for e in evaluated}
