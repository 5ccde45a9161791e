"""Paillier engine vs plain phe (with gmpy2), same run: values/s per op, 1 core and all cores.

Rows have ``op``, ``bits``, ``cores``, ``ours_per_s``, ``phe_per_s``, ``ratio``
(medians over ``--repeats``).  ``decrypt`` rows also carry ``lambda_per_s``
(textbook ``L(c^lambda mod n^2) * mu`` decryption) and ``ratio_vs_lambda``.
All-core rows use the engine's process pool for ours and a process pool of the
same size running phe for the baseline.  Also reports CKKS throughput/precision.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from fedcredit.crypto import compress, generate_keypair
from fedcredit.compute import local as local_pool
from fedcredit.protocols.secureboost.guest import GHCodec
from fedcredit.protocols.secureboost.spec import GH_BITS


def _quantize(g, h) -> np.ndarray:
    """SecureBoost's fixed-point (g, h) rows: multiples of 2**-GH_BITS, int64."""
    return np.rint(np.ldexp(np.stack([g, h], axis=1), GH_BITS)).astype(np.int64)


def add_arguments(parser) -> None:
    parser.add_argument("--bits", type=int, nargs="+", default=[2048, 3072])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=0, help="values per measurement (0: per-op defaults)")
    parser.add_argument("--no-ckks", action="store_true")


