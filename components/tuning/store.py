"""One search's own files, beside Ray's: every trial's latest state, and the finished search.

Under ``<tune.storage_path>/<search name>/`` (a local folder or any URI pyarrow reaches, as
Ray's storage):

- ``trials/<trial key>.npz`` — a trial's state after its latest epoch (every model and
  optimizer variable, the selection state, its metrics so far), written by the trial each
  epoch as data (:mod:`components.datafiles`, never a pickle). An interrupted search resumes
  from these: each trial goes on from its last epoch, and Ray's own experiment state (pickles)
  is never read back.
- ``fatal/<trial key>.txt`` — the one line of a trial that ended on an error a retry cannot
  cure (a setting, a platform limit); the search reports it instead of retrying the trial.
- ``search.json`` — the finished search: every trial's status and per-epoch metrics, written
  once the search ran to its end. A later ``mer tune`` of the same search reads it back
  instead of training. It is parsed through the typed schema and checked by content (every
  trial of the search present once, its epochs in order and within its budget, its metrics in
  range); a damaged or incomplete one is an error naming the file, never a hang or a silently
  partial result.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from components import datafiles
from components.errors import ArtifactError, ConfigError
from components.parsing import Range, parse

RECORD = "search.json"
TRIALS = "trials"
FATAL = "fatal"
METRICS_IN_UNIT_RANGE = ("val_uf1", "val_uar")


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial: which point (``index``), how it ended, its metrics per epoch."""

    key: str
    index: int
    status: Literal["TERMINATED", "ERROR"]
    history: list[dict[str, Any]]  # per epoch: epoch, val_uf1, val_uar, val_loss, ...


@dataclass(frozen=True)
class TrialState:
    """A trial after an epoch, as stored (data only): the next epoch, each fold run's state
    (:meth:`~components.training.run.FoldRun.state`), the metrics reported so far."""

    next_epoch: Annotated[int, Range(ge=1)]
    runs: list[dict[str, Any]]
    history: list[dict[str, Any]]


@dataclass(frozen=True)
class SearchRecord:
    """A search that ran to its end."""

    name: str
    metric: str
    mode: Literal["max", "min"]
    trials: list[TrialRecord] = field(default_factory=list)


@dataclass(frozen=True)
class TrialSlot:
    """A trial the search will run: its key (names its state file) and its point's index."""

    key: str
    index: int


