"""Saliency methods: one signature, one registry, one scoring protocol (TorchRay's ``(model, input, target)``).

``method(model, images, targets, **options) -> maps``: ``images`` is a batch (N, C, H, W) exactly as
the model takes it (normalised), ``targets`` the N class indices; the result is an (N, H, W) float
tensor at input resolution with values in [0, 1] (per-map min-max, on the images' device), what
``common.saliency_metrics`` expects. A method may process the N images together or loop inside.

Chapters register methods with ``register_method`` in a module they declare under the entry-point
group ``icv.saliency_methods`` (pyproject.toml); ``discover()`` imports those modules, so common/
never names a chapter and chapters never import each other. ``score_methods`` is the protocol every
benchmark row goes through: the same images, the same metrics, seconds per image.

``SaliencyBenchmark`` is the one grid every chapter scores: a config section (each chapter's config
holds one, its presets set it with dotted keys ``saliency.<field>``) naming the methods, their
options and how many images each scores; ``run_benchmark`` runs it on a chapter's model and images.
By default it scores every registered method that explains any classifier plus the chapter's own
(``extra_methods``), so a method registered once is scored by every chapter.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import json
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from common.config import item, param

ENTRY_POINT_GROUP = "icv.saliency_methods"
# row order of the benchmark: baselines first, then by family (SaliencyMethod.family)
FAMILIES = ("baseline", "cam", "gradient", "perturbation")


@dataclasses.dataclass(frozen=True)
class SaliencyMethod:
    name: str                 # registry name, e.g. "gradcam"
    fn: Callable              # fn(model, images, targets, **options) -> (N, H, W) in [0, 1]
    label: str                # as printed in the tables ("Grad-CAM")
    family: str               # "cam" | "gradient" | "perturbation" | "baseline"
    implementation: str       # "pytorch-grad-cam" | "captum" | "torchray" | "ours (attribution/...)"
    source: str = ""          # where the method is defined in the sources
    needs_layer: bool = False  # takes a ``layer`` option (a module of the model)
    # which models it can explain (e.g. only networks with auxiliary branches); None: any classifier
    applies_to: Callable | None = None

    def applicable(self, model) -> bool:
        return self.applies_to is None or bool(self.applies_to(model))


_METHODS: dict[str, SaliencyMethod] = {}


def register_method(name: str, *, label: str, family: str, implementation: str, source: str = "",
                    needs_layer: bool = False, applies_to: Callable | None = None):
    """Decorator registering ``fn(model, images, targets, **options)`` under ``name``."""
    def deco(fn):
        if name in _METHODS and _METHODS[name].fn is not fn:
            raise ValueError(f"saliency method '{name}' registered twice ({_METHODS[name].implementation} "
                             f"and {implementation})")
        _METHODS[name] = SaliencyMethod(name, fn, label, family, implementation, source, needs_layer, applies_to)
        return fn
    return deco


def discover() -> dict[str, SaliencyMethod]:
    """Every registered method: the modules declared under the entry-point group
    ``icv.saliency_methods`` (value: a module that registers on import) are imported first."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(ep.value.split(":")[0])
    return dict(_METHODS)


def get_method(name: str) -> SaliencyMethod:
    methods = discover()
    if name not in methods:
        raise KeyError(f"unknown saliency method '{name}' (known: {', '.join(sorted(methods))})")
    return methods[name]


def generic_methods() -> list[str]:
    """Every registered method that explains any classifier (``applies_to`` None), baselines first,
    then by family, in registration order within a family."""
    methods = [m for m in discover().values() if m.applies_to is None]
    return [m.name for m in sorted(methods, key=lambda m: FAMILIES.index(m.family) if m.family in FAMILIES
                                   else len(FAMILIES))]


