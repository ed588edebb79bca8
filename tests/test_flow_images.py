"""Released pre-computed flow as a dataset: the reader, the quarantine, exact decoding, and
every stage (`dvc repro`, leaving one dataset out) on a release-layout fixture."""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from components.config import DatasetConfig
from components.datasets import read_dataset
from tests.builders import flow_images_release, mer, merged, output_params

ROOT = Path(__file__).resolve().parents[1]


def append_rows(root: Path, rows: list[tuple]) -> None:
    with open(root / "composite_labels.csv", "a", newline="") as handle:
        csv.writer(handle).writerows(rows)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """The fixture, plus one bad row or image of each kind."""
    root = tmp_path_factory.mktemp("release") / "megc2019_flow"
    records = flow_images_release(root)
    first = records[0]
    append_rows(
        root,
        [
            ("casme2", first.subject, first.clip_id, first.label, "x"),  # duplicate row
            ("casme2", "sub01", "EP99", 3, "x"),  # unknown label
            ("mmew", "s1", "EP01", 0, "x"),  # unknown dataset
            ("samm", "sub02", "missing_clip", 1, "x"),  # no image
            ("smic", "sub03", "grey", 2, "x"),  # one channel
            ("smic", "sub03", "cut", 2, "x"),  # truncated PNG
            ("casme2", "sub01", "../../escape", 0, "x"),  # escapes the root
        ],
    )
    cv2.imwrite(str(root / "sub03_grey .png"), np.zeros((28, 28), np.uint8))
    cv2.imwrite(str(root / "sub03_cut .png"), np.zeros((28, 28, 3), np.uint8))
    cut = root / "sub03_cut .png"
    cut.write_bytes(cut.read_bytes()[:-20])
    return root


def test_reader_finds_every_good_row_and_quarantines_the_bad_ones(release: Path) -> None:
    result = read_dataset(DatasetConfig(name="flow_images", root=str(release)))
    codes = sorted(r.code for r in result.rejections)
    assert codes == [
        "duplicate_row",
        "invalid_annotation",
        "missing_image",
        "unknown_dataset",
        "unknown_label",
    ]
    for r in result.rejections:  # file and CSV row of each
        assert r.file.endswith("composite_labels.csv") and r.row >= 2
    assert len(result.samples) == 36 + 2  # the grey and the cut image are read in preprocess
    assert {s.dataset for s in result.samples} == {"casme2", "samm", "smic"}
    assert {s.subject_id for s in result.samples if s.dataset == "samm"} == {
        "samm/sub02",
        "samm/sub05",
    }


@pytest.fixture(scope="module")
def project(release: Path, tmp_path_factory) -> Path:
    """`mer preprocess` of the release (Beam, precomputed path)."""
    folder = tmp_path_factory.mktemp("project")
    params = merged(
        output_params(folder, experiment="flow"),
        {
            "datasets": [{"name": "flow_images", "root": str(release)}],
            "preprocess": {
                "records_dir": str(folder / "records"),
                "report": str(folder / "reports/preprocess.json"),
                "num_shards": 2,
                "max_quarantine_fraction": 0.3,
            },
        },
    )
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    done = mer(folder, "preprocess")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def test_preprocess_quarantines_bad_images_with_file_row_and_reason(project: Path) -> None:
    quarantine = pd.read_csv(project / "records/quarantine.csv")
    reasons = dict(zip(quarantine.uid.str.split("/").str[-1], quarantine.reason, strict=True))
    assert reasons["grey"] == "wrong_channels" and reasons["cut"] == "corrupt_frame"
    grey = quarantine[quarantine.uid.str.endswith("grey")].iloc[0]
    assert (
        grey.file.endswith("sub03_grey .png") and "row" in grey.row and "1 channel" in grey.message
    )
    assert set(quarantine.reason) == {
        "duplicate_row",
        "invalid_annotation",
        "missing_image",
        "unknown_dataset",
        "unknown_label",
        "wrong_channels",
        "corrupt_frame",
    }
    manifest = pd.read_parquet(project / "records/manifest.parquet")
    assert len(manifest) == 36 and (manifest.detector == "precomputed").all()
    assert manifest.subject_id.nunique() == 6  # namespaced: LOSO over the composite's subjects


def test_records_decode_to_exactly_the_image_values(release: Path, project: Path) -> None:
    from components.records.store import load_records

    records = load_records(project / "records")
    for row, entry in records.manifest.iterrows():
        image = cv2.imread(
            str(release / f"{entry.subject}_{entry.clip_id} .png"), cv2.IMREAD_UNCHANGED
        )
        expected = image[..., ::-1].astype(np.float32) / 255.0  # R, G, B = u, v, strain
        np.testing.assert_array_equal(records.flow[row], expected)


