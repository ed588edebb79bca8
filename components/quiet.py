"""Keep ``mer``'s output readable: TensorFlow's C++ start-up lines (oneDNN, CUDA probing) go
to the process's stderr before any log setting applies, so they are silenced at the file
descriptor while TensorFlow loads (``mer --verbose`` keeps them)."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def _stderr_to(fd_target: int) -> Iterator[None]:
    """File descriptor 2 (C and C++ writes included) sent to ``fd_target`` for the duration."""
    sys.stderr.flush()
    fd = 2  # the process's stderr, whatever object sys.stderr is now
    saved = os.dup(fd)
    os.dup2(fd_target, fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (C++ writes included)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with _stderr_to(devnull):
            yield
    finally:
        os.close(devnull)


_CAPTURE_LOCK = threading.Lock()
_capture_file: list = []  # one temporary file per process, reused


@contextmanager
def native_stderr_captured() -> Iterator[Callable[[], str]]:
    """Collect what native code writes to file descriptor 2 for the duration (e.g. libjpeg's
    "Corrupt JPEG data" warnings, which no Python API reports); yields a function returning
    it. One capture at a time per process (threads wait), so nothing else's output is taken."""
    with _CAPTURE_LOCK:
        if not _capture_file:
            _capture_file.append(tempfile.TemporaryFile())  # noqa: SIM115 - kept for the process
        capture = _capture_file[0]
        capture.seek(0)
        capture.truncate()
        text: list[str] = []
        with _stderr_to(capture.fileno()):
            yield lambda: "".join(text)
        capture.seek(0)
        text.append(capture.read().decode("utf-8", "replace"))


class Drop(logging.Filter):
    """Drops records whose message holds any of ``fragments``."""

    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(f in message for f in self.fragments)


def quiet_libraries() -> None:
    """Silence the library lines that say nothing a user of ``mer`` can act on (``mer
    --verbose`` keeps them): Beam's optional-dependency and worker-setup warnings, Ray Tune's
    advice to call ``Tuner.restore`` (``mer tune`` resumes by itself) and where it keeps its
    results, Ray's start-up note, MLflow's schema creation notes and its warnings about the
    inputs and the signature it infers."""
    noise = Drop(
        "apitools not found",
        "semi_persistent_directory",
        "Discarding unparseable args",
        "Tuner.restore",
        "Creating initial MLflow database tables",
        "Updating database tables",
    )
    for name in ("", "apache_beam", "ray.tune", "ray.tune.tune", "mlflow.store.db.utils"):
        logging.getLogger(name).addFilter(noise)
    for handler in logging.getLogger().handlers:
        handler.addFilter(noise)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)
    logging.getLogger("ray._private.worker").setLevel(logging.WARNING)  # "Started a local Ray"
    # Ray Tune's reporter prints where its results are whatever the verbosity; its legacy
    # reporter honours verbose=0 (the stages show their own progress)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for message in (
        "The specified dataset source can be interpreted in multiple ways",  # the records input
        "Hint: Inferred schema contains integer column",  # the model signature's label column
    ):
        warnings.filterwarnings("ignore", message=message, category=UserWarning)


def quiet_tensorflow(load: bool = True) -> None:
    """Silence TensorFlow's start-up noise and the library warnings that say nothing to a user
    of ``mer``, in this process and the processes it starts (Ray's workers); with ``load``,
    load TensorFlow (and probe its devices) now, without its start-up noise. A stage whose
    training runs on Ray does not load it: its workers do."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # tf.get_logger()
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if not load:
        return
    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    import keras

    keras.config.disable_interactive_logging()  # no progress bars (e.g. MLflow's input check)
