"""Caffe's `Datum` and `BlobProto` messages, defined here field by field (numbers and types as in
Caffe's caffe.proto) so that data can be prepared on a machine without Caffe.

    encode_datum(chw_uint8, label) -> bytes      # what convert_imageset stores per LMDB record
    decode_datum(bytes) -> (chw_uint8, label)
    encode_mean(chw_float32) -> bytes             # what compute_image_mean writes (.binaryproto)
    decode_mean(bytes) -> chw_float32
"""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg, name, number, ftype, repeated=False, packed=False, type_name=None):
    field = msg.field.add(
        name=name, number=number, type=ftype, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    )
    if packed:
        field.options.packed = True
    if type_name:
        field.type_name = type_name


def _build_messages():
    """Build the message classes in a private descriptor pool (no clash with pycaffe's caffe_pb2)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="linfool/caffe_subset.proto", package="linfool_caffe", syntax="proto2"
    )
    datum = proto.message_type.add(name="Datum")
    _field(datum, "channels", 1, _F.TYPE_INT32)
    _field(datum, "height", 2, _F.TYPE_INT32)
    _field(datum, "width", 3, _F.TYPE_INT32)
    _field(datum, "data", 4, _F.TYPE_BYTES)  # uint8 pixels, channel-major (C x H x W), BGR
    _field(datum, "label", 5, _F.TYPE_INT32)
    _field(datum, "float_data", 6, _F.TYPE_FLOAT, repeated=True)
    _field(datum, "encoded", 7, _F.TYPE_BOOL)
    shape = proto.message_type.add(name="BlobShape")
    _field(shape, "dim", 1, _F.TYPE_INT64, repeated=True, packed=True)
    blob = proto.message_type.add(name="BlobProto")
    _field(blob, "num", 1, _F.TYPE_INT32)
    _field(blob, "channels", 2, _F.TYPE_INT32)
    _field(blob, "height", 3, _F.TYPE_INT32)
    _field(blob, "width", 4, _F.TYPE_INT32)
    _field(blob, "data", 5, _F.TYPE_FLOAT, repeated=True, packed=True)
    _field(blob, "diff", 6, _F.TYPE_FLOAT, repeated=True, packed=True)
    _field(blob, "shape", 7, _F.TYPE_MESSAGE, type_name=".linfool_caffe.BlobShape")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"linfool_caffe.{name}"))
        for name in ("Datum", "BlobProto")
    )


Datum, BlobProto = _build_messages()


def encode_datum(image: np.ndarray, label: int) -> bytes:
    """Serialize a (C, H, W) uint8 image (BGR, 0..255) and its label exactly as Caffe's
    CVMatToDatum + set_label do (encoded=false is set explicitly, so it is written)."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) uint8 array, got {image.dtype} {image.shape}")
    channels, height, width = image.shape
    msg = Datum(channels=channels, height=height, width=width, data=image.tobytes(), label=int(label), encoded=False)
    return msg.SerializeToString()


def decode_datum(raw: bytes) -> tuple[np.ndarray, int]:
    """Parse one LMDB record: returns ((C, H, W) uint8 image, label)."""
    msg = Datum.FromString(raw)
    if msg.encoded:
        raise ValueError("encoded (compressed) Datum records are not supported; rebuild the LMDB")
    image = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.channels, msg.height, msg.width)
    return image, msg.label


def encode_mean(mean: np.ndarray) -> bytes:
    """Serialize a (C, H, W) float32 mean image as compute_image_mean writes it (num = 1)."""
    channels, height, width = mean.shape
    msg = BlobProto(num=1, channels=channels, height=height, width=width)
    msg.data.extend(np.asarray(mean, dtype=np.float32).ravel().tolist())
    return msg.SerializeToString()


def decode_mean(raw: bytes) -> np.ndarray:
    """Parse a mean .binaryproto into a (C, H, W) float32 array (BGR, 0..255 scale)."""
    msg = BlobProto.FromString(raw)
    shape = tuple(msg.shape.dim)[-3:] if msg.HasField("shape") else (msg.channels, msg.height, msg.width)
    return np.asarray(msg.data, dtype=np.float32).reshape(shape)
