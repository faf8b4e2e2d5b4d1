"""Images/s of the chapter's attacks (adversarial/attacks.py) against torchattacks 3.5.1, like for like:
the same module (eval mode, parameters frozen), the same inputs, batch, device and number of steps,
one warm-up call each, then ``--reps`` repetitions taken in alternation (ours, theirs, ours, ...) so
that a load change on a shared machine hits both; the figure is the median time, the ratio
torchattacks' median over ours (> 1: ours faster) and, beside it, the median of the per-repetition
paired ratios. On CPU the clock is the process' CPU time (a shared machine's waits are not counted;
JAX's own threads are). fp32 against fp32, and bf16 against bf16: torchattacks has no autocast
switch, so its call runs inside ``torch.autocast(bfloat16)``, as ours does with ``autocast=True``.
Every attack object (torchattacks') is built once, outside the timed region; the timed call is the
attack itself.

    python bench/attacks.py                     # CPU: the default preset's StSNet (digit ResNet behind the default SegNet)
    python bench/attacks.py --model resnet50 --batch 64 --size 224 --reps 5   # the issue's H100 anchor setting

Reference (issue 15, one H100, torchattacks 3.5.1, ResNet50 224x224 fp32 batch 64): FGSM 2582,
BIM-10 254, C&W-100 142 img/s. Models carry random weights (speed does not depend on them).

What "the same attack" means per row:
- FGSM: one eps. (In the experiments one gradient serves all six eps; not counted here.)
- BIM-10: ours ``bim(eps, 10)`` vs ``torchattacks.BIM(eps=10*e/255, alpha=e/255, steps=10)``: equal
  outputs (tests/test_adversarial.py).
- C&W-100: NOT the same definition. torchattacks' ``CW`` (tanh box, Adam, c, kappa, lr as ours)
  keeps the best successful example per image, and returns early when the objective at a
  multiple of steps/10 is above the previous such check; its margin multiplies the logits by a
  one-hot mask (max over the other classes is 0 when they are all negative). Ours runs every
  iteration and returns the final delta (Eq 6.4, the thesis). Neither has a binary search over c
  here. The comparison is therefore seconds per ITERATION: torchattacks' iterations are counted
  by a forward hook; the row says how many it ran.

``--backends`` also times one input gradient of f o A with the autoencoder as (a) capacity's torch
SegNet twin as loaded, (b) the same with batch norm folded into the convolutions (what
adversarial.ensemble builds; equal outputs and gradients in tests/test_adversarial.py) and (c) the
jitted Flax forward through common.bridge.jax_as_torch (one JAX<->torch round trip per forward and
per backward).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _stsnet_digits(backend: str, size: int, fold_bn: bool = True):
    """The default preset's StSNet shape: capacity's digit ResNet behind capacity's default SegNet."""
    import jax
    from capacity.autoencoder import SegNet, init_segnet
    from capacity.classifiers import digit_classifier
    from capacity.config import CapacityConfig
    from adversarial.ensemble import Composite, autoencoder_module, prepare_frozen
    ae = CapacityConfig().ae
    seg = SegNet(tuple(ae.widths), tuple(ae.convs), 1)
    variables = init_segnet(seg, jax.random.PRNGKey(0), (size, size, 1))
    torch.manual_seed(0)
    clf = prepare_frozen(digit_classifier("residual", 1, 10, size), fold_bn=fold_bn)
    return Composite(clf, autoencoder_module(backend, seg, variables, 1, fold_bn=fold_bn)).eval(), 1


def _resnet50(fold_bn: bool = True):
    import torchvision
    from adversarial.ensemble import prepare_frozen
    return prepare_frozen(torchvision.models.resnet50(weights=None), fold_bn=fold_bn), 3


def _alternate(fns: dict, reps: int, sync, clock=time.perf_counter) -> dict:
    """Warm up each, then ``reps`` rounds calling each once in turn; seconds per call per name."""
    for f in fns.values():
        f()
        sync()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = clock()
            f()
            sync()
            times[k].append(clock() - t)
    return times


