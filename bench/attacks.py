"""Images/s of the chapter's attacks (adversarial/attacks.py) against torchattacks on the same model,
inputs and device, in one run, with the ratio; fp32 and (on GPU) bf16 autocast. Also the two ways
of getting gradients through the JAX autoencoder (torch twin vs common.bridge.jax_as_torch).

    python bench/attacks.py                       # CPU: the default preset's StSNet shape (digits 32x32)
    python bench/attacks.py --model resnet50 --batch 64 --size 224   # the issue's H100 anchor setting

Reference (issue 15, one H100, torchattacks 3.5.1, ResNet50 224x224 fp32 batch 64): FGSM 2582,
BIM-10 254, C&W-100 142 img/s. Models carry random weights (speed does not depend on them).
FGSM here is one eps; in the experiments one gradient serves all six eps (6x fewer passes than
calling torchattacks per eps), which this bench does not count. torchattacks' C&W may stop early
(its abort when the objective rises) and returns the best adversarial, ours runs every iteration.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _stsnet_digits(backend: str, size: int):
    import jax
    from capacity.autoencoder import SegNet, init_segnet
    from capacity.classifiers import digit_classifier
    from adversarial.ensemble import Composite, autoencoder_module
    seg = SegNet((8, 16, 32), (2, 2, 2), 1)
    variables = init_segnet(seg, jax.random.PRNGKey(0), (size, size, 1))
    torch.manual_seed(0)
    clf = digit_classifier("residual", 1, 10, size).eval()
    return Composite(clf, autoencoder_module(backend, seg, variables, 1)).eval(), 1


def _resnet50():
    import torchvision
    return torchvision.models.resnet50(weights=None).eval(), 3


def _time(fn, reps):
    fn()                                   # warm-up (and JIT compile for the bridge)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=("stsnet-digits", "resnet50"), default="stsnet-digits")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--bim-steps", type=int, default=10)
    p.add_argument("--cw-steps", type=int, default=100)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    import torchattacks
    from adversarial import attacks as A
    dev = torch.device(a.device)
    model, c = _stsnet_digits("torch", a.size) if a.model == "stsnet-digits" else _resnet50()
    model = model.to(dev)
    for q in model.parameters():
        q.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.batch, c, a.size, a.size, generator=g).to(dev)
    y = torch.randint(0, 10, (a.batch,), generator=g).to(dev)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    print(f"model {a.model}, batch {a.batch}, {c}x{a.size}x{a.size}, device {dev} "
          f"({torch.get_num_threads()} torch threads), torchattacks {torchattacks.__version__}")
    e = 4.0
    cases = {
        "FGSM": (lambda ac: A.fgsm(model, x, y, (e,), autocast=ac),
                 lambda: torchattacks.FGSM(model, eps=e / 255)(x, y)),
        f"BIM-{a.bim_steps}": (lambda ac: A.bim(model, x, y, e, a.bim_steps, autocast=ac),
                               lambda: torchattacks.BIM(model, eps=a.bim_steps * e / 255, alpha=e / 255,
                                                        steps=a.bim_steps)(x, y)),
        f"C&W-{a.cw_steps}": (lambda ac: A.cw_delta(model, x, y, a.cw_steps, autocast=ac),
                              lambda: torchattacks.CW(model, c=10, kappa=0, steps=a.cw_steps, lr=1e-3)(x, y)),
    }
    print(f"{'attack':<10} {'torchattacks':>14} {'ours fp32':>12} {'ratio':>7} {'ours bf16':>12} {'ratio':>7}")
    for name, (ours, ref) in cases.items():
        t_ref = _time(lambda: (ref(), sync()), a.reps)
        t_32 = _time(lambda: (ours(False), sync()), a.reps)
        line = f"{name:<10} {a.batch / t_ref:>10.1f} i/s {a.batch / t_32:>8.1f} i/s {t_ref / t_32:>6.2f}x"
        if dev.type == "cuda":
            t_16 = _time(lambda: (ours(True), sync()), a.reps)
            line += f" {a.batch / t_16:>8.1f} i/s {t_ref / t_16:>6.2f}x"
        else:
            line += "   (bf16 autocast: GPU only)"
        print(line, flush=True)
    if a.model == "stsnet-digits":
        print("\ngradient through the JAX autoencoder (one input gradient of f o A, same weights):")
        times = {}
        for backend in ("torch", "bridge"):
            m, _ = _stsnet_digits(backend, a.size)
            m = m.to(dev)
            times[backend] = _time(lambda: (A.input_gradient(m, x, y), sync()), max(a.reps, 3))
            print(f"  {backend:<7} {a.batch / times[backend]:>8.1f} img/s")
        print(f"  torch twin / bridge speed: {times['bridge'] / times['torch']:.2f}x")


if __name__ == "__main__":
    main()
