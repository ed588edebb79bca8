"""Trust boundaries: what the project reads back from its own files is checked like params.yaml,
and nothing it loads can run code.

Every payload here is a real one: a pickle whose unpickling writes a marker file, an exported
SavedModel whose graph writes one, a ``.keras`` file with a Lambda layer. Each test asserts the
marker never appears and the user gets one line naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines.cli import main
from tests.builders import Payload, crafted_pickle, mer, small_project, write_frames
from tests.test_bad_inputs import one_line_error

ROOT = Path(__file__).resolve().parents[1]


# --- the data-only store format ------------------------------------------------------------


def test_a_pickle_where_a_data_file_is_expected_runs_no_code(tmp_path) -> None:
    from components import datafiles
    from components.errors import ArtifactError

    marker = tmp_path / "marker"
    path = tmp_path / "unit.npz"
    path.write_bytes(crafted_pickle(marker))
    with pytest.raises(ArtifactError, match="holds pickled data, which is never loaded"):
        datafiles.load(path)
    object_array = tmp_path / "objects.npz"  # a real npz with a pickled object array inside
    np.savez(
        object_array,
        **{
            "tree.json": np.frombuffer(b'{"x": {"__array__": "a0"}}', np.uint8),
            "a0": np.array([Payload(marker)], dtype=object),
        },
    )
    with pytest.raises(ArtifactError, match="never loaded"):
        datafiles.load(object_array)
    assert not marker.exists()


def test_data_files_round_trip_trees_of_arrays(tmp_path) -> None:
    from components import datafiles

    tree = {"a": [1, 2.5, None, "x"], "b": {"c": np.arange(6.0).reshape(2, 3)}, "d": True}
    datafiles.save(tmp_path / "t.npz", tree)
    back = datafiles.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back["b"]["c"], tree["b"]["c"])
    assert back["a"] == tree["a"] and back["d"] is True
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary file, replaced


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """A small project evaluated once in process (its units stored)."""
    folder = tmp_path_factory.mktemp("evaluated")
    small_project(folder, subjects=4, per_class=1, evaluate={"folds_per_unit": 4})
    done = mer(folder, "evaluate", "--local")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.mark.slow
def test_crafted_unit_files_run_no_code_and_are_trained_again(evaluated, tmp_path) -> None:
    """Bad case 3: a crafted file in the units store (shared storage on a cluster) made
    `mer evaluate` run its code. Now each stored unit is data, parsed and checked against the
    unit it should be; a crafted one is reported and the unit trained again, same results."""
    import shutil

    folder = tmp_path / "project"
    shutil.copytree(evaluated, folder)
    params = folder / "params.yaml"
    raw = yaml.safe_load(params.read_text())
    for key in ("units_dir", "reports_dir"):
        raw["evaluate"][key] = raw["evaluate"][key].replace(str(evaluated), str(folder))
    raw["tracking"]["uri"] = f"sqlite:///{folder}/mlflow.db"
    params.write_text(yaml.safe_dump(raw))
    units = sorted(p for p in (folder / "units").iterdir() if p.suffix in (".npz", ".pkl"))
    assert units
    marker = tmp_path / "marker"
    for unit in units:  # the stored unit, and one of the other format beside it
        unit.with_suffix(".npz").write_bytes(crafted_pickle(marker))
        unit.with_suffix(".pkl").write_bytes(crafted_pickle(marker))
    before = json.loads((evaluated / "reports/metrics.json").read_text())
    done = mer(folder, "evaluate", "--local")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not marker.exists()
    assert "is not a data file this project wrote" in done.stdout
    assert json.loads((folder / "reports/metrics.json").read_text()) == before


def test_a_stored_unit_of_another_unit_or_with_bad_predictions_is_refused(tmp_path) -> None:
    from components.config import ModelConfig, TrainConfig
    from components.errors import ArtifactError
    from components.evaluation.splits import Fold
    from components.evaluation.units import FoldResult, UnitResult, UnitSpec, UnitStore

    fold = Fold("a", ("a",), ("b", "c"), ("d",))
    spec = UnitSpec(ModelConfig(), TrainConfig(), (1,), (fold,))
    other = UnitSpec(ModelConfig(), TrainConfig(), (2,), (fold,))
    good = {"uid": "x", "true": 0, "predicted": 1, "p_0": 0.2, "p_1": 0.7, "p_2": 0.1}
    store = UnitStore(tmp_path)

    def stored(spec: UnitSpec, key: str, prediction: dict, seed: int = 1) -> Path:
        result = UnitResult(
            key, spec, [FoldResult(fold, seed, 3, 5, [], [prediction], 9, 2)], 1.0, "n", 1, True
        )
        store.save(result)
        return store.path(key)

    path = stored(spec, "k1", good)
    assert store.read(path, spec, "k1").folds[0].predictions == [good]
    with pytest.raises(ArtifactError, match="holds another unit"):
        store.read(stored(other, "k2", good), spec, "k2")
    with pytest.raises(ArtifactError, match="not the seeds × folds"):  # a fold of another seed
        store.read(stored(spec, "k4", good, seed=2), spec, "k4")
    for bad in ({**good, "predicted": 7}, {**good, "p_0": float("nan")}, {**good, "extra": 1}):
        with pytest.raises(ArtifactError, match="bad prediction"):
            store.read(stored(spec, "k3", bad), spec, "k3")
    assert store.load(spec, "k3") is None  # load: reported, and trained again by the caller


# --- best_config.json and the other read-backs --------------------------------------------


def best_config(**changes) -> dict:
    config = {
        "model": {"backbone": "ststnet", "attention": {"type": "se", "reduction": 4},
                  "placement": ["fused"], "dropout": 0.0},
        "learning_rate": 0.01, "batch_size": 16, "epochs": 6, "best_epoch": 3,
        "score": 0.8, "objective": "kfold", "label": "ststnet/se@fused",
        "search": {"name": "tune-x", "trials": 4},
        "holdout_subjects": ["casme2/sub01"], "search_subjects": ["casme2/sub02"],
    }  # fmt: skip
    config.update(changes)
    return config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "best_config.json:epochs: 0 is out of range; it must be ≥ 1"),
        ({"learning_rate": -1}, "best_config.json:learning_rate: -1.0 is out of range"),
        ({"batch_size": "16"}, "best_config.json:batch_size: expected int"),
        ({"score": 7.0}, "score: val_uf1 7.0 is above 1"),
        ({"best_epoch": 9}, "best_epoch 9 is not below epochs 6"),
        ({"learning_rate": 0.01, "momentum": 0.9}, "unknown key 'momentum'"),
        ({"model": {"backbone": "resnet999"}}, "'resnet999' is not a known backbone"),
    ],
)
def test_best_config_is_checked_like_params(tmp_path, monkeypatch, capsys, change, message) -> None:
    """Bad case 4: an edited best_config.json (epochs 0, a negative learning rate) trained and
    published a result. It is now parsed by the same typed schema as params.yaml: one line naming
    the file and the key, before anything trains (no unit is stored)."""
    params = small_project(tmp_path, subjects=4, per_class=1)
    (tmp_path / "reports/tune").mkdir(parents=True)
    (tmp_path / "reports/tune/best_config.json").write_text(json.dumps(best_config(**change)))
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, main(["--params", str(params), "evaluate", "--local"]), message)
    assert "run `mer tune` again" in line
    assert not list((tmp_path / "units").glob("*"))


def test_evaluate_and_register_train_the_tuned_model_and_training_values(tmp_path) -> None:
    """The tune stage's best point, model and training values, is what evaluate and register
    train (`Chosen.of`, which both call); the rest of ``train`` stays params.yaml's. (End to
    end: test_end_to_end's repro, whose tuned learning rate differs from params.yaml's.)"""
    from components.artifacts import Chosen
    from components.config import load_params

    params_file = small_project(tmp_path, subjects=4, per_class=1)
    params = load_params(params_file)
    assert Chosen.of(params).source == "params" and Chosen.of(params).train == params.train
    (tmp_path / "reports/tune").mkdir(parents=True)
    tuned = best_config(learning_rate=0.02, batch_size=8, epochs=5)
    (tmp_path / "reports/tune/best_config.json").write_text(json.dumps(tuned))
    chosen = Chosen.of(load_params(params_file))
    assert chosen.source == "tune" and chosen.model.attention.type == "se"
    train = chosen.train
    assert (train.learning_rate, train.batch_size, train.epochs) == (0.02, 8, 5)
    assert (train.learning_rate, train.batch_size, train.epochs) != (
        params.train.learning_rate,
        params.train.batch_size,
        params.train.epochs,
    )
    assert replace(train, learning_rate=0.01, batch_size=16, epochs=6) == replace(
        params.train, learning_rate=0.01, batch_size=16, epochs=6
    )


def test_evaluation_and_registration_records_are_checked(tmp_path) -> None:
    from components.artifacts import Evaluation, Registration
    from components.config import Params, parse
    from components.errors import ArtifactError

    params = parse(Params, {"evaluate": {"reports_dir": str(tmp_path)},
                            "register": {"reports_dir": str(tmp_path / "register")}}, "p")  # fmt: skip
    (tmp_path / "evaluation.json").write_text(json.dumps({
        "protocol": "loso", "complete": True, "selection": "given", "selection_statement": "s",
        "model": {"backbone": "ststnet"}, "train": {"epochs": 0}, "seeds": [1],
        "summary": {"composite": {"uf1": 0.5, "uar": 0.5}}, "folds": [],
    }))  # fmt: skip
    with pytest.raises(ArtifactError, match=r"train:epochs: 0 is out of range.*mer evaluate"):
        Evaluation.read(params)
    # issue 39: seeds edited to 50 (its folds hold 2) trained and registered a 50-member ensemble
    record = json.loads((tmp_path / "evaluation.json").read_text())
    fold = {"fold": "casme2/sub01", "test": ["casme2/sub01"]}
    record.update(train={}, folds=[{**fold, "seed": 1}, {**fold, "seed": 2}], seeds=[1, 2])
    (tmp_path / "evaluation.json").write_text(json.dumps(record))
    assert Evaluation.read(params).seeds == [1, 2]
    (tmp_path / "evaluation.json").write_text(json.dumps({**record, "seeds": list(range(50))}))
    with pytest.raises(
        ArtifactError,
        match=r"seeds: \[0, 1, .* is not what its folds were trained with \(\[1, 2\]\)",
    ):
        Evaluation.read(params)
    (tmp_path / "register").mkdir()
    (tmp_path / "register/registration.json").write_text(json.dumps({
        "model_name": "m", "version": 0, "model_uri": "u", "alias": "champion",
        "alias_moved": True, "reason": "r", "previous_alias_holder": None,
        "data_version": "d", "uf1": 0.5, "protocol": "loso",
    }))  # fmt: skip
    with pytest.raises(ArtifactError, match="version: 0 is out of range"):
        Registration.read(params)


# --- the tune search: ranking, content checks, resumable states ---------------------------


def record_of(histories: dict[str, list[tuple[float, float]]], epochs: int = 3):
    from components.tuning.store import SearchRecord, TrialRecord

    trials = [
        TrialRecord(
            key,
            index,
            "TERMINATED",
            [
                {"epoch": e, "val_uf1": u, "val_uar": u, "val_loss": loss}
                for e, (u, loss) in enumerate(rows)
            ],
        )
        for index, (key, rows) in enumerate(histories.items())
    ]
    return SearchRecord("tune-x", "val_uf1", "max", trials)


def points(n: int, epochs: int = 3) -> list[dict]:
    from components.config import TuneSpaceConfig
    from components.tuning.space import trials

    space = TuneSpaceConfig(attention=("none", "se", "spatial", "cbam")[:n], epochs=(epochs,))
    return trials(space, 0.0)


def test_val_loss_with_mode_min_picks_the_lowest_loss() -> None:
    """Bad case 1: `tune.metric: val_loss` with `mode: min` picked the worst trial at its worst
    epoch and called its loss a UF1. Now the ranking follows the mode, and the result says which
    metric it holds; a mode that contradicts the metric is refused before any work."""
    from components.config import Params, parse
    from components.errors import ConfigError
    from components.tuning.report import trial_table

    record = record_of(
        {"a": [(0.5, 1.2), (0.6, 0.9), (0.6, 0.8)], "b": [(0.4, 1.1), (0.7, 0.4), (0.5, 0.7)]}
    )
    table = trial_table(record, points(2), "val_loss", "min")
    best = table.iloc[0]
    assert (best.trial_id, best.best_epoch, best.best_score) == ("b", 1, 0.4)
    assert best.best_val_uf1 == 0.7  # the UF1 of that epoch, under its own name
    by_uf1 = trial_table(record, points(2), "val_uf1", "max").iloc[0]
    assert (by_uf1.trial_id, by_uf1.best_epoch) == ("b", 1)
    with pytest.raises(ConfigError, match="would rank val_uf1 from the worst trial"):
        parse(Params, {"tune": {"metric": "val_uf1", "mode": "min"}}, "params.yaml")
    with pytest.raises(ConfigError, match="is not one of"):
        parse(Params, {"tune": {"metric": "accuracy"}}, "params.yaml")


def test_a_finished_search_is_checked_by_content(tmp_path) -> None:
    """Bad cases 5 and 6: a finished-search marker inside an interrupted search hung `mer tune`;
    a finished search missing a trial was read back with that trial empty. The finished search
    is now a record of every trial's metrics, checked against the trials the search must hold."""
    from components.errors import ArtifactError
    from components.tuning.store import SearchStore, TrialSlot

    store = SearchStore(str(tmp_path), "tune-x")
    slots = [TrialSlot("a", 0), TrialSlot("b", 1)]
    good = record_of({"a": [(0.5, 1.0)] * 3, "b": [(0.6, 0.8)] * 3})
    store.write_record(good)
    assert store.read_record(slots, points(2)) == good
    from dataclasses import replace

    a, b = good.trials
    row = a.history[0]

    def first_trial(history: list[dict]):
        return replace(good, trials=[replace(a, history=history), b])

    cases = {
        "trial b has no results": replace(good, trials=[a]),
        "is listed twice": replace(good, trials=[a, a, b]),
        "row 1 is epoch 2": first_trial([{**row, "epoch": 0}, {**row, "epoch": 2}]),
        "has 4 epochs, its point 3": first_trial([{**row, "epoch": e} for e in range(4)]),
        "val_uf1 is 1.5": first_trial([{**r, "val_uf1": 1.5} for r in a.history]),
        # issue 39: a finished 2-epoch search's record copied (renamed) into a 25-epoch one's
        "the record of search 'tune-other', not of this search": replace(good, name="tune-other"),
    }
    for message, bad in cases.items():
        store.write_record(bad)
        with pytest.raises(ArtifactError, match=message):
            store.read_record(slots, points(2))
    (tmp_path / "tune-x/search.json").write_text("finished\n")  # a bare marker
    with pytest.raises(ArtifactError, match=r"is not valid JSON.*mer tune --fresh"):
        store.read_record(slots, points(2))