def _count_forwards(model):
    """A forward hook counting calls (torchattacks' C&W iterations: one forward each)."""
    box = [0]
    h = model.register_forward_hook(lambda *a: box.__setitem__(0, box[0] + 1))
    return box, h


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=("stsnet-digits", "resnet50"), default="stsnet-digits")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--bim-steps", type=int, default=10)
    p.add_argument("--cw-steps", type=int, default=100)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-fold-bn", action="store_true", help="attack the models as loaded (batch norm kept)")
    p.add_argument("--backends", action="store_true", help="also time the autoencoder backends (digits only)")
    p.add_argument("--bf16", action="store_true", help="also bf16 autocast on CPU (always on GPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    import torchattacks
    from adversarial import attacks as A
    dev = torch.device(a.device)
    fold = not a.no_fold_bn
    model, c = _stsnet_digits("torch", a.size, fold) if a.model == "stsnet-digits" else _resnet50(fold)
    model = model.to(dev).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.batch, c, a.size, a.size, generator=g).to(dev)
    y = torch.randint(0, 10, (a.batch,), generator=g).to(dev)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    # on CPU the clock is the process' CPU time: on a shared machine, time spent waiting for a core
    # is not charged to either side (wall time there swings by tens of percent between calls)
    clock = time.perf_counter if dev.type == "cuda" else time.process_time
    bf16 = dev.type == "cuda" or a.bf16
    print(f"model {a.model} (batch norm {'folded' if fold else 'as loaded'}), batch {a.batch}, {c}x{a.size}x{a.size}, "
          f"device {dev} ({torch.get_num_threads()} torch threads), torchattacks {torchattacks.__version__}, "
          f"{a.reps} alternated repetitions after one warm-up, medians of "
          f"{'wall' if dev.type == 'cuda' else 'process CPU'} time")
    e = 4.0
    # torchattacks' objects built here, outside the timed region (issue 23)
    ta_fgsm = torchattacks.FGSM(model, eps=e / 255)
    ta_bim = torchattacks.BIM(model, eps=a.bim_steps * e / 255, alpha=e / 255, steps=a.bim_steps)
    ta_cw = torchattacks.CW(model, c=10, kappa=0, steps=a.cw_steps, lr=1e-3)

    def autocast(fn, on):
        if not on:
            return fn
        def run():
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
                return fn()
        return run
    cases = {
        "FGSM": (lambda ac: A.fgsm(model, x, y, (e,), autocast=ac), lambda: ta_fgsm(x, y), 1),
        f"BIM-{a.bim_steps}": (lambda ac: A.bim(model, x, y, e, a.bim_steps, autocast=ac), lambda: ta_bim(x, y),
                               a.bim_steps),
        f"C&W-{a.cw_steps}": (lambda ac: A.cw_delta(model, x, y, a.cw_steps, autocast=ac), lambda: ta_cw(x, y),
                              a.cw_steps),
    }
    print(f"{'attack':<9} {'torchattacks':>13} {'ours fp32':>11} {'ratio':>6} {'paired':>7} "
          f"{'ta bf16':>11} {'ours bf16':>11} {'ratio':>6} {'paired':>7}")
    for name, (ours, ref, steps) in cases.items():
        fns = {"ref": ref, "fp32": lambda: ours(False)}
        if bf16:
            fns["ref_bf16"] = autocast(ref, True)
            fns["bf16"] = lambda: ours(True)
        box, hook = _count_forwards(model)
        t = _alternate(fns, a.reps, sync, clock)
        hook.remove()
        note = ""
        if name.startswith("C&W"):
            # the hook counted every call of every fn (warm-up included); ours: `steps` forwards per call;
            # torchattacks' two variants are assumed to stop at the same iteration (same objective)
            n_ours, n_ref = sum(k in ("fp32", "bf16") for k in fns), sum(k.startswith("ref") for k in fns)
            ours_fw = steps * n_ours * (a.reps + 1)
            ref_iters = (box[0] - ours_fw) / ((a.reps + 1) * n_ref)
            for k in [k for k in fns if k.startswith("ref")]:
                t[k] = [tr / ref_iters * steps for tr in t[k]]    # torchattacks' time scaled to `steps` iterations
            note = f"  per iteration; torchattacks ran {ref_iters:.0f} of {steps} iterations (early abort)"
        med = {k: statistics.median(v) for k, v in t.items()}
        paired = statistics.median(r / o for r, o in zip(t["ref"], t["fp32"]))
        line = (f"{name:<9} {a.batch / med['ref']:>9.1f} i/s {a.batch / med['fp32']:>7.1f} i/s "
                f"{med['ref'] / med['fp32']:>5.2f}x {paired:>6.2f}x")
        if bf16:
            paired16 = statistics.median(r / o for r, o in zip(t["ref_bf16"], t["bf16"]))
            line += (f" {a.batch / med['ref_bf16']:>7.1f} i/s {a.batch / med['bf16']:>7.1f} i/s "
                     f"{med['ref_bf16'] / med['bf16']:>5.2f}x {paired16:>6.2f}x")
        else:
            line += f" {'(bf16: --bf16 or GPU)':>18}"
        print(line + note, flush=True)
    if a.backends and a.model == "stsnet-digits":
        print("\none input gradient of f o A (same weights), by autoencoder backend:")
        ms = {"twin, batch norm as loaded": _stsnet_digits("torch", a.size, fold_bn=False)[0].to(dev),
              "twin, batch norm folded": _stsnet_digits("torch", a.size, fold_bn=True)[0].to(dev),
              "jax_as_torch bridge": _stsnet_digits("bridge", a.size, fold_bn=False)[0].to(dev)}
        fns = {k: (lambda m=m: A.input_gradient(m, x, y)) for k, m in ms.items()}
        t = _alternate(fns, max(a.reps, 5), sync, clock)
        base = statistics.median(t["twin, batch norm as loaded"])
        for k, v in t.items():
            print(f"  {k:<28} {a.batch / statistics.median(v):>8.1f} img/s  {base / statistics.median(v):>5.2f}x")


if __name__ == "__main__":
    main()
