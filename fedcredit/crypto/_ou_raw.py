"""Raw Okamoto-Uchiyama arithmetic and batch kernels on ``gmpy2.mpz`` (hazmat).

No checks and no policy: :mod:`fedcredit.crypto.ou` owns key sizes, the plaintext
guard, re-randomization before export and blob validation.  Nothing here logs or
formats a key or a plaintext.

Conventions: ``n = p^2 q``, ``h = g^n mod n``, a ciphertext is
``c = g^m h^r mod n``.  Decryption: ``m = L(c^(p-1) mod p^2) / L(g^(p-1) mod p^2) mod p``
with ``L(x) = (x - 1) / p``.

Kernel choice (measured on the 2-core development machine, benchmarks/README.md,
"OU backend"): one modular multiplication of two 2048-bit ``mpz`` costs about as much
as the Python step around it, so the histogram kernel (``bucket_sums``, shared with
Paillier in :mod:`fedcredit.crypto._buckets`) multiplies each row's ciphertext into its
bucket's accumulator, one pass per group of features; sorting rows by bin first,
pairwise halving, lazy reduction and python-flint's ``fmpz_mod`` were no faster (flint
adds a conversion per ciphertext).  SecretFlow HEU's C++ bucket sum is an opt-in
accelerator through :mod:`fedcredit.crypto._ou_heu`.
"""

from __future__ import annotations

import os
import secrets
from concurrent.futures import ThreadPoolExecutor

import gmpy2
from gmpy2 import mpz, powmod

from ._buckets import feature_bucket_sums as bucket_sums

__all__ = ["FixedBase", "OwnerEngine", "PublicEngine", "bucket_sums", "horner_pack", "powmod_many", "product", "random_units_nth_power"]


