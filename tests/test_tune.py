"""The tune stage on a real local two-node Ray cluster, with real checkpoints and MLflow; the
hand-off of the best point (model and training values) to evaluate and register."""

import json
import os
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from components.config import ConfigError, TuneSpaceConfig
from components.models.space import model_variants
from components.tuning.space import trials
from tests.builders import small_project, stage_args

EPOCHS = 3


def test_space_has_no_duplicate_or_invalid_points() -> None:
    space = TuneSpaceConfig(
        backbone=("ststnet", "clip_net"),
        attention=("none", "se", "mhsa", "temporal_mhsa"),
        heads=(1, 4),
        reduction=(2, 4),
        placement=(("fused",), ("temporal",), ("frame",)),
    )
    variants = model_variants(space, 0.5)
    assert len(variants) == len(set(variants))
    labels = {
        (v.backbone, v.attention.type, v.placement, v.attention.heads, v.attention.reduction)
        for v in variants
    }
    # none once per backbone; heads only for self-attention, reduction only for se
    assert ("ststnet", "none", (), 2, 4) in labels and ("clip_net", "none", (), 2, 4) in labels
    assert {(h, r) for b, t, p, h, r in labels if t == "se"} == {(2, 2), (2, 4)}
    assert {(h, r) for b, t, p, h, r in labels if t == "mhsa"} == {(1, 4), (4, 4)}
    assert ("ststnet", "temporal_mhsa") not in {(b, t) for b, t, *_ in labels}
    assert {
        p for b, t, *rest in labels for p in [rest[0]] if b == "clip_net" and t == "temporal_mhsa"
    } == {("temporal",)}
    assert len(trials(space, 0.5)) == len(variants)


def test_the_default_search_varies_type_heads_and_placement() -> None:
    """params.yaml's tune space is the mission's search (issue 39): its distinct trials vary the
    attention type (at least 5), the head count (at least 2) and the placement (at least 2)."""
    from components.config import load_params

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    variants = model_variants(
        params.tune.space, params.model.dropout, params.preprocess.input_sizes()
    )
    assert len({v.attention.type for v in variants}) >= 5
    assert len({v.attention.heads for v in variants if v.attention.type == "mhsa"}) >= 2
    assert len({v.placement for v in variants if v.placement}) >= 2
    assert len(variants) == len(set(variants))


def test_a_mean_gated_attention_is_one_model_before_or_after_an_average_pooling() -> None:
    """se / eca at ststnet's pre_head (a 2×2 average pooling of fused) compute the very model
    they compute at fused: same weights, same outputs; a space keeps one of them. Where the
    gate is not a function of the channel means (channel: max pooling too) both stay."""
    import numpy as np

    from components.config import AttentionConfig, ModelConfig
    from components.models import build_model

    x = np.random.default_rng(1).normal(size=(4, 28, 28, 3)).astype("float32")
    for kind, same in (("se", True), ("eca", True), ("channel", False)):
        outputs = []
        for point in ("fused", "pre_head"):
            keras_seed(3)
            model = build_model(ModelConfig("ststnet", AttentionConfig(kind), (point,), 0.0))
            outputs.append(model(x, training=False).numpy())
        assert np.allclose(outputs[0], outputs[1], atol=1e-6) == same, kind
    space = TuneSpaceConfig(
        backbone=("ststnet", "rcn"),
        attention=("se", "eca", "channel"),
        placement=(("fused",), ("pre_head",), ("fused", "pre_head")),
    )
    found = {(v.backbone, v.attention.type, v.placement) for v in model_variants(space, 0.5)}
    both = {("fused",), ("pre_head",), ("fused", "pre_head")}
    assert {p for b, t, p in found if b == "ststnet" and t == "se"} == both - {("pre_head",)}
    assert {p for b, t, p in found if b == "ststnet" and t == "eca"} == both - {("pre_head",)}
    assert {p for b, t, p in found if b == "ststnet" and t == "channel"} == both
    assert {p for b, t, p in found if b == "rcn" and t == "se"} == both  # max-pooled: kept


