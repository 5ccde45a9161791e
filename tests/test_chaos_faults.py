"""The network-fault plumbing of the chaos suite (benchmarks/suites/chaos.py), cheaply: no chaos run.

One party pair (gov -> bank) over real gRPC + mutual TLS transports, gov's
``[peers]`` address for bank routed through a proxy of benchmarks/linkshaper.py,
and the chaos suite's own fault selector and injector acting on that proxy.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

pytest.importorskip("benchmarks.linkshaper")

from benchmarks.linkshaper import LinkShaper  # noqa: E402
from benchmarks.suites.chaos import (  # noqa: E402
    FAULT_KINDS,
    NETWORK_FAULTS,
    Fault,
    draw_fault,
    inject_network,
    parse_fault_kinds,
)
from fedcredit.certs import init_ca, issue  # noqa: E402
from fedcredit.transport.grpc import GrpcTransport  # noqa: E402


def test_selector_draws_every_kind_on_parties_and_links_of_the_job():
    rng = random.Random(0)
    parties = ("bank", "chain", "supervisor")
    seen = set()
    for _ in range(300):
        f = draw_fault(rng, FAULT_KINDS, parties, deadline=2.0)
        seen.add(f.kind)
        if f.kind in NETWORK_FAULTS:
            a, b = f.link
            assert a != b and {a, b} <= set(parties) and f.party is None
            assert f"{a}" in f.describe() and f"{b}" in f.describe()  # a failure's fault names the link
            assert 0 <= f.hold <= 5.0 and f.direction in ("up", "down")
            if f.kind == "stall":
                assert f.hold > 2 * 2.0  # longer than the transport deadline
            if f.kind == "truncate":
                assert 0 <= f.nbytes <= 64 * 1024
        else:
            assert f.party in parties and f.link is None and f.party in f.describe()
    assert seen == set(FAULT_KINDS)
    # a subset is honoured; two-party jobs draw links between their two parties only
    for _ in range(20):
        f = draw_fault(rng, ["reset"], ("bank", "chain"), deadline=2.0)
        assert f.kind == "reset" and set(f.link) == {"bank", "chain"}


def test_fault_kinds_option():
    assert parse_fault_kinds(",".join(FAULT_KINDS)) == list(FAULT_KINDS)
    assert parse_fault_kinds(" reset, partition,reset ") == ["reset", "partition"]
    for bad in ("", "reset,flood", "SIGKILL"):
        with pytest.raises(ValueError, match="faults-kinds"):
            parse_fault_kinds(bad)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """bank and gov transports; gov reaches bank through a proxy ``gov->bank``, bank reaches gov directly."""
    d = tmp_path_factory.mktemp("pki")
    init_ca(d / "ca")
    bank = GrpcTransport(party="bank", listen="127.0.0.1:0", tls=issue(d / "ca", "bank"), peers={}, deadline=2.0)
    gov = GrpcTransport(party="gov", listen="127.0.0.1:0", tls=issue(d / "ca", "gov"), peers={}, deadline=2.0)
    shaper = LinkShaper()
    try:
        bank.start()
        gov.start()
        proxy = shaper.add_proxy(bank.port, "proxy", src="gov", dst="bank")
        gov.set_peers({"bank": f"127.0.0.1:{proxy.port}"})
        bank.set_peers({"gov": f"127.0.0.1:{gov.port}"})
        yield bank, gov, shaper, proxy
    finally:
        gov.stop(0.2)
        bank.stop(0.2)
        shaper.close()


def _send_in_thread(gov, tag, value, errors):
    def go():
        try:
            gov.channel("job").send("bank", tag, value)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
    th = threading.Thread(target=go)
    th.start()
    return th


def test_reset_cuts_the_pair_and_the_next_push_reconnects(pair):
    bank, gov, shaper, proxy = pair
    gov.channel("job").send("bank", "before", 1)
    assert bank.channel("job").recv("gov", "before", timeout=5) == 1
    before = proxy.connections
    inject_network(shaper, Fault("reset", link=("gov", "bank")))
    gov.channel("job").send("bank", "after-reset", 2)  # the RST connection is replaced (a retry if it was in use)
    assert bank.channel("job").recv("gov", "after-reset", timeout=5) == 2
    assert proxy.connections > before  # a new TCP connection through the proxy: the old one was reset


@pytest.mark.parametrize("fault", [Fault("partition", link=("gov", "bank"), hold=1.0),
                                   Fault("truncate", link=("gov", "bank"), direction="up", nbytes=0, hold=1.0)])
def test_push_during_a_network_fault_is_retried_and_arrives_once(pair, fault):
    bank, gov, shaper, proxy = pair
    gov.channel("job").send("bank", f"warm-{fault.kind}", 0)
    assert bank.channel("job").recv("gov", f"warm-{fault.kind}", timeout=5) == 0
    refused, connections = proxy.refused, proxy.connections
    errors: list = []
    started = threading.Event()

    def sleep(s):  # the push starts while the link is down
        started.set()
        time.sleep(s)

    injector = threading.Thread(target=inject_network, args=(shaper, fault), kwargs={"sleep": sleep})
    injector.start()
    assert started.wait(5)
    th = _send_in_thread(gov, f"during-{fault.kind}", 42, errors)
    injector.join(10)
    th.join(20)
    assert not errors, errors
    assert bank.channel("job").recv("gov", f"during-{fault.kind}", timeout=5) == 42
    if fault.kind == "partition":
        assert proxy.refused > refused  # attempts during the partition were refused, then retried after it healed
    else:
        assert proxy.connections > connections + 1  # cut streams were re-dialled
    # healed: nothing armed is left on the proxy
    gov.channel("job").send("bank", f"healed-{fault.kind}", 3)
    assert bank.channel("job").recv("gov", f"healed-{fault.kind}", timeout=5) == 3
