"""gRPC transport: mTLS identity, chunking, idempotency, malformed input, faults.

Every test runs real transports on 127.0.0.1 with ports from binding port 0
and real certificates (one CA per module); the killed-peer test runs real
party processes through ``benchmarks.harness``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedcredit.certs import TlsFiles, init_ca, issue
from fedcredit.crypto.blob import CipherBlob
from fedcredit.errors import ConfigError, PeerError, ProtocolError
from fedcredit.transport.grpc import (
    DEFAULT_CHUNK_BYTES,
    GrpcTransport,
    ServerConfig,
    create_server,
    grpc_options,
    message_sha256,
)
from fedcredit.transport.grpc.framing import encode_chunks
from fedcredit._proto import federation_pb2 as pb
from fedcredit._proto import federation_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PARTIES = ("bank", "gov", "chain", "mallory")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, TlsFiles]:
    """One federation CA with certs for PARTIES, and a foreign CA with its own 'gov' and 'bank'."""
    d = tmp_path_factory.mktemp("pki")
    init_ca(d / "fed")
    out = {name: issue(d / "fed", name) for name in PARTIES}
    init_ca(d / "evil")
    out["evil-gov"] = issue(d / "evil", "gov")
    out["evil-bank"] = issue(d / "evil", "bank")
    return out


class Federation:
    """Start transports for some parties, wire them as peers, stop them all at the end."""

    def __init__(self, pki):
        self.pki = pki
        self.t: dict[str, GrpcTransport] = {}

    def add(self, name: str, *, tls_key: str | None = None, **kw) -> GrpcTransport:
        t = GrpcTransport(party=name, listen="127.0.0.1:0", tls=self.pki[tls_key or name], peers={}, **kw)
        t.start()
        self.t[tls_key or name] = t
        return t

    def addr(self, key: str) -> str:
        return f"127.0.0.1:{self.t[key].port}"

    def link(self, *names: str) -> None:
        """Make the named transports peers of each other."""
        for a in names:
            self.t[a].set_peers({self.t[b].party: self.addr(b) for b in names if b != a})

    def stop(self):
        for t in self.t.values():
            t.stop(grace=0.5)


@pytest.fixture
def fed(pki):
    f = Federation(pki)
    try:
        yield f
    finally:
        f.stop()


def _pair(fed, **kw):
    bank, gov = fed.add("bank", **kw), fed.add("gov", **kw)
    fed.link("bank", "gov")
    return bank, gov


def _raw_push(t: GrpcTransport, peer: str, chunks: list[pb.Chunk], timeout: float = 10) -> pb.PushAck:
    """Push hand-made chunks over t's authenticated channel to peer (bypassing all client-side checks)."""
    return pb_grpc.FederationStub(t.grpc_channel(peer)).Push(iter(chunks), timeout=timeout)


def _header(sender: str, payload: bytes, *, job="job", tag="t", message_id=None, chunk=1000, **kw):
    fields = dict(
        job_id=job,
        tag=tag,
        message_id=message_id or secrets.token_hex(16),
        sender=sender,
        total_size=len(payload),
        sha256=message_sha256(job, tag, payload),
        chunk_count=max(1, -(-len(payload) // chunk)),
        kind=pb.MESSAGE_KIND_DATA,
    )
    fields.update(kw)
    return pb.Header(**fields)


def _chunks(header: pb.Header, payload: bytes, chunk: int = 1000) -> list[pb.Chunk]:
    parts = [payload[i : i + chunk] for i in range(0, len(payload), chunk)] or [b""]
    out = [pb.Chunk(seq=i, data=p) for i, p in enumerate(parts)]
    out[0].header.CopyFrom(header)
    return out


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tls": None}, "mutual TLS is required"),
        ({"insecure": True}, "contradictory TLS options"),
        ({"insecure": "yes", "tls": None}, "insecure must be a bool"),
        ({"peers": {"bank": "127.0.0.1:1"}}, "cannot list itself"),
        ({"peers": {"gov": "nowhere"}}, "must be 'host:port'"),
        ({"chunk_bytes": 64 * 2**20}, "'chunk_bytes' parameter"),
        ({"deadline": 0}, "'deadline' parameter"),
        ({"peer_rate": 0}, "'peer_rate' parameter"),
        ({"peer_inflight": 64}, "'peer_inflight' parameter"),
        ({"max_buffer_bytes": 10, "max_message_bytes": 100}, "'max_buffer_bytes' parameter"),
    ],
)
def test_bad_options_refused(pki, kwargs, match):
    base = dict(party="bank", listen="127.0.0.1:0", tls=pki["bank"], peers={})
    base.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        GrpcTransport(**base)


