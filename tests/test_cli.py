import subprocess
import sys

import pytest


def cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "common.run", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_list(env_with_root):
    r = cli("--list", env=env_with_root)
    assert r.returncode == 0 and "demo.digits_cnn" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["no.such_experiment"], "unknown experiment"),
    (["nosuchchapter"], "no experiment or chapter named nosuchchapter"),
    (["demo.digits_cnn", "--preset", "huge"], "unknown preset"),
    (["demo.digits_cnn", "--set", "train.nope=1"], "unknown config key"),
    (["demo.digits_cnn", "--set", "width=abc"], "cannot read"),
    (["demo.digits_cnn", "--set", "noequals"], "key=value"),
    (["demo.digits_cnn", "--seed", "x"], "invalid int"),
])
def test_bad_input_is_one_line_and_exit_2(env_with_root, args, needle):
    r = cli(*args, env=env_with_root)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_smoke_run_end_to_end(env_with_root, tmp_path):
    r = cli("demo.digits_cnn", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu", env=env_with_root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "demo.digits_cnn" / "smoke" / "result.json").exists()
    import json
    prov = json.loads((tmp_path / "demo.digits_cnn" / "smoke" / "result.json").read_text())["provenance"]
    # the compute the run cost (process CPU time), beside its wall time
    assert 0 < prov["cpu_time_s"] == prov["seed_cpu_time_s"]["0"] and prov["cpu_time_s"] < 4 * prov["wall_time_s"] + 1
    rep = cli("--report", "--preset", "smoke", "--out", str(tmp_path), env=env_with_root)
    assert rep.returncode == 0 and (tmp_path / "REPORT.md").exists()


def test_a_chapter_name_runs_the_chapter_and_writes_the_report(env_with_root, tmp_path):
    r = cli("demo", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu", env=env_with_root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "demo.digits_cnn" / "smoke" / "result.json").exists() and (tmp_path / "REPORT.md").exists()


def test_a_set_run_names_its_own_folder(env_with_root, tmp_path):
    r = cli("demo.digits_cnn", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu", "--set", "width=4",
            env=env_with_root)
    assert r.returncode == 0, r.stderr[-3000:]
    (written,) = (tmp_path / "demo.digits_cnn").glob("smoke+set-*")
    assert f"-> {written}" in r.stdout and not (tmp_path / "demo.digits_cnn" / "smoke").exists()
