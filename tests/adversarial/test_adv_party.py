"""Attacks on three real party processes over mutual TLS (issue #15 classes 1, 2, 3 and 7).

bank (guest, the only allowed proposer), chain and gov (hosts) run as
``fedcredit party serve`` processes; mallory holds a certificate from the same
CA but is nobody's peer. Every attack goes through a raw gRPC client built from
the generated stubs with the attacker's own certificate, so nothing on the
client side filters it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from fedcredit._proto import control_pb2 as cpb
from fedcredit._proto import control_pb2_grpc as cpb_grpc
from fedcredit._proto import federation_pb2 as fpb
from fedcredit._proto import federation_pb2_grpc as fpb_grpc
from fedcredit.certs import TlsFiles
from fedcredit.config import load_job
from fedcredit.transport.grpc.authz import RULES, Access
from fedcredit.transport.control import ControlClient, dial
from fedcredit.transport.grpc import message_sha256
from fedcredit.transport.scoring import GovernanceClient

from _adv import cfg, code_of, job_file, raw_channel, start_federation, store_rows, tree, wait_state

pytestmark = pytest.mark.slow

INVALID, DENIED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    f = start_federation(tmp_path_factory.mktemp("adv"))
    try:
        yield f
    finally:
        codes = f.stop()
    assert all(c == 0 for c in codes.values()), f"parties did not stop gracefully: {codes}"


def _operator(fed, party) -> tuple[ControlClient, GovernanceClient, grpc.Channel]:
    c = cfg(fed, party)
    ch = dial(c.connect_address, target=party, tls=TlsFiles(c.tls.ca, c.tls.cert, c.tls.key))
    return ControlClient(ch, party, timeout=10), GovernanceClient(ch, party, timeout=10), ch


def _control(fed, as_party, to):
    return cpb_grpc.ControlStub(raw_channel(fed, as_party, to))


def _job_json(fed, name="adv", parties=("bank", "chain", "gov"), steps=(("handshake", "hello", {}),), **over) -> str:
    from fedcredit.launcher import PARTIES

    spec = load_job(job_file(fed, name, list(steps), parties={p: PARTIES[p] for p in parties}))
    d = json.loads(spec.to_json())
    for k, v in over.items():
        d["job"][k] = v
    return json.dumps(d)


def _fresh_id(tag: str) -> str:
    return f"{tag}-{int(time.time() * 1000) % 10**9}"


def _alive(fed, party):
    op, _, ch = _operator(fed, party)
    try:
        assert op.health()["serving"]
    finally:
        ch.close()


def _log_lines(fed, party) -> list[str]:
    return (cfg(fed, party).state_dir / "party.log").read_text(encoding="utf-8", errors="replace").splitlines()


_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def _assert_no_forged_lines(fed, party):
    for line in _log_lines(fed, party):
        # a record starts with a timestamp; traceback lines are indented "  | "; nothing else exists
        assert _RECORD.match(line) or line.startswith("  | "), f"forged or unescaped line in party.log: {line!r}"
        assert not line.startswith("2099"), line


# ============================================================================ class 1: identifiers

BAD_IDS = ["../../../x", "/tmp/adv-abs", "..", ".", "odd/sub", "a\x00b", "a\nb", "a b", "jöb", "UPPER",
           "x" * 64, "", "ok\n", "-lead", "a\\b", "a\rb"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=[repr(b)[:20] for b in BAD_IDS])
def test_proposed_job_id_outside_grammar_is_refused(fed, bad):
    """Class 1: a proposer's job id reaches nothing (no row, no file, no log line) unless it is a plain name."""
    before = tree(fed.root)
    stub = _control(fed, "bank", "gov")
    assert code_of(stub.ProposeJob, cpb.ProposeJobRequest(job_id=bad, job_json=_job_json(fed)), timeout=10) == INVALID
    # the other job-id bearing calls refuse it the same way
    assert code_of(stub.StartJob, cpb.StartJobRequest(job_id=bad), timeout=10) in (INVALID, DENIED)
    assert code_of(stub.CancelJob, cpb.CancelJobRequest(job_id=bad, reason="x"), timeout=10) in (INVALID, DENIED)
    assert store_rows(fed, "gov", "SELECT job_id FROM jobs WHERE job_id = ?", (bad,)) == []
    new = {p for p in tree(fed.root) - before if not p.endswith((".tmp", ".toml"))}
    assert new == set(), new  # no report, no step folder, anywhere
    assert not Path("/tmp/adv-abs").exists()
    _assert_no_forged_lines(fed, "gov")