def test_crafted_trial_states_are_refused_before_a_search_resumes(tmp_path) -> None:
    """Bad case 8 (component level; test_tune's interrupted search runs `mer tune`): a crafted state of
    an interrupted trial is refused naming the file, and its code never runs."""
    from components import datafiles
    from components.errors import ArtifactError
    from components.tuning.store import SearchStore

    store = SearchStore(str(tmp_path), "tune-x")
    store.save_trial("t000-p000", {"next_epoch": 2, "runs": [], "history": []})
    store.check_trials()
    marker = tmp_path / "marker"
    (tmp_path / "tune-x/trials/t001-p001.npz").write_bytes(crafted_pickle(marker))
    with pytest.raises(ArtifactError, match=r"t001-p001\.npz is not a data file"):
        store.check_trials()
    datafiles.save(tmp_path / "tune-x/trials/t001-p001.npz", {"next_epoch": 0, "runs": []})
    with pytest.raises(ArtifactError, match="next_epoch: 0 is out of range"):
        store.check_trials()
    assert not marker.exists()


# --- models: only the format the project writes, in safe mode ------------------------------


def mlmodel(folder: Path, keras_flavor: dict) -> None:
    from components.config import ModelConfig, PreprocessConfig
    from components.tracking.keras_flavor import METADATA_KEY

    folder.mkdir(parents=True, exist_ok=True)
    from dataclasses import asdict

    meta = {
        "flavors": {"keras": keras_flavor, "python_function": {"loader_module": "mlflow.keras"}},
        "metadata": {
            METADATA_KEY: {
                "model": ModelConfig().as_dict(),
                "preprocess": asdict(PreprocessConfig()),
                "input_kind": "flow",
                "classes": ["negative", "positive", "surprise"],
            }
        },
    }
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))


