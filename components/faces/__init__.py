"""Face detection, landmark alignment and cropping (offline models only)."""

from components.faces.align import alignment_matrix, crop, similarity_transform, template_points
from components.faces.detect import Face, NoFaceError, detect_face

__all__ = [
    "Face",
    "NoFaceError",
    "alignment_matrix",
    "crop",
    "detect_face",
    "similarity_transform",
    "template_points",
]
