"""The fold-stacked convolution's form a user pinned (``MER_FOLD_CONV``), checked before a stage
starts: without importing TensorFlow here (a stage that trains on Ray never loads it)."""

from __future__ import annotations

import os

from components.errors import PlatformError
from components.imports import run_module

ENVIRONMENT = "MER_FOLD_CONV"


def check_pinned_form() -> None:
    """Before a stage trains anything: a ``MER_FOLD_CONV`` form this machine cannot train (or no
    form at all) is one line now, not a failure inside every unit or trial. Checked in a
    subprocess (components/models/fold_conv.py), so the caller's TensorFlow stays unloaded or
    uninitialised (its threads and devices are set later); nothing to do when no form is
    pinned."""
    if not os.environ.get(ENVIRONMENT, "").strip():
        return
    done = run_module("components.models.fold_conv")
    if done.returncode == 2:
        raise PlatformError(done.stdout.strip())
    if done.returncode:
        raise RuntimeError(f"probing TensorFlow's kernels failed:\n{done.stderr[-3000:]}")
