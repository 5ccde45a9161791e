"""A CKKS context: keys (the secret one never leaves unless asked), encryption, decryption and level checks."""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Sequence

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

from ...errors import ConfigError, DecryptionError
from ..blob import CipherBlob
from ._seal import _Seal, _seal_from_bytes, _seal_to_bytes
from .vector import SCHEME, CKKSVector

__all__ = ["CKKSContext"]


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
