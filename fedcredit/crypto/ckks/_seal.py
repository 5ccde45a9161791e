"""SEAL objects to and from bytes, and the SEAL-level evaluator of one CKKS context.

tenseal.sealapi serializes SEAL objects only to file paths; an anonymous in-memory file
(memfd, or a private temp directory where memfd is unavailable) stands in for a byte stream.
Only public material passes through it (ciphertexts, rotation keys), never a secret key.
"""

from __future__ import annotations

import os
import struct
import tempfile
import threading

import tenseal as ts
import tenseal.sealapi as sealapi

_scratch_lock = threading.Lock()
_scratch: dict = {}


def _scratch_path() -> tuple[int, str]:
    pid = os.getpid()
    if _scratch.get("pid") != pid:  # a forked child gets its own file
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("fedcredit-ckks", getattr(os, "MFD_CLOEXEC", 0))
            path = f"/proc/self/fd/{fd}"
        else:  # pragma: no cover - non-Linux
            d = tempfile.mkdtemp(prefix="fedcredit-ckks-")
            path = os.path.join(d, "scratch")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        _scratch.update(pid=pid, fd=fd, path=path)
    return _scratch["fd"], _scratch["path"]


def _seal_to_bytes(obj) -> bytes:
    with _scratch_lock:
        fd, path = _scratch_path()
        os.ftruncate(fd, 0)
        obj.save(path)
        return os.pread(fd, os.fstat(fd).st_size, 0)


def _seal_from_bytes(obj, seal_context, data: bytes):
    with _scratch_lock:
        fd, path = _scratch_path()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        obj.load(seal_context, path)
    return obj


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _tenseal_vector_bytes(ciphertexts: list[bytes], sizes: list[int], scale: float) -> bytes:
    """TenSEAL's ``CKKSVectorProto`` (sizes = 1, ciphertexts = 2, scale = 3), as ``CKKSVector.serialize`` writes it."""
    packed = b"".join(_varint(int(s)) for s in sizes)
    body = b"\x0a" + _varint(len(packed)) + packed
    for c in ciphertexts:
        body += b"\x12" + _varint(len(c)) + c
    return body + b"\x19" + struct.pack("<d", float(scale))


class _Seal:
    """SEAL-level evaluator, encoder and public-key encryptor of one context (built lazily)."""

    def __init__(self, ctx: "ts.Context"):
        self.context = ctx.data.seal_context()
        self.evaluator = sealapi.Evaluator(self.context)
        self.encoder = sealapi.CKKSEncoder(self.context)
        self.encryptor = sealapi.Encryptor(self.context, ctx.data.public_key())
        self.decryptor = None  # the owner's, made on first use
