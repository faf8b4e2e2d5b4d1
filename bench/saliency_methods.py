"""Images/s of our batched extremal perturbation vs TorchRay's (same iterations, areas, model,
device), and of Opti-CAM, captum Integrated Gradients and Grad-CAM, in one run, with ratios.

    python bench/saliency_methods.py                         # CPU: the default preset's CNN at 56 px
    python bench/saliency_methods.py --model resnet50 --size 224 --images 32 --iters 800   # GPU, issue's anchor
    python bench/saliency_methods.py --torchray-agreement --size 24 --step 2 --sigma 4 --areas 0.1,0.2
        # equality, not speed: max |mask difference| and IoU to TorchRay per iteration count
    python bench/saliency_methods.py --early-stop --size 24 --step 2 --sigma 4 --areas 0.1,0.2
        # the per-mask stop's effect (iterations saved, IoU with the full run)

TorchRay takes one image per call (its areas batched); ours optimises every image and area at once.
Every row is timed after an untimed warm-up call on one image (few iterations).
Random weights (speed does not depend on them). Issue 18's anchor (one H100, ResNet50, 224 px, fp32):
TorchRay extremal (1 area, 800 iterations) 0.1 img/s, captum IG-50 56 img/s, Grad-CAM 5529 img/s.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the repository root, as the other benches

import torch  # noqa: E402


def timed(fn, n_images: int, device, warmup=None) -> float:
    """Images/s of ``fn()``. ``warmup`` (untimed, first) runs the same code on one image with few
    iterations, so that imports, lazy library set-up and allocator growth are not billed to ``fn``
    (issue 26: Grad-CAM 0.8 img/s cold vs 5.6-12.5 warm)."""
    if warmup is not None:
        warmup()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n_images / (time.perf_counter() - t)


def torchray_agreement(model, x, y, areas, iter_counts, **kw):
    """Per iteration count: max |ours - TorchRay| over every mask of the images and areas, and the
    IoU of the masks binarised at 0.5 (pooled over all masks). One run per count on both sides
    (the masks of a count are those of its last iteration)."""
    from torchray.attribution.extremal_perturbation import extremal_perturbation as torchray_ep
    from attribution.extremal import extremal_perturbation
    print(f"{'iterations':>10s} {'max |diff|':>11s} {'IoU (> 0.5)':>12s} {'TorchRay s':>11s} {'ours s':>8s}")
    for iters in iter_counts:
        t = time.perf_counter()
        theirs = torch.stack([torchray_ep(model, x[i:i + 1], int(y[i]), areas=areas, max_iter=iters, **kw)[0][:, 0]
                              for i in range(len(x))])
        t_theirs = time.perf_counter() - t
        for p in model.parameters():      # TorchRay switches requires_grad off and never back on
            p.requires_grad_(True)
        t = time.perf_counter()
        ours = extremal_perturbation(model, x, y, areas, max_iter=iters, **kw)["masks"]
        t_ours = time.perf_counter() - t
        a, b = ours > 0.5, theirs > 0.5
        iou = (a & b).sum().item() / max((a | b).sum().item(), 1)
        print(f"{iters:10d} {(ours - theirs).abs().max().item():11.2g} {iou:12.4f} {t_theirs:11.1f} {t_ours:8.1f}")


def early_stop_effect(model, x, y, areas, iter_counts, stops, **kw):
    """Our per-mask stop (option, off in every preset) against the full run, per iteration count
    and (stop_tol, stop_patience): iterations the masks ran (mean, min), IoU of the masks binarised
    at 0.5 with the full run's (mean, min over masks), max |difference|."""
    from attribution.extremal import extremal_perturbation
    print(f"{'iterations':>10s} {'tol / patience':>15s} {'ran (mean, min)':>16s} {'IoU (mean, min)':>16s} "
          f"{'max |diff|':>10s}")
    for iters in iter_counts:
        full = extremal_perturbation(model, x, y, areas, max_iter=iters, **kw)["masks"].flatten(0, 1)
        for tol, patience in stops:
            out = extremal_perturbation(model, x, y, areas, max_iter=iters, stop_tol=tol, stop_patience=patience, **kw)
            masks, ran = out["masks"].flatten(0, 1), out["iterations"].flatten().float()
            a, b = masks > 0.5, full > 0.5
            ious = (a & b).flatten(1).sum(1) / (a | b).flatten(1).sum(1).clamp(min=1)
            print(f"{iters:10d} {f'{tol:g} / {patience}':>15s} {f'{ran.mean():.0f}, {ran.min():.0f}':>16s} "
                  f"{f'{ious.mean():.3f}, {ious.min():.3f}':>16s} {(masks - full).abs().max().item():10.2g}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="canvas", choices=("canvas", "resnet50", "vgg16_bn"))
    ap.add_argument("--size", type=int, default=56)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--torchray-images", type=int, default=2, help="TorchRay is timed on this many (one call each)")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--areas", default="0.025,0.05,0.1,0.2", help="the default preset's pointing areas")
    ap.add_argument("--step", type=int, default=None, help="mask step (default: 7 at 224, scaled)")
    ap.add_argument("--sigma", type=float, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--torchray-agreement", action="store_true",
                    help="instead of timing: ours vs TorchRay's masks (hybrid) on the first --torchray-images images "
                         "per iteration count of --agreement-iters")
    ap.add_argument("--agreement-iters", default="50,100,200,400,800")
    ap.add_argument("--early-stop", action="store_true",
                    help="instead of timing: our per-mask stop against the full run on all --images, per iteration "
                         "count of --early-stop-iters, for stop_tol / stop_patience 1e-3 / 10 and 1e-2 / 5")
    ap.add_argument("--early-stop-iters", default="120,300")
    a = ap.parse_args()
    from torchray.attribution.extremal_perturbation import extremal_perturbation as torchray_ep
    from attribution.extremal import extremal_perturbation
    from attribution.methods import captum_integrated_gradients
    from attribution.models import CanvasCNN, zoo_model
    from common.saliency import get_method
    from attribution.ours import opti_cam
    dev = torch.device(a.device)
    torch.manual_seed(0)
    if a.model == "canvas":
        model, c = CanvasCNN(32), 1
    else:
        model, c = zoo_model(a.model, "random"), 3
    model = model.to(dev).eval()
    x = torch.randn(a.images, c, a.size, a.size, device=dev)
    y = torch.randint(0, 10, (a.images,), device=dev)
    areas = [float(v) for v in a.areas.split(",")]
    # the default preset's mask (step 4, sigma 8 at 56 px), TorchRay's (7, 21) at 224 px
    step = a.step or (7 if a.size >= 224 else 4)
    sigma = a.sigma or (21.0 if a.size >= 224 else 8.0)
    nt = min(a.torchray_images, a.images)
    if a.torchray_agreement:
        print(f"device {dev}, model {a.model} (random weights), {a.size} px, {nt} images, areas {areas}, hybrid, "
              f"mask step {step}, sigma {sigma:g}, TorchRay's other defaults, torch threads {torch.get_num_threads()}")
        torchray_agreement(model, x[:nt], y[:nt], areas, [int(v) for v in a.agreement_iters.split(",")],
                           variant="dual", step=step, sigma=sigma)
        return
    if a.early_stop:
        print(f"device {dev}, model {a.model} (random weights), {a.size} px, {a.images} images, areas {areas}, "
              f"hybrid, mask step {step}, sigma {sigma:g}, torch threads {torch.get_num_threads()}")
        early_stop_effect(model, x, y, areas, [int(v) for v in a.early_stop_iters.split(",")],
                          [(1e-3, 10), (1e-2, 5)], variant="dual", step=step, sigma=sigma)
        return
    kw = dict(max_iter=a.iters, step=step, sigma=sigma)
    rows = {}
    theirs = []
    warm_kw = dict(kw, max_iter=2)
    x1, y1 = x[:1], y[:1]

    rows["TorchRay extremal"] = timed(lambda: theirs.extend(torchray_ep(model, x[i:i + 1], int(y[i]), areas=areas,
                                                                        **kw)[0] for i in range(nt)), nt, dev,
                                      warmup=lambda: torchray_ep(model, x1, int(y1[0]), areas=areas, **warm_kw))
    for p in model.parameters():      # TorchRay switches requires_grad off and never back on
        p.requires_grad_(True)
    ours = {}
    rows["ours extremal (batched)"] = timed(lambda: ours.update(extremal_perturbation(model, x, y, areas, **kw)),
                                            a.images, dev,
                                            warmup=lambda: extremal_perturbation(model, x1, y1, areas, **warm_kw))
    diff = max((ours["masks"][i] - theirs[i][:, 0]).abs().max().item() for i in range(nt))
    rows["Opti-CAM (100 it.)"] = timed(lambda: opti_cam(model, x, y), a.images, dev,
                                       warmup=lambda: opti_cam(model, x1, y1, max_iter=2))
    rows["captum IG-50"] = timed(lambda: captum_integrated_gradients(model, x, y, n_steps=50), a.images, dev,
                                 warmup=lambda: captum_integrated_gradients(model, x1, y1, n_steps=2))
    gradcam = get_method("gradcam").fn
    rows["Grad-CAM (pytorch-grad-cam)"] = timed(lambda: gradcam(model, x, y), a.images, dev,
                                                warmup=lambda: gradcam(model, x1, y1))
    print(f"device {dev}, model {a.model}, {a.size} px, {a.images} images, areas {areas}, {a.iters} iterations, "
          f"mask step {step}, sigma {sigma:g}, torch threads {torch.get_num_threads()}")
    for k, v in rows.items():
        print(f"  {k:30s} {v:10.3f} img/s")
    print(f"  same masks: max |ours - TorchRay| over the {nt} images timed on both sides = {diff:.2g}")
    print(f"  ours / TorchRay extremal: {rows['ours extremal (batched)'] / rows['TorchRay extremal']:.1f}x (goal >= 50x)")


if __name__ == "__main__":
    main()
