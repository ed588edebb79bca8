"""Dataset readers: each parses one dataset's real sheet and layout into :class:`Sample` records
(see :mod:`components.datasets.registry` for the names and options)."""

from __future__ import annotations

from components.config import DatasetConfig
from components.datasets.registry import READERS
from components.datasets.sample import DatasetError, ReadResult, Rejection, Sample


def read_dataset(cfg: DatasetConfig) -> ReadResult:
    """Read one configured dataset with its reader."""
    from components.imports import load_target

    return load_target(READERS[cfg.name].target)(cfg)


def read_datasets(configs: tuple[DatasetConfig, ...]) -> ReadResult:
    """Read every configured dataset into one result (samples, quarantine, exclusions). A
    sample whose uid an earlier row already gave (a sheet row listed twice) is quarantined as
    ``duplicate_row``, naming both rows: it would otherwise count twice in every fold."""
    result = ReadResult()
    for cfg in configs:
        result.extend(read_dataset(cfg))
    first: dict[str, Sample] = {}
    unique = []
    for sample in result.samples:
        if sample.uid in first:
            file, _, row = sample.source.rpartition(":")
            result.rejections.append(
                Rejection(
                    sample.dataset,
                    file or sample.source,
                    int(row) if row.isdigit() else None,
                    sample.clip,
                    f"{sample.uid} repeats {first[sample.uid].source}",
                    code="duplicate_row",
                )
            )
        else:
            first[sample.uid] = sample
            unique.append(sample)
    result.samples = unique
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
