#!/usr/bin/env python
"""A researcher's sweep on credit3: SecureBoost trees x depth, hetero LR with Paillier vs CKKS.

Every configuration is one federated job run by ``fedcredit.local_federation`` — in-process by
default (all parties in this process over the in-memory channel, the same protocols and real
2048-bit keys; ``--mode processes`` runs party processes over mutual TLS instead) — next to the
same algorithm trained centrally on the joined rows (possible only in a simulation). Prints a
results table; ``--csv PATH`` also writes it.

    python examples/sweep.py                               # 4,000 bank customers, the grid below
    python examples/sweep.py --rows 0 --trees 5,20 --depths 3,4   # every customer
    python examples/sweep.py --rows 800 --trees 1 --depths 2 --epochs 1   # a smoke run (what the test runs)
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import fedcredit
from fedcredit import binning, evaluate, hetero_lr, psi, secureboost
from fedcredit.baselines import centralized_baselines

LABEL = "default_next_month"


def subset(tables: dict, rows: int) -> dict:
    """The first ``rows`` bank customers (0: all) and whatever the platforms hold of them."""
    if not rows:
        return tables
    keep = set(tables["bank"]["id"][:rows])
    return {p: df[df["id"].isin(keep)].reset_index(drop=True) for p, df in tables.items()}


def sweep(tables: dict, *, trees=(2, 5), depths=(2, 3), backends=("paillier", "ckks"), epochs: int = 2,
          mode: str = "inprocess", out=sys.stdout) -> list[dict]:
    """Run the grid; returns one row per configuration (federated and centralized AUC, time, bytes)."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)  # the joined reference reads CSV files
        (data / "credit3").mkdir()
        for p, df in tables.items():
            df.to_csv(data / "credit3" / f"{p}.csv", index=False)
        with fedcredit.local_federation(tables, labels={"bank": LABEL}, mode=mode) as fed:
            for n in trees:
                for d in depths:
                    params = {"n_trees": n, "max_depth": d, "learning_rate": 0.3, "max_bins": 32,
                              "early_stopping_rounds": n, "validation_fraction": 0.2}
                    res = fed.run([psi(), secureboost(**params)], progress=False, name=f"sbt-{n}x{d}")
                    res.raise_for_state()
                    # the plaintext reference on the same rows: the guest's secret validation split, from its part
                    central = centralized_baselines(data, params, None,
                                                    sbt_validation_seed=res.validation_seed())["secureboost"][0]
                    rows.append(_row("SecureBoost", f"{n} trees, depth {d}", res, "secureboost", central))
                    print(_fmt(rows[-1]), file=out, flush=True)
            for b in backends:
                lr = {"mode": "two_party", "backend": b, "features": "woe", "learning_rate": 1.0, "batch_size": 1000,
                      "max_epochs": epochs, "validation_fraction": 0.2, "n_iter_no_change": 2}
                res = fed.run([psi(), binning(max_bins=10), hetero_lr(**lr), evaluate()], parties=["bank", "chain"],
                              progress=False, name=f"lr-{b}")
                res.raise_for_state()
                central = centralized_baselines(data, None, lr, lr_parties=("bank", "chain"),
                                                binning_params={"max_bins": 10})["hetero_lr"][0]
                rows.append(_row("hetero LR", f"{b}, WOE, {epochs} epoch(s)", res, "evaluate", central,
                                 seconds_step="hetero_lr"))
                print(_fmt(rows[-1]), file=out, flush=True)
    return rows


def _row(model: str, config: str, res, metric_step: str, central: dict, seconds_step: str | None = None) -> dict:
    v = res.metrics[metric_step]["validation"]
    return {"model": model, "config": config, "federated_auc": round(v["auc"], 4), "federated_ks": round(v["ks"], 4),
            "central_auc": central["auc"], "central_ks": central["ks"],
            "seconds": res.steps[seconds_step or metric_step].seconds, "bytes_on_wire": res.bytes_on_wire}


HEADER = f"{'model':<12} {'configuration':<28} {'fed AUC':>8} {'central AUC':>11} {'fed KS':>7} {'seconds':>8} " \
         f"{'on the wire':>12}"


def _fmt(r: dict) -> str:
    return (f"{r['model']:<12} {r['config']:<28} {r['federated_auc']:>8.4f} {r['central_auc']:>11.4f} "
            f"{r['federated_ks']:>7.4f} {r['seconds']:>8.2f} {r['bytes_on_wire'] / 1e6:>9.1f} MB")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=4000, help="bank customers to use (0: all 28,000)")
    ap.add_argument("--trees", default="2,5", help="comma-separated numbers of trees")
    ap.add_argument("--depths", default="2,3", help="comma-separated depths")
    ap.add_argument("--backends", default="paillier,ckks", help="hetero LR backends")
    ap.add_argument("--epochs", type=int, default=2, help="hetero LR epochs")
    ap.add_argument("--mode", default="inprocess", choices=fedcredit.api.MODES)
    ap.add_argument("--csv", metavar="PATH", help="also write the table as CSV")
    a = ap.parse_args(argv)
    tables = subset(fedcredit.datasets.load_credit3(), a.rows)
    print(f"credit3: {len(tables['bank'])} bank customers, mode {a.mode}; AUC/KS on the guest's 20 % validation rows")
    print(HEADER)
    t0 = time.time()
    rows = sweep(tables, trees=[int(x) for x in a.trees.split(",") if x],
                 depths=[int(x) for x in a.depths.split(",") if x],
                 backends=[x for x in a.backends.split(",") if x], epochs=a.epochs, mode=a.mode)
    print(f"{len(rows)} federated jobs in {time.time() - t0:.1f}s")
    if a.csv:
        with open(a.csv, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"written: {a.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
