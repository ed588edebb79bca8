"""Test-wide setup: quiet TensorFlow, one TensorFlow thread, MLflow reset after each test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


import mlflow
import pytest
import tensorflow as tf

# one TensorFlow thread, as every unit of work and tune trial runs: in-process results then
# match theirs exactly, and TrainConfig(threads=1) can be applied after TensorFlow started
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)


@pytest.fixture(autouse=True)
def isolated_mlflow():
    """Each test starts and ends without an MLflow tracking URI or active run left behind
    (``mlflow.set_tracking_uri`` also writes MLFLOW_TRACKING_URI into the environment)."""
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def cluster():
    """A head node and a worker node, one CPU each, as separate Ray raylets on this machine."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


#: the modules that take longest (benchmarks/RESULTS.md "test timings"), collected first: with
#: `--dist loadfile` the workers take whole modules in collection order, and the longest
#: starting first leaves no worker finishing a long module alone at the end
LONGEST_FIRST = (
    "test_end_to_end.py",
    "test_tune.py",
    "test_tune_resume.py",
    "test_flow_images.py",
    "test_units.py",
)


def pytest_collection_modifyitems(items) -> None:
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module's tests keep their order