def test_an_exported_savedmodel_is_refused_and_its_graph_never_runs(
    tmp_path, monkeypatch, capsys
) -> None:
    """Bad case 9: `mer predict --model` on a folder whose MLmodel says save_exported_model
    loaded the SavedModel and ran its graph (which can write files). Only the project's own
    format is loaded; this one is refused in one line before anything is read from it."""
    import tensorflow as tf

    marker = tmp_path / "marker"

    class Writes(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 3], tf.float32)])
        def __call__(self, x):
            tf.io.write_file(str(marker), "graph ran")
            return tf.fill([tf.shape(x)[0], 3], 1 / 3)

    model = tmp_path / "model"
    mlmodel(model, {"save_exported_model": True, "data": "data", "keras_version": "3"})
    tf.saved_model.save(Writes(), str(model / "data/model"))
    assert not marker.exists()
    params = small_project(tmp_path / "project", subjects=4, per_class=1)
    monkeypatch.chdir(tmp_path)
    frames = tmp_path / "clip"
    write_frames(frames, [f"img{k}.jpg" for k in range(1, 6)], size=64)
    argv = ["--params", str(params), "predict", str(frames), "--model", str(model)]
    one_line_error(capsys, main(argv), "holds an exported SavedModel")
    assert not marker.exists()


