"""Late imports for the light registries (name → ``module:object`` path)."""

from __future__ import annotations

import importlib
from typing import Any


def load_target(target: str) -> Any:
    """The object a ``module:name`` path names."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)
