"""Stage identity and one writer per stage (common/context.py, common/checkpoint.py).

A stage folder is named by the whole config it reads, the folders of the stages it reads and the
source of every project module its code imports (plus the dataset loader when it reads data), so a
changed role, model or loader never reuses an old result; one process at a time writes a stage.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from common import context as C
from common.config import TrainConfig
from common.context import RunContext

ROOT = Path(__file__).resolve().parent.parent


def _ctx(out: Path) -> RunContext:
    return RunContext("t.stage", "smoke", 0, "cpu", None, out, out / "seed-0", {})


def _stages(record, prefix):
    return {s["stage"]: s for s in record["provenance"]["stages"]["0"] if s["stage"].startswith(prefix)}


# --------------------------------------------------------------------------------------------------
# (a) which classifier plays a role is part of the attack stage's key
# --------------------------------------------------------------------------------------------------
def test_role_swap_attacks_the_swapped_classifiers_afresh(tmp_path):
    pytest.importorskip("jax")
    from common.experiment import run_experiment
    out = tmp_path / "out"
    first = run_experiment("adversarial.fig6_3", "smoke", out_root=out)          # R = lenet, I = small
    swapped = run_experiment("adversarial.fig6_3", "smoke", out_root=out,
                             overrides={"role_R": "small", "role_I": "lenet"})
    a1, a2 = _stages(first, "adversarial-attack-"), _stages(swapped, "adversarial-attack-")
    assert a2 and all(s["status"] == "trained" for s in a2.values())
    assert not {s["folder"] for s in a1.values()} & {s["folder"] for s in a2.values()}
    assert all(s["status"] == "loaded" for s in _stages(swapped, "capacity-").values())   # models still shared
    m1, m2 = first["metrics"], swapped["metrics"]
    # f_R is now the classifier that played f_I: its clean accuracy on the same images is f_I's before
    assert m2["clean_fR"] == m1["clean_fI"] and m2["clean_fI"] == m1["clean_fR"]


# --------------------------------------------------------------------------------------------------
# (b) the code of every project module the stage imports, and the dataset loader, key the stage
# --------------------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_an_edit_of_an_imported_module_of_another_package_changes_the_key(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _write(src / "stagepkg_x1" / "__init__.py", "")
    _write(src / "stagepkg_x1" / "stage.py", """
        def folder(ctx):
            from helperpkg_x1 import model  # noqa: F401  (a function-level import counts too)
            return ctx.work_dir("fake", {"width": 1}, datasets=[])
        """)
    _write(src / "helperpkg_x1" / "__init__.py", "")
    _write(src / "helperpkg_x1" / "model.py", "from .layers import WIDTH\n")
    _write(src / "helperpkg_x1" / "layers.py", "WIDTH = 1\n")
    _write(src / "helperpkg_x1" / "unused.py", "X = 1\n")
    monkeypatch.syspath_prepend(str(src))
    from stagepkg_x1.stage import folder
    ctx = _ctx(tmp_path / "out")

    def key():
        C._code_cache.clear()          # a new process: the per-process cache holds the code it runs
        return folder(ctx).name
    before = key()
    assert key() == before
    (src / "helperpkg_x1" / "unused.py").write_text("X = 2\n")     # not imported by the stage
    assert key() == before
    (src / "helperpkg_x1" / "layers.py").write_text("WIDTH = 2\n")  # imported through a relative import
    assert key() != before
    ctx.close()


def test_an_edit_of_the_dataset_loader_changes_the_key_of_a_stage_that_reads_data(tmp_path, monkeypatch):
    repo = tmp_path / "repo"                        # a copy of the project, edited below
    for f in (ROOT / "common").glob("*.py"):
        _write(repo / "common" / f.name, f.read_text())
    _write(repo / "stagepkg_x2" / "__init__.py", "")
    _write(repo / "stagepkg_x2" / "stage.py", """
        def folder(ctx, datasets):
            return ctx.work_dir("fake", {"width": 1}, datasets=datasets)
        """)
    monkeypatch.setattr(C, "_ROOT", repo)
    monkeypatch.syspath_prepend(str(repo))
    from stagepkg_x2.stage import folder
    ctx = _ctx(tmp_path / "out")
    mnist = [{"name": "mnist5k", "split": "train"}]

    def keys():
        C._code_cache.clear()
        return folder(ctx, mnist).name, folder(ctx, []).name
    reads, reads_nothing = keys()
    data_py = repo / "common" / "data.py"
    data_py.write_text(data_py.read_text().replace("255.0 / 16.0", "255.0 / 15.0"))   # a scaling edit
    after, after_nothing = keys()
    assert after != reads                    # the stage that reads data trains afresh
    assert after_nothing == reads_nothing    # a stage that reads no data (nor imports the loader) does not
    ctx.close()


def test_the_run_record_names_the_files_hashed(tmp_path):
    import json
    ctx = _ctx(tmp_path)
    d = ctx.work_dir("fake", {"width": 1}, datasets=[{"name": "mnist5k"}])
    files = json.loads((d / "key.json").read_text())["code"]["files"]
    assert "common/data.py" in files and "tests/test_stage_identity.py" in files
    ctx.close()


# --------------------------------------------------------------------------------------------------
# (c) what does not change a stage's output does not change its key
# --------------------------------------------------------------------------------------------------
def test_progress_and_log_interval_are_not_part_of_the_key(tmp_path):
    ctx = _ctx(tmp_path)
    base = ctx.work_dir("fake", {"train": TrainConfig()}, datasets=[])
    assert ctx.work_dir("fake", {"train": TrainConfig(progress=False, log_every=7, num_workers=0)},
                        datasets=[]) == base
    assert ctx.work_dir("fake", {"train": TrainConfig(lr=0.5)}, datasets=[]) != base
    ctx.close()


def test_a_chapter_progress_flag_does_not_retrain_the_capacity_classifier(tmp_path):
    import dataclasses
    from capacity.config import CapacityConfig
    from capacity.pipeline import _read_by
    ctx = _ctx(tmp_path)
    cfg = CapacityConfig()
    quiet = dataclasses.replace(cfg, progress=False, train=dataclasses.replace(cfg.train, progress=False))
    assert ctx.work_dir("c", _read_by(cfg, "lenet"), datasets=[]) == ctx.work_dir("c", _read_by(quiet, "lenet"), datasets=[])
    ctx.close()


# --------------------------------------------------------------------------------------------------
# (d) one writer per stage
# --------------------------------------------------------------------------------------------------
WRITER = """
import sys, time
from pathlib import Path
from common.context import RunContext
out, tag = Path(sys.argv[1]), sys.argv[2]
ctx = RunContext("t.stage", "smoke", 0, "cpu", None, out, out / "seed-0", {})
d = ctx.work_dir("shared", {"width": 1}, datasets=[])
assert ctx.work_dir("shared", {"width": 1}, datasets=[]) == d   # asking twice: no self-deadlock
(out / f"{tag}.has-lock").touch()
for i in range(8):
    with open(d / "metrics.jsonl", "a") as f:
        f.write(f"{tag} {i}\\n")
    time.sleep(0.1)