def test_a_keras_file_with_code_is_refused_by_safe_mode(tmp_path) -> None:
    import keras

    from components.tracking.keras_flavor import load_keras_model

    marker = tmp_path / "marker"
    inputs = keras.Input((28, 28, 3))
    outputs = keras.layers.Lambda(lambda x: x * 1.0)(inputs)
    folder = tmp_path / "model"
    mlmodel(folder, {"save_exported_model": False, "data": "data", "keras_version": "3"})
    (folder / "data").mkdir()
    keras.Model(inputs, outputs).save(folder / "data/model.keras")
    from components.errors import ArtifactError

    with pytest.raises(
        ArtifactError, match=r"cannot be loaded as this project's model: .*(?i:unsafe|lambda)"
    ):
        load_keras_model(folder)  # one line, no traceback (issue 39)
    assert not marker.exists()
    whole = (folder / "data/model.keras").read_bytes()
    (folder / "data/model.keras").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(
        ArtifactError, match=r"model\.keras is not a \.keras archive \(truncated or damaged\)"
    ):
        load_keras_model(folder)
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": {"keras": {"data": "../../etc"}}}))

    with pytest.raises(ArtifactError, match=r"names no model\.keras inside"):
        load_keras_model(folder)


# --- secrets and the network ---------------------------------------------------------------


