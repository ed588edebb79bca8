"""MLflow tracking: one configured store, parent/child runs, provenance tags."""

from components.provenance import data_version, git_commit, provenance_tags
from components.tracking.mlflow_runs import (
    configure_tracking,
    flatten,
    resolved_uri,
    store_lock,
    tracked_run,
)

__all__ = [
    "configure_tracking",
    "data_version",
    "flatten",
    "git_commit",
    "provenance_tags",
    "resolved_uri",
    "store_lock",
    "tracked_run",
]
