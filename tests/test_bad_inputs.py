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


@pytest.mark.parametrize(
    ("kind", "reason", "expected"),
    [
        ("truncated", "corrupt_frame", "has no end-of-image marker"),
        ("resized", "corrupt_frame", "is 120x100, the clip's other frames 160x160"),
        # 64 random bytes mid-file, end marker intact: OpenCV decoded it and libjpeg only
        # printed a warning (flow 80 times the clean one, nothing quarantined at 595f2f7)
        ("bitrot", "corrupt_frame", "Corrupt JPEG data"),
        ("empty", "unreadable_frame", "is empty (0 bytes)"),
    ],
)
def test_partially_corrupt_frames_are_quarantined_and_predict_refuses(
    raw, tmp_path, monkeypatch, capsys, kind, reason, expected
) -> None:
    params = project_with(raw, tmp_path)
    monkeypatch.chdir(tmp_path)
    sample = sorted(
        read_dataset(DatasetConfig("casme2", "data/raw/casme2")).samples, key=lambda s: s.uid
    )[0]
    apex = Path(sample.apex_path)
    data = apex.read_bytes()
    if kind == "truncated":  # 40% of its bytes: OpenCV would still decode a half-grey image
        apex.write_bytes(data[: int(0.4 * len(data))])
        assert cv2.imread(str(apex)) is not None
    elif kind == "resized":
        cv2.imwrite(str(apex), np.zeros((100, 120, 3), np.uint8))
    elif kind == "bitrot":
        noise = np.random.default_rng(1).integers(0, 256, 64, dtype=np.uint8).tobytes()
        middle = len(data) // 2
        apex.write_bytes(data[:middle] + noise + data[middle + 64 :])
        assert cv2.imread(str(apex)) is not None  # decodes "fine", garbage inside
    else:
        apex.write_bytes(b"")
    assert main(["--params", str(params), "preprocess"]) == 0
    quarantine = (tmp_path / "data/records/quarantine.csv").read_text()
    assert reason in quarantine and str(apex) in quarantine and expected in quarantine
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


@pytest.mark.slow
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


def test_several_clips_load_the_model_once_and_a_bad_clip_loses_no_other(
    tmp_path, monkeypatch, capsys, raw
) -> None:
    """`mer predict A B C`: one model load for every clip; a clip that cannot be read is one
    line naming it (and an entry with its error in the JSON list) while the others are
    classified, each map in the --output folder; exit 2 says one failed. --apex with several
    clips, and two clips whose maps would share a name, are refused before any work."""
    from components.config import ModelConfig, PreprocessConfig
    from components.inference.predict import LoadedModel
    from components.models.builder import build_model
    from pipelines import predict

    params = records_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    loads = []

    def untrained(uri: str, params) -> LoadedModel:
        loads.append(uri)
        preprocess = PreprocessConfig()
        model = build_model(ModelConfig(), 3, **preprocess.input_sizes())
        return LoadedModel(model, ModelConfig(), preprocess, "flow", ("n", "p", "s"), uri)

    monkeypatch.setattr(predict, "load_model", untrained)
    first, second = sorted(raw.glob("CASME2_RAW_selected/*/*"))[:2]
    empty = tmp_path / "empty_clip"
    empty.mkdir()
    clips = [str(first), str(empty), str(second)]
    argv = ["--params", str(params), "predict", *clips, "--json", "--output", "maps"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    results = json.loads(out)
    assert [r["clip"] for r in results] == clips and loads == ["models:/mer-attention@champion"]
    assert "holds 0 frame images" in results[1]["error"] and "label" not in results[1]
    for result in (results[0], results[2]):
        assert result["label"] in ("n", "p", "s")
        assert (
            Path(result["attention_png"])
            == Path("maps") / f"{Path(result['clip']).name}_attention.png"
        )
        assert (tmp_path / result["attention_png"]).stat().st_size > 1000
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"mer predict: {empty}: ") and "1 of 3 clips" in lines[-1]
    for extra, says in ((["--apex", "3"], "--apex names a frame of a single clip"),
                        ([], "clips share a name (" + first.name)):  # fmt: skip
        twins = [str(first), str(first)] if not extra else clips
        argv = ["--params", str(params), "predict", *twins, *extra]
        one_line_error(capsys, main(argv), says)
    assert len(loads) == 1  # refused before the model was loaded


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
        not list((tmp_path / "units").glob("*.npz"))
        and time.time() < deadline
        and driver.poll() is None
    ):
        time.sleep(0.2)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 130 and "terminated (SIGTERM)" in err, (out[-1500:], err[-1500:])
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["test"], output_format="list")
    assert [r.info.status for r in runs if r.info.run_name == "evaluate-loso"] == ["KILLED"]
    assert not (tmp_path / "reports/metrics.json").exists()


