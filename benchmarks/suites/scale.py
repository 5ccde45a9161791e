"""Scaling curves: time and peak memory vs rows for PSI, SecureBoost per tree and hetero LR per epoch.

Two party processes (bank = guest, chain = host) over mTLS gRPC on loopback
(:func:`benchmarks.harness.run_processes`), 2048-bit Paillier keys, synthetic
data from :mod:`benchmarks.synth` (10 features per party, a known logistic
signal over both parties). For each row count: ECDH PSI of two id sets with
90 % overlap; one SecureBoost tree (depth 3, 32 bins); one epoch of two-party
hetero LR (batch 4000); and, in the parent process, the same tree and epoch
trained centrally on the joined arrays. Writes ``benchmarks/scale.png``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

PARTIES = ("bank", "chain")
PLOT = Path(__file__).resolve().parents[1] / "scale.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", default="10000,100000", help="comma-separated row counts (1000000 is optional)")
    parser.add_argument("--features", type=int, default=10, help="features per party")
    parser.add_argument("--protocols", default="psi,secureboost,hetero_lr")
    parser.add_argument("--plot", type=Path, default=PLOT, help="PNG of the curves")
    parser.add_argument("--timeout", type=float, default=3600.0)


# --------------------------------------------------------------------------- party functions (child processes)

def _ids(n: int, side: str) -> list[str]:
    from benchmarks.synth import customer_id

    start = 0 if side == "guest" else n // 10  # 90 % overlap
    return [customer_id(i) for i in range(start, start + n)]


def psi_guest(channel, *, n: int, host: str) -> dict:
    from fedcredit.protocols.psi import run_guest

    ids = _ids(n, "guest")
    t = time.perf_counter()
    res = run_guest(channel, ids, hosts=[host])
    return {"protocol_seconds": time.perf_counter() - t, "intersection": res.size}


def psi_host(channel, *, n: int, guest: str) -> dict:
    from fedcredit.protocols.psi import run_host

    ids = _ids(n, "host")
    t = time.perf_counter()
    res = run_host(channel, ids, guest=guest)
    return {"protocol_seconds": time.perf_counter() - t, "intersection": res.size}


def sbt_party(channel, *, n: int, f: int, party: str) -> dict:
    from benchmarks.synth import aligned_party
    from fedcredit.protocols.secureboost import VerticalSecureBoost

    X, y = aligned_party(n, f, party, PARTIES)
    est = VerticalSecureBoost(n_trees=1, max_depth=3, learning_rate=0.3, max_bins=32)
    t = time.perf_counter()
    if y is not None:
        est.fit(channel, X, y, role="guest", hosts=list(PARTIES[1:]))
    else:
        est.fit(channel, X, role="host", guest=PARTIES[0])
    out = {"protocol_seconds": time.perf_counter() - t}
    if y is not None:
        out["keygen_seconds"] = est.result_.get("timings", {}).get("keygen")
        out["train_auc"] = (est.result_.get("train") or {}).get("auc")
    return out


def _lr_design(X):
    from fedcredit.models.logistic import Standardizer

    X = np.nan_to_num(X)
    return Standardizer(clip=3.0).fit(X).transform(X)


def lr_party(channel, *, n: int, f: int, party: str) -> dict:
    from benchmarks.synth import aligned_party
    from fedcredit.protocols.hetero_lr import VerticalLogisticRegression

    X, y = aligned_party(n, f, party, PARTIES)
    est = VerticalLogisticRegression(mode="two_party", max_epochs=1, batch_size=4000, validation_fraction=0.1)
    t = time.perf_counter()
    est.fit(channel, _lr_design(X), y, role="guest" if y is not None else "host", guest=PARTIES[0],
            hosts=list(PARTIES[1:]))
    return {"protocol_seconds": time.perf_counter() - t}


# --------------------------------------------------------------------------- parent

def _centralized(n: int, f: int) -> dict:
    from benchmarks.synth import aligned_party
    from fedcredit.models.logistic import LogisticRegressionGD
    from fedcredit.models.tree.gbdt import GBDTReference

    parts = [aligned_party(n, f, p, PARTIES) for p in PARTIES]
    X = np.concatenate([x for x, _ in parts], axis=1)
    y = parts[0][1]
    t = time.perf_counter()
    GBDTReference(n_trees=1, max_depth=3, learning_rate=0.3, max_bins=32).fit(X, y)
    tree = time.perf_counter() - t
    Xs = _lr_design(X)
    t = time.perf_counter()
    LogisticRegressionGD(max_epochs=1, batch_size=4000, validation_fraction=0.1).fit(Xs, y)
    return {"secureboost_tree_seconds": round(tree, 3), "hetero_lr_epoch_seconds": round(time.perf_counter() - t, 4)}


_ROLES = {
    "psi": ({"bank": "benchmarks.suites.scale:psi_guest", "chain": "benchmarks.suites.scale:psi_host"},
            lambda n, f: {"bank": {"n": n, "host": "chain"}, "chain": {"n": n, "guest": "bank"}}),
    "secureboost": ({p: "benchmarks.suites.scale:sbt_party" for p in PARTIES},
                    lambda n, f: {p: {"n": n, "f": f, "party": p} for p in PARTIES}),
    "hetero_lr": ({p: "benchmarks.suites.scale:lr_party" for p in PARTIES},
                  lambda n, f: {p: {"n": n, "f": f, "party": p} for p in PARTIES}),
}
_UNIT = {"psi": "PSI (whole run)", "secureboost": "SecureBoost, per tree", "hetero_lr": "hetero LR, per epoch"}


def run(args: argparse.Namespace) -> dict:
    from benchmarks.harness import run_processes

    rows = [int(r) for r in str(args.rows).split(",") if r]
    if getattr(args, "quick", False):
        rows = [2000, 5000]
    protocols = [p for p in str(args.protocols).split(",") if p]
    unknown = set(protocols) - set(_ROLES)
    if unknown:
        raise SystemExit(f"unknown protocol(s) {sorted(unknown)}; known: {sorted(_ROLES)}")
    runs = []
    for n in rows:
        for proto in protocols:
            roles, kw = _ROLES[proto]
            load = os.getloadavg()[0]
            t = time.perf_counter()
            out = run_processes(roles, kw(n, args.features), timeout=args.timeout, job_id=f"scale-{proto}-{n}")
            wall = time.perf_counter() - t
            runs.append({
                "protocol": proto, "rows": n, "features_per_party": args.features,
                "seconds": round(max(out[p]["protocol_seconds"] for p in roles), 3),
                "seconds_with_process_start": round(wall, 2),
                "peak_rss_mb": {p: round(out[p]["peak_rss_mb"], 1) for p in roles},
                "bytes_sent": {p: int(out[p]["bytes_sent"]) for p in roles},
                "load_average_before": round(load, 2),
                **({"intersection": out["bank"]["intersection"]} if proto == "psi" else {}),
                **({"train_auc": out["bank"].get("train_auc")} if proto == "secureboost" else {}),
            })
            print(f"scale: {proto:<12} {n:>8} rows  {runs[-1]['seconds']:>8.2f} s  "
                  f"peak {max(runs[-1]['peak_rss_mb'].values()):.0f} MB", flush=True)
    centralized = {n: _centralized(n, args.features) for n in rows}
    result = {"parties": list(PARTIES), "key_bits": 2048, "runs": runs,
              "centralized": {str(n): v for n, v in centralized.items()}}
    target = args.plot
    if getattr(args, "quick", False) and target == PLOT and getattr(args, "out", None):
        target = Path(args.out).with_suffix(".png")  # a smoke run does not replace the published curves
    if target:
        result["plot"] = str(plot(runs, centralized, target))
    return result


def plot(runs: list[dict], centralized: dict, path: Path) -> Path:
    """Time vs rows (log-log) per protocol, and peak memory vs rows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = {"psi": "#1f5fa8", "secureboost": "#e07b22", "hetero_lr": "#2c9a56"}
    for proto in dict.fromkeys(r["protocol"] for r in runs):
        rs = sorted((r for r in runs if r["protocol"] == proto), key=lambda r: r["rows"])
        xs = [r["rows"] for r in rs]
        ax.plot(xs, [r["seconds"] for r in rs], marker="o", color=colors.get(proto), label=_UNIT.get(proto, proto))
        ax2.plot(xs, [max(r["peak_rss_mb"].values()) for r in rs], marker="o", color=colors.get(proto),
                 label=_UNIT.get(proto, proto))
        key = {"secureboost": "secureboost_tree_seconds", "hetero_lr": "hetero_lr_epoch_seconds"}.get(proto)
        if key and centralized:
            ns = sorted(centralized)
            ax.plot(ns, [max(centralized[n][key], 1e-3) for n in ns], linestyle="--", color=colors.get(proto),
                    label=f"{_UNIT[proto]}, centralized")
    for a, ylabel, title in ((ax, "seconds", "time vs rows (2 processes, mTLS, Paillier-2048)"),
                             (ax2, "peak RSS of the busiest party (MB)", "peak memory vs rows")):
        a.set_xscale("log")
        a.set_xlabel("rows")
        a.set_ylabel(ylabel)
        a.set_title(title, fontsize=10)
        a.grid(True, which="both", color="#e3e8ee")
        a.legend(fontsize=7)
    ax.set_yscale("log")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
