"""CKKS companion (TenSEAL): approximate arithmetic on encrypted float vectors.

For horizontal (FedAvg) aggregation and the CKKS variant of hetero LR, where
approximate results are acceptable and batching (4,096 values per ciphertext at
``poly_modulus_degree=8192``) makes encryption far cheaper per value than Paillier.

Security and precision
----------------------
Defaults follow the HE standard (homomorphicencryption.org, 128-bit classical
security): ``poly_modulus_degree=8192`` with ``coeff_mod_bit_sizes=(60, 40, 40, 60)``
(200 bits of modulus; the 128-bit limit at 8192 is 218), scale ``2^40``.  This
allows one plaintext multiplication (one rescale) after encryption.  Measured
precision with the defaults for values in ``[-1, 1]`` (``tests/test_ckks.py``
checks these bounds): fresh encrypt/decrypt absolute error below ``1e-6``
(typically ~1e-9); after adding 10 vectors below ``1e-5``; after a plaintext
multiply, ``sum`` or ``dot`` of 4,096 values below ``1e-4`` relative to the
magnitude of the result.

Rotation keys and the strided matrix product
--------------------------------------------
:meth:`CKKSVector.matvec_strided` computes ``Xᵀ [[v]]`` for a plain matrix ``X``
with ``f`` columns in one ciphertext. Two columns share a slot (real and
imaginary part of the complex plaintext), ``F`` = the smallest power of two
``>= f/2``: slot ``i`` holds ``sum_k v[i+k] (X[i+k, c] + 1j X[i+k, F+c])``,
``c = i mod F`` (``k < F``), so the slots ``i = c (mod F)`` sum to the products
of columns ``c`` (real part) and ``F + c`` (imaginary part). It uses the
baby-step/giant-step diagonal method (Halevi and Shoup, *Algorithms in HElib*,
CRYPTO 2014): ``s - 1`` rotations of ``[[v]]`` by one slot, ``F`` plaintext
products, and ``F/s - 1`` rotations by ``s`` slots, with ``s`` about
``sqrt(F)`` -- 4 rotations and 8 products for up to 16 columns, instead of one
ciphertext per column.
Its result always carries a fresh public-key encryption of a caller-chosen
mask (re-randomized: the party that made ``[[v]]`` cannot divide ciphertext
components to recover ``X``). It needs Galois keys for steps 1 and ``s`` only:
``CKKSContext.generate(rotation_steps=ROTATION_STEPS)`` makes exactly those
(5 keys, ~3.5 MB serialized at 8192, instead of TenSEAL's full set of ~35 MB),
:meth:`CKKSContext.rotation_keys` serializes them and
:meth:`CKKSContext.load_rotation_keys` installs them on a peer's public context.
These paths use SEAL directly (``tenseal.sealapi``): TenSEAL's vector API has no
rotation by an arbitrary step and no products at an exact scale (TenSEAL resets
the scale to ``2^40`` after a rescale although it is ``2^80/q``, a relative error
of ~1e-7; the strided product keeps SEAL's exact scale).

A key holder must not decrypt whatever a peer sends: :meth:`CKKSContext.expected_level` and
:meth:`CKKSContext.check_level` let it check that a received ciphertext has two components
and the chain index and scale the protocol produces at that point (hetero LR's
``_ckks.KeyHolder`` does, and also bounds, floods, rounds and counts what it releases).

A context made by :meth:`CKKSContext.generate` holds the secret key; its
:meth:`~CKKSContext.public` copy does not, and :meth:`~CKKSContext.serialize`
never writes the secret key unless asked (``save_secret_key=True``, for the
owner's own storage only).  Ciphertext blobs carry the fingerprint of the
public key (sha256 of its serialization) and are refused under another key.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
import tempfile
import threading
from collections.abc import Sequence

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

from ..errors import ConfigError, DecryptionError
from .blob import CipherBlob

__all__ = ["CKKSContext", "CKKSVector", "SCHEME", "ROTATION_STEPS", "stride_for"]

SCHEME = "ckks"
#: Rotation steps that :meth:`CKKSVector.matvec_strided` uses (baby steps of 1, giant steps of up to 16 slots).
ROTATION_STEPS = (1, 2, 4, 8, 16)
_MAX_BABY = 16


def stride_for(n_columns: int) -> int:
    """The slot stride ``F`` of :meth:`CKKSVector.matvec_strided` for ``n_columns`` columns: the smallest power of
    two ``>= ceil(n_columns / 2)`` (two columns per residue class, in the real and imaginary parts)."""
    return 1 << max((int(n_columns) + 1) // 2 - 1, 0).bit_length()


def _baby_step(stride: int) -> int:
    return min(_MAX_BABY, 1 << ((stride.bit_length() - 1) // 2))


# ------------------------------------------------------------------ SEAL objects <-> bytes
# tenseal.sealapi serializes SEAL objects only to file paths; an anonymous in-memory file
# (memfd, or a private temp directory where memfd is unavailable) stands in for a byte stream.
# Only public material passes through it (ciphertexts, rotation keys), never a secret key.
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


class CKKSContext:
    """A TenSEAL CKKS context (with or without the secret key).

    Create with :meth:`generate` (owner) or :meth:`from_serialized` (peer).

    Attributes
    ----------
    slots : int
        Values per ciphertext (``poly_modulus_degree / 2``).
    fingerprint : bytes
        sha256 of the serialized public key.
    """

    def __init__(self, ctx: "ts.Context"):
        if not isinstance(ctx, ts.Context):
            raise TypeError("use CKKSContext.generate or CKKSContext.from_serialized")
        self._ctx = ctx
        self._fingerprint: bytes | None = None
        self._seal_objs: _Seal | None = None
        self._rot_bytes: bytes | None = None  # rotation keys as generated or received (public)
        self._rot = None  # the same keys loaded for use (sealapi.GaloisKeys)
        self.slots = int(ctx.seal_context().data.first_context_data().parms().poly_modulus_degree()) // 2

    @classmethod
    def generate(
        cls,
        *,
        poly_modulus_degree: int = 8192,
        coeff_mod_bit_sizes: Sequence[int] = (60, 40, 40, 60),
        global_scale_bits: int = 40,
        galois_keys: bool = True,
        rotation_steps: Sequence[int] = (),
    ) -> "CKKSContext":
        """A new context with a fresh secret key.

        Parameters
        ----------
        poly_modulus_degree : int, default=8192
            Ring dimension; 8192 or 16384 (4096 allows too small a modulus for the
            default chain).
        coeff_mod_bit_sizes : sequence of int, default=(60, 40, 40, 60)
            Modulus chain; the sum must stay within the 128-bit security bound
            (218 bits at 8192, 438 at 16384).
        global_scale_bits : int, default=40
            Scale of encoded values (``2^40``).
        galois_keys : bool, default=True
            Generate TenSEAL's full set of rotation keys (needed by :meth:`CKKSVector.sum` and ``dot``).
        rotation_steps : sequence of int, default=()
            Also make Galois keys for exactly these left-rotation steps (e.g. :data:`ROTATION_STEPS` for
            :meth:`CKKSVector.matvec_strided`); serialize them with :meth:`rotation_keys`.
        """
        limits = {8192: 218, 16384: 438, 32768: 881}
        if poly_modulus_degree not in limits:
            raise ConfigError(
                f"The 'poly_modulus_degree' parameter of CKKSContext.generate must be in {sorted(limits)}. "
                f"Got {poly_modulus_degree!r} instead."
            )
        total = sum(int(b) for b in coeff_mod_bit_sizes)
        if total > limits[poly_modulus_degree]:
            raise ConfigError(
                f"coeff_mod_bit_sizes sum to {total} bits; at poly_modulus_degree={poly_modulus_degree} "
                f"128-bit security allows at most {limits[poly_modulus_degree]}."
            )
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=int(poly_modulus_degree),
                         coeff_mod_bit_sizes=[int(b) for b in coeff_mod_bit_sizes])
        ctx.global_scale = 2.0 ** int(global_scale_bits)
        if galois_keys:
            ctx.generate_galois_keys()
        out = cls(ctx)
        steps = sorted({int(k) for k in rotation_steps})
        if steps:
            if any(not 0 < k < out.slots for k in steps):
                raise ConfigError(f"rotation steps must be in [1, {out.slots}); got {steps}")
            seal = out._seal()
            gen = sealapi.KeyGenerator(seal.context, ctx.data.secret_key())
            elts = [pow(3, k, 2 * int(poly_modulus_degree)) for k in steps]
            out._rot_bytes = _seal_to_bytes(gen.create_galois_keys(elts))  # seeded (compact) form
        return out

    @classmethod
    def from_serialized(cls, data: bytes) -> "CKKSContext":
        """Load a context written by :meth:`serialize`."""
        try:
            return cls(ts.context_from(bytes(data)))
        except Exception:
            raise ConfigError("not a serialized CKKS context") from None

    def __repr__(self) -> str:
        return f"CKKSContext(slots={self.slots}, private={self.is_private})"

    def __reduce__(self):
        raise TypeError("serialize CKKS contexts explicitly with serialize(); pickling is refused")

    @property
    def is_private(self) -> bool:
        """True if this context holds the secret key."""
        return bool(self._ctx.is_private())

    def public(self) -> "CKKSContext":
        """A copy without the secret key (safe to send to peers)."""
        c = self._ctx.copy()
        c.make_context_public()
        out = CKKSContext(c)
        out._fingerprint = self._fingerprint
        out._rot_bytes = self._rot_bytes
        return out

    def _seal(self) -> _Seal:
        if self._seal_objs is None:
            self._seal_objs = _Seal(self._ctx)
        return self._seal_objs

    # -------------------------------------------------- rotation keys
    def rotation_keys(self) -> bytes | None:
        """The Galois keys made with ``generate(rotation_steps=...)`` (or loaded), serialized; public material."""
        return self._rot_bytes

    def load_rotation_keys(self, data: bytes) -> None:
        """Install a peer's rotation keys (from :meth:`rotation_keys`) on this context.

        Raises
        ------
        ConfigError
            If ``data`` is not a set of Galois keys valid for this context's parameters.
        """
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise ConfigError("rotation keys must be non-empty bytes")
        try:
            keys = _seal_from_bytes(sealapi.GaloisKeys(), self._seal().context, bytes(data))
        except Exception:
            raise ConfigError("not a set of CKKS rotation keys for this context") from None
        self._rot, self._rot_bytes = keys, bytes(data)

    def _rotation(self, step: int):
        if self._rot is None and self._rot_bytes is not None:
            self.load_rotation_keys(self._rot_bytes)
        elt = pow(3, int(step), 4 * self.slots)
        if self._rot is None or not self._rot.has_key(elt):
            raise ConfigError(f"this CKKS context has no rotation key for step {step}; the key owner must make it "
                              f"(CKKSContext.generate(rotation_steps=...)) and send it (rotation_keys())")
        return self._rot

    def serialize(self, *, save_secret_key: bool = False, save_galois_keys: bool = True) -> bytes:
        """Bytes of the context; the secret key only with ``save_secret_key=True``."""
        return self._ctx.serialize(
            save_public_key=True,
            save_secret_key=bool(save_secret_key) and self.is_private,
            save_galois_keys=bool(save_galois_keys),
            save_relin_keys=True,
        )

    @property
    def fingerprint(self) -> bytes:
        if self._fingerprint is None:
            pub = self._ctx.serialize(save_public_key=True, save_secret_key=False,
                                      save_galois_keys=False, save_relin_keys=False)
            self._fingerprint = hashlib.sha256(pub).digest()
        return self._fingerprint

    # -------------------------------------------------- levels (what a protocol expects a ciphertext to be)
    def expected_level(self, products: int = 0, *, exact_scale: bool = False) -> tuple[int, float]:
        """``(chain index, scale)`` of a ciphertext encrypted under this context after ``products`` plaintext
        products, each followed by one rescale.

        ``exact_scale=True``: SEAL's exact scale (``scale^2 / q`` per product, as :meth:`CKKSVector.matvec_strided`
        keeps it); ``False``: the global scale, which TenSEAL's vector API resets after each rescale.
        """
        cd = self._seal().context.first_context_data()
        scale = float(self._ctx.global_scale)
        for _ in range(int(products)):
            q = float(cd.parms().coeff_modulus()[-1].value())
            if exact_scale:
                scale = scale * float(self._ctx.global_scale) / q
            cd = cd.next_context_data()
            if cd is None:
                raise ConfigError(f"this CKKS context has no level left for {products} products")
        return int(cd.chain_index()), scale

    def check_level(self, v: "CKKSVector", level: tuple[int, float]) -> bool:
        """True if every ciphertext of ``v`` is a two-component NTT-form ciphertext at ``level`` (a pair from
        :meth:`expected_level`; scale equal to 1e-9 relative).  A key holder checks this before decrypting
        anything a peer computed: a crafted ciphertext at another level or scale, or with more components (which
        decrypt with powers of the secret key), is how decryption results are turned into relations in the key."""
        chain, scale = level
        seal = self._seal()
        try:
            for c in v._chunks:
                cts = c.data.ciphertext()
                if len(cts) != 1:
                    return False
                ct = cts[0]
                cd = seal.context.get_context_data(ct.parms_id())
                if (cd is None or ct.size() != 2 or not ct.is_ntt_form() or int(cd.chain_index()) != int(chain)
                        or not abs(float(ct.scale) - scale) <= 1e-9 * scale):
                    return False
        except Exception:
            return False
        return True

    # -------------------------------------------------- encrypt / decrypt
    def encrypt(self, x) -> "CKKSVector":
        """Encrypt a 1-D float vector (split into ``slots``-sized ciphertexts)."""
        a = np.asarray(x, dtype=np.float64).ravel()
        if not np.all(np.isfinite(a)):
            raise ConfigError("cannot encrypt NaN or infinite values")
        chunks = [ts.ckks_vector(self._ctx, a[i : i + self.slots].tolist()) for i in range(0, max(len(a), 1), self.slots)]
        if len(a) == 0:
            chunks = []
        return CKKSVector(self, chunks, len(a))

    def decrypt(self, v: "CKKSVector") -> np.ndarray:
        """Decrypt to float64.

        Raises
        ------
        DecryptionError
            Opaquely, if this context has no secret key or the vector is under another key.
        """
        if not isinstance(v, CKKSVector) or not self.is_private or v.context.fingerprint != self.fingerprint:
            raise DecryptionError()
        try:
            sk = self._ctx.secret_key()
            out = [np.asarray(c.decrypt(sk), dtype=np.float64) for c in v._chunks]
        except Exception:
            raise DecryptionError() from None
        return np.concatenate(out)[: len(v)] if out else np.zeros(0)

    def decrypt_strided(self, v: "CKKSVector") -> np.ndarray:
        """Decrypt a result of :meth:`CKKSVector.matvec_strided` and sum its slots by residue class.

        Returns
        -------
        ndarray of shape (2 * v.stride,)
            Entry ``j < F``: the real parts of slots ``i = j (mod F)`` summed; entry ``F + j``: their imaginary
            parts summed -- column ``j``'s product plus its mask sum, for every column ``j``.

        Raises
        ------
        DecryptionError
            As :meth:`decrypt`, and (opaquely) if ``v`` is not in the strided layout.
        """
        if (not isinstance(v, CKKSVector) or not v.stride or len(v) != self.slots or len(v._chunks) != 1
                or not self.is_private or v.context.fingerprint != self.fingerprint):
            raise DecryptionError()
        try:
            seal = self._seal()
            if seal.decryptor is None:
                seal.decryptor = sealapi.Decryptor(seal.context, self._ctx.data.secret_key())
            pt = sealapi.Plaintext()
            seal.decryptor.decrypt(v._chunks[0].data.ciphertext()[0], pt)
            z = np.asarray(seal.encoder.decode_complex(pt), dtype=np.complex128)
        except Exception:
            raise DecryptionError() from None
        F = v.stride
        return np.r_[z.real.reshape(-1, F).sum(axis=0), z.imag.reshape(-1, F).sum(axis=0)]

    def vector_from_blob(self, blob: CipherBlob) -> "CKKSVector":
        """Rebuild a vector from :meth:`CKKSVector.to_blob`; refuses another key (opaque)."""
        if (
            not isinstance(blob, CipherBlob)
            or blob.scheme != SCHEME
            or not secrets.compare_digest(bytes(blob.key_fingerprint), self.fingerprint)
        ):
            raise DecryptionError()
        try:
            length = int(blob.meta["length"])
            n_chunks = int(blob.meta["chunks"])
            stride = int(blob.meta.get("stride", 0))
            if stride and (stride & (stride - 1) or stride > self.slots or n_chunks != 1 or length != self.slots):
                raise ValueError
            data = blob.data
            chunks, pos = [], 0
            for _ in range(n_chunks):
                (size,) = struct.unpack_from(">Q", data, pos)
                pos += 8
                chunks.append(ts.ckks_vector_from(self._ctx, data[pos : pos + size]))
                pos += size
            if pos != len(data) or length < 0 or length > n_chunks * self.slots:
                raise ValueError
        except Exception:
            raise DecryptionError() from None
        return CKKSVector(self, chunks, length, stride=stride)


class CKKSVector:
    """An encrypted float vector (one or more CKKS ciphertexts). Operations return new vectors."""

    __slots__ = ("context", "_chunks", "_len", "_stride")

    def __init__(self, context: CKKSContext, chunks: list, length: int, *, stride: int = 0):
        self.context = context
        self._chunks = chunks
        self._len = int(length)
        self._stride = int(stride)

    @property
    def stride(self) -> int:
        """0 for an ordinary vector; ``F`` for a result of :meth:`matvec_strided` (see there)."""
        return self._stride

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"CKKSVector(len={self._len}, ciphertexts={len(self._chunks)})"

    def _check(self, other: "CKKSVector") -> None:
        if not isinstance(other, CKKSVector):
            raise TypeError(f"expected a CKKSVector, got {type(other).__name__}")
        if other.context.fingerprint != self.context.fingerprint:
            raise ConfigError("CKKS vectors under different keys")
        if len(other) != len(self):
            raise ConfigError(f"length mismatch: {len(self)} vs {len(other)}")

    def _plain_chunks(self, values) -> list:
        a = np.asarray(values, dtype=np.float64).ravel()
        if a.size == 1:
            return [float(a[0])] * len(self._chunks)
        if a.size != len(self):
            raise ConfigError(f"length mismatch: {len(self)} vs {a.size}")
        s = self.context.slots
        return [a[i * s : (i + 1) * s].tolist() for i in range(len(self._chunks))]

    def __add__(self, other: "CKKSVector") -> "CKKSVector":
        if not isinstance(other, CKKSVector):
            return NotImplemented
        self._check(other)
        return CKKSVector(self.context, [a + b for a, b in zip(self._chunks, other._chunks)], self._len)

    def __sub__(self, other: "CKKSVector") -> "CKKSVector":
        if not isinstance(other, CKKSVector):
            return NotImplemented
        self._check(other)
        return CKKSVector(self.context, [a - b for a, b in zip(self._chunks, other._chunks)], self._len)

    def add_plain(self, values) -> "CKKSVector":
        """Add a plaintext scalar or vector."""
        return CKKSVector(self.context, [c + p for c, p in zip(self._chunks, self._plain_chunks(values))], self._len)

    def mul_plain(self, values) -> "CKKSVector":
        """Multiply by a plaintext scalar or vector (uses one level of the modulus chain)."""
        return CKKSVector(self.context, [c * p for c, p in zip(self._chunks, self._plain_chunks(values))], self._len)

    def sum(self) -> "CKKSVector":
        """Sum of all values as a length-1 vector (needs Galois keys)."""
        if not self._chunks:
            return self.context.encrypt([0.0])
        total = self._chunks[0].sum()
        for c in self._chunks[1:]:
            total = total + c.sum()
        return CKKSVector(self.context, [total], 1)

    def dot(self, values) -> "CKKSVector":
        """Inner product with a plaintext vector, as a length-1 vector."""
        parts = [c.dot(p) for c, p in zip(self._chunks, self._plain_chunks(values))]
        if not parts:
            return self.context.encrypt([0.0])
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return CKKSVector(self.context, [total], 1)

    def matvec_strided(self, X, *, mask) -> "CKKSVector":
        """``Xᵀ v`` for a plain matrix ``X``, packed into one ciphertext, masked and re-randomized.

        Parameters
        ----------
        X : array-like of shape (len(self), f)
            Plain values (any finite floats; products are taken at scale ``2^40``).
        mask : array-like of complex, shape (slots,)
            Added to the result slot by slot as a fresh public-key encryption (which also
            re-randomizes it: without this the owner of the secret key, if it made ``v``,
            could recover ``X`` from the ciphertext components). Mask the real and the
            imaginary parts: both carry products.

        Returns
        -------
        CKKSVector
            One ciphertext of ``slots`` values with ``stride = F = stride_for(f)``: with
            ``Y[r, c] = X[r, c] + 1j X[r, F + c]`` (columns past ``f`` are 0), slot ``i`` holds
            ``mask[i] + sum_{k<F} v[r] Y[r, i mod F]``, ``r = i + k`` (rows past the end count as 0;
            several chunks of ``v`` add up), so the real parts of slots ``i = j (mod F)`` sum to
            ``(Xᵀ v)_j`` and their imaginary parts to ``(Xᵀ v)_(F+j)``, plus those mask values
            (:meth:`CKKSContext.decrypt_strided`).

        Notes
        -----
        Baby-step/giant-step diagonals: with ``s`` baby steps, ``inner_g = sum_b rot(v, b) ⊙ D_{g,b}``,
        ``D_{g,b}[i] = Y[i+b, (i - g s) mod F]``, and the result ``sum_g rot(inner_g, g s)`` by Horner's
        rule: ``s - 1`` rotations by 1, ``F/s - 1`` rotations by ``s``, ``F`` plaintext products per chunk
        (one rescale in all). For up to 16 columns: 4 rotations and 8 products. Needs rotation keys for
        steps 1 and ``s`` (:data:`ROTATION_STEPS`).
        """
        ctx = self.context
        S = ctx.slots
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != len(self) or X.shape[1] < 1:
            raise ConfigError(f"matvec_strided: X must have shape ({len(self)}, f >= 1); got {X.shape}")
        f = X.shape[1]
        F = stride_for(f)
        if F > S:
            raise ConfigError(f"matvec_strided: {f} columns exceed {2 * S} (two per slot)")
        m = np.asarray(mask, dtype=np.complex128).ravel()
        if m.size != S:
            raise ConfigError(f"matvec_strided: the mask must have {S} values; got {m.size}")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(m))):
            raise ConfigError("cannot multiply or mask with NaN or infinite values")
        s = _baby_step(F)
        G = F // s
        seal = ctx._seal()
        ev, enc = seal.evaluator, seal.encoder
        keys = None  # one GaloisKeys object; _rotation checks that it holds each step used
        if s > 1:
            keys = ctx._rotation(1)
        if G > 1:
            keys = ctx._rotation(s)
        scale = float(ctx._ctx.global_scale)
        mask_bits = float(np.log2(np.abs(m).max() + 1.0))
        for chunk in self._chunks:  # room for the product after its rescale (else SEAL would wrap silently)
            ct = chunk.data.ciphertext()[0]
            primes = [q.bit_count() for q in seal.context.get_context_data(ct.parms_id()).parms().coeff_modulus()]
            out_scale_bits = np.log2(ct.scale) + np.log2(scale) - primes[-1]
            if len(primes) < 2 or out_scale_bits + max(mask_bits, 20.0) + 12 >= sum(primes[:-1]):
                raise ConfigError("matvec_strided: the vector has no level left for a product at this scale")
        idx = np.arange(S)
        inner = [None] * G
        for t, chunk in enumerate(self._chunks):
            part = X[t * S : (t + 1) * S]
            if not part.any():
                continue
            Xc = np.zeros((S, 2 * F))
            Xc[: part.shape[0], :f] = part
            Y = Xc[:, :F] + 1j * Xc[:, F:]
            babies = [chunk.data.ciphertext()[0]]
            for _ in range(1, s):
                r = sealapi.Ciphertext()
                ev.rotate_vector(babies[-1], 1, keys, r)
                babies.append(r)
            for g in range(G):
                for b in range(s):
                    d = Y[(idx + b) % S, (idx - g * s) % F]
                    if not d.any():
                        continue
                    pt = sealapi.Plaintext()
                    enc.encode(d.tolist(), babies[b].parms_id(), scale, pt)
                    prod = sealapi.Ciphertext()
                    ev.multiply_plain(babies[b], pt, prod)
                    if inner[g] is None:
                        inner[g] = prod
                    else:
                        ev.add_inplace(inner[g], prod)
        acc = None
        for g in range(G - 1, -1, -1):  # Horner: acc = rot(acc, s) + inner_g
            if acc is not None:
                r = sealapi.Ciphertext()
                ev.rotate_vector(acc, s, keys, r)
                acc = r
            if inner[g] is not None:
                if acc is None:
                    acc = inner[g]
                else:
                    ev.add_inplace(acc, inner[g])
        pt = sealapi.Plaintext()
        if acc is None:  # X is all zero: the result is the mask alone
            acc = sealapi.Ciphertext()
            enc.encode(m.tolist(), scale, pt)
            seal.encryptor.encrypt(pt, acc)
        else:
            ev.rescale_to_next_inplace(acc)
            enc.encode(m.tolist(), acc.parms_id(), acc.scale, pt)
            fresh = sealapi.Ciphertext()
            seal.encryptor.encrypt(pt, fresh)
            ev.add_inplace(acc, fresh)
        data = _tenseal_vector_bytes([_seal_to_bytes(acc)], [S], scale)
        return CKKSVector(ctx, [ts.ckks_vector_from(ctx._ctx, data)], S, stride=F)

    def to_blob(self) -> CipherBlob:
        """One opaque serialization (length-prefixed ciphertexts) with the key fingerprint."""
        data = b"".join(struct.pack(">Q", len(s)) + s for s in (c.serialize() for c in self._chunks))
        return CipherBlob(
            scheme=SCHEME,
            key_fingerprint=self.context.fingerprint,
            width=0,
            count=1,
            data=data,
            meta={"length": self._len, "chunks": len(self._chunks), **({"stride": self._stride} if self._stride else {})},
        )

    @classmethod
    def from_blob(cls, context: CKKSContext, blob: CipherBlob) -> "CKKSVector":
        """Same as ``context.vector_from_blob(blob)``."""
        return context.vector_from_blob(blob)