def test_channel_order_and_size_are_configurable(release: Path, tmp_path: Path) -> None:
    from components.config import PreprocessConfig
    from components.datasets.labels import COMPOSITE_CLASSES  # noqa: F401
    from components.preprocessing.extract import extract, label_sample

    sample = read_dataset(
        DatasetConfig(name="flow_images", root=str(release), channels="vus")
    ).samples[0]
    record = extract(label_sample(sample), PreprocessConfig(flow_size=28))
    image = cv2.imread(sample.frames[0], cv2.IMREAD_UNCHANGED)[..., ::-1] / 255.0
    np.testing.assert_array_equal(record.flow[..., 0], image[..., 1].astype(np.float32))  # u was G
    np.testing.assert_array_equal(record.flow[..., 1], image[..., 0].astype(np.float32))
    small = extract(label_sample(sample), PreprocessConfig(flow_size=14))
    assert small.flow.shape == (14, 14, 3) and record.detector == "precomputed"


def test_inspect_summarises_every_dataset_of_the_release(release: Path, project: Path) -> None:
    done = mer(project, "inspect")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "38 samples from 6 subjects" in out
    assert "samm: 12 samples, 2 subjects; negative 4, positive 4, surprise 4" in out
    assert (
        "quarantined: 5 (duplicate_row 1, invalid_annotation 1, missing_image 1, unknown_dataset 1, unknown_label 1)"
        in out
    )


def other_kernel_set() -> dict[str, str]:
    """The environment of TensorFlow's other CPU kernel set than this process runs (Eigen where
    it runs oneDNN, oneDNN where it runs Eigen)."""
    from components.models.fold_conv import onednn_enabled

    return {"TF_ENABLE_ONEDNN_OPTS": "0" if onednn_enabled() else "1"}


@pytest.mark.slow
def test_dvc_repro_runs_every_stage_on_released_features_only(
    release: Path, tmp_path: Path
) -> None:
    """Every stage on the release alone, leaving one dataset out: compare and evaluate report
    each dataset, evaluate their mean, and draw attention over the flow (no faces given). Under
    the CPU kernel set this process does not run, so every `make test` reproduces every stage
    on both (tests/test_end_to_end.py: this one's; on an AVX-512 CPU TensorFlow's default is
    oneDNN, without AVX-512 Eigen, which has no gradient for grouped convolutions)."""
    from tests.test_end_to_end import fresh_copy, run, set_params

    kernels = other_kernel_set()
    on = "on" if kernels["TF_ENABLE_ONEDNN_OPTS"] == "1" else "off"

    repo = fresh_copy(tmp_path / "clone")
    set_params(
        repo,
        {
            "datasets": [{"name": "flow_images", "root": str(release)}],
            "preprocess.max_quarantine_fraction": 0.3,
            "synthesize.subjects": 2,
            "synthesize.frame_size": 128,
            "synthesize.frames_min": 10,
            "synthesize.frames_max": 12,
            "tune.space.attention": ["none", "spatial"],
            "tune.space.placement": [["fused"]],
            "tune.space.epochs": [1],
            "tune.grace_period": 1,
            "evaluate.bootstrap": 200,
            "evaluate.protocol": "lodo",
            # wiring, not accuracy: one epoch and a two-model compare (the whole space at 60
            # epochs took most of this test's time; the compare stage itself is tested elsewhere)
            "train.epochs": 1,
            "train.min_epochs": 1,
            "compare.space.attention": ["none", "spatial"],
            "compare.space.placement": [["fused"]],
            "compare.seeds": 1,
            "evaluate.seeds": 1,
            "evaluate.min_units": 1,  # as tests/test_end_to_end.py's SMALL
        },
    )
    assert f"oneDNN {on};" in run(repo, "mer", "--version", env=kernels)
    run(repo, "dvc", "repro", env=kernels)
    comparison = json.loads((repo / "reports/compare/comparison.json").read_text())
    assert [row["model"] for row in comparison["rows"]] == [
        "ststnet/none@-",
        "ststnet/spatial@fused",
    ]
    registration = json.loads((repo / "reports/register/registration.json").read_text())
    assert registration["version"] == 1
    manifest = pd.read_parquet(repo / "data/records/manifest.parquet")
    assert (manifest.detector == "precomputed").all() and len(manifest) == 36
    assert set(comparison["rows"][1]["uf1_per_dataset"]) == {"casme2", "samm", "smic"}
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["composite"]["samples"] == 36  # each dataset's clips, held out once
    assert {"casme2", "samm", "smic", "dataset_mean"} <= set(metrics)
    mean = sum(metrics[d]["uf1"] for d in ("casme2", "samm", "smic")) / 3
    assert metrics["dataset_mean"]["uf1"] == pytest.approx(mean)
    details = json.loads((repo / "reports/evaluation.json").read_text())
    seeds = len(details["seeds"])  # a fold per dataset and seed
    assert sorted(f["fold"] for f in details["folds"]) == sorted(["casme2", "samm", "smic"] * seeds)
    for fold in details["folds"]:  # trained on the other datasets, validated on them too
        assert all(s.startswith(fold["fold"] + "/") for s in fold["test"])
        assert not any(s.startswith(fold["fold"] + "/") for s in fold["validation"])
    figure = repo / "reports/figures/attention_maps.png"
    assert figure.stat().st_size > 5000  # drawn over the flow magnitude (no faces given)
    card = (repo / "reports/register/model_card.md").read_text()
    assert "flow_images" in card
