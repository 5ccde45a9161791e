"""Optional accelerator: SecretFlow HEU's OU bucket sum on our OU ciphertexts (hazmat).

HEU (``pip install fedcredit[heu]``: ``sf-heu``, CPython 3.10-3.11 wheels) ships a C++
``feature_wise_bucket_sum``.  It was 1.7x our one-pass-per-feature gmpy2 kernel on a quiet
core; our grouped kernel (:mod:`fedcredit.crypto._buckets`) is now 1.47x HEU, so HEU is used
only when asked for (``kernel="heu"``; benchmarks/README.md, "Grouped bucket sums").  It has no public API for foreign keys or
ciphertexts, so this bridge speaks its serialized forms, as found in sf-heu 0.5.2b0:

* a public key is the msgpack list ``[n, G, H, max_plaintext_bits]`` followed by eight
  msgpack ints ``1, 0, ..., 0``; big integers are little-endian bytes with room for a
  sign bit;
* a ciphertext array is ``[rows, cols, 2, [element, ...]]`` where an element is the
  msgpack list ``[c R mod n]`` followed by the same eight ints, and ``R = 2^(60 k)`` with
  ``k`` the number of 60-bit digits of ``n`` (HEU keeps ciphertexts in Montgomery form).

An addition is a product modulo ``n`` in either representation (Montgomery products
of ``aR`` and ``bR`` give ``abR``), so the bucket sums come back exactly.  Because the
formats are undocumented, each key's bridge first runs a self-check (a small bucket sum
compared with :func:`fedcredit.crypto._ou_raw.bucket_sums`) and is never used if that
fails or raises (``CipherVector.histogram(kernel="heu")`` then raises ConfigError; the
default kernel is gmpy2).  Only public material (``n``, ``g``, ``h`` and ciphertexts)
goes to HEU.
"""

from __future__ import annotations

import secrets
import threading

import numpy as np

from ._ou_raw import bucket_sums

__all__ = ["available", "bridge_for"]

_TAIL = (1, 0, 0, 0, 0, 0, 0, 0)
_lock = threading.Lock()
_bridges: dict[tuple[int, int, int], "_Bridge | None"] = {}


def _modules():
    try:
        import msgpack
        from heu import numpy as hnp
        from heu import phe
    except Exception:  # ImportError, or a broken native wheel
        return None
    return msgpack, hnp, phe


def available() -> bool:
    """Whether ``sf-heu`` (and ``msgpack``) import in this interpreter."""
    return _modules() is not None


def _le(x: int) -> bytes:
    x = int(x)
    return x.to_bytes(x.bit_length() // 8 + 1, "little")


class _Bridge:
    def __init__(self, n: int, g: int, h: int, plaintext_bits: int):
        msgpack, hnp, phe = _modules()
        self._msgpack, self._hnp = msgpack, hnp
        self.n = n
        digits = -(-n.bit_length() // 60)
        self.r = pow(2, 60 * digits, n)
        self.r_inv = pow(self.r, -1, n)
        tail = b"".join(msgpack.packb(v) for v in _TAIL)
        self._tail = tail
        key = msgpack.packb([_le(n), _le(g), _le(h), int(plaintext_bits)]) + tail
        self._ev = hnp.setup(phe.PublicKey.load_from(key)).evaluator()

    def _to_heu(self, cs: list):
        n, r, packb, tail = self.n, self.r, self._msgpack.packb, self._tail
        elems = [packb([_le(int(c) * r % n)]) + tail for c in cs]
        return self._hnp.CiphertextArray.load_from(packb([len(cs), 1, 2, elems]))

    def _from_heu(self, arr) -> list:
        from gmpy2 import mpz

        unpacker = self._msgpack.Unpacker
        n, r_inv = self.n, self.r_inv
        (outer,) = self._unpack_all(arr.serialize())
        out = []
        for e in outer[3]:
            u = unpacker(raw=True)
            u.feed(e)
            out.append(mpz(int.from_bytes(next(u)[0], "little") * r_inv % n))
        return out

    def _unpack_all(self, data: bytes) -> list:
        u = self._msgpack.Unpacker(raw=True)
        u.feed(data)
        return list(u)

    def bucket_sums(self, cs: list, bins: np.ndarray, n_bins: int) -> list:
        rows, feats = bins.shape
        arr = self._to_heu(cs)
        out = self._ev.feature_wise_bucket_sum(
            arr, np.ones(rows, dtype=np.int8), np.ascontiguousarray(bins, dtype=np.int64), int(n_bins), False
        )
        res = self._from_heu(out)
        if len(res) != feats * n_bins:
            raise ValueError("unexpected HEU output shape")
        return res

    def self_check(self) -> bool:
        from gmpy2 import mpz

        n = self.n
        cs = [mpz(secrets.randbelow(n - 2) + 2) for _ in range(24)]
        bins = np.asarray([[i % 3, (i * 7) % 5] for i in range(24)], dtype=np.uint8)
        bins[0, 1] = 4
        return self.bucket_sums(cs, bins, 5) == bucket_sums(cs, bins, 5, mpz(n))


def bridge_for(n: int, g: int, h: int, plaintext_bits: int):
    """The checked HEU bridge for this public key, or None (not importable, or self-check failed)."""
    key = (int(n), int(g), int(h))
    with _lock:
        if key in _bridges:
            return _bridges[key]
        bridge = None
        if available():
            try:
                b = _Bridge(int(n), int(g), int(h), int(plaintext_bits))
                if b.self_check():
                    bridge = b
            except Exception:  # any format or runtime mismatch: use the gmpy2 kernel
                bridge = None
        _bridges[key] = bridge
        return bridge
