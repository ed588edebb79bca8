"""Reading frame images with integrity checks: a frame is used only if it is complete.

OpenCV decodes a truncated or bit-rotted JPEG without an error: libjpeg fills what it cannot
decode with grey and only prints "Premature end of JPEG file" or "Corrupt JPEG data: ..." on
the process's stderr. So the file is checked first (a JPEG must end with its end-of-image
marker, a PNG with its ``IEND`` chunk, a BMP must be as long as its header says; an empty file
is unreadable), and what the decoder writes to stderr while decoding is captured: any libjpeg
or libpng complaint makes the frame ``corrupt_frame``. Frames of one clip must all have the
onset frame's size.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from components.quiet import native_stderr_captured


class FrameError(Exception):
    """A frame that cannot be used; ``reason`` is ``unreadable_frame`` or ``corrupt_frame``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
PNG_START = b"\x89PNG\r\n\x1a\n"


def truncation(data: bytes) -> str | None:
    """Why the encoded image ``data`` is incomplete, or None if its format says it is whole."""
    if data.startswith(JPEG_START):
        # 0xFF inside entropy-coded data is stuffed (FF00), so FFD9 near the end is the marker
        if not data.rstrip(b"\x00\r\n ").endswith(JPEG_END):
            return "the JPEG has no end-of-image marker (the file is truncated)"
    elif data.startswith(PNG_START):
        if len(data) < 20 or data[-12:-4] != b"\x00\x00\x00\x00IEND":
            return "the PNG has no IEND chunk (the file is truncated)"
    elif data.startswith(b"BM") and len(data) >= 6:
        (declared,) = struct.unpack("<I", data[2:6])
        if declared > len(data):
            return f"the BMP header declares {declared} bytes but the file has {len(data)}"
    return None


def read_image_bytes(path: str | Path) -> bytes:
    """The bytes of a complete image file; :class:`FrameError` if missing, empty or truncated."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FrameError("unreadable_frame", f"frame {path} cannot be read: {exc}") from exc
    if not data:
        raise FrameError("unreadable_frame", f"frame {path} is empty (0 bytes)")
    problem = truncation(data)
    if problem:
        raise FrameError("corrupt_frame", f"frame {path} is corrupt: {problem}")
    return data


#: what libjpeg and libpng print when they decode damaged data instead of failing
DECODER_WARNINGS = (
    "corrupt jpeg data",
    "premature end of jpeg",
    "libpng",
    "invalid",
    "bad huffman",
)


def decoder_warning(text: str) -> str | None:
    """The first line of a decoder's stderr output that reports damaged data, if any."""
    for line in text.splitlines():
        if any(marker in line.casefold() for marker in DECODER_WARNINGS):
            return line.strip()
    return None


def decode_image(data: bytes, path: str | Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode the bytes of a complete image file; :class:`FrameError` naming ``path`` if the
    decoder fails or reports damaged data on stderr."""
    with native_stderr_captured() as complaints:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        raise FrameError("unreadable_frame", f"frame {path} cannot be decoded as an image")
    if warning := decoder_warning(complaints()):
        raise FrameError("corrupt_frame", f"frame {path} is corrupt: the decoder says {warning!r}")
    return image


def read_image(path: str | Path, expected_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A frame as BGR uint8, decoded from a complete file; raises :class:`FrameError` naming
    the file for a missing, empty, unreadable, truncated, damaged or (with ``expected_shape``)
    differently sized frame."""
    image = decode_image(read_image_bytes(path), path)
    if expected_shape is not None and image.shape != tuple(expected_shape):
        raise FrameError(
            "corrupt_frame",
            f"frame {path} is {image.shape[1]}x{image.shape[0]}, the clip's other frames "
            f"{expected_shape[1]}x{expected_shape[0]}: a clip has one frame size",
        )
    return image
