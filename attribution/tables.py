"""The chapter's experiments: the benchmark table (every method x every metric, with the Fake-CAM
check and the figure grid) and 001's extremal areas with a* (figure)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from attribution.benchmark import HEADERS, figure_grid, interval_rows, metrics_of, model_key, table_rows
from attribution.models import IMAGENET_MEAN, IMAGENET_STD, normalise_digits, trained_canvas_cnn, zoo_model
from common.data import fixed_subset
from common.errors import UserFacingError
from common.saliency import benchmark_methods, method_options, run_benchmark


class PointingWeightsMissing(UserFacingError):
    pass


def _imagenet_tensor(img, size: int) -> torch.Tensor:
    from torchvision.transforms.functional import normalize, resize, to_tensor
    return normalize(to_tensor(resize(img.convert("RGB"), [size, size], antialias=True)), IMAGENET_MEAN, IMAGENET_STD)


def evaluation_data(cfg, ctx):
    """(model, x normalised, y, regions or None, num_classes, images for display, info)."""
    if cfg.model == "canvas_cnn":
        model, info = trained_canvas_cnn(cfg, ctx)
        test = ctx.load_dataset(cfg.dataset, cfg.eval_split)
        idx = fixed_subset(len(test), cfg.saliency.n_images, seed=0)   # like 002's fixed 1000-image subset
        x, y = normalise_digits(test.x[idx]), torch.as_tensor(test.y[idx])
        return model, x, y, [b for b in test.boxes[idx]], 10, test.x[idx, ..., 0], test.boxes[idx], info
    model = zoo_model(cfg.model, cfg.weights)
    data = ctx.load_dataset(cfg.dataset, cfg.eval_split)
    idx = fixed_subset(len(data), cfg.saliency.n_images, seed=0)
    xs, ys, regions, boxes = [], [], [], []
    for i in idx:
        img, label = data.dataset[int(i)]
        w, h = img.size
        xs.append(_imagenet_tensor(img, cfg.image_size))
        ys.append(int(label))
        b = data.boxes[int(i)] if getattr(data, "boxes", None) is not None else np.zeros((0, 4))
        # 0-based inclusive pixel indices: pixel centres scale as (i + 0.5) * s - 0.5
        scale = np.array([cfg.image_size / w, cfg.image_size / h] * 2)
        b = (np.asarray(b, dtype=np.float64).reshape(-1, 4) + 0.5) * scale - 0.5
        boxes.append(b)
        regions.append(b if len(b) else None)
    x = torch.stack(xs)
    show = (x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]).clamp(0, 1)
    return (model, x, torch.as_tensor(ys), regions if any(r is not None for r in regions) else None, 1000,
            show.permute(0, 2, 3, 1).numpy(), [b[0] if len(b) else None for b in boxes], {})


def pointing_on_detection(cfg, ctx, name: str, options) -> dict[str, float]:
    """001's pointing game on VOC07 test / COCO14 val (TorchRay's pairs and regions): maps computed
    at ``image_size``, resized to the image, hit within ``pointing_tolerance`` pixels."""
    from common.checkpoint import load_weights
    from common.saliency_metrics import pointing_game, pointing_game_pairs, upsample
    from common.saliency import benchmark_metrics, compute_maps
    data = ctx.load_dataset(name, "test" if name == "voc2007" else "val")
    model = zoo_model(cfg.model, "random")
    head = "fc" if cfg.model == "resnet50" else None
    if head:
        model.fc = torch.nn.Linear(model.fc.in_features, len(data.classes))
    else:
        model.classifier[-1] = torch.nn.Linear(model.classifier[-1].in_features, len(data.classes))
    if cfg.pointing_weights == "":
        raise PointingWeightsMissing(
            f"the pointing game on {name} needs a {cfg.model} with {len(data.classes)} outputs trained on it "
            "(001 used converted Caffe models): pass --set pointing_weights=<file.safetensors> "
            "('random' only checks the code path)")
    if cfg.pointing_weights != "random":
        model.load_state_dict(load_weights(cfg.pointing_weights))
    model.eval()
    pairs = pointing_game_pairs(data)
    if cfg.pointing_max_pairs:
        pairs = pairs[:cfg.pointing_max_pairs]
    opts = dict(options)
    if name == "coco2014" and "extremal" in opts:
        opts["extremal"] = dict(opts["extremal"], areas=tuple(cfg.ep_coco_areas))
    methods, _ = benchmark_methods(cfg.saliency, model)
    out = {}
    for method in methods:
        maps, regions, classes, seconds = [], [], [], 0.0
        for s in range(0, len(pairs), cfg.batch_size):
            chunk = pairs[s:s + cfg.batch_size]
            x = torch.stack([_imagenet_tensor(data[i][0], cfg.image_size) for i, _ in chunk])
            m, spi = compute_maps(method, model, x, torch.as_tensor([c for _, c in chunk]), opts.get(method, {}),
                                  cfg.batch_size)
            seconds += spi * len(chunk)
            for (i, c), mi in zip(chunk, m):
                w, h = data.image_sizes[i]
                maps.append(upsample(mi[None], (h, w))[0])
                regions.append(data.class_mask(i, c))
                classes.append(c)
        pg = {"accuracy": float("nan")}
        if maps:
            # maps differ in size: score each on its own, then TorchRay's per-class mean over all classes
            hit_c, miss_c = np.zeros(len(data.classes)), np.zeros(len(data.classes))
            for mp, r, c in zip(maps, regions, classes):
                one = pointing_game(mp[None], [r], [c], len(data.classes), cfg.pointing_tolerance)
                hit_c += one["hits"]
                miss_c += one["misses"]
            present = hit_c + miss_c > 0       # mean over the classes with pairs (common.saliency_metrics)
            pg["accuracy"] = float(100 * (hit_c[present] / (hit_c + miss_c)[present]).mean())
        out[method] = {"pointing": pg["accuracy"], "seconds_per_image": seconds / max(len(pairs), 1)}
    ctx.table(f"Pointing game on {name} ({len(pairs)} pairs, {cfg.model}, weights {cfg.pointing_weights})",
              ["method", "pointing ↑", "s / pair"],
              [[m, out[m]["pointing"], out[m]["seconds_per_image"]] for m in methods])
    return benchmark_metrics(out, f"{cfg.model}-{name}")


def table_benchmark(cfg, ctx) -> dict:
    """Every method x every metric with seconds per image (002 Tab 2.1 + 2.4 columns, 001 Tab 1's
    pointing game), the Fake-CAM check (claims), and the figure grid."""
    model, x, y, regions, n_cls, show, boxes, info = evaluation_data(cfg, ctx)
    scores = run_benchmark(model, x, y, cfg.saliency, batch_size=cfg.batch_size, regions=regions, num_classes=n_cls,
                           tolerance=cfg.pointing_tolerance, progress=cfg.progress)
    metrics = metrics_of(scores, model_key(cfg))
    metrics.update({k: float(v) for k, v in info.items()})
    metrics["n_images"] = len(x)
    acc = f", test accuracy {info['test_accuracy']:.1f} %" if "test_accuracy" in info else ""
    ctx.table(f"Saliency benchmark: {cfg.model}{acc} on {cfg.dataset}/{cfg.eval_split}, up to {len(x)} images "
              f"(AD / AG / AI / insertion / deletion / pointing in %)", HEADERS, table_rows(scores),
              note="Masks multiply the model's normalised input (as 002). Insertion / deletion: "
                   f"{cfg.saliency.insertion_steps} steps (common.saliency_metrics). Pointing: hit within "
                   f"{cfg.pointing_tolerance:g} px of the target box, mean over the classes with scored images. "
                   "Each method scores the first 'images' of the same ordered subset; s / image after one "
                   "untimed warm-up call.")
    ctx.table("95 % intervals over images (bootstrap of the per-image values; pointing: Wilson)",
              ["method", "images", "AD", "AG", "insertion", "deletion", "pointing"], interval_rows(scores))
    fig = figure_grid(show, scores, min(cfg.n_figure_images, len(x)),
                      boxes=boxes if all(b is not None for b in boxes[:cfg.n_figure_images]) else None)
    ctx.savefig(fig, "figure_grid", "one row per image, one column per method (box: the target digit)")
    for name in cfg.pointing_sets:
        metrics.update(pointing_on_detection(cfg, ctx, name, method_options(cfg.saliency, cfg.image_size)))
    if cfg.model == "canvas_cnn":
        sal = cfg.saliency
        ctx.note("Default preset: fewer iterations than the sources (extremal "
                 f"{sal.extremal_iters} vs 1600, meaningful {sal.meaningful_iters} vs 300, RISE {sal.rise_masks} masks "
                 f"vs 8000, IG {sal.ig_steps} steps vs 50) and sizes scaled from 224 to {cfg.image_size} px; the paper "
                 "preset uses the sources' values.")
    return metrics


def figure_extremal_areas(cfg, ctx) -> dict:
    """001 Fig. 5-style: preservation masks for areas {0.05, ..., 0.8} and a* = min{a : Phi(m_a x) >= Phi(x)}."""
    from attribution.extremal import extremal_perturbation, optimal_area
    from common.plotting import plt
    model, x, y, _, _, show, _, _ = evaluation_data(cfg, ctx)
    n = min(cfg.n_area_images, len(x))
    x, y = x[:n], y[:n]
    areas = tuple(cfg.ep_figure_areas)
    opts = method_options(cfg.saliency, cfg.image_size)["extremal"]
    opts.pop("areas")
    res = extremal_perturbation(model, x, y, areas, variant="preserve", progress=cfg.progress, **opts)
    a_star = optimal_area(model, x, y, res["masks"], areas, max_blur=cfg.saliency.extremal_max_blur_px)
    fig, axes = plt.subplots(n, len(areas) + 1, figsize=(1.4 * (len(areas) + 1), 1.5 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(show[i], cmap="gray")
        axes[i, 0].set_title(f"a* = {a_star[i]:.2f}" if not torch.isnan(a_star[i]) else "a*: none", fontsize=7)
        for j, a in enumerate(areas, 1):
            axes[i, j].imshow(show[i], cmap="gray")
            axes[i, j].imshow(res["masks"][i, j - 1].cpu(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            star = "*" if float(a) == float(a_star[i]) else ""
            axes[i, j].set_title(f"a = {a}{star}", fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout()
    ctx.savefig(fig, "extremal_areas", "preservation masks per area; * marks a* (001 eq. 3 with Phi_0 = Phi(x))")
    m = {f"a_star_{i}": float(a) for i, a in enumerate(a_star)}
    m["a_star_found"] = float((~torch.isnan(a_star)).float().mean()) * 100
    mean_area = res["masks"].mean((2, 3)).mean(0)
    m.update({f"mask_area_{a}": float(v) for a, v in zip(areas, mean_area)})
    return m