def test_certificate_of_another_party_refused(pki):
    with pytest.raises(ConfigError, match="issued to party 'gov', not 'bank'"):
        GrpcTransport(party="bank", listen="127.0.0.1:0", tls=pki["gov"], peers={})


def test_grpc_frame_limit_set_once():
    opts = dict(grpc_options())
    assert opts["grpc.max_receive_message_length"] == opts["grpc.max_send_message_length"]
    assert 4 * 2**20 <= opts["grpc.max_receive_message_length"] < 5 * 2**20


def test_create_server_binds_port_0_and_refuses_a_taken_port():
    """``create_server(cfg) -> (server, port)``: port 0 gives a free port; a second bind of it is refused."""
    server, port = create_server(ServerConfig(listen="127.0.0.1:0", name="bank", max_workers=4))
    try:
        assert port > 0
        server.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=5)
        with pytest.raises(ConfigError, match="cannot listen"):
            create_server(ServerConfig(listen=f"127.0.0.1:{port}", name="other", max_workers=4))
    finally:
        server.stop(0)


# --------------------------------------------------------------------------- delivery


def test_roundtrip_and_20mib_payload(fed):
    bank, gov = _pair(fed)
    cb, cg = bank.channel("job"), gov.channel("job")
    cb.send("gov", "hello", {"rows": 3, "x": np.arange(5)})
    got = cg.recv("bank", "hello", timeout=10)
    assert got["rows"] == 3 and got["x"].tolist() == [0, 1, 2, 3, 4]

    big = np.frombuffer(np.random.default_rng(0).bytes(20 * 2**20), dtype=np.uint8)
    blob = CipherBlob("paillier", b"k" * 32, 512, len(big) // 512, big.tobytes())
    cg.send("bank", "big", blob)
    back = cb.recv("gov", "big", timeout=30)
    assert back.data == blob.data and back.count == blob.count
    assert cb.stats.total("received", "gov") > 20 * 2**20  # > 20 chunks of 1 MiB crossed


@pytest.mark.parametrize("n_msgs", [1, 25])
def test_concurrent_senders_and_jobs(fed, n_msgs):
    for name in ("bank", "gov", "chain"):
        fed.add(name)
    fed.link("bank", "gov", "chain")
    errors = []

    def send_all(sender, job):
        ch = fed.t[sender].channel(job)
        for i in range(n_msgs):
            _catch(errors, ch.send, "bank", f"m-{i}", {"from": sender, "i": i, "job": job})

    threads = [threading.Thread(target=send_all, args=(s, j)) for s in ("gov", "chain") for j in ("j1", "j2")]
    for t in threads:
        t.start()
    got = {}
    for j in ("j1", "j2"):
        ch = fed.t["bank"].channel(j)
        for s in ("gov", "chain"):
            for i in reversed(range(n_msgs)):  # any order: messages wait in the buffer
                got[(j, s, i)] = ch.recv(s, f"m-{i}", timeout=10)
    for t in threads:
        t.join(10)
    assert not errors
    assert all(v == {"from": s, "i": i, "job": j} for (j, s, i), v in got.items()) and len(got) == 4 * n_msgs


def test_insecure_mode_works_only_when_asked(fed):
    bank = GrpcTransport(party="bank", listen="127.0.0.1:0", tls=None, peers={}, insecure=True)
    gov = GrpcTransport(party="gov", listen="127.0.0.1:0", tls=None, peers={}, insecure=True)
    try:
        bank.set_peers({"gov": f"127.0.0.1:{gov.start()}"})
        gov.set_peers({"bank": f"127.0.0.1:{bank.start()}"})
        gov.channel("job").send("bank", "plain", 1)
        assert bank.channel("job").recv("gov", "plain", timeout=5) == 1
    finally:
        bank.stop(0)
        gov.stop(0)


def test_message_before_job_opened_is_buffered(fed):
    bank, gov = _pair(fed)
    gov.channel("early").send("bank", "first", 42)
    assert bank.channel("early").recv("gov", "first", timeout=5) == 42


def test_retried_push_delivered_once(fed):
    bank, gov = _pair(fed)
    payload = b"x" * 5000
    h = _header("gov", payload, tag="dup")
    assert not _raw_push(gov, "bank", _chunks(h, payload)).duplicate
    assert _raw_push(gov, "bank", _chunks(h, payload)).duplicate  # same message id: acknowledged, not stored
    ch = bank.channel("job")
    assert bank._mailbox.take("job", "gov", "dup", 5, me="bank") == payload
    # delivered once: a third copy after the take is still a duplicate, not a new message
    assert _raw_push(gov, "bank", _chunks(h, payload)).duplicate
    with pytest.raises(PeerError, match="timed out"):
        bank._mailbox.take("job", "gov", "dup", 0.2, me="bank")
    # a *different* message under the same tag is a replay and refused
    with pytest.raises(grpc.RpcError) as ei:
        _raw_push(gov, "bank", _chunks(_header("gov", payload, tag="dup"), payload))
    assert ei.value.code() == grpc.StatusCode.ALREADY_EXISTS
    ch.close()


def test_retry_on_unavailable_until_peer_starts(pki):
    """The receiver comes up only after the first attempts failed: the push is retried and arrives once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gov = GrpcTransport(party="gov", listen="127.0.0.1:0", tls=pki["gov"], peers={"bank": f"127.0.0.1:{port}"})
    bank = GrpcTransport(party="bank", listen=f"127.0.0.1:{port}", tls=pki["bank"], peers={"gov": "127.0.0.1:1"})
    errors = []
    try:
        gov.start()
        th = threading.Thread(target=lambda: _catch(errors, gov.channel("job").send, "bank", "late", 7))
        th.start()
        time.sleep(0.6)
        bank.start()
        th.join(20)
        assert not errors
        assert bank.channel("job").recv("gov", "late", timeout=5) == 7
    finally:
        gov.stop(0.2)
        bank.stop(0.2)


def _catch(errors, fn, *a):
    try:
        fn(*a)
    except Exception as exc:  # noqa: BLE001
        errors.append(exc)


def test_encoded_chunks_are_valid_protobuf():
    payload = bytes(range(256)) * 30
    h = _header("gov", payload).SerializeToString()
    chunks = [pb.Chunk.FromString(b) for b in encode_chunks(h, payload, 1000)]
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert chunks[0].header.SerializeToString() == h and not chunks[1].HasField("header")
    assert b"".join(c.data for c in chunks) == payload


# --------------------------------------------------------------------------- identity (mTLS)


def test_sender_comes_from_certificate_not_message(fed):
    bank, gov = _pair(fed)
    fed.add("chain")
    fed.link("bank", "gov", "chain")
    payload = b"forged"
    with pytest.raises(grpc.RpcError) as ei:
        _raw_push(gov, "bank", _chunks(_header("chain", payload), payload))
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "claims sender 'chain' but the client certificate is 'gov'" in ei.value.details()
    with pytest.raises(PeerError, match="timed out"):
        bank.channel("job").recv("chain", "t", timeout=0.3)


def test_unlisted_peer_with_valid_certificate_refused(fed):
    bank = fed.add("bank")
    mallory = fed.add("mallory")
    mallory.set_peers({"bank": fed.addr("bank")})  # bank does not list mallory
    with pytest.raises(PeerError, match="party 'mallory' is not a peer of 'bank'") as ei:
        mallory.channel("job").send("bank", "hi", 1)
    assert ei.value.peer == "bank"


def test_removed_peer_refused_at_next_message(fed):
    bank, gov = _pair(fed)
    cg = gov.channel("job")
    cg.send("bank", "m0", 0)
    bank.set_peers({})
    with pytest.raises(PeerError, match="party 'gov' is not a peer of 'bank'"):
        cg.send("bank", "m1", 1)


@pytest.mark.parametrize("client", ["other-ca", "no-cert"])
def test_client_without_federation_certificate_refused(fed, pki, client):
    bank = fed.add("bank")
    bank.set_peers({"gov": "127.0.0.1:1"})
    ca = pki["bank"].ca.read_bytes()
    if client == "other-ca":  # trusts the real CA, but presents a 'gov' cert from another CA
        evil = pki["evil-gov"]
        creds = grpc.ssl_channel_credentials(ca, evil.key.read_bytes(), evil.cert.read_bytes())
    else:
        creds = grpc.ssl_channel_credentials(ca)
    ch = grpc.secure_channel(fed.addr("bank"), creds, options=[("grpc.ssl_target_name_override", "bank")])
    try:
        with pytest.raises(grpc.RpcError) as ei:
            pb_grpc.FederationStub(ch).Ping(pb.PingRequest(job_id="job"), timeout=5)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE  # refused in the TLS handshake
    finally:
        ch.close()


def test_transport_from_another_ca_cannot_reach_peer(fed):
    bank = fed.add("bank")
    evil = fed.add("gov", tls_key="evil-gov", retries=0)
    bank.set_peers({"gov": fed.addr("evil-gov")})
    evil.set_peers({"bank": fed.addr("bank")})
    with pytest.raises(PeerError, match="unreachable") as ei:
        evil.channel("job").send("bank", "hi", 1)
    assert ei.value.peer == "bank"
    assert bank._mailbox.used == 0 and not bank._mailbox.boxes


def test_server_certificate_checked_against_party_name(fed):
    """gov dials 'bank' but reaches chain's server: chain's certificate does not name 'bank'."""
    fed.add("bank")
    gov, chain = fed.add("gov", retries=0), fed.add("chain")
    gov.set_peers({"bank": fed.addr("chain")})
    chain.set_peers({"gov": fed.addr("gov")})
    with pytest.raises(PeerError, match="unreachable"):
        gov.channel("job").send("bank", "hi", 1)
    assert not chain._mailbox.boxes


# --------------------------------------------------------------------------- malformed input


def _malformed(kind: str):
    payload = os.urandom(5000)
    h = _header("gov", payload)
    chunks = _chunks(h, payload, 1000)
    if kind == "digest":
        chunks[2].data = b"\x00" * len(chunks[2].data)
        return chunks, grpc.StatusCode.DATA_LOSS, "does not match its sha256 digest"
    if kind == "missing-chunk":
        del chunks[2]
        return chunks, grpc.StatusCode.INVALID_ARGUMENT, "out of order: expected chunk 2"
    if kind == "truncated":
        return chunks[:-1], grpc.StatusCode.INVALID_ARGUMENT, "incomplete message"
    if kind == "extra-data":
        chunks.append(pb.Chunk(seq=5, data=b"more"))
        return chunks, grpc.StatusCode.INVALID_ARGUMENT, "more than its declared"
    if kind == "oversize":
        h2 = _header("gov", payload, total_size=2 * 2**20)
        return _chunks(h2, payload), grpc.StatusCode.RESOURCE_EXHAUSTED, "exceeds this party's limit"
    if kind == "no-header":
        return [pb.Chunk(seq=0, data=payload)], grpc.StatusCode.INVALID_ARGUMENT, "must carry the header"
    if kind == "bad-tag":
        return _chunks(_header("gov", payload, tag="../etc"), payload), grpc.StatusCode.INVALID_ARGUMENT, "invalid tag"
    if kind == "empty":
        return [], grpc.StatusCode.INVALID_ARGUMENT, "empty push"
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind", ["digest", "missing-chunk", "truncated", "extra-data", "oversize", "no-header", "bad-tag", "empty"]
)
def test_malformed_push_refused_and_server_keeps_serving(fed, kind):
    bank, gov = _pair(fed, max_message_bytes=2**20)
    chunks, code, match = _malformed(kind)
    with pytest.raises(grpc.RpcError) as ei:
        _raw_push(gov, "bank", chunks)
    assert ei.value.code() == code
    assert match in ei.value.details()
    assert bank._mailbox.used == 0  # reservation released, nothing stored
    gov.channel("job").send("bank", "after", "ok")
    assert bank.channel("job").recv("gov", "after", timeout=5) == "ok"


def test_peer_rate_limit_defers_flood_and_spares_other_peers(fed):
    bank = fed.add("bank", peer_rate=5.0, peer_burst=3)
    gov, chain = fed.add("gov"), fed.add("chain")
    fed.link("bank", "gov", "chain")
    # a raw flood beyond the burst is deferred with a retry-after hint, not stored
    codes = []
    for i in range(5):
        payload = b"x%d" % i
        try:
            _raw_push(gov, "bank", _chunks(_header("gov", payload, tag=f"raw{i}"), payload))
            codes.append("ok")
        except grpc.RpcError as exc:
            codes.append(exc.code())
            assert "rate limit" in exc.details()
            assert dict(exc.trailing_metadata())["fedcredit-retry-after"]
    assert codes[:3] == ["ok"] * 3 and grpc.StatusCode.RESOURCE_EXHAUSTED in codes[3:]
    # another peer has its own bucket
    chain.channel("job").send("bank", "c", "fine")
    assert bank.channel("job").recv("chain", "c", timeout=5) == "fine"
    # the fedcredit sender honours the hint: everything arrives, exactly once, in order of tags
    cg = gov.channel("job")
    for i in range(6):
        cg.send("bank", f"m{i}", i)
    cb = bank.channel("job")
    assert [cb.recv("gov", f"m{i}", timeout=10) for i in range(6)] == list(range(6))


def test_peer_inflight_limit(fed):
    bank = fed.add("bank", peer_inflight=1)
    gov = fed.add("gov")
    fed.link("bank", "gov")
    gate = threading.Event()
    payload = b"y" * 3000
    chunks = _chunks(_header("gov", payload, tag="slow"), payload)

    def slow():  # holds its push open until the gate opens
        yield chunks[0]
        gate.wait(10)
        yield from chunks[1:]

    t = threading.Thread(target=lambda: pb_grpc.FederationStub(gov.grpc_channel("bank")).Push(slow(), timeout=15))
    t.start()
    try:
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as ei:
            _raw_push(gov, "bank", _chunks(_header("gov", b"z", tag="second"), b"z"))
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "already in progress" in ei.value.details()
    finally:
        gate.set()
        t.join(10)
    assert bank._mailbox.boxes[("job", "gov", "slow")] == payload  # the held push completed normally


def test_oversized_send_refused_locally(fed):
    bank, gov = _pair(fed, max_message_bytes=2**16)
    with pytest.raises(ProtocolError, match="exceeds max_message_bytes=65536; not sent"):
        gov.channel("job").send("bank", "big", b"x" * 2**17)


def test_receive_buffer_bounded(fed):
    bank, gov = _pair(fed, max_message_bytes=2**20, max_buffer_bytes=2**20)
    cg = gov.channel("job")
    cg.send("bank", "a", b"x" * 700_000)
    with pytest.raises(PeerError, match="receive buffer full"):
        cg.send("bank", "b", b"x" * 700_000)
    assert len(bank.channel("job").recv("gov", "a", timeout=5)) == 700_000


def test_closed_job_refuses_late_messages(fed):
    bank, gov = _pair(fed)
    cb = bank.channel("done")
    gov.channel("done").send("bank", "a", 1)
    cb.close()
    assert bank._mailbox.used == 0
    with pytest.raises(PeerError, match="job 'done' is closed"):
        gov.channel("done").send("bank", "b", 2)


# --------------------------------------------------------------------------- faults


def test_recv_timeout_names_peer(fed):
    bank, gov = _pair(fed)
    t0 = time.monotonic()
    with pytest.raises(PeerError, match="timed out after 0.5s waiting for 'nothing' from 'gov'") as ei:
        bank.channel("job").recv("gov", "nothing", timeout=0.5)
    assert ei.value.peer == "gov" and time.monotonic() - t0 < 3


def test_abort_ends_peer_recv_with_reason(fed):
    bank, gov = _pair(fed)
    cb = bank.channel("job")
    threading.Timer(0.3, lambda: gov.channel("job").abort("ValueError: bad column x7")).start()
    t0 = time.monotonic()
    with pytest.raises(PeerError, match="peer 'gov' aborted job 'job': ValueError: bad column x7") as ei:
        cb.recv("gov", "never", timeout=30)
    assert ei.value.peer == "gov" and time.monotonic() - t0 < 5


def test_stopped_peer_detected_by_probe(fed):
    bank, gov = _pair(fed)
    cb = bank.channel("job")
    gov.channel("job").send("bank", "hello", 1)
    assert cb.recv("gov", "hello", timeout=5) == 1
    threading.Timer(0.3, lambda: gov.stop(0)).start()
    t0 = time.monotonic()
    with pytest.raises(PeerError, match="peer 'gov' is unreachable") as ei:
        cb.recv("gov", "never", timeout=30)
    assert ei.value.peer == "gov" and time.monotonic() - t0 < 8


def test_send_to_dead_peer_fails_pending_recv(fed):
    bank, gov = _pair(fed, retries=1)
    gov.stop(0)
    cb = bank.channel("job")
    with pytest.raises(PeerError, match="peer 'gov' is unreachable"):
        cb.send("gov", "x", 1)
    t0 = time.monotonic()
    with pytest.raises(PeerError, match="gov"):
        cb.recv("gov", "y", timeout=30)
    assert time.monotonic() - t0 < 0.5  # failed at once, not after the timeout


# roles for the multi-process tests (run in child processes by benchmarks.harness)
def role_sender_then_dies(channel):
    channel.send("w", "hello", 1)
    channel.recv("w", "ready", timeout=30)
    os.kill(os.getpid(), signal.SIGKILL)


def role_waiter(channel):
    assert channel.recv("k", "hello") == 1
    channel.send("k", "ready", 1)
    return {"never": channel.recv("k", "never")}


def role_echo(channel, n: int):
    peer = [p for p in channel.peers][0]
    if channel.party == "a":
        channel.send(peer, "x", np.arange(n))
        return {"sum": channel.recv(peer, "y")}
    x = channel.recv(peer, "x")
    channel.send(peer, "y", int(x.sum()))
    return {"n": len(x)}


@pytest.mark.slow
def test_harness_runs_processes():
    from benchmarks.harness import run_processes

    out = run_processes({"a": "tests.test_transport_grpc:role_echo", "b": "tests.test_transport_grpc:role_echo"},
                        {"a": {"n": 100}, "b": {"n": 100}}, timeout=30)
    assert out["a"]["sum"] == 4950 and out["b"]["n"] == 100
    assert out["a"]["peak_rss_mb"] > 10 and out["b"]["seconds"] >= 0 and out["a"]["bytes_sent"] > 800


@pytest.mark.slow
def test_peer_killed_mid_job():
    from benchmarks.harness import PartyFailed, run_processes

    t0 = time.monotonic()
    with pytest.raises(PartyFailed, match="party 'k' was killed by signal SIGKILL") as ei:
        run_processes({"k": "tests.test_transport_grpc:role_sender_then_dies", "w": "tests.test_transport_grpc:role_waiter"}, timeout=60)
    w = ei.value.failures["w"]
    assert w["type"] == "PeerError" and w["peer"] == "k"
    assert "peer 'k' is unreachable" in w["message"]
    assert time.monotonic() - t0 < 20  # far within the 60 s recv timeout



def test_no_module_outside_the_grpc_package_imports_its_private_names():
    """control.py, scoring.py, party/* and the rest use the package's public names only (issue 19, item 3)."""
    import ast

    pkg = ROOT / "fedcredit"
    inside = pkg / "transport" / "grpc"
    offenders = []
    for path in pkg.rglob("*.py"):
        if inside in path.parents:
            continue
        here = list(path.relative_to(ROOT).with_suffix("").parts)[:-1]  # the importing module's package
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module == "fedcredit.transport.grpc" or module.startswith("fedcredit.transport.grpc."):
                offenders += [f"{path.relative_to(pkg)}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert offenders == []
