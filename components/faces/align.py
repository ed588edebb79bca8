"""Alignment: a similarity transform (rotation, uniform scale, translation) that maps a face's
five landmarks onto a fixed template, and the crop it defines."""

from __future__ import annotations

import cv2
import numpy as np

#: The 5-point template of the common 112×112 face crop (ArcFace), as fractions of the side.
TEMPLATE = (
    np.array(
        [
            [38.2946, 51.6963],
            [73.5318, 51.5014],
            [56.0252, 71.7366],
            [41.5493, 92.3655],
            [70.7299, 92.2041],
        ]
    )
    / 112.0
)


def template_points(size: int, margin: float) -> np.ndarray:
    """Template landmarks in a ``size``×``size`` crop, shrunk towards the centre by ``margin``
    (0 = the template as is; 0.2 leaves 20 % more context around the face)."""
    centre = np.array([0.5, 0.5])
    return (centre + (TEMPLATE - centre) * (1 - margin)) * size


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991) mapping ``source`` points onto ``target``; 2×3."""
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    covariance = t.T @ s / len(source)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / s.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_t - scale * rotation @ mu_s
    return matrix


def alignment_matrix(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """2×3 affine from frame pixels to the aligned ``size``×``size`` crop."""
    return similarity_transform(landmarks, template_points(size, margin))


def crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Apply the alignment to one frame (the same matrix for every frame of a clip)."""
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
