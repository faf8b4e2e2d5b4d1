"""Every saliency method of the chapter, registered under one signature (``common.saliency``; this module is declared under the icv.saliency_methods entry points).

Library methods are thin adapters: pytorch-grad-cam (Grad-CAM, Grad-CAM++, Score-CAM, Ablation-CAM,
XGrad-CAM, Layer-CAM), captum (Saliency, Integrated Gradients, Occlusion), TorchRay (RISE). The
adapters only call the library, bring its output to (N, H, W) at input resolution and min-max
normalise it. Ours: ours.py and extremal.py.
"""
from __future__ import annotations

import torch

from attribution import ours
from attribution.extremal import extremal_perturbation, summed_saliency
from attribution.layers import default_layer
from common.saliency import register_method
from common.saliency_metrics import minmax, upsample

S001, S002 = "001", "002"


def _to_maps(a: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(a, dtype=torch.float32, device=images.device)
    if a.dim() == 4:
        a = a[:, 0]
    if tuple(a.shape[1:]) != tuple(images.shape[2:]):
        a = upsample(a, tuple(images.shape[2:]))
    return minmax(torch.nan_to_num(a))


# ---------------------------------------------------------------- pytorch-grad-cam ---------------
def _grad_cam_family(cls_name: str, **ctor):
    def run(model, images, targets, *, layer=None, batch_size: int | None = None):
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
        cls = getattr(pytorch_grad_cam, cls_name)
        kw = dict(ctor)
        if batch_size and cls_name == "AblationCAM":
            kw["batch_size"] = batch_size
        with cls(model=model, target_layers=[layer if layer is not None else default_layer(model)], **kw) as cam:
            if batch_size and cls_name == "ScoreCAM":
                cam.batch_size = batch_size
            maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        return _to_maps(maps, images)
    return run


for _name, _cls, _label, _src in (
        ("gradcam", "GradCAM", "Grad-CAM", "Selvaraju et al. 2017; 002 sec. 1.3.2, Tab 2.1"),
        ("gradcampp", "GradCAMPlusPlus", "Grad-CAM++", "Chattopadhyay et al. 2018; 002 Tab 2.1"),
        ("scorecam", "ScoreCAM", "Score-CAM", "Wang et al. 2020; 002 Tab 2.1"),
        ("ablationcam", "AblationCAM", "Ablation-CAM", "Desai & Ramaswamy 2020; 002 Tab 2.1"),
        ("xgradcam", "XGradCAM", "XGrad-CAM", "Fu et al. 2020; 002 Tab 2.1"),
        ("layercam", "LayerCAM", "Layer-CAM", "Jiang et al. 2021; 002 Tab 2.1")):
    register_method(_name, label=_label, family="cam", implementation="pytorch-grad-cam", source=_src,
                    needs_layer=True)(_grad_cam_family(_cls))


# ---------------------------------------------------------------- captum --------------------------
@register_method("saliency", label="Saliency", family="gradient", implementation="captum",
                 source="Simonyan et al. 2014; 001 'Grad' row")
def captum_saliency(model, images, targets):
    from captum.attr import Saliency
    a = Saliency(model).attribute(images, target=torch.as_tensor(targets).tolist(), abs=True)
    return _to_maps(a.max(1).values, images)          # max |gradient| over channels (Simonyan et al.)


@register_method("ig", label="Integrated Gradients", family="gradient", implementation="captum",
                 source="Sundararajan et al. 2017")
def captum_integrated_gradients(model, images, targets, *, n_steps: int = 50, internal_batch_size: int = 64):
    from captum.attr import IntegratedGradients
    a = IntegratedGradients(model).attribute(images, target=torch.as_tensor(targets).tolist(), n_steps=n_steps,
                                             internal_batch_size=internal_batch_size)
    return _to_maps(a.abs().sum(1), images)            # baseline 0: the mean image (inputs are normalised)


@register_method("occlusion", label="Occlusion", family="perturbation", implementation="captum",
                 source="Zeiler & Fergus 2014; 001 Tab 1 of ch. Fong & Vedaldi")
def captum_occlusion(model, images, targets, *, window: int | None = None, stride: int | None = None):
    from captum.attr import Occlusion
    c, h, _ = images.shape[1:]
    window = window or max(2, h // 7)
    stride = stride or max(1, window // 2)
    a = Occlusion(model).attribute(images, target=torch.as_tensor(targets).tolist(),
                                   sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                                   baselines=0)
    return _to_maps(a.sum(1), images)


# ---------------------------------------------------------------- TorchRay ------------------------
@register_method("rise", label="RISE", family="perturbation", implementation="torchray",
                 source="Petsiuk et al. 2018; 001 'RISE' row")
def torchray_rise(model, images, targets, *, num_masks: int = 8000, num_cells: int = 7, batch_size: int = 64,
                  seed: int = 0):
    from torchray.attribution.rise import rise_class
    a = rise_class(model, images, target=torch.as_tensor(targets).tolist(), num_masks=num_masks,
                   num_cells=num_cells, batch_size=batch_size, seed=seed)
    return _to_maps(a, images)


# ---------------------------------------------------------------- ours ----------------------------
register_method("opticam", label="Opti-CAM", family="cam", implementation="ours (attribution/ours.py)",
                source="002 sec. 2.3, L1031", needs_layer=True)(ours.opti_cam)
register_method("fakecam", label="Fake-CAM", family="baseline", implementation="ours (attribution/ours.py)",
                source="Poppi et al. 2021; 002 L798")(ours.fake_cam_maps)
register_method("center", label="Centre", family="baseline", implementation="ours (attribution/ours.py)",
                source="001 Tab 1 'Ctr'")(ours.center_maps)
register_method("meaningful", label="Meaningful pert.", family="perturbation",
                implementation="ours (attribution/ours.py)", source="001 ch. Fong & Vedaldi 2017, eq. 4")(
    ours.meaningful_perturbation)


@register_method("meaningful-top5", label="Meaningful pert. (top-5)", family="perturbation",
                 implementation="ours (attribution/ours.py)", source="001 ch. Fong & Vedaldi 2017, Tab 1-2 (L1405)")
def meaningful_top5(model, images, targets, **options):
    """The objective of 001's localisation and pointing tables: the top-5 classes' probabilities
    deleted, l1 = 1e-3, beta = 2 (``targets`` unused)."""
    return ours.meaningful_perturbation(model, images, targets, top5=True, **options)


@register_method("extremal", label="Extremal pert.", family="perturbation",
                 implementation="ours (attribution/extremal.py, batched)", source="001 ch. Fong et al. 2019")
def extremal(model, images, targets, *, areas=(0.025, 0.05, 0.1, 0.2), variant: str = "dual", smooth: float = 0.09,
             **options):
    """001's pointing-game map (L1686): hybrid masks for several areas, summed and smoothed (Gaussian
    of 9 % of the shorter side); every image and area in one optimisation."""
    out = extremal_perturbation(model, images, targets, areas, variant=variant, **options)
    return minmax(summed_saliency(out["masks"], smooth))
