"""Keep ``mer``'s output readable: TensorFlow's C++ start-up lines (oneDNN, CUDA probing) go
to the process's stderr before any log setting applies, so they are silenced at the file
descriptor while TensorFlow loads (``mer --verbose`` keeps them)."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (C++ writes included)."""
    sys.stderr.flush()
    fd = 2  # the process's stderr, whatever object sys.stderr is now
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow() -> None:
    """Load TensorFlow (and probe its devices) without its start-up noise; silence the
    library warnings that say nothing to a user of ``mer``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    import keras

    keras.config.disable_interactive_logging()  # no progress bars (e.g. MLflow's input check)
    logging.getLogger("absl").setLevel(logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