@pytest.mark.parametrize("tamper", ["step", "job", "table", "party"])
def test_names_inside_a_proposed_job_are_checked(fed, tamper):
    """Class 1: step, job, table and party names in the job itself follow the same grammar."""
    d = json.loads(_job_json(fed, "names"))
    if tamper == "step":
        d["steps"][0]["name"] = "../../escape"
    elif tamper == "job":
        d["job"]["name"] = "a/b"
    elif tamper == "table":
        d["parties"]["gov"]["table"] = "../t"
    else:
        d["parties"]["gov\n"] = d["parties"].pop("gov")
    jid = _fresh_id(f"names-{tamper}")
    reply = _control(fed, "bank", "gov").ProposeJob(
        cpb.ProposeJobRequest(job_id=jid, job_json=json.dumps(d)), timeout=10)
    assert not reply.accepted and "malformed job" in reply.reason
    assert not (cfg(fed, "gov").state_dir / "jobs" / jid).exists()
    assert store_rows(fed, "gov", "SELECT job_id FROM jobs WHERE job_id = ?", (jid,)) == []


def test_push_job_ids_and_tags_outside_grammar_are_refused(fed):
    """Class 1 and 7: the transport accepts neither '.' nor '..' nor a trailing newline as a job id or tag."""
    stub = fpb_grpc.FederationStub(raw_channel(fed, "chain", "gov"))
    cases = [(".", "t"), ("..", "t"), ("../x", "t"), ("a\nb", "t"), ("job\n", "t"), ("ok", "t\n"), ("ok", "../t")]
    for job, tag in cases:
        payload = b"x"
        h = fpb.Header(job_id=job, tag=tag, message_id="m" * 32, sender="chain", total_size=1,
                       sha256=message_sha256(job, tag, payload), chunk_count=1, kind=fpb.MESSAGE_KIND_DATA)
        chunk = fpb.Chunk(seq=0, data=payload)
        chunk.header.CopyFrom(h)
        assert code_of(stub.Push, iter([chunk]), timeout=10) == INVALID, (job, tag)
    _alive(fed, "gov")


def test_peer_strings_cannot_forge_log_lines(fed):
    """Class 1: a newline in a cancel reason or an abort reason is escaped in party.log."""
    forged = "\n2099-01-01 00:00:00,000 ERROR fedcredit.party [main] FORGED approval of job\r\n"
    jid = _fresh_id("forge")
    stub = _control(fed, "bank", "gov")
    assert stub.ProposeJob(cpb.ProposeJobRequest(job_id=jid, job_json=_job_json(fed, "forge")), timeout=10).accepted
    stub.CancelJob(cpb.CancelJobRequest(job_id=jid, reason="cancelled" + forged), timeout=10)
    h = fpb.Header(job_id=jid, tag="abort", message_id="a" * 32, sender="bank", kind=fpb.MESSAGE_KIND_ABORT,
                   reason="boom" + forged, sha256=message_sha256(jid, "abort", b""), chunk_count=1)
    chunk = fpb.Chunk(seq=0)
    chunk.header.CopyFrom(h)
    fpb_grpc.FederationStub(raw_channel(fed, "bank", "gov")).Push(iter([chunk]), timeout=10)
    time.sleep(0.3)
    lines = _log_lines(fed, "gov")
    assert any("FORGED" in line for line in lines)  # the text is there, escaped, inside a genuine record
    _assert_no_forged_lines(fed, "gov")


# ============================================================================ class 2: malformed JSON

