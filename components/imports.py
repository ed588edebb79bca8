"""Late imports for the light registries (name → ``module:object`` path)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, what: str, error: type = ValueError) -> T:
    """``table[name]``; an unknown name raises ``error`` naming the valid ones."""
    try:
        return table[name]
    except KeyError:
        raise error(f"unknown {what} {name!r}; valid {what}s are: {', '.join(table)}") from None


def load_target(target: str) -> Any:
    """The object a ``module:name`` path names."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def lazy_attributes(table: dict[str, str]):
    """A module ``__getattr__`` that imports ``name`` from ``table[name]`` on first use (light
    packages: their heavy classes load only when asked for)."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(name)

    return __getattr__


def run_module(module: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``python -m module`` of this project in a subprocess (its root on ``PYTHONPATH``,
    TensorFlow's C++ logs off), output captured: for work that must not start TensorFlow in
    the caller, whose threads and devices can be set only before it starts."""
    root = str(Path(__file__).resolve().parents[1])
    environment = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", module],
        input=stdin, capture_output=True, text=True, env=environment,
    )  # fmt: skip
