"""The record schema: what the writer encodes is what tf.data decodes."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.records import FIELDS, MerRecord, decode, encode, parse, shard_paths, write_shard
from components.records.tfrecord import read_records, write_records


def make_record(index: int) -> MerRecord:
    rng = np.random.default_rng(index)
    return MerRecord(
        uid=f"casme2/sub0{index}/EP0{index}_01",
        dataset="casme2",
        subject=f"sub0{index}",
        subject_id=f"casme2/sub0{index}",
        clip_id=f"EP0{index}_01",
        emotion="repression",
        label=0,
        native_label=3,
        frames=(10, 14, 30),
        clip_frames=(10, 13, 16, 20, 23, 26, 28, 30),
        face_box=(12, 20, 150, 180),
        alignment=rng.normal(size=6).astype(np.float32),
        detector="yuface",
        flow=rng.uniform(size=(28, 28, 3)).astype(np.float32),
        clip=rng.integers(0, 256, size=(8, 16, 16, 1), dtype=np.uint8),
    )


def test_encode_write_read_with_tf_data_gives_the_same_arrays(tmp_path: Path) -> None:
    records = [make_record(i) for i in range(1, 4)]
    path = str(tmp_path / "records-00000-of-00001.tfrecord.gz")
    assert write_shard(path, (encode(r) for r in records)) == 3
    assert shard_paths(tmp_path) == [path]
    dataset = tf.data.TFRecordDataset([path], compression_type="GZIP").map(parse)
    for record, parsed in zip(records, dataset, strict=True):
        np.testing.assert_array_equal(parsed["flow"].numpy(), record.flow)
        np.testing.assert_allclose(parsed["clip"].numpy(), record.clip / 255.0, rtol=1e-6)
        assert parsed["clip"].dtype == tf.float32
        assert parsed["uid"].numpy().decode() == record.uid
        assert parsed["subject_id"].numpy().decode() == record.subject_id
        assert int(parsed["label"]) == 0 and int(parsed["native_label"]) == 3
        assert tuple(parsed["frames"].numpy()) == record.frames
        assert tuple(parsed["clip_frames"].numpy()) == record.clip_frames
        assert tuple(parsed["face_box"].numpy()) == record.face_box
        np.testing.assert_array_equal(parsed["alignment"].numpy(), record.alignment)


def test_python_decode_round_trip_and_determinism() -> None:
    record = make_record(5)
    serialized = encode(record)
    assert encode(record) == serialized  # deterministic bytes
    back = decode(serialized)
    for name in (
        "uid",
        "dataset",
        "subject",
        "emotion",
        "label",
        "frames",
        "clip_frames",
        "face_box",
        "detector",
    ):
        assert getattr(back, name) == getattr(record, name), name
    np.testing.assert_array_equal(back.flow, record.flow)
    np.testing.assert_array_equal(back.clip, record.clip)


def test_tf_free_example_is_what_tensorflow_writes() -> None:
    """Our protobuf classes produce the bytes TensorFlow's own tf.train.Example produces."""
    record = make_record(2)
    serialized = encode(record)
    ours = tf.train.Example.FromString(serialized)
    assert ours.SerializeToString(deterministic=True) == serialized
    assert set(ours.features.feature) == set(FIELDS)
    assert list(ours.features.feature["frames"].int64_list.value) == [10, 14, 30]


def test_tfrecord_framing_is_checked(tmp_path: Path) -> None:
    path = str(tmp_path / "records-00000-of-00001.tfrecord.gz")
    payloads = [b"first", b"", b"x" * 1000]
    write_records(path, payloads)
    assert list(read_records(path)) == payloads
    assert [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP")] == payloads
    raw = gzip.decompress(Path(path).read_bytes())
    damaged = bytearray(raw)
    damaged[14] ^= 0xFF  # a byte of the first payload
    Path(path).write_bytes(gzip.compress(bytes(damaged)))
    with pytest.raises(ValueError, match="corrupt record data"):
        list(read_records(path))
