"""Dataset readers: each parses one dataset's real sheet and layout into :class:`Sample` records."""

from __future__ import annotations

from collections.abc import Callable

from components.config import DatasetConfig
from components.datasets.casme2 import read_casme2
from components.datasets.casme3 import read_casme3
from components.datasets.samm import read_samm
from components.datasets.sample import DatasetError, ReadResult, Rejection, Sample
from components.datasets.smic import read_smic

READERS: dict[str, Callable[[DatasetConfig], ReadResult]] = {
    "casme2": read_casme2,
    "samm": read_samm,
    "smic": read_smic,
    "casme3": read_casme3,
}


def read_dataset(cfg: DatasetConfig) -> ReadResult:
    """Read one configured dataset with its reader."""
    return READERS[cfg.name](cfg)


def read_datasets(configs: tuple[DatasetConfig, ...]) -> ReadResult:
    """Read every configured dataset into one result (samples, quarantine, exclusions)."""
    result = ReadResult()
    for cfg in configs:
        result.extend(read_dataset(cfg))
    return result


__all__ = [
    "READERS",
    "DatasetError",
    "ReadResult",
    "Rejection",
    "Sample",
    "read_dataset",
    "read_datasets",
]
