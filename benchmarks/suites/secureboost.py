"""Vertical SecureBoost: parties as separate processes over mTLS gRPC on loopback, 2048-bit Paillier.

Configurations (``--configs``): ``dc5`` (default_credit, bank + host, 5 trees),
``dc30`` (30 trees), ``credit3`` (bank + chain + gov, 5 trees) and ``dc5mono``
(``dc5`` with every repayment-status feature ``pay_0``, ``pay_2`` .. ``pay_6``
constrained +1: the bank's ``x0`` and the host's ``x5`` .. ``x9``; it reports
the federated AUC next to the unconstrained reference's and next to
scikit-learn's with the same ``monotonic_cst``). All: depth
3, 32 bins (incl. missing), learning rate 0.3, 80/20 stratified split with
seed 0 on the aligned rows. Per configuration: ``key_bits``, ``trees``,
``seconds_total`` (guest's fit, incl. key generation), ``seconds_per_tree``
(median), per-step timings, ``peak_rss_mb`` per party, ``test_auc``/``test_ks``
from the federated predict path, and, measured in the same run on the same
split, centralized scikit-learn ``HistGradientBoostingClassifier`` and our
plaintext reference on the joined table.

Alignment is a plain join by id done by the harness (PSI has its own suite);
each party then reads only its own file and keeps the agreed rows.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

__all__ = ["add_arguments", "run", "guest", "host"]

from benchmarks.data import data_root

CONFIGS = {
    "dc5": {"files": {"bank": ("default_credit/hetero_guest.csv", "y"), "host": ("default_credit/hetero_host.csv", None)},
            "n_trees": 5},
    "dc30": {"files": {"bank": ("default_credit/hetero_guest.csv", "y"), "host": ("default_credit/hetero_host.csv", None)},
             "n_trees": 30},
    # default_credit's repayment status: bank x0 = pay_6, host x5..x9 = pay_0, pay_2..pay_5 (all +1)
    "dc5mono": {"files": {"bank": ("default_credit/hetero_guest.csv", "y"),
                          "host": ("default_credit/hetero_host.csv", None)},
                "n_trees": 5, "monotone": {"bank": [1] + [0] * 12, "host": [0] * 5 + [1] * 5}},
    "credit3": {"files": {"bank": ("credit3/bank.csv", "default_next_month"), "chain": ("credit3/chain.csv", None),
                          "gov": ("credit3/gov.csv", None)}, "n_trees": 5},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", default="dc5,dc30,credit3,dc5mono", help="comma-separated: " + ",".join(CONFIGS))
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--max-depth", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=0.3)
    parser.add_argument("--timeout", type=float, default=1800.0)


def _load(path: str, party: str, label):
    from fedcredit.data import load_table

    return load_table(data_root() / path, party=party, label_column=label)


def _rows(table, ids: list[str]) -> np.ndarray:
    pos = {i: k for k, i in enumerate(table.ids.tolist())}
    return np.array([pos[i] for i in ids], dtype=np.int64)


def _count_messages(channel) -> dict:
    """Messages and payload bytes this party sends, per protocol stage (the tag's last part): round trips per tree."""
    counts: dict = {}

    def tap(sender, receiver, tag, payload):
        c = counts.setdefault(tag.rsplit("/", 1)[-1], [0, 0])
        c[0] += 1
        c[1] += len(payload)

    channel.tap(tap)
    return counts


def guest(channel, *, path, label, ids, test_ids, hosts, params, monotone=None):
    """The bank: fit on the training rows, then score the test rows with the federated predict path."""
    from fedcredit.models.metrics import auc, ks
    from fedcredit.protocols.secureboost import VerticalSecureBoost, predict_guest

    t = _load(path, channel.party, label)
    tr, te = _rows(t, ids), _rows(t, test_ids)
    fit_ch = channel.sub("fit")
    sent = _count_messages(fit_ch)
    t0 = time.perf_counter()
    est = VerticalSecureBoost(**params).fit(fit_ch, t.X[tr], t.y[tr], hosts=hosts, monotonic_cst=monotone)
    fit_s = time.perf_counter() - t0
    fit_sent = {k: list(v) for k, v in sent.items()}
    t0 = time.perf_counter()
    p = predict_guest(channel.sub("score"), est.model_, t.X[te])
    res = dict(est.result_)
    res.pop("per_tree", None)
    per_tree = [x["seconds"] for x in est.result_["per_tree"]]
    return {"fit_seconds": fit_s, "score_seconds": time.perf_counter() - t0, "test_auc": float(auc(t.y[te], p)),
            "test_ks": float(ks(t.y[te], p)), "seconds_per_tree_median": statistics.median(per_tree),
            "seconds_per_tree_all": per_tree, "report": res, "fit_messages_sent": fit_sent}


def host(channel, *, path, ids, test_ids, guest_name, params, monotone=None):
    from fedcredit.protocols.secureboost import VerticalSecureBoost, predict_host

    t = _load(path, channel.party, None)
    tr, te = _rows(t, ids), _rows(t, test_ids)
    fit_ch = channel.sub("fit")
    sent = _count_messages(fit_ch)
    est = VerticalSecureBoost(**params).fit(fit_ch, t.X[tr], guest=guest_name, monotonic_cst=monotone)
    fit_sent = {k: list(v) for k, v in sent.items()}
    predict_host(channel.sub("score"), est.model_, t.X[te], guest=guest_name)
    return {"report": est.result_, "fit_messages_sent": fit_sent}


def _centralized(tables, label_party, tr_ids, te_ids, n_trees, depth, lr, monotone=None):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from fedcredit.models.metrics import ks
    from fedcredit.models.tree import GBDTReference

    Xtr = np.hstack([t.X[_rows(t, tr_ids)] for t in tables.values()])
    Xte = np.hstack([t.X[_rows(t, te_ids)] for t in tables.values()])
    lt = tables[label_party]
    ytr, yte = lt.y[_rows(lt, tr_ids)], lt.y[_rows(lt, te_ids)]
    t0 = time.perf_counter()
    hgb = HistGradientBoostingClassifier(max_iter=n_trees, max_depth=depth, learning_rate=lr, max_bins=31,
                                         min_samples_leaf=1, l2_regularization=1.0, early_stopping=False,
                                         max_leaf_nodes=None).fit(Xtr, ytr)
    hgb_s = time.perf_counter() - t0
    ph = hgb.predict_proba(Xte)[:, 1]
    t0 = time.perf_counter()
    ref = GBDTReference(n_trees=n_trees, max_depth=depth, learning_rate=lr).fit(Xtr, ytr)
    ref_s = time.perf_counter() - t0
    pr = ref.predict_proba(Xte)[:, 1]
    out = {
        "hgb": {"test_auc": float(roc_auc_score(yte, ph)), "test_ks": float(ks(yte, ph)), "seconds": hgb_s},
        "reference": {"test_auc": float(roc_auc_score(yte, pr)), "test_ks": float(ks(yte, pr)), "seconds": ref_s},
    }
    if monotone is not None:  # the same constraints centrally: scikit-learn and our reference
        cst = np.concatenate([monotone[p] for p in tables])
        hgb = HistGradientBoostingClassifier(max_iter=n_trees, max_depth=depth, learning_rate=lr, max_bins=31,
                                             min_samples_leaf=1, l2_regularization=1.0, early_stopping=False,
                                             max_leaf_nodes=None, monotonic_cst=cst).fit(Xtr, ytr)
        ph = hgb.predict_proba(Xte)[:, 1]
        ref = GBDTReference(n_trees=n_trees, max_depth=depth, learning_rate=lr, monotonic_cst=cst).fit(Xtr, ytr)
        pr = ref.predict_proba(Xte)[:, 1]
        out["hgb_monotone"] = {"test_auc": float(roc_auc_score(yte, ph)), "test_ks": float(ks(yte, ph))}
        out["reference_monotone"] = {"test_auc": float(roc_auc_score(yte, pr)), "test_ks": float(ks(yte, pr))}
    return out


def _one(name: str, args) -> dict:
    from sklearn.model_selection import train_test_split

    from benchmarks.harness import run_processes

    cfg = CONFIGS[name]
    n_trees = 2 if args.quick else cfg["n_trees"]
    tables = {p: _load(f, p, lab) for p, (f, lab) in cfg["files"].items()}
    parties = list(cfg["files"])
    g = parties[0]
    common = set(tables[g].ids.tolist())
    for p in parties[1:]:
        common &= set(tables[p].ids.tolist())
    ids = sorted(common)
    lt = tables[g]
    y = lt.y[_rows(lt, ids)]
    tr, te = train_test_split(np.arange(len(ids)), test_size=0.2, stratify=y, random_state=0)
    tr_ids, te_ids = [ids[i] for i in sorted(tr)], [ids[i] for i in sorted(te)]
    params = {"n_trees": n_trees, "max_depth": args.max_depth, "learning_rate": args.learning_rate, "max_bins": 32,
              "key_bits": args.key_bits}
    roles = {g: "benchmarks.suites.secureboost:guest"}
    mono = cfg.get("monotone")
    kwargs = {g: {"path": cfg["files"][g][0], "label": cfg["files"][g][1], "ids": tr_ids, "test_ids": te_ids,
                  "hosts": parties[1:], "params": params, "monotone": mono and mono[g]}}
    for p in parties[1:]:
        roles[p] = "benchmarks.suites.secureboost:host"
        kwargs[p] = {"path": cfg["files"][p][0], "ids": tr_ids, "test_ids": te_ids, "guest_name": g, "params": params,
                     "monotone": mono and mono[p]}
    out = run_processes(roles, kwargs, timeout=args.timeout, job_id=f"sbt-{name}")
    base = _centralized(tables, g, tr_ids, te_ids, n_trees, args.max_depth, args.learning_rate, mono)
    gr = out[g]
    return {
        "config": name, "parties": parties, "rows_aligned": len(ids), "rows_train": len(tr_ids), "key_bits": args.key_bits,
        "trees": gr["report"]["trees"], "max_depth": args.max_depth, "learning_rate": args.learning_rate,
        "max_bins": 32, "seconds_total": round(gr["fit_seconds"], 3),
        "seconds_per_tree": round(gr["seconds_per_tree_median"], 3),
        "seconds_per_tree_all": gr["seconds_per_tree_all"], "score_seconds": round(gr["score_seconds"], 3),
        "timings_guest": gr["report"]["timings"],
        "timings_hosts": {p: out[p]["report"]["timings"] for p in parties[1:]},
        "peak_rss_mb": {p: out[p]["peak_rss_mb"] for p in parties},
        "bytes": {p: {"sent": out[p]["bytes_sent"], "received": out[p]["bytes_received"]} for p in parties},
        "fit_messages_sent": {p: {stage: {"count": c, "bytes": b} for stage, (c, b) in out[p]["fit_messages_sent"].items()}
                              for p in parties},
        "sums_per_ciphertext": gr["report"]["sums_per_ciphertext"],
        "test_auc": round(gr["test_auc"], 5), "test_ks": round(gr["test_ks"], 5),
        "centralized_hgb": base["hgb"], "centralized_reference": base["reference"],
        "auc_gap_vs_hgb": round(gr["test_auc"] - base["hgb"]["test_auc"], 5),
        **({"monotone": {"constrained": {p: int(np.count_nonzero(c)) for p, c in mono.items()},
                         "test_auc_unconstrained_reference": base["reference"]["test_auc"],
                         "hgb_monotone": base["hgb_monotone"], "reference_monotone": base["reference_monotone"],
                         "auc_gap_vs_hgb_monotone": round(gr["test_auc"] - base["hgb_monotone"]["test_auc"], 5)}}
           if mono else {}),
    }


def run(args) -> dict:
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    if args.quick:
        names = names[:1]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    runs = [_one(n, args) for n in names]
    return {"runs": runs, "fate_2_2_reference": {
        "note": "FATE 2.2 HeteroSecureBoost, same data and settings, 1024-bit Paillier, measured on this machine (issue 5)",
        "seconds_5_trees": 268, "seconds_10_trees": 541, "test_auc_5_trees": 0.771}}