def compute_maps(name: str, model, x, y, options: Mapping, batch_size: int, warmup: bool = True):
    """(maps (N, H, W) in [0, 1], seconds per image) of method ``name`` in batches. ``warmup``: one
    untimed call on the first image first, so that imports and first-call set-up (hooks, library
    objects, allocator) are not charged to the seconds per image (cold Grad-CAM: 0.8 img/s against
    5.6-12.5 warm)."""
    import torch
    fn = get_method(name).fn
    if warmup and len(x):
        fn(model, x[:1], y[:1], **options)
    maps, t0 = [], time.perf_counter()
    for i in range(0, len(x), batch_size):
        maps.append(fn(model, x[i:i + batch_size], y[i:i + batch_size], **options).detach().float())
    seconds = time.perf_counter() - t0
    maps = torch.cat(maps)
    if maps.shape != (len(x), *x.shape[2:]) or maps.min() < 0 or maps.max() > 1 or not torch.isfinite(maps).all():
        raise RuntimeError(f"method {name} broke the signature: maps {tuple(maps.shape)} "
                           f"in [{maps.min():.3g}, {maps.max():.3g}]")
    return maps, seconds / len(x)


def score_maps(model, x, y, maps, *, n_steps: int, p=None) -> dict:
    """The scores of maps (N, H, W) in [0, 1] for the images ``x`` and classes ``y``: AD / AI / AG
    and their per-image values (drop, gain, increase), insertion and deletion in ``n_steps`` steps
    and their per-image AUCs, ``maps`` and ``n``. What ``score_methods`` gives every method, and what
    a chapter scores maps with that no registered method makes (pathmask's |input - morph|).
    ``p``: the model's probabilities of ``y`` on ``x``, when already computed."""
    import torch
    from common import saliency_metrics as sm
    p = sm.class_probability(model, x, y) if p is None else p
    o = sm.class_probability(model, x * maps[:, None].to(x.device), y)
    r = dict(sm.average_drop_increase_gain(p, o), maps=maps, n=len(x))
    r["drop"] = ((p - o).clamp_min(0) / p * 100).cpu().numpy()
    r["gain"] = ((o - p).clamp_min(0) / (1 - p).clamp_min(1e-12) * 100).cpu().numpy()
    r["increase"] = (p < o).float().cpu().numpy() * 100
    idl = sm.insertion_deletion(model, x, maps, y, n_steps=n_steps)
    r["insertion"], r["deletion"] = idl["insertion"] * 100, idl["deletion"] * 100
    r["insertion_each"] = sm.auc(torch.as_tensor(idl["insertion_curves"])).numpy() * 100
    r["deletion_each"] = sm.auc(torch.as_tensor(idl["deletion_curves"])).numpy() * 100
    return r


def score_methods(model, x, y, methods: Sequence[str], options: Mapping[str, Mapping],
                  *, batch_size: int, regions: Sequence | None = None, num_classes: int | None = None,
                  tolerance: float = 15.0, progress: bool = False, n_steps: int = 224,
                  max_images: Mapping[str, int] | None = None) -> dict[str, dict]:
    """Every method's maps and scores on the same images. Per method: AD / AI / AG, insertion,
    deletion (``n_steps`` steps), pointing game (when ``regions``; mean over the classes with scored
    images), seconds per image, ``n`` (images scored) and the per-image values behind them (for
    intervals). ``max_images[name]`` (> 0) scores that method on the first so many images only: every
    method reads a prefix of the same ordered images, so two methods compare on the shorter prefix."""
    import numpy as np
    from common import saliency_metrics as sm
    out = {}
    p_all = sm.class_probability(model, x, y)
    from common.progress import progress as show_progress
    for name in show_progress(methods, desc="saliency methods", enabled=progress):
        k = len(x) if not (max_images or {}).get(name) else min(len(x), int(max_images[name]))
        xs, ys, p = x[:k], y[:k], p_all[:k]
        maps, spi = compute_maps(name, model, xs, ys, options.get(name, {}), batch_size)
        r = dict(score_maps(model, xs, ys, maps, n_steps=n_steps, p=p), seconds_per_image=spi)
        if regions is not None:
            game = sm.PointingGame(num_classes, tolerance)
            for m, region, c in zip(maps.cpu(), regions[:k], ys.tolist()):
                game.add(m, region, c)
            pg = game.aggregate()
            r["pointing"] = pg["accuracy"]
            r["pointing_hits"], r["pointing_n"] = sum(pg["hits"]), sum(pg["hits"]) + sum(pg["misses"])
            r["pointing_each"] = np.array([np.nan if h is None else 100.0 * h for h in pg["each"]])
        out[name] = r
    return out