def test_credentials_are_redacted() -> None:
    from components.errors import redact, user_message

    assert redact("postgresql://mer:s3cret@db:5432/mlflow") == "postgresql://mer:***@db:5432/mlflow"
    assert redact("see http://u:p%40ss@h/x and https://h/?token=abc&x=1") == (
        "see http://u:***@h/x and https://h/?token=***&x=1"
    )
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    from mlflow.exceptions import MlflowException

    message = user_message(MlflowException("cannot reach http://a:hunter2@host:5000"))
    assert message is not None and "hunter2" not in message


def test_the_registry_never_prints_a_password(tmp_path, monkeypatch, capsys) -> None:
    """Bad case 7: `mer registry` printed the tracking URI with its password. Now every line the
    project prints goes through redaction, and an unreachable store is one line within seconds."""
    params = small_project(tmp_path, subjects=4, per_class=1)
    raw = yaml.safe_load(params.read_text())
    raw["tracking"]["uri"] = "postgresql://mer:s3cret@127.0.0.1:9/mlflow"
    params.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    started = time.time()
    line = one_line_error(capsys, main(["--params", str(params), "registry"]), "cannot be reached")
    assert "s3cret" not in line and "mer:***@" in line
    assert time.time() - started < 30


@pytest.mark.slow
def test_mlflow_run_links_never_show_a_password(tmp_path) -> None:
    """Bad case 7 (the other half): with an HTTP tracking URI holding credentials, MLflow
    printed "View run ... at: http://user:password@..." for every run."""
    from tests.services import mlflow_server

    with mlflow_server(
        f"sqlite:///{tmp_path}/server.db", tmp_path / "art", tmp_path / "log"
    ) as url:
        uri = url.replace("http://", "http://mer:s3cret@")
        small_project(tmp_path / "p", subjects=4, per_class=1, tracking={"uri": uri})
        done = mer(tmp_path / "p", "evaluate", "--local")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "s3cret" not in done.stdout + done.stderr


