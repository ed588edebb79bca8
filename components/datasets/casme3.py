"""CAS(ME)^3 part A reader: ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``, ``spNO.1/a/color/123.jpg``.

Only rows whose ``Expression type`` is ``Micro-expression`` are samples; the others are listed
as excluded. File names repeat within a subject (one video holds several expressions), so a
repeated name gets the onset frame appended to make the clip id unique.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from components.config import DatasetConfig
from components.datasets.sample import ReadResult, Rejection, RowError, Sample, safe_join
from components.datasets.sheets import (
    apex_frame,
    find_sheet,
    frame_number,
    make_sample,
    read_rows,
    read_sheet_samples,
    text,
)

SHEET_PATTERN = "cas(me)3_part_A_ME_label_JpgIndex_v*.xlsx"
COLUMNS = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Expression type", "emotion"]
MICRO = "micro-expression"


def read_casme3(cfg: DatasetConfig) -> ReadResult:
    """Read CAS(ME)^3 part A micro-expressions; invalid rows are quarantined."""
    root = Path(cfg.root)
    sheet = find_sheet(root, SHEET_PATTERN, cfg.sheet)
    frames_root = root / (cfg.frames_dir or ".")
    repeats = Counter(
        (text(r["subject"]), text(r["filename"])) for _, r in read_rows(sheet, COLUMNS)
    )
    used: set[tuple[str, str]] = set()
    result = ReadResult()

    def row_sample(row_number: int, row: dict) -> Sample | None:
        subject, name = text(row["subject"]), text(row["filename"])
        kind = text(row["expression type"])
        if kind.casefold() != MICRO:
            reason = f"expression type {kind!r}"
            result.excluded.append(Rejection("casme3", str(sheet), row_number, name, reason))
            return None
        onset = frame_number(row["onset"], "Onset")
        clip = f"{name}_{onset}" if repeats[(subject, name)] > 1 else name
        if (subject, clip) in used:
            raise RowError(f"duplicate clip {subject}/{name} with the same onset {onset}")
        clip_dir = safe_join(frames_root, subject, name, "color")
        sample = make_sample(
            dataset="casme3",
            subject=subject,
            clip=clip,
            onset=onset,
            apex=apex_frame(row["apex"], "Apex", cfg.missing_apex),
            offset=frame_number(row["offset"], "Offset"),
            frame_path=lambda n: clip_dir / f"{n}.jpg",
            emotion=text(row["emotion"]),
            action_units=text(row["au"]),
            source=f"{sheet.name}:{row_number}",
        )
        used.add((subject, clip))
        return sample

    return read_sheet_samples("casme3", sheet, COLUMNS, row_sample, result)
