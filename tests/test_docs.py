"""The documentation: the README stays short and its links resolve, and the Python API's worked
example runs (so neither can go stale)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import fake_records

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_is_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target


@pytest.mark.slow
def test_the_worked_example_runs(tmp_path) -> None:
    fake_records(tmp_path / "records", subjects=5, per_class=2)
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs/examples/quickstart.py"), str(tmp_path / "records"),
         "--epochs", "4"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "30 samples of 5 subjects; training 4 LOSO folds" in out
    assert re.search(r"none: UF1 \d\.\d{3}, UAR \d\.\d{3}", out)
    assert re.search(r"ΔUF1 [+-]\d\.\d{3} \[", out)
    assert "attention map" in out and "shape (1, 10, 10, 1)" in out