@pytest.mark.slow
def test_an_unreachable_tracking_server_fails_fast_before_training(tmp_path) -> None:
    """MLflow retried an unreachable server for 269 s, silently, after the work: one line
    now, within seconds, before any unit trains."""
    small_project(tmp_path, subjects=4, per_class=1, tracking={"uri": "http://127.0.0.1:9"})
    started = time.time()
    done = mer(tmp_path, "evaluate", "--local", timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "does not answer" in done.stderr and "Traceback" not in done.stderr
    assert time.time() - started < 60
    assert not list((tmp_path / "units").glob("*"))


LOCAL_RAY_PROBE = r"""
import json, os, psutil
from components.cluster import ray_session
mode = os.environ.get("RAY_AUTH_MODE")
with ray_session(None) as ray:
    ray.get(ray.remote(lambda: 1).remote())
    ours = {p.pid for p in psutil.Process().children(recursive=True)}
    listening = [c.laddr.ip for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in ours]
print(json.dumps({"listening": listening, "restored": os.environ.get("RAY_AUTH_MODE") == mode}))
"""


@pytest.mark.slow
def test_a_local_ray_listens_on_loopback_only_and_its_token_is_private(tmp_path) -> None:
    """In a process of its own: a local Ray's servers listen on loopback only, and stopping it
    leaves no token authentication behind (a process that started one keeps its core worker's
    token check, so the test session's own cluster must never meet such a driver)."""
    import sys

    from components.cluster import private_token

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_RAY_PROBE], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["listening"], "no Ray process listens"
    assert all(ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for ip in found["listening"]), found
    assert found["restored"]  # RAY_AUTH_MODE as it was before the local Ray
    token = Path.home() / ".ray" / "auth_token"
    if token.is_file():
        assert token.stat().st_mode & 0o077 == 0
    exposed = tmp_path / "token"
    exposed.write_text("t")
    exposed.chmod(0o644)
    private_token(exposed)
    assert exposed.stat().st_mode & 0o777 == 0o600


def test_user_errors_from_anywhere_are_one_line(monkeypatch, capsys, tmp_path) -> None:
    """The error funnel: OSError, UnicodeDecodeError, MLflow's exceptions and user errors raised
    inside Ray tasks end in one line and exit 2 (a bug keeps its traceback)."""
    import errno

    from mlflow.exceptions import MlflowException

    from components.errors import DataError
    from pipelines import inspect_data

    params = small_project(tmp_path, subjects=4, per_class=1)
    cases = [
        (OSError(errno.ENOSPC, "No space left on device", "reports/x.png"), "reports/x.png: No space left"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "not UTF-8"),
        (MlflowException("RESOURCE_DOES_NOT_EXIST: no experiment"), "MLflow: RESOURCE_DOES_NOT_EXIST"),
    ]  # fmt: skip
    from ray.exceptions import RayTaskError

    cases.append((RayTaskError("f", "tb", DataError("shard x is truncated")), "is truncated"))
    for error, expected in cases:

        def fail(args, error=error):
            raise error

        monkeypatch.setattr(inspect_data, "run", fail)
        one_line_error(capsys, main(["--params", str(params), "inspect"]), expected)

    def bug(args):
        raise KeyError("a bug")

    monkeypatch.setattr(inspect_data, "run", bug)
    with pytest.raises(KeyError):
        main(["--params", str(params), "inspect"])
