"""Test-wide setup: quiet TensorFlow, one TensorFlow thread, Ctrl-C as from a terminal, MLflow
reset after each test."""

import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Tests stop their subprocesses with Ctrl-C (SIGINT) as a terminal would. A pytest that a
# non-interactive shell started in the background (`cmd &`, as a CI script may) inherits SIGINT
# ignored, and so would every child it starts: they then ran on through the Ctrl-C (unless a
# Ray Tune run had left its own handler in that worker). The tests run as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
