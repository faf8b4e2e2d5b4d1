"""The paper preset's code path (torchvision ResNet50 / Inception-v3 with random weights, ImageNet
folder layout, a pre-training image folder) on a tiny synthetic fixture: every attack of Fig 6.3
through the whole ensemble, Tab 6.1, and the adaptive curve (L_inf and L2, AutoAttack at every budget
as the paper preset runs it), with tiny iteration counts. One budget (FGSM's 4 = BIM's 2 steps x 2):
every budget runs the same code, and each costs minutes on CPU with ResNet50 / Inception-v3."""
import pytest

pytest.importorskip("jax")
pytest.importorskip("torchvision")
pytest.importorskip("torchattacks")


def test_paper_preset_code_path_on_tiny_folder(tmp_path):
    from common.experiment import run_experiment
    from tests.helpers.image_folders import imagenet_root, write_images
    root = imagenet_root(tmp_path / "data", train=4, val=3)
    # two more classes: AutoAttack's APGD-T (targeted DLR loss) needs at least 4 logits
    for k, wnid in enumerate(("n01484850", "n01491361")):
        write_images(root / "imagenet" / "train" / wnid, 4, seed=20 + k)
        write_images(root / "imagenet" / "val" / wnid, 3, seed=30 + k)
    cap = {"zoo_weights": "random", "image_size": 32, "resize": 36, "pretrain_folder": "yfcc", "num_workers": 0,
           "n_classes": 4, "train.batch_size": 4, "ae.widths": (4, 4), "ae.convs": (1, 1), "ae.batch_size": 4,
           "ae.pretrain_images": 8, "ae.plateau_images": 4, "ae.finetune_batch_size": 4, "ae.finetune_epochs": 1,
           "ae.ckpt_every": 2, "ae.log_every": 1, "progress": False}
    from capacity.config import CapacityConfig
    if hasattr(CapacityConfig(), "sweep_widths"):    # capacity's bottleneck sweep must match the tiny SegNet
        cap["sweep_widths"] = ((4, 4),)
    overrides = {f"capacity.{k}": v for k, v in cap.items()}
    overrides.update({"n_eval": 4, "batch_size": 4, "attacks.fgsm.eps": (4.0,), "attacks.bim.eps": (2.0,), "attacks.bim.steps": 2,
                      "attacks.cw.eps": (1.0, 4.0), "attacks.cw.steps": 2, "attacks.cw_clip.eps": (1.0,),
                      "attacks.cw_clip.steps": 2, "n_ssim": 3, "ssim_win": 7, "n_boot": 50, "n_grid": 4,
                      "progress": False})
    out = tmp_path / "out"
    rec = run_experiment("adversarial.fig6_3", "paper", out_root=out, data_root=str(root), overrides=overrides)
    m = rec["metrics"]
    assert rec["provenance"]["config"]["role_R"] == "resnet50"
    assert rec["provenance"]["config"]["capacity"]["zoo"] is True
    for tag in ("fR", "fI", "fR_AR", "fI_AI", "fR_AS"):
        assert 0.0 <= m[f"clean_{tag}"] <= 100.0
        if m[f"clean_{tag}"] > 0:          # Eq 6.1 averages over clean true positives (none: Lbar_2 undefined)
            assert m[f"l2_fgsm_max_{tag}"] > 0
    assert any(m[f"clean_{tag}"] > 0 for tag in ("fR", "fI", "fR_AR", "fI_AI", "fR_AS"))
    names = {d["name"] for d in rec["provenance"]["datasets"]}
    assert {"imagenet", "pretrain-folder"} <= names
    statuses = {c["claim"][:40]: c["status"] for c in rec["claims"]}
    assert any(s != "SKIP" for s in statuses.values())     # the paper-only Inception claim is judged here
    r61 = run_experiment("adversarial.tab6_1", "paper", out_root=out, data_root=str(root), overrides=overrides)
    assert -1.0 <= r61["metrics"]["ssim_fR__AS"] <= 1.0
    overrides.update({"n_adaptive": 2, "adaptive_steps": 2, "square_queries": 4, "check_square_queries": 4,
                      "pgd_steps": 2, "pgd_restarts": 2, "adaptive_restarts": 1})
    ra = run_experiment("adversarial.adaptive", "paper", out_root=out, data_root=str(root), overrides=overrides)
    assert ra["provenance"]["config"]["autoattack_budgets"] == "all"
    ma = ra["metrics"]
    for tag in ("fR", "fI", "fR_AR", "fI_AI", "fR_AS", "fI_AS"):
        for norm in ("Linf", "L2"):
            # the one budget 4 (FGSM's 4, BIM's 2 x 2); every attack at it at the paper preset
            for k in (1,):
                for atk in ("apgd_ce", "autoattack", "pgd", "worst"):
                    assert 0.0 <= ma[f"ad_{norm}_{atk}_{tag}_{k}"] <= ma[f"ad_clean_{tag}"] + 1e-9
    stages = [st["stage"] for st in ra["provenance"]["stages"]["0"]]
    assert sum(st.startswith("adversarial-adaptive-") for st in stages) == 6
