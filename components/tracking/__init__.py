"""MLflow tracking: one configured store, parent/child runs, provenance tags."""

from components.tracking.mlflow_runs import (
    EpochLogger,
    configure_tracking,
    data_version,
    flatten,
    git_commit,
    provenance_tags,
    resolved_uri,
)

__all__ = [
    "EpochLogger",
    "configure_tracking",
    "data_version",
    "flatten",
    "git_commit",
    "provenance_tags",
    "resolved_uri",
]
