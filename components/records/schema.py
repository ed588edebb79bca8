"""The TFRecord schema: the one place that knows how a sample is stored.

:data:`FIELDS` lists every feature with its kind and shape. The writer (:func:`encode`, used by
Beam workers, TensorFlow-free) and the ``tf.data`` reader (:func:`parse`) are both driven by it,
so they cannot drift apart. Arrays are stored as raw little-endian bytes with their shapes:
``flow`` float32 (S, S, 3: u, v, strain in [0, 1]); ``clip`` uint8 (T, S, S, 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from components.records import proto

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Field:
    """One feature: ``bytes``/``int64``/``float``; ``size`` values, or None for variable length."""

    kind: Literal["bytes", "int64", "float"]
    size: int | None = 1


TEXT = ("uid", "dataset", "subject", "subject_id", "clip_id", "emotion", "detector")
FIELDS: dict[str, Field] = {
    **{name: Field("bytes") for name in TEXT},
    "label": Field("int64"),
    "native_label": Field("int64"),
    "schema_version": Field("int64"),
    "frames": Field("int64", 3),
    "face_box": Field("int64", 4),
    "flow": Field("bytes"),
    "flow_shape": Field("int64", 3),
    "clip": Field("bytes"),
    "clip_shape": Field("int64", 4),
    "clip_frames": Field("int64", None),
    "alignment": Field("float", 6),
}


@dataclass
class MerRecord:
    """One preprocessed sample. ``frames`` = (onset, apex, offset) frame numbers; ``clip_frames``
    the frame numbers resampled into ``clip``; ``native_label`` is -1 when the dataset's native
    task excludes the emotion."""

    uid: str
    dataset: str
    subject: str
    subject_id: str
    clip_id: str
    emotion: str
    label: int
    native_label: int
    frames: tuple[int, int, int]
    clip_frames: tuple[int, ...]
    face_box: tuple[int, int, int, int]
    alignment: np.ndarray
    detector: str
    flow: np.ndarray
    clip: np.ndarray
    extra: dict = field(default_factory=dict)  # manifest-only values (e.g. flow statistics)


def _values(record: MerRecord) -> dict[str, Any]:
    flow = np.ascontiguousarray(record.flow, dtype="<f4")
    clip = np.ascontiguousarray(record.clip, dtype=np.uint8)
    if flow.ndim != 3 or clip.ndim != 4:
        raise ValueError(
            f"flow must be (S, S, 3) and clip (T, S, S, 1): {flow.shape}, {clip.shape}"
        )
    return {
        **{name: [str(getattr(record, name)).encode()] for name in TEXT},
        "label": [record.label],
        "native_label": [record.native_label],
        "schema_version": [SCHEMA_VERSION],
        "frames": record.frames,
        "face_box": record.face_box,
        "flow": [flow.tobytes()],
        "flow_shape": flow.shape,
        "clip": [clip.tobytes()],
        "clip_shape": clip.shape,
        "clip_frames": record.clip_frames,
        "alignment": np.asarray(record.alignment, np.float32).ravel().tolist(),
    }


def encode(record: MerRecord) -> bytes:
    """Serialise a record as a ``tf.train.Example`` (deterministic bytes, no timestamps)."""
    example = proto.Example()
    for name, values in _values(record).items():
        spec = FIELDS[name]
        if spec.size is not None and len(values) != spec.size:
            raise ValueError(f"field {name!r} needs {spec.size} values, got {len(values)}")
        feature = example.features.feature[name]
        if spec.kind == "bytes":
            feature.bytes_list.value.extend(values)
        elif spec.kind == "int64":
            feature.int64_list.value.extend(int(v) for v in values)
        else:
            feature.float_list.value.extend(float(v) for v in values)
    return example.SerializeToString(deterministic=True)


def decode(serialized: bytes) -> MerRecord:
    """Python-side decoding of one example (tools and tests; TensorFlow-free)."""
    features = proto.Example.FromString(serialized).features.feature

    def ints(name: str) -> list[int]:
        return list(features[name].int64_list.value)

    def text(name: str) -> str:
        return features[name].bytes_list.value[0].decode()

    return MerRecord(
        **{name: text(name) for name in TEXT},
        label=ints("label")[0],
        native_label=ints("native_label")[0],
        frames=tuple(ints("frames")),
        clip_frames=tuple(ints("clip_frames")),
        face_box=tuple(ints("face_box")),
        alignment=np.array(features["alignment"].float_list.value, np.float32),
        flow=np.frombuffer(features["flow"].bytes_list.value[0], "<f4").reshape(ints("flow_shape")),
        clip=np.frombuffer(features["clip"].bytes_list.value[0], np.uint8).reshape(
            ints("clip_shape")
        ),
    )


def feature_spec() -> dict:
    """:data:`FIELDS` as a ``tf.io.parse_single_example`` spec."""
    import tensorflow as tf

    dtypes = {"bytes": tf.string, "int64": tf.int64, "float": tf.float32}
    return {
        name: tf.io.VarLenFeature(dtypes[f.kind])
        if f.size is None
        else tf.io.FixedLenFeature(
            [] if (f.kind == "bytes" or name in SCALARS) else [f.size], dtypes[f.kind]
        )
        for name, f in FIELDS.items()
    }


SCALARS = ("label", "native_label", "schema_version")


def model_input(kind: str, flow: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """One sample's model input as :func:`parse` produces it: the flow stack (``kind`` "flow")
    or the clip scaled to [0, 1] (``kind`` "clip")."""
    return flow.astype(np.float32) if kind == "flow" else clip.astype(np.float32) / 255.0


def parse(serialized):
    """``tf.data`` parser: one serialised example → tensors (flow float32, clip float32 in [0, 1],
    labels as scalars)."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, feature_spec())
    parsed["flow"] = tf.reshape(tf.io.decode_raw(parsed["flow"], tf.float32), parsed["flow_shape"])
    clip = tf.reshape(tf.io.decode_raw(parsed["clip"], tf.uint8), parsed["clip_shape"])
    parsed["clip"] = tf.cast(clip, tf.float32) / 255.0
    for name, f in FIELDS.items():
        if f.size is None:
            parsed[name] = tf.sparse.to_dense(parsed[name])
    return parsed
