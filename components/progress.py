"""How long work shows itself: a progress bar with an ETA on a terminal (tqdm); in a log
(``dvc repro > log``) a line at the first progress, at every tenth of the work and at least
every :data:`LINE_EVERY_S` seconds while work goes on; nothing but results and errors with
``mer -q``.

The level is set once per command (``mer -q`` / ``mer --verbose``). ``MER_PROGRESS=bar``
keeps the bar where stderr is not a terminal, ``MER_PROGRESS=lines`` the lines where it is.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TextIO

from tqdm import tqdm

LEVELS = ("quiet", "normal", "verbose")
_level = ["normal"]
#: a log shows life at least this often while progress is reported (a long run's tenths can
#: be many minutes apart)
LINE_EVERY_S = 60.0


def _now() -> float:
    return time.perf_counter()


def set_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"progress level {level!r} is not one of {', '.join(LEVELS)}")
    _level[0] = level


def level() -> str:
    return _level[0]


def say(line: str) -> None:
    """An informational line on stdout (not under ``-q``), kept clear of any bar on screen."""
    if _level[0] != "quiet":
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()


def _style(file: TextIO) -> str:
    """``bar``, ``lines`` or ``off`` for a progress display on ``file``."""
    if _level[0] == "quiet":
        return "off"
    forced = os.environ.get("MER_PROGRESS", "")
    if forced in ("bar", "lines", "off"):
        return forced
    return "bar" if hasattr(file, "isatty") and file.isatty() else "lines"


class Bar:
    """Progress through ``total`` steps of ``unit``s, with rate and ETA. ``total`` may shrink
    while it runs (a fold that stops early leaves epochs it will never train)."""

    def __init__(self, description: str, total: int, unit: str, file: TextIO | None = None):
        file = file or sys.stderr
        self.description, self.unit, self.file = description, unit, file
        self.style = _style(file)
        self._bar = tqdm(
            total=total,
            desc=description,
            unit=unit,
            file=file,
            disable=self.style != "bar",
            dynamic_ncols=True,
            smoothing=0.05,  # the ETA follows the whole run's rate, not the last few steps
            mininterval=0.5,
        )
        self.count, self.total = 0, total
        self.started = _now()
        self._tenths_shown = 0
        self._last_line: float | None = None
        self._first: tuple[int, float] | None = None  # (count, time) of the first progress

    def advance(self, steps: int = 1) -> None:
        self.to(self.count + steps)

    def to(self, count: int) -> None:
        """Set the steps done (never backwards)."""
        if count > self.count:
            self._bar.update(count - self.count)
            self.count = count
            self._line()

    def drop(self, steps: int) -> None:
        """``steps`` fewer to do than announced."""
        if steps:
            self.total -= steps
            self._bar.total = self.total
            self._bar.refresh()
            self._line()

    def _line(self) -> None:
        """In a log: a line at the first progress, each time another tenth of the work is
        done, and whenever :data:`LINE_EVERY_S` passed since the last one."""
        if self.style != "lines" or self.total <= 0 or self.count <= 0:
            return
        fraction = min(self.count / self.total, 1.0)
        tenths = int(fraction * 10 + 1e-9)
        now = _now()
        due = self._last_line is None or now - self._last_line >= LINE_EVERY_S
        if tenths <= self._tenths_shown and not due:
            return
        self._tenths_shown = max(tenths, self._tenths_shown)
        self._last_line = now
        if self._first is None:  # the rate is measured from here: start-up is not work
            self._first = (self.count, now)
        elapsed = now - self.started
        done, since = self.count - self._first[0], now - self._first[1]
        left = f"~{since / done * (self.total - self.count):.0f} s left" if done else "ETA next"
        print(
            f"{self.description}: {self.count}/{self.total} {self.unit}s ({fraction:.0%}), "
            f"{elapsed:.0f} s elapsed, {left}",
            file=self.file,
            flush=True,
        )

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FileTally:
    """Progress counted by other processes on this machine (Beam's workers): each appends a
    byte to :attr:`path` per step done; a thread moves ``bar`` to the file's size."""

    def __init__(self, bar: Bar, every: float = 0.5):
        import tempfile

        self.bar, self.every = bar, every
        handle, self.path = tempfile.mkstemp(prefix="mer-progress-")
        os.close(handle)
        self._stop = None
        self._thread = None

    def _poll(self) -> None:
        while not self._stop.wait(self.every):
            self._update()

    def _update(self) -> None:
        with contextlib.suppress(OSError):
            self.bar.to(min(os.path.getsize(self.path), self.bar.total))

    def __enter__(self) -> FileTally:
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="mer-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._update()
        os.unlink(self.path)
