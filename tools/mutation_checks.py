"""Mutation checks: break one line that a key invariant rests on, and make sure a test fails.

    python tools/mutation_checks.py [WORDS]  (make test-mutations; WORDS: only the invariants
                                              whose description holds them)

Each mutation replaces one line of the project's code, runs the tests that guard the invariant,
and restores the line (also when interrupted). A mutation the tests do not catch is an
invariant nobody checks: the script exits 1 and names it. A file with uncommitted changes is
not touched.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    invariant: str
    path: str
    line: str  # exactly as in the file (stripped), found once
    broken: str  # what it becomes (same indentation)
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "no test-subject leak: stacked folds draw their batches from their own training rows",
        "components/training/fold_models.py",
        "[f.train for f in self.folds],",
        "[np.concatenate([f.train, f.predict]) for f in self.folds],",
        ("tests/test_training.py::test_a_fold_learns_nothing_from_its_test_subject",),
    ),
    Mutation(
        "no test-subject leak: a LOSO fold trains without its test subject",
        "components/evaluation/splits.py",
        "[s for s in ordered if s != subject], validation_fraction, seed, subject",
        "list(ordered), validation_fraction, seed, subject",
        ("tests/test_splits.py",),
    ),
    Mutation(
        "stacked = ordinary: each fold's BatchNorm statistics move as Keras' do",
        "components/models/stacked.py",
        "momentum = 1.0 - (1.0 - BN_MOMENTUM) * seen",
        "momentum = 1.0 - (1.0 - 0.9) * seen",
        ("tests/test_training.py::test_a_fold_trains_the_same_stacked_or_alone",),
    ),
    Mutation(
        "resume = straight run: a resumed run continues the optimizer's state",
        "components/training/run.py",
        '_assign_all(model.optimizer.variables, state["optimizer"], "optimizer")',
        "pass",
        ("tests/test_training.py::test_a_resumed_run_ends_exactly_as_an_uninterrupted_one",),
    ),
    Mutation(
        "the champion alias moves only to a strictly better model",
        "components/tracking/registry.py",
        "if mine > best:",
        "if mine >= best:",
        (
            "tests/test_registry.py::"
            "test_the_alias_moves_only_to_a_better_version_on_the_same_protocol_and_data",
        ),
    ),
)


def mutated(text: str, mutation: Mutation) -> str:
    lines = text.split("\n")
    found = [i for i, line in enumerate(lines) if line.strip() == mutation.line]
    if len(found) != 1:
        raise SystemExit(f"{mutation.path}: {mutation.line!r} found {len(found)} times, not once")
    line = lines[found[0]]
    lines[found[0]] = line[: len(line) - len(line.lstrip())] + mutation.broken
    return "\n".join(lines)


def uncommitted(path: str) -> bool:
    done = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", path], cwd=ROOT)
    return done.returncode != 0


def caught(mutation: Mutation) -> tuple[bool, float]:
    """Whether a guarding test's assertion fails with the line broken; the seconds it took."""
    file = ROOT / mutation.path
    original = file.read_text()
    file.write_text(mutated(original, mutation))
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                *mutation.tests,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        file.write_text(original)
    # caught = a test's assertion failed (not an import or attribute error of a bad mutation)
    return done.returncode == 1 and "AssertionError" in done.stdout, time.perf_counter() - started


def main() -> int:
    dirty = sorted({m.path for m in MUTATIONS if uncommitted(m.path)})
    if dirty:
        print(f"uncommitted changes in {', '.join(dirty)}: commit them first", file=sys.stderr)
        return 2
    words = " ".join(sys.argv[1:])
    rows, survivors = [], []
    for mutation in (m for m in MUTATIONS if words in m.invariant):
        failed, seconds = caught(mutation)
        verdict = "caught" if failed else "NOT CAUGHT"
        print(f"{verdict}: {mutation.invariant} ({seconds:.0f} s)", flush=True)
        tests = ", ".join(f"`{test.split('/')[-1]}`" for test in mutation.tests)
        rows.append(
            f"| {mutation.invariant} | `{mutation.path}`: `{mutation.line}` → `{mutation.broken}`"
            f" | {tests} | {verdict} |"
        )
        if not failed:
            survivors.append(mutation.invariant)
    print("\n| invariant | mutation | guarding tests | result |\n| --- | --- | --- | --- |")
    print("\n".join(rows))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
