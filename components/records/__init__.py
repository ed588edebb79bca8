"""TFRecord schema (one module for writer and reader), shard files and manifest."""

from components.records.files import (
    EXCLUDED,
    MANIFEST,
    QUARANTINE,
    read_table,
    shard_name,
    shard_paths,
    write_shard,
    write_table,
)
from components.records.schema import FIELDS, MerRecord, decode, encode, feature_spec, parse

__all__ = [
    "EXCLUDED",
    "FIELDS",
    "MANIFEST",
    "QUARANTINE",
    "MerRecord",
    "decode",
    "encode",
    "feature_spec",
    "parse",
    "read_table",
    "shard_name",
    "shard_paths",
    "write_shard",
    "write_table",
]
