"""The common record every dataset reader yields, and the record of what it rejected."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from components.errors import DataError


class DatasetError(DataError):
    """The dataset as a whole cannot be read (missing sheet, missing columns, bad root)."""


@dataclass(frozen=True)
class Sample:
    """One micro-expression clip.

    ``frames`` lists every frame from onset to offset inclusive, in temporal order, as absolute
    paths; ``onset``/``apex``/``offset`` are indices into it (0, apex, len-1). ``frame_numbers``
    are the dataset's own frame numbers, kept for provenance.
    """

    dataset: str
    subject: str
    clip: str
    frames: tuple[str, ...]
    frame_numbers: tuple[int, ...]
    apex: int
    emotion: str
    action_units: str = ""
    source: str = ""
    #: "frames" (raw frames onset..offset) or "flow_image" (released pre-computed flow: frames
    #: holds the image; ``emotion`` is the composite class; ``face`` the optional apex face)
    kind: str = "frames"
    channels: str = "uvs"  # flow_image: what the image's R, G, B channels hold
    face: str = ""

    @property
    def uid(self) -> str:
        """Globally unique id: subjects and clips are namespaced by dataset."""
        return f"{self.dataset}/{self.subject}/{self.clip}"

    @property
    def subject_id(self) -> str:
        """Subject id namespaced by dataset (``casme2/sub01``) for subject-level splits."""
        return f"{self.dataset}/{self.subject}"

    @property
    def onset_path(self) -> str:
        return self.frames[0]

    @property
    def apex_path(self) -> str:
        return self.frames[self.apex]

    @property
    def offset_path(self) -> str:
        return self.frames[-1]


@dataclass(frozen=True)
class Rejection:
    """A row or clip that was not read, with where it came from and why."""

    dataset: str
    file: str
    row: int | None
    clip: str
    reason: str
    code: str = ""  # reason code for the quarantine report (default: invalid_annotation)

    def __str__(self) -> str:
        where = f"{self.file}" + (f", row {self.row}" if self.row is not None else "")
        return f"{self.dataset}: {where} ({self.clip or '?'}): {self.reason}"


@dataclass
class ReadResult:
    """What a reader found: the valid samples and every rejected row, nothing dropped."""

    samples: list[Sample] = field(default_factory=list)
    #: rows that are invalid (bad input): the quarantine
    rejections: list[Rejection] = field(default_factory=list)
    #: valid rows the protocol leaves out (e.g. CAS(ME)^3 macro-expressions), with the reason
    excluded: list[Rejection] = field(default_factory=list)

    def extend(self, other: ReadResult) -> None:
        self.samples.extend(other.samples)
        self.rejections.extend(other.rejections)
        self.excluded.extend(other.excluded)


class RowError(ValueError):
    """A problem confined to one annotation row; the reader quarantines it and goes on."""


def safe_join(root: Path, *parts: str) -> Path:
    """Join ``parts`` under ``root``, refusing any name that would escape the dataset root."""
    for part in parts:
        if not part or Path(part).is_absolute() or ".." in Path(part).parts:
            raise RowError(f"file name {part!r} would escape the dataset root {root}")
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise RowError(f"file name {'/'.join(parts)!r} would escape the dataset root {root}")
    return path
