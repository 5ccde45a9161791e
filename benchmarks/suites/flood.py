"""A bounded flood from one peer (stalled calls, junk pushes, refused proposals): the other peers' latency and the flooder's disk cost.

Three real party processes on loopback (mTLS). ``gov`` (a listed peer that may
not propose) and ``mallory`` (a stranger with a federation certificate) flood
``bank`` for ``--seconds``; ``chain`` measures its Health and Push round trips
to ``bank`` and runs a bank+chain job meanwhile. Targets (issue #15): chain's
Health and Push p99 under 100 ms, its job succeeds, and ``bank``'s state
directory grows by less than 1 MiB per minute of flood. The driver is shared
with ``tests/adversarial/test_starvation.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=30.0, help="flood duration")
    parser.add_argument("--stalls", type=int, default=80, help="stalled calls per flooder and method")
    parser.add_argument("--proposals", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DATA, help="directory holding credit3/")


def run(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "adversarial"))
    from _flood_fixtures import run_flood

    seconds = 10.0 if getattr(args, "quick", False) else args.seconds
    with tempfile.TemporaryDirectory(prefix="fedcredit-flood-") as tmp:
        res = run_flood(Path(tmp), args.data, seconds=seconds, stalls=args.stalls, proposals=args.proposals)
    res["targets"] = {
        "health_p99_under_100ms": res["health"]["p99_ms"] < 100,
        "push_p99_under_100ms": res["push"]["p99_ms"] < 100,
        "honest_job_succeeded": res["honest_job"]["exit_code"] == 0,
        "disk_under_1MiB_per_minute": res["state_growth_bytes_per_minute"] < 2**20,
    }
    return res
