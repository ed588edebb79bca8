"""Reading a clip for `mer predict`: apex spotting, the pipeline's own features, clear errors."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from components.config import DatasetConfig, PreprocessConfig, SynthesizeConfig
from components.datasets import read_dataset
from components.datasets.synthetic import write_synthetic_casme2
from components.datasets.synthetic.generator import plan_subject, render_clip, subject_look
from components.faces import crop
from components.inference import ClipInputError, read_clip, spot_apex
from components.inference.predict import clip_inputs
from components.preprocessing.extract import SampleError, detect, extract, grey, label_sample

SYNTHETIC = SynthesizeConfig(subjects=1, clips_per_class=1, frame_size=160)


def synthetic_clips(count: int, seed: int = 5) -> list[tuple]:
    """(plan, frames) of clips of subjects the pipeline's dataset does not have."""
    clips = []
    index = 30
    while len(clips) < count:
        look = subject_look(index, SYNTHETIC, seed)
        for plan in plan_subject(index, SYNTHETIC, seed):
            clips.append((plan, render_clip(plan, look, SYNTHETIC, seed, index)))
        index += 1
    return clips[:count]


def test_spot_apex_finds_the_planted_apex_despite_head_drift_and_flicker() -> None:
    cfg = PreprocessConfig()
    errors = []
    for plan, frames in synthetic_clips(6):
        _, matrix = detect(frames[0], cfg, plan.clip)
        faces = [grey(crop(f, matrix, cfg.face_size)) for f in frames]
        errors.append(spot_apex(faces) - plan.apex)
    assert max(abs(e) for e in errors) <= 3, errors


def test_spot_apex_needs_onset_apex_and_offset() -> None:
    with pytest.raises(ValueError, match="onset, offset"):
        spot_apex([np.zeros((8, 8))] * 2)
    rng = np.random.default_rng(0)
    face = rng.uniform(50, 200, size=(40, 40))
    moved = face.copy()
    moved[15:25, 15:25] += 40  # a local change at frame 2 of 4
    assert spot_apex([face, face + 1, moved, face]) == 2


def test_predict_features_are_the_records_features(tmp_path: Path) -> None:
    """The same frames with the same apex give exactly the flow and clip the records hold."""
    root = tmp_path / "casme2"
    cfg = SynthesizeConfig(root=str(root), subjects=1, clips_per_class=1, frame_size=160)
    write_synthetic_casme2(cfg, seed=2)
    sample = read_dataset(DatasetConfig(name="casme2", root=str(root))).samples[0]
    preprocess = PreprocessConfig()
    record = extract(label_sample(sample), preprocess)
    frames, names = read_clip(Path(sample.onset_path).parent)
    assert names[0] == Path(sample.onset_path).name and len(frames) == len(sample.frames)
    features, apex = clip_inputs(frames, preprocess, "clip", apex=sample.apex)
    assert apex == sample.apex
    np.testing.assert_array_equal(features.flow, record.flow)
    np.testing.assert_array_equal(features.clip, record.clip)


def test_a_video_reads_like_its_frames(tmp_path: Path) -> None:
    _, frames = synthetic_clips(1)[0]
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 160))
    for frame in frames:
        writer.write(frame)
    writer.release()
    read, names = read_clip(path)
    assert len(read) == len(frames) and names[0] == "frame 0"
    assert np.abs(read[0].astype(int) - frames[0].astype(int)).mean() < 4  # MJPG is lossy


def test_bad_clips_get_errors_that_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ClipInputError, match="does not exist"):
        read_clip(tmp_path / "missing")
    few = tmp_path / "few"
    few.mkdir()
    for k in range(2):
        cv2.imwrite(str(few / f"img{k}.jpg"), np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ClipInputError, match=r"holds 2 frame images.*at least 3"):
        read_clip(few)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for k in range(3):
        cv2.imwrite(str(corrupt / f"img{k}.jpg"), np.zeros((32, 32, 3), np.uint8))
    (corrupt / "img1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ClipInputError, match=r"img1\.jpg cannot be decoded"):
        read_clip(corrupt)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x01 not a video at all" * 100)
    with pytest.raises(ClipInputError, match=r"clip\.mp4 (cannot be opened|has no decodable)"):
        read_clip(video)


def test_a_clip_without_a_face_is_a_no_face_error() -> None:
    frames = [np.full((160, 160, 3), 120, np.uint8) for _ in range(5)]
    with pytest.raises(SampleError, match="blank-clip") as caught:
        clip_inputs(frames, PreprocessConfig(), "blank-clip")
    assert caught.value.reason == "no_face"


def test_a_model_whose_outputs_are_not_probabilities_gives_no_label() -> None:
    """A damaged member (NaN weights) or a model of another head is refused, naming the model."""
    from components.config import ModelConfig, PreprocessConfig
    from components.errors import ArtifactError
    from components.inference.predict import LoadedModel, checked_probabilities

    loaded = LoadedModel(
        None, ModelConfig(), PreprocessConfig(), "flow", ("negative", "positive", "surprise"),
        "models:/mer-attention@champion",
    )  # fmt: skip
    good = checked_probabilities(np.array([[0.2, 0.5, 0.3]], "float32"), loaded)
    np.testing.assert_allclose(good, [0.2, 0.5, 0.3], rtol=1e-6)
    for outputs, says in [
        ([[np.nan, np.nan, np.nan]], r"\(nan, nan, nan\) are not probabilities"),
        ([[0.2, 0.5, np.inf]], "are not probabilities"),
        ([[0.7, 0.7, 0.7]], "are not probabilities"),  # not summing to 1
        ([[1.5, -0.5, 0.0]], "are not probabilities"),  # outside [0, 1]
        ([[0.1, 0.2, 0.3, 0.4]], r"outputs shape \(1, 4\), not one probability for each"),
    ]:
        with pytest.raises(ArtifactError, match=says) as caught:
            checked_probabilities(np.array(outputs, "float32"), loaded)
        assert str(caught.value).startswith("models:/mer-attention@champion: ")