def test_a_sigterm_that_arrives_wrapped_by_tensorflow_stops_the_run_instead_of_a_retry(
    monkeypatch,
) -> None:
    """SIGTERM raised inside TensorFlow's runtime reaches the unit loop as one of TensorFlow's
    errors: the loop stops with the signal's Interrupted, and trains nothing again."""
    from components import errors
    from components.evaluation import units

    monkeypatch.setattr(errors, "_signalled", [])
    calls = []

    def unit_hit_by_a_signal(spec, context, report):
        calls.append(spec)
        interrupted = errors.note_signal("terminated (SIGTERM)")
        raise RuntimeError(f"UnknownError: {interrupted!r}")  # as tf.py_function wraps it

    monkeypatch.setattr(units, "run_unit", unit_hit_by_a_signal)
    with pytest.raises(errors.Interrupted, match="terminated"):
        units._run_here(["spec"], [0], None, 2, lambda *_: None, None)
    assert calls == ["spec"]

    def unit_that_crashes(spec, context, report):
        calls.append(spec)
        raise RuntimeError("a worker crashed")

    monkeypatch.setattr(errors, "_signalled", [])
    monkeypatch.setattr(units, "run_unit", unit_that_crashes)
    with pytest.raises(RuntimeError):  # without a signal: retried twice, then raised
        units._run_here(["spec"], [0], None, 2, lambda *_: None, None)
    assert len(calls) == 1 + 3


def test_a_signal_whose_exception_was_swallowed_still_stops_the_run(monkeypatch) -> None:
    """A SIGTERM noted while code that catches everything ran (its Interrupted lost there)
    stops the unit loop at the next epoch report or unit end: never a run that ends 0."""
    from components import errors
    from components.evaluation import units
    from components.evaluation.queue import UnitQueue

    def swallowed_at_the_end(spec, context, report):
        trained.append(spec)
        errors.note_signal("terminated (SIGTERM)")  # its exception caught by a library
        return spec

    def swallowed_before_an_epoch(spec, context, report):
        trained.append(spec)
        errors.note_signal("terminated (SIGTERM)")
        report(1)
        trained.append("an epoch after the signal")

    for unit in (swallowed_at_the_end, swallowed_before_an_epoch):
        trained: list[str] = []
        monkeypatch.setattr(errors, "_signalled", [])
        monkeypatch.setattr(units, "run_unit", unit)
        queue = UnitQueue([0, 1], [2.0, 1.0], [("a", 0, 0), ("b", 0, 0)])
        with pytest.raises(errors.Interrupted, match="terminated"):
            units._run_here(
                ["first", "second"], queue, None, 2, lambda *_: None, units.UnitProgress()
            )
        assert trained == ["first"]


def test_a_ctrl_c_whose_keyboard_interrupt_was_swallowed_still_stops_the_run(monkeypatch) -> None:
    """`mer`'s Ctrl-C handler notes the signal as it raises: a KeyboardInterrupt lost in a
    library (raised inside a finalizer or a TensorFlow callback) still stops the unit loop."""

    from components import errors
    from pipelines import cli

    monkeypatch.setattr(errors, "_signalled", [])
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        cli.note_stopping_signals()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here, at the latest
        except BaseException:  # a library that catches everything
            pass
        with pytest.raises(errors.Interrupted, match=r"interrupted \(Ctrl-C\)"):
            errors.raise_if_signalled()
        # where SIGINT is ignored (started in the background), it stays ignored
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cli.note_stopping_signals()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])


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


# --- user errors that ended in tracebacks, or failed only after the work (issue 22) --------