def test_max_keys_is_kept_only_where_it_pools() -> None:
    """STSTNet's maps have 28·28 positions at streams, 10·10 at fused (3×3/3 pooled), 5·5 at
    pre_head; ``max_keys: 100`` pools only at streams, so elsewhere it is the model without it
    (one variant, not two), and with no input sizes the space keeps what it is given."""
    from components.models.space import map_positions

    sizes = {"flow_size": 28, "clip_frames": 8, "clip_size": 64}
    assert map_positions("ststnet", sizes) == {"streams": 784, "fused": 100, "pre_head": 25}
    assert map_positions("ststnet", {**sizes, "flow_size": 30})["fused"] == 100
    space = TuneSpaceConfig(
        attention=("mhsa", "se"),
        max_keys=(None, 100),
        placement=(("streams",), ("fused",), ("pre_head",), ("streams", "fused")),
    )
    labels = [v.label for v in model_variants(space, 0.5, sizes)]
    assert len(labels) == len(set(labels))
    assert [label for label in labels if "mhsa" in label] == [
        "ststnet/mhsa@streams h=2",
        "ststnet/mhsa@streams h=2 keys≤100",
        "ststnet/mhsa@fused h=2",
        "ststnet/mhsa@pre_head h=2",
        "ststnet/mhsa@streams+fused h=2",
        "ststnet/mhsa@streams+fused h=2 keys≤100",
    ]
    assert sum("keys≤" in v.label for v in model_variants(space, 0.5)) == 4


def keras_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def test_a_space_with_no_valid_point_names_what_was_rejected() -> None:
    space = TuneSpaceConfig(attention=("temporal_mhsa",), placement=(("fused",),))
    with pytest.raises(
        ConfigError,
        match=r"ststnet/temporal_mhsa@fused: attention 'temporal_mhsa' works on frame sequences",
    ):
        model_variants(space, 0.5)


def test_a_placement_typo_or_a_backbone_left_without_variants_is_an_error() -> None:
    """Not silently dropped: a point no backbone of the space has (a typo), and a backbone of
    the space whose every attention variant was rejected (its baseline alone would train)."""
    typo = TuneSpaceConfig(attention=("none", "se"), placement=(("fused",), ("nowhere",)))
    with pytest.raises(
        ConfigError,
        match=r"'nowhere' is not a point of any backbone of the space \(ststnet: streams, fused, pre_head\)",
    ):
        model_variants(typo, 0.5)
    lacking = TuneSpaceConfig(
        backbone=("ststnet", "htnet"), attention=("none", "se"), placement=(("fused",),)
    )
    with pytest.raises(
        ConfigError,
        match=r"backbone 'htnet' gets no attention variant .*htnet/se@fused: backbone 'htnet' has no placement point 'fused'",
    ):
        model_variants(lacking, 0.5)
    both = TuneSpaceConfig(
        backbone=("ststnet", "htnet"),
        attention=("none", "se"),
        placement=(("fused",), ("regions",)),
    )
    assert {v.label for v in model_variants(both, 0.5)} == {
        "ststnet/none@-", "htnet/none@-", "ststnet/se@fused", "htnet/se@regions"
    }  # fmt: skip


def test_a_search_is_named_by_its_definition_data_and_code(monkeypatch) -> None:
    """Same search, data and code: the same name (an interrupted run resumes); any change,
    the code's too, a new search (never finished with trials of other code)."""
    from components import provenance
    from components.config import Params
    from components.tuning.search import experiment_name

    params = Params()
    name = experiment_name([{"index": 0}], params, "data-1")
    assert name == experiment_name([{"index": 0}], params, "data-1")
    assert name != experiment_name([{"index": 1}], params, "data-1")
    assert name != experiment_name([{"index": 0}], params, "data-2")
    monkeypatch.setattr(provenance, "code_version", lambda: "other code")
    assert name != experiment_name([{"index": 0}], params, "data-1")


def write_params(folder: Path, **tune_overrides) -> Path:
    return small_project(
        folder,
        subjects=6,
        model={"dropout": 0.0},
        train={"augment_shift_px": 0, "augment_flip": False},
        tune={
            "space": {
                "attention": ["none", "se", "spatial", "cbam"],
                "epochs": [EPOCHS],
                "learning_rate": [0.01],
            },
            "scheduler": "fifo",
            "max_concurrent_trials": 2,
            "holdout_fraction": 0.2,
            "validation_fraction": 0.25,
            "storage_path": str(folder / "ray_results"),
            "reports_dir": str(folder / "reports/tune"),
            **tune_overrides,
        },
    )


