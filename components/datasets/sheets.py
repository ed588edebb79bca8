"""Reading annotation sheets (xlsx) and turning rows into samples: the parts every reader shares."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from components.datasets.labels import canonical_emotion
from components.datasets.sample import DatasetError, ReadResult, Rejection, RowError, Sample

HEADER_SEARCH_ROWS = 40


def normalise(name: Any) -> str:
    """Column-name key: case- and whitespace-insensitive."""
    return " ".join(str(name or "").split()).casefold()


def find_sheet(root: Path, pattern: str, override: str | None) -> Path:
    """The annotation sheet under ``root``: ``override`` if given, else the single ``pattern`` match."""
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a folder")
    if override:
        path = root / override
        if not path.is_file():
            raise DatasetError(f"annotation sheet {path} not found")
        return path
    matches = sorted(root.glob(pattern))
    if not matches:
        raise DatasetError(f"no annotation sheet matching {pattern!r} in {root}")
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise DatasetError(f"several sheets match {pattern!r} in {root}: {names}; set 'sheet'")
    return matches[0]


def read_rows(path: Path, required: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(sheet row number, {normalised column: value})`` for every data row.

    The header is the first row (within the first 40) holding every required column, so sheets
    with title blocks above the table (SAMM's header is on row 14) are read as they are.
    """
    import openpyxl  # local: only readers with sheets need it

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise DatasetError(f"cannot read annotation sheet {path}: {exc}") from exc
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        wanted = {normalise(c) for c in required}
        header: list[str] | None = None
        best: list[str] = []
        for number, row in enumerate(rows, start=1):
            if header is None:
                names = [normalise(v) for v in row]
                if wanted <= set(names):
                    header = names
                elif len(wanted & set(names)) > len(wanted & set(best)):
                    best = names
                if header is None and number >= HEADER_SEARCH_ROWS:
                    break
                continue
            if all(v is None or str(v).strip() == "" for v in row):
                continue
            yield number, {h: v for h, v in zip(header, row, strict=False) if h}
        if header is None:
            missing = sorted(wanted - set(best))
            found = [n for n in best if n]
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(missing)}; "
                f"best header row found has: {', '.join(found) or 'nothing'}"
            )
    finally:
        workbook.close()


def frame_number(value: Any, column: str) -> int:
    """A frame number cell as int; '/' or blank or text is a row error naming the column."""
    if isinstance(value, bool):
        raise RowError(f"{column} is not a frame number: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value if value is not None else "").strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in ("", "/", "-", "nan", "None"):
        raise RowError(f"{column} is missing ({text or 'blank'!r})")
    raise RowError(f"{column} is not a frame number: {value!r}")


def apex_frame(value: Any, column: str, missing_apex: str) -> int | None:
    """The apex cell; a missing apex is a row error unless the policy is ``middle`` (-> None)."""
    try:
        return frame_number(value, column)
    except RowError:
        if missing_apex != "middle":
            raise
        return None


def text(value: Any) -> str:
    """A cell as stripped text ('' for blank); integral floats lose their '.0'."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def make_sample(
    *,
    dataset: str,
    subject: str,
    clip: str,
    onset: int,
    apex: int | None,
    offset: int,
    frame_path: Callable[[int], Path],
    emotion: str,
    action_units: str,
    source: str,
) -> Sample:
    """Validate the frame range and build a :class:`Sample`; raise :class:`RowError` if invalid.

    ``apex=None`` means the apex is unknown and the middle frame stands in.
    """
    emotion = canonical_emotion(dataset, emotion)  # cheap checks before the disk is touched
    if offset < onset:
        raise RowError(f"offset frame {offset} is before onset frame {onset}")
    if apex is None:
        apex = (onset + offset) // 2
    if not onset <= apex <= offset:
        raise RowError(f"apex frame {apex} is outside onset..offset ({onset}..{offset})")
    span = offset - onset + 1
    folder = frame_path(onset).parent
    if not folder.is_dir():
        raise RowError(f"{span} of {span} frames missing: the folder {folder} does not exist")
    available = sum(1 for _ in os.scandir(folder))  # before building a path per frame
    if span > available and not frame_path(offset).is_file():
        raise RowError(
            f"onset..offset ({onset}..{offset}) spans {span} frames but {folder} holds "
            f"{available} files: check the onset and offset frame numbers"
        )
    numbers = tuple(range(onset, offset + 1))
    paths = [frame_path(n) for n in numbers]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(p.name for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise RowError(
            f"{len(missing)} of {len(paths)} frames missing in {missing[0].parent}: {shown}"
        )
    return Sample(
        dataset=dataset,
        subject=subject,
        clip=clip,
        frames=tuple(str(p) for p in paths),
        frame_numbers=numbers,
        apex=apex - onset,
        emotion=emotion,
        action_units=action_units,
        source=source,
    )


def read_sheet_samples(
    dataset: str,
    sheet: Path,
    columns: list[str],
    row_sample: Callable[[int, dict[str, Any]], Sample | None],
    result: ReadResult | None = None,
) -> ReadResult:
    """Turn every row of ``sheet`` into a sample with ``row_sample``; a row that raises
    :class:`RowError` or ``ValueError`` is quarantined with file, row and reason, and the rest
    is still read. ``row_sample`` returns None for a row it recorded as excluded."""
    result = result if result is not None else ReadResult()
    for row_number, row in read_rows(sheet, columns):
        try:
            sample = row_sample(row_number, row)
        except (RowError, ValueError) as exc:
            clip = text(row.get("filename"))
            result.rejections.append(Rejection(dataset, str(sheet), row_number, clip, str(exc)))
            continue
        if sample is not None:
            result.samples.append(sample)
    return result
