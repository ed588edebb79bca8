"""A pytest plugin: each test's CPU seconds with its whole process tree, one JSON line a test.

    pytest -p tools.pytest_cpu ...        (``make test-timings`` loads it)

At each test's start and end it adds up this process's own CPU, its reaped children's
(``getrusage``: subprocesses and theirs, once waited for) and its live descendants' (their own
and reaped children's, via psutil), and writes the difference with the test's wall time to
``$PYTEST_CPU_OUT`` (default ``.mer/cpu.jsonl``). Work done by processes that are not this
process's descendants (a Ray cluster another module started) is not in it.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import psutil

_started: dict[str, tuple[float, float]] = {}


def tree_cpu_seconds() -> float:
    me = psutil.Process()
    own = me.cpu_times()
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.user + own.system + reaped.ru_utime + reaped.ru_stime
    for process in me.children(recursive=True):
        try:
            t = process.cpu_times()
        except psutil.Error:  # ended meanwhile: its parent's reaped times will hold it
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def pytest_runtest_protocol(item, nextitem) -> None:
    _started[item.nodeid] = (tree_cpu_seconds(), time.perf_counter())


def pytest_runtest_logfinish(nodeid, location) -> None:
    if nodeid not in _started:
        return
    cpu, wall = _started.pop(nodeid)
    out = Path(os.environ.get("PYTEST_CPU_OUT", ".mer/cpu.jsonl"))
    out.parent.mkdir(parents=True, exist_ok=True)
    line = {"test": nodeid, "cpu": tree_cpu_seconds() - cpu, "wall": time.perf_counter() - wall}
    with out.open("a") as f:
        f.write(json.dumps(line) + "\n")
