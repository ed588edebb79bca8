"""Class-dependent facial action motion: smooth local displacement fields and their timing.

Each emotion moves a few facial-action regions (positions derived from the five landmarks) by a
vector in the face's own axes (x: image-left eye -> right eye; y: down, towards the mouth):

- surprise  (AU1+2, AU26): brows raise, jaw drops slightly.
- happiness (AU6+12): lip corners pull out and up, cheeks raise.
- disgust   (AU4+9+10): inner brows lower and draw together, nose wrinkles, upper lip raises.
- repression (AU14+17): lip corners tighten inwards and down, chin raises.
- anger     (AU4+7): brows lower and draw together, lower lids tighten upwards.
- contempt  (AU14, one side): one lip corner tightens and rises.
- fear      (AU1+2+4+20): brows raise and draw together, lip corners stretch sideways.
- sadness   (AU1+4+15): inner brows raise and draw together, lip corners pull down.
- blink (no class): upper lids close and open again, short (:func:`blink_profile`).

Each region moves by ``amplitude`` × its unit vector at its centre, falling off as a Gaussian
(sigma = 0.18 × interocular distance), so the motion is local and sub-2-px by default.
"""

from __future__ import annotations

import numpy as np

#: emotion -> action units as written in the sheet
ACTION_UNITS: dict[str, str] = {
    "surprise": "1+2+26",
    "happiness": "6+12",
    "disgust": "4+9+10",
    "repression": "14+17",
    "anger": "4+7",
    "contempt": "R14",
    "fear": "1+2+4+20",
    "sadness": "1+4+15",
}
SIGMA_FRACTION = 0.18


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit x (eye to eye) and y (down) axes of the face, and the interocular distance."""
    across = landmarks[1] - landmarks[0]
    interocular = float(np.linalg.norm(across))
    ex = across / interocular
    ey = np.array([-ex[1], ex[0]])
    return ex, ey, interocular


def action_regions(landmarks: np.ndarray, emotion: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(centre, unit displacement)`` in frame pixels for each region the emotion moves."""
    eye_l, eye_r, nose, mouth_l, mouth_r = landmarks
    ex, ey, d = face_axes(landmarks)
    mouth = (mouth_l + mouth_r) / 2

    def v(x: float, y: float) -> np.ndarray:
        return x * ex + y * ey

    brow_l, brow_r = eye_l - 0.45 * d * ey, eye_r - 0.45 * d * ey
    regions = {
        "surprise": [
            (brow_l, v(0, -1)),
            (brow_r, v(0, -1)),
            (mouth + 0.3 * d * ey, v(0, 0.6)),
        ],
        "happiness": [
            (mouth_l, v(-0.75, -0.65)),
            (mouth_r, v(0.75, -0.65)),
            ((eye_l + mouth_l) / 2, v(0, -0.4)),
            ((eye_r + mouth_r) / 2, v(0, -0.4)),
        ],
        "disgust": [
            (brow_l + 0.25 * d * ex, v(0.5, 0.8)),
            (brow_r - 0.25 * d * ex, v(-0.5, 0.8)),
            (nose - 0.35 * d * ey, v(0, -0.7)),
            (mouth - 0.12 * d * ey, v(0, -0.5)),
        ],
        "repression": [
            (mouth_l, v(0.45, 0.5)),
            (mouth_r, v(-0.45, 0.5)),
            (mouth + 0.5 * d * ey, v(0, -0.8)),
        ],
        "anger": [
            (brow_l + 0.2 * d * ex, v(0.45, 0.7)),
            (brow_r - 0.2 * d * ex, v(-0.45, 0.7)),
            (eye_l + 0.15 * d * ey, v(0, -0.5)),
            (eye_r + 0.15 * d * ey, v(0, -0.5)),
        ],
        "contempt": [(mouth_r, v(0.6, -0.55)), (mouth_r + 0.25 * d * ex, v(0.3, -0.3))],
        "fear": [
            (brow_l, v(0.3, -0.8)),
            (brow_r, v(-0.3, -0.8)),
            (mouth_l, v(-0.9, 0.2)),
            (mouth_r, v(0.9, 0.2)),
        ],
        "sadness": [
            (brow_l + 0.2 * d * ex, v(0.35, -0.6)),
            (brow_r - 0.2 * d * ex, v(-0.35, -0.6)),
            (mouth_l, v(-0.2, 0.8)),
            (mouth_r, v(0.2, 0.8)),
        ],
        "blink": [(eye_l - 0.08 * d * ey, v(0, 1.6)), (eye_r - 0.08 * d * ey, v(0, 1.6))],
    }
    if emotion not in regions:
        raise ValueError(f"no synthetic motion for {emotion!r}; known: {', '.join(regions)}")
    return regions[emotion]


def displacement_field(
    landmarks: np.ndarray,
    emotion: str,
    amplitude: float,
    shape: tuple[int, int],
    turns: np.ndarray | None = None,
) -> np.ndarray:
    """Forward displacement (dx, dy) in pixels at every frame position, shape (H, W, 2).
    ``turns`` (radians, one per region) rotate each region's direction: a subject's own way
    of making the expression."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sigma = SIGMA_FRACTION * face_axes(landmarks)[2]
    field = np.zeros((h, w, 2))
    for k, (centre, vector) in enumerate(action_regions(landmarks, emotion)):
        if turns is not None:
            c, s = np.cos(turns[k % len(turns)]), np.sin(turns[k % len(turns)])
            vector = np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])
        weight = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
        field += amplitude * weight[..., None] * vector
    return field


def blink_profile(n_frames: int, start: int, length: int) -> np.ndarray:
    """Lid closure per frame: a blink of ``length`` frames from ``start`` (0 elsewhere)."""
    t = (np.arange(n_frames) - start) / max(length, 1)
    return np.where((t >= 0) & (t <= 1), np.sin(np.pi * np.clip(t, 0, 1)) ** 2, 0.0)


def temporal_profile(n_frames: int, apex: int) -> np.ndarray:
    """Expression intensity per frame: 0 at onset, 1 at apex, back to 0 at offset (smoothstep)."""

    def smooth(t: np.ndarray) -> np.ndarray:
        return t * t * (3 - 2 * t)

    t = np.arange(n_frames, dtype=np.float64)
    rise = smooth(np.clip(t / max(apex, 1), 0, 1))
    fall = smooth(np.clip((n_frames - 1 - t) / max(n_frames - 1 - apex, 1), 0, 1))
    return np.where(t <= apex, rise, fall)
