"""Class 6 of issue #15: one peer (or a stranger) cannot starve the others (real processes, raw gRPC).

Attacks, each against a real ``bank`` process:
1. 80 stalled unary calls on Health and 80 on Control.ListJobs from a listed peer (gov) and as many from a
   stranger with a federation certificate (mallory): the request is never sent;
2. junk pushes from gov for jobs that never run, as fast as bank accepts them;
3. 200 job proposals of 20 kB from gov, which may not propose to bank;
while chain (honest) measures its Health and Push round trips and runs a bank+chain job.
Thresholds are loose (a loaded 2-core machine); ``benchmarks/run.py flood`` prints the figures.
"""

from __future__ import annotations

import pytest

from _flood_fixtures import run_flood

from conftest import DATA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    if not (DATA / "credit3" / "bank.csv").exists():
        pytest.skip("credit3 data not present")
    return run_flood(tmp_path_factory.mktemp("flood"), DATA, seconds=15.0)


def test_honest_peer_job_succeeds_during_flood(flood):
    assert flood["honest_job"]["exit_code"] == 0, flood


def test_honest_peer_latency_stays_low(flood):
    assert flood["health"]["n"] >= 20 and flood["push"]["n"] >= 20, flood
    assert flood["probe_error_count"] == 0, flood["probe_errors"]
    # the figure to meet is 100 ms (benchmarks/run.py flood); the test allows for a loaded machine
    assert flood["health"]["p99_ms"] < 1000 and flood["push"]["p99_ms"] < 1000, flood


def test_stalled_calls_beyond_a_callers_share_are_refused_at_once(flood):
    # gov may hold 24 calls and all strangers together 4; the rest is refused (or queued on the caller's side)
    assert flood["stalled_calls_refused"] > 0, flood


def test_junk_pushes_are_deferred_not_stored_without_bound(flood):
    j = flood["junk_pushes"]
    assert j["deferred"] > 0 and j["accepted"] < j["sent"], j


def test_refused_proposals_are_throttled_and_cost_no_disk(flood):
    p = flood["proposals"]
    assert p["refused_by_policy"] <= 31 and p["throttled"] >= p["sent"] - 31, p
    assert flood["state_growth_bytes_per_minute"] < 2**20, flood["state_growth_bytes"]
