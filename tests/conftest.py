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