MALFORMED = {
    "lone surrogate": '{"job": {"name": "x", "purpose": "\\ud800"}, "parties": {}, "steps": []}',
    "5000-deep": "[" * 5000 + "]" * 5000,
    "5000-digit int": '{"job": {"name": "x"}, "n": ' + "9" * 5000 + "}",
    "300 KiB": '{"job": {"name": "x", "purpose": "' + "a" * 300_000 + '"}}',
    "NaN": '{"job": {"name": "x"}, "n": NaN}',
    "duplicate key": '{"job": {"name": "x"}, "job": {"name": "y"}}',
    "1e999": '{"job": {"name": "x"}, "n": 1e999}',
}


@pytest.mark.parametrize("what", list(MALFORMED))
def test_malformed_proposal_json_is_invalid_argument_not_internal(fed, what):
    """Class 2: limits on size, depth, number length and UTF-8 answer INVALID_ARGUMENT with a reason."""
    jid = _fresh_id("json")
    try:
        _control(fed, "bank", "gov").ProposeJob(cpb.ProposeJobRequest(job_id=jid, job_json=MALFORMED[what]), timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() == INVALID, (exc.code(), exc.details())
        assert exc.details()
    else:
        pytest.fail("a malformed proposal was answered OK")
    assert store_rows(fed, "gov", "SELECT job_id FROM jobs WHERE job_id = ?", (jid,)) == []
    _alive(fed, "gov")


@pytest.mark.parametrize("what", ["lone surrogate", "5000-deep", "5000-digit int"])
def test_operator_job_with_malformed_json_leaves_no_state(fed, what):
    """Class 2: the operator's job is created atomically: refused before anything is stored or counted."""
    op, _, ch = _operator(fed, "gov")
    try:
        before = len(op.list_jobs())
        running = op.health()["running_jobs"]
        text = _job_json(fed, "sur", parties=("gov", "bank"), purpose="\ud800") if what == "lone surrogate" else None
        if text is not None:  # json.dumps escaped the surrogate: valid UTF-8 on the wire, invalid once parsed
            assert "\\ud800" in text
        stub = _control(fed, "gov", "gov")
        code = code_of(stub.SubmitJob, cpb.SubmitJobRequest(job_json=text or MALFORMED[what]), timeout=10)
        assert code == INVALID
        assert len(op.list_jobs()) == before and op.health()["running_jobs"] == running
    finally:
        ch.close()


def test_undecodable_requests_are_invalid_argument_not_internal(fed):
    """Class 2: bytes that do not parse as the request type (bad UTF-8 in a string field, junk) get
    INVALID_ARGUMENT from every method, and callers without the right are still refused first."""
    good = cpb.CancelJobRequest(job_id="ab", reason="x").SerializeToString()
    bad_utf8 = good.replace(b"ab", b"\xed\xa0")  # a lone surrogate encoded in UTF-8: protobuf refuses it
    junk = b"\xff\xff\xff\xff"
    raw = raw_channel(fed, "bank", "gov")
    ident = lambda b: b  # noqa: E731
    for path, m in _all_methods():
        if Access.PEER not in RULES[path]:
            continue
        for blob in (bad_utf8, junk):
            try:
                message_factory.GetMessageClass(m.input_type).FromString(blob)
                continue  # parses as this type (unknown fields are kept): nothing malformed to refuse
            except DecodeError:
                pass
            try:
                if m.client_streaming:
                    raw.stream_unary(path, ident, ident)(iter([blob]), timeout=10)
                elif m.server_streaming:
                    list(raw.unary_stream(path, ident, ident)(blob, timeout=10))
                else:
                    raw.unary_unary(path, ident, ident)(blob, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() == INVALID, (path, exc.code(), exc.details())
            else:
                pytest.fail(f"{path} accepted undecodable bytes")
    stranger = raw_channel(fed, "mallory", "gov")
    assert code_of(stranger.unary_unary("/fedcredit.v1.Control/CancelJob", ident, ident), junk, timeout=10) == DENIED
    raw.close()
    stranger.close()
    _alive(fed, "gov")


# ============================================================================ class 3: authorization

def _all_methods():
    from fedcredit._proto import control_pb2, federation_pb2, health_pb2 as h, scoring_pb2 as s

    for mod in (control_pb2, federation_pb2, h, s):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                yield f"/{svc.full_name}/{m.name}", m


def _call_raw(channel, path, method, timeout=10):
    """Call any method with an empty request (the authorization check comes before any parsing)."""
    ident = lambda b: b  # noqa: E731
    if method.client_streaming and method.server_streaming:
        return list(channel.stream_stream(path, ident, ident)(iter([b""]), timeout=timeout))
    if method.client_streaming:
        return channel.stream_unary(path, ident, ident)(iter([b""]), timeout=timeout)
    if method.server_streaming:
        return list(channel.unary_stream(path, ident, ident)(b"", timeout=timeout))
    return channel.unary_unary(path, ident, ident)(b"", timeout=timeout)


def test_rules_cover_exactly_the_declared_rpcs():
    assert set(RULES) == {p for p, _ in _all_methods()}


@pytest.mark.parametrize("attacker", ["revoked", "unlisted"])
def test_every_rpc_refuses_revoked_and_unlisted_callers(fed, attacker):
    """Class 3: every method of every service refuses a revoked peer and a stranger with a CA certificate."""
    op, gov_admin, ch = _operator(fed, "gov")
    who = "chain" if attacker == "revoked" else "mallory"
    if attacker == "revoked":
        gov_admin.revoke("chain", "adversarial test")
    try:
        raw = raw_channel(fed, who, "gov")
        for path, m in _all_methods():
            try:
                _call_raw(raw, path, m)
            except grpc.RpcError as exc:
                assert exc.code() == DENIED, (path, exc.code(), exc.details())
            else:
                pytest.fail(f"{path} answered a {attacker} caller")
        raw.close()
    finally:
        if attacker == "revoked":
            gov_admin.admit("chain", "adversarial test done")
        ch.close()
    _alive(fed, "gov")


def test_operator_only_rpcs_refuse_listed_peers(fed):
    raw = raw_channel(fed, "bank", "gov")
    for path, m in _all_methods():
        if Access.PEER not in RULES[path]:
            with pytest.raises(grpc.RpcError) as ei:
                _call_raw(raw, path, m)
            assert ei.value.code() == DENIED and "own operator" in ei.value.details(), path
    raw.close()


def test_revoked_proposer_cannot_start_or_cancel_its_pending_job(fed):
    """Class 3: after gov revokes bank, bank's StartJob/CancelJob of a job it proposed are refused."""
    jid = _fresh_id("revstart")
    bank_stub = _control(fed, "bank", "gov")
    assert bank_stub.ProposeJob(cpb.ProposeJobRequest(job_id=jid, job_json=_job_json(fed, "revstart")), timeout=10).accepted
    op, gov_admin, ch = _operator(fed, "gov")
    gov_admin.revoke("bank", "adversarial test")
    try:
        assert code_of(bank_stub.StartJob, cpb.StartJobRequest(job_id=jid), timeout=10) == DENIED
        assert code_of(bank_stub.CancelJob, cpb.CancelJobRequest(job_id=jid, reason="x"), timeout=10) == DENIED
        assert store_rows(fed, "gov", "SELECT state FROM jobs WHERE job_id = ?", (jid,)) == [("pending",)]
    finally:
        gov_admin.admit("bank", "adversarial test done")
        op.cancel(jid, "clean up")
        ch.close()


def test_revoked_or_roleless_peer_cannot_report_into_a_running_job(fed):
    """Class 3: a forged step result from a revoked participant, or from a peer without a role, is refused."""
    op, bank_admin, ch = _operator(fed, "bank")
    try:
        spec = job_file(fed, "running", [("adv_wait", "hold", {"seconds": 8})],
                        parties={"bank": ("guest", "bank.csv", None), "chain": ("host", "chain.csv", None)})
        jid = op.submit(load_job(spec).to_json(), "running.toml")
        wait_state(fed, "bank", jid, {"running"})
        forged = cpb.JobEvent(job_id=jid, party="chain", kind="step", state="succeeded", step="hold",
                              detail_json=json.dumps({"kind": "adv_wait", "public": {"auc": 0.99}}))
        # gov is a peer of bank but has no role in this job
        assert code_of(_control(fed, "gov", "bank").ReportStatus, forged, timeout=10) == DENIED
        # malformed detail from the real participant: INVALID_ARGUMENT, not INTERNAL
        deep = cpb.JobEvent(job_id=jid, kind="progress", step="hold", detail_json="[" * 5000 + "]" * 5000)
        assert code_of(_control(fed, "chain", "bank").ReportStatus, deep, timeout=10) == INVALID
        bad_step = cpb.JobEvent(job_id=jid, kind="step", state="succeeded", step="../../x", detail_json="{}")
        assert code_of(_control(fed, "chain", "bank").ReportStatus, bad_step, timeout=10) == INVALID
        bank_admin.revoke("chain", "adversarial test")
        try:
            assert code_of(_control(fed, "chain", "bank").ReportStatus, forged, timeout=10) == DENIED
        finally:
            bank_admin.admit("chain", "adversarial test done")
        rows = store_rows(fed, "bank", "SELECT party, state FROM steps WHERE job_id = ? AND party = 'chain'", (jid,))
        assert ("chain", "succeeded") not in rows  # the forged results were never stored
        op.cancel(jid, "clean up")
        wait_state(fed, "bank", jid, {"cancelled", "failed"})
    finally:
        ch.close()


def test_peer_without_role_cannot_touch_a_job(fed):
    """Class 3: chain is gov's peer but not in this bank+gov job: it can neither cancel it nor push into it."""
    jid = _fresh_id("norole")
    assert _control(fed, "bank", "gov").ProposeJob(cpb.ProposeJobRequest(
        job_id=jid, job_json=_job_json(fed, "norole", parties=("bank", "gov"))), timeout=10).accepted
    chain = _control(fed, "chain", "gov")
    assert code_of(chain.CancelJob, cpb.CancelJobRequest(job_id=jid, reason="x"), timeout=10) == DENIED
    assert code_of(chain.StartJob, cpb.StartJobRequest(job_id=jid), timeout=10) == DENIED
    h = fpb.Header(job_id=jid, tag="t", message_id="c" * 32, sender="chain", total_size=1,
                   sha256=message_sha256(jid, "t", b"x"), chunk_count=1, kind=fpb.MESSAGE_KIND_DATA)
    chunk = fpb.Chunk(seq=0, data=b"x")
    chunk.header.CopyFrom(h)
    assert code_of(fpb_grpc.FederationStub(raw_channel(fed, "chain", "gov")).Push, iter([chunk]), timeout=10) == DENIED
    assert store_rows(fed, "gov", "SELECT state FROM jobs WHERE job_id = ?", (jid,)) == [("pending",)]
    op, _, ch = _operator(fed, "gov")
    op.cancel(jid, "clean up")
    ch.close()


# ============================================================================ class 7: peer named on garbage

@pytest.mark.parametrize("kind", ["adv_garbage", "adv_wrongtype"])
def test_job_failed_by_a_peers_garbage_names_the_peer(fed, kind):
    op, _, ch = _operator(fed, "bank")
    try:
        spec = job_file(fed, kind.replace("_", "-"), [(kind, "bad", {"party": "gov"})])
        jid = op.submit(load_job(spec).to_json(), "garbage.toml")
        state, reason = wait_state(fed, "bank", jid, {"failed", "succeeded"})
        assert state == "failed" and "'gov'" in reason, reason
    finally:
        ch.close()


def test_state_directories_are_private(fed):
    """#23 item 10: state directories 0700 (keys, tokens, model parts inside)."""
    for p in ("bank", "chain", "gov"):
        assert (cfg(fed, p).state_dir.stat().st_mode & 0o777) == 0o700
