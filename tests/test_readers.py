"""Every reader on small datasets built in the real layouts, including every bad-input case."""

from collections import Counter
from pathlib import Path

import pytest

from components.config import DatasetConfig
from components.datasets import DatasetError, read_dataset, read_datasets
from components.datasets.labels import composite_label
from tests.builders import (
    CASME3_HEADER,
    SAMM_HEADER,
    casme2_dataset,
    megc_rows,
    write_frames,
    write_xlsx,
)

LABEL_EMOTIONS = {0: ("disgust", "repression"), 1: ("happiness",), 2: ("surprise",)}


def reasons(result) -> dict[str, str]:
    return {r.clip: r.reason for r in result.rejections}


# --------------------------------------------------------------------------- CASME II


def test_casme2_reads_the_real_megc_subjects_and_class_balance(tmp_path: Path) -> None:
    rows = []
    for k, (subject, clip, label) in enumerate(megc_rows("casme2")):
        emotions = LABEL_EMOTIONS[label]
        rows.append((subject[3:], clip, 10, 11, 12, "4", emotions[k % len(emotions)]))
    casme2_dataset(tmp_path, rows)
    result = read_dataset(DatasetConfig(name="casme2", root=str(tmp_path)))
    assert result.rejections == []
    assert len(result.samples) == 145
    assert len({s.subject for s in result.samples}) == 24
    counts = Counter(composite_label("casme2", s.emotion) for s in result.samples)
    assert counts == {0: 88, 1: 32, 2: 25}
    first = result.samples[0]
    assert (first.subject, first.clip) == ("sub01", "EP02_01f")
    assert first.onset_path.endswith("CASME2_RAW_selected/sub01/EP02_01f/img10.jpg")
    assert first.apex_path.endswith("img11.jpg") and first.offset_path.endswith("img12.jpg")
    assert first.frame_numbers == (10, 11, 12)
    assert first.uid == "casme2/sub01/EP02_01f"
    assert first.source == "CASME2-coding-20140508.xlsx:2"


def test_casme2_bad_rows_are_quarantined_and_the_rest_is_read(tmp_path: Path) -> None:
    rows = [
        ("01", "EP02_01f", 46, 59, 86, "12", "happiness"),  # valid
        ("01", "EP03_02", 10, "/", 20, "4", "disgust"),  # missing apex
        ("02", "EP04_03", 30, 35, 3, "4", "disgust"),  # offset typo (before onset)
        ("02", "EP05_04", 10, 25, 20, "1+2", "surprise"),  # apex outside onset..offset
        ("03", "EP06_05", 1, 2, 3, "14", "joy"),  # unknown emotion
        ("03", "../../etc", 1, 2, 3, "14", "disgust"),  # escapes the root
        ("x", "EP07_06", 1, 2, 3, "14", "disgust"),  # not a subject number
        ("04", "EP08_07", 5, 6, 9, "L10", "repression"),  # frames missing (deleted below)
    ]
    casme2_dataset(tmp_path, rows, frames=False)
    for subject, clip, onset, _, offset, _, _ in rows:
        if clip != "../../etc" and subject != "x" and offset >= onset:
            folder = tmp_path / "CASME2_RAW_selected" / f"sub{int(subject):02d}" / clip
            write_frames(folder, (f"img{n}.jpg" for n in range(onset, offset + 1)))
    (tmp_path / "CASME2_RAW_selected/sub04/EP08_07/img7.jpg").unlink()

    result = read_dataset(DatasetConfig(name="casme2", root=str(tmp_path)))
    assert [s.clip for s in result.samples] == ["EP02_01f"]
    got = reasons(result)
    assert len(result.rejections) == len(rows) - 1, "no row may be silently dropped"
    assert "ApexFrame is missing ('/')" in got["EP03_02"]
    assert "offset frame 3 is before onset frame 30" in got["EP04_03"]
    assert "apex frame 25 is outside onset..offset (10..20)" in got["EP05_04"]
    assert "unknown emotion 'joy'" in got["EP06_05"]
    assert "would escape the dataset root" in got["../../etc"]
    assert "is not a subject number" in got["EP07_06"]
    assert "1 of 5 frames missing" in got["EP08_07"] and "img7.jpg" in got["EP08_07"]
    by_clip = {r.clip: r for r in result.rejections}
    assert by_clip["EP03_02"].row == 3  # sheet row (header is row 1)
    assert by_clip["EP03_02"].file.endswith("CASME2-coding-20140508.xlsx")
    assert "row 3" in str(by_clip["EP03_02"])


def test_casme2_missing_apex_can_use_the_middle_frame(tmp_path: Path) -> None:
    casme2_dataset(tmp_path, [("01", "EP03_02", 10, "/", 20, "4", "disgust")])
    cfg = DatasetConfig(name="casme2", root=str(tmp_path), missing_apex="middle")
    (sample,) = read_dataset(cfg).samples
    assert sample.frame_numbers[sample.apex] == 15


