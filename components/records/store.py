"""The preprocessed records as one validated, in-memory set.

``preprocess`` ends by writing an index (``records.json``: every shard with its record count and
MD5). :func:`load_records` checks the folder against it before anything trains: a missing
manifest or index (a killed preprocess), a missing, extra, truncated or altered shard, or
counts that disagree with the manifest are one-line :class:`~components.errors.DataError`s
naming the file and the fix. The records are then decoded once through the shared schema into
arrays aligned with the manifest (sorted by uid): at MER scale (hundreds to a few thousand
clips) they fit in memory many times over, and every fold, seed and epoch reads them from there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd

from components.errors import ConfigError, DataError
from components.parsing import Range, parse
from components.records.files import MANIFEST, read_table, shard_paths
from components.records.schema import SCHEMA_VERSION, decode
from components.records.tfrecord import read_records

INDEX = "records.json"
FIX = "run `mer preprocess` (or `dvc repro preprocess`) again"


def file_md5(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardEntry:
    records: Annotated[int, Range(ge=0)]
    md5: str


@dataclass(frozen=True)
class RecordsIndex:
    """``records.json``, read back through the typed schema."""

    schema_version: int
    samples: Annotated[int, Range(ge=0)]
    shards: dict[str, ShardEntry]


def write_index(folder: str | Path) -> dict:
    """Write ``records.json``: schema version, sample count, each shard's count and MD5."""
    folder = Path(folder)
    manifest = read_table(folder / MANIFEST).to_pandas()
    counts = manifest.groupby("shard").size().to_dict() if len(manifest) else {}
    index = {
        "schema_version": SCHEMA_VERSION,
        "samples": len(manifest),
        "shards": {
            Path(path).name: {"records": int(counts.get(Path(path).name, 0)), "md5": file_md5(path)}
            for path in shard_paths(folder)
        },
    }
    (folder / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return index


def check_records(folder: str | Path) -> tuple[dict, pd.DataFrame]:
    """Validate a records folder against its index; returns (index, manifest)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"records folder {folder} does not exist: {FIX}")
    for name in (MANIFEST, INDEX):
        if not (folder / name).is_file():
            raise DataError(
                f"{folder / name} is missing (preprocessing did not finish, or the folder was "
                f"written by an older version): {FIX}"
            )
    try:
        raw = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        manifest = read_table(folder / MANIFEST).to_pandas()
    except Exception as exc:  # a damaged parquet/json: say which and how to fix it
        raise DataError(
            f"cannot read {folder / INDEX} or {folder / MANIFEST} ({exc}): {FIX}"
        ) from None
    if isinstance(raw, dict) and raw.get("schema_version") != SCHEMA_VERSION:
        raise DataError(
            f"{folder / INDEX}: schema version {raw.get('schema_version')}, this code reads "
            f"{SCHEMA_VERSION}: {FIX}"
        )
    try:
        index = asdict(parse(RecordsIndex, raw, str(folder / INDEX)))
    except ConfigError as exc:
        raise DataError(f"{exc}: {FIX}") from None
    if len(manifest) and manifest.uid.duplicated().any():
        twice = manifest.uid[manifest.uid.duplicated()].iloc[0]
        raise DataError(f"{folder / MANIFEST} lists {twice} more than once: {FIX}")
    on_disk = {Path(p).name for p in shard_paths(folder)}
    expected = set(index["shards"])
    if missing := sorted(expected - on_disk):
        raise DataError(f"shard {folder / missing[0]} is missing: {FIX}")
    if extra := sorted(on_disk - expected):
        raise DataError(
            f"shard {folder / extra[0]} is not in {INDEX} (left from another run?): {FIX}"
        )
    counts = manifest.groupby("shard").size().to_dict() if len(manifest) else {}
    for name, entry in sorted(index["shards"].items()):
        if file_md5(folder / name) != entry["md5"]:
            raise DataError(
                f"shard {folder / name} is truncated or was changed after preprocessing "
                f"(checksum differs from {INDEX}): {FIX}"
            )
        if counts.get(name, 0) != entry["records"]:
            raise DataError(
                f"{folder / MANIFEST} lists {counts.get(name, 0)} records in {name}, "
                f"{INDEX} {entry['records']}: {FIX}"
            )
    return index, manifest


@dataclass
class RecordSet:
    """Every record of a folder in memory, row ``i`` of each array = row ``i`` of ``manifest``
    (sorted by uid): ``flow`` float32 (N, S, S, 3), ``clip`` uint8 (N, T, C, C, 1)."""

    folder: Path
    manifest: pd.DataFrame
    flow: np.ndarray
    clip: np.ndarray
    clip_frames: list[tuple[int, ...]]  # the frame numbers resampled into each clip

    @property
    def labels(self) -> np.ndarray:
        return self.manifest.label.to_numpy(np.int64)

    @property
    def subjects(self) -> list[str]:
        return sorted(self.manifest.subject_id.unique())

    def positions(self, subjects: Sequence[str]) -> np.ndarray:
        """Row indices of the samples of ``subjects`` (in uid order)."""
        return np.flatnonzero(self.manifest.subject_id.isin(set(subjects)).to_numpy())

    def rows(self, subjects: Sequence[str]) -> pd.DataFrame:
        return self.manifest.iloc[self.positions(subjects)]

    def inputs(self, kind: str) -> np.ndarray:
        """Model inputs of every sample: the flow stack, or the clip scaled to [0, 1]."""
        if kind == "flow":
            return self.flow
        if (self.manifest.detector == "precomputed").any():
            raise ConfigError(
                "model.backbone takes clips of frames, but these records come from released "
                "flow images (flow_images), which hold no clips: choose a flow backbone"
            )
        return self.clip.astype(np.float32) / 255.0


def load_records(folder: str | Path) -> RecordSet:
    """Validate ``folder`` (:func:`check_records`) and decode every record into memory."""
    folder = Path(folder)
    index, manifest = check_records(folder)
    manifest = manifest.sort_values("uid").reset_index(drop=True)
    position = {uid: k for k, uid in enumerate(manifest.uid)}
    flows: list = [None] * len(manifest)
    clips: list = [None] * len(manifest)
    numbers: list = [None] * len(manifest)
    for name in sorted(index["shards"]):
        try:
            for serialized in read_records(str(folder / name)):
                record = decode(serialized)
                if record.uid not in position:
                    raise DataError(
                        f"shard {folder / name} holds {record.uid}, not in the manifest: {FIX}"
                    )
                flows[position[record.uid]] = record.flow
                clips[position[record.uid]] = record.clip
                numbers[position[record.uid]] = record.clip_frames
        except (EOFError, OSError, ValueError) as exc:
            raise DataError(f"shard {folder / name} cannot be read ({exc}): {FIX}") from None
    if missing := [uid for uid, k in position.items() if flows[k] is None]:
        raise DataError(
            f"{len(missing)} manifest records are in no shard (e.g. {missing[0]}): {FIX}"
        )
    if not flows:
        raise DataError(f"{folder} holds no records: check the datasets in params.yaml and {FIX}")
    return RecordSet(folder, manifest, np.stack(flows).astype(np.float32), np.stack(clips), numbers)


_CACHE: dict[str, RecordSet] = {}


def cached_records(folder: str | Path, version: str) -> RecordSet:
    """:func:`load_records`, once per process and data version (Ray reuses worker processes
    for many units and trials)."""
    key = f"{Path(folder).resolve()}@{version}"
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_records(folder)
    return _CACHE[key]