ctx.close()
"""


def test_a_second_process_waits_for_the_stage_and_says_who_holds_it(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen([sys.executable, str(script), str(out), "A"], cwd=ROOT, env=env,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "A.has-lock").exists():
        assert first.poll() is None and time.time() < deadline, first.stderr.read() if first.poll() else "timeout"
        time.sleep(0.05)
    second = subprocess.run([sys.executable, str(script), str(out), "B"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert first.wait(timeout=120) == 0 and second.returncode == 0, second.stderr
    folder = next((out / "_work").iterdir())
    assert f"stage {folder.name} is being trained by pid {first.pid} on host {socket.gethostname()}; waiting" \
        in second.stderr
    lines = (folder / "metrics.jsonl").read_text().split()
    assert lines[::2] == ["A"] * 8 + ["B"] * 8        # one writer after the other, never interleaved


# --------------------------------------------------------------------------------------------------
# (e) checkpoints: writers never share a temporary name; a full disk inside safetensors is named
# --------------------------------------------------------------------------------------------------
CKPT_WRITER = """
import os, sys, torch
from common.checkpoint import save_state_dict, write_checkpoint_dir
work = sys.argv[1]
for step in range(40):
    write_checkpoint_dir(work, lambda tmp: save_state_dict({"w": torch.full((20000,), float(os.getpid()))},
                                                            tmp / "model.safetensors"), {"step": step})
