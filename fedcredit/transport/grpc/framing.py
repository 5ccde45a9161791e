"""How one message travels: chunks of a ``Push`` stream, and the digest that binds it to its job and tag.

A message is one client-streaming ``Federation.Push`` call: the first
``Chunk`` carries the ``Header`` (job id, tag, message id, sizes, SHA-256)
and seq 0, later chunks only their seq and data (at most
:data:`~fedcredit.transport.grpc.options.MAX_CHUNK_BYTES` each).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

__all__ = [
    "PUSH",
    "PING",
    "MAX_TAG",
    "encode_chunks",
    "chunk_count",
    "message_digest",
    "message_sha256",
    "raw_bytes",
    "valid_tag",
    "valid_message_id",
]

PUSH = "/fedcredit.v1.Federation/Push"
PING = "/fedcredit.v1.Federation/Ping"
#: Longest tag a header may carry.
MAX_TAG = 1024
_ID_RE = re.compile(r"^[A-Za-z0-9_.:=\-]{1,128}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_.:=\-]+(/[A-Za-z0-9_.:=\-]+)*$")


def valid_tag(tag: str) -> bool:
    """Whether a peer's tag is well formed: ``/``-separated segments of ``[A-Za-z0-9_.:=-]``, none ``.`` or ``..``."""
    return len(tag) <= MAX_TAG and bool(_TAG_RE.fullmatch(tag)) and not any(x in (".", "..") for x in tag.split("/"))


def valid_message_id(message_id: str) -> bool:
    """Whether a peer's message id is 1-128 characters of ``[A-Za-z0-9_.:=-]``."""
    return bool(_ID_RE.fullmatch(message_id))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_chunks(header: bytes, payload: bytes, chunk: int) -> Iterator[bytes]:
    """Serialize ``Chunk`` messages directly (one copy of each payload slice, no intermediate objects).

    Produces exactly the wire bytes of ``Chunk(header=..., seq=i, data=slice)``.
    """
    mv = memoryview(payload)
    n = len(payload)
    count = max(1, -(-n // chunk))
    for seq in range(count):
        part = mv[seq * chunk : (seq + 1) * chunk]
        pre = b""
        if seq == 0:
            pre = b"\x0a" + _varint(len(header)) + header
        else:
            pre = b"\x10" + _varint(seq)
        yield b"".join((pre, b"\x1a", _varint(len(part)), part))


def raw_bytes(b: bytes) -> bytes:
    """The identity (de)serializer: chunks are encoded by :func:`encode_chunks`, not by protobuf."""
    return b


def chunk_count(n: int, chunk: int) -> int:
    """Chunks of ``chunk`` bytes needed for ``n`` payload bytes (an empty message is one chunk)."""
    return max(1, -(-n // chunk))


def message_digest(job_id: str, tag: str):
    """SHA-256 state over a message's binding: domain, job id and tag (length-prefixed), then the payload.

    The digest in a header covers the job and the tag, so a message, replayed
    whole or re-sent by its own sender into another job or under another tag,
    does not verify there: it is refused (DATA_LOSS), not accepted as new.
    """
    h = hashlib.sha256(b"fedcredit-message-v1\0")
    for part in (job_id.encode("utf-8"), tag.encode("utf-8")):
        h.update(len(part).to_bytes(4, "big") + part)
    return h


def message_sha256(job_id: str, tag: str, payload: bytes) -> bytes:
    """The ``Header.sha256`` of ``payload`` sent as ``tag`` in job ``job_id`` (see :func:`message_digest`)."""
    h = message_digest(job_id, tag)
    h.update(payload)
    return h.digest()
