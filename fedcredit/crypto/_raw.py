"""Raw Paillier arithmetic on ``gmpy2.mpz`` (hazmat: no checks, no obfuscation policy).

Everything here works on plain integers and is used by :mod:`fedcredit.crypto.paillier`
(which owns the policy: key sizes, obfuscation before export, blob checks) and by the
process-pool workers in :mod:`fedcredit.crypto.pool` (which receive key material as
bytes and rebuild their engines here).  Nothing in this module logs or formats a key
or a plaintext.

Conventions: ``g = n + 1`` so ``g^m = 1 + m n (mod n^2)``; a ciphertext is
``c = (1 + m n) * r^n mod n^2``.

Two kinds of obfuscator (the factor ``r^n``):

* **fixed base** -- ``h^a`` with ``h = r0^n`` fixed per engine and a fresh short ``a``
  (:class:`FixedBase`): about 60 times cheaper, used for *fresh* encryptions and for
  re-randomization whose recipient is not the key owner;
* **uniform** -- ``r^n`` with ``r`` uniform in ``Z_n^*`` (:func:`uniform_obfuscators`):
  used whenever a non-owner re-randomizes a ciphertext that may reach the key owner.
  The key owner knows ``p`` and ``q`` and so sees ``r mod n`` of every ciphertext; a fixed
  base lies in the proper subgroup ``<r0>`` of ``Z_n^*`` (which is never cyclic), so some
  character (a Legendre symbol mod ``p`` or ``q``) is constant on ``h^a`` and the owner
  reads that character of the *summed rows'* randomness -- i.e. which rows went into a sum.
  Only a uniform ``r`` hides it.  See the module docstring of
  :mod:`fedcredit.crypto.paillier` for the assumptions.
"""

from __future__ import annotations

import secrets

import gmpy2
import numpy as np
from gmpy2 import mpz, powmod

__all__ = [
    "FixedBase",
    "random_base",
    "uniform_obfuscators",
    "security_bits",
    "short_exponent_bits",
    "ints_to_bytes",
    "bytes_to_ints",
    "PublicEngine",
    "OwnerEngine",
    "group_sum",
    "mul_plain",
]

_DEFAULT_WINDOW = 10


def security_bits(n_bits: int) -> int:
    """Symmetric-equivalent security of an RSA/Paillier modulus (NIST SP 800-57)."""
    if n_bits >= 15360:
        return 256
    if n_bits >= 7680:
        return 192
    if n_bits >= 3072:
        return 128
    if n_bits >= 2048:
        return 112
    return 80


def short_exponent_bits(n_bits: int) -> int:
    """Length of the random exponent ``a`` in the obfuscator ``h^a``.

    Twice the security level, and never below 256 bits (so 256 at 2048 and
    3072 bits): Pollard's lambda recovers a short exponent in about
    ``2^(bits/2)`` steps, so this keeps the best known attack on the
    obfuscator at or above the cost of factoring ``n``.
    """
    return max(256, 2 * security_bits(n_bits))


