"""Beam transforms of the preprocess stage (labelled steps, type hints, metrics counters)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from components.config import PreprocessConfig
from components.preprocessing.extract import LabelledSample, SampleError, extract
from components.records.files import shard_name, write_shard
from components.records.schema import MerRecord, encode

NAMESPACE = "preprocess"
QUARANTINE_TAG = "quarantine"


def quarantine_row(item: LabelledSample, reason: str, message: str) -> dict:
    sample = item.sample
    return {
        "dataset": sample.dataset,
        "uid": sample.uid,
        "file": sample.onset_path,
        "row": sample.source,
        "stage": "preprocess",
        "reason": reason,
        "message": message,
    }


class ExtractFeaturesFn(beam.DoFn):
    """Sample → record; a failing sample goes to the quarantine output with its reason."""

    def __init__(self, cfg: PreprocessConfig, tally: str | None = None):
        self.cfg = cfg
        self.tally = tally  # a local file that gets a byte per sample done (progress)
        self.read = Metrics.counter(NAMESPACE, "samples_read")
        self.extracted = Metrics.counter(NAMESPACE, "samples_extracted")

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(1)  # parallelism comes from Beam workers, not OpenCV threads

    def process(self, item: LabelledSample) -> Iterable:
        self.read.inc()
        try:
            record = extract(item, self.cfg)
        except SampleError as exc:
            reason, message = exc.reason, str(exc)
        except Exception as exc:  # never let one sample kill a long run
            reason, message = "error", f"{type(exc).__name__}: {exc}"
        else:
            self.extracted.inc()
            self._tally()
            yield record
            return
        self._tally()
        Metrics.counter(NAMESPACE, f"quarantined_{reason}").inc()
        yield TaggedOutput(QUARANTINE_TAG, quarantine_row(item, reason, message))

    def _tally(self) -> None:
        if self.tally is None:
            return
        try:  # one appended byte: atomic from any number of worker processes
            descriptor = os.open(self.tally, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(descriptor, b".")
            finally:
                os.close(descriptor)
        except OSError:  # a remote worker without the file: no progress, nothing else lost
            self.tally = None


@beam.ptransform_fn
@beam.typehints.with_input_types(LabelledSample)
def ExtractFeatures(samples, cfg: PreprocessConfig, tally: str | None = None):
    """Labelled samples → (records, quarantine rows); a byte appended to ``tally`` (a local
    file) per sample done."""
    return samples | "Extract" >> beam.ParDo(ExtractFeaturesFn(cfg, tally)).with_outputs(
        QUARANTINE_TAG, main="records"
    )


def shard_of(uid: str, count: int) -> int:
    """Stable shard index of a sample (crc32: the same in every process and run)."""
    return zlib.crc32(uid.encode()) % count


def manifest_row(record: MerRecord, shard: str) -> dict:
    onset, apex, offset = record.frames
    x, y, w, h = record.face_box
    return {
        "uid": record.uid,
        "dataset": record.dataset,
        "subject": record.subject,
        "subject_id": record.subject_id,
        "clip_id": record.clip_id,
        "emotion": record.emotion,
        "label": record.label,
        "native_label": record.native_label,
        "shard": shard,
        "onset_frame": onset,
        "apex_frame": apex,
        "offset_frame": offset,
        "detector": record.detector,
        "face_x": x,
        "face_y": y,
        "face_w": w,
        "face_h": h,
        **record.extra,
    }


class WriteShardFn(beam.DoFn):
    """Write one shard, records sorted by uid (byte-identical output); emit manifest rows."""

    def __init__(self, records_dir: str, count: int):
        self.records_dir = records_dir
        self.count = count
        self.written = Metrics.counter(NAMESPACE, "samples_written")

    def process(self, keyed: tuple[int, Iterable[MerRecord]]) -> Iterable[dict]:
        index, records = keyed
        ordered = sorted(records, key=lambda r: r.uid)
        name = shard_name(index, self.count)
        self.written.inc(write_shard(f"{self.records_dir}/{name}", (encode(r) for r in ordered)))
        for record in ordered:
            yield manifest_row(record, name)


@beam.ptransform_fn
@beam.typehints.with_input_types(MerRecord)
def WriteShards(records, records_dir: str, count: int):
    """Records → sharded GZIP TFRecords under ``records_dir``; returns the manifest rows."""
    return (
        records
        | "KeyByShard" >> beam.Map(lambda r: (shard_of(r.uid, count), r))
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShard" >> beam.ParDo(WriteShardFn(records_dir, count))
    )


@beam.ptransform_fn
def WriteSortedTable(rows, path: str, columns: dict, sort_key: str):
    """Rows → one Parquet file sorted by ``sort_key`` (a small table: gathered on one worker)."""
    from components.records.files import write_table

    def write(all_rows: list[dict]) -> int:
        write_table(path, sorted(all_rows, key=lambda r: r[sort_key]), columns)
        return len(all_rows)

    return rows | "Gather" >> beam.combiners.ToList() | "Write" >> beam.Map(write)
