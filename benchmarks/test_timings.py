"""Where the test suite's time goes: wall seconds per test module, from a JUnit XML report.

    make test-timings                                   (runs the suite, then this)
    python -m benchmarks.test_timings REPORT.xml [--cpu CPU.jsonl] [--label LABEL]

Each module's tests summed (setup and teardown of its fixtures included, as pytest times them),
sorted by time, with its share of the whole and, given ``tools/pytest_cpu.py``'s record, the CPU
seconds of its tests' process trees; written to ``benchmarks/RESULTS.md`` as the
section "test timings" (or "test timings: LABEL", e.g. before and after a change).
"""

from __future__ import annotations

import argparse
import json
import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def module_times(report: Path) -> dict[str, tuple[float, int, int]]:
    """Per test module: (seconds, tests, tests not passed)."""
    totals: dict[str, list] = defaultdict(lambda: [0.0, 0, 0])
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "?").split(".")
        name = ".".join(part for part in module if part.startswith("test_")) or module[-1]
        entry = totals[name]
        entry[0] += float(case.get("time", 0.0))
        entry[1] += 1
        entry[2] += any(child.tag in ("failure", "error") for child in case)
    return {k: (v[0], v[1], v[2]) for k, v in totals.items()}


def module_cpu(record: Path) -> dict[str, float]:
    """Per test module: the CPU seconds of its tests' process trees (tools/pytest_cpu.py)."""
    totals: dict[str, float] = defaultdict(float)
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        totals[Path(entry["test"].split("::")[0]).stem] += entry["cpu"]
    return dict(totals)


def table(times: dict[str, tuple[float, int, int]], cpu: dict[str, float] | None = None) -> str:
    total = sum(t for t, _, _ in times.values()) or 1.0
    cpu_cell = (lambda name: f" {cpu.get(name, 0.0):.0f} |") if cpu else (lambda name: "")
    rows = [
        f"| `{name}` | {count} | {seconds:.0f} | {seconds / total:.0%} |{cpu_cell(name)}"
        + (f" {failed} not passed |" if failed else " |")
        for name, (seconds, count, failed) in sorted(times.items(), key=lambda kv: -kv[1][0])
    ]
    tests = sum(c for _, c, _ in times.values())
    head, rule = (" CPU-s |", " ---: |") if cpu else ("", "")
    all_cpu = f" **{sum(cpu.values()):.0f}** |" if cpu else ""
    return (
        f"| module | tests | seconds | share |{head} |\n| --- | ---: | ---: | ---: |{rule} --- |\n"
        + "\n".join(rows)
        + f"\n| **all** | **{tests}** | **{total:.0f}** ({total / 60:.1f} min) | 100% |{all_cpu} |"
    )


def wall_seconds(report: Path) -> float:
    """The whole run's wall time as pytest recorded it (with workers: not the sum of tests)."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return max(float(suite.get("time", 0.0)) for suite in suites)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.test_timings")
    parser.add_argument("report", type=Path, help="pytest's --junitxml report")
    parser.add_argument("--label", default="", help="e.g. before / after")
    parser.add_argument("--workers", default="", help="pytest-xdist's options of the run")
    parser.add_argument("--cpu", type=Path, help="tools/pytest_cpu.py's record of the run")
    args = parser.parse_args(argv)
    from benchmarks.results import write_section

    wall = wall_seconds(args.report)
    cpu = module_cpu(args.cpu) if args.cpu and args.cpu.is_file() else None
    workers = f"`{args.workers}`" if args.workers else "one process"
    body = (
        f"pytest's wall time **{wall:.0f} s ({wall / 60:.1f} min)** on {workers}; its own "
        "per-test times summed per module below (fixtures included; with several workers on 2 "
        "cores each test's time includes waiting for a core, so the sum exceeds the wall time), "
        f"`TF_ENABLE_ONEDNN_OPTS` {os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}.\n\n"
        f"{table(module_times(args.report), cpu)}\n"
    )
    print(body)
    name = "test timings" + (f": {args.label}" if args.label else "")
    write_section(name, "make test-timings", body)


if __name__ == "__main__":
    main()
