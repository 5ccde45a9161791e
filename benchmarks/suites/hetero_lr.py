"""Vertical LR: parties as separate processes over mTLS gRPC on loopback.

Configurations (``--configs``): ``dc`` (default_credit, bank + platform; modes
``two_party`` and ``coordinated`` with a supervision node as arbiter) and
``credit3`` (bank + chain + gov, ``coordinated`` with the arbiter: four
processes). Per configuration, backend (2048-bit Paillier; CKKS at
poly_modulus_degree 8192) and mode: ``setup_seconds`` (one-time: keys or CKKS
contexts with rotation keys generated, sent and loaded), ``seconds_per_epoch``
(mean wall time of the epochs, setup excluded), ``cpu_seconds_per_epoch``
per data party (its own process, not Paillier pool workers: on a shared
machine the figure that does not depend on the neighbours),
``train_seconds`` (total, setup included), peak RSS and bytes per party, the largest coefficient
difference to the centralized Taylor reference, and test AUC/KS on an 80/20
stratified seed-0 split of the aligned rows, against centralized sklearn
``LogisticRegression`` on the joined features and our centralized Taylor
reference, measured in the same run. Alignment is a plain join by id done by
the harness (PSI has its own suite); each party then reads only its own file
and keeps the agreed rows.

Micro-benchmarks, each against its baseline in the same run: the host's
``X_hᵀ E(d)`` per Paillier column (bucket multi-exponentiation vs one
exponentiation per row) and one CKKS batch's ``X_pᵀ [[v]]`` (packed: one
ciphertext via rotations, vs the previous one masked ciphertext per column),
including the key holder's decryption.

OU (issue 17): not offered for hetero LR; ``--backends ou`` runs nothing and every
result carries ``ou`` with ``offered: false`` and the reason (docs/crypto.md,
"Where OU is safe to use": masked decryptions go back to the parties that built
the ciphertexts).

The benchmark (not the protocol) evaluates the test split by having each
host send its test-row partial scores to the guest. The load average is
recorded before and after (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

__all__ = ["add_arguments", "run", "guest", "host", "arbiter", "CONFIGS"]

from benchmarks.data import data_root

CONFIGS = {
    "dc": {"files": {"bank": ("default_credit/hetero_guest.csv", "y"),
                     "platform": ("default_credit/hetero_host.csv", None)},
           "modes": ("two_party", "coordinated"), "sklearn_features": "raw (already standardized in the FATE split)"},
    "credit3": {"files": {"bank": ("credit3/bank.csv", "default_next_month"), "chain": ("credit3/chain.csv", None),
                          "gov": ("credit3/gov.csv", None)},
                "modes": ("coordinated",), "sklearn_features": "standardized (StandardScaler on the training rows)"},
}
ARBITER = "supervisor"
#: Issue 17 asks for OU rows next to Paillier; hetero LR does not offer OU, and the record says why.
OU_NOT_OFFERED = {
    "he": "ou", "offered": False,
    "reason": ("hetero LR sends masked decryptions back to the party that built the ciphertexts (coordinated: "
               "the arbiter returns each host's masked gradient; two_party: guest and host decrypt each other's "
               "masked gradient parts). Under OU a party that hides a plaintext M >= p under its mask learns "
               "M mod p and factors n; OU needs a range check on every decryption first, which hetero LR does "
               "not have yet. Paillier (and CKKS) only."),
    "see": "docs/crypto.md, 'Where OU is safe to use, per protocol and role'",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", default="dc,credit3", help="comma-separated: " + ",".join(CONFIGS))
    parser.add_argument("--modes", default="two_party,coordinated", help="filter (credit3 runs coordinated only)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4000)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--micro-rows", type=int, default=4000)
    parser.add_argument("--backends", default="paillier,ckks")
    parser.add_argument("--rows", type=int, default=0, help="use every k-th aligned row so about this many remain (0: all)")
    parser.add_argument("--quick", action="store_true", help="6,000 rows, 1 epoch, small micro-benchmarks")


def _load(path: str, party: str, label):
    from fedcredit.data import load_table

    return load_table(data_root() / path, party=party, label_column=label)


def _rows(table, ids: list[str]) -> np.ndarray:
    pos = {i: k for k, i in enumerate(table.ids.tolist())}
    return np.array([pos[i] for i in ids], dtype=np.int64)


def _design(table, train, test):
    from fedcredit.models.logistic import Standardizer

    st = Standardizer(clip=3.0).fit(table.X[train])
    return st.transform(table.X[train]), st.transform(table.X[test])


def _params(mode, epochs, batch_size, key_bits, backend="paillier"):
    from fedcredit.protocols.hetero_lr import LRParams

    return LRParams(mode=mode, backend=backend, max_epochs=epochs, batch_size=batch_size, key_bits=key_bits,
                    n_iter_no_change=epochs, tol=0.0)


def guest(channel, *, path, label, ids, test_ids, mode, epochs, batch_size, key_bits, hosts, arbiter=None,
          backend="paillier"):
    from fedcredit.models import metrics
    from fedcredit.models.logistic import quantize
    from fedcredit.protocols.hetero_lr import run_guest

    t = _load(path, channel.party, label)
    tr, te = _rows(t, ids), _rows(t, test_ids)
    Xtr, Xte = _design(t, tr, te)
    p = _params(mode, epochs, batch_size, key_bits, backend)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    res = run_guest(channel, Xtr, t.y[tr], p, hosts=hosts, arbiter=arbiter)
    secs = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    z = quantize(Xte) @ res["coef"] + res["intercept"]
    coef = list(res["coef"]) + [res["intercept"]]
    for h in hosts:
        z = z + channel.recv(h, "bench/test-scores")
        coef = coef + list(channel.recv(h, "bench/coef"))
    return {"train_seconds": secs, "cpu_seconds": cpu, "setup_seconds": res["setup_seconds"],
            "epoch_seconds": [h["seconds"] for h in res["history"]], "epochs": len(res["history"]),
            "epoch_cpu_seconds": [h["cpu_seconds"] for h in res["history"]],
            "test_auc": metrics.auc(t.y[te], z), "test_ks": metrics.ks(t.y[te], z), "history": res["history"],
            "coef": [float(c) for c in coef]}


def host(channel, *, path, ids, test_ids, mode, epochs, batch_size, key_bits, guest, arbiter=None,
         backend="paillier"):
    from fedcredit.models.logistic import quantize
    from fedcredit.protocols.hetero_lr import run_host

    t = _load(path, channel.party, None)
    tr, te = _rows(t, ids), _rows(t, test_ids)
    Xtr, Xte = _design(t, tr, te)
    p = _params(mode, epochs, batch_size, key_bits, backend)
    cpu0 = time.process_time()
    res = run_host(channel, Xtr, p, guest=guest, arbiter=arbiter)
    cpu = time.process_time() - cpu0
    channel.send(guest, "bench/test-scores", quantize(Xte) @ res["coef"])
    channel.send(guest, "bench/coef", [float(c) for c in res["coef"]])
    return {"epochs": len(res["history"]), "setup_seconds": res["setup_seconds"], "cpu_seconds": cpu,
            "epoch_cpu_seconds": [h["cpu_seconds"] for h in res["history"]]}


def arbiter(channel, *, mode, epochs, batch_size, key_bits, n_rows, guest, hosts, backend="paillier"):
    from fedcredit.protocols.hetero_lr import run_arbiter

    cpu0 = time.process_time()
    run_arbiter(channel, n_rows, _params(mode, epochs, batch_size, key_bits, backend), guest=guest, hosts=hosts)
    return {"cpu_seconds": time.process_time() - cpu0}


def _centralized(tables, label_party, tr_ids, te_ids, epochs, batch_size, scale_for_sklearn):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fedcredit.models import metrics
    from fedcredit.models.logistic import LogisticRegressionGD, Standardizer

    trs = {p: _rows(t, tr_ids) for p, t in tables.items()}
    tes = {p: _rows(t, te_ids) for p, t in tables.items()}
    Xtr = np.hstack([t.X[trs[p]] for p, t in tables.items()])
    Xte = np.hstack([t.X[tes[p]] for p, t in tables.items()])
    lt = tables[label_party]
    ytr, yte = lt.y[trs[label_party]], lt.y[tes[label_party]]
    t0 = time.perf_counter()
    lr = LogisticRegression(max_iter=5000)
    sk = (make_pipeline(StandardScaler(), lr) if scale_for_sklearn else lr).fit(Xtr, ytr)
    sk_s = time.perf_counter() - t0
    s = sk.decision_function(Xte)
    sts = {p: Standardizer(clip=3.0).fit(t.X[trs[p]]) for p, t in tables.items()}
    Str = np.hstack([sts[p].transform(t.X[trs[p]]) for p, t in tables.items()])
    Ste = np.hstack([sts[p].transform(t.X[tes[p]]) for p, t in tables.items()])
    ref = LogisticRegressionGD(max_epochs=epochs, batch_size=batch_size, n_iter_no_change=epochs, tol=0.0)
    t0 = time.perf_counter()
    ref.fit(Str, ytr)
    ref_s = time.perf_counter() - t0
    r = ref.decision_function(Ste)
    fg = tables[label_party].X.shape[1]
    return {"sklearn_lbfgs": {"test_auc": metrics.auc(yte, s), "test_ks": metrics.ks(yte, s), "seconds": sk_s},
            "taylor_gd_reference": {"test_auc": metrics.auc(yte, r), "test_ks": metrics.ks(yte, r),
                                    "seconds": ref_s,
                                    "coef": [float(c) for c in ref.coef_[:fg]] + [float(ref.intercept_)]
                                    + [float(c) for c in ref.coef_[fg:]]}}


def _split(cfg, rows: int):
    from sklearn.model_selection import train_test_split

    tables = {p: _load(f, p, lab) for p, (f, lab) in cfg["files"].items()}
    parties = list(cfg["files"])
    g = parties[0]
    if all(np.array_equal(tables[g].ids, tables[p].ids) for p in parties[1:]):
        ids = tables[g].ids.tolist()  # default_credit: same ids in the same order (keeps the published split)
    else:
        common = set(tables[g].ids.tolist())
        for p in parties[1:]:
            common &= set(tables[p].ids.tolist())
        ids = sorted(common)
    y = tables[g].y[_rows(tables[g], ids)]
    tr, te = train_test_split(np.arange(len(ids)), test_size=0.2, stratify=y, random_state=0)
    tr, te = np.sort(tr), np.sort(te)
    if rows and rows < len(ids):
        k = -(-len(ids) // rows)
        tr, te = tr[::k], te[::k]
    return tables, parties, len(ids), [ids[i] for i in tr], [ids[i] for i in te]


def _one(name: str, args, backends, modes) -> dict:
    from benchmarks.harness import run_processes

    cfg = CONFIGS[name]
    tables, parties, n_aligned, tr_ids, te_ids = _split(cfg, args.rows)
    g, hosts = parties[0], parties[1:]
    out = {"config": name, "parties": parties,
           "features": {p: int(t.X.shape[1]) for p, t in tables.items()},
           "rows_aligned": n_aligned, "rows_train": len(tr_ids), "rows_test": len(te_ids),
           "split": "80/20 stratified seed 0 on the aligned rows" + (f", every k-th row (--rows {args.rows})"
                                                                     if args.rows else ""),
           "sklearn_features": cfg["sklearn_features"],
           "centralized": _centralized(tables, g, tr_ids, te_ids, args.epochs, args.batch_size,
                                       scale_for_sklearn=name != "dc"),
           "runs": {}}
    ref_coef = np.asarray(out["centralized"]["taylor_gd_reference"].pop("coef"))
    sk_auc = out["centralized"]["sklearn_lbfgs"]["test_auc"]
    for backend in backends:
        for mode in [m for m in cfg["modes"] if m in modes]:
            common = {"epochs": args.epochs, "batch_size": args.batch_size, "key_bits": args.key_bits,
                      "backend": backend, "mode": mode}
            arb = ARBITER if mode == "coordinated" else None
            roles = {g: "benchmarks.suites.hetero_lr:guest"}
            kw = {g: {**common, "path": cfg["files"][g][0], "label": cfg["files"][g][1], "ids": tr_ids,
                      "test_ids": te_ids, "hosts": hosts, "arbiter": arb}}
            for h in hosts:
                roles[h] = "benchmarks.suites.hetero_lr:host"
                kw[h] = {**common, "path": cfg["files"][h][0], "ids": tr_ids, "test_ids": te_ids, "guest": g,
                         "arbiter": arb}
            if arb:
                roles[arb] = "benchmarks.suites.hetero_lr:arbiter"
                kw[arb] = {**common, "n_rows": len(tr_ids), "guest": g, "hosts": hosts}
            load0 = os.getloadavg()
            res = run_processes(roles, kw, timeout=args.timeout, job_id=f"hetero-lr-{name}-{backend}-{mode}")
            gr = res[g]
            out["runs"][f"{backend}/{mode}"] = {
                "backend": backend, "mode": mode, "processes": len(res),
                "setup_seconds": round(gr["setup_seconds"], 3),
                "seconds_per_epoch": round(statistics.mean(gr["epoch_seconds"]), 3),
                "epoch_seconds": [round(s, 3) for s in gr["epoch_seconds"]],
                "train_seconds": round(gr["train_seconds"], 3),
                "epochs": gr["epochs"],
                "cpu_seconds": {p: round(r["cpu_seconds"], 2) for p, r in res.items()},
                "cpu_seconds_per_epoch": {p: round(statistics.mean(r["epoch_cpu_seconds"]), 3)
                                          for p, r in res.items() if r.get("epoch_cpu_seconds")},
                "test_auc": gr["test_auc"], "test_ks": gr["test_ks"],
                "auc_gap_vs_sklearn": gr["test_auc"] - sk_auc,
                "auc_gap_vs_taylor_reference": gr["test_auc"] - out["centralized"]["taylor_gd_reference"]["test_auc"],
                "max_abs_coef_diff_vs_reference": float(np.max(np.abs(np.asarray(gr["coef"]) - ref_coef))),
                "peak_rss_mb": {p: r["peak_rss_mb"] for p, r in res.items()},
                "bytes_sent": {p: r.get("bytes_sent") for p, r in res.items()},
                "val_loss": [h.get("val_loss") for h in gr["history"]],
                "load_average_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
            }
    return out


def _micro_paillier(rows: int, key_bits: int) -> dict:
    from fedcredit.crypto.paillier import generate_keypair
    from fedcredit.protocols.hetero_lr._matvec import matvec, matvec_naive

    pk, _ = generate_keypair(key_bits)
    r = np.random.default_rng(0)
    cv = pk.encrypt_ints(r.integers(-(2**40), 2**40, rows))
    out = {"rows": rows, "key_bits": key_bits}
    for name, K in [("standardized_8bit", r.integers(-768, 769, (rows, 1))), ("woe_bins", r.integers(-300, 300, 8)[
            r.integers(0, 8, (rows, 1))])]:
        times = {}
        for fn_name, fn in [("bucket", matvec), ("naive", matvec_naive)]:
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn(cv, K, parallel=False) if fn is matvec else fn(cv, K)
                ts.append(time.perf_counter() - t0)
            times[fn_name] = statistics.median(ts)
        times["speedup"] = times["naive"] / times["bucket"]
        out[name] = times
    out["note"] = ("one column, in-process (no pool); bucket: ceil(b/c) (n + 2^(c+1)) modular products, naive: one "
                   "exponentiation per row")
    return out


def _per_column_baseline(ctx, v, X):
    """The previous CKKS path: one masked, re-randomized ciphertext per column (no rotations)."""
    from fedcredit.protocols.hetero_lr._ckks import masks

    blobs = []
    for j in range(X.shape[1]):
        col = X[:, j]
        prod = v if np.all(col == 1.0) else v.mul_plain(col)
        blobs.append((prod + ctx.encrypt(masks(len(v)))).to_blob())
    return blobs


def _micro_ckks(rows: int, cols=(14, 10)) -> dict:
    from fedcredit.protocols.hetero_lr import _ckks

    owner = _ckks.new_context()
    peer = _ckks.context_from_wire(_ckks.context_to_wire(owner))
    holder = _ckks.KeyHolder(owner, {"bench": 10**6})  # the key holder's checked, flooded, rounded decryptions
    r = np.random.default_rng(0)
    out = {"rows": rows, "note": "one batch's X_pᵀ[[v]]: compute (computing party) + decrypt and sum (key holder)"}
    for f in cols:
        X = np.c_[np.round(r.uniform(-3, 3, (rows, f - 1)) * 256) / 256, np.ones(rows)]
        v = peer.encrypt(r.uniform(-8, 8, rows))
        res = {}
        for name in ("packed", "per_column"):
            comp, dec, size = [], [], 0
            for _ in range(3):
                t0 = time.perf_counter()
                if name == "packed":
                    blob, _ = _ckks.packed_products(peer, v, X)
                    blobs = [blob]
                else:
                    blobs = _per_column_baseline(peer, v, X)
                t1 = time.perf_counter()
                if name == "packed":
                    holder.packed_sums("bench", blobs[0], "bench")
                else:
                    # the previous path's key holder: decrypt and sum each column's slots (it had no checks)
                    [float(np.sum(owner.decrypt(owner.vector_from_blob(b)))) for b in blobs]
                dec.append(time.perf_counter() - t1)
                comp.append(t1 - t0)
                size = sum(len(b.data) for b in blobs)
            res[name] = {"compute_seconds": statistics.median(comp), "key_holder_seconds": statistics.median(dec),
                         "bytes": size, "ciphertexts": len(blobs)}
        res["speedup_compute"] = res["per_column"]["compute_seconds"] / res["packed"]["compute_seconds"]
        res["speedup_total"] = ((res["per_column"]["compute_seconds"] + res["per_column"]["key_holder_seconds"])
                                / (res["packed"]["compute_seconds"] + res["packed"]["key_holder_seconds"]))
        out[f"{f}_columns"] = res
    t0 = time.perf_counter()
    ctx = _ckks.new_context()
    wire = _ckks.context_to_wire(ctx)
    t1 = time.perf_counter()
    _ckks.context_from_wire(wire)
    out["context_setup"] = {"generate_and_serialize_seconds": t1 - t0, "load_seconds": time.perf_counter() - t1,
                            "context_bytes": len(wire["context"]), "rotation_key_bytes": len(wire["rotations"])}
    return out


def run(args: argparse.Namespace) -> dict:
    if getattr(args, "quick", False):
        args.rows, args.epochs, args.micro_rows = args.rows or 6000, 1, min(args.micro_rows, 500)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    backends = [b for b in args.backends.split(",") if b]
    ou_asked = "ou" in backends
    backends = [b for b in backends if b != "ou"]
    modes = [m for m in args.modes.split(",") if m]
    out = {"key_bits": args.key_bits, "epochs": args.epochs, "batch_size": args.batch_size,
           "ckks": "poly_modulus_degree 8192, coeff_mod_bit_sizes (60, 40, 40, 60), scale 2^40, masks 2^30, "
                   "rotation keys for steps 1, 2, 4, 8, 16; X_pᵀ[[v]] packed into one ciphertext per batch",
           "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "configs": {}}
    for name in names:
        out["configs"][name] = _one(name, args, backends, modes)
    if args.micro_rows:
        load0 = os.getloadavg()[0]
        if "paillier" in backends:
            out["host_matvec_per_column_seconds"] = _micro_paillier(args.micro_rows, args.key_bits)
        if "ckks" in backends:
            out["ckks_xtv_per_batch_seconds"] = _micro_ckks(args.micro_rows)
        out["micro_load_average_before_after"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    out["ou"] = dict(OU_NOT_OFFERED, requested=ou_asked)
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out
