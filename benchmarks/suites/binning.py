"""Federated WOE/IV binning on credit3 (bank + chain + gov), Paillier and OU side by side (issue #17).

The three parties run as separate processes over mTLS gRPC on loopback; the bank
(guest, label holder) encrypts the labels under ``he`` and each host sums them per
bin of its own features. Every scheme of ``--he`` (default ``paillier,ou``, both in
the same run) gives one record: ``he``, ``seconds`` (the guest's binning step, key
generation included), ``key_seconds``, ``bytes_sent`` per party and ``bytes_total``
(payload bytes of the step), ``peak_rss_mb`` per party, and the check: every
feature's IV equals the centralized ``fit_woe`` on the joined rows
(``iv_equal_to_centralized``, ``max_iv_diff``). ``--quick``: the first 3,000
aligned rows.

Alignment is a plain join by id done by the harness (PSI has its own suite); each
party then reads only its own file and keeps the agreed rows.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

__all__ = ["add_arguments", "guest", "host", "run"]

from benchmarks.data import data_root

FILES = {"bank": ("credit3/bank.csv", "default_next_month"), "chain": ("credit3/chain.csv", None),
         "gov": ("credit3/gov.csv", None)}
#: gov's coded columns are binned by category (as a credit analyst would).
CATEGORICAL = ["sex", "education", "marriage"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--he", default="paillier,ou", help="comma-separated schemes, one record each")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--method", default="monotonic", choices=["quantile", "monotonic"])
    parser.add_argument("--max-bins", type=int, default=10)
    parser.add_argument("--min-bin-count", type=int, default=50)
    parser.add_argument("--rows", type=int, default=None, help="keep the first N aligned rows (default: all)")
    parser.add_argument("--timeout", type=float, default=900.0)


def _load(party: str):
    from fedcredit.data import load_table

    path, label = FILES[party]
    return load_table(data_root() / path, party=party, label_column=label)


def _aligned(party: str, ids: list[str]):
    t = _load(party)
    pos = {i: k for k, i in enumerate(t.ids.tolist())}
    return t.take(np.array([pos[i] for i in ids], dtype=np.int64))


def _params(p: dict):
    from fedcredit.protocols.binning import BinningParams

    return BinningParams.from_dict(p)


def _tap(channel) -> list:
    """Payload bytes this party sends in the step."""
    sent = [0]

    def tap(sender, receiver, tag, payload):
        sent[0] += len(payload)

    channel.tap(tap)
    return sent


def guest(channel, *, ids, hosts, params):
    from fedcredit.protocols.binning import run_guest
    from fedcredit.protocols.binning.guest import generate_keypair

    table = _aligned(channel.party, ids)
    p = _params(params)
    ch = channel.sub("binning")
    sent = _tap(ch)
    t0 = time.perf_counter()
    keypair = generate_keypair(p.he, p.key_bits)
    key_s = time.perf_counter() - t0
    res = run_guest(ch, hosts, table, p, keypair=keypair)
    return {"step_seconds": time.perf_counter() - t0, "key_seconds": key_s, "payload_sent": sent[0],
            "iv": {f: b.total_iv for f, b in res["bins"].items()},
            "host_iv": {f: float(v) for f, v in res["host_iv"].items()}}


def host(channel, *, ids, guest_name, params):
    from fedcredit.protocols.binning import run_host

    table = _aligned(channel.party, ids)
    ch = channel.sub("binning")
    sent = _tap(ch)
    t0 = time.perf_counter()
    bins = run_host(ch, guest_name, table, _params(params))
    return {"step_seconds": time.perf_counter() - t0, "payload_sent": sent[0],
            "iv": {f: b.total_iv for f, b in bins.items()}}


def _centralized(ids: list[str], params: dict) -> tuple[dict, float]:
    """IV per feature (``party.column``) by ``fit_woe`` on the joined rows, and its seconds."""
    from fedcredit.models.woe import fit_woe

    tables = {p: _aligned(p, ids) for p in FILES}
    y = tables["bank"].y
    t0 = time.perf_counter()
    iv = {}
    for t in tables.values():
        for j, name in enumerate(t.feature_names):
            raw = name.split(".", 1)[-1]
            iv[name] = float(fit_woe(t.X[:, j], y, name=name, method=params["method"], max_bins=params["max_bins"],
                                     min_bin_count=params["min_bin_count"], categorical=raw in CATEGORICAL).total_iv)
    return iv, time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict:
    from benchmarks.harness import run_processes

    schemes = [h.strip() for h in args.he.split(",") if h.strip()]
    bad = [h for h in schemes if h not in ("ou", "paillier")]
    if bad or not schemes:
        raise SystemExit(f"--he: choose from ou, paillier; got {args.he!r}")
    rows = args.rows or (3000 if getattr(args, "quick", False) else None)
    tables = {p: _load(p) for p in FILES}
    common = set(tables["bank"].ids.tolist())
    for p in ("chain", "gov"):
        common &= set(tables[p].ids.tolist())
    ids = sorted(common)[:rows] if rows else sorted(common)
    del tables
    params = {"method": args.method, "max_bins": args.max_bins, "min_bin_count": args.min_bin_count,
              "categorical": CATEGORICAL, "key_bits": args.key_bits}
    ref_iv, ref_s = _centralized(ids, params)
    out = {"data": "credit3 (bank + chain + gov)", "rows_aligned": len(ids), "key_bits": args.key_bits,
           "method": args.method, "max_bins": args.max_bins, "min_bin_count": args.min_bin_count,
           "categorical": CATEGORICAL, "centralized_fit_woe_seconds": round(ref_s, 3),
           "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "runs": []}
    for he in schemes:
        p = dict(params, he=he)
        res = run_processes(
            {"bank": "benchmarks.suites.binning:guest", "chain": "benchmarks.suites.binning:host",
             "gov": "benchmarks.suites.binning:host"},
            {"bank": {"ids": ids, "hosts": ["chain", "gov"], "params": p},
             "chain": {"ids": ids, "guest_name": "bank", "params": p},
             "gov": {"ids": ids, "guest_name": "bank", "params": p}},
            timeout=args.timeout, job_id=f"binning-{he}")
        fed = {**res["bank"]["iv"], **res["chain"]["iv"], **res["gov"]["iv"]}
        # the guest's view of the hosts' IV must be what the hosts hold
        host_iv_ok = all(abs(res["bank"]["host_iv"][f] - fed[f]) <= 1e-12 for f in res["bank"]["host_iv"])
        diff = max(abs(fed[f] - ref_iv[f]) for f in ref_iv) if set(fed) == set(ref_iv) else float("inf")
        out["runs"].append({
            "he": he, "seconds": round(res["bank"]["step_seconds"], 3),
            "key_seconds": round(res["bank"]["key_seconds"], 3),
            "bytes_sent": {q: res[q]["payload_sent"] for q in FILES},
            "bytes_total": sum(res[q]["payload_sent"] for q in FILES),
            "peak_rss_mb": {q: round(res[q]["peak_rss_mb"], 1) for q in FILES},
            "features": len(fed), "iv_equal_to_centralized": bool(diff <= 1e-9 and host_iv_ok),
            "max_iv_diff": diff, "iv": {f: round(v, 6) for f, v in sorted(fed.items())},
        })
        print(f"binning {he}: {out['runs'][-1]['seconds']} s, {out['runs'][-1]['bytes_total']:,} B, "
              f"IV equal: {out['runs'][-1]['iv_equal_to_centralized']}", flush=True)
    by = {r["he"]: r for r in out["runs"]}
    if "ou" in by and "paillier" in by:
        out["ou_over_paillier"] = {"seconds": round(by["ou"]["seconds"] / by["paillier"]["seconds"], 3),
                                   "bytes": round(by["ou"]["bytes_total"] / by["paillier"]["bytes_total"], 3)}
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out