SCORE_KEYS = ("AD", "AI", "AG", "insertion", "deletion", "pointing", "seconds_per_image")


def benchmark_metrics(scores: Mapping[str, dict], model_key: str) -> dict[str, float]:
    """The rows of the one saliency benchmark as flat metrics ``saliency/<model_key>/<method>/<score>``.

    Every chapter that scores methods with ``score_methods`` returns these keys from its experiment;
    ``collect_benchmark`` gathers them over all results into one table (method x model x score).
    ``model_key`` names the model and its data (e.g. ``mnist5k-cnn``), without '/'."""
    if not model_key or "/" in model_key:
        raise ValueError(f"model_key must be a non-empty name without '/', got {model_key!r}")
    return {f"saliency/{model_key}/{name}/{k}": float(r[k]) for name, r in scores.items()
            for k in SCORE_KEYS if k in r}


BENCHMARK_COLUMNS = (("AD", "AD ↓"), ("AG", "AG ↑"), ("AI", "AI ↑"), ("insertion", "insertion ↑"),
                     ("deletion", "deletion ↓"), ("pointing", "pointing ↑"), ("seconds_per_image", "s / image"))


def collect_benchmark(out_root: str | Path, preset: str = "default") -> list[dict]:
    """Every ``saliency/<model>/<method>/<score>`` metric of the canonical results at ``preset``
    (``<out_root>/*/<preset>/result.json``), one row per (model, method): the mean over the run's
    seeds and its std, the experiment and commit that produced it."""
    rows: dict[tuple[str, str], dict] = {}
    for path in sorted(Path(out_root).glob(f"*/{preset}/result.json")):
        record = json.loads(path.read_text())
        std = record.get("metrics_std") or {}
        seeds = record["provenance"].get("seeds") or [record["provenance"].get("seed")]
        for key, value in record.get("metrics", {}).items():
            parts = key.split("/")
            if len(parts) != 4 or parts[0] != "saliency" or not isinstance(value, (int, float)):
                continue
            _, model, method, score = parts
            row = rows.setdefault((model, method), {
                "model": model, "method": method, "experiment": record["experiment"], "seeds": seeds,
                "commit": str(record["provenance"].get("git", {}).get("commit"))[:10], "scores": {}})
            if row["experiment"] != record["experiment"]:
                raise ValueError(f"saliency row {model}/{method} comes from two experiments: "
                                 f"{row['experiment']} and {record['experiment']}")
            row["scores"][score] = (float(value), std.get(key))
    return [rows[k] for k in sorted(rows)]


def render_benchmark(rows: Sequence[dict]) -> str:
    """The one benchmark table (markdown): model, method, implementation, every score as mean ± std
    over seeds, and where the row comes from."""
    from common.results import fmt_value, markdown_table
    try:
        known = discover()
    except Exception:   # a table of finished results is still worth printing without the registry
        known = {}
    table = []
    for r in rows:
        m = known.get(r["method"])
        cells = []
        for score, _ in BENCHMARK_COLUMNS:
            v = r["scores"].get(score)
            cells.append("-" if v is None else fmt_value(v[0], 3 if score == "seconds_per_image" else 2)
                         + (f" ± {fmt_value(v[1], 3 if score == 'seconds_per_image' else 2)}"
                            if v[1] is not None else ""))
        table.append([r["model"], m.label if m else r["method"], m.implementation if m else "?", *cells,
                      f"{r['experiment']} ({len(r['seeds'])} seed{'s' if len(r['seeds']) > 1 else ''}, "
                      f"{r['commit']})"])
    return markdown_table(["model", "method", "implementation", *[h for _, h in BENCHMARK_COLUMNS], "from"], table)


