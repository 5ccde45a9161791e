"""A bounded flood from one peer against a real party, and what it costs the others (issue #15, class 6).

Used by ``tests/adversarial/test_starvation.py`` (loose thresholds) and by the
``flood`` benchmark suite (``benchmarks/suites/flood.py``, the figures).

Three real party processes (bank, chain, gov) on loopback with mutual TLS.
``gov`` (a listed peer, not allowed to propose to ``bank``) and ``mallory``
(a stranger holding a certificate of the federation CA) flood ``bank``:

* stalled unary calls: streams opened on Health and Control, the request never sent;
* junk pushes: Federation messages for jobs that never run, as fast as accepted;
* refused proposals: 20 kB job proposals from a party that may not propose.

Meanwhile ``chain`` (an honest peer) measures its Health and Push round trips
to ``bank`` and runs a real bank+chain job; ``bank``'s state directory is
measured before and after (log, audit log, SQLite after a checkpoint).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
import tomllib
from pathlib import Path

import grpc

from fedcredit.certs import TlsFiles, issue
from fedcredit.config import load_party_config
from fedcredit.launcher import PARTIES, Federation, write_federation, write_job
from fedcredit.errors import FedcreditError
from fedcredit.transport.control import ControlClient
from fedcredit.transport.grpc import GrpcTransport

_HEALTH = "/fedcredit.v1.Health/Check"
_LIST = "/fedcredit.v1.Control/ListJobs"

#: Transport settings of the flooded federation: small budgets so a short flood reaches every limit.
FLOOD_TRANSPORT = {"deadline": 5.0, "max_message_mib": 1, "orphan_seconds": 5.0, "peer_proposals_per_minute": 30}


def start_federation(root: Path, data_dir: Path, transport: dict | None = None) -> tuple[Federation, dict]:
    configs = write_federation(root, data_dir, transport=dict(FLOOD_TRANSPORT, **(transport or {})))
    issue(root / "certs", "mallory")  # a stranger: a valid federation certificate, listed nowhere
    fed = Federation(configs)
    fed.root = root
    fed.start(timeout=60)
    return fed, configs


def tls_of(root: Path, name: str) -> TlsFiles:
    c = root / "certs"
    return TlsFiles(c / "ca.crt", c / f"{name}.crt", c / f"{name}.key")


def _p99(xs: list[float]) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def _state_bytes(state: Path) -> dict[str, int]:
    db = state / "party.sqlite"
    if db.exists():
        con = sqlite3.connect(str(db), timeout=10)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
    out = {}
    for name in ("party.log", "audit.log", "party.sqlite", "party.sqlite-wal", "peer_heads.json"):
        p = state / name
        out[name] = p.stat().st_size if p.exists() else 0
    return out


def raw_channel(address: str, target: str, tls: TlsFiles) -> grpc.Channel:
    """An mTLS channel on its own TCP connection (a flooder's: not shared with other channels of this process)."""
    from fedcredit.certs import load_tls, tls_server_name
    from fedcredit.transport.grpc import grpc_options

    t = load_tls(tls)
    target = tls_server_name(target)  # the server's namespaced DNS name (certs.tls_server_name)
    creds = grpc.ssl_channel_credentials(root_certificates=t.ca_pem, private_key=t.key_pem, certificate_chain=t.cert_pem)
    return grpc.secure_channel(address, creds, options=grpc_options() + [
        ("grpc.ssl_target_name_override", target), ("grpc.default_authority", target),
        ("grpc.use_local_subchannel_pool", 1)])


class _Stalls:
    """``n`` unary calls on ``method`` whose request is never sent (until :meth:`release`)."""

    def __init__(self, address: str, target: str, tls: TlsFiles, method: str, n: int):
        self.gate = threading.Event()
        self.ch = raw_channel(address, target, tls)
        call = self.ch.stream_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)

        def never():
            self.gate.wait()
            return
            yield b""  # pragma: no cover - makes this a generator

        self.futures = [call.future(never(), timeout=120) for _ in range(n)]

    def refused(self) -> int:
        """Calls the party already refused while the others are held open.

        RESOURCE_EXHAUSTED: over the caller's share of concurrent calls;
        PERMISSION_DENIED: a stranger, refused by the authorization check
        before it can hold a call open at all.
        """
        n = 0
        for f in self.futures:
            if f.done():
                try:
                    f.result(timeout=0)
                except grpc.RpcError as exc:
                    n += exc.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.PERMISSION_DENIED)
        return n

    def release(self) -> None:
        self.gate.set()
        for f in self.futures:
            f.cancel()
        self.ch.close()


