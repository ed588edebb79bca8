"""SAMM reader: ``SAMM_Micro_FACS_Codes_v2.xlsx`` (header on row 14) and ``006/006_1_2/006_05562.jpg``."""

from __future__ import annotations

import re
from pathlib import Path

from components.config import DatasetConfig
from components.datasets.sample import ReadResult, RowError, Sample, safe_join
from components.datasets.sheets import (
    apex_frame,
    find_sheet,
    frame_number,
    make_sample,
    read_sheet_samples,
    text,
)

SHEET_PATTERN = "SAMM_Micro_FACS_Codes_v*.xlsx"
COLUMNS = [
    "Subject",
    "Filename",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Action Units",
    "Estimated Emotion",
]


def subject_folder(value: object) -> str:
    """Sheet subject (``6`` or ``'006'``) -> folder name ``006``."""
    name = text(value)
    if not name.isdigit():
        raise RowError(f"Subject {value!r} is not a subject number")
    return f"{int(name):03d}"


def last_frame(clip_dir: Path, subject: str) -> int:
    """Highest frame number in a clip folder (SAMM writes offset -1 when it is unknown)."""
    pattern = re.compile(rf"{re.escape(subject)}_(\d+)\.jpg$")
    numbers = [int(m.group(1)) for p in clip_dir.glob("*.jpg") if (m := pattern.match(p.name))]
    if not numbers:
        raise RowError(f"offset is -1 (unknown) and {clip_dir} holds no frames")
    return max(numbers)


def read_samm(cfg: DatasetConfig) -> ReadResult:
    """Read every SAMM row; offset -1 means 'last frame of the clip folder'."""
    root = Path(cfg.root)
    sheet = find_sheet(root, SHEET_PATTERN, cfg.sheet)
    frames_root = root / (cfg.frames_dir or ".")

    def row_sample(row_number: int, row: dict) -> Sample:
        clip = text(row["filename"])
        subject = subject_folder(row["subject"])
        clip_dir = safe_join(frames_root, subject, clip)
        offset = frame_number(row["offset frame"], "Offset Frame")
        if offset == -1:
            offset = last_frame(clip_dir, subject)
        return make_sample(
            dataset="samm",
            subject=subject,
            clip=clip,
            onset=frame_number(row["onset frame"], "Onset Frame"),
            apex=apex_frame(row["apex frame"], "Apex Frame", cfg.missing_apex),
            offset=offset,
            frame_path=lambda n: clip_dir / f"{subject}_{n:05d}.jpg",
            emotion=text(row["estimated emotion"]),
            action_units=text(row["action units"]),
            source=f"{sheet.name}:{row_number}",
        )

    return read_sheet_samples("samm", sheet, COLUMNS, row_sample)
