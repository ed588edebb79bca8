"""Beam's local worker processes, started so that the terminal's Ctrl-C reaches only the stage.

The DirectRunner's multi-processing mode starts each SDK worker as ``<sys.executable> -m
apache_beam.runners.worker.sdk_worker_main`` through ``/bin/sh``, in the terminal's foreground
process group: a Ctrl-C killed every worker with a traceback of its own. While
`ctrl_c_reaches_only_this_process` is active, that command starts this module instead, which
ignores SIGINT (an ignored signal stays ignored across ``exec``, and Python then installs no
KeyboardInterrupt handler) and runs the worker module as ``python -m`` would; with ``--quiet``
without the two lines every worker printed at start (Beam's optional-dependency warning and
"Logging handler created."). The stage stops its workers itself (`components.shielded`).
"""

from __future__ import annotations

import contextlib
import logging
import runpy
import signal
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def ctrl_c_reaches_only_this_process(quiet: bool = True) -> Iterator[None]:
    """Python programs started with ``sys.executable`` inside the block (Beam's workers) ignore
    Ctrl-C; their own ``sys.executable`` is the interpreter as usual."""
    interpreter = sys.executable
    sys.executable = f"{interpreter} -m {__name__}" + (" --quiet" if quiet else "")
    try:
        yield
    finally:
        sys.executable = interpreter


def main(argv: list[str]) -> None:
    """``argv``: ``[--quiet] -m <module> [args…]``, the rest of the command line Beam built."""
    quiet = argv[:1] == ["--quiet"]
    argv = argv[quiet:]
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit(f"usage: python -m {__name__} [--quiet] -m MODULE [ARGS...]")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if quiet:
        from components.quiet import Drop

        logging.basicConfig()  # the handler the worker's first log line would create
        for handler in logging.getLogger().handlers:
            handler.addFilter(Drop("apitools not found", "Logging handler created."))
    module, sys.argv = argv[1], [argv[1], *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
