"""Work that a Ctrl-C stops in one line, whatever threads and worker processes it started.

A library's run (Beam's pipeline) interrupted in the middle leaves threads that log every
failure they then see and worker processes that die with a traceback each. Here the work runs
in a daemon thread (threads it starts are daemons too: nothing holds the exit); an interruption
of the calling thread silences the abandoned threads, kills this process's children (SIGKILL:
no traceback) and goes on up to the one-line message of `pipelines.cli`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_interruptibly(work: Callable[[], T], poll_seconds: float = 0.2) -> T:
    """``work()``'s result, computed in a daemon thread; its exception is raised here as it
    was. An interruption of the calling thread (Ctrl-C, a noted SIGTERM) stops the work's
    child processes quietly and is raised again."""
    outcome: dict[str, object] = {}

    def work_in_thread() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=work_in_thread, name="interruptible-work", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(poll_seconds)
    except BaseException:
        _silence_abandoned_threads()
        kill_children()
        raise
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def kill_children() -> int:
    """SIGKILL every descendant process of this one; how many there were."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=5)
    return len(children)


def _silence_abandoned_threads() -> None:
    """The abandoned work's threads see their worker processes die: what they log or raise
    from now on is the interruption's consequence, not news."""
    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda args: None
