"""Record files: compressed TFRecord shards, the Parquet manifest and the quarantine report."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from components.records.tfrecord import write_records

SHARD_PATTERN = "records-{index:05d}-of-{count:05d}.tfrecord.gz"
MANIFEST = "manifest.parquet"
QUARANTINE = "quarantine.parquet"
EXCLUDED = "excluded.parquet"


def shard_name(index: int, count: int) -> str:
    return SHARD_PATTERN.format(index=index, count=count)


def write_shard(path: str, serialized: Iterable[bytes]) -> int:
    """Write one GZIP TFRecord shard atomically; returns the count."""
    return write_records(path, serialized)


def shard_paths(records_dir: str | Path) -> list[str]:
    """The shard files of a records folder, in order."""
    return sorted(str(p) for p in Path(records_dir).glob("records-*-of-*.tfrecord.gz"))


def write_table(path: str | Path, rows: list[dict], columns: dict[str, pa.DataType]) -> None:
    """A Parquet table with a fixed schema (so an empty report still has its columns)."""
    schema = pa.schema(list(columns.items()))
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, str(path), compression="zstd")


def read_table(path: str | Path) -> pa.Table:
    return pq.read_table(str(path))
