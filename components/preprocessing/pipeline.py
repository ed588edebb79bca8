"""The preprocess Beam pipeline: labelled samples → sharded records, manifest, quarantine."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from components.config import Params, PreprocessConfig
from components.datasets import read_datasets
from components.errors import ConfigError
from components.preprocessing.extract import LabelledSample, label_sample
from components.preprocessing.transforms import (
    NAMESPACE,
    ExtractFeatures,
    WriteShards,
    WriteSortedTable,
)
from components.records.files import (
    EXCLUDED,
    MANIFEST,
    QUARANTINE,
    read_table,
    shard_name,
    write_shard,
    write_table,
)

TEXT, INT, FLOAT = pa.string(), pa.int64(), pa.float64()
MANIFEST_COLUMNS = {
    **dict.fromkeys(("uid", "dataset", "subject", "subject_id", "clip_id", "emotion"), TEXT),
    "label": INT,
    "native_label": INT,
    "shard": TEXT,
    **dict.fromkeys(("onset_frame", "apex_frame", "offset_frame"), INT),
    "detector": TEXT,
    **dict.fromkeys(("face_x", "face_y", "face_w", "face_h"), INT),
    **dict.fromkeys(("flow_mean_px", "flow_p99_px", "flow_max_px", "strain_mean"), FLOAT),
}
REPORT_COLUMNS = dict.fromkeys(
    ("dataset", "uid", "file", "row", "stage", "reason", "message"), TEXT
)


def pipeline_options(
    cfg: PreprocessConfig, workers: int | None, mode: str | None
) -> PipelineOptions:
    flags = [f"--runner={cfg.runner}", "--default_sdk_harness_log_level=ERROR"]
    if cfg.runner == "DirectRunner":
        count = workers or cfg.direct_num_workers or os.cpu_count() or 1
        flags += [
            f"--direct_running_mode={mode or cfg.direct_running_mode}",
            f"--direct_num_workers={count}",
        ]
    options = PipelineOptions(flags=[*flags, *cfg.beam_args])
    check_beam_flags(options)
    return options


def check_beam_flags(options: PipelineOptions) -> None:
    """A flag no Beam pipeline option knows (a typo in ``preprocess.beam_args``) is an error:
    Beam itself would drop it with a log line and run without it."""
    known = options.get_all_options()
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))
    if unknown:
        raise ConfigError(
            f"preprocess.beam_args: {', '.join('--' + u for u in unknown)} is not a flag of any "
            "Beam pipeline option (Beam would drop it and run without it)"
        )


def rejection_row(rejection, reason: str) -> dict:
    """A reader's rejection as a report row: ``reason`` is a code, ``message`` the details."""
    return {
        "dataset": rejection.dataset,
        "uid": f"{rejection.dataset}/?/{rejection.clip}",
        "file": rejection.file,
        "row": "" if rejection.row is None else str(rejection.row),
        "stage": "read",
        "reason": reason,
        "message": rejection.reason,
    }


def split_samples(params: Params) -> tuple[list[LabelledSample], list[dict], list[dict]]:
    """Read every dataset: (labelled samples, reader quarantine rows, excluded rows)."""
    result = read_datasets(params.datasets)
    labelled, excluded = [], [rejection_row(r, "excluded_by_dataset_rule") for r in result.excluded]
    for sample in sorted(result.samples, key=lambda s: s.uid):
        item = label_sample(sample)
        if item is None:
            excluded.append(
                {
                    "dataset": sample.dataset,
                    "uid": sample.uid,
                    "file": sample.onset_path,
                    "row": sample.source,
                    "stage": "label",
                    "reason": "outside_composite_task",
                    "message": f"emotion {sample.emotion!r} is not in the MEGC 2019 composite task",
                }
            )
        else:
            labelled.append(item)
    rejected = [rejection_row(r, r.code or "invalid_annotation") for r in result.rejections]
    return labelled, rejected, excluded


def build_pipeline(
    pipeline: beam.Pipeline,
    samples: list[LabelledSample],
    reader_quarantine: list[dict],
    cfg: PreprocessConfig,
    folder: str,
    tally: str | None = None,
) -> None:
    """Extract features (Beam workers, TensorFlow-free), write shards + manifest + quarantine
    into ``folder``; each sample done appends a byte to ``tally`` (a local file), if given."""
    extracted = (
        pipeline
        | "Samples" >> beam.Create(samples)
        | "Spread" >> beam.Reshuffle()
        | "ExtractFeatures" >> ExtractFeatures(cfg, tally)
    )
    (
        extracted.records
        | "WriteShards" >> WriteShards(folder, cfg.num_shards)
        | "WriteManifest" >> WriteSortedTable(f"{folder}/{MANIFEST}", MANIFEST_COLUMNS, "uid")
    )
    (
        (extracted.quarantine, pipeline | "ReaderQuarantine" >> beam.Create(reader_quarantine))
        | "AllQuarantine" >> beam.Flatten()
        | "WriteQuarantine" >> WriteSortedTable(f"{folder}/{QUARANTINE}", REPORT_COLUMNS, "uid")
    )


def counters(result) -> dict[str, int]:
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + counter.committed
    return dict(sorted(totals.items()))


def finish_folder(folder: Path, cfg: PreprocessConfig, excluded: list[dict]) -> list[dict]:
    """After the pipeline: empty shards for unused indices, the excluded table and the
    quarantine CSV; returns the quarantine rows."""
    for index in range(cfg.num_shards):  # a shard no sample hashed to is still written, empty
        path = folder / shard_name(index, cfg.num_shards)
        if not path.exists():
            write_shard(str(path), [])
    write_table(folder / EXCLUDED, excluded, REPORT_COLUMNS)
    quarantine = read_table(folder / QUARANTINE).to_pylist()
    with open(folder / "quarantine.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(REPORT_COLUMNS))
        writer.writeheader()
        writer.writerows(quarantine)
    return quarantine