def argparse_error(capsys, argv: list[str], expected: str) -> None:
    """``mer ARGV`` refused by argparse: exit 2 and its one-line reason."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["evaluate", "--folds", "0"], "argument --folds: 0 is not ≥ 1"),
        (["evaluate", "--folds", "-1"], "argument --folds: -1 is not ≥ 1"),
        (["compare", "--seeds", "0"], "argument --seeds: 0 is not ≥ 1"),
        (["inspect", "--show", "-2"], "argument --show: -2 is not ≥ 0"),
    ],
)
def test_counts_on_the_command_line_are_checked(capsys, argv, expected) -> None:
    argparse_error(capsys, argv, expected)


def test_params_that_are_not_a_utf8_file_are_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes("seed: 1 # café\n".encode("latin-1"))
    one_line_error(capsys, main(["--params", "latin1.yaml", "inspect"]), "not UTF-8 text")
    (tmp_path / "folder").mkdir()
    one_line_error(capsys, main(["--params", "folder", "inspect"]), "is a folder")


def write_params(folder: Path, **sections) -> Path:
    params = small_project(folder, subjects=4, per_class=1)
    raw = yaml.safe_load(params.read_text())
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    params.write_text(yaml.safe_dump(raw))
    return params


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"preprocess": {"runner": "DaskRunner"}}, "preprocess:runner: 'DaskRunner' is not one of"),
        ({"tracking": {"uri": "mlflow.db"}}, "did you mean sqlite:///mlflow.db?"),
        ({"register": {"alias": "latest"}}, "register.alias: 'latest' is reserved by MLflow"),
        ({"register": {"alias": "v3"}}, "register.alias: 'v3' is reserved"),
        ({"register": {"model_name": ""}}, "register.model_name: '' is not a registered-model"),
        ({"evaluate": {"bootstrap": 100_000_000}}, "bootstrap: 100000000 is out of range"),
        ({"seed": 2**32}, "seed: 4294967296 is out of range"),
        ({"tune": {"space": {"attention": ["se", "cbam", "se"]}}}, "'se' is listed twice"),
        ({"tune": {"space": {"epochs": [10, 10]}}}, "tune:space: epochs: 10 is listed twice"),
        ({"compare": {"space": {"attention": ["none", "se", "none"]}}}, "'none' is listed twice"),
        ({"preprocess": {"num_shards": 100_000}}, "num_shards: 100000 is out of range"),
        ({"tune": {"metric": "val_loss"}}, "val_loss needs mode 'min'"),
    ],
)
def test_settings_that_failed_late_are_refused_up_front(
    tmp_path, monkeypatch, capsys, sections, expected
) -> None:
    """Each of these was accepted by 595f2f7 and failed after hours of work (an alias MLflow
    reserves, a bootstrap that exhausts memory, a seed TensorFlow refuses), or ran the same
    trial twice (duplicates in a search space). Now: one line, exit 2, before anything runs."""
    params = write_params(tmp_path, **sections)
    monkeypatch.chdir(tmp_path)
    refused(capsys, tmp_path, ["--params", str(params), "evaluate", "--local"], expected)


def test_a_dataset_listed_twice_is_refused(tmp_path, monkeypatch, capsys) -> None:
    datasets = [
        {"name": "casme2", "root": "data/raw/x"},
        {"name": "casme2", "root": "./data/raw/x"},
    ]
    params = write_params(tmp_path, datasets=datasets)
    monkeypatch.chdir(tmp_path)
    refused(capsys, tmp_path, ["--params", str(params), "inspect"], "is listed twice")


def test_a_repeated_sheet_row_is_quarantined_not_counted_twice(raw, tmp_path) -> None:
    """A sheet row listed twice gave two records with one uid, and evaluate crashed with a
    numpy shape error after training; now the repeat is quarantined naming both rows."""
    import openpyxl

    root = tmp_path / "casme2"
    shutil.copytree(raw, root)
    (sheet,) = root.glob("*.xlsx")
    book = openpyxl.load_workbook(sheet)
    rows = list(book.active.iter_rows(values_only=True))
    book.active.append(rows[1])
    book.save(sheet)
    from components.datasets import read_datasets

    result = read_datasets((DatasetConfig("casme2", str(root)),))
    assert len({s.uid for s in result.samples}) == len(result.samples) == len(rows) - 1
    (repeat,) = [r for r in result.rejections if r.code == "duplicate_row"]
    assert repeat.row == len(rows) + 1 and f"{sheet.name}:2" in repeat.reason


def test_an_offset_typo_is_quarantined_without_building_every_path(raw, tmp_path) -> None:
    """OffsetFrame 3,000,000 (a typo) took 40 s and 1.6 GB to quarantine one row."""
    import openpyxl

    root = tmp_path / "casme2"
    shutil.copytree(raw, root)
    (sheet,) = root.glob("*.xlsx")
    book = openpyxl.load_workbook(sheet)
    header = [c.value for c in book.active[1]]
    book.active.cell(row=2, column=header.index("OffsetFrame") + 1, value=3_000_000)
    book.save(sheet)
    started = time.perf_counter()
    result = read_dataset(DatasetConfig("casme2", str(root)))
    assert time.perf_counter() - started < 5
    (typo,) = [r for r in result.rejections if r.row == 2]
    assert "spans 2999" in typo.reason and "check the onset and offset" in typo.reason


def test_a_home_folder_path_is_expanded_not_created_as_a_tilde(tmp_path, monkeypatch) -> None:
    from components.config import load_params

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump(
            {"preprocess": {"records_dir": "~/records"}, "evaluate": {"units_dir": "~/u"}}
        )
    )
    params = load_params(tmp_path / "params.yaml")
    assert params.preprocess.records_dir == str(tmp_path / "home/records")
    assert params.evaluate.units_dir == str(tmp_path / "home/u")


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"evaluate": {"units_dir": "data/raw/casme2/units"}}, "evaluate.units_dir"),
        ({"tune": {"storage_path": "data/raw/casme2/ray"}}, "tune.storage_path"),
    ],
)
def test_stores_inside_a_dataset_root_are_refused(
    raw, tmp_path, monkeypatch, capsys, sections, expected
) -> None:
    params = write_params(tmp_path, **sections)
    shutil.copytree(raw, tmp_path / "data/raw/casme2")
    raw_params = yaml.safe_load(params.read_text())
    raw_params["datasets"] = [{"name": "casme2", "root": "data/raw/casme2"}]
    params.write_text(yaml.safe_dump(raw_params))
    monkeypatch.chdir(tmp_path)
    stage = "tune" if "tune" in sections else "evaluate"
    argv = ["--params", str(params), stage, *(["--local"] if stage == "evaluate" else [])]
    line = one_line_error(capsys, main(argv), expected)
    assert "dataset root" in line


def test_unwritable_outputs_are_refused_before_the_work(raw, tmp_path, monkeypatch, capsys) -> None:
    """A reports folder that cannot be written failed at publish, after training; an
    unwritable `--output` after the prediction. Both are now checked first."""
    (tmp_path / "notes.txt").write_text("a file where a folder should be")
    params = write_params(tmp_path, evaluate={"reports_dir": "notes.txt/reports"})
    monkeypatch.chdir(tmp_path)
    refused(capsys, tmp_path, ["--params", str(params), "evaluate", "--local"], "is a file")
    assert not list((tmp_path / "units").glob("*"))
    clip = sorted(raw.glob("CASME2_RAW_selected/*/*"))[0]
    argv = ["--params", str(params), "predict", str(clip), "--output", "notes.txt/map.png"]
    one_line_error(capsys, main(argv), "--output: ")


def test_foreign_files_in_the_reports_are_refused_before_training(
    tmp_path, monkeypatch, capsys
) -> None:
    params = write_params(tmp_path)
    (tmp_path / "reports/figures").mkdir(parents=True)
    (tmp_path / "reports/figures/my_plot.pdf").write_text("mine")
    monkeypatch.chdir(tmp_path)
    argv = ["--params", str(params), "evaluate", "--local"]
    refused(capsys, tmp_path, argv, "holds files this stage did not write (my_plot.pdf)")
    assert not list((tmp_path / "units").glob("*"))


@pytest.mark.slow
def test_a_second_run_on_the_same_outputs_stops_at_once(tmp_path, monkeypatch, capsys) -> None:
    """Two `mer evaluate` on the same folders: the second removed the first's live staging
    folder. Now the second stops in one line while the first holds the outputs, and a live
    run's staging is never cleaned up by another."""
    from components.outputs import STAGING, output_lock

    params = write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        live = tmp_path / "reports" / STAGING.format(name="outputs", pid=sleeper.pid)
        live.mkdir(parents=True)
        holder = multiprocessing.get_context("spawn").Process(
            target=_hold_lock, args=(str(tmp_path / "reports"), 30)
        )
        holder.start()
        deadline = time.time() + 30
        while not (tmp_path / ".reports.lock").exists() and time.time() < deadline:
            time.sleep(0.1)
        argv = ["--params", str(params), "evaluate", "--local"]
        one_line_error(capsys, main(argv), "another mer run (pid")
        holder.terminate()
        holder.join()
        assert not list((tmp_path / "units").glob("*"))
        with output_lock(tmp_path / "reports", "x"):  # free again: the holder ended
            pass
        assert main(argv) == 0
        assert live.is_dir()  # the live process's staging survived a full run
    finally:
        sleeper.kill()
        sleeper.wait()


