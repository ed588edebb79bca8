"""Data-only files for what the project stores and reads back (finished units, trial
checkpoints): JSON and NumPy arrays in one ``.npz``, never pickles, so a crafted file can at
worst be refused, never run code.

:func:`save` writes a tree of dicts, lists, strings, numbers, dataclasses and arrays atomically;
:func:`load` reads it back with ``numpy.load(allow_pickle=False)`` (object arrays are refused)
and gives plain data, which the reader then parses through the typed schema
(:func:`components.parsing.parse`) like ``params.yaml``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from components.errors import ArtifactError

TREE = "tree.json"
ARRAY = "__array__"  # {"__array__": "a3"}: the array stored as entry a3


def plain(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON data, arrays moved into ``arrays`` (referenced by name). A dataclass
    with ``as_dict()`` is stored as that (the form its parser reads back)."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("object arrays cannot be stored as data")
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {ARRAY: name}
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "as_dict"):
            return plain(value.as_dict(), arrays)
        return {f.name: plain(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v, arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, arrays) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} as data")


def dumps(tree: Any) -> bytes:
    """``tree`` as the bytes of a data file."""
    arrays: dict[str, np.ndarray] = {}
    text = json.dumps(plain(tree, arrays), sort_keys=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{TREE: np.frombuffer(text.encode(), np.uint8)}, **arrays)
    return buffer.getvalue()


def loads(data: bytes, where: str) -> Any:
    """The tree in the bytes of a data file (``where`` names it in errors):
    :class:`~components.errors.ArtifactError` if it is not a data file of this kind (a pickle,
    a damaged archive, a missing array)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            entries = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        why = "it holds pickled data, which is never loaded" if "pickle" in str(exc) else exc
        raise ArtifactError(f"{where} is not a data file this project wrote ({why})") from None
    if TREE not in entries:
        raise ArtifactError(f"{where} is not a data file this project wrote (no {TREE})")
    try:
        tree = json.loads(entries.pop(TREE).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{where}: {TREE} is not valid JSON ({exc})") from None
    return _restore(tree, entries, where)


def save(path: str | Path, tree: Any) -> None:
    """Write ``tree`` to the local file ``path`` (``.npz``) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(dumps(tree))
    os.replace(temporary, path)


def load(path: str | Path) -> Any:
    """The tree stored in the local file ``path`` (see :func:`loads`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path} cannot be read ({exc.strerror})") from None
    return loads(data, str(path))


def _restore(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {ARRAY}:
            name = value[ARRAY]
            if name not in arrays:
                raise ArtifactError(f"{where}: array {name!r} is missing")
            return arrays[name]
        return {k: _restore(v, arrays, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, arrays, where) for v in value]
    return value
