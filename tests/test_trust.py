"""Trustworthy numbers (issue 12): never a stale model, never one lucky seed, never a silent bad input.

Each test plants the situation a user met and checks the outcome; each fails when its mechanism
(stage identity, value ranges, recoverable promotion, claims over seeds) is removed.
"""
import dataclasses
import errno
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from common import experiment as E
from common import results as R
from common.claims import Claim
from common import context as C, registry as REG
from common.experiment import ExperimentFailed, run_experiment
from common.registry import Experiment, register, select
from common.report import write_report


# --------------------------------------------------------------------------------------------------
# 1. A cached stage is reused only when config, data and code are the ones that made it
# --------------------------------------------------------------------------------------------------
def _mnist_root(root: Path, shade: int) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.full((4, 28, 28), shade, np.uint8)
    labels = np.array([0, 1, 2, 3], np.uint8)
    for p in ("train", "t10k"):
        (raw / f"{p}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 4, 28, 28) + imgs.tobytes())
        (raw / f"{p}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 4) + labels.tobytes())
    return root


CHAPTER_RUN = '''
from common.checkpoint import write_checkpoint_dir
from {pkg}.model import ACTIVATION


def experiment(cfg, ctx):
    ds = ctx.load_dataset("mnist", "train")
    folder = ctx.work_dir("toy-train", {{"width": cfg.width}})
    # a stand-in for a training stage: a finished checkpoint holding what it was trained on
    write_checkpoint_dir(folder, lambda tmp: None, {{"done": True, "step": 1, "mean": float(ds.x.mean())}})
    return {{"mean": float(ds.x.mean())}}
'''


@dataclasses.dataclass
class WidthConfig:
    width: int = 4


@pytest.fixture
def toy_chapter(tmp_path, monkeypatch):
    pkg = f"toychap_{os.getpid()}_{tmp_path.name.replace('-', '_')}"
    d = tmp_path / "src" / pkg
    d.mkdir(parents=True)
    (d / "__init__.py").write_text("")
    (d / "model.py").write_text('ACTIVATION = "relu"\n')
    (d / "run.py").write_text(CHAPTER_RUN.format(pkg=pkg))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    register(Experiment(name=f"{pkg}.exp", target=f"{pkg}.run:experiment", config=WidthConfig,
                        presets={"smoke": {}, "default": {}, "paper": {}}))
    return pkg, d


def _stages(rec):
    return [(s["stage"], s["status"], Path(s["folder"]).name) for s in rec["provenance"]["stages"]["0"]]


def test_stage_reused_only_with_the_same_config_data_and_code(tmp_path, toy_chapter):
    pkg, src = toy_chapter
    a, b = _mnist_root(tmp_path / "A", 10), _mnist_root(tmp_path / "B", 200)
    out = tmp_path / "out"

    def run(root, **kw):
        return _stages(run_experiment(f"{pkg}.exp", "paper", out_root=out, data_root=str(root), seed=0, **kw))

    (stage, status, first), = run(a)
    assert status == "trained"
    assert run(a) == [(stage, "loaded", first)]                       # same everything: loads, and says so
    (_, status_b, folder_b), = run(b)                                 # another data root: trains afresh
    assert status_b == "trained" and folder_b != first
    assert json.loads((out / "_work" / folder_b / "key.json").read_text())["datasets"][0]["source"].startswith(str(b))
    (_, status_w, folder_w), = run(a, overrides={"width": 5})         # another config: trains afresh
    assert status_w == "trained" and folder_w not in (first, folder_b)
    # one line of the chapter's model module changes (ReLU -> Tanh): trains afresh
    (src / "model.py").write_text('ACTIVATION = "tanh"\n')
    C._code_cache.clear()                                             # (hashed once per process)
    (_, status_c, folder_c), = run(a)
    assert status_c == "trained" and folder_c != first
    key = json.loads((out / "_work" / folder_c / "key.json").read_text())
    # what the chapter imports (its model, common/checkpoint.py) and the loader of the data it reads
    assert f"{pkg}/model.py" in " ".join(key["code"]["files"])
    assert {"common/checkpoint.py", "common/data.py"} <= set(key["code"]["files"])


# --------------------------------------------------------------------------------------------------
# 2. Values are checked before any work; one seed; a --set run never replaces the canonical result
# --------------------------------------------------------------------------------------------------
def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "common.run", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("args,needle", [
    (["--set", "train.epochs=0"], "'train.epochs' = 0 is invalid: must be an integer >= 1"),
    (["--set", "train.epochs=-3"], "'train.epochs' = -3 is invalid"),
    (["--set", "train.batch_size=-5"], "'train.batch_size' = -5 is invalid: must be an integer >= 1"),
    (["--set", "train.batch_size=0"], "'train.batch_size' = 0 is invalid"),
    (["--set", "train.lr=nan"], "'train.lr' = nan is invalid: must be a finite number > 0"),
    (["--set", "train.optimizer=lbfgs"], "must be one of sgd, adam, adamw, adamax"),
    (["--seed", "-1"], "must be >= 0"),
    (["--threads", "-2"], "must be >= 0"),
    (["--jobs", "0"], "must be >= 1"),
    (["--set", "train.seed=5"], "is set by the run: use --seed"),
])
def test_bad_value_is_one_line_exit_2_and_nothing_written(env_with_root, tmp_path, args, needle):
    out = tmp_path / "out"
    r = cli("demo.digits_cnn", "--preset", "smoke", "--out", str(out), *args, env=env_with_root)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr
    assert not out.exists()


# --------------------------------------------------------------------------------------------------
# 3. Failures: promotion recoverable at every step, other hosts' runs left alone, disk full
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ToyConfig:
    value: float = 0.5


def toy_metric(cfg, ctx):
    if os.environ.get("TOY_TRUST_FAIL"):
        raise RuntimeError("planned failure")
    return {"acc": 60.0 + 10.0 * ctx.seed, "chance": 50.0, "value": cfg.value,
            "run": float(os.environ.get("TOY_TRUST_RUN", 0))}      # tells two runs of one seed apart


register(Experiment(name="trusttoy.exp", target="tests.test_trust:toy_metric", config=ToyConfig,
                    presets={"smoke": {}, "default": {}, "paper": {}},
                    claims=(Claim("acc above 65", lambda m, cfg: (m["acc"] > 65.0, f"acc {m['acc']}")),),
                    variants={"high": {"value": 0.9}}))


class Killed(BaseException):
    """Stands for SIGKILL at a chosen point: nothing after it runs."""


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# os.replace calls of a finishing run: 1 tables.md, 2 result.json (the completeness mark), 3 the old
# result to .archive/, 4 the staging folder into place
@pytest.mark.parametrize("kill_at", ["replace 1", "replace 2", "replace 3", "replace 4"])
def test_promotion_survives_a_kill_at_every_step(tmp_path, monkeypatch, kill_at):
    run_experiment("trusttoy.exp", "smoke", out_root=tmp_path)
    final = tmp_path / "trusttoy.exp" / "smoke"
    calls = {"replace": 0}
    real_replace = os.replace

    def replace(src, dst):
        calls["replace"] += 1
        if kill_at == f"replace {calls['replace']}":
            raise Killed()
        return real_replace(src, dst)

    monkeypatch.setattr(R.os, "replace", replace)
    monkeypatch.setenv("TOY_TRUST_RUN", "1")
    with pytest.raises(Killed):
        run_experiment("trusttoy.exp", "smoke", out_root=tmp_path)
    monkeypatch.undo()
    # the process died: give its staging folder a dead pid, as a real kill would leave it
    (staging,) = (tmp_path / "trusttoy.exp").glob("smoke.partial-*")
    stamp, host_pid = staging.name.split(".partial-")[1].split("-", 1)
    staging.rename(staging.with_name(f"smoke.partial-{stamp}-{socket.gethostname()}-{_dead_pid()}"))
    R.recover_staging(tmp_path)
    now = json.loads((final / "result.json").read_text())
    archived = [json.loads(p.read_text()) for p in (tmp_path / "trusttoy.exp" / ".archive").glob("*/result.json")]
    if kill_at in ("replace 1", "replace 2"):   # the second run never finished: the first stays, nothing half-written
        assert now["metrics"]["run"] == 0 and not archived
    else:                            # it finished: it is promoted, the first is archived, nothing lost
        assert now["metrics"]["run"] == 1 and [a["metrics"]["run"] for a in archived] == [0]
    assert not list((tmp_path / "trusttoy.exp").glob("smoke.partial-*"))


def test_recovery_leaves_live_runs_and_other_hosts_alone(tmp_path):
    base = tmp_path / "trusttoy.exp"
    base.mkdir()
    here, dead = socket.gethostname(), _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        keep_other = base / f"default.partial-20260101T000000Z-otherhost-{dead}"
        keep_live = base / f"default.partial-20260101T000000Z-{here}-{live.pid}"
        drop = base / f"default.partial-20260101T000000Z-{here}-{dead}"
        for d in (keep_other, keep_live, drop):
            d.mkdir()
        R.recover_staging(tmp_path)
        assert keep_other.exists() and keep_live.exists() and not drop.exists()
    finally:
        live.kill()


def test_disk_full_keeps_the_old_result_and_says_so(tmp_path, monkeypatch, capsys):
    run_experiment("trusttoy.exp", "smoke", out_root=tmp_path)
    good = (tmp_path / "trusttoy.exp" / "smoke" / "result.json").read_text()
    real = Path.write_text

    def full(self, *a, **k):
        if self.name == "error.txt":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)
    monkeypatch.setattr(Path, "write_text", full)
    monkeypatch.setenv("TOY_TRUST_FAIL", "1")
    with pytest.raises(ExperimentFailed, match="planned failure"):
        run_experiment("trusttoy.exp", "smoke", out_root=tmp_path)
    err = capsys.readouterr().err
    assert "could not write" in err and "No space left" in err and "planned failure" in err
    assert (tmp_path / "trusttoy.exp" / "smoke" / "result.json").read_text() == good


def test_cli_failure_is_one_message_without_traceback(env_with_root, tmp_path):
    args = ("demo.digits_cnn", "--preset", "paper", "--data-root", str(tmp_path / "nothing"), "--out",
            str(tmp_path / "out"), "--device", "cpu")
    r = cli(*args, env=env_with_root)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "dataset 'mnist' not found" in r.stderr and "expected layout" in r.stderr
    (failed,) = (tmp_path / "out" / "demo.digits_cnn").glob("paper.failed-*")
    assert "Traceback" in (failed / "error.txt").read_text()
    assert "Traceback" in cli(*args, "--debug", env=env_with_root).stderr


# --------------------------------------------------------------------------------------------------
# 4. Claims over seeds; named variants
# --------------------------------------------------------------------------------------------------
def test_claim_judged_over_every_seed_and_parallel_equals_serial(tmp_path):
    serial = run_experiment("trusttoy.exp", "default", out_root=tmp_path / "a", jobs=1)
    assert serial["provenance"]["seeds"] == [0, 1, 2]                    # the default preset's three seeds
    assert serial["metrics"]["acc"] == pytest.approx(70.0) and serial["metrics_std"]["acc"] == pytest.approx(10.0)
    assert serial["metrics_by_seed"]["2"]["acc"] == 80.0
    (claim,) = serial["claims"]
    assert claim["status"] == "FAIL" and "passes on 2/3 training seeds" in claim["detail"]   # seed 0 is 60
    parallel = run_experiment("trusttoy.exp", "default", out_root=tmp_path / "b", jobs=2)
    assert parallel["metrics_by_seed"] == serial["metrics_by_seed"]
    assert run_experiment("trusttoy.exp", "default", out_root=tmp_path / "c", seeds=[1, 2])["claims"][0]["status"] == "PASS"
    # the seed-level interval: 70 ± t(0.975, 2) * 10 / sqrt(3) = 70 ± 24.84
    assert "| acc | 70.00 | 10.00 | [45.16, 94.84] | 60.00 | 70.00 | 80.00 |" in write_report(tmp_path / "a", "default").read_text()


def test_variants_have_their_own_folder_and_only_selects_exactly(tmp_path):
    names = list(REG.discover())
    assert "trusttoy.exp@high" in names
    assert select(names, ["trusttoy.exp"]) == ["trusttoy.exp"]
    assert select(names, ["trusttoy"]) == ["trusttoy.exp", "trusttoy.exp@high"]
    with pytest.raises(REG.ConfigError, match="no experiment or chapter"):
        select(names, ["trusttoy.ex"])
    rec = run_experiment("trusttoy.exp@high", "default", out_root=tmp_path)
    assert rec["metrics"]["value"] == 0.9 and (tmp_path / "trusttoy.exp@high" / "default" / "result.json").exists()
    assert "trusttoy.exp@high" in write_report(tmp_path, "default").read_text()


def test_ctrl_c_is_one_message_exit_130_and_a_rerun_resumes(env_with_root, tmp_path):
    import signal
    import time
    out = tmp_path / "out"
    # a wide CNN (slow steps) so that Ctrl-C lands mid-training, right after the first checkpoint
    args = [sys.executable, "-m", "common.run", "demo.digits_cnn", "--seed", "0", "--out", str(out), "--device", "cpu",
            "--set", "width=128", "--set", "train.epochs=8", "--set", "train.ckpt_every=10"]
    # a background job (CI, nohup) inherits SIGINT ignored, and Python then installs no handler: reset it
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with_root,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list(out.glob("_work/*/ckpt/state.json")) and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err, (p.returncode, err[-2000:])
    assert "interrupted" in err and "Rerun the same command to resume from step" in err, err
    step = int(err.split("resume from step ")[1].split(".")[0])
    assert step > 0
    r = subprocess.run(args, capture_output=True, text=True, env=env_with_root, timeout=300)
    assert r.returncode == 0 and f"(step {step})" in r.stdout and "resumed" in r.stdout, r.stdout + r.stderr


def toy_dies(cfg, ctx):
    if ctx.seed == 1:
        os._exit(9)          # a worker killed mid-run (e.g. for memory)
    return {"acc": 70.0}


register(Experiment(name="trustdies.exp", target="tests.test_trust:toy_dies", config=ToyConfig,
                    presets={"smoke": {}, "default": {}, "paper": {}}))


def test_a_dead_worker_fails_its_experiment_not_the_run(tmp_path):
    out = E.run_experiments(["trustdies.exp", "trusttoy.exp"], "default", out_root=tmp_path, seeds=[0, 1], jobs=2)
    assert isinstance(out["trustdies.exp"], ExperimentFailed) and "worker process" in str(out["trustdies.exp"])
    assert "died again when rerun alone" in str(out["trustdies.exp"])
    # the seeds that shared the broken pool with it were rerun: the other experiment is complete
    assert isinstance(out["trusttoy.exp"], dict), out["trusttoy.exp"]
    assert sorted(out["trusttoy.exp"]["metrics_by_seed"]) == ["0", "1"]
    assert not (tmp_path / "trustdies.exp" / "default+seeds-0-1").exists()
    assert list((tmp_path / "trustdies.exp").glob("default+seeds-0-1.failed-*/error.txt"))


def test_experiments_sharing_stages_share_a_lane():
    a = Experiment(name="capx.a", target="m:f", config=ToyConfig, presets={"smoke": {}, "paper": {}})
    b = Experiment(name="advx.b", target="m:f", config=ToyConfig, presets={"smoke": {}, "paper": {}}, lane="capx")
    assert a.lane_key == b.lane_key == "capx"