@pytest.fixture(scope="module")
def search(cluster, tmp_path_factory):
    """One search: 2 trials at once (one per node), 2 logical CPU devices each, every trial
    crashes once at epoch 1. On the holdout objective: one model a trial (on several devices
    folds train one by one, so kfold's 3 would triple the training and prove nothing more
    here; the kfold objective: tests/test_end_to_end.py and test_tune_resume.py)."""
    from pipelines import tune as tune_stage

    folder = tmp_path_factory.mktemp("tune")
    space = {"attention": ["none", "cbam"], "epochs": [EPOCHS], "learning_rate": [0.01]}
    params = write_params(folder, devices_per_trial=2, space=space, objective="holdout")
    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        args = stage_args(params, "tune")
        args.crash_once_at_epoch = 1  # a test hook, not a flag
        code = tune_stage.run(args)
    finally:
        del os.environ["RAY_ADDRESS"]
    return folder, code


@pytest.mark.slow
def test_trials_spread_over_both_nodes_and_use_two_devices(search, cluster) -> None:
    folder, code = search
    assert code == 0
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    assert len(table) == 2 and (table.status == "TERMINATED").all()
    node_ids = {node.node_id for node in cluster.list_all_nodes()}
    assert "node_id" not in table and "seconds" not in table  # no host or timing in DVC outputs
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    runs = mlflow.search_runs(
        [mlflow.get_experiment_by_name("test").experiment_id], output_format="list"
    )
    ran_on = {r.data.tags["node_id"] for r in runs if "trial_key" in r.data.tags}
    assert ran_on == node_ids and len(node_ids) == 2
    assert (table.replicas == 2).all()  # MirroredStrategy over 2 logical CPU devices
    assert (table.stacked_folds == 1).all()  # the holdout objective's one fold


@pytest.mark.slow
def test_crashed_trials_resume_from_their_checkpoint(search) -> None:
    folder, _ = search
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    assert (table.restored_from_epoch == 0).all()  # restarted after the crash at epoch 1
    assert (table.epochs_run == 3).all()  # epochs 0, 1, 2 once each: not started over


@pytest.mark.slow
def test_best_config_carries_model_and_training_values(search) -> None:
    folder, _ = search
    best = json.loads((folder / "reports/tune/best_config.json").read_text())
    table = pd.read_parquet(folder / "reports/tune/trials.parquet")
    assert best["score"] == table.best_val_uf1.max()
    assert best["model"]["attention"]["type"] in {"none", "cbam"}
    assert (best["learning_rate"], best["batch_size"], best["epochs"]) == (0.01, 16, EPOCHS)
    assert best["holdout_subjects"] and not set(best["search_subjects"]) & set(
        best["holdout_subjects"]
    )
    assert (folder / "reports/tune/search.png").stat().st_size > 10000


@pytest.mark.slow
def test_mlflow_has_a_child_run_per_trial(search) -> None:
    folder, _ = search
    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
    experiment = mlflow.get_experiment_by_name("test")
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    parent = next(r for r in runs if r.info.run_name == "tune")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2  # one per trial, the same run continued after the crash
    client = mlflow.tracking.MlflowClient()
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_uf1")]
        assert sorted(set(steps)) == [0, 1, 2]
        assert child.data.params["point.model.attention.type"]
    assert parent.data.metrics["best_val_uf1"] >= 0 and parent.info.status == "FINISHED"


