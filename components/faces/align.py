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
    """Least-squares similarity (Umeyama 1991, scikit-image's estimate) mapping ``source``
    points onto ``target``; 2×3. Raises NoFaceError when the points admit none (coincident)."""
    from skimage.transform import SimilarityTransform

    from components.faces.detect import NoFaceError

    transform = SimilarityTransform.from_estimate(
        np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    )
    if not transform:
        raise NoFaceError(f"the landmarks admit no similarity transform ({transform})")
    return transform.params[:2].copy()


def alignment_matrix(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """2×3 affine from frame pixels to the aligned ``size``×``size`` crop."""
    return similarity_transform(landmarks, template_points(size, margin))


def crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Apply the alignment to one frame (the same matrix for every frame of a clip)."""
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
