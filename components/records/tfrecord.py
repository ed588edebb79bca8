"""TFRecord files without TensorFlow: framing with masked CRC32C, deterministic gzip.

Format (as TensorFlow's ``RecordWriter``): for each record, ``uint64 length``,
``uint32 masked_crc32c(length)``, ``data``, ``uint32 masked_crc32c(data)``, little-endian.
Compression is gzip (level 6, zlib's default, as TensorFlow) with a zero timestamp and no
file name, so the same records give the same
bytes; TensorFlow reads it with ``compression_type="GZIP"``.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterable, Iterator

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record with its TFRecord header and footer."""
    length = struct.pack("<Q", len(record))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + record
        + struct.pack("<I", masked_crc32c(record))
    )


def write_records(path: str, records: Iterable[bytes]) -> int:
    """Write a GZIP TFRecord file atomically (temporary file, then rename); returns the count."""
    temporary = f"{path}.tmp"
    count = 0
    with (
        open(temporary, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as out,
    ):
        for record in records:
            out.write(frame(record))
            count += 1
    os.replace(temporary, path)
    return count


def read_records(path: str) -> Iterator[bytes]:
    """Read a GZIP TFRecord file, checking every CRC (tools and tests)."""
    with gzip.open(path, "rb") as stream:
        while header := stream.read(12):
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise ValueError(f"{path}: corrupt record length")
            data = stream.read(length)
            (data_crc,) = struct.unpack("<I", stream.read(4))
            if masked_crc32c(data) != data_crc:
                raise ValueError(f"{path}: corrupt record data")
            yield data