def _hold_lock(folder: str, seconds: float) -> None:
    from components.outputs import output_lock

    with output_lock(folder, "evaluate.reports_dir"):
        time.sleep(seconds)


@pytest.mark.slow
def test_a_quick_look_never_replaces_the_full_report(tmp_path, monkeypatch) -> None:
    params = write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["--params", str(params), "evaluate", "--local"]) == 0
    full = (tmp_path / "reports/metrics.json").read_text()
    assert main(["--params", str(params), "evaluate", "--local", "--folds", "1"]) == 0
    assert (tmp_path / "reports/metrics.json").read_text() == full
    quick = json.loads((tmp_path / "reports/quick-look/metrics.json").read_text())
    assert quick["folds_run"] == 1


def test_an_interrupted_first_mlflow_store_is_not_left_half_built(tmp_path, monkeypatch) -> None:
    """Ctrl-C while a fresh mlflow.db was created (here: right after a migration created the
    ``spans`` table, before its revision was recorded) left a half schema that failed for ever
    after ("table spans already exists"). The schema is built in a temporary file now."""
    from alembic.operations import Operations

    from components.config import TrackingConfig
    from components.tracking import configure_tracking

    create_table = Operations.create_table

    def interrupted(self, name, *args, **kwargs):
        made = create_table(self, name, *args, **kwargs)
        if name == "spans":
            raise KeyboardInterrupt
        return made

    monkeypatch.setattr(Operations, "create_table", interrupted)
    cfg = TrackingConfig(
        uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "a")
    )
    with pytest.raises(KeyboardInterrupt):
        configure_tracking(cfg)
    monkeypatch.setattr(Operations, "create_table", create_table)
    configure_tracking(cfg)
    import mlflow

    with mlflow.start_run():
        mlflow.log_metric("x", 1.0)
    assert len(mlflow.search_runs(experiment_names=[cfg.experiment], output_format="list")) == 1
    assert not list(tmp_path.glob(".mlflow.db.creating-*"))


