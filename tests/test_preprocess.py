"""The Beam preprocess stage on a tiny dataset in the CASME II layout with planted bad input."""

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import cv2
import numpy as np
import openpyxl
import pytest
import yaml
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from components.config import DatasetConfig, PreprocessConfig, SynthesizeConfig, load_params
from components.datasets import read_dataset
from components.datasets.synthetic import write_synthetic_casme2
from components.preprocessing.extract import label_sample
from components.preprocessing.transforms import ExtractFeatures
from components.records import read_table, shard_paths
from pipelines import preprocess
from tests.builders import stage_args


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 synthetic clips (2 subjects × 3 classes); one corrupt apex frame, one faceless clip,
    one sheet row with an unknown emotion."""
    root = tmp_path_factory.mktemp("raw") / "casme2"
    cfg = SynthesizeConfig(
        root=str(root), subjects=2, clips_per_class=1, frames_min=10, frames_max=12, frame_size=160
    )
    write_synthetic_casme2(cfg, seed=11)
    samples = sorted(
        read_dataset(DatasetConfig(name="casme2", root=str(root))).samples, key=lambda s: s.uid
    )
    Path(samples[0].apex_path).write_bytes(b"\xff\xd8 this is not a jpeg")
    for frame in samples[3].frames:
        cv2.imwrite(frame, np.full((160, 160, 3), 120, np.uint8))
    sheet = root / "CASME2-coding-synthetic.xlsx"
    workbook = openpyxl.load_workbook(sheet)
    workbook.active.append(("01", "EP99_01", None, 1, 2, 3, None, "4", "anxiety"))
    workbook.save(sheet)
    return root


def test_extract_features_transform_outputs(raw: Path) -> None:
    samples = sorted(
        read_dataset(DatasetConfig(name="casme2", root=str(raw))).samples, key=lambda s: s.uid
    )
    items = [label_sample(s) for s in samples]
    with BeamTestPipeline() as pipeline:
        outputs = pipeline | beam.Create(items) | ExtractFeatures(PreprocessConfig(num_shards=2))
        assert_that(
            outputs.records
            | "RecordIds" >> beam.Map(lambda r: (r.uid, r.label, r.flow.shape, r.clip.shape)),
            equal_to(
                [
                    (i.sample.uid, i.label, (28, 28, 3), (8, 64, 64, 1))
                    for k, i in enumerate(items)
                    if k not in (0, 3)
                ]
            ),
            label="records",
        )
        assert_that(
            outputs.quarantine | "Reasons" >> beam.Map(lambda row: (row["uid"], row["reason"])),
            equal_to([(items[0].sample.uid, "corrupt_frame"), (items[3].sample.uid, "no_face")]),
            label="quarantine",
        )


def write_params(folder: Path, raw: Path, **preprocess_overrides) -> Path:
    params = {
        "datasets": [{"name": "casme2", "root": str(raw)}],
        "preprocess": {
            "records_dir": str(folder / "records"),
            "num_shards": 2,
            "direct_num_workers": 2,
            "max_quarantine_fraction": 0.5,
            **preprocess_overrides,
        },
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_stage(params: Path, mode: str | None = None) -> int:
    return preprocess.run(stage_args(params, "preprocess", *(["--mode", mode] if mode else [])))


def manifest_uids_missing(raw: Path, manifest: list[dict]) -> list[str]:
    """Uids the reader found that are not in the manifest, sorted."""
    found = read_dataset(DatasetConfig(name="casme2", root=str(raw))).samples
    return sorted({s.uid for s in found} - {row["uid"] for row in manifest})


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_stage_writes_records_manifest_and_quarantine_deterministically(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, raw)
    assert load_params(params).preprocess.direct_running_mode == "multi_processing"
    assert run_stage(params) == 0
    records = tmp_path / "records"
    first = digest(records)

    manifest = read_table(records / "manifest.parquet").to_pylist()
    assert len(manifest) == 4
    assert [row["uid"] for row in manifest] == sorted(row["uid"] for row in manifest)
    assert {row["shard"] for row in manifest} <= {p.split("/")[-1] for p in shard_paths(records)}
    assert len(shard_paths(records)) == 2
    assert all(row["flow_mean_px"] > 0 and row["detector"] == "yuface" for row in manifest)

    with open(records / "quarantine.csv", newline="") as f:
        quarantine = {row["reason"]: row for row in csv.DictReader(f)}
    assert set(quarantine) == {"corrupt_frame", "no_face", "invalid_annotation"}
    assert "has no end-of-image marker" in quarantine["corrupt_frame"]["message"]
    assert quarantine["corrupt_frame"]["uid"] == manifest_uids_missing(raw, manifest)[0]
    bad_row = quarantine["invalid_annotation"]
    assert bad_row["stage"] == "read" and bad_row["row"] == "8"
    assert bad_row["file"].endswith("CASME2-coding-synthetic.xlsx")
    assert "unknown emotion 'anxiety'" in bad_row["message"]

    report = json.loads((tmp_path / "reports/preprocess.json").read_text())
    assert report["samples_written"] == 4 and report["quarantined"] == 3
    assert report["counters"]["samples_read"] == 6
    assert report["counters"]["quarantined_no_face"] == 1
    assert report["counters"]["quarantined_corrupt_frame"] == 1
    index = json.loads((records / "records.json").read_text())
    assert index["samples"] == 4 and sorted(index["shards"]) == [
        p.split("/")[-1] for p in shard_paths(records)
    ]

    assert run_stage(params) == 0  # same inputs and params -> byte-identical outputs
    assert digest(records) == first


def workers_ignoring_ctrl_c(driver: subprocess.Popen) -> list:
    """The stage's Beam worker processes that already ignore SIGINT."""
    import psutil

    def ignores_sigint(process) -> bool:
        status = Path(f"/proc/{process.pid}/status").read_text()
        ignored = int(status.split("SigIgn:")[1].split()[0], 16)
        return bool(ignored & (1 << (signal.SIGINT - 1)))

    found = []
    for process in psutil.Process(driver.pid).children(recursive=True):
        try:
            worker = any(part.endswith(".sdk_worker_main") for part in process.cmdline())
            if worker and ignores_sigint(process):
                found.append(process)
        except (psutil.NoSuchProcess, FileNotFoundError):
            pass
    return found


