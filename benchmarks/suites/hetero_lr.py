"""Vertical LR on default_credit: parties as separate processes over mTLS gRPC on loopback.

Per backend (2048-bit Paillier; CKKS at poly_modulus_degree 8192) and mode
(``two_party``: bank + platform; ``coordinated``: + a supervision node as
arbiter): seconds per epoch, total seconds, peak RSS per party, the largest
coefficient difference to the centralized Taylor reference, and test AUC/KS
on the 80/20 stratified seed-0 split, against
centralized sklearn ``LogisticRegression`` on the joined raw features and our
centralized Taylor reference, measured in the same run. Also the host's
``X_hᵀ E(d)`` per feature column: bucket multi-exponentiation vs one
exponentiation per row.

The benchmark (not the protocol) evaluates the test split by having the
host send its test-row partial scores to the guest.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run", "guest", "host", "arbiter"]

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "default_credit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modes", default="two_party,coordinated")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4000)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--micro-rows", type=int, default=4000)
    parser.add_argument("--backends", default="paillier,ckks")
    parser.add_argument("--rows", type=int, default=0, help="use every k-th row so about this many remain (0: all)")
    parser.add_argument("--quick", action="store_true", help="6,000 rows, 1 epoch, small micro-benchmark")


def _split():
    from sklearn.model_selection import train_test_split

    from fedcredit.data import load_table

    g = load_table(DATA / "hetero_guest.csv", party="bank", label_column="y")
    tr, te = train_test_split(np.arange(len(g)), test_size=0.2, stratify=g.y, random_state=0)
    return np.sort(tr), np.sort(te)


def _design(path, party, label, train, test):
    from fedcredit.data import load_table
    from fedcredit.models.logistic import Standardizer

    t = load_table(path, party=party, label_column=label)
    st = Standardizer(clip=3.0).fit(t.X[train])
    return t, st.transform(t.X[train]), st.transform(t.X[test])


def _params(mode, epochs, batch_size, key_bits, backend="paillier"):
    from fedcredit.protocols.hetero_lr import LRParams

    return LRParams(mode=mode, backend=backend, max_epochs=epochs, batch_size=batch_size, key_bits=key_bits,
                    n_iter_no_change=epochs, tol=0.0)


def guest(channel, *, mode, epochs, batch_size, key_bits, train, test, hosts, arbiter=None, backend="paillier"):
    from fedcredit.models import metrics
    from fedcredit.protocols.hetero_lr import run_guest
    from fedcredit.models.logistic import quantize

    train, test = np.asarray(train), np.asarray(test)
    t, Xtr, Xte = _design(DATA / "hetero_guest.csv", "bank", "y", train, test)
    p = _params(mode, epochs, batch_size, key_bits, backend)
    t0 = time.perf_counter()
    res = run_guest(channel, Xtr, t.y[train], p, hosts=hosts, arbiter=arbiter)
    secs = time.perf_counter() - t0
    z = quantize(Xte) @ res["coef"] + res["intercept"]
    coef = list(res["coef"]) + [res["intercept"]]
    for h in hosts:
        z = z + channel.recv(h, "bench/test-scores")
        coef = coef + list(channel.recv(h, "bench/coef"))
    return {"train_seconds": secs, "epochs": len(res["history"]), "test_auc": metrics.auc(t.y[test], z),
            "test_ks": metrics.ks(t.y[test], z), "history": res["history"], "coef": [float(c) for c in coef]}


def host(channel, *, mode, epochs, batch_size, key_bits, train, test, guest, arbiter=None, backend="paillier"):
    from fedcredit.models.logistic import quantize
    from fedcredit.protocols.hetero_lr import run_host

    train, test = np.asarray(train), np.asarray(test)
    t, Xtr, Xte = _design(DATA / "hetero_host.csv", "platform", None, train, test)
    p = _params(mode, epochs, batch_size, key_bits, backend)
    res = run_host(channel, Xtr, p, guest=guest, arbiter=arbiter)
    channel.send(guest, "bench/test-scores", quantize(Xte) @ res["coef"])
    channel.send(guest, "bench/coef", [float(c) for c in res["coef"]])
    return {"epochs": len(res["history"])}


def arbiter(channel, *, mode, epochs, batch_size, key_bits, n_rows, guest, hosts, backend="paillier"):
    from fedcredit.protocols.hetero_lr import run_arbiter

    run_arbiter(channel, n_rows, _params(mode, epochs, batch_size, key_bits, backend), guest=guest, hosts=hosts)
    return {}


def _centralized(train, test, epochs, batch_size):
    from sklearn.linear_model import LogisticRegression

    from fedcredit.data import load_table
    from fedcredit.models import metrics
    from fedcredit.models.logistic import LogisticRegressionGD, Standardizer

    g = load_table(DATA / "hetero_guest.csv", party="bank", label_column="y")
    h = load_table(DATA / "hetero_host.csv", party="platform")
    X = np.hstack([g.X, h.X])
    y = g.y
    t0 = time.perf_counter()
    sk = LogisticRegression(max_iter=2000).fit(X[train], y[train])
    sk_s = time.perf_counter() - t0
    s = sk.decision_function(X[test])
    Xs = np.hstack([Standardizer(clip=3.0).fit(g.X[train]).transform(g.X),
                    Standardizer(clip=3.0).fit(h.X[train]).transform(h.X)])
    ref = LogisticRegressionGD(max_epochs=epochs, batch_size=batch_size, n_iter_no_change=epochs, tol=0.0)
    t0 = time.perf_counter()
    ref.fit(Xs[train], y[train])
    ref_s = time.perf_counter() - t0
    r = ref.decision_function(Xs[test])
    return {"sklearn_lbfgs": {"test_auc": metrics.auc(y[test], s), "test_ks": metrics.ks(y[test], s),
                              "seconds": sk_s},
            "taylor_gd_reference": {"test_auc": metrics.auc(y[test], r), "test_ks": metrics.ks(y[test], r),
                                    "seconds": ref_s,
                                    "coef": [float(c) for c in ref.coef_[: g.X.shape[1]]] + [float(ref.intercept_)]
                                    + [float(c) for c in ref.coef_[g.X.shape[1] :]]}}


def _micro(rows: int, key_bits: int) -> dict:
    from fedcredit.crypto.paillier import generate_keypair
    from fedcredit.protocols.hetero_lr._matvec import matvec, matvec_naive

    pk, _ = generate_keypair(key_bits)
    r = np.random.default_rng(0)
    cv = pk.encrypt_ints(r.integers(-(2**40), 2**40, rows))
    out = {"rows": rows}
    for name, K in [("standardized_8bit", r.integers(-768, 769, (rows, 1))), ("woe_bins", r.integers(-300, 300, 8)[
            r.integers(0, 8, (rows, 1))])]:
        times = {}
        for fn_name, fn in [("bucket", matvec), ("naive", matvec_naive)]:
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn(cv, K)
                ts.append(time.perf_counter() - t0)
            times[fn_name] = statistics.median(ts)
        times["speedup"] = times["naive"] / times["bucket"]
        out[name] = times
    return out


def run(args: argparse.Namespace) -> dict:
    from benchmarks.harness import run_processes

    if getattr(args, "quick", False):
        args.rows, args.epochs, args.micro_rows = args.rows or 6000, 1, min(args.micro_rows, 500)
    train, test = _split()
    if args.rows and args.rows < train.size + test.size:
        k = -(-(train.size + test.size) // args.rows)
        train, test = train[::k], test[::k]
    out = {"data": f"default_credit {train.size + test.size} x (13 + 10) rows, 80/20 stratified seed 0",
           "key_bits": args.key_bits, "ckks": "poly_modulus_degree 8192, coeff_mod_bit_sizes (60, 40, 40, 60), "
           "scale 2^40, masks 2^30", "epochs": args.epochs, "batch_size": args.batch_size,
           "centralized": _centralized(train, test, args.epochs, args.batch_size), "modes": {}, "ckks_modes": {}}
    ref_coef = np.asarray(out["centralized"]["taylor_gd_reference"].pop("coef"))
    runs = [(b, m) for b in args.backends.split(",") if b for m in args.modes.split(",") if m]
    for backend, mode in runs:
        common = {"epochs": args.epochs, "batch_size": args.batch_size, "key_bits": args.key_bits, "backend": backend}
        arb = "supervisor" if mode == "coordinated" else None
        roles = {"bank": "benchmarks.suites.hetero_lr:guest", "platform": "benchmarks.suites.hetero_lr:host"}
        kw = {"bank": {**common, "mode": mode, "train": train.tolist(), "test": test.tolist(), "hosts": ["platform"],
                       "arbiter": arb},
              "platform": {**common, "mode": mode, "train": train.tolist(), "test": test.tolist(), "guest": "bank",
                           "arbiter": arb}}
        if arb:
            roles[arb] = "benchmarks.suites.hetero_lr:arbiter"
            kw[arb] = {**common, "mode": mode, "n_rows": int(train.size), "guest": "bank", "hosts": ["platform"]}
        res = run_processes(roles, kw, timeout=args.timeout, job_id=f"hetero-lr-{backend}-{mode}")
        g = res["bank"]
        out["modes" if backend == "paillier" else "ckks_modes"][mode] = {
            "seconds_per_epoch": g["train_seconds"] / max(g["epochs"], 1),
            "train_seconds": g["train_seconds"],
            "epochs": g["epochs"],
            "test_auc": g["test_auc"],
            "test_ks": g["test_ks"],
            "auc_gap_vs_sklearn": g["test_auc"] - out["centralized"]["sklearn_lbfgs"]["test_auc"],
            "auc_gap_vs_taylor_reference": g["test_auc"] - out["centralized"]["taylor_gd_reference"]["test_auc"],
            "max_abs_coef_diff_vs_reference": float(np.max(np.abs(np.asarray(g["coef"]) - ref_coef))),
            "peak_rss_mb": {p: r["peak_rss_mb"] for p, r in res.items()},
            "bytes_sent": {p: r.get("bytes_sent") for p, r in res.items()},
            "val_loss": [h.get("val_loss") for h in g["history"]],
        }
    if args.micro_rows:
        out["host_matvec_per_column_seconds"] = _micro(args.micro_rows, args.key_bits)
    return out
