"""Stage outputs written safely: to a temporary sibling first, published at the end.

A stage never deletes what it did not write. Before it starts, :func:`check_output_folder`
refuses a folder that is ``/``, the project root, the home folder, a dataset root or a folder
containing one, or that holds files the stage does not own (a one-line
:class:`~components.errors.OutputError` naming the setting). The stage then writes into a
staging folder next to the target; only when it succeeds are its outputs moved into place,
each with an atomic rename, and the previous versions (the stage's own files) removed. A
killed or failed run leaves the previous outputs as they were.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.errors import OutputError

STAGING = ".{name}.staging-{pid}"
RETIRED = ".{name}.retired-{pid}"


@dataclass(frozen=True)
class Protected:
    """What no stage may write over: ``roots`` (``/``, the project root, the home folder) and
    ``datasets`` (every dataset root, which a stage may not write inside either)."""

    roots: tuple[Path, ...]
    datasets: tuple[Path, ...] = ()

    @classmethod
    def of(cls, params: Any, writing: str | Path | None = None) -> Protected:
        """For a run with ``params``: the configured dataset roots and the embedded one's
        (except ``writing``: the synthesize stage writes the embedded dataset's root)."""
        roots = (Path("/"), Path.cwd(), Path.home())
        datasets = {Path(d.root).resolve() for d in params.datasets}
        datasets.add(Path(params.synthesize.root).resolve())
        if writing is not None:  # its own root, and the dataset roots inside it
            written = Path(writing).resolve()
            datasets = {d for d in datasets if not d.is_relative_to(written)}
        return cls(tuple(r.resolve() for r in roots), tuple(sorted(datasets)))


def _owned(relative: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(relative, p) for p in patterns)


def check_output_folder(
    folder: str | Path,
    setting: str,
    protected: Protected,
    owned: Sequence[str] | None = None,
) -> Path:
    """Refuse ``folder`` (named by ``setting`` in the message) if it is or contains a protected
    path, lies inside a dataset root, or (with ``owned`` glob patterns, relative to it) holds
    a file that no pattern matches. Returns the resolved folder."""
    target = Path(folder).resolve()
    folder = str(folder)  # as the user wrote it, for the messages
    for path in (*protected.roots, *protected.datasets):
        if target == path or path.is_relative_to(target):
            what = "is" if target == path else "contains"
            raise OutputError(
                f"{setting}: {folder!r} {what} {path}, which this stage must not write over; "
                "choose a folder of its own (e.g. data/records)"
            )
    for path in protected.datasets:
        if target.is_relative_to(path):
            raise OutputError(f"{setting}: {folder!r} is inside the dataset root {path}")
    if target.exists() and not target.is_dir():
        raise OutputError(f"{setting}: {folder!r} exists and is not a folder")
    if owned is not None and target.is_dir():
        foreign = sorted(
            str(p.relative_to(target))
            for p in target.rglob("*")
            if p.is_file() and not _owned(str(p.relative_to(target)), owned)
        )
        if foreign:
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise OutputError(
                f"{setting}: {folder!r} holds files this stage did not write "
                f"({', '.join(foreign[:3])}{more}); choose an empty or dedicated folder"
            )
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(parent: Path, name: str) -> None:
    """Staging/retired folders a killed earlier run of this stage left behind (ours by name,
    and only those whose process has ended: a live run's staging is never touched)."""
    for pattern in (STAGING, RETIRED):
        for stale in parent.glob(pattern.format(name=name, pid="*")):
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
                continue
            _remove(stale)


_HELD: dict[Path, int] = {}  # lock files this process holds → descriptor


@contextmanager
def output_lock(folder: str | Path, setting: str) -> Iterator[None]:
    """Hold the write lock of output ``folder`` (a lock file beside it, removed when released)
    for the duration: a second run writing the same outputs stops at once, in one line,
    instead of training for an hour and then replacing (or deleting the staging of) the first
    one's. Re-entrant within a process; released when the process ends, however it ends."""
    target = Path(folder).resolve()
    lock = target.parent / f".{target.name}.lock"
    if lock in _HELD:
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor = _acquire(lock, setting, folder)
    _HELD[lock] = descriptor
    try:
        yield
    finally:
        del _HELD[lock]
        lock.unlink(missing_ok=True)  # while still held: the next run creates a new one
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def _acquire(lock: Path, setting: str, folder: str | Path) -> int:
    """An exclusive lock on the file ``lock`` (created if needed); the file holds our pid."""
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            os.close(descriptor)
            raise OutputError(
                f"{setting}: another mer run (pid {holder}) is writing {folder}; wait for it "
                "to finish, or choose another folder"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not unlinked by a run releasing it between our open and our lock
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
            return descriptor
        os.close(descriptor)


@contextmanager
def staged_folder(
    folder: str | Path,
    setting: str,
    protected: Protected,
    owned: Sequence[str],
) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``folder`` as a whole (which may
    hold only files matching ``owned``). On an exception the staging folder is removed and
    ``folder`` is untouched."""
    target = check_output_folder(folder, setting, protected, owned)
    with output_lock(target, setting):
        target.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale(target.parent, target.name)
        staging = target.parent / STAGING.format(name=target.name, pid=os.getpid())
        staging.mkdir()
        try:
            yield staging
        except BaseException:
            _remove(staging)
            raise
        retired = target.parent / RETIRED.format(name=target.name, pid=os.getpid())
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
        _remove(retired)


@contextmanager
def staged_files(
    folder: str | Path,
    setting: str,
    protected: Protected,
    outputs: Sequence[str],
    owned_in_dirs: Sequence[str] = ("*",),
) -> Iterator[Path]:
    """Yield a staging folder for some named outputs of ``folder`` (files or folders, relative
    paths); on success each is moved into ``folder`` atomically, replacing its previous
    version. Everything else in ``folder`` is left alone. An output folder that already
    exists may hold only files matching ``owned_in_dirs``."""
    target = check_files_folder(folder, setting, protected, outputs, owned_in_dirs)
    with output_lock(target, setting):
        target.mkdir(parents=True, exist_ok=True)
        _clean_stale(target, "outputs")
        staging = target / STAGING.format(name="outputs", pid=os.getpid())
        staging.mkdir()
        try:
            yield staging
            missing = [n for n in outputs if not (staging / n).exists()]
            if missing:
                raise RuntimeError(f"stage did not write its outputs {missing}")  # a bug
        except BaseException:
            _remove(staging)
            raise
        for name in outputs:
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            if (staging / name).is_dir() and destination.exists():
                retired = destination.parent / RETIRED.format(
                    name=destination.name, pid=os.getpid()
                )
                os.replace(destination, retired)
                os.replace(staging / name, destination)
                _remove(retired)
            else:
                os.replace(staging / name, destination)
        _remove(staging)


def check_files_folder(
    folder: str | Path,
    setting: str,
    protected: Protected,
    outputs: Sequence[str],
    owned_in_dirs: Sequence[str] = ("*",),
) -> Path:
    """The checks :func:`staged_files` makes, for a stage to make them before its work: the
    folder is allowed and writable, and its output folders hold only files it writes."""
    target = check_output_folder(folder, setting, protected)
    for name in outputs:
        existing = target / name
        if existing.is_dir():
            check_output_folder(existing, f"{setting}/{name}", Protected(()), owned_in_dirs)
    check_writable(target, setting)
    return target


def check_writable(path: str | Path, setting: str) -> None:
    """Refuse ``path`` (a folder or a file to create) if it, or the nearest folder that exists
    above it, cannot be written: checked before the work, not when publishing after it."""
    path = Path(path).resolve()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if existing != path and not existing.is_dir():
        raise OutputError(f"{setting}: {existing} is a file, so {path} cannot be written")
    folder = existing if existing.is_dir() else existing.parent
    try:  # a real write: permissions, read-only file systems and root alike
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(
            f"{setting}: {folder} is not writable ({exc.strerror}), so {path} cannot be written"
        ) from None


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def write_json(path: str | Path, value: Any) -> None:
    """Strict JSON (no NaN/Infinity), indented, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(strict_json(value), indent=2, allow_nan=False) + "\n"
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)