@pytest.mark.slow
def test_ctrl_c_stops_the_stage_and_its_workers_in_one_line(raw: Path, tmp_path: Path) -> None:
    """A terminal sends Ctrl-C to its whole foreground process group, Beam's worker processes
    included: the stage says one line and exits 130, no worker prints a traceback (each
    printed two), none is left running, nothing is published."""
    import psutil

    params = write_params(tmp_path, raw, max_quarantine_fraction=0.6)
    command = [sys.executable, "-m", "pipelines.cli", "--params", str(params), "preprocess"]
    driver = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # a process group of its own, as a terminal's foreground job
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while len(workers := workers_ignoring_ctrl_c(driver)) < 2 and time.time() < deadline:
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            time.sleep(0.05)
        assert len(workers) == 2, "the stage's two Beam workers did not start"
        os.killpg(driver.pid, signal.SIGINT)
        _, err = driver.communicate(timeout=120)
    finally:  # a stage that hangs is not left running
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 130, err[-3000:]
    said = [line for line in err.splitlines() if not line.startswith("preprocess: ")]
    assert said == ["mer preprocess: interrupted (Ctrl-C); nothing was published"], err[-3000:]
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
    assert not (tmp_path / "records").exists()


def test_stage_fails_when_too_much_is_quarantined_and_publishes_nothing(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from pipelines.cli import main

    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path, raw, max_quarantine_fraction=0.2)
    assert main(["--params", str(params), "preprocess", "--mode", "in_memory"]) == 2
    err = capsys.readouterr().err
    assert (
        "3 of 7 samples (42.9%) were quarantined, more than preprocess.max_quarantine_fraction 20.0%"
        in err
    )
    assert not (tmp_path / "records").exists()  # nothing published
    kept = tmp_path / "reports/preprocess_quarantine.csv"  # but the reasons are there to read
    assert kept.name in err and len(list(csv.DictReader(kept.open()))) == 3


def test_a_beam_flag_beam_does_not_know_is_an_error() -> None:
    """Beam drops an unknown flag with a log line and runs without it: a typo in
    `preprocess.beam_args` (a runner option misspelt) is one line naming it instead."""
    from components.config import ConfigError, PreprocessConfig
    from components.preprocessing.pipeline import pipeline_options

    good = PreprocessConfig(beam_args=("--flink_master=host:8081", "--max_num_workers", "3"))
    assert pipeline_options(good, 1, None).get_all_options()["flink_master"] == "host:8081"
    bad = PreprocessConfig(beam_args=("--flink_mastr=host:8081",))
    with pytest.raises(ConfigError, match=r"beam_args: --flink_mastr is not a flag of any Beam"):
        pipeline_options(bad, 1, None)
