"""Flow, strain, alignment and frame sampling checked against known answers."""

import cv2
import numpy as np
import pytest
import skimage.data

from components.config import TVL1Config
from components.faces import (
    alignment_matrix,
    crop,
    detect_face,
    similarity_transform,
    template_points,
)
from components.faces.detect import NoFaceError
from components.features import (
    flow_stack,
    optical_flow,
    optical_strain,
    resize_flow,
    sample_indices,
)
from components.features.stack import minmax


def textured(size: int = 128) -> np.ndarray:
    grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey[100:400, 100:400], (size, size), interpolation=cv2.INTER_AREA)


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The image content moved by (dx, dy) pixels (sub-pixel, bicubic)."""
    matrix = np.array([[1, 0, dx], [0, 1, dy]], np.float64)
    return cv2.warpAffine(
        image, matrix, image.shape[::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


@pytest.mark.parametrize(("dx", "dy"), [(1.5, -0.8), (-0.6, 0.4), (2.0, 1.0)])
def test_tvl1_recovers_a_known_shift(dx: float, dy: float) -> None:
    image = textured()
    flow = optical_flow(image, shifted(image, dx, dy), TVL1Config())
    interior = flow[16:-16, 16:-16].reshape(-1, 2)
    median = np.median(interior, axis=0)
    assert abs(median[0] - dx) < 0.1 and abs(median[1] - dy) < 0.1, median


def test_tvl1_ignores_a_brightness_change() -> None:
    image = textured()
    brighter = np.clip(image.astype(np.float32) * 1.05, 0, 255).astype(np.uint8)
    flow = optical_flow(image, brighter, TVL1Config())
    assert np.median(np.linalg.norm(flow, axis=-1)) < 0.05


def test_tvl1_rejects_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match="frame sizes differ"):
        optical_flow(textured(64), textured(32), TVL1Config())


def linear_flow(fn, size: int = 32) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    u, v = fn(xs, ys)
    return np.stack([np.broadcast_to(u, xs.shape), np.broadcast_to(v, xs.shape)], axis=-1)


def test_strain_of_a_translation_is_zero() -> None:
    assert (
        np.abs(optical_strain(linear_flow(lambda x, y: (1.3 + 0 * x, -0.7 + 0 * y)))).max() < 1e-12
    )


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda x, y: (0.02 * x, 0.0 * y), 0.02),  # stretch along x: |u_x|
        (lambda x, y: (0.03 * x, -0.04 * y), 0.05),  # sqrt(0.03² + 0.04²)
        (lambda x, y: (0.06 * y, 0.0 * x), 0.06 / np.sqrt(2)),  # simple shear: sqrt(½ s²)
        (lambda x, y: (-0.05 * y, 0.05 * x), 0.0),  # rotation has no strain
    ],
)
def test_strain_matches_analytic_values(fn, expected: float) -> None:
    np.testing.assert_allclose(optical_strain(linear_flow(fn)), expected, atol=1e-12)


def test_flow_stack_resizes_vectors_and_normalises() -> None:
    flow = linear_flow(lambda x, y: (0.1 * x, 0.0 * y + 2.0), size=112)
    small = resize_flow(flow, 28)
    assert small.shape == (28, 28, 2)
    np.testing.assert_allclose(small[..., 1], 0.5, rtol=1e-6)  # 2 px at 112 = 0.5 px at 28
    stack = flow_stack(flow, 28)
    assert stack.shape == (28, 28, 3) and stack.dtype == np.float32
    assert stack.min() >= 0 and stack.max() <= 1
    assert np.isclose(stack[..., 0].max(), 1) and np.isclose(stack[..., 0].min(), 0)
    assert (stack[..., 1] == 0).all()  # constant v


def test_robust_minmax_ignores_a_few_outliers() -> None:
    channel = np.linspace(0, 1, 10000).reshape(100, 100)
    channel[0, 0] = 1000.0
    normalised = minmax(channel)
    assert normalised[50, 50] == pytest.approx(0.5, abs=0.02)
    np.testing.assert_allclose(minmax(channel, 0)[50, 50], 0.5 / 1000, atol=1e-3)


def test_alignment_maps_known_landmarks_to_the_template() -> None:
    template = template_points(128, 0.15)
    angle, scale, shift = np.deg2rad(12), 1.7, np.array([40.0, -15.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (template @ rotation.T) * scale + shift  # the face as seen in a frame
    matrix = alignment_matrix(landmarks, 128, 0.15)
    mapped = np.c_[landmarks, np.ones(5)] @ matrix.T
    np.testing.assert_allclose(mapped, template, atol=1e-9)
    # and the crop puts image content there: dots at the landmarks land on the template
    frame = np.zeros((400, 400), np.uint8)
    for x, y in landmarks:
        cv2.circle(frame, (round(x), round(y)), 3, 255, -1)
    aligned = crop(frame, matrix, 128)
    for x, y in template:
        assert aligned[round(y), round(x)] > 100


def test_similarity_transform_is_least_squares_for_noisy_points() -> None:
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, size=(20, 2))
    target = source * 0.5 + [3, 4] + rng.normal(0, 0.01, size=(20, 2))
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], np.eye(2) * 0.5, atol=1e-3)
    np.testing.assert_allclose(matrix[:, 2], [3, 4], atol=0.05)
    with pytest.raises(NoFaceError, match="no similarity transform"):  # coincident landmarks
        similarity_transform(np.ones((5, 2)), target[:5])


def test_face_detection_on_a_real_face_and_on_nothing() -> None:
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    face = detect_face(image)
    assert face.detector == "yuface"
    x, y, w, h = face.box
    assert 150 < x + w / 2 < 260 and 60 < y + h / 2 < 180  # Eileen Collins' face
    assert (face.landmarks[:, 0] > x).all() and (face.landmarks[:, 0] < x + w).all()
    assert face.landmarks[0, 0] < face.landmarks[1, 0]  # image-left eye first
    haar = detect_face(image, "haar")
    assert haar.detector == "haar" and abs(haar.box[0] - x) < 40
    with pytest.raises(NoFaceError, match="no face found"):
        detect_face(np.full((200, 200, 3), 128, np.uint8))


def test_sample_indices_span_onset_to_offset() -> None:
    assert sample_indices(29, 8).tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    assert sample_indices(3, 5).tolist() == [0, 0, 1, 2, 2]
    with pytest.raises(ValueError):
        sample_indices(0, 4)
