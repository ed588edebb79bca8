"""Late imports for the light registries (name → ``module:object`` path)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
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
