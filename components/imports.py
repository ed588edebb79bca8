"""Late imports for the light registries (name → ``module:object`` path)."""

from __future__ import annotations

import importlib
from typing import Any


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