class FixedBase:
    """``base^e mod m`` for ``0 <= e < 2^exp_bits`` from a table of ``base^(j 2^(w i))``.

    A power costs one multiplication per non-final ``w``-bit window of ``e`` (no
    squarings); short exponents stop early.  ``base`` is public or the owner's own
    key material -- never a per-process secret whose character could mark rows.
    """

    def __init__(self, base, modulus, exp_bits: int, window: int = 8):
        self.modulus = m = mpz(modulus)
        self.window = w = int(window)
        self.mask = (1 << w) - 1
        self.exp_bits = int(exp_bits)
        rows = []
        b = mpz(base) % m
        for _ in range(-(-self.exp_bits // w)):
            row = [mpz(1)] * (1 << w)
            row[1] = b
            for j in range(2, 1 << w):
                row[j] = row[j - 1] * b % m
            rows.append(row)
            b = row[-1] * b % m
        self.table = rows

    def pow(self, e):
        """``base^e mod m``; ``e`` must be in ``[0, 2^exp_bits)``."""
        tab, mask, w, m = self.table, self.mask, self.window, self.modulus
        acc = tab[0][e & mask]
        e >>= w
        i = 1
        while e:
            acc = acc * tab[i][e & mask] % m
            e >>= w
            i += 1
        return acc


def product(cs, modulus):
    """Product of ``cs`` mod ``modulus`` (``1`` when empty)."""
    it = iter(cs)
    acc = next(it, None)
    if acc is None:
        return mpz(1)
    for c in it:
        acc = acc * c % modulus
    return acc


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def powmod_many(bases: list, exp, modulus, parallel: bool | None = None) -> list:
    """``[b^exp mod modulus for b in bases]`` in ``gmpy2.powmod_base_list`` (GIL-free), split over
    one thread per core when ``parallel`` (None: for 16 or more bases)."""
    count = len(bases)
    workers = min(_cores(), count) if (parallel or (parallel is None and count >= 16)) else 1
    if workers <= 1:
        return list(gmpy2.powmod_base_list(bases, exp, modulus)) if count else []
    step = -(-count // workers)
    with ThreadPoolExecutor(max_workers=workers) as ex:
        parts = list(ex.map(lambda lo: gmpy2.powmod_base_list(bases[lo : lo + step], exp, modulus), range(0, count, step)))
    return [v for part in parts for v in part]


def random_units_nth_power(n, count: int, parallel: bool | None = None) -> list:
    """``rho^n mod n`` for fresh ``rho`` uniform in ``Z_n^*`` (``secrets``), one per output.

    A uniform element of the whole subgroup of ``n``-th powers, whatever the key owner
    chose for ``g`` and ``h``: the re-randomizer for ciphertexts that go to the key owner.
    Runs in :func:`powmod_many` (GIL-free, one thread per core).
    """
    n = mpz(n)
    rhos = []
    while len(rhos) < count:
        rho = mpz(secrets.randbelow(int(n) - 2) + 2)
        if gmpy2.gcd(rho, n) == 1:
            rhos.append(rho)
    return powmod_many(rhos, n, n, parallel)


def horner_pack(cs: list, k: int, item_bits: int, modulus, parallel: bool | None = None) -> list:
    """Cipher compression: ``prod_i c_{jk+i}^(2^(i item_bits))`` for each group ``j`` of ``k``.

    Horner over all groups at once: one batched (GIL-free) ``acc^(2^item_bits)`` per
    position, then one product per group.  A short last group is padded at the top with
    ``1`` (an encryption of 0), which leaves its plaintext unchanged.
    """
    if not cs:
        return []
    groups = -(-len(cs) // k)
    padded = list(cs) + [mpz(1)] * (groups * k - len(cs))
    shift = mpz(1) << int(item_bits)
    acc = padded[k - 1 :: k]
    for i in range(k - 2, -1, -1):
        acc = powmod_many(acc, shift, modulus, parallel)
        acc = [a * c % modulus for a, c in zip(acc, padded[i::k])]
    return acc


class PublicEngine:
    """Encryption with the public key only: ``c = g^m h^r mod n``, ``r`` uniform below ``2^r_bits``.

    ``g`` and ``h`` are public; both powers use fixed-base tables.
    """

    def __init__(self, n, g, h, m_bits: int, r_bits: int):
        self.n = n = mpz(n)
        self.r_bits = int(r_bits)
        self.tg = FixedBase(g, n, m_bits)
        self.th = FixedBase(h, n, r_bits)

    def encrypt(self, ms) -> list:
        """Encrypt signed integers (``|m| < 2^m_bits``, checked by the caller)."""
        n, tg, th = self.n, self.tg, self.th
        randbits, rb, inv = secrets.randbits, self.r_bits, gmpy2.invert
        out = []
        for m in ms:
            gm = tg.pow(m) if m >= 0 else inv(tg.pow(-m), n)
            out.append(gm * th.pow(randbits(rb)) % n)
        return out


class OwnerEngine:
    """Encryption and decryption for the key owner, with CRT over ``p^2`` and ``q``.

    Encryption is ``c = g^m h^r`` with a fresh **short** ``r`` uniform below ``2^r_bits``
    (``r_bits = short_exponent_bits(|n|)``: 256 at 2048 and 3072 bits), evaluated modulo
    ``p^2`` and ``q`` from fixed-base tables of ``h`` and ``g`` and recombined (CRT).  The
    short exponent is the assumption the Paillier owner path already makes; the argument
    (Pollard's kangaroo over ``r``: ``2^(r_bits/2)`` steps) is in docs/crypto.md, "OU".
    ``h`` walks modulo ``p^2`` and ``q`` share one loop (half the interpreter overhead).
    """

    def __init__(self, p, q, g, h, m_bits: int, r_bits: int, window: int = 10):
        self.p, self.q = p, q = mpz(p), mpz(q)
        self.p2 = p2 = p * p
        self.n = p2 * q
        self.r_bits = int(r_bits)
        self.pm1 = p - 1
        self.p2_inv_q = gmpy2.invert(p2, q)
        g, h = mpz(g), mpz(h)
        self.gp_inv = gmpy2.invert((powmod(g % p2, p - 1, p2) - 1) // p, p)
        self.tg_p = FixedBase(g, p2, m_bits, window)
        self.tg_q = FixedBase(g, q, m_bits, window)
        self.th_p = FixedBase(h, p2, self.r_bits, window)
        self.th_q = FixedBase(h, q, self.r_bits, window)

    def _crt(self, cp, cq):
        return cp + self.p2 * ((cq - cp) * self.p2_inv_q % self.q)

    def _walk(self, count: int) -> list:
        """``(h^r mod p^2, h^r mod q)`` for ``count`` fresh short ``r``."""
        randbits, rb = secrets.randbits, self.r_bits
        p2, q = self.p2, self.q
        tp, tq = self.th_p.table, self.th_q.table
        tp0, tq0, rows = tp[0], tq[0], list(zip(tp[1:], tq[1:]))
        mask, w = self.th_p.mask, self.th_p.window
        out = []
        for _ in range(count):
            r = randbits(rb)
            e = r & mask
            ap, aq = tp0[e], tq0[e]
            r >>= w
            for rp, rq in rows:  # the exponent is the same on both sides: one index per row
                e = r & mask
                ap = ap * rp[e] % p2
                aq = aq * rq[e] % q
                r >>= w
            out.append((ap, aq))
        return out

    def randomizers(self, count: int) -> list:
        """``h^r mod n`` for ``count`` fresh short ``r``: the randomness of :meth:`encrypt`, computed ahead."""
        crt = self._crt
        return [crt(ap, aq) for ap, aq in self._walk(count)]

    def encrypt(self, ms, hs=()) -> list:
        """Encrypt signed integers (``|m| < 2^m_bits``, checked by the caller).

        ``hs``: values of :meth:`randomizers` (each used once) for the first ``len(hs)`` plaintexts;
        the rest draw fresh ``r`` here. Either way a ciphertext is ``g^m h^r`` with the same ``r``.
        """
        p2, q, crt, n, g_pow = self.p2, self.q, self._crt, self.n, self._g_pow
        k = min(len(hs), len(ms))
        out = [crt(*g_pow(m)) * hr % n for m, hr in zip(ms[:k], hs[:k])]
        for m, (ap, aq) in zip(ms[k:], self._walk(len(ms) - k)):
            gp, gq = g_pow(m)
            out.append(crt(gp * ap % p2, gq * aq % q))
        return out

    def _g_pow(self, m) -> tuple:
        """``(g^m mod p^2, g^m mod q)`` for a signed ``m``."""
        if m >= 0:
            return self.tg_p.pow(m), self.tg_q.pow(m)
        return gmpy2.invert(self.tg_p.pow(-m), self.p2), gmpy2.invert(self.tg_q.pow(-m), self.q)

    def obfuscate(self, cs) -> list:
        """Multiply each ciphertext by a fresh ``h^r`` (an encryption of 0, short ``r``)."""
        p2, q, crt = self.p2, self.q, self._crt
        return [crt(c * rp % p2, c * rq % q) for c, (rp, rq) in zip(cs, self._walk(len(cs)))]

    def decrypt(self, cs, parallel: bool | None = None) -> list:
        """Plaintexts in ``[0, p)`` -- unchecked: :mod:`fedcredit.crypto.ou` applies the guard."""
        p, p2, pm1, gp_inv = self.p, self.p2, self.pm1, self.gp_inv
        # GIL-free and split over one thread per core from 16 values (the guest decrypts while hosts wait)
        xs = powmod_many([c % p2 for c in cs], pm1, p2, parallel)
        return [(x - 1) // p * gp_inv % p for x in xs]
