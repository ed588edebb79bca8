"""The one family of user-facing errors.

A :class:`MerError` is a problem the user can fix (a setting, a file, a missing stage output):
``mer`` prints its message as one line on stderr and exits with code 2 (``--debug`` shows the
traceback). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re


class MerError(Exception):
    """A user error; the message names the file, key or row and what is wrong."""


class ConfigError(MerError, ValueError):
    """A ``params.yaml`` value or key is invalid."""


class DataError(MerError):
    """Input data that cannot be used as it is (corrupt records, an unreadable dataset)."""


class ArtifactError(MerError):
    """A stage output that is missing, stale or inconsistent; the message names the stage to run."""


class OutputError(MerError):
    """An output location a stage refuses to write to (it holds data the stage did not write)."""


class PlatformError(MerError):
    """A limit of this machine's TensorFlow kernels (e.g. an op without a gradient on the CPU):
    a retry cannot cure it; the message names the limit and the fix."""


class Interrupted(BaseException):
    """The run was interrupted (Ctrl-C, SIGTERM) before it completed; nothing was published.
    Like ``KeyboardInterrupt`` it is not an ``Exception``: no retry loop swallows it."""


_signalled: list[str] = []  # the reason of a stopping signal this process received


def note_signal(reason: str) -> Interrupted:
    """Record a stopping signal (SIGTERM, Ctrl-C) and return the :class:`Interrupted` to raise: raised
    inside TensorFlow's runtime (a Python op or callback), it can arrive wrapped in one of
    TensorFlow's errors, which :func:`raise_if_signalled` turns back into what it was."""
    _signalled.append(reason)
    return Interrupted(reason)


def raise_if_signalled() -> None:
    """Raise :class:`Interrupted` if a stopping signal arrived (call where an error is handled
    by a retry: a signal must stop the run, not be retried)."""
    if _signalled:
        raise Interrupted(_signalled[0])


class TrackingError(MerError):
    """The MLflow store cannot be reached or used (checked before any training)."""


_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<secret>[^@/\s]+)@"
)
_SECRET_QUERY = re.compile(
    r"(?P<key>(?:password|passwd|pwd|token|secret|api_key|apikey)=)[^&\s]+", re.I
)


def redact(text: str) -> str:
    """``text`` with the credentials of every URI in it replaced by ``***``
    (``postgresql://user:***@host/db``, ``...?password=***``)."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}***", text)


def user_message(exc: BaseException) -> str | None:
    """The one line to show for an error the user can fix, or None for a bug (which keeps its
    traceback). Looks through the cause chain and through Ray's task errors, so a user error
    raised inside a Ray worker or a Beam transform is shown as itself."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        message = _own_message(current)
        if message is not None:
            return redact(message)
        inner = getattr(current, "cause", None)  # ray.exceptions.RayTaskError
        current = (
            inner
            if isinstance(inner, BaseException)
            else (current.__cause__ or current.__context__)
        )
    return None


def _own_message(exc: BaseException) -> str | None:
    if isinstance(exc, MerError):
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
    if isinstance(exc, OSError) and exc.filename is not None:
        target = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        return f"{target}: {exc.strerror or exc}"
    if type(exc).__name__ == "MlflowException" and type(exc).__module__.startswith("mlflow"):
        return f"MLflow: {getattr(exc, 'message', str(exc))}"
    return None