# --------------------------------------------------------------------------------------------------
# The one benchmark grid: methods x (each chapter's) model x scores, options per method
# --------------------------------------------------------------------------------------------------
# methods whose maps cost tens to thousands of forward passes per image: they score the first
# ``n_images_slow`` images only (a chapter whose scoring costs more than its maps lists more)
SLOW_METHODS = ("scorecam", "ablationcam", "occlusion", "rise", "opticam", "meaningful", "meaningful-top5")


@dataclasses.dataclass
class SaliencyBenchmark:
    """The saliency benchmark of one chapter: which methods, with which options, on how many images.

    Defaults: the sources' settings (224 x 224 images) with iterations cut and pixel sizes scaled to
    56 x 56 images; a chapter's config sets its own (its images' size, its cost budget). Pixel sizes
    (``*_px``) are in pixels of the images the chapter scores."""
    # registry names; (): every registered method that explains any classifier (generic_methods)
    methods: tuple = param((), items=item(str, kind="name"))
    # the chapter's own methods (e.g. ones that explain only its models), scored first
    extra_methods: tuple = param((), items=item(str, kind="name"))
    n_images: int = param(200, ge=2)          # images scored (the chapter picks them, fixed order)
    # the costly methods and extremal score the first so many of the same ordered images (0: all)
    slow_methods: tuple = param(SLOW_METHODS, items=item(str, kind="name"))
    n_images_slow: int = param(32, ge=0)
    n_images_extremal: int = param(12, ge=0)
    insertion_steps: int = param(28, ge=1)    # insertion / deletion steps (002: 224 at 224 x 224)
    opticam_iters: int = param(100, ge=1)     # 002: at most 100
    ig_steps: int = param(20, ge=1)           # captum's default is 50
    rise_masks: int = param(1000, ge=1)       # TorchRay's default 8000
    occlusion_window_px: int = param(8, ge=1)  # stride: half the window
    extremal_iters: int = param(100, ge=1)    # 001's tables: 1600
    extremal_schedule: str = param("thesis", choices=("thesis", "torchray"))
    extremal_kernel: str = param("thesis", choices=("thesis", "torchray"))
    extremal_step_px: int = param(4, ge=1)    # TorchRay's 7 at 224 (scaled to 56: 2; 4 costs less)
    extremal_sigma_px: float = param(8.0, gt=0)   # TorchRay's 21 at 224 (scaled to 56: 5)
    extremal_max_blur_px: float = param(5.0, gt=0)  # TorchRay's 20 at 224
    # TorchRay's horizontal-flip jitter on even iterations: meaningless for digits (a flipped digit is
    # another shape); on the canvas it cost the pointing game 3 of 24 hits (attribution/README Decisions)
    extremal_jitter: bool = True
    # fractions of the image; 001's VOC pointing game
    extremal_areas: tuple = param((0.025, 0.05, 0.1, 0.2), items=item(float, gt=0, lt=1), min_length=1)
    meaningful_iters: int = param(100, ge=1)  # 001: 300
    meaningful_mask_size: int = param(7, ge=2)  # 001: 28 at 224 (upsampling factor 8)
    meaningful_blur_px: float = param(2.5, gt=0)  # sigma0 = 10 at 224
    meaningful_mask_blur_px: float = param(1.25, ge=0)   # sigma_m = 5 at 224
    meaningful_jitter_px: int = param(1, ge=1)   # tau = 4 at 224 (1: no jitter)

    def validate(self) -> None:
        """Every name is a registered method (common.config.validate names the section in the error)."""
        known = discover()   # torch: only when a run's config is resolved
        for key in ("methods", "extra_methods", "slow_methods"):
            unknown = [m for m in getattr(self, key) if m not in known]
            if unknown:
                raise ValueError(f"{key} {getattr(self, key)}: unknown {unknown} (known: {', '.join(sorted(known))})")


