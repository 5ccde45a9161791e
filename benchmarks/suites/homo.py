"""Horizontal FedAvg across three banks: plain vs secure aggregation vs CKKS, as separate processes.

Three banks (default_credit homo_bank{1,2,3}.csv) and an aggregator holding
homo_test.csv run as four processes over mTLS gRPC on loopback
(``benchmarks.harness``). For each mode: total seconds, median seconds per
round, per-round overhead versus plain, test AUC/KS, peak RSS of the whole
deployment; plus centralized sklearn logistic regression on the union of the
banks, measured in the same run. ``--kill-check`` also kills one bank process
mid-round (SIGKILL during round 3 of secagg) and reports that training finished.
``--quick``: 3 rounds, one run per mode (unless ``--rounds``/``--repeats`` are given).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BANKS = ["bank1", "bank2", "bank3"]


def add_arguments(parser) -> None:
    parser.add_argument("--modes", default="plain,secagg,ckks")
    parser.add_argument("--rounds", type=int, default=None, help="FedAvg rounds (default 10; 3 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per mode, medians reported (default 1)")
    parser.add_argument("--model", default="logistic", choices=["logistic", "mlp"])
    parser.add_argument("--kill-check", action="store_true", help="also kill one bank mid-round")
    parser.add_argument("--data", type=Path, default=None,
                        help="directory of homo_bank*.csv, homo_test.csv (default: default_credit/ of the shipped data)")


def _vm_hwm_mb() -> float:
    """This process's own peak RSS (VmHWM is per address space, reset at exec; ru_maxrss can
    carry the parent's high-water mark across fork+exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class _Killer:
    """A channel proxy that SIGKILLs its own process when it is about to send ``tag``."""

    def __init__(self, ch, tag: str):
        self._ch, self._tag = ch, tag

    def send(self, peer, tag, obj):
        if tag == self._tag:
            os.kill(os.getpid(), signal.SIGKILL)
        return self._ch.send(peer, tag, obj)

    def __getattr__(self, name):
        return getattr(self._ch, name)


def bank(channel, *, path: str, params: dict, aggregator: str = "agg", clients=BANKS, kill_before: str | None = None):
    """A bank's process: load its table and take part in FedAvg."""
    from fedcredit.data import load_table
    from fedcredit.protocols.homo import FedAvgClassifier

    table = load_table(path, party=channel.party, label_column="y")
    ch = _Killer(channel, kill_before) if kill_before else channel
    est = FedAvgClassifier(**params).fit(ch, table, role="client", clients=list(clients), aggregator=aggregator)
    return {"rounds_included": est.report_["rounds_included"], "vm_hwm_mb": _vm_hwm_mb()}


def aggregator(channel, *, test_path: str, params: dict, clients=BANKS, result_path: str | None = None):
    """The aggregator's process: drive the rounds, evaluate on the held-out table."""
    from fedcredit.data import load_table
    from fedcredit.protocols.homo import FedAvgClassifier

    test = load_table(test_path, party=channel.party, label_column="y")
    est = FedAvgClassifier(**params).fit(channel, test, role="aggregator", clients=list(clients), aggregator=channel.party)
    rep = {k: v for k, v in est.report_.items() if k not in ("params", "metrics")}
    rep["history"] = [{k: v for k, v in h.items()} for h in rep["history"]]
    if result_path:  # survives a PartyFailed raised for a deliberately killed bank
        Path(result_path).write_text(json.dumps(rep))
    return {"train_seconds": rep["seconds"], "test_auc": rep["test_auc"], "vm_hwm_mb": _vm_hwm_mb()}


def _centralized(data: Path) -> dict:
    from sklearn.linear_model import LogisticRegression

    from fedcredit.data import load_table
    from fedcredit.models.metrics import auc, ks

    tabs = [load_table(data / f"homo_{b}.csv", party=b, label_column="y") for b in BANKS]
    test = load_table(data / "homo_test.csv", party="agg", label_column="y")
    t = time.perf_counter()
    lr = LogisticRegression(max_iter=1000).fit(np.vstack([x.X for x in tabs]), np.concatenate([x.y for x in tabs]))
    p = lr.predict_proba(test.X)[:, 1]
    return {"test_auc": auc(test.y, p), "test_ks": ks(test.y, p), "seconds": time.perf_counter() - t}


