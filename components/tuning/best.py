"""The configuration later stages use: the tune stage's best, else ``params.yaml``'s model."""

from __future__ import annotations

import json
from pathlib import Path

from components.config import ModelConfig, Params, parse

BEST_CONFIG = Path("reports/tune/best_config.json")


def chosen_model(params: Params, path: Path = BEST_CONFIG) -> tuple[ModelConfig, str]:
    """(model config, where it came from). The tune stage writes ``{"model": {...}}``."""
    if path.exists():
        payload = json.loads(path.read_text())
        return parse(ModelConfig, payload["model"], where=str(path)), f"tune: {path}"
    return params.model, "params.yaml model"


def holdout_subjects(path: Path = BEST_CONFIG) -> list[str]:
    """Subjects the tune stage never saw (empty when there is no tune result)."""
    if not path.exists():
        return []
    return list(json.loads(path.read_text()).get("holdout_subjects", []))
