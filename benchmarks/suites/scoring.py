"""Federated scoring: bank + two platforms as separate party processes (``fedcredit party serve``) over mTLS.

Models: SecureBoost (30 trees, depth 3 by default), trained federatedly in this
process on the credit3 intersection with a small Paillier key from
``fedcredit.testing`` (training speed is not what this suite measures; scoring
uses no Paillier at all), and a logistic regression fitted on the same joined
rows and split into per-party parts in the hetero_lr step's format. The parts
are written into each party's state dir as the training steps do, then three
party processes start and the bank's operator scores through the bank's own
party (client → bank → chain + gov in parallel → bank → client; SecureBoost
is path-only: up to ``depth`` such round trips, see docs/scoring.md), exactly
the ``fedcredit score`` path.

Reported: applicants/second for batches (default 1,000 and 10,000; median of
repeats), latency p50/p99 of single-applicant requests, per model; the same
with reason codes (``--reasons 4``) under ``reasons`` (``applicants_per_second``
at the largest batch, ``p99_ms``, ``batch_cost_ratio`` against plain scoring);
the targets (≥ 5,000 applicants/s, p99 ≤ 30 ms, reasons ≤ 1.5× plain) and
whether they were met.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.data import data_root

__all__ = ["add_arguments", "run"]

JOB = "bench-20240101-000000-000000"
PARTIES = ("bank", "chain", "gov")
HOSTS = ("chain", "gov")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="directory holding credit3/ (default: $FEDCREDIT_DATA, else the "
                                                      "data sets shipped with fedcredit)")
    parser.add_argument("--train-rows", type=int, default=3000, help="rows of the intersection to train on")
    parser.add_argument("--trees", type=int, default=30)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batches", default="1000,10000", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="runs per batch size (median reported)")
    parser.add_argument("--singles", type=int, default=500, help="single-applicant requests per model")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--workdir", default="", help="keep the federation here and reuse trained parts found "
                                                       "there (default: a temporary directory)")


def _rows(table, ids) -> np.ndarray:
    index = {k: i for i, k in enumerate(table.ids)}
    out = np.full((len(ids), table.X.shape[1]), np.nan)
    for r, k in enumerate(ids):
        i = index.get(k)
        if i is not None:
            out[r] = table.X[i]
    return out


def _train(root: Path, t: dict, n_rows: int, trees: int, depth: int) -> dict:
    from fedcredit.models.logistic import LogisticRegressionGD, Standardizer
    from fedcredit.artifacts import FileArtifacts
    from fedcredit.protocols.scoring.parts import save_lr_part
    from fedcredit.protocols.secureboost import VerticalSecureBoost
    from fedcredit.testing import small_keypair
    from fedcredit.transport.memory import run_local

    ids = sorted(set(t["bank"].ids) & set(t["chain"].ids) & set(t["gov"].ids))[:n_rows]
    X = {p: _rows(t[p], ids) for p in PARTIES}
    label = dict(zip(t["bank"].ids, t["bank"].y))
    y = np.array([label[i] for i in ids])
    wd = {p: root / "state" / p / "jobs" / JOB for p in PARTIES}
    kp = small_keypair(1024)
    kw = {"n_trees": trees, "max_depth": depth, "learning_rate": 0.3, "key_bits": 2048}
    t0 = time.perf_counter()
    fns = {"bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, X["bank"], y, keypair=kp,
                                                            feature_names=list(t["bank"].feature_names),
                                                            artifacts=FileArtifacts(wd["bank"] / "sbt"))}
    for h in HOSTS:
        fns[h] = lambda ch, h=h: VerticalSecureBoost(**kw).fit(ch, X[h], guest="bank",
                                                                feature_names=list(t[h].feature_names),
                                                                artifacts=FileArtifacts(wd[h] / "sbt"))
    run_local(fns, timeout=3600)
    sbt_seconds = time.perf_counter() - t0
    parts, Z = {}, []
    for p in PARTIES:
        st = Standardizer(clip=3.0).fit(X[p])
        parts[p] = {"features": list(t[p].feature_names), "preprocess": "standardized", "standardizer": st.to_dict()}
        Z.append(st.transform(X[p]))
    lr = LogisticRegressionGD(max_epochs=10, random_state=0).fit(np.hstack(Z), y)
    k = 0
    for p in PARTIES:
        n = len(parts[p]["features"])
        parts[p].update(coef=lr.coef_[k:k + n].tolist(), intercept=float(lr.intercept_) if p == "bank" else 0.0)
        k += n
        save_lr_part(FileArtifacts(wd[p] / "lr"), parts[p], party=p, role="guest" if p == "bank" else "host",
                     guest="bank", hosts=list(HOSTS))
    return {"train_rows": len(ids), "sbt_train_seconds": round(sbt_seconds, 2)}


def _reasons(client, model: str, applicants: list, rng, b: int, args, plain: dict, k: int = 4) -> dict:
    """The same requests with ``--reasons k``: batch throughput (size ``b``) and single-applicant p99."""
    secs = []
    for r in range(args.repeats):
        ids = [applicants[i] for i in rng.choice(len(applicants), size=b, replace=False)]
        t0 = time.perf_counter()
        res = client.score_full(model, ids, consent_id=f"rc-{b}-{r}", purpose="loan-application", reasons=k)
        secs.append(time.perf_counter() - t0)
        assert res.reason_index.shape == (b, k)
    lat = []
    for r in range(args.singles):
        i = applicants[int(rng.integers(len(applicants)))]
        t0 = time.perf_counter()
        client.score_full(model, [i], consent_id=f"rs-{r}", purpose="loan-application", reasons=k)
        lat.append((time.perf_counter() - t0) * 1000)
    med = statistics.median(secs)
    return {"k": k, "batch": b, "applicants_per_second": round(b / med), "seconds_median": round(med, 4),
            "batch_cost_ratio": round(med / plain[f"batch_{b}"]["seconds_median"], 3),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2)}


def run(args) -> dict:
    from fedcredit.config import load_party_config
    from fedcredit.data import load_table
    from fedcredit.launcher import Federation, write_federation
    from fedcredit.own_party import own_channel
    from fedcredit.transport.scoring import ScoringClient

    data = Path(args.data) if args.data else data_root()
    t = {"bank": load_table(data / "credit3" / "bank.csv", party="bank", label_column="default_next_month"),
         "chain": load_table(data / "credit3" / "chain.csv", party="chain"),
         "gov": load_table(data / "credit3" / "gov.csv", party="gov")}
    batches = [int(b) for b in str(args.batches).split(",") if b]
    if args.quick:  # a smoke run: a small model, one batch size, fewer repeats and single requests
        args.train_rows, args.repeats, args.singles = min(args.train_rows, 1000), min(args.repeats, 3), \
            min(args.singles, 200)
        args.trees, batches = min(args.trees, 3), [min(batches[0], 1000)]
    out: dict = {"setup": {"parties": list(PARTIES), "transport": "gRPC, mutual TLS, loopback, separate processes",
                           "trees": args.trees, "depth": args.depth, "cores": os.cpu_count(),
                           "load_average": os.getloadavg()}}
    with contextlib.ExitStack() as stack:
        if args.workdir:
            root = Path(args.workdir)
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(root / "certs", ignore_errors=True)  # a fresh CA and party certificates every run
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fedcredit-scoring-")))
        configs = write_federation(root, data, transport={"deadline": 30.0})
        pol = ("\n[policy.scoring]\npurposes = [\"loan-application\"]\nmax_requests_per_minute = 1000000\n"
               "max_ids_per_minute = 100000000\nhead_exchange_seconds = 60.0\n")
        for p in PARTIES:
            with open(configs[p], "a", encoding="utf-8") as fh:
                fh.write(pol)
        trained = root / "trained.json"  # --workdir: parts of an earlier run with the same settings are reused
        want = {"trees": args.trees, "depth": args.depth, "rows": args.train_rows}
        prev = json.loads(trained.read_text()) if trained.exists() else {}
        if prev.get("settings") == want:
            out["setup"].update(prev["setup"])
        else:
            out["setup"].update(_train(root, t, args.train_rows, args.trees, args.depth))
            trained.write_text(json.dumps({"settings": want, "setup": {
                k: out["setup"][k] for k in ("train_rows", "sbt_train_seconds")}}))
        from benchmarks.harness import record_link, shape_federation

        shaper = shape_federation(configs)  # run.py --link: bank <-> platforms through the emulated link
        if shaper is not None:
            stack.callback(record_link, "scoring", shaper)
        fed = Federation(configs)
        fed.start(timeout=60)
        try:
            cfg = load_party_config(configs["bank"])
            ch = own_channel(cfg)
            client = ScoringClient(ch, "bank", timeout=args.timeout)
            applicants = [str(i) for i in t["bank"].ids]  # every bank customer; some are not at chain or gov
            rng = np.random.default_rng(0)
            for name in ("sbt", "lr"):
                model = f"{JOB}/{name}"
                res: dict = {}
                t0 = time.perf_counter()
                client.score(model, applicants[:10], consent_id="warmup", purpose="loan-application")
                res["first_request_seconds"] = round(time.perf_counter() - t0, 3)  # loads parts and tables
                for b in batches:
                    secs = []
                    for r in range(args.repeats):
                        ids = [applicants[i] for i in rng.choice(len(applicants), size=b, replace=False)]
                        t0 = time.perf_counter()
                        s, _ = client.score(model, ids, consent_id=f"c-{b}-{r}", purpose="loan-application")
                        secs.append(time.perf_counter() - t0)
                        assert len(s) == b
                    med = statistics.median(secs)
                    res[f"batch_{b}"] = {"seconds_median": round(med, 4), "applicants_per_second": round(b / med),
                                         "seconds": [round(x, 4) for x in secs]}
                lat = []
                for r in range(args.singles):
                    i = applicants[int(rng.integers(len(applicants)))]
                    t0 = time.perf_counter()
                    client.score(model, [i], consent_id=f"s-{r}", purpose="loan-application")
                    lat.append((time.perf_counter() - t0) * 1000)
                lat.sort()
                res["single"] = {"requests": len(lat), "p50_ms": round(float(np.percentile(lat, 50)), 2),
                                 "p99_ms": round(float(np.percentile(lat, 99)), 2),
                                 "max_ms": round(lat[-1], 2)}
                res["reasons"] = _reasons(client, model, applicants, rng, batches[-1], args, res)
                res["targets"] = {
                    "batch_applicants_per_second_ge_5000": all(res[f"batch_{b}"]["applicants_per_second"] >= 5000
                                                               for b in batches),
                    "single_p99_le_30ms": res["single"]["p99_ms"] <= 30.0,
                    "reasons_cost_le_1_5x": res["reasons"]["batch_cost_ratio"] <= 1.5,
                    "reasons_single_p99_le_30ms": res["reasons"]["p99_ms"] <= 30.0}
                out[name] = res
            ch.close()
            audit = {p: sum(1 for _ in open(root / "state" / p / "audit.log")) for p in PARTIES}
            out["audit_records"] = audit
            rounds = []  # round trips per SecureBoost request, from the bank's audit records
            with open(root / "state" / "bank" / "audit.log", encoding="utf-8") as fh:
                for line in fh:
                    f = json.loads(line).get("fields", {})
                    if f.get("model") == f"{JOB}/sbt" and "rounds" in f:
                        rounds.append(int(f["rounds"]))
            if rounds:
                out["sbt"]["round_trips"] = {"mean": round(statistics.mean(rounds), 2), "max": max(rounds)}
            from benchmarks.harness import process_peak_rss_mb

            # each serving party's peak resident set over the whole run (its model parts, tables and caches)
            out["peak_rss_mb"] = {p: process_peak_rss_mb(proc.pid) for p, proc in fed.procs.items()}
        finally:
            fed.stop()
    return out