def run_flood(root: Path, data_dir: Path, *, seconds: float = 20.0, stalls: int = 80, junk_kib: int = 256,
              proposals: int = 200, proposal_kib: int = 20) -> dict:
    """Start the federation, flood ``bank`` from ``gov`` and ``mallory`` for ``seconds``, return the figures."""
    fed, configs = start_federation(root, data_dir)
    try:
        return _flood(fed, configs, root, seconds=seconds, stalls=stalls, junk_kib=junk_kib, proposals=proposals,
                      proposal_kib=proposal_kib)
    finally:
        codes = fed.stop()
        if any(c != 0 for c in codes.values()):
            raise AssertionError(f"parties did not stop gracefully: {codes}")


def _flood(fed, configs, root, *, seconds, stalls, junk_kib, proposals, proposal_kib) -> dict:
    bank_cfg = load_party_config(configs["bank"])
    addr = bank_cfg.connect_address
    state = Path(bank_cfg.state_dir)
    before = _state_bytes(state)
    stop = threading.Event()
    out: dict = {"flood_seconds": seconds}

    # -- the honest peer's probes (Health and Push round trips), from chain's identity
    health_ms: list[float] = []
    push_ms: list[float] = []
    probe_errors: list[str] = []
    chain_tr = GrpcTransport(party="chain", listen="127.0.0.1:0", tls=tls_of(root, "chain"), peers={"bank": addr},
                             deadline=5.0, retries=3)
    chain_ctl = ControlClient(chain_tr.grpc_channel("bank"), "bank", timeout=5.0)

    def probe() -> None:
        i = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                chain_ctl.health()
                health_ms.append((time.perf_counter() - t0) * 1e3)
            except FedcreditError as exc:
                probe_errors.append(f"health: {exc}")
            t0 = time.perf_counter()
            try:
                chain_tr._push("bank", "probe-job", f"probe/{i}", secrets.token_bytes(1024))
                push_ms.append((time.perf_counter() - t0) * 1e3)
            except FedcreditError as exc:
                probe_errors.append(f"push: {exc}")
            i += 1
            stop.wait(0.05)

    # -- the flood
    # gov's own stalls fill gov's share of bank's threads, so its other calls are refused too: they are released
    # after a third of the flood, and gov's junk pushes and proposals then reach the mailbox and proposal limits
    stalled = {(who, method): _Stalls(addr, "bank", tls_of(root, who), method, stalls)
               for who in ("gov", "mallory") for method in (_HEALTH, _LIST)}
    gov_tr = GrpcTransport(party="gov", listen="127.0.0.1:0", tls=tls_of(root, "gov"), peers={"bank": addr},
                           deadline=5.0, retries=0)
    junk = {"sent": 0, "accepted": 0, "deferred": 0, "refused": 0}

    def push_junk() -> None:
        blob = secrets.token_bytes(junk_kib * 1024)
        while not stop.is_set():
            junk["sent"] += 1
            try:
                gov_tr._push("bank", f"never-{secrets.token_hex(4)}", "junk", blob, retries=0)
                junk["accepted"] += 1
            except FedcreditError as exc:
                junk["deferred" if "RESOURCE_EXHAUSTED" in str(exc) else "refused"] += 1
                stop.wait(0.01)

    job = {k: v for k, v in tomllib.loads(write_job(root / "probe.toml", [("handshake", "hello", {})]).read_text()).items()}
    job["job"]["purpose"] = "x" * (proposal_kib * 1024)
    body = json.dumps(job)
    props = {"sent": 0, "refused_by_policy": 0, "throttled": 0, "other": 0}

    def propose() -> None:
        ctl = ControlClient(gov_tr.grpc_channel("bank"), "bank", timeout=5.0)
        for i in range(proposals):
            if stop.is_set():
                break
            props["sent"] += 1
            try:
                ok, _ = ctl.propose(f"flood-{i}-{secrets.token_hex(3)}", body, "")
                props["refused_by_policy" if not ok else "other"] += 1
            except FedcreditError as exc:
                props["throttled" if "RESOURCE_EXHAUSTED" in str(exc) else "other"] += 1
            stop.wait(seconds / proposals)  # spread over the flood

    threads = [threading.Thread(target=f, daemon=True) for f in (probe, push_junk, propose)]
    t_start = time.monotonic()
    for t in threads:
        t.start()
    # -- the honest job, bank + chain, in the middle of the flood
    time.sleep(seconds / 3)
    out["stalled_calls_refused"] = sum(s.refused() for s in stalled.values())
    out["stalled_calls_opened"] = stalls * len(stalled)
    for (who, _), s in stalled.items():
        if who == "gov":
            s.release()
    two = {k: v for k, v in PARTIES.items() if k != "gov"}
    jobfile = write_job(root / "honest.toml", [("handshake", "hello", {})], name="honest", parties=two)
    from fedcredit.cli import main

    t0 = time.monotonic()
    code = main(["run", str(jobfile), "--party", str(configs["bank"])])
    out["honest_job"] = {"exit_code": int(code), "seconds": round(time.monotonic() - t0, 2)}
    time.sleep(max(0.0, seconds - (time.monotonic() - t_start)))
    out["stalled_calls_refused_mallory"] = sum(s.refused() for (who, _), s in stalled.items() if who == "mallory")
    stop.set()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - t_start
    for s in stalled.values():
        s.release()
    gov_tr.stop(0)
    chain_tr.stop(0)
    after = _state_bytes(state)
    jobs_dir = sum(p.stat().st_size for p in (state / "jobs").rglob("*") if p.is_file()) if (state / "jobs").exists() else 0
    grown = {k: after[k] - before[k] for k in after}
    con = sqlite3.connect(str(state / "party.sqlite"), timeout=10)
    try:
        rows = con.execute("SELECT length(job_json) FROM jobs WHERE job_id LIKE 'flood-%'").fetchall()
    finally:
        con.close()
    props["stored_rows"] = len(rows)
    props["largest_stored_body"] = max((r[0] for r in rows), default=0)
    total = sum(grown.values())
    out.update({
        "elapsed_seconds": round(elapsed, 1),
        "health": {"n": len(health_ms), "p50_ms": round(sorted(health_ms)[len(health_ms) // 2], 1) if health_ms else None,
                   "p99_ms": round(_p99(health_ms), 1), "max_ms": round(max(health_ms), 1) if health_ms else None},
        "push": {"n": len(push_ms), "p50_ms": round(sorted(push_ms)[len(push_ms) // 2], 1) if push_ms else None,
                 "p99_ms": round(_p99(push_ms), 1), "max_ms": round(max(push_ms), 1) if push_ms else None},
        "probe_errors": probe_errors[:5],
        "probe_error_count": len(probe_errors),
        "junk_pushes": junk,
        "proposals": props,
        "state_growth_bytes": grown,
        "state_growth_bytes_per_minute": round(total * 60.0 / elapsed),
        "honest_job_dir_bytes": jobs_dir,
        "load_average": list(os.getloadavg()),
    })
    return out
