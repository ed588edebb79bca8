"""The embedded synthetic dataset: read back by the real CASME II reader, and its motion is real."""

import hashlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from components.config import DatasetConfig, SynthesizeConfig
from components.datasets import read_dataset
from components.datasets.labels import composite_label
from components.datasets.synthetic import write_synthetic_casme2
from components.datasets.synthetic.generator import subject_look
from components.datasets.synthetic.motion import (
    SIGMA_FRACTION,
    action_regions,
    face_axes,
    temporal_profile,
)

SEED = 3


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[SynthesizeConfig, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    cfg = SynthesizeConfig(root=str(root / "casme2"), subjects=4, clips_per_class=2, frame_size=192)
    write_synthetic_casme2(cfg, SEED)
    return cfg, Path(cfg.root)


def test_read_back_by_the_casme2_reader(synthetic) -> None:
    cfg, root = synthetic
    result = read_dataset(DatasetConfig(name="casme2", root=str(root)))
    assert result.rejections == [] and result.excluded == []
    assert len(result.samples) == cfg.subjects * cfg.clips_per_class * 3
    assert {s.subject for s in result.samples} == {"sub01", "sub02", "sub03", "sub04"}
    composite = Counter(composite_label("casme2", s.emotion) for s in result.samples)
    assert composite == {0: 8, 1: 8, 2: 8}
    assert {s.emotion for s in result.samples} == {"disgust", "repression", "happiness", "surprise"}
    for sample in result.samples:
        assert cfg.frames_min <= len(sample.frames) <= cfg.frames_max
        assert 0 < sample.apex < len(sample.frames) - 1
        image = cv2.imread(sample.apex_path)
        assert image.shape == (cfg.frame_size, cfg.frame_size, 3)


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_params_give_byte_identical_output(synthetic, tmp_path: Path) -> None:
    cfg, root = synthetic
    again = SynthesizeConfig(**{**cfg.__dict__, "root": str(tmp_path / "again")})
    write_synthetic_casme2(again, SEED)
    assert tree_digest(Path(again.root)) == tree_digest(root)
    other = SynthesizeConfig(**{**cfg.__dict__, "root": str(tmp_path / "other"), "subjects": 1})
    write_synthetic_casme2(other, SEED + 1)
    assert tree_digest(Path(other.root)) != tree_digest(root)


def measured_flow(onset_path: str, apex_path: str) -> np.ndarray:
    """TV-L1 onset -> apex after gain normalisation, global (head) motion removed."""
    onset = cv2.imread(onset_path, cv2.IMREAD_GRAYSCALE).astype(np.float32)
    apex = cv2.imread(apex_path, cv2.IMREAD_GRAYSCALE).astype(np.float32)
    apex *= onset.mean() / apex.mean()  # undo the brightness flicker
    flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(
        onset.astype(np.uint8), np.clip(apex, 0, 255).astype(np.uint8), None
    )
    return flow - np.median(flow.reshape(-1, 2), axis=0)


@pytest.mark.slow
def test_class_motion_is_in_the_action_regions_and_nowhere_else(synthetic) -> None:
    cfg, root = synthetic
    samples = read_dataset(DatasetConfig(name="casme2", root=str(root))).samples
    size = cfg.frame_size
    ys, xs = np.mgrid[0:size, 0:size]
    for sample in samples:
        look = subject_look(int(sample.subject[3:]) - 1, cfg, SEED)
        flow = measured_flow(sample.onset_path, sample.apex_path)
        magnitude = np.linalg.norm(flow, axis=2)
        _, _, interocular = face_axes(look.landmarks)
        sigma = SIGMA_FRACTION * interocular
        regions = action_regions(look.landmarks, sample.emotion)
        near = np.zeros((size, size), bool)
        far = (
            (xs - look.landmarks[:, 0].mean()) ** 2 + (ys - look.landmarks[:, 1].mean()) ** 2
        ) < (1.2 * interocular) ** 2  # on the face ...
        for centre, _ in regions:
            distance2 = (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2
            near |= distance2 < (0.7 * sigma) ** 2
            far &= distance2 > (3 * sigma) ** 2  # ... but away from every moving region
        where = f"{sample.uid} ({sample.emotion})"
        assert np.median(magnitude[near]) > 0.4, f"{where}: no motion in the action regions"
        assert np.median(magnitude[far]) < 0.2, f"{where}: motion outside the action regions"
        assert np.median(magnitude[near]) > 4 * np.median(magnitude[far]), where
        # the strongest region moves the planted way
        centre, vector = max(regions, key=lambda r: np.linalg.norm(r[1]))
        mask = (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 < (0.7 * sigma) ** 2
        mean = flow[mask].mean(axis=0)
        cosine = mean @ vector / (np.linalg.norm(mean) * np.linalg.norm(vector))
        assert cosine > 0.9, f"{where}: measured direction {mean} vs planted {vector}"


def test_motion_classes_differ() -> None:
    landmarks = np.array([[70, 80], [120, 80], [95, 110], [75, 135], [115, 135]], float)
    centres = {
        emotion: np.array([c for c, _ in action_regions(landmarks, emotion)])
        for emotion in ("surprise", "happiness", "disgust", "repression")
    }
    # surprise moves the brows (above the eyes); happiness the mouth corners
    assert (centres["surprise"][:2, 1] < 80).all()
    assert np.allclose(centres["happiness"][:2], landmarks[3:])
    with pytest.raises(ValueError, match="no synthetic motion for 'others'"):
        action_regions(landmarks, "others")


def test_temporal_profile_rises_to_apex_and_returns() -> None:
    profile = temporal_profile(21, 8)
    assert profile[0] == 0 and profile[8] == 1 and profile[-1] == 0
    assert (np.diff(profile[:9]) > 0).all() and (np.diff(profile[8:]) < 0).all()


def test_the_development_set_has_the_composites_shape() -> None:
    """68 subjects, 442 clips, 250/109/83, CASME II 145 / SAMM 133 / SMIC 164, the real subject
    and clip ids; SAMM's negative spans its five emotions, mostly anger; the same plan for the
    same seed."""
    from components.datasets.synthetic.dev import composite_rows, plan_clips

    planned = plan_clips(42)
    clips = [c for cs in planned.values() for c in cs]
    assert len(planned) == 68 and len(clips) == 442
    assert Counter(c.label for c in clips) == {0: 250, 1: 109, 2: 83}
    assert Counter(c.dataset for c in clips) == {"casme2": 145, "samm": 133, "smic": 164}
    assert sorted((c.dataset, c.plan.subject, c.plan.clip) for c in clips) == sorted(
        (d, s, c) for d, s, c, _ in composite_rows()
    )
    samm_negative = Counter(c.plan.emotion for c in clips if c.dataset == "samm" and c.label == 0)
    assert set(samm_negative) <= {"anger", "contempt", "disgust", "fear", "sadness"}
    assert samm_negative.most_common(1)[0][0] == "anger"
    assert 0.1 < np.mean([c.secondary is not None for c in clips]) < 0.4  # mixed clips
    assert 0.15 < np.mean([c.blink is not None for c in clips]) < 0.45  # blinks
    assert plan_clips(42) == planned and plan_clips(43) != planned


def test_the_development_set_is_read_by_the_real_readers(tmp_path: Path) -> None:
    """Three sub-datasets in their real layouts: CASME II's sheet and folders, SAMM's FACS sheet
    (header on row 14) and ``006/006_1_2/006_NNNNN.jpg``, SMIC-HS's ``HS/s01/micro/<class>/``
    (no apex: the middle frame stands in); each at its own resolution, SAMM in grey."""
    from components.datasets import read_datasets
    from components.datasets.synthetic.dev import PROFILES, composite_rows, write_development_set

    chosen = {("casme2", "sub01"), ("samm", "6"), ("smic", "s01")}
    write_development_set(42, tmp_path, subjects=chosen)
    configs = tuple(DatasetConfig(d, str(tmp_path / PROFILES[d].folder)) for d in PROFILES)
    result = read_datasets(configs)
    assert not result.rejections
    expected = {
        (d, s if d != "samm" else f"{int(s):03d}", c): label
        for d, s, c, label in composite_rows()
        if (d, s) in chosen
    }
    got = {
        (s.dataset, s.subject, s.clip): composite_label(s.dataset, s.emotion)
        for s in result.samples
    }
    assert got == expected
    for sample in result.samples:
        frame = cv2.imread(sample.apex_path)
        assert frame.shape[:2] == (PROFILES[sample.dataset].frame_size,) * 2
        if sample.dataset == "samm":
            assert np.array_equal(frame[..., 0], frame[..., 1])  # greyscale
        if sample.dataset == "smic":
            assert sample.apex == (len(sample.frames) - 1) // 2