class FixedBase:
    """Fixed-base windowed exponentiation ``base^e mod m`` for exponents below ``2^exp_bits``.

    Precomputes ``table[i][j] = base^(j * 2^(w i)) mod m`` so that ``base^e`` costs
    ``ceil(exp_bits / w) - 1`` modular multiplications and no squarings.

    Parameters
    ----------
    base, modulus : mpz
    exp_bits : int
        Largest exponent size supported.
    window : int, default=10
        Window width in bits (table has ``ceil(exp_bits/w) * 2^w`` entries).
    """

    def __init__(self, base, modulus, exp_bits: int, window: int = _DEFAULT_WINDOW):
        self.modulus = m = mpz(modulus)
        self.window = w = int(window)
        self.exp_bits = int(exp_bits)
        self.mask = (1 << w) - 1
        n_win = -(-self.exp_bits // w)
        table = []
        b = mpz(base) % m
        for _ in range(n_win):
            row = [mpz(1)] * (1 << w)
            row[1] = b
            for j in range(2, 1 << w):
                row[j] = row[j - 1] * b % m
            table.append(row)
            b = row[-1] * b % m
        self.table = table

    def pow(self, e: int):
        """``base^e mod m`` for ``0 <= e < 2^exp_bits``."""
        tab = self.table
        mask, w, m = self.mask, self.window, self.modulus
        acc = tab[0][e & mask]
        e >>= w
        for row in tab[1:]:
            acc = acc * row[e & mask] % m
            e >>= w
        return acc

    def random_pows(self, count: int) -> list:
        """``count`` values ``base^a`` with fresh uniformly random ``a < 2^exp_bits`` (``secrets``)."""
        tab = self.table
        mask, w, m = self.mask, self.window, self.modulus
        rows = tab[1:]
        out = []
        append = out.append
        randbits = secrets.randbits
        eb = self.exp_bits
        for _ in range(count):
            e = randbits(eb)
            acc = tab[0][e & mask]
            e >>= w
            for row in rows:
                acc = acc * row[e & mask] % m
                e >>= w
            append(acc)
        return out


def random_base(n):
    """A random ``r0`` in ``Z_n^*`` with Jacobi symbol ``(r0 / n) = -1`` (``secrets``).

    The Jacobi symbol of a ciphertext mod ``n`` equals that of its ``r`` and anyone can
    compute it.  With ``(r0 / n) = -1`` the symbol of ``r0^a`` is ``(-1)^a``, a fresh fair
    bit per ciphertext as for textbook randomness; with ``+1`` (half of all ``r0``) every
    fixed-base obfuscator would have symbol ``+1``, and a non-owner could read the symbol
    of the randomness under a re-randomization.
    """
    n = mpz(n)
    while True:
        r0 = mpz(secrets.randbelow(int(n) - 2) + 2)
        if gmpy2.jacobi(r0, n) == -1:  # also excludes gcd(r0, n) > 1 (symbol 0)
            return r0


def uniform_obfuscators(n, count: int) -> list:
    """``count`` values ``r^n mod n^2`` with ``r`` uniform in ``Z_n^*`` (textbook; one full
    exponentiation each, ~9 ms at 2048 bits)."""
    n = mpz(n)
    nsq = n * n
    hi = int(n) - 1
    out = []
    for _ in range(count):
        r = mpz(secrets.randbelow(hi) + 1)
        while gmpy2.gcd(r, n) != 1:  # pragma: no cover - probability ~2^-1000
            r = mpz(secrets.randbelow(hi) + 1)
        out.append(powmod(r, n, nsq))
    return out


# ---------------------------------------------------------------- byte conversion
def ints_to_bytes(values, width: int) -> bytes:
    """Concatenate non-negative integers as fixed-width big-endian words."""
    to_mpz = mpz
    return b"".join(to_mpz(v).to_bytes(width, "big") for v in values)


def bytes_to_ints(data: bytes, width: int) -> list:
    """Inverse of :func:`ints_to_bytes`; returns a list of ``mpz``."""
    fb = mpz.from_bytes
    mv = memoryview(data)
    return [fb(mv[i : i + width], "big") for i in range(0, len(data), width)]


def _obj_array(values) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


# ---------------------------------------------------------------- engines
class PublicEngine:
    """Encryption with only the public key: ``c = (1 + m n) * h^a mod n^2``.

    ``h = r0^n mod n^2`` for a secret ``r0`` drawn by this engine (:func:`random_base`:
    a random ``n``-th residue that no other party knows); ``a`` is fresh per ciphertext,
    ``short_exponent_bits(n)`` long.  :meth:`obfuscate` (for ciphertexts that may reach
    the key owner) uses uniform ``r^n`` instead; :meth:`obfuscate_fixed` keeps the fixed
    base for recipients that are not the key owner.
    """

    def __init__(self, n, window: int = 8):
        self.n = n = mpz(n)
        self.nsq = n * n
        h = powmod(random_base(n), n, self.nsq)
        self.base = FixedBase(h, self.nsq, short_exponent_bits(n.bit_length()), window)

    def obfuscators(self, count: int) -> list:
        return self.base.random_pows(count)

    def encrypt(self, ms) -> list:
        """Encrypt integers already reduced to ``[0, n)``."""
        n, nsq = self.n, self.nsq
        obf = self.base.random_pows(len(ms))
        return [(r + n * (m * r % n)) % nsq for m, r in zip(ms, obf)]

    def obfuscate(self, cs) -> list:
        """Re-randomize with uniform ``r^n`` (safe whoever receives the result)."""
        nsq = self.nsq
        obf = uniform_obfuscators(self.n, len(cs))
        return [c * r % nsq for c, r in zip(cs, obf)]

    def obfuscate_fixed(self, cs) -> list:
        """Re-randomize with the fixed base: only for results the key owner never receives."""
        nsq = self.nsq
        obf = self.base.random_pows(len(cs))
        return [c * r % nsq for c, r in zip(cs, obf)]


class OwnerEngine:
    """Encryption and decryption for the key owner, with CRT over ``p^2`` and ``q^2``.

    The obfuscator is ``h^a`` with ``h = r0^n`` (a random ``n``-th residue known
    only to this engine) evaluated separately mod ``p^2`` and ``q^2`` with
    fixed-base window tables, then recombined.  :meth:`obfuscate` keeps the fixed base:
    the owner re-randomizes its own ciphertexts for parties that do not know ``p, q``.
    """

    def __init__(self, p, q, window: int = _DEFAULT_WINDOW):
        p, q = mpz(p), mpz(q)
        if p > q:
            p, q = q, p
        self.p, self.q = p, q
        self.n = n = p * q
        self.nsq = n * n
        self.psq, self.qsq = p * p, q * q
        self.qsq_inv = gmpy2.invert(self.qsq, self.psq)
        # decryption constants (phe's naming): hp = L_p(g^(p-1) mod p^2)^-1 mod p
        self.p_inv_q = gmpy2.invert(p, q)
        self.hp = gmpy2.invert((powmod(n + 1, p - 1, self.psq) - 1) // p, p)
        self.hq = gmpy2.invert((powmod(n + 1, q - 1, self.qsq) - 1) // q, q)
        r0 = random_base(n)
        eb = short_exponent_bits(n.bit_length())
        self.base_p = FixedBase(powmod(r0, n, self.psq), self.psq, eb, window)
        self.base_q = FixedBase(powmod(r0, n, self.qsq), self.qsq, eb, window)
        self.exp_bits = eb

    def _obfuscators_crt(self, count: int):
        """Pairs (h^a mod p^2, h^a mod q^2) with one fresh ``a`` per pair."""
        bp, bq = self.base_p, self.base_q
        tp, tq = bp.table, bq.table
        mask, w = bp.mask, bp.window
        psq, qsq = self.psq, self.qsq
        rows_p, rows_q = tp[1:], tq[1:]
        randbits = secrets.randbits
        eb = self.exp_bits
        outp, outq = [], []
        for _ in range(count):
            e = randbits(eb)
            j = e & mask
            ap, aq = tp[0][j], tq[0][j]
            e >>= w
            for rp, rq in zip(rows_p, rows_q):
                j = e & mask
                ap = ap * rp[j] % psq
                aq = aq * rq[j] % qsq
                e >>= w
            outp.append(ap)
            outq.append(aq)
        return outp, outq

    def encrypt(self, ms) -> list:
        """Encrypt integers already reduced to ``[0, n)``."""
        n, psq, qsq, qsq_inv = self.n, self.psq, self.qsq, self.qsq_inv
        op, oq = self._obfuscators_crt(len(ms))
        out = []
        append = out.append
        for m, rp, rq in zip(ms, op, oq):
            mn = m * n
            cp = (mn + 1) * rp % psq
            cq = (mn + 1) * rq % qsq
            append(cq + qsq * ((cp - cq) * qsq_inv % psq))
        return out

    def obfuscate(self, cs) -> list:
        op, oq = self._obfuscators_crt(len(cs))
        psq, qsq, qsq_inv = self.psq, self.qsq, self.qsq_inv
        out = []
        for c, rp, rq in zip(cs, op, oq):
            cp = c * rp % psq
            cq = c * rq % qsq
            out.append(cq + qsq * ((cp - cq) * qsq_inv % psq))
        return out

    def decrypt(self, cs) -> list:
        """Plaintexts in ``[0, n)`` (CRT decryption, as in phe but batched)."""
        p, q, psq, qsq = self.p, self.q, self.psq, self.qsq
        hp, hq, p_inv_q = self.hp, self.hq, self.p_inv_q
        pm1, qm1 = p - 1, q - 1
        out = []
        for c in cs:
            mp = (powmod(c, pm1, psq) - 1) // p * hp % p
            mq = (powmod(c, qm1, qsq) - 1) // q * hq % q
            out.append(mp + ((mq - mp) * p_inv_q % q) * p)
        return out


# ---------------------------------------------------------------- homomorphic ops
def mul_plain(cs, ks, nsq) -> list:
    """``c_i^(k_i) mod n^2`` for non-negative ``k_i`` (pairs) or one shared ``k``."""
    if isinstance(ks, (int, type(mpz(0)))):
        k = mpz(ks)
        return [powmod(c, k, nsq) for c in cs]
    return [powmod(c, k, nsq) for c, k in zip(cs, ks)]


def group_sum(cs: np.ndarray, group_ids: np.ndarray, n_groups: int, nsq) -> list:
    """Homomorphic sum (product mod ``n^2``) of ciphertexts per group; empty groups give 1.

    Sorts once, then reduces each group pairwise with vectorized object-array
    products (one C-level loop per halving instead of one Python step per value).
    """
    order = np.argsort(group_ids, kind="stable")
    sorted_ids = group_ids[order]
    sorted_cs = cs[order]
    bounds = np.searchsorted(sorted_ids, np.arange(n_groups + 1))
    out = [mpz(1)] * n_groups
    for g in range(n_groups):
        lo, hi = bounds[g], bounds[g + 1]
        if hi == lo:
            continue
        out[g] = _reduce_product(sorted_cs[lo:hi], nsq)
    return out


def _reduce_product(a, nsq):
    """Product of a non-empty sequence mod ``nsq`` by pairwise halving (list comprehensions
    are ~20% faster than object-array arithmetic for gmpy2 values)."""
    a = list(a)
    while len(a) > 1:
        odd = a[-1] if len(a) % 2 else None
        a = [x * y % nsq for x, y in zip(a[0::2], a[1::2])]
        if odd is not None:
            a.append(odd)
    return a[0]


def mul_pairs(xs, ys, nsq) -> list:
    """Elementwise ``x * y mod nsq``."""
    return [x * y % nsq for x, y in zip(xs, ys)]