def _rate(fn, count: int, repeats: int) -> float:
    """Median values/s of ``fn()`` processing ``count`` values."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return count / statistics.median(times)


# ---------------------------------------------------------------- phe workers (all-core baseline)
def _phe_encrypt_chunk(n: int, values: list) -> int:
    from phe import paillier

    pk = paillier.PaillierPublicKey(n)
    for v in values:
        pk.encrypt(v)
    return len(values)


def _phe_decrypt_chunk(n: int, p: int, q: int, cts: list) -> int:
    from phe import paillier

    pk = paillier.PaillierPublicKey(n)
    sk = paillier.PaillierPrivateKey(pk, p, q)
    for c in cts:
        sk.decrypt(paillier.EncryptedNumber(pk, c, 0))
    return len(cts)


def _phe_pool_rate(pool, fn, chunks: list[tuple], count: int, repeats: int) -> float:
    def go():
        for f in [pool.submit(fn, *c) for c in chunks]:
            f.result()

    return _rate(go, count, repeats)


def _row(op, bits, cores, ours, phe, **extra) -> dict:
    row = {"op": op, "bits": bits, "cores": cores, "ours_per_s": round(ours, 1), "phe_per_s": round(phe, 1),
           "ratio": round(ours / phe, 2) if phe else None}
    row.update(extra)
    return row


def _bench_bits(bits: int, args, rows: list, workers: int, phe_pool) -> None:
    from gmpy2 import mpz, powmod, invert
    from phe import paillier

    reps = args.repeats
    quick = getattr(args, "quick", False)
    pk, sk = generate_keypair(bits)
    ppk, psk = pk.to_phe(), sk.to_phe()
    rng = np.random.default_rng(0)
    scale = 1 if bits <= 2048 else 0.4
    n_phe = max(20, int((args.n or (60 if quick else 200)) * scale))
    n_ours = max(100, int((args.n or (500 if quick else 3000)) * scale))
    ints = [int(v) for v in rng.integers(-(2**40), 2**40, size=n_ours)]
    sk._get_engine()
    pk._get_engine()

    # ---- encrypt (phe has one encrypt path: r^n with the public key)
    phe_enc = _rate(lambda: [ppk.encrypt(v) for v in ints[:n_phe]], n_phe, reps)
    owner = _rate(lambda: sk.encrypt_ints(ints, parallel=False), n_ours, reps)
    public = _rate(lambda: pk.encrypt_ints(ints, parallel=False), n_ours, reps)
    rows.append(_row("encrypt_owner", bits, 1, owner, phe_enc))
    rows.append(_row("encrypt_public", bits, 1, public, phe_enc))

    # ---- decrypt: ours (CRT, batched) vs phe decrypt vs textbook lambda decryption
    cv = sk.encrypt_ints(ints, parallel=False)
    n_dec = min(n_ours, max(40, n_phe * 2))
    cvd = cv[:n_dec]
    cts = cvd.ciphertexts()
    enc_nums = [paillier.EncryptedNumber(ppk, c, 0) for c in cts]
    phe_dec = _rate(lambda: [psk.decrypt(e) for e in enc_nums], n_dec, reps)
    ours_dec = _rate(lambda: sk.decrypt_ints(cvd, parallel=False), n_dec, reps)
    n_, nsq = mpz(pk.n), mpz(pk.nsquare)
    lam = mpz((sk._p - 1) * (sk._q - 1))
    mu = invert(lam, n_)
    mcts = [mpz(c) for c in cts]
    lam_dec = _rate(lambda: [(powmod(c, lam, nsq) - 1) // n_ * mu % n_ for c in mcts], n_dec, reps)
    rows.append(_row("decrypt", bits, 1, ours_dec, phe_dec, lambda_per_s=round(lam_dec, 1),
                     ratio_vs_lambda=round(ours_dec / lam_dec, 2)))

    # ---- addition / plain multiplication / sum / histogram
    other = cv.obfuscate(for_key_owner=False)
    # re-randomization: fixed base (recipient is not the key owner) vs uniform r^n (may reach the owner)
    n_obf = min(n_ours, 200)
    d = (cv + other)[:n_obf]
    fixed_obf = _rate(lambda: d.obfuscate(parallel=False, for_key_owner=False), n_obf, reps)
    uniform_obf = _rate(lambda: d.obfuscate(parallel=False), n_obf, reps)
    rows.append(_row("rerandomize_uniform", bits, 1, uniform_obf, phe_enc,
                     fixed_base_per_s=round(fixed_obf, 1), note="phe baseline: one textbook encryption"))
    phe_a = [paillier.EncryptedNumber(ppk, c, 0) for c in cv.ciphertexts()]
    phe_b = [paillier.EncryptedNumber(ppk, c, 0) for c in other.ciphertexts()]
    phe_add = _rate(lambda: [a + b for a, b in zip(phe_a, phe_b)], n_ours, reps)
    ours_add = _rate(lambda: cv + other, n_ours, reps)
    rows.append(_row("add", bits, 1, ours_add, phe_add))
    ks = [int(v) for v in rng.integers(1, 2**16, size=n_ours)]
    phe_mul = _rate(lambda: [a * k for a, k in zip(phe_a, ks)], n_ours, reps)
    ours_mul = _rate(lambda: cv.mul_plain(ks), n_ours, reps)
    rows.append(_row("mul_plain_16bit", bits, 1, ours_mul, phe_mul))

    def phe_hist(bins, n_bins):
        out = []
        for j in range(bins.shape[1]):
            acc = [ppk.encrypt(0, r_value=1) for _ in range(n_bins)]
            for i, b in enumerate(bins[:, j]):
                acc[b] = acc[b] + phe_a[i]
            out.extend(acc)
        return out

    n_feat, n_bins = 4, 32
    bins = rng.integers(0, n_bins, size=(n_ours, n_feat))
    phe_h = _rate(lambda: phe_hist(bins, n_bins), n_ours * n_feat, reps)
    ours_h = _rate(lambda: cv.histogram(bins, n_bins, parallel=False), n_ours * n_feat, reps)
    rows.append(_row("histogram_add", bits, 1, ours_h, phe_h, unit="row-features/s"))

    # ---- packed GH encryption: values (g and h) per second; phe encrypts each value
    codec = GHCodec(max_rows=30000, plaintext_bits=pk.bits - 1)  # SecureBoost's packing: signed g * 2^S + h
    g = rng.uniform(-1, 1, size=n_ours)
    h = rng.uniform(0, 0.25, size=n_ours)
    ghq = _quantize(g, h)
    ours_gh = _rate(lambda: sk.encrypt_ints(codec.pack(ghq), parallel=False), 2 * n_ours, reps)
    rows.append(_row("encrypt_packed_gh", bits, 1, ours_gh, phe_enc, unit="values/s",
                     slot_bits=[codec.g_bits, codec.h_bits]))

    # ---- decrypt bin sums: compressed (many GH sums per ciphertext) vs phe decrypting g and h sums
    hist = sk.encrypt_ints(codec.pack(ghq), parallel=False).histogram(bins, n_bins, parallel=False)
    n_sums = len(hist)
    per = codec.per_ciphertext

    def ours_bins():
        comp = compress(hist, item_bits=codec.item_bits)
        codec.unpack(sk.decrypt_signed(comp, parallel=False), n_sums)

    ours_bd = _rate(ours_bins, n_sums, reps)
    rows.append(_row("decrypt_gh_bin_sums", bits, 1, ours_bd, phe_dec / 2, unit="bins/s",
                     bins_per_ciphertext=per, note="phe baseline decrypts G and H separately"))

    # ---- all cores
    if workers > 1:
        n_par = n_ours * workers
        ints_p = ints * workers
        sk.encrypt_ints(ints_p[: 2 * workers], parallel=True)  # warm the pool (workers build tables once)
        pk.encrypt_ints(ints_p[: 2 * workers], parallel=True)
        ours_p = _rate(lambda: sk.encrypt_ints(ints_p, parallel=True), n_par, reps)
        pub_p = _rate(lambda: pk.encrypt_ints(ints_p, parallel=True), n_par, reps)
        n_phe_p = n_phe * workers
        chunks = [(pk.n, ints[: n_phe]) for _ in range(workers)]
        phe_pool.submit(_phe_encrypt_chunk, pk.n, ints[:2]).result()
        phe_p = _phe_pool_rate(phe_pool, _phe_encrypt_chunk, chunks, n_phe_p, reps)
        rows.append(_row("encrypt_owner", bits, workers, ours_p, phe_p))
        rows.append(_row("encrypt_public", bits, workers, pub_p, phe_p))
        ghq_p = np.tile(ghq, (workers, 1))
        ours_ghp = _rate(lambda: sk.encrypt_ints(codec.pack(ghq_p), parallel=True), 2 * n_par, reps)
        rows.append(_row("encrypt_packed_gh", bits, workers, ours_ghp, phe_p, unit="values/s"))
        cvp = cv.concat(*[cv] * (workers - 1))[: n_dec * workers]
        sk.decrypt_ints(cvp[: 2 * workers], parallel=True)
        ours_dp = _rate(lambda: sk.decrypt_ints(cvp, parallel=True), len(cvp), reps)
        dchunks = [(pk.n, sk._p, sk._q, cts) for _ in range(workers)]
        phe_dp = _phe_pool_rate(phe_pool, _phe_decrypt_chunk, dchunks, n_dec * workers, reps)
        rows.append(_row("decrypt", bits, workers, ours_dp, phe_dp))
        binsp = np.tile(bins, (workers, 1))
        cvh = cv.concat(*[cv] * (workers - 1))
        ours_hp = _rate(lambda: cvh.histogram(binsp, n_bins, parallel=True), len(cvh) * n_feat, reps)
        rows.append(_row("histogram_add", bits, workers, ours_hp, phe_h, unit="row-features/s",
                         note="phe baseline single-process"))


def _bench_ckks(args) -> dict:
    from fedcredit.crypto.ckks import CKKSContext

    ctx = CKKSContext.generate()
    pub = ctx.public()
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, size=(2, 40960))
    enc = _rate(lambda: pub.encrypt(x), len(x), args.repeats)
    vx, vy = pub.encrypt(x), pub.encrypt(y)
    add = _rate(lambda: vx + vy, len(x), args.repeats)
    dec = _rate(lambda: ctx.decrypt(vx), len(x), args.repeats)
    return {
        "poly_modulus_degree": 8192,
        "encrypt_values_per_s": round(enc, 1),
        "add_values_per_s": round(add, 1),
        "decrypt_values_per_s": round(dec, 1),
        "max_abs_error": {
            "round_trip": float(np.abs(ctx.decrypt(vx) - x).max()),
            "add": float(np.abs(ctx.decrypt(vx + vy) - (x + y)).max()),
            "mul_plain": float(np.abs(ctx.decrypt(vx.mul_plain(y)) - x * y).max()),
            "sum_40960": float(abs(ctx.decrypt(vx.sum())[0] - x.sum())),
            "dot_40960": float(abs(ctx.decrypt(vx.dot(y))[0] - x @ y)),
        },
        "ciphertext_bytes_per_4096_values": len(pub.encrypt(x[:4096]).to_blob().data),
    }


def run(args) -> dict:
    workers = local_pool.n_workers()
    rows: list[dict] = []
    phe_pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) if workers > 1 else None
    try:
        for bits in args.bits:
            _bench_bits(bits, args, rows, workers, phe_pool)
    finally:
        if phe_pool is not None:
            phe_pool.shutdown()
    out = {"workers": workers, "rows": rows,
           "targets_2048_1core": {"encrypt_owner_ratio": 30, "decrypt_ratio_vs_lambda": 3, "decrypt_ratio": 1,
                                  "encrypt_packed_gh_values_per_s": 12000, "add_per_s": 150000},
           "heu_reference_2048_1core": {"encrypt_per_s": 1255, "decrypt_per_s": 252}}
    if not args.no_ckks:
        out["ckks"] = _bench_ckks(args)
    return out


if __name__ == "__main__":  # pragma: no cover - direct use while run.py is absent
    import argparse
    import json

    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    add_arguments(p)
    print(json.dumps(run(p.parse_args()), indent=1))
