"""The one place that converts between protobuf and Python objects.

A payload is a tree of: ``None``, ``bool``, ``int`` (any size), ``float``,
``str``, ``bytes``, ``list``/``tuple`` (decoded as ``list``), ``dict`` with
``str`` keys (order kept), numeric/bool ``numpy.ndarray``, and
:class:`~fedcredit.crypto.blob.CipherBlob` (or any object with ``to_blob()``
returning one, e.g. a Paillier ciphertext vector). Anything else is refused:
there is no pickle and no object hook.
"""

from __future__ import annotations

import numpy as np

from .._proto import payload_pb2 as pb
from ..crypto.blob import CipherBlob
from ..errors import ProtocolError

__all__ = ["encode", "decode", "value_to_proto", "value_from_proto", "MAX_DEPTH"]

MAX_DEPTH = 32
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ALLOWED_KINDS = {"b", "i", "u", "f"}


def _array_to_proto(a: np.ndarray) -> pb.NDArray:
    if a.dtype.kind not in _ALLOWED_KINDS:
        raise ProtocolError(f"cannot send an array of dtype {a.dtype}: only bool/int/uint/float arrays")
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return pb.NDArray(dtype=a.dtype.str, shape=list(a.shape), data=a.tobytes())


def _array_from_proto(m: pb.NDArray) -> np.ndarray:
    try:
        dtype = np.dtype(m.dtype)
    except TypeError as exc:
        raise ProtocolError(f"array with unknown dtype {m.dtype!r}") from exc
    if dtype.kind not in _ALLOWED_KINDS or dtype.hasobject:
        raise ProtocolError(f"array with disallowed dtype {m.dtype!r}")
    shape = tuple(int(s) for s in m.shape)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if n * dtype.itemsize != len(m.data):
        raise ProtocolError(f"array data is {len(m.data)} bytes, shape {shape} of {dtype} needs {n * dtype.itemsize}")
    return np.frombuffer(m.data, dtype=dtype).reshape(shape).copy()


def _blob_to_proto(b: CipherBlob) -> pb.CipherVector:
    return pb.CipherVector(
        scheme=b.scheme,
        key_fingerprint=b.key_fingerprint,
        width=b.width,
        count=b.count,
        data=b.data,
        meta=[pb.MetaEntry(key=k, value=v) for k, v in b.meta.items()],
    )


def _blob_from_proto(m: pb.CipherVector) -> CipherBlob:
    if m.width and m.width * m.count != len(m.data):
        raise ProtocolError(f"cipher vector of {m.count} x {m.width} bytes carries {len(m.data)} bytes")
    return CipherBlob(
        scheme=m.scheme,
        key_fingerprint=bytes(m.key_fingerprint),
        width=m.width,
        count=m.count,
        data=bytes(m.data),
        meta={e.key: e.value for e in m.meta},
    )


def value_to_proto(obj, _depth: int = 0) -> pb.Value:
    """Convert a payload object into a ``Value`` message."""
    if _depth > MAX_DEPTH:
        raise ProtocolError(f"payload nested deeper than {MAX_DEPTH}")
    if obj is None:
        return pb.Value(null_value=True)
    if isinstance(obj, (bool, np.bool_)):
        return pb.Value(bool_value=bool(obj))
    if isinstance(obj, (int, np.integer)):
        i = int(obj)
        if _INT64_MIN <= i <= _INT64_MAX:
            return pb.Value(int_value=i)
        return pb.Value(bigint_value=i.to_bytes((i.bit_length() + 8) // 8, "big", signed=True))
    if isinstance(obj, (float, np.floating)):
        return pb.Value(float_value=float(obj))
    if isinstance(obj, str):
        return pb.Value(str_value=obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return pb.Value(bytes_value=bytes(obj))
    if isinstance(obj, np.ndarray):
        return pb.Value(array_value=_array_to_proto(obj))
    if isinstance(obj, CipherBlob):
        return pb.Value(cipher_value=_blob_to_proto(obj))
    if hasattr(obj, "to_blob"):
        return pb.Value(cipher_value=_blob_to_proto(obj.to_blob()))
    if isinstance(obj, (list, tuple)):
        return pb.Value(list_value=pb.ValueList(items=[value_to_proto(x, _depth + 1) for x in obj]))
    if isinstance(obj, dict):
        entries = []
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ProtocolError(f"payload dict keys must be str, got {type(k).__name__}")
            entries.append(pb.MapEntry(key=k, value=value_to_proto(v, _depth + 1)))
        return pb.Value(map_value=pb.ValueMap(entries=entries))
    raise ProtocolError(f"cannot send an object of type {type(obj).__name__}")


def value_from_proto(m: pb.Value, _depth: int = 0):
    """Convert a ``Value`` message back into a payload object."""
    if _depth > MAX_DEPTH:
        raise ProtocolError(f"payload nested deeper than {MAX_DEPTH}")
    kind = m.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "bool_value":
        return m.bool_value
    if kind == "int_value":
        return m.int_value
    if kind == "bigint_value":
        return int.from_bytes(m.bigint_value, "big", signed=True)
    if kind == "float_value":
        return m.float_value
    if kind == "str_value":
        return m.str_value
    if kind == "bytes_value":
        return bytes(m.bytes_value)
    if kind == "array_value":
        return _array_from_proto(m.array_value)
    if kind == "cipher_value":
        return _blob_from_proto(m.cipher_value)
    if kind == "list_value":
        return [value_from_proto(x, _depth + 1) for x in m.list_value.items]
    if kind == "map_value":
        return {e.key: value_from_proto(e.value, _depth + 1) for e in m.map_value.entries}
    raise ProtocolError(f"unknown payload kind {kind!r}")  # pragma: no cover


def encode(obj) -> bytes:
    """Serialize a payload object to bytes (deterministic for a given object)."""
    return value_to_proto(obj).SerializeToString(deterministic=True)


def decode(data: bytes):
    """Parse bytes produced by :func:`encode`; malformed bytes raise ProtocolError."""
    m = pb.Value()
    try:
        m.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError / RuntimeError variants
        raise ProtocolError(f"malformed payload ({len(data)} bytes): {exc}") from None
    return value_from_proto(m)