"""


def test_two_checkpoint_writers_at_once_do_not_crash(tmp_path):
    from common.checkpoint import checkpoint_step, latest_checkpoint_dir, load_weights
    script = tmp_path / "ckpt_writer.py"
    script.write_text(CKPT_WRITER)
    work = tmp_path / "work"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, str(script), str(work)], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    d = latest_checkpoint_dir(work)
    assert d is not None and checkpoint_step(d) == 39
    w = load_weights(d / "model.safetensors")["w"]
    assert float(w[0]) in {float(p.pid) for p in procs} and bool((w == w[0]).all())   # one writer's, whole
    assert not list(work.glob(".ckpt.tmp-*"))


def test_a_full_disk_inside_safetensors_names_the_fix(tmp_path, monkeypatch):
    import torch
    from safetensors import SafetensorError
    from common import checkpoint as K
    from common.errors import CheckpointError

    def full(*a, **k):   # safetensors' own wording of ENOSPC (its Rust writer's io::Error)
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')
    monkeypatch.setattr(K, "save_file", full)
    with pytest.raises(CheckpointError, match="Free disk space, then rerun"):
        K.write_checkpoint_dir(tmp_path, lambda tmp: K.save_state_dict({"w": torch.zeros(3)}, tmp / "m.safetensors"),
                               {"step": 5})
    assert not list(tmp_path.glob(".ckpt.tmp-*")) and not (tmp_path / "ckpt").exists()


def test_two_contexts_of_one_process_share_a_stage_without_waiting_for_themselves(tmp_path):
    """flock belongs to an open file: a second context of the same process that opened the lock file
    again would block on its own lock forever (a test, or a caller that builds its own context)."""
    import threading
    first, second = _ctx(tmp_path / "out"), _ctx(tmp_path / "out")
    got = {}
    d1 = first.work_dir("shared", {"lr": 0.1})
    t = threading.Thread(target=lambda: got.setdefault("d2", second.work_dir("shared", {"lr": 0.1})), daemon=True)
    t.start()
    t.join(timeout=20)
    assert got.get("d2") == d1, "the second context waited for the first one's lock"
    first.close()
    assert d1.resolve() in {p.resolve() for p in C._HELD}      # still held: the second context has it
    second.close()
    assert d1.resolve() not in {p.resolve() for p in C._HELD}   # released with the last context


def test_pathmask_networks_are_keyed_by_what_trains_them_only():
    """A --set of a morphing / mask field reuses the CNN and the VAE; a network's own training field
    retrains that network alone; the data retrains both (issue 25: the keys held almost the whole config)."""
    from common.config import config_hash
    from common.context import _config_identity
    from common.registry import get
    from pathmask.training import network_keys

    def keys(**overrides):
        cfg = get("pathmask.morphing").resolve_config("default", overrides)
        return tuple(config_hash(_config_identity(k)) for k in network_keys(cfg))
    cnn, vae = keys()
    assert keys(mask_steps=50, morph_lr=0.05, alpha_lk=0.0) == (cnn, vae)
    assert keys(**{"saliency.n_images": 8}) == (cnn, vae)
    new_cnn, same_vae = keys(**{"cnn.epochs": 2})
    assert new_cnn != cnn and same_vae == vae
    same_cnn, new_vae = keys(**{"vae.epochs": 2})
    assert same_cnn == cnn and new_vae != vae
    assert keys(kl_weight=0.5)[0] == cnn and keys(kl_weight=0.5)[1] != vae
    assert all(a != b for a, b in zip(keys(test_fraction=0.3), (cnn, vae)))
