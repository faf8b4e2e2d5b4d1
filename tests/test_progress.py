"""common.progress: a tqdm bar on a terminal, plain lines in a log file, nothing when disabled."""
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

from common.progress import progress

ROOT = Path(__file__).resolve().parent.parent


def test_in_a_log_a_loop_is_a_start_and_an_end_line(capfd):
    for t in progress(range(10), desc="loop"):
        if t == 3:
            break       # a loop left early (extremal stops when every mask converged) still ends its line
    err = capfd.readouterr().err
    assert "\r" not in err
    assert err.splitlines()[0] == "loop: start, 0/10 it"
    assert err.splitlines()[1].startswith("loop: 4/10 it in ") and len(err.splitlines()) == 2


def test_disabled_shows_nothing(capfd):
    bar = progress(desc="quiet", total=5, enabled=False)
    bar.update(5)
    bar.set_postfix(loss=1.0)
    bar.epoch_done(1, 1)
    bar.close()
    assert list(progress([1, 2], desc="quiet", enabled=False)) == [1, 2]
    assert capfd.readouterr().err == ""


def test_on_a_terminal_it_is_a_tqdm_bar():
    """stderr on a pseudo-terminal: tqdm's bar (carriage-return frames), none of the log lines."""
    code = ("from common.progress import progress\n"
            "bar = progress(desc='bar-test', total=3, unit='step')\n"
            "for _ in range(3):\n    bar.update(1)\n    bar.set_postfix(loss=0.5)\n"
            "bar.epoch_done(1, 1)\nbar.close()\n")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a new pty is 0 columns wide
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:     # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")
    text = out.decode(errors="replace")
    assert "\r" in text and "bar-test" in text and "3/3" in text and "loss=0.5" in text, text
    assert "start," not in text and "epoch 1/1 done" not in text
