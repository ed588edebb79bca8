"""A fresh copy of the repository runs the whole experiment from scratch under the CPU kernel
set TensorFlow does not pick here: the kernel tier's end-to-end run (`make test-kernels`; the
default kernel set's is tests/test_end_to_end.py, which `make test` runs instead of this one).
The worse experiment (one epoch) of tests/test_end_to_end.py: wiring, not accuracy."""

import json
from pathlib import Path

import pytest

from tests.test_end_to_end import SMALL, WORSE, fresh_copy, run, set_params

pytestmark = pytest.mark.slow


def test_a_fresh_copy_runs_every_stage_to_a_full_loso_and_a_champion(tmp_path: Path) -> None:
    """Every stage, from the synthetic videos to the registry."""
    copy = fresh_copy(tmp_path)
    set_params(copy, {**SMALL, **WORSE})
    run(copy, "dvc", "repro")
    metrics = json.loads((copy / "reports/metrics.json").read_text())
    assert metrics["folds_run"] == 8 and metrics["composite"]["samples"] == 72  # every clip
    registration = json.loads((copy / "reports/register/registration.json").read_text())
    assert registration["version"] == 1 and registration["alias_moved"] is True
    assert "champion" in run(copy, "mer", "registry").splitlines()[2]
