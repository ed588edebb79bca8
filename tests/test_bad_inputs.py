"""Adversarial inputs, as a new user would try them: each gets one clear line (file, key or row
and the fix), exit code 2, and nothing outside the stage's own outputs changes."""

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from components.config import DatasetConfig, PreprocessConfig, SynthesizeConfig
from components.datasets import read_dataset
from components.datasets.synthetic import write_synthetic_casme2
from components.outputs import write_json
from pipelines.cli import main
from tests.builders import fake_records, small_project

ROOT = Path(__file__).resolve().parents[1]


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with the hash of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def refused(capsys, root: Path, argv: list[str], expected: str) -> None:
    """``mer ARGV`` fails with one line holding ``expected`` and changes nothing under root."""
    before = tree(root)
    one_line_error(capsys, main(argv), expected)
    assert tree(root) == before


def one_line_error(capsys, code: int, expected: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("mer ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """A tiny real-layout dataset: 2 subjects × 3 clips of 160² frames."""
    root = tmp_path_factory.mktemp("raw") / "data" / "raw" / "casme2"
    cfg = SynthesizeConfig(
        root=str(root), subjects=2, clips_per_class=1, frames_min=10, frames_max=12, frame_size=160
    )
    write_synthetic_casme2(cfg, seed=5)
    return root


def project_with(raw: Path, folder: Path, **preprocess) -> Path:
    """A project folder holding a copy of the dataset under data/raw and a notes file in data/."""
    shutil.copytree(raw, folder / "data/raw/casme2")
    (folder / "data/notes.txt").write_text("my notes: never delete me\n")
    params = {
        "datasets": [{"name": "casme2", "root": "data/raw/casme2"}],
        "synthesize": {"root": "data/raw/synthetic"},
        "preprocess": {
            "records_dir": "data/records",
            "num_shards": 2,
            "direct_running_mode": "in_memory",
            "max_quarantine_fraction": 0.5,
            **preprocess,
        },
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder / "params.yaml"


@pytest.mark.parametrize(
    ("records_dir", "message"),
    [
        ("data", "preprocess.records_dir: 'data' contains"),
        (".", "preprocess.records_dir: '.' is"),
        ("data/raw/casme2", "preprocess.records_dir: 'data/raw/casme2' is"),
        ("data/raw/casme2/out", "is inside the dataset root"),
    ],
)
def test_records_dir_over_user_data_is_refused_and_nothing_is_deleted(
    raw, tmp_path, monkeypatch, capsys, records_dir, message
) -> None:
    params = project_with(raw, tmp_path, records_dir=records_dir)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    one_line_error(capsys, main(["--params", str(params), "preprocess"]), message)
    assert tree(tmp_path) == before


def test_a_records_folder_with_foreign_files_is_refused(raw, tmp_path, monkeypatch, capsys) -> None:
    params = project_with(raw, tmp_path, records_dir="data/mine")
    (tmp_path / "data/mine").mkdir()
    (tmp_path / "data/mine/thesis.docx").write_text("chapter 1")
    monkeypatch.chdir(tmp_path)
    argv = ["--params", str(params), "preprocess"]
    refused(capsys, tmp_path, argv, "holds files this stage did not write (thesis.docx)")


def test_a_failed_rerun_keeps_the_previous_good_records(raw, tmp_path, monkeypatch, capsys) -> None:
    params = project_with(raw, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["--params", str(params), "preprocess"]) == 0
    good = tree(tmp_path / "data/records")
    for sample in read_dataset(DatasetConfig("casme2", "data/raw/casme2")).samples:
        Path(sample.apex_path).unlink()  # now every sample is bad: the run must fail
    capsys.readouterr()
    one_line_error(capsys, main(["--params", str(params), "preprocess"]), "were quarantined")
    assert tree(tmp_path / "data/records") == good
    assert not list((tmp_path / "data").glob(".records.*"))  # no staging left behind


@pytest.mark.parametrize("kind", ["truncated", "resized"])
def test_partially_corrupt_frames_are_quarantined_and_predict_refuses(
    raw, tmp_path, monkeypatch, capsys, kind
) -> None:
    params = project_with(raw, tmp_path)
    monkeypatch.chdir(tmp_path)
    sample = sorted(
        read_dataset(DatasetConfig("casme2", "data/raw/casme2")).samples, key=lambda s: s.uid
    )[0]
    apex = Path(sample.apex_path)
    if kind == "truncated":  # 40% of its bytes: OpenCV would still decode a half-grey image
        apex.write_bytes(apex.read_bytes()[: int(0.4 * apex.stat().st_size)])
        assert cv2.imread(str(apex)) is not None
        expected = "has no end-of-image marker"
    else:
        cv2.imwrite(str(apex), np.zeros((100, 120, 3), np.uint8))
        expected = "is 120x100, the clip's other frames 160x160"
    assert main(["--params", str(params), "preprocess"]) == 0
    quarantine = (tmp_path / "data/records/quarantine.csv").read_text()
    assert True
    assert "corrupt_frame" in quarantine and str(apex) in quarantine and expected in quarantine
    manifest = tmp_path / "data/records/manifest.parquet"
    import pyarrow.parquet as pq

    assert sample.uid not in pq.read_table(manifest).column("uid").to_pylist()
    capsys.readouterr()
    folder = apex.parent
    one_line_error(capsys, main(["--params", str(params), "predict", str(folder)]), expected)


def records_project(tmp_path: Path) -> Path:
    return small_project(tmp_path, subjects=4, per_class=1)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "is truncated or was changed after preprocessing"),
        ("delete", "is missing: run `mer preprocess`"),
        ("no_manifest", "manifest.parquet is missing (preprocessing did not finish"),
        ("extra", "is not in records.json"),
    ],
)
def test_damaged_records_are_caught_before_training(
    tmp_path, monkeypatch, capsys, damage, message
) -> None:
    params = records_project(tmp_path)
    records = tmp_path / "records"
    shard = sorted(records.glob("records-*.tfrecord.gz"))[0]
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    elif damage == "delete":
        shard.unlink()
    elif damage == "no_manifest":
        (records / "manifest.parquet").unlink()
    else:
        shutil.copy(shard, records / "records-00009-of-00010.tfrecord.gz")
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    line = one_line_error(capsys, main(["--params", str(params), "evaluate", "--local"]), message)
    assert "mer preprocess" in line
    assert tree(tmp_path) == before  # no run, no report, no unit


def test_numbers_out_of_range_are_one_line_errors(tmp_path, monkeypatch, capsys) -> None:
    params = records_project(tmp_path)
    text = params.read_text().replace("epochs: 6", "epochs: 0")
    params.write_text(text)
    monkeypatch.chdir(tmp_path)
    argv = ["--params", str(params), "evaluate"]
    refused(capsys, tmp_path, argv, "train:epochs: 0 is out of range; it must be ≥ 1")


def test_strict_json_has_no_nan(tmp_path) -> None:
    write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": 2})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [1.0, None], "c": 2}


def _first_use(uri: str, experiment: str, queue) -> None:
    try:
        import mlflow

        from components.config import TrackingConfig
        from components.tracking import configure_tracking

        configure_tracking(
            TrackingConfig(
                uri=uri, artifact_location=str(Path(uri[10:]).parent / "art"), experiment=experiment
            )
        )
        with mlflow.start_run():
            mlflow.log_metric("x", 1.0)
        queue.put("ok")
    except Exception as exc:  # reported to the parent
        queue.put(f"{type(exc).__name__}: {exc}")


def test_concurrent_first_use_of_a_sqlite_store(tmp_path) -> None:
    """Several stages started at once on a new SQLite file: all of them get their run."""
    uri = f"sqlite:///{tmp_path}/new.db"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_first_use, args=(uri, "same", queue)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    outcomes = [queue.get(timeout=5) for _ in workers]
    assert outcomes == ["ok"] * 4, outcomes
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["same"], output_format="list")
    assert len(runs) == 4


def test_registry_errors_are_one_line_and_create_nothing(tmp_path, monkeypatch, capsys) -> None:
    params = records_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, main(["--params", str(params), "registry"]), "no MLflow store at")
    assert not (tmp_path / "mlflow.db").exists()  # listing does not create an empty store
    from components.config import load_params
    from components.tracking import configure_tracking

    configure_tracking(load_params(params).tracking)  # a store exists now, with no model
    one_line_error(
        capsys,
        main(["--params", str(params), "registry", "--promote", "999", "--reason", "x"]),
        "has no version 999",
    )


def test_predict_with_an_unknown_model_is_one_line(tmp_path, monkeypatch, capsys, raw) -> None:
    params = records_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    from components.config import load_params
    from components.tracking import configure_tracking

    configure_tracking(load_params(params).tracking)
    clip = sorted(raw.glob("CASME2_RAW_selected/*/*"))[0]
    one_line_error(
        capsys,
        main(
            ["--params", str(params), "predict", str(clip), "--model", "models:/nothing@champion"]
        ),
        "cannot load models:/nothing@champion",
    )


@pytest.mark.slow
def test_an_interrupted_evaluation_leaves_its_mlflow_run_killed(tmp_path) -> None:
    small_project(tmp_path, evaluate={"folds_per_unit": 1})
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "--params",
        str(tmp_path / "params.yaml"),
        "evaluate",
        "--local",
    ]
    driver = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 240
    while (
        not list((tmp_path / "units").glob("*.pkl"))
        and time.time() < deadline
        and driver.poll() is None
    ):
        time.sleep(0.2)
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130 and "terminated (SIGTERM)" in err, err[-2000:]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["test"], output_format="list")
    assert [r.info.status for r in runs if r.info.run_name == "evaluate-loso"] == ["KILLED"]
    assert not (tmp_path / "reports/metrics.json").exists()


def test_synthesize_refuses_a_root_holding_other_files(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "data/raw/mine").mkdir(parents=True)
    (tmp_path / "data/raw/mine/subject1.avi").write_bytes(b"licensed video")
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "synthesize": {"root": "data/raw/mine"},
                "datasets": [{"name": "casme2", "root": "data/raw/mine"}],
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    one_line_error(
        capsys,
        main(["--params", "params.yaml", "synthesize"]),
        "synthesize.root: 'data/raw/mine' holds files this stage did not write (subject1.avi)",
    )
    assert tree(tmp_path) == before


def test_clip_models_on_released_flow_are_refused(tmp_path) -> None:
    from components.errors import ConfigError
    from components.records.store import load_records

    records = fake_records(tmp_path / "records", subjects=3, per_class=1)
    assert records
    loaded = load_records(tmp_path / "records")
    loaded.manifest["detector"] = "precomputed"
    with pytest.raises(ConfigError, match="hold no clips"):
        loaded.inputs("clip")
    assert PreprocessConfig  # the config type used above
