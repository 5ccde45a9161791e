"""Attacks on the mechanisms themselves, in one process: authorization coverage, atomic job creation,
message binding, certificate names, paths, log escaping, JSON limits and file modes.

Transports here are real (gRPC over mutual TLS on 127.0.0.1, certificates from
a real CA); parties are constructed in-process where the test needs to reach
inside (a failing audit append).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import secrets
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedcredit._proto import federation_pb2 as fpb
from fedcredit._proto import federation_pb2_grpc as fpb_grpc
from fedcredit.certs import SAN_URI_PREFIX, check_party_name, init_ca, issue, party_name_from_cert
from fedcredit.config import job_from_dict, load_party_config
from fedcredit.launcher import write_federation
from fedcredit.errors import ConfigError, PeerError, ProtocolError
from fedcredit.ids import SafeFormatter, escape_control, is_name, private_dir, state_path
from fedcredit.jsonlimits import loads_limited
from fedcredit.protocols.scoring import spec as sspec
from fedcredit.transport.grpc.authz import MARK, RULES
from fedcredit.transport.grpc import GrpcTransport, message_sha256

HERE = Path(__file__).resolve().parent
from conftest import DATA  # noqa: E402 - the packaged data sets (or $FEDCREDIT_DATA)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    init_ca(d)
    out = {n: issue(d, n) for n in ("bank", "chain")}
    out["gov-as-bank"] = issue(d, "gov", hosts=("127.0.0.1", "localhost", "bank"))  # the #23 item 8 certificate
    out["dir"] = d
    return out


@pytest.fixture
def transports():
    made: list[GrpcTransport] = []

    def make(name, tls, **kw):
        t = GrpcTransport(party=name, listen="127.0.0.1:0", tls=tls, peers={}, retries=0, deadline=3.0, **kw)
        t.start()
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop(0.2)


@pytest.fixture
def party(tmp_path):
    """One in-process Party (bank) built from a real config; not started."""
    if not (DATA / "credit3" / "bank.csv").exists():
        pytest.fail(f"credit3 data missing under {DATA}")
    from fedcredit.party import Party

    configs = write_federation(tmp_path, DATA)
    os.chmod(tmp_path, 0o755)
    (tmp_path / "state" / "bank").mkdir(parents=True, mode=0o755)
    os.chmod(tmp_path / "state" / "bank", 0o755)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # state_dir in the config is relative to it
    try:
        p = Party(load_party_config(configs["bank"]))
    finally:
        os.chdir(cwd)
    p._serving = True
    yield p
    p._serving = False
    p.stop(0.2)


def _job(name="atomic", purpose="credit-risk-model", steps=None) -> dict:
    return {"job": {"name": name, "purpose": purpose},
            "parties": {"bank": {"role": "guest", "table": "credit"}, "gov": {"role": "host", "table": "credit"}},
            "steps": steps or [{"kind": "handshake", "name": "hello"}]}


# ============================================================================ class 3: authorization coverage

def _registered_methods(server: grpc.Server) -> dict[str, object]:
    """Every (method path -> handler) registered on a grpc server, whichever registration API was used."""
    st = server._state  # test-only introspection of grpc's server state
    out = dict(getattr(st, "registered_method_handlers", {}) or {})
    for gh in st.generic_handlers:
        out.update(getattr(gh, "_method_handlers", {}) or {})
    return out


def test_every_method_registered_on_a_party_server_passes_the_authorizer(party):
    """Class 3: iterate over every method of every servicer on a real party's server: each has a rule and,
    through the server's interceptor pipeline, runs wrapped by the authorization check."""
    server = party.transport.server
    methods = _registered_methods(server)
    assert {m.split("/")[1] for m in methods} == {"fedcredit.v1.Federation", "fedcredit.v1.Control",
                                                  "fedcredit.v1.Health", "fedcredit.v1.Scoring",
                                                  "fedcredit.v1.Governance"}
    assert set(methods) == set(RULES)
    pipeline = server._state.interceptor_pipeline
    assert pipeline is not None
    for path, handler in methods.items():
        details = type("D", (), {"method": path, "invocation_metadata": ()})()
        wrapped = pipeline.execute(lambda d, h=handler: h, details)
        behaviours = [getattr(wrapped, a) for a in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")]
        assert [getattr(b, MARK, None) for b in behaviours if b is not None] == [path], path


def test_a_method_without_a_rule_is_refused(pki, transports):
    """Class 3: an RPC added without an authorization rule fails closed (PERMISSION_DENIED), not open."""
    bank = GrpcTransport(party="bank", listen="127.0.0.1:0", tls=pki["bank"], peers={}, deadline=3.0)
    called = []

    def backdoor(request, context):
        called.append(1)
        return b"ok"

    handler = grpc.method_handlers_generic_handler("fedcredit.v1.Control", {
        "Backdoor": grpc.unary_unary_rpc_method_handler(backdoor, lambda b: b, lambda b: b)})
    bank.server.add_generic_rpc_handlers((handler,))
    bank.start()
    chain = transports("chain", pki["chain"])
    try:
        bank.set_peers({"chain": f"127.0.0.1:{chain.port}"})
        chain.set_peers({"bank": f"127.0.0.1:{bank.port}"})
        call = chain.grpc_channel("bank").unary_unary("/fedcredit.v1.Control/Backdoor")
        with pytest.raises(grpc.RpcError) as ei:
            call(b"", timeout=5)
        assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED and "no authorization rule" in ei.value.details()
        assert called == []
    finally:
        bank.stop(0.2)


# ============================================================================ class 2: atomic job creation

@pytest.mark.parametrize("failing", ["job.proposed", "disk"])
def test_operator_job_creation_is_atomic(party, monkeypatch, failing):
    """Class 2: if the audit append fails, no store row, no in-memory job, nothing counts against the limit."""
    real = party.audit.append

    def broken(kind, /, **fields):
        if kind == "job.proposed":
            raise OSError(28, "No space left on device")
        return real(kind, **fields)

    monkeypatch.setattr(party.audit, "append", broken)
    import json

    text = json.dumps(_job()) if failing == "disk" else json.dumps(_job(purpose="\ud800"))
    with pytest.raises((OSError, ConfigError)):
        party.submit_job("bank", text, "t.toml")
    assert party.store.jobs() == [] and party._jobs == {} and party._running() == 0


def test_proposal_creation_is_atomic(party, monkeypatch):
    import json

    real = party.audit.append

    def broken(kind, /, **fields):
        if kind == "job.decision":
            raise OSError(5, "I/O error")
        return real(kind, **fields)

    monkeypatch.setattr(party.audit, "append", broken)
    with pytest.raises(OSError):
        party.propose_job("gov", "prop-1", json.dumps(_job()), "")
    assert party.store.jobs() == [] and party._jobs == {} and party._running() == 0


def test_generated_job_ids_follow_the_grammar(party, monkeypatch):
    import json

    monkeypatch.setattr(party, "_initiate", lambda job: None)  # no peers to talk to here
    job_id = party.submit_job("bank", json.dumps(_job(name="n" * 63)), "long.toml")
    assert is_name(job_id) and job_id.startswith("n" * 40 + "-")


def test_state_dir_is_tightened_to_0700(party):
    assert (party.state_dir.stat().st_mode & 0o777) == 0o700


# ============================================================================ class 7: message binding

def _push(t: GrpcTransport, peer: str, header: fpb.Header, payload: bytes):
    chunk = fpb.Chunk(seq=0, data=payload)
    chunk.header.CopyFrom(header)
    return fpb_grpc.FederationStub(t.grpc_channel(peer)).Push(iter([chunk]), timeout=5)


def test_a_message_does_not_verify_in_another_job_or_under_another_tag(pki, transports):
    """Class 7: the header digest covers job id and tag: resending one's own message into another job or
    under another tag is refused (DATA_LOSS), not accepted as new."""
    bank, chain = transports("bank", pki["bank"]), transports("chain", pki["chain"])
    bank.set_peers({"chain": f"127.0.0.1:{chain.port}"})
    chain.set_peers({"bank": f"127.0.0.1:{bank.port}"})
    payload = b"\x01" * 100
    mid = secrets.token_hex(16)
    h = fpb.Header(job_id="job-a", tag="psi/points", message_id=mid, sender="chain", total_size=len(payload),
                   sha256=message_sha256("job-a", "psi/points", payload), chunk_count=1, kind=fpb.MESSAGE_KIND_DATA)
    assert not _push(chain, "bank", h, payload).duplicate
    for field, value in (("job_id", "job-b"), ("tag", "psi/other")):
        replay = fpb.Header()
        replay.CopyFrom(h)
        setattr(replay, field, value)
        with pytest.raises(grpc.RpcError) as ei:
            _push(chain, "bank", replay, payload)
        assert ei.value.code() == grpc.StatusCode.DATA_LOSS, field
    assert _push(chain, "bank", h, payload).duplicate  # the honest retry is still recognized
    assert bank._mailbox.take("job-a", "chain", "psi/points", 5, me="bank") == payload
    # and the old, unbound digest is refused too
    old = fpb.Header()
    old.CopyFrom(h)
    old.job_id, old.message_id = "job-c", secrets.token_hex(16)
    import hashlib

    old.sha256 = hashlib.sha256(payload).digest()
    with pytest.raises(grpc.RpcError) as ei:
        _push(chain, "bank", old, payload)
    assert ei.value.code() == grpc.StatusCode.DATA_LOSS


@pytest.mark.parametrize("job_id", [".", "..", "../x", "a/b", "J", "job\n", "x" * 64])
def test_transport_channel_refuses_job_ids_outside_the_grammar(pki, transports, job_id):
    t = transports("bank", pki["bank"])
    with pytest.raises(ConfigError):
        t.channel(job_id)


# ============================================================================ #23 item 8: server names

def test_certificate_with_host_of_another_party_cannot_impersonate_it(pki, transports):
    """A certificate issued to gov with ``--host bank`` does not pass chain's TLS check for bank."""
    impostor = transports("gov", pki["gov-as-bank"])  # gov's real process, reached at "bank"'s address
    chain = transports("chain", pki["chain"])
    impostor.set_peers({"chain": f"127.0.0.1:{chain.port}"})
    chain.set_peers({"bank": f"127.0.0.1:{impostor.port}"})
    with pytest.raises(PeerError):
        chain.channel("job").send("bank", "secret", {"x": 1})
    assert impostor._mailbox.boxes == {}


def test_issue_refuses_hosts_in_the_party_namespace(pki):
    with pytest.raises(ConfigError, match="party namespace"):
        issue(pki["dir"], "gov2", hosts=("bank.party.fedcredit.invalid",))
    with pytest.raises(ConfigError, match="party namespace"):
        issue(pki["dir"], "gov3", hosts=("*.party.fedcredit.invalid",))


def _craft(pki_dir: Path, uri_name: str, dns: list[str]) -> bytes:
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, uri_name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(SAN_URI_PREFIX + uri_name), *map(x509.DNSName, dns)]), False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_crafted_certificate_claiming_another_partys_server_name_is_refused(pki):
    pem = _craft(pki["dir"], "gov", ["gov.party.fedcredit.invalid", "bank.party.fedcredit.invalid"])
    with pytest.raises(ConfigError, match="another party's server name"):
        party_name_from_cert(pem)
    assert party_name_from_cert(_craft(pki["dir"], "gov", ["gov.party.fedcredit.invalid", "bank"])) == "gov"