def _run_mode(args, mode: str, *, kill: bool = False) -> dict:
    from benchmarks.harness import PartyFailed, run_processes

    params = {"mode": mode, "rounds": args.rounds, "model": args.model, "stage_timeout": 5.0}
    with tempfile.TemporaryDirectory() as d:
        result_path = str(Path(d) / "agg.json")
        kwargs = {b: {"path": str(args.data / f"homo_{b}.csv"), "params": params} for b in BANKS}
        if kill:
            # dies mid-round: after dealing its shares for the round (with the previous upload), before uploading
            kwargs["bank2"]["kill_before"] = f"round-{min(3, args.rounds - 1)}/masked"
        kwargs["agg"] = {"test_path": str(args.data / "homo_test.csv"), "params": params, "result_path": result_path}
        roles = {b: "benchmarks.suites.homo:bank" for b in BANKS} | {"agg": "benchmarks.suites.homo:aggregator"}
        t = time.perf_counter()
        try:
            out = run_processes(roles, kwargs, timeout=300, job_id=f"homo-{mode}")
            killed = None
        except PartyFailed as exc:
            if not kill or set(exc.failures) != {"bank2"}:
                raise
            out, killed = None, exc.failures["bank2"].get("kind")
        wall = time.perf_counter() - t
        rep = json.loads(Path(result_path).read_text())
    res = {
        "mode": mode,
        "seconds": rep["seconds"],
        "setup_seconds": rep["setup_seconds"],
        "median_round_seconds": statistics.median(rep["round_seconds"]),
        "rounds": rep["rounds"],
        "test_auc": rep["test_auc"],
        "test_ks": rep["test_ks"],
        "wall_seconds_with_process_start": wall,
        "round_clients": [h["clients"] for h in rep["history"]],
        "median_stage_seconds": {k: statistics.median(h["stage_seconds"].get(k, 0.0) for h in rep["history"])
                                 for k in rep["history"][0]["stage_seconds"]},
    }
    if out is not None:
        res["peak_rss_mb_total"] = sum(o["vm_hwm_mb"] for o in out.values())
        res["peak_rss_mb"] = {p: o["vm_hwm_mb"] for p, o in out.items()}
        res["harness_ru_maxrss_mb"] = {p: o["peak_rss_mb"] for p, o in out.items()}
        res["bytes_sent"] = {p: o["bytes_sent"] for p, o in out.items()}
    if kill:
        res["killed"] = {"party": "bank2", "during": "round 3 (after dealing its shares, before its masked upload)", "how": killed}
        res["dropped"] = rep["dropped"]
    return res


def run(args) -> dict:
    if args.data is None:
        from benchmarks.data import data_root

        args.data = data_root() / "default_credit"
    quick = getattr(args, "quick", False)
    if args.rounds is None:
        args.rounds = 3 if quick else 10
    if args.repeats is None:
        args.repeats = 1
    modes = [m for m in args.modes.split(",") if m]
    load_before = os.getloadavg()
    central = _centralized(args.data)
    per_mode = {}
    for mode in modes:
        runs = [_run_mode(args, mode) for _ in range(args.repeats)]
        best = dict(runs[0])
        for key in ("seconds", "median_round_seconds", "peak_rss_mb_total"):
            best[key] = statistics.median(r[key] for r in runs)
        per_mode[mode] = best
    out = {
        "config": {"banks": BANKS, "rounds": args.rounds, "local_epochs": 1, "model": args.model,
                   "transport": "mTLS gRPC on loopback, one process per party", "repeats": args.repeats,
                   "quick": quick},
        "load_average_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        "centralized_lr": central,
        "modes": per_mode,
    }
    if "plain" in per_mode:
        base = per_mode["plain"]["median_round_seconds"]
        out["overhead_per_round_vs_plain"] = {m: r["median_round_seconds"] / base for m, r in per_mode.items()}
    out["auc_gap_vs_centralized"] = {m: r["test_auc"] - central["test_auc"] for m, r in per_mode.items()}
    out["targets"] = {
        "auc_within_0.002": all(abs(v) <= 0.002 for v in out["auc_gap_vs_centralized"].values()),
        "secagg_overhead_le_1.5x": out.get("overhead_per_round_vs_plain", {}).get("secagg", 0) <= 1.5,
        "secagg_10_rounds_le_20s": per_mode.get("secagg", {}).get("seconds", 0) <= 20,
        "deployment_rss_le_600mb": all(r.get("peak_rss_mb_total", 0) <= 600 for r in per_mode.values()),
    }
    out["flower_1.42_secaggplus_reference"] = {"overhead_vs_plain": 3.6, "seconds_per_round": 60,
                                               "ten_rounds_seconds": 626, "rss_gb": 2.4}
    if args.kill_check:
        out["kill_one_bank_mid_round"] = _run_mode(args, "secagg", kill=True)
    return out