def test_a_half_built_store_without_runs_is_set_aside(tmp_path) -> None:
    import sqlite3

    from components.tracking.mlflow_runs import ensure_sqlite_store

    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as db:  # what an interrupted older creation left
        db.execute("create table experiments (experiment_id integer)")
        db.execute("create table runs (run_uuid text)")
    ensure_sqlite_store(path)
    (aside,) = tmp_path.glob("mlflow.db.half-built-*")
    with sqlite3.connect(path) as db:
        (version,) = db.execute("select version_num from alembic_version").fetchone()
    assert version and aside.stat().st_size > 0


def test_a_released_csv_that_is_not_utf8_or_a_bad_pattern_is_one_line(
    tmp_path, monkeypatch, capsys
) -> None:
    from tests.builders import flow_images_release

    root = tmp_path / "release"
    flow_images_release(root, subjects=3, per_class=1)
    csv_path = root / "composite_labels.csv"
    csv_path.write_bytes(csv_path.read_text().replace("x", "réf").encode("latin-1"))
    params = write_params(tmp_path, datasets=[{"name": "flow_images", "root": str(root)}])
    monkeypatch.chdir(tmp_path)
    refused(capsys, tmp_path, ["--params", str(params), "inspect"], "not UTF-8 text")
    raw_params = yaml.safe_load(params.read_text())
    raw_params["datasets"][0]["pattern"] = "{subject}_{filename_o}.png"
    params.write_text(yaml.safe_dump(raw_params))
    expected = "unknown placeholder {subject}"
    refused(capsys, tmp_path, ["--params", str(params), "inspect"], expected)