def benchmark_methods(spec: SaliencyBenchmark, model) -> tuple[list[str], list[str]]:
    """(the methods ``spec`` scores on ``model`` in row order, the ones skipped: not applicable to it)."""
    names = list(dict.fromkeys([*spec.extra_methods, *(spec.methods or generic_methods())]))
    scored = [n for n in names if get_method(n).applicable(model)]
    return scored, [n for n in names if n not in scored]


def method_options(spec: SaliencyBenchmark, image_size: int | Sequence[int], layer=None) -> dict[str, dict]:
    """Per registry name, the options ``spec`` gives it; ``layer`` (a module of the model) goes to
    every method that ``needs_layer`` (None: each method's default layer). ``image_size``: the
    images' side, or (height, width); a window larger than the images is refused."""
    side = min(image_size) if isinstance(image_size, Sequence) else int(image_size)
    for key in ("occlusion_window_px", "meaningful_mask_size"):
        if getattr(spec, key) > side:
            raise ValueError(f"saliency benchmark: {key} = {getattr(spec, key)} is larger than the images ({side} px)")
    options = {
        "opticam": dict(max_iter=spec.opticam_iters),
        "ig": dict(n_steps=spec.ig_steps),
        "rise": dict(num_masks=spec.rise_masks),
        "occlusion": dict(window=spec.occlusion_window_px),
        "extremal": dict(max_iter=spec.extremal_iters, schedule=spec.extremal_schedule, kernel=spec.extremal_kernel,
                         step=spec.extremal_step_px, sigma=spec.extremal_sigma_px, max_blur=spec.extremal_max_blur_px,
                         areas=tuple(spec.extremal_areas), jitter=spec.extremal_jitter),
        "meaningful": dict(max_iter=spec.meaningful_iters, mask_size=spec.meaningful_mask_size,
                           blur_sigma=spec.meaningful_blur_px, mask_sigma=spec.meaningful_mask_blur_px,
                           jitter=spec.meaningful_jitter_px),
    }
    options["meaningful-top5"] = dict(options["meaningful"])   # same mask and blur; 001's top-5 objective
    if layer is not None:
        for name, method in discover().items():
            if method.needs_layer:
                options[name] = dict(options.get(name, {}), layer=layer)
    return options


def max_images(spec: SaliencyBenchmark) -> dict[str, int]:
    """Per method, how many of the ordered images it scores (absent: all)."""
    out = {m: spec.n_images_slow for m in spec.slow_methods}
    out["extremal"] = spec.n_images_extremal
    return {m: k for m, k in out.items() if k}


def run_benchmark(model, x, y, spec: SaliencyBenchmark, *, batch_size: int, layer=None, regions: Sequence | None = None, num_classes: int | None = None,
                  tolerance: float = 15.0, extra_options: Mapping[str, Mapping] | None = None,
                  progress: bool = False) -> dict[str, dict]:
    """``score_methods`` over the grid ``spec`` on ``model`` and the images ``x`` (ordered; the chapter
    picks ``spec.n_images`` of them): every method of ``benchmark_methods`` that applies to the model,
    with ``method_options`` for the images' size (updated per method by ``extra_options``, e.g. a
    seed) and ``max_images``."""
    names, _ = benchmark_methods(spec, model)
    options = method_options(spec, tuple(x.shape[2:]), layer)
    for name, extra in (extra_options or {}).items():
        options[name] = dict(options.get(name, {}), **extra)
    return score_methods(model, x, y, names, options, batch_size=batch_size, regions=regions,
                         num_classes=num_classes, tolerance=tolerance, progress=progress,
                         n_steps=spec.insertion_steps, max_images=max_images(spec))
