"""``tf.train.Example`` message classes without importing TensorFlow.

Beam workers only need to *write* examples; importing TensorFlow for that costs each worker
~4.6 s here. These classes are built from the same message definitions as
``tensorflow/core/example/{example,feature}.proto`` (same field numbers, so the same wire
format), in a private descriptor pool so they never clash with TensorFlow's own when both are
loaded. ``tests/test_records.py`` checks the bytes decode with ``tf.data``.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _field(
    name: str,
    number: int,
    kind: int,
    label: int = _F.LABEL_OPTIONAL,
    type_name: str = "",
    packed: bool = False,
):
    field = _F(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
    if packed:
        field.options.packed = True
    return field


def _build() -> dict[str, type]:
    file = descriptor_pb2.FileDescriptorProto(
        name="mer_attention/example.proto", package="tensorflow", syntax="proto3"
    )
    repeated = _F.LABEL_REPEATED
    file.message_type.add(name="BytesList").field.append(
        _field("value", 1, _F.TYPE_BYTES, repeated)
    )
    file.message_type.add(name="FloatList").field.append(
        _field("value", 1, _F.TYPE_FLOAT, repeated, packed=True)
    )
    file.message_type.add(name="Int64List").field.append(
        _field("value", 1, _F.TYPE_INT64, repeated, packed=True)
    )
    feature = file.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, type_name) in enumerate(
        (
            ("bytes_list", ".tensorflow.BytesList"),
            ("float_list", ".tensorflow.FloatList"),
            ("int64_list", ".tensorflow.Int64List"),
        ),
        start=1,
    ):
        entry = _field(name, number, _F.TYPE_MESSAGE, type_name=type_name)
        entry.oneof_index = 0
        feature.field.append(entry)
    features = file.message_type.add(name="Features")
    map_entry = features.nested_type.add(name="FeatureEntry")
    map_entry.options.map_entry = True
    map_entry.field.append(_field("key", 1, _F.TYPE_STRING))
    map_entry.field.append(_field("value", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.Feature"))
    features.field.append(
        _field("feature", 1, _F.TYPE_MESSAGE, repeated, ".tensorflow.Features.FeatureEntry")
    )
    file.message_type.add(name="Example").field.append(
        _field("features", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.Features")
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    names = ("BytesList", "FloatList", "Int64List", "Feature", "Features", "Example")
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.{n}"))
        for n in names
    }


_MESSAGES = _build()
BytesList = _MESSAGES["BytesList"]
FloatList = _MESSAGES["FloatList"]
Int64List = _MESSAGES["Int64List"]
Feature = _MESSAGES["Feature"]
Features = _MESSAGES["Features"]
Example = _MESSAGES["Example"]
