"""Every failure while finishing a run is one message and error.txt, and ``--all`` goes on (issue
"Stage identity and results that cannot lie", section 6): a full disk or a read-only folder while
writing tables.md / result.json / the promotion, a claim check that raises, a read-only --out,
two failures in one second."""
import dataclasses
import errno
import os
from pathlib import Path

import pytest

from common import experiment as E
from common import results as R
from common.claims import Claim
from common.experiment import ExperimentFailed, run_experiment
from common.registry import Experiment, register
from common.run import main

CALLS = []          # every call of the toy function: "before any work" means none


@dataclasses.dataclass
class FinishConfig:
    value: float = 1.0


def finish_toy(cfg, ctx):
    CALLS.append(ctx.experiment)
    return {"acc": 70.0, "zero": 0.0}


def _raising_check(m, cfg):
    return m["acc"] / m["zero"] > 1, "never reached"


for _name in ("finishtoy.a", "finishtoy.b"):
    register(Experiment(name=_name, target="tests.test_finish:finish_toy", config=FinishConfig,
                        presets={"smoke": {}, "default": {}, "paper": {}},
                        claims=(Claim("divides by zero", _raising_check), Claim("acc above 50", lambda m, cfg: (
                            m["acc"] > 50, f"acc {m['acc']}")))))


def _fail_writing(monkeypatch, name: str, experiment: str, error: Exception):
    """Writing ``name`` of ``experiment``'s staging folder raises ``error``."""
    real = {"text": R.write_text_atomic, "json": R.write_json_atomic}

    def writer(kind):
        def write(path, obj):
            if Path(path).name == name and f"/{experiment}/" in str(path):
                raise error
            return real[kind](path, obj)
        return write
    monkeypatch.setattr(R, "write_text_atomic", writer("text"))
    monkeypatch.setattr(R, "write_json_atomic", writer("json"))


@pytest.mark.parametrize("name,error,needle", [
    ("tables.md", OSError(errno.ENOSPC, "No space left on device"), "no space left on the device while writing"),
    ("result.json", OSError(errno.EDQUOT, "Disk quota exceeded"), "free space and rerun"),
    ("tables.md", OSError(errno.EROFS, "Read-only file system"), "writable (or choose another --out) and rerun"),
    ("result.json", ValueError("a bug"), "failed while writing"),
])
def test_a_failure_while_writing_the_result_is_one_message_and_all_goes_on(tmp_path, monkeypatch, capsys,
                                                                           name, error, needle):
    _fail_writing(monkeypatch, name, "finishtoy.a", error)
    assert main(["--all", "--only", "finishtoy", "--preset", "smoke", "--out", str(tmp_path), "--jobs", "1"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and needle in captured.err and name in captured.err, captured.err
    assert "failed: finishtoy.a" in captured.err and "1/2 ok" in captured.out
    # the next experiment ran and was written; the failed one left error.txt with the traceback
    assert (tmp_path / "finishtoy.b" / "smoke" / "result.json").exists()
    assert not (tmp_path / "finishtoy.a" / "smoke").exists()
    (failed,) = (tmp_path / "finishtoy.a").glob("smoke.failed-*")
    assert "Traceback" in (failed / "error.txt").read_text() and f"while writing" in (failed / "error.txt").read_text()


def test_a_failed_promotion_keeps_the_previous_result(tmp_path, monkeypatch):
    good = run_experiment("finishtoy.a", "smoke", out_root=tmp_path)
    real_promote = R.promote

    def promote(staging, final):
        raise PermissionError(errno.EACCES, "Permission denied", str(final))
    monkeypatch.setattr(R, "promote", promote)
    out = E.run_experiments(["finishtoy.a"], "smoke", out_root=tmp_path)["finishtoy.a"]
    assert isinstance(out, ExperimentFailed) and "cannot write while moving" in str(out)
    assert f"the previous result in {tmp_path / 'finishtoy.a' / 'smoke'} is untouched" in str(out)
    monkeypatch.setattr(R, "promote", real_promote)
    assert (tmp_path / "finishtoy.a" / "smoke" / "result.json").exists() and good["claims"]


def test_a_claim_check_that_raises_is_an_error_and_the_run_completes(tmp_path):
    rec = run_experiment("finishtoy.a", "default", out_root=tmp_path)      # three seeds
    raised, passed = rec["claims"]
    assert raised["status"] == "ERROR" and "ZeroDivisionError" in raised["detail"]
    assert passed["status"] == "PASS"
    assert (tmp_path / "finishtoy.a" / "default" / "result.json").exists()
    one = run_experiment("finishtoy.a", "smoke", out_root=tmp_path)["claims"][0]   # one seed: the same
    assert one["status"] == "ERROR" and "ZeroDivisionError" in one["detail"]


def test_a_read_only_out_is_one_line_exit_2_before_any_work(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if self == out or out in self.parents:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)
    monkeypatch.setattr(Path, "mkdir", read_only)
    CALLS.clear()
    assert main(["finishtoy.a", "--preset", "smoke", "--out", str(out), "--jobs", "1"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and f"--out {out} is not writable (Read-only file system)" in err[0], err
    assert CALLS == []


def test_two_failures_in_one_second_keep_two_failed_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "utc_stamp", lambda: "20260101T000000Z")
    final = tmp_path / "exp" / "default"
    kept = []
    for n in range(2):
        staging = R.staging_dir(final)
        staging.mkdir(parents=True)
        kept.append(R.mark_failed(staging, final, f"error {n}"))
    assert None not in kept and kept[0] != kept[1]
    assert [(d / "error.txt").read_text() for d in kept] == ["error 0", "error 1"]
    assert all(d.name.startswith(f"default.failed-20260101T000000Z-{os.getpid()}") for d in kept)
