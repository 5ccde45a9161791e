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

from conftest import DATA, data_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    data_path("credit3", "bank.csv")  # fails under CI=true when missing, skips elsewhere
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
    assert flood["stalled_calls_refused"] > 0 and flood["stalled_calls_refused_mallory"] > 0, flood


def test_junk_pushes_are_deferred_not_stored_without_bound(flood):
    j = flood["junk_pushes"]
    assert j["accepted"] > 0 and j["deferred"] > 0, j


def test_refused_proposals_are_throttled_and_cost_no_disk(flood):
    p = flood["proposals"]
    assert 1 <= p["refused_by_policy"] <= 45 and p["throttled"] >= p["sent"] - 45, p  # 30/min, bursts of 30
    assert p["stored_rows"] == p["refused_by_policy"] and p["largest_stored_body"] < 200, p  # a digest, not 20 kB
    assert flood["state_growth_bytes_per_minute"] < 2**20, flood["state_growth_bytes"]


# --------------------------------------------------------------------------- the mechanisms, in one process

import threading  # noqa: E402
import time  # noqa: E402

import grpc  # noqa: E402

from fedcredit.certs import init_ca, issue  # noqa: E402
from fedcredit.errors import PeerError  # noqa: E402
from fedcredit.party.limits import PeerRate  # noqa: E402
from fedcredit.transport.control import Throttled  # noqa: E402
from fedcredit.transport.grpc import GrpcTransport  # noqa: E402
from fedcredit.transport.grpc.limits import LogThrottle  # noqa: E402

from _flood_fixtures import raw_channel  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    init_ca(d)
    return {n: issue(d, n) for n in ("bank", "chain", "gov", "mallory")}


@pytest.fixture
def trio(pki):
    ts = {n: GrpcTransport(party=n, listen="127.0.0.1:0", tls=pki[n], peers={}, deadline=5.0, retries=3,
                           max_message_bytes=2**16, max_buffer_bytes=2**17, orphan_ttl=1.0, max_workers=16)
          for n in ("bank", "chain", "gov")}
    for t in ts.values():
        t.start()
    for n, t in ts.items():
        t.set_peers({m: f"127.0.0.1:{o.port}" for m, o in ts.items() if m != n})
    try:
        yield ts
    finally:
        for t in ts.values():
            t.stop(0.2)


def test_one_peers_orphan_pushes_do_not_fill_another_peers_budget(trio):
    bank, chain, gov = trio["bank"], trio["chain"], trio["gov"]
    for i in range(3):  # gov fills its own budget (128 KiB) with messages for jobs that never run here
        gov._push("bank", f"never-{i}", "junk", b"x" * 40_000)
    with pytest.raises(PeerError, match=r"receive buffer full for 'gov'.*RESOURCE_EXHAUSTED"):
        gov._push("bank", "never-9", "junk", b"x" * 40_000, retries=0)
    # chain's job is not affected: its own budget is untouched
    chain.channel("real").send("bank", "a", b"y" * 60_000)
    assert bank.channel("real").recv("chain", "a", timeout=5) == b"y" * 60_000
    # gov's orphans expire (orphan_ttl = 1 s): its budget is back and the next push is accepted
    time.sleep(1.2)
    gov._push("bank", "never-10", "junk", b"x" * 40_000)
    assert bank._mailbox.used_by["gov"] < 2 * 41_000


def test_a_deferred_push_is_retried_as_told_and_delivered(trio):
    bank, gov = trio["bank"], trio["gov"]
    cb, cg = bank.channel("slow"), gov.channel("slow")
    cg.send("bank", "a", b"x" * 60_000)
    cg.send("bank", "b", b"x" * 60_000)
    taker = threading.Timer(0.5, lambda: cb.recv("gov", "a", timeout=5))
    taker.start()
    t0 = time.monotonic()
    cg.send("bank", "c", b"x" * 60_000)  # over the budget until 'a' is taken: deferred, then retried
    assert time.monotonic() - t0 >= 0.4
    taker.join()
    assert cb.recv("gov", "c", timeout=5) == b"x" * 60_000


def test_stalled_calls_hold_at_most_a_callers_share(trio, pki):
    bank, chain = trio["bank"], trio["chain"]
    addr = f"127.0.0.1:{bank.port}"
    gate = threading.Event()

    def never():
        gate.wait()
        return
        yield b""  # pragma: no cover

    stalled = []
    try:
        for who in ("gov", "mallory"):
            ch = raw_channel(addr, "bank", pki[who])
            call = ch.stream_unary("/fedcredit.v1.Federation/Ping", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
            stalled.append((ch, [call.future(never(), timeout=30) for _ in range(40)]))
        time.sleep(1.0)
        # 16 server threads: gov holds at most its share (8); mallory, a stranger, holds none: the authorization
        # check inside the call limits refuses it before its request is read; the rest of gov's calls were
        # refused or wait on the caller's side (at most 8 streams per connection); chain still gets answers fast
        active = dict(bank._calls._active)
        assert 0 < active.get("gov", 0) <= bank._calls.per_peer == 8 and active.get("(unlisted)", 0) == 0, active
        done = [f for _, fs in stalled for f in fs if f.done()]
        refusals = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,  # over the limit / REFUSED_STREAM
                    grpc.StatusCode.PERMISSION_DENIED)  # a stranger
        assert done and all(f.exception().code() in refusals for f in done)
        assert all(f.done() for f in stalled[1][1]), "every stranger call ends at once"
        for _ in range(20):
            t0 = time.monotonic()
            chain._probe("bank", "job")
            assert time.monotonic() - t0 < 1.0
    finally:
        gate.set()
        for ch, fs in stalled:
            for f in fs:
                f.cancel()
            ch.close()


def test_refusal_logging_is_bounded():
    throttle = LogThrottle(per_minute=20)
    assert sum(throttle.allow("gov")[0] for _ in range(10_000)) == 20


def test_proposal_rate_per_peer():
    clock = [0.0]
    rate = PeerRate(30, "job proposals", clock=lambda: clock[0])
    for _ in range(30):
        rate.take("gov")
    with pytest.raises(Throttled, match="too many job proposals from 'gov'"):
        rate.take("gov")
    rate.take("chain")  # another peer's budget is its own
    clock[0] += 2.0
    rate.take("gov")  # one per 2 s refills