@pytest.mark.parametrize("name", ["bank\n", "Bank", "ba.nk", "", "b" * 64, "bänk", "bank "])
def test_party_names_use_fullmatch(name):
    with pytest.raises(ConfigError):
        check_party_name(name)


# ============================================================================ class 1: paths, logs, ids

def test_state_path_refuses_traversal_and_symlinks(tmp_path):
    root = tmp_path / "state"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "jobs").mkdir()
    os.symlink(outside, root / "jobs" / "evil")
    assert state_path(root, "jobs", "ok-1", "step") == root / "jobs" / "ok-1" / "step"
    for names in (("jobs", ".."), ("jobs", "../x"), ("jobs", "/abs"), ("jobs", "a/b"), ("jobs", "a\x00")):
        with pytest.raises(ProtocolError):
            state_path(root, *names)
    with pytest.raises(ProtocolError, match="outside the state directory"):
        state_path(root, "jobs", "evil", "step")


def test_log_formatter_escapes_every_field():
    stream = io.StringIO()
    h = logging.StreamHandler(stream)
    h.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    lg = logging.getLogger("fedcredit.test-adv-log")
    lg.propagate = False
    lg.addHandler(h)
    forged = "\n2099-01-01 00:00:00,000 ERROR fedcredit.party [main] FORGED"
    try:
        lg.warning("job %s: %s", "j" + forged, "r\r\x00\x1b[31m\u2028\u202e" + forged)
        try:
            raise ValueError("bad" + forged)
        except ValueError:
            lg.exception("failed %s", forged)
        import threading

        t = threading.Thread(target=lambda: lg.warning("from thread"), name="job" + forged)
        t.start()
        t.join()
    finally:
        lg.removeHandler(h)
    lines = stream.getvalue().splitlines()
    assert len([x for x in lines if x[:4].isdigit()]) == 3
    assert all(x[:4].isdigit() and not x.startswith("2099") or x.startswith("  | ") for x in lines), lines
    assert "\x1b" not in stream.getvalue() and "\u202e" not in stream.getvalue()
    assert escape_control("a\nb") == "a\\x0ab"


