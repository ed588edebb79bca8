"""The one family of user-facing errors.

A :class:`MerError` is a problem the user can fix (a setting, a file, a missing stage output):
``mer`` prints its message as one line on stderr and exits with code 2 (``--debug`` shows the
traceback). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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


class Interrupted(BaseException):
    """The run was interrupted (Ctrl-C, SIGTERM) before it completed; nothing was published.
    Like ``KeyboardInterrupt`` it is not an ``Exception``: no retry loop swallows it."""