@pytest.mark.parametrize(
    ("search", "scheduler"),
    [("grid", "asha"), ("random", "fifo"), ("optuna", "asha"), ("grid", "halving")],
)
def test_search_algorithms_and_schedulers(search: str, scheduler: str) -> None:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from components.config import Params, TuneConfig
    from components.tuning.halving import SynchronousHalving
    from components.tuning.search import search_setup, trial_slots

    params = Params(
        tune=TuneConfig(search=search, scheduler=scheduler, grace_period=4, num_samples=3)
    )
    slots = trial_slots(params, 5)
    space, algorithm, chosen = search_setup(params, slots, 5)
    kinds = {"asha": ASHAScheduler, "fifo": FIFOScheduler, "halving": SynchronousHalving}
    assert type(chosen) is kinds[scheduler]
    if scheduler != "fifo":
        assert chosen._time_attr == "epochs_done"  # counts epochs across restarts
    if search == "optuna":
        assert slots is None and isinstance(algorithm, OptunaSearch)
        assert space["index"].categories == [0, 1, 2, 3, 4]
        return
    assert algorithm is None and space["slot"] == {"grid_search": list(range(len(slots)))}
    if search == "grid":  # the grid, num_samples times
        assert [s.index for s in slots] == [0, 1, 2, 3, 4] * 3
    else:  # num_samples points drawn from the seed: the same trials every run
        assert len(slots) == 3 and slots == trial_slots(params, 5)
        assert len({s.index for s in slots}) == 3  # without replacement while they last
    assert len({s.key for s in slots}) == len(slots)  # every trial's state file its own


def test_kfold_objective_folds_never_touch_the_holdout() -> None:
    from components.config import Params, TuneConfig
    from components.tuning.search import objective_folds, subject_split

    params = Params(tune=TuneConfig(objective="kfold", kfold=3, holdout_fraction=0.2))
    subjects = [f"casme2/sub{k:02d}" for k in range(1, 11)]
    holdout, search = subject_split(subjects, params)
    folds = objective_folds(search, params)
    assert len(folds) == 3 and len(holdout) == 2
    scored = [s for f in folds for s in f.validation]
    assert sorted(scored) == sorted(search)  # each search subject scored exactly once
    for f in folds:
        assert not set(f.train) & set(f.validation) and not (
            set(f.train) | set(f.validation)
        ) & set(holdout)


@pytest.mark.slow
def test_a_trial_error_a_retry_cannot_cure_ends_the_trial_once(cluster, tmp_path: Path) -> None:
    """A platform limit (any MerError) inside a trial is stored as its one line and the trial
    ends: with max_failures=2, Ray would otherwise run it three times."""
    import ray
    from ray import tune

    from components.config import PreprocessConfig, TrackingConfig, TrainConfig
    from components.errors import MerError, PlatformError
    from components.tuning.search import Interruption, check_complete
    from components.tuning.store import SearchStore
    from components.tuning.trainable import TrialContext, ending_on_user_errors

    limit = "TensorFlow's kernels on this machine cannot train this model: X (export Y=1)"
    calls = tmp_path / "calls"
    calls.mkdir()

    def failing(config, context) -> None:
        (calls / str(time.monotonic_ns())).touch()
        raise PlatformError(limit)

    context = TrialContext(
        points=[{}],
        preprocess=PreprocessConfig(),
        data_version="v",
        train=TrainConfig(),
        tracking=TrackingConfig(),
        folds=(),
        seed=0,
        cpus=1,
        devices=1,
        parent_run_id=None,
        storage=str(tmp_path / "store"),
        search="s",
        slots=None,
        tags={},
    )
    trainable = tune.with_parameters(ending_on_user_errors(failing), context=context)
    ray.init(address=cluster.address)
    try:
        results = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"index": 0},
            run_config=tune.RunConfig(
                storage_path=str(tmp_path / "ray"),
                name="fatal",
                failure_config=tune.FailureConfig(max_failures=2),
                verbose=0,
            ),
        ).fit()
    finally:
        ray.shutdown()
    assert len(list(calls.iterdir())) == 1 and not results.errors
    fatal = SearchStore(context.storage, context.search).fatal_messages()
    assert list(fatal.values()) == [limit]
    statuses = {key: (0, "ERROR") for key in fatal}
    errors = [MerError(f"trial {k}: {m}") for k, m in fatal.items()]
    with pytest.raises(
        MerError, match=r"^1 trial\(s\) failed: trial .*a retry cannot cure"
    ) as caught:
        check_complete(statuses, Interruption(), 1, errors)
    assert "\n" not in str(caught.value)