@pytest.mark.parametrize("model_id", ["job/step\n", "../x/step", "job/..", "job/step/extra", "JOB/step", "job"])
def test_scoring_model_ids_follow_the_grammar(model_id):
    with pytest.raises(ProtocolError):
        sspec.check_model_id(model_id)


def test_request_ids_use_fullmatch():
    rid = sspec.new_request_id()
    assert sspec.check_request_id(rid) == rid
    with pytest.raises(ProtocolError):
        sspec.check_request_id(rid + "\n")


@pytest.mark.parametrize("where, value", [
    ("job", "a/b"), ("job", "Upper"), ("step", "../x"), ("step", "a.b"), ("table", "../t"), ("party", "gov\n"),
])
def test_job_files_use_the_one_grammar(where, value):
    d = _job()
    if where == "job":
        d["job"]["name"] = value
    elif where == "step":
        d["steps"][0]["name"] = value
    elif where == "table":
        d["parties"]["gov"]["table"] = value
    else:
        d["parties"][value] = d["parties"].pop("gov")
    with pytest.raises(ConfigError):
        job_from_dict(d)


# ============================================================================ class 2: JSON limits

@pytest.mark.parametrize("text", [
    "[" * 5000 + "]" * 5000, "[" * 33 + "]" * 33, "1" * 5000, '"\\ud800"', '{"\\udfff": 1}', "NaN", "-Infinity",
    "1e999", '{"a": 1, "a": 2}', b"\xff\xfe", b'"\xed\xa0\x80"', "x" * (2**20 + 1), "{", "",
])
def test_json_limits_refuse(text):
    with pytest.raises(ProtocolError):
        loads_limited(text)


