"""OU backend vs our Paillier engine at the same modulus size, one core: values/s per op.

Rows have ``op``, ``bits``, ``ou_per_s``, ``paillier_per_s`` and ``ratio`` (medians over
``--repeats``; both engines in-process, ``parallel=False``).  ``histogram_add`` counts
row-features per second (one homomorphic addition each).  ``accelerators`` records
the candidate native kernels measured in the same run: python-flint ``fmpz_mod``
products mod the same ``n`` and SecretFlow HEU's OU (its own key) when importable.
The load average is recorded because the development machine is shared.
"""

from __future__ import annotations

import inspect
import os
import secrets
import statistics
import time

import numpy as np


def add_arguments(parser) -> None:
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=0, help="values per measurement (0: 2000, 400 with --quick)")


def _rate(fn, count: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return count / statistics.median(times)


def _row(op, bits, ou_rate, pa_rate, **extra) -> dict:
    row = {"op": op, "bits": bits, "ou_per_s": round(ou_rate, 1), "paillier_per_s": round(pa_rate, 1) if pa_rate else None,
           "ratio": round(ou_rate / pa_rate, 2) if pa_rate else None}
    row.update(extra)
    return row


def _flint(n: int, values: list, repeats: int) -> dict:
    try:
        import flint
    except ImportError:
        return {"available": False}
    ctx = flint.fmpz_mod_ctx(int(n))
    xs = [ctx(int(v)) for v in values]

    def prod():
        acc = xs[0]
        for x in xs[1:]:
            acc = acc * x
        return acc

    conv = _rate(lambda: [ctx(int(v)) for v in values], len(values), repeats)
    return {"available": True, "version": flint.__version__, "mul_per_s": round(_rate(prod, len(xs) - 1, repeats), 1),
            "convert_in_per_s": round(conv, 1)}


def _heu(bits: int, rows: int, feats: int, n_bins: int, repeats: int) -> dict:
    try:
        from heu import numpy as hnp
        from heu import phe
    except ImportError as exc:
        return {"available": False, "reason": str(exc)[:120]}
    kit = hnp.setup(phe.SchemaType.OU, bits)
    enc, ev = kit.encryptor(), kit.evaluator()
    pt = kit.array(np.arange(rows, dtype=np.int64).reshape(rows, 1), kit.integer_encoder())
    e = _rate(lambda: enc.encrypt(pt), rows, repeats)
    ct = enc.encrypt(pt)
    order = np.random.default_rng(0).integers(0, n_bins, size=(rows, feats)).astype(np.int64)
    sub = np.ones(rows, dtype=np.int8)
    h = _rate(lambda: ev.feature_wise_bucket_sum(ct, sub, order, n_bins, False), rows * feats, repeats)
    return {"available": True, "encrypt_per_s": round(e, 1), "bucket_sum_adds_per_s": round(h, 1),
            "note": "HEU's own OU key (Coron-Naccache-Paillier variant) and ciphertext format"}


def run(args) -> dict:
    from fedcredit.crypto import ou, paillier

    bits, reps = args.bits, args.repeats
    k = args.n or (400 if args.quick else 2000)
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    ints = [int(v) for v in rng.integers(-(2**40), 2**40, size=k)]
    opk, osk = ou.generate_keypair(bits)
    ppk, psk = paillier.generate_keypair(bits)
    osk._get_engine(), opk._get_engine(), psk._get_engine(), ppk._get_engine()
    rows = []

    o = _rate(lambda: osk.encrypt_ints(ints), k, reps)
    p = _rate(lambda: psk.encrypt_ints(ints, parallel=False), k, reps)
    rows.append(_row("encrypt_owner", bits, o, p))
    kp = max(50, k // 4)
    o = _rate(lambda: opk.encrypt_ints(ints[:kp]), kp, reps)
    p = _rate(lambda: ppk.encrypt_ints(ints[:kp], parallel=False), kp, reps)
    rows.append(_row("encrypt_public", bits, o, p))

    ocv, pcv = osk.encrypt_ints(ints), psk.encrypt_ints(ints, parallel=False)
    ocv2, pcv2 = opk.encrypt_ints(ints[:1]), ppk.encrypt_ints(ints[:1], parallel=False)
    o = _rate(lambda: ocv + ocv2, k, reps)
    p = _rate(lambda: pcv + pcv2, k, reps)
    rows.append(_row("add", bits, o, p))

    feats, n_bins = 8, 32
    bins = rng.integers(0, n_bins, size=(k, feats)).astype(np.uint8)
    o = _rate(lambda: ocv.histogram(bins, n_bins), k * feats, reps)
    p = _rate(lambda: pcv.histogram(bins, n_bins, parallel=False), k * feats, reps)
    rows.append(_row("histogram_add", bits, o, p, unit="row-features/s"))

    # the kernel choice at a SecureBoost chunk's size (one pool worker's half of 80k rows): grouped passes
    # against one pass per feature and against HEU, all on the same ciphertexts in this process
    from fedcredit.crypto._buckets import feature_bucket_sums

    kb = 4000 if args.quick else 40_000
    big = [int(v) for v in rng.integers(-(2**40), 2**40, size=kb)]
    obig, pbig = osk.encrypt_ints(big, parallel=False).ciphertexts(), psk.encrypt_ints(big, parallel=False).ciphertexts()
    bbig = rng.integers(0, n_bins, size=(kb, feats)).astype(np.uint8)
    omod, pmod = opk._mn, ppk._mnsq
    og = _rate(lambda: feature_bucket_sums(obig, bbig, n_bins, omod), kb * feats, reps)
    pg = _rate(lambda: feature_bucket_sums(pbig, bbig, n_bins, pmod), kb * feats, reps)
    o1 = _rate(lambda: feature_bucket_sums(obig, bbig, n_bins, omod, grouped=False), kb * feats, reps)
    p1 = _rate(lambda: feature_bucket_sums(pbig, bbig, n_bins, pmod, grouped=False), kb * feats, reps)
    extra = {}
    from fedcredit.crypto import _ou_heu

    bridge = _ou_heu.bridge_for(opk.n, opk.g, opk.h, opk.plaintext_bits)
    if bridge is not None:
        extra["heu_ou"] = round(_rate(lambda: bridge.bucket_sums(obig, bbig, n_bins), kb * feats, reps), 1)
    rows.append(_row("histogram_add_grouped", bits, og, pg, rows=kb, features=feats, unit="row-features/s",
                     one_pass_per_feature={"ou": round(o1, 1), "paillier": round(p1, 1)}, **extra,
                     note="crypto/_buckets.feature_bucket_sums; the same integers either way"))


    if _ou_heu.bridge_for(opk.n, opk.g, opk.h, opk.plaintext_bits) is not None:
        for f in (feats, 48):
            bf = rng.integers(0, n_bins, size=(k, f)).astype(np.uint8)
            o = _rate(lambda: ocv.histogram(bf, n_bins, kernel="heu"), k * f, reps)
            g = _rate(lambda: ocv.histogram(bf, n_bins, kernel="gmpy2"), k * f, reps)
            rows.append(_row("histogram_add_heu_bridge", bits, o, p, features=f, gmpy2_same_shape=round(g, 1),
                             unit="row-features/s", note="our ciphertexts through sf-heu, conversions included"))

    item_bits = 99  # SecureBoost's (g, h) item at 80k-100k rows
    o = _rate(lambda: ou.compress(ocv, item_bits=item_bits, parallel=False), k, reps)
    p = _rate(lambda: paillier.compress(pcv, item_bits=item_bits), k, reps)
    rows.append(_row("compress_items", bits, o, p, unit="items/s", item_bits=item_bits,
                     items_per_ciphertext={"ou": opk.plaintext_bits // item_bits, "paillier": (ppk.bits - 1) // item_bits}))

    kd = max(50, k // 4)
    o = _rate(lambda: osk.decrypt_signed(ocv[:kd]), kd, reps)
    p = _rate(lambda: psk.decrypt_signed(pcv[:kd], parallel=False), kd, reps)
    rows.append(_row("decrypt", bits, o, p))

    ko = max(20, k // 20)
    owner_flag = "for_key_owner" in inspect.signature(paillier.CipherVector.obfuscate).parameters
    o = _rate(lambda: ocv[:ko].obfuscate(parallel=False), ko, reps)
    p = _rate(lambda: pcv[:ko].obfuscate(parallel=False), ko, reps)
    rows.append(_row("obfuscate_for_key_owner", bits, o, p,
                     note="OU: rho^n, rho uniform in Z_n^*; Paillier: its obfuscate() default in this tree"))
    o = _rate(lambda: ocv[:ko].obfuscate(parallel=False, for_key_owner=False), ko, reps)
    p = _rate(lambda: pcv[:ko].obfuscate(parallel=False, **({"for_key_owner": False} if owner_flag else {})), ko, reps)
    rows.append(_row("obfuscate_fast", bits, o, p, note="OU: h^r (fixed-base table); Paillier: fixed-base obfuscator"))
    from fedcredit.crypto._ou_raw import random_units_nth_power

    o = _rate(lambda: random_units_nth_power(opk.n, ko, parallel=True), ko, reps)
    rows.append(_row("obfuscate_for_key_owner_threads", bits, o, None, cores=os.cpu_count(),
                     note="OU rho^n over one GIL-free thread per core (obfuscate() also refills a reserve in the background)"))

    flint_vals = [secrets.randbelow(opk.n) for _ in range(k)]
    return {
        "rows": rows,
        "bytes_per_ciphertext": {"ou": opk.width, "paillier": ppk.width},
        "plaintext_bits": {"ou": opk.plaintext_bits, "paillier": ppk.bits - 1},
        "accelerators": {"python_flint": _flint(opk.n, flint_vals, reps),
                         "sf_heu": _heu(bits, k, feats, n_bins, reps)},
        "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cores_used": 1,
    }
