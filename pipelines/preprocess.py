"""DVC stage ``preprocess``: raw datasets → sharded TFRecords, Parquet manifest, quarantine.

Runs on Apache Beam: the DirectRunner (multi-processing, one worker per core) by default; any
other runner through ``preprocess.runner`` and ``preprocess.beam_args``. Everything is written
to a staging folder next to ``records_dir`` and replaces it only when the stage succeeds.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time

from components.config import load_params
from components.progress import Bar, FileTally, level, say
from pipelines.arguments import non_negative_int

#: Beam runners whose workers run on this machine (and can report progress to a local file)
LOCAL_RUNNERS = ("DirectRunner", "PrismRunner")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", type=non_negative_int, help="override preprocess.direct_num_workers"
    )
    parser.add_argument(
        "--mode",
        choices=("in_memory", "multi_threading", "multi_processing"),
        help="override preprocess.direct_running_mode",
    )


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params, args.set)
    import apache_beam as beam

    from components.artifacts import Records
    from components.errors import DataError
    from components.outputs import Protected, staged_folder
    from components.preprocessing import pipeline as stage
    from components.preprocessing.beam_workers import ctrl_c_reaches_only_this_process
    from components.records.store import write_index
    from components.shielded import run_interruptibly

    cfg, records = params.preprocess, Records.of(params)
    options = stage.pipeline_options(cfg, args.workers, args.mode)  # a bad flag: before any work
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    started = time.perf_counter()
    with staged_folder(
        records.folder, "preprocess.records_dir", Protected.of(params), Records.OWNED
    ) as staging:
        samples, rejected, excluded = stage.split_samples(params)
        total = len(samples) + len(rejected)
        say(
            f"preprocess: {len(samples)} samples to process, {len(rejected)} rows quarantined by the readers, {len(excluded)} excluded by the protocol",
        )
        if total == 0:
            raise DataError("no samples found in the configured datasets (see `mer inspect`)")
        pipeline = beam.Pipeline(options=options)
        with Bar("preprocess", len(samples), "clip") as bar, FileTally(bar) as tally:
            local = cfg.runner in LOCAL_RUNNERS  # a remote worker cannot reach the tally
            stage.build_pipeline(
                pipeline, samples, rejected, cfg, str(staging), tally.path if local else None
            )
            quiet = level() != "verbose"  # a Ctrl-C: one line, none from each worker
            with ctrl_c_reaches_only_this_process(quiet):
                result = run_interruptibly(lambda: _run_to_the_end(pipeline))
        quarantine = stage.finish_folder(staging, cfg, excluded)
        index = write_index(staging)
        fraction = len(quarantine) / total
        report = {
            "samples_written": index["samples"],
            "quarantined": len(quarantine),
            "quarantine_fraction": round(fraction, 4),
            "excluded": len(excluded),
            "counters": stage.counters(result),
        }
        _check_quarantine(quarantine, total, cfg, records, staging)
    records.write_report(report)
    say("preprocess: counters " + ", ".join(f"{k}={v}" for k, v in report["counters"].items()))
    print(
        f"preprocess: wrote {index['samples']} records in {cfg.num_shards} shards to "
        f"{records.folder}; quarantined {len(quarantine)}, excluded {len(excluded)} ({time.perf_counter() - started:.0f} s)"
    )
    return 0


def _run_to_the_end(pipeline):
    """The finished pipeline's result (Beam's workers started from the calling thread)."""
    result = pipeline.run()
    result.wait_until_finish()
    return result


def _check_quarantine(quarantine: list, total: int, cfg, records, staging) -> None:
    """Show the first quarantined rows; refuse to publish when more than the allowed share of
    samples was quarantined (the quarantine list kept beside the report)."""
    from components.errors import DataError

    for row in quarantine[:20]:
        print(f"  quarantined {row['uid']}: {row['reason']}: {row['message']}")
    fraction = len(quarantine) / total
    if fraction > cfg.max_quarantine_fraction:
        kept = records.report.with_name("preprocess_quarantine.csv")
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(staging / "quarantine.csv", kept)
        raise DataError(
            f"{len(quarantine)} of {total} samples ({fraction:.1%}) were quarantined, more than "
            f"preprocess.max_quarantine_fraction {cfg.max_quarantine_fraction:.1%}; nothing was "
            f"published (see {kept})"
        )
