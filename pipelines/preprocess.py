"""DVC stage ``preprocess``: raw datasets → sharded TFRecords, Parquet manifest, quarantine.

Runs on Apache Beam: the DirectRunner (multi-processing, one worker per core) by default; any
other runner through ``preprocess.runner`` and ``preprocess.beam_args``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from components.config import Params, PreprocessConfig, load_params
from components.datasets import read_datasets
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

REPORT = Path("reports/preprocess.json")
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, help="override preprocess.direct_num_workers")
    parser.add_argument(
        "--mode",
        choices=("in_memory", "multi_threading", "multi_processing"),
        help="override preprocess.direct_running_mode",
    )


def pipeline_options(
    cfg: PreprocessConfig, workers: int | None, mode: str | None
) -> PipelineOptions:
    flags = [f"--runner={cfg.runner}", "--default_sdk_harness_log_level=WARNING"]
    if cfg.runner == "DirectRunner":
        count = workers or cfg.direct_num_workers or os.cpu_count() or 1
        flags += [
            f"--direct_running_mode={mode or cfg.direct_running_mode}",
            f"--direct_num_workers={count}",
        ]
    return PipelineOptions(flags=[*flags, *cfg.beam_args])


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
    return labelled, [rejection_row(r, "invalid_annotation") for r in result.rejections], excluded


def build_pipeline(
    pipeline: beam.Pipeline,
    samples: list[LabelledSample],
    reader_quarantine: list[dict],
    cfg: PreprocessConfig,
) -> None:
    records_dir = cfg.records_dir
    extracted = (
        pipeline
        | "Samples" >> beam.Create(samples)
        | "Spread" >> beam.Reshuffle()
        | "ExtractFeatures" >> ExtractFeatures(cfg)
    )
    (
        extracted.records
        | "WriteShards" >> WriteShards(records_dir, cfg.num_shards)
        | "WriteManifest" >> WriteSortedTable(f"{records_dir}/{MANIFEST}", MANIFEST_COLUMNS, "uid")
    )
    (
        (extracted.quarantine, pipeline | "ReaderQuarantine" >> beam.Create(reader_quarantine))
        | "AllQuarantine" >> beam.Flatten()
        | "WriteQuarantine"
        >> WriteSortedTable(f"{records_dir}/{QUARANTINE}", REPORT_COLUMNS, "uid")
    )


def counters(result) -> dict[str, int]:
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + counter.committed
    return dict(sorted(totals.items()))


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    cfg = params.preprocess
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    started = time.perf_counter()
    samples, reader_quarantine, excluded = split_samples(params)
    print(
        f"preprocess: {len(samples)} samples to process, {len(reader_quarantine)} rows "
        f"quarantined by the readers, {len(excluded)} excluded by the protocol",
        flush=True,
    )
    records_dir = Path(cfg.records_dir)
    if records_dir.exists():
        shutil.rmtree(records_dir)
    records_dir.mkdir(parents=True)

    pipeline = beam.Pipeline(options=pipeline_options(cfg, args.workers, args.mode))
    build_pipeline(pipeline, samples, reader_quarantine, cfg)
    result = pipeline.run()
    result.wait_until_finish()
    totals = counters(result)

    for index in range(cfg.num_shards):  # a shard no sample hashed to is still written, empty
        path = records_dir / shard_name(index, cfg.num_shards)
        if not path.exists():
            write_shard(str(path), [])
    write_table(records_dir / EXCLUDED, excluded, REPORT_COLUMNS)
    quarantine = read_table(records_dir / QUARANTINE).to_pylist()
    with open(records_dir / "quarantine.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(REPORT_COLUMNS))
        writer.writeheader()
        writer.writerows(quarantine)

    written = len(read_table(records_dir / MANIFEST))
    total = len(samples) + len(reader_quarantine)
    fraction = len(quarantine) / total if total else 0.0
    report = {
        "samples_written": written,
        "quarantined": len(quarantine),
        "quarantine_fraction": round(fraction, 4),
        "excluded": len(excluded),
        "seconds": round(time.perf_counter() - started, 1),
        "counters": totals,
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print("preprocess: counters " + ", ".join(f"{k}={v}" for k, v in totals.items()))
    print(
        f"preprocess: wrote {written} records in {cfg.num_shards} shards to {records_dir}; "
        f"quarantined {len(quarantine)}, excluded {len(excluded)} ({report['seconds']} s)"
    )
    for row in quarantine[:20]:
        print(f"  quarantined {row['uid']}: {row['reason']}: {row['message']}")
    if total == 0:
        print("preprocess: no samples found in the configured datasets", file=sys.stderr)
        return 1
    if fraction > cfg.max_quarantine_fraction:
        print(
            f"preprocess: FAILED: {len(quarantine)} of {total} samples ({fraction:.1%}) were "
            f"quarantined, more than max_quarantine_fraction {cfg.max_quarantine_fraction:.1%}; "
            f"see {records_dir}/quarantine.csv",
            file=sys.stderr,
        )
        return 1
    return 0