def test_casme2_frames_dir_override_reads_the_cropped_release(tmp_path: Path) -> None:
    casme2_dataset(tmp_path, [("01", "EP02_01f", 1, 2, 3, "12", "happiness")], frames=False)
    write_frames(tmp_path / "Cropped/sub01/EP02_01f", ["img1.jpg", "img2.jpg", "img3.jpg"])
    cfg = DatasetConfig(name="casme2", root=str(tmp_path), frames_dir="Cropped")
    assert len(read_dataset(cfg).samples) == 1
    default = read_dataset(DatasetConfig(name="casme2", root=str(tmp_path)))
    assert "3 of 3 frames missing" in default.rejections[0].reason


def test_missing_root_and_sheet_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(DatasetConfig(name="casme2", root=str(tmp_path / "nope")))
    with pytest.raises(DatasetError, match=r"no annotation sheet matching 'CASME2-coding-\*.xlsx'"):
        read_dataset(DatasetConfig(name="casme2", root=str(tmp_path)))


def test_unreadable_sheet_is_clear(tmp_path: Path) -> None:
    (tmp_path / "CASME2-coding-broken.xlsx").write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match=r"cannot read annotation sheet .*broken.xlsx"):
        read_dataset(DatasetConfig(name="casme2", root=str(tmp_path)))


def test_missing_columns_are_named(tmp_path: Path) -> None:
    write_xlsx(
        tmp_path / "CASME2-coding-x.xlsx",
        ("Subject", "Filename", "OnsetFrame", "OffsetFrame", "Estimated Emotion"),
        [("01", "EP01", 1, 3, "happiness")],
    )
    with pytest.raises(DatasetError, match=r"missing column\(s\) action units, apexframe"):
        read_dataset(DatasetConfig(name="casme2", root=str(tmp_path)))


def test_several_matching_sheets_ask_for_one(tmp_path: Path) -> None:
    casme2_dataset(tmp_path, [("01", "EP02_01f", 1, 2, 3, "12", "happiness")])
    casme2_dataset(tmp_path / "x", [])
    (tmp_path / "x/CASME2-coding-20140508.xlsx").rename(tmp_path / "CASME2-coding-old.xlsx")
    with pytest.raises(DatasetError, match="several sheets match"):
        read_dataset(DatasetConfig(name="casme2", root=str(tmp_path)))
    cfg = DatasetConfig(name="casme2", root=str(tmp_path), sheet="CASME2-coding-20140508.xlsx")
    assert len(read_dataset(cfg).samples) == 1


# --------------------------------------------------------------------------- SAMM


def samm_dataset(root: Path, rows: list[tuple], frames: dict[str, range]) -> None:
    write_xlsx(
        root / "SAMM_Micro_FACS_Codes_v2.xlsx",
        SAMM_HEADER,
        [
            (s, c, "1", on, ap, off, 10, "Micro - 1/2", au, em, "", "")
            for s, c, on, ap, off, au, em in rows
        ],
        preamble=13,  # the real header is on sheet row 14
    )
    for clip, numbers in frames.items():
        subject = clip.split("_")[0]
        write_frames(root / subject / clip, (f"{subject}_{n:05d}.jpg" for n in numbers))


def test_samm_reads_header_on_row_14_and_its_layout(tmp_path: Path) -> None:
    samm_dataset(
        tmp_path,
        [
            (6, "006_1_2", 5562, 5588, 5605, "4+7", "Anger"),
            (6, "006_1_3", 3912, 3948, -1, "R12", "Happiness"),  # offset unknown
            (32, "032_3_1", 100, 130, 120, "L1+L2", "Contempt"),  # apex after offset (real)
            (28, "028_4_1", 100, 90, 120, "4", "Other"),  # apex before onset (real)
            (7, "007_7_1", 10, 11, 12, "1+2", "Glee"),  # unknown emotion
        ],
        {
            "006_1_2": range(5562, 5606),
            "006_1_3": range(3912, 3960),
            "032_3_1": range(100, 131),
            "028_4_1": range(90, 121),
            "007_7_1": range(10, 13),
        },
    )
    result = read_dataset(DatasetConfig(name="samm", root=str(tmp_path)))
    samples = {s.clip: s for s in result.samples}
    assert set(samples) == {"006_1_2", "006_1_3"}
    anger = samples["006_1_2"]
    assert anger.subject == "006" and anger.emotion == "anger"
    assert anger.onset_path.endswith("006/006_1_2/006_05562.jpg")
    assert anger.frame_numbers[anger.apex] == 5588
    assert anger.action_units == "4+7"
    assert samples["006_1_3"].frame_numbers[-1] == 3959  # -1 -> last frame of the folder
    assert samples["006_1_3"].action_units == "R12"
    got = reasons(result)
    assert "apex frame 130 is outside onset..offset (100..120)" in got["032_3_1"]
    assert "apex frame 90 is outside onset..offset (100..120)" in got["028_4_1"]
    assert "unknown emotion 'Glee'" in got["007_7_1"]
    assert {r.row for r in result.rejections} == {17, 18, 19}