def test_json_limits_accept_ordinary_documents():
    assert loads_limited('{"a": [1, 2.5, -3e-5, "\\u00e9", true, null]}') == {"a": [1, 2.5, -3e-5, "é", True, None]}
    assert loads_limited("[" * 32 + "]" * 32) is not None


# ============================================================================ #23 item 10: file modes

def test_private_files_and_directories(tmp_path):
    from fedcredit._io import write_json_atomic
    from fedcredit.report import save_scores

    p = tmp_path / "part.json"
    p.write_text("{}")
    os.chmod(p, 0o644)
    write_json_atomic(p, {"w": [1]})
    assert (p.stat().st_mode & 0o777) == 0o600
    s = save_scores(tmp_path / "scores.npz", [0, 1], [0.2, 0.8])
    assert (s.stat().st_mode & 0o777) == 0o600
    d = private_dir(tmp_path / "a" / "b")
    assert (d.stat().st_mode & 0o777) == 0o700
    assert sys.platform != "win32"


def test_consent_ids_and_audit_heads_use_fullmatch(tmp_path):
    """Class 1: a trailing newline (accepted by '$' with re.match) no longer passes these peer strings."""
    from fedcredit.config import ScoringPolicy
    from fedcredit.errors import PolicyError
    from fedcredit.serving.authz import check_authorization
    from fedcredit.serving.heads import PeerHeads

    pol = ScoringPolicy()
    check_authorization(pol, ("bank",), "bank", {"consent_id": "c-1", "purpose": "credit"}, 1)
    for auth in ({"consent_id": "c-1\n", "purpose": "credit"}, {"consent_id": "c-1", "purpose": "credit\n"}):
        with pytest.raises(PolicyError, match="malformed"):
            check_authorization(pol, ("bank",), "bank", auth, 1)
    heads = PeerHeads(tmp_path / "peer_heads.json")
    with pytest.raises(ProtocolError):
        heads.record("gov", 3, "a" * 64 + "\n")
