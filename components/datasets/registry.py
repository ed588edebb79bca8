"""Dataset readers: name → reader function and the options it takes.

Adding a reader is one module plus one line here. The table is light (paths, not functions), so
the typed config checks names and options without importing any reader.
"""

from __future__ import annotations

from dataclasses import dataclass

SHEET_OPTIONS = ("frames_dir", "sheet", "missing_apex")


@dataclass(frozen=True)
class ReaderEntry:
    target: str  # "module:function" taking a DatasetConfig, returning a ReadResult
    options: tuple[str, ...] = ()  # DatasetConfig fields besides name and root
    precomputed: bool = False  # yields ready flow (no face or flow step in preprocess)


READERS: dict[str, ReaderEntry] = {
    "casme2": ReaderEntry("components.datasets.casme2:read_casme2", SHEET_OPTIONS),
    "samm": ReaderEntry("components.datasets.samm:read_samm", SHEET_OPTIONS),
    "smic": ReaderEntry("components.datasets.smic:read_smic", ("frames_dir",)),
    "casme3": ReaderEntry("components.datasets.casme3:read_casme3", SHEET_OPTIONS),
    "flow_images": ReaderEntry(
        "components.datasets.flow_images:read_flow_images",
        ("csv", "images_dir", "pattern", "channels", "faces_dir"),
        precomputed=True,
    ),
}