def _filesystem(path: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(path if "://" in path else Path(path).resolve().as_uri())


class SearchStore:
    """The files of search ``name`` under ``storage`` (a folder or a URI)."""

    def __init__(self, storage: str, name: str):
        self.storage, self.name = storage, name
        self.path = f"{storage.rstrip('/')}/{name}"
        self.filesystem, self.folder = _filesystem(self.path)

    def _write(self, relative: str, data: bytes) -> None:
        target = f"{self.folder}/{relative}"
        self.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        temporary = f"{target}.tmp"
        with self.filesystem.open_output_stream(temporary) as out:
            out.write(data)
        self.filesystem.move(temporary, target)  # atomic on a local folder

    def _read(self, relative: str) -> bytes | None:
        from pyarrow import fs

        target = f"{self.folder}/{relative}"
        if self.filesystem.get_file_info(target).type != fs.FileType.File:
            return None
        with self.filesystem.open_input_stream(target) as handle:
            return handle.read()

    def where(self, relative: str) -> str:
        return f"{self.path}/{relative}"

    # trial states
    def save_trial(self, key: str, state: dict[str, Any]) -> None:
        self._write(f"{TRIALS}/{key}.npz", datafiles.dumps(state))

    def load_trial(self, key: str) -> dict[str, Any] | None:
        """A trial's latest state (as data), or None if it has none."""
        data = self._read(f"{TRIALS}/{key}.npz")
        return None if data is None else datafiles.loads(data, self.where(f"{TRIALS}/{key}.npz"))

    def trial_state(self, key: str) -> TrialState | None:
        """A trial's latest state, parsed (:class:`TrialState`); an unreadable or crafted one
        is an :class:`~components.errors.ArtifactError` naming the file."""
        raw = self.load_trial(key)
        if raw is None:
            return None
        try:
            return parse(TrialState, raw, self.where(f"{TRIALS}/{key}.npz"))
        except ConfigError as exc:
            raise ArtifactError(f"{exc}: {FIX}") from None

    def trial_keys(self) -> list[str]:
        from pyarrow import fs

        selector = fs.FileSelector(f"{self.folder}/{TRIALS}", allow_not_found=True)
        names = [i.base_name for i in self.filesystem.get_file_info(selector)]
        return sorted(n.removesuffix(".npz") for n in names if n.endswith(".npz"))

    def check_trials(self) -> None:
        """Every stored trial state is data of the right form (before a search resumes from
        them: a damaged or crafted one stops ``mer tune`` at once, naming the file)."""
        for key in self.trial_keys():
            self.trial_state(key)

    def has_trials(self) -> bool:
        return bool(self.trial_keys())

    def clear_trials(self) -> None:
        """Remove the trial states (this store's own files) so the search starts over."""
        from pyarrow import fs

        selector = fs.FileSelector(f"{self.folder}/{TRIALS}", allow_not_found=True)
        for info in self.filesystem.get_file_info(selector):
            if info.type == fs.FileType.File and info.path.endswith(".npz"):
                self.filesystem.delete_file(info.path)

    # trials that ended on an error a retry cannot cure
    def save_fatal(self, key: str, message: str) -> None:
        self._write(f"{FATAL}/{key}.txt", message.encode())

    def fatal_messages(self) -> dict[str, str]:
        """Each such trial's one line, by trial key."""
        from pyarrow import fs

        selector = fs.FileSelector(f"{self.folder}/{FATAL}", allow_not_found=True)
        infos = sorted(self.filesystem.get_file_info(selector), key=lambda i: i.base_name)
        return {
            info.base_name.removesuffix(".txt"): self._read(f"{FATAL}/{info.base_name}").decode()
            for info in infos
            if info.type == fs.FileType.File and info.base_name.endswith(".txt")
        }

    def clear_fatal(self) -> None:
        self.filesystem.delete_dir_contents(f"{self.folder}/{FATAL}", missing_dir_ok=True)

    # the finished search
    def write_record(self, record: SearchRecord) -> None:
        from components.outputs import strict_json

        text = json.dumps(strict_json(asdict(record)), indent=1, allow_nan=False) + "\n"
        self._write(RECORD, text.encode())

    def read_record(self, slots: list[TrialSlot] | None, points: list[dict]) -> SearchRecord | None:
        """The finished search, checked by content (:func:`check_record`) against the trials
        it must hold (``slots``, None when an adaptive algorithm chose them); None if the
        search has not finished."""
        data = self._read(RECORD)
        if data is None:
            return None
        where = self.where(RECORD)
        try:
            raw = json.loads(data.decode("utf-8"))
            record = parse(SearchRecord, raw, where)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{where} is not valid JSON ({exc}): {FIX}") from None
        except ConfigError as exc:
            raise ArtifactError(f"{exc}: {FIX}") from None
        if record.name != self.name:
            # the folder's name is the hash of the search's definition, data and code: a record
            # naming another search (a folder renamed, a record copied) describes other trials
            raise ArtifactError(
                f"{where}: the record of search {record.name!r}, not of this search "
                f"({self.name!r}: its space, data and code): {FIX}"
            )
        check_record(record, slots, points, where)
        return record


FIX = "run `mer tune --fresh` to search again"


def check_record(
    record: SearchRecord, slots: list[TrialSlot] | None, points: list[dict], where: str
) -> None:
    """Raise :class:`~components.errors.ArtifactError` unless ``record`` holds every trial of
    the search exactly once (``slots``; with an adaptive search algorithm, at least one trial),
    each with epochs 0, 1, ... in order, no more than its point's, and metrics in range."""
    keys = [t.key for t in record.trials]
    if len(set(keys)) != len(keys):
        raise ArtifactError(f"{where}: a trial is listed twice: {FIX}")
    if slots is not None:
        expected = {s.key: s.index for s in slots}
        if missing := sorted(set(expected) - set(keys)):
            raise ArtifactError(f"{where}: trial {missing[0]} has no results: {FIX}")
        if extra := sorted(set(keys) - set(expected)):
            raise ArtifactError(f"{where}: trial {extra[0]} is not part of this search: {FIX}")
    elif not record.trials:
        raise ArtifactError(f"{where}: the search holds no trial: {FIX}")
    for trial in record.trials:
        if slots is not None and trial.index != expected[trial.key]:
            raise ArtifactError(f"{where}: trial {trial.key} is not point {trial.index}: {FIX}")
        if not 0 <= trial.index < len(points):
            raise ArtifactError(f"{where}: trial {trial.key}: no point {trial.index}: {FIX}")
        _check_history(trial, points[trial.index]["epochs"], where)


def _check_history(trial: TrialRecord, epochs: int, where: str) -> None:
    name = f"{where}: trial {trial.key}"
    if trial.status == "TERMINATED" and not trial.history:
        raise ArtifactError(f"{name} has no epoch: {FIX}")
    if len(trial.history) > epochs:
        raise ArtifactError(f"{name} has {len(trial.history)} epochs, its point {epochs}: {FIX}")
    for position, row in enumerate(trial.history):
        if row.get("epoch") != position:
            raise ArtifactError(f"{name}: row {position} is epoch {row.get('epoch')!r}: {FIX}")
        for metric in (*METRICS_IN_UNIT_RANGE, "val_loss"):
            value = row.get(metric)
            high = 1.0 if metric in METRICS_IN_UNIT_RANGE else math.inf
            if not isinstance(value, int | float) or not (0 <= value <= high):
                raise ArtifactError(f"{name}: epoch {position}: {metric} is {value!r}: {FIX}")
