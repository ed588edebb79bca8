"""Process-level TensorFlow set-up: logical devices, threads, seeds, determinism; and the
distribution strategy. Call :func:`configure` before any TensorFlow op runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import tensorflow as tf

from components.config import TrainConfig
from components.errors import PlatformError

#: what TensorFlow says when its kernels on this device cannot run an op (or its gradient);
#: a grouped convolution's filter gradient on Eigen kernels says the second inside a graph
KERNEL_LIMITS = (
    "not supported on CPU",
    "filter_size does not have enough elements",
    "do not yet support",
    "No OpKernel was registered",
)


def configure(cfg: TrainConfig, seed: int) -> None:
    """Split the CPU into ``cfg.devices`` logical devices (when there is no GPU), cap threads,
    seed every generator and turn on op determinism. Devices and threads can be set only before
    TensorFlow initialises: a process that is already set up the same way (e.g. a Ray worker
    reused for the next unit) only re-seeds; one set up differently raises RuntimeError."""
    threading = tf.config.threading
    if cfg.threads and threading.get_intra_op_parallelism_threads() != cfg.threads:
        threading.set_intra_op_parallelism_threads(cfg.threads)  # raises once initialised
        threading.set_inter_op_parallelism_threads(min(2, cfg.threads))
    gpus = tf.config.list_physical_devices("GPU")
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or [None]
    if not gpus and cfg.devices > 1 and len(configured) != cfg.devices:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cfg.devices)]
        )
    seed_everything(seed)
    if cfg.deterministic:
        os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
        tf.config.experimental.enable_op_determinism()


def seed_everything(seed: int) -> None:
    """Python, NumPy, TensorFlow and Keras seeds."""
    import keras

    keras.utils.set_random_seed(seed)


def make_strategy(cfg: TrainConfig) -> tf.distribute.Strategy:
    """MirroredStrategy over every GPU when there are several, over ``cfg.devices`` logical CPU
    devices when asked for more than one, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if not gpus and cfg.devices > 1:
        cpus = tf.config.list_logical_devices("CPU")
        if len(cpus) < cfg.devices:
            raise RuntimeError(
                f"train.devices={cfg.devices} but TensorFlow sees {len(cpus)} CPU device(s): "
                "configure() must run before any TensorFlow op"
            )
        return tf.distribute.MirroredStrategy([d.name for d in cpus[: cfg.devices]])
    return tf.distribute.get_strategy()


@contextmanager
def kernel_limits() -> Iterator[None]:
    """Turn TensorFlow's "this device's kernels cannot do that" errors into a
    :class:`~components.errors.PlatformError`: one line naming the limit and the fix, and no
    retry (a retried unit or trial would fail the same way)."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as exc:
        limit = next((line for line in str(exc).splitlines() if any(
            phrase in line for phrase in KERNEL_LIMITS)), None)  # fmt: skip
        if limit is None:
            raise
        raise PlatformError(
            f"TensorFlow's kernels on this machine cannot train this model: {limit.strip()} "
            "(unset MER_FOLD_CONV if it is set, or export TF_ENABLE_ONEDNN_OPTS=1; "
            "`mer --version` shows the kernels in use)"
        ) from exc