# --------------------------------------------------------------------------- SMIC


def test_smic_reads_labels_from_folders_and_uses_the_middle_frame(tmp_path: Path) -> None:
    hs = tmp_path / "HS"
    write_frames(hs / "s1/micro/negative/s1_ne_01", (f"image{n:06d}.bmp" for n in range(100, 111)))
    write_frames(hs / "s1/micro/positive/s1_po_01", (f"image{n:06d}.bmp" for n in range(5, 9)))
    write_frames(hs / "s2/micro/surprise/s2_sur_01", (f"image{n:06d}.bmp" for n in range(1, 4)))
    write_frames(hs / "s2/micro/happy/s2_ha_01", ["image000001.bmp", "image000002.bmp"])
    write_frames(hs / "s2/micro/surprise/s2_sur_02", ["image000001.bmp"])
    (hs / "s3").mkdir()
    result = read_dataset(DatasetConfig(name="smic", root=str(tmp_path)))
    samples = {s.clip: s for s in result.samples}
    assert set(samples) == {"s1_ne_01", "s1_po_01", "s2_sur_01"}
    negative = samples["s1_ne_01"]
    assert (negative.subject, negative.emotion) == ("s1", "negative")
    assert negative.frame_numbers[negative.apex] == 105  # middle frame stands in for the apex
    assert len(negative.frames) == 11
    got = reasons(result)
    assert "emotion folder 'happy' is not one of" in got["s2_ha_01"]
    assert "1 image frame(s); need at least 2" in got["s2_sur_02"]
    assert any("no 'micro' folder" in r.reason for r in result.rejections)


def test_smic_without_subjects_is_clear(tmp_path: Path) -> None:
    (tmp_path / "HS").mkdir()
    with pytest.raises(DatasetError, match="no subject folders"):
        read_dataset(DatasetConfig(name="smic", root=str(tmp_path)))


# --------------------------------------------------------------------------- CAS(ME)^3


def test_casme3_keeps_micro_expressions_and_makes_repeated_names_unique(tmp_path: Path) -> None:
    rows = [
        ("spNO.1", "a", 10, 12, 15, "4", "negative", "Micro-expression", "disgust"),
        ("spNO.1", "a", 40, 43, 45, "12", "positive", "Micro-expression", "happy"),
        ("spNO.1", "b", 5, 6, 8, "12", "positive", "Macro-expression", "happy"),
        ("spNO.2", "c", 1, 2, 3, "1+2", "surprise", "Micro-expression", "surprise"),
        ("spNO.2", "d", 1, 9, 3, "1+2", "surprise", "Micro-expression", "surprise"),
    ]
    write_xlsx(tmp_path / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", CASME3_HEADER, rows)
    write_frames(tmp_path / "spNO.1/a/color", (f"{n}.jpg" for n in range(1, 50)))
    write_frames(tmp_path / "spNO.2/c/color", (f"{n}.jpg" for n in range(1, 4)))
    write_frames(tmp_path / "spNO.2/d/color", (f"{n}.jpg" for n in range(1, 4)))
    result = read_dataset(DatasetConfig(name="casme3", root=str(tmp_path)))
    clips = {(s.subject, s.clip): s for s in result.samples}
    assert set(clips) == {("spNO.1", "a_10"), ("spNO.1", "a_40"), ("spNO.2", "c")}
    assert clips[("spNO.1", "a_40")].emotion == "happiness"
    assert clips[("spNO.1", "a_10")].onset_path.endswith("spNO.1/a/color/10.jpg")
    assert len({s.uid for s in result.samples}) == 3
    assert [(r.clip, r.reason) for r in result.excluded] == [
        ("b", "expression type 'Macro-expression'")
    ]
    assert "apex frame 9 is outside" in reasons(result)["d"]


def test_read_datasets_combines_and_namespaces(tmp_path: Path) -> None:
    casme2_dataset(tmp_path / "c", [("01", "EP01", 1, 2, 3, "12", "happiness")])
    write_frames(
        tmp_path / "s/HS/s1/micro/positive/s1_po_01", ["image000001.bmp", "image000002.bmp"]
    )
    result = read_datasets(
        (
            DatasetConfig(name="casme2", root=str(tmp_path / "c")),
            DatasetConfig(name="smic", root=str(tmp_path / "s")),
        )
    )
    assert sorted(s.subject_id for s in result.samples) == ["casme2/sub01", "smic/s1"]
