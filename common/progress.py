"""Progress that a person can read, on a terminal and in a log file.

    bar = progress(desc="train", total=400, initial=step, unit="step")
    for ...:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if step % steps_per_epoch == 0:
            bar.epoch_done(step // steps_per_epoch, epochs)
    bar.close()

    for batch in progress(batches, desc="FGSM on f1"): ...

On a terminal (stderr is a tty) this is a tqdm bar. Anywhere else (``./run_all.sh > log``, CI, a
worker process whose stderr is a pipe) a bar is a stream of carriage-return frames that a log keeps
as megabytes of overdrawn lines, so there is no bar: one line when the loop starts, one per epoch
(``epoch_done``, with the latest ``set_postfix`` values) and one when it ends, with the time taken.
Every progress display of the project goes through here (tests/test_hygiene.py checks that tqdm is
imported nowhere else).
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):   # replaced by an object without isatty, or closed
        return False


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """A tqdm bar on a terminal, a few plain lines elsewhere; ``enabled=False`` shows nothing."""

    def __init__(self, iterable: Iterable | None = None, *, desc: str, total: int | None = None, initial: int = 0,
                 unit: str = "it", enabled: bool = True, **tqdm_options):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.total, self.n, self.unit = iterable, desc, total, initial, unit
        self.postfix: dict[str, Any] = {}
        self._enabled, self._closed, self._t0 = enabled, False, time.time()
        self._bar = None
        if not enabled:
            return
        if stderr_is_terminal():
            from tqdm.auto import tqdm
            self._bar = tqdm(iterable, desc=desc, total=total, initial=initial, unit=unit, dynamic_ncols=True,
                             **tqdm_options)
        else:
            self._line(("resumed at " if initial else "start, ") + self._count())

    def _count(self) -> str:
        return f"{self.n}/{self.total} {self.unit}" if self.total is not None else f"{self.n} {self.unit}"

    def _line(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, **values) -> None:
        """Values shown beside the bar; off a terminal they join the next epoch's line."""
        self.postfix.update(values)
        if self._bar is not None:
            self._bar.set_postfix({k: _format(v) for k, v in self.postfix.items()})

    def epoch_done(self, epoch: int, epochs: int | None = None) -> None:
        """Off a terminal, one line for a finished epoch (1-based) with the latest postfix values."""
        if not self._enabled or self._bar is not None:
            return
        of = f"/{epochs}" if epochs else ""
        values = "".join(f", {k} {_format(v)}" for k, v in self.postfix.items())
        self._line(f"epoch {epoch}{of} done, {self._count()}{values}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._enabled:
            self._line(f"{self._count()} in {time.time() - self._t0:.1f} s")

    def __iter__(self) -> Iterator:
        source = self._bar if self._bar is not None else self.iterable
        try:
            for item in source:
                if self._bar is None:   # the bar counts itself
                    self.n += 1
                yield item
        finally:
            self.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable: Iterable | None = None, *, desc: str, total: int | None = None, initial: int = 0,
             unit: str = "it", enabled: bool = True, **tqdm_options) -> Progress:
    """The project's one progress display (see the module docstring); ``tqdm_options`` (``leave``,
    ``mininterval`` ...) apply to the terminal's bar only."""
    return Progress(iterable, desc=desc, total=total, initial=initial, unit=unit, enabled=enabled, **tqdm_options)
