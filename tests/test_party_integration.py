"""Three real party processes on 127.0.0.1 with mutual TLS: jobs end to end, policy, failures, cancel, crash.

One module-scoped federation (bank = guest, chain and gov = hosts) is reused by
every test; the test that kills a party runs last and restarts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedcredit.audit import verify
from fedcredit.cli import ExitCode, main
from fedcredit.config import load_party_config
from fedcredit.launcher import Federation, PARTIES, write_federation, write_job
from fedcredit.party import PLUGIN_ENV, register_plugin_steps

from conftest import DATA, data_path
from _party_steps import PLUGINS

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
DEADLINE = 3.0


@contextlib.contextmanager
def _federation(root: Path):
    """bank, chain and gov as processes with the test plugins; stopped (gracefully: checked) on exit."""
    data_path("credit3", "bank.csv")
    old = os.environ.get(PLUGIN_ENV)
    os.environ[PLUGIN_ENV] = PLUGINS
    sys.path.insert(0, str(TESTS))
    register_plugin_steps(PLUGINS)
    kinds = ["handshake", "wait", "boom"]
    configs = write_federation(
        root, DATA,
        policy={"bank": {"allowed_steps": kinds}, "chain": {"allowed_steps": kinds},
                "gov": {"allowed_steps": ["handshake", "wait"]}},
        transport={"deadline": DEADLINE, "recv_timeout": 60.0},
    )
    env = {PLUGIN_ENV: PLUGINS, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    f = Federation(configs, env=env)
    f.root = root
    try:
        f.start(timeout=60)
        yield f
    finally:
        codes = f.stop()
        if old is None:
            os.environ.pop(PLUGIN_ENV, None)
        else:
            os.environ[PLUGIN_ENV] = old
        sys.path.remove(str(TESTS))
    assert all(c == 0 for c in codes.values()), f"parties did not stop gracefully: {codes}"


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    with _federation(tmp_path_factory.mktemp("fed")) as f:
        yield f


@pytest.fixture
def own_fed(tmp_path):
    """A federation of its own, for a test that kills a party (the shared one stays whole, in any test order)."""
    with _federation(tmp_path) as f:
        yield f


def _job(fed, name, steps, parties=None) -> Path:
    return write_job(fed.root / f"{name}.toml", steps, name=name, parties=parties)


def _run(fed, job, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["run", str(job), "--party", str(fed.configs["bank"])])
    out = capsys.readouterr()
    return code, out.out + out.err


def _job_id(out: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if line.startswith("job ") and "submitted" in line)


def _store_row(fed, party, job_id):
    db = sqlite3.connect(load_party_config(fed.configs[party]).state_dir / "party.sqlite")
    try:
        return db.execute("SELECT state, reason, role FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    finally:
        db.close()


def _wait_state(fed, party, job_id, states, timeout=15.0):
    end = time.monotonic() + timeout
    row = None
    while time.monotonic() < end:
        row = _store_row(fed, party, job_id)
        if row and row[0] in states:
            return row
        time.sleep(0.1)
    raise AssertionError(f"{party}: job {job_id} is {row}, expected one of {states}")


def test_job_end_to_end_store_audit_report(fed, capsys, tmp_path):
    code, out = _run(fed, _job(fed, "e2e", [("handshake", "hello", {})]), capsys)
    assert code == ExitCode.OK, out
    job_id = _job_id(out)
    assert f"job {job_id} succeeded" in out
    for party in PARTIES:
        state, reason, role = _wait_state(fed, party, job_id, {"succeeded"})
        assert role == PARTIES[party][0]
        cfg = load_party_config(fed.configs[party])
        records = [json.loads(line) for line in (cfg.state_dir / "audit.log").read_text().splitlines()]
        kinds = {r["kind"] for r in records if r["fields"].get("job_id") == job_id}
        assert {"job.decision", "job.started", "step.finished", "step.messages", "job.finished"} <= kinds, kinds
        assert ("job.proposed" if party == "bank" else "job.proposal") in kinds
        msgs = next(r for r in records if r["kind"] == "step.messages" and r["fields"]["job_id"] == job_id)
        assert msgs["fields"]["peers"]["bank" if party != "bank" else "chain"]["sent_messages"] >= 1
        report = cfg.state_dir / "jobs" / job_id / "report.json"
        for _ in range(50):
            if report.exists() and json.loads(report.read_text())["state"] == "succeeded":
                break
            time.sleep(0.1)
        rep = json.loads(report.read_text())
        assert rep["steps"][0]["step"] == "hello" and rep["steps"][0]["seconds"] >= 0
        assert rep["steps"][0]["traffic"]["bytes_sent"] > 0
        assert rep["effective_config"]["role"] == PARTIES[party][0]
        if party == "bank":
            assert rep["steps"][0]["result"]["rows"] == {"bank": 28000, "chain": 31000, "gov": 29895}
            assert set(rep["parties"]) == set(PARTIES)
        # the audit chain verifies, and one changed byte breaks it
        capsys.readouterr()
        assert main(["audit", "verify", "--party", str(fed.configs[party])]) == ExitCode.OK
        copy = tmp_path / f"{party}-audit.log"
        data = bytearray((cfg.state_dir / "audit.log").read_bytes())
        data[len(data) // 2] ^= 0x04
        copy.write_bytes(bytes(data))
        assert main(["audit", "verify", "--log", str(copy)]) == ExitCode.AUDIT_BROKEN
        assert "BROKEN at line" in capsys.readouterr().out
    # the initiator logged every peer's audit head
    bank_log = load_party_config(fed.configs["bank"]).state_dir / "audit.log"
    heads = [json.loads(x) for x in bank_log.read_text().splitlines() if '"peer.head"' in x]
    assert {h["fields"]["peer"] for h in heads if h["fields"]["job_id"] == job_id} == {"chain", "gov"}
    # ... and a peer's log verifies against the head the bank holds for it
    h = next(h for h in heads if h["fields"]["peer"] == "chain")["fields"]["head"]
    assert main(["audit", "verify", "--party", str(fed.configs["chain"]), "--head", h]) == ExitCode.OK


def test_jobs_list_and_health(fed, capsys):
    capsys.readouterr()
    assert main(["party", "health", str(fed.configs["chain"]), "--all"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.count("SERVING") == 3 and "it sees us as 'chain'" in out
    assert main(["jobs", "list", "--party", str(fed.configs["gov"]), "--json"]) == ExitCode.OK
    rows = json.loads(capsys.readouterr().out)
    assert any(r["name"] == "e2e" and r["state"] == "succeeded" and r["initiator"] == "bank" for r in rows)


def test_policy_refusal_ends_job_with_reason(fed, capsys):
    code, out = _run(fed, _job(fed, "refused", [("handshake", "hello", {}), ("boom", "b", {})]), capsys)
    assert code == ExitCode.REFUSED, out
    job_id = _job_id(out)
    assert "refused by gov" in out and "'boom' is not allowed by 'gov'" in out
    assert _wait_state(fed, "bank", job_id, {"refused"})[1].startswith("refused by gov")
    # the party that accepted is told the job ended, with the reason
    state, reason, _ = _wait_state(fed, "chain", job_id, {"failed", "refused"})
    assert "gov" in reason


def test_failing_step_fails_everywhere_and_parties_keep_serving(fed, capsys):
    two = {k: v for k, v in PARTIES.items() if k != "gov"}
    code, out = _run(fed, _job(fed, "boom", [("boom", "b", {"party": "chain"})], parties=two), capsys)
    assert code == ExitCode.JOB_FAILED, out
    job_id = _job_id(out)
    assert "synthetic failure on chain" in out
    for party in two:
        _, reason, _ = _wait_state(fed, party, job_id, {"failed"})
        assert "chain" in reason
    code, out = _run(fed, _job(fed, "after-boom", [("handshake", "hello", {})]), capsys)
    assert code == ExitCode.OK, out


def test_malformed_requests_do_not_crash(fed, capsys):
    from fedcredit.certs import TlsFiles
    from fedcredit.errors import ConfigError, PolicyError
    from fedcredit.transport.control import ControlClient, dial

    cfg = load_party_config(fed.configs["bank"])
    ch = dial(cfg.connect_address, target="bank", tls=TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key))
    try:
        c = ControlClient(ch, "bank")
        with pytest.raises(ConfigError, match="not valid JSON"):
            c.submit("{nope", "x")
        with pytest.raises(ConfigError, match=r"\[parties.zed\]"):
            c.submit(json.dumps({"job": {"name": "x"}, "parties": {"bank": {"role": "guest"}, "zed": {"role": "spy"}},
                                 "steps": [{"kind": "handshake"}]}), "x")
        with pytest.raises(ConfigError, match="not in 'bank'"):
            c.submit(json.dumps({"job": {"name": "x"}, "parties": {"bank": {"role": "guest", "table": "credit"},
                                 "mallory": {"role": "host"}}, "steps": [{"kind": "handshake"}]}), "x")
        # a peer may not use the operator's calls: chain's certificate against bank's SubmitJob
        ccfg = load_party_config(fed.configs["chain"])
        ch2 = dial(cfg.connect_address, target="bank", tls=TlsFiles(ccfg.tls.ca, ccfg.tls.cert, ccfg.tls.key))
        with pytest.raises(PolicyError, match="own operator"):
            ControlClient(ch2, "bank").list_jobs()
        ch2.close()
        assert c.health()["serving"]
    finally:
        ch.close()


def test_cancel_from_cli(fed, capsys):
    capsys.readouterr()
    job = _job(fed, "cancel-me", [("wait", "w", {"seconds": 60})])
    assert main(["run", str(job), "--party", str(fed.configs["bank"]), "--detach"]) == ExitCode.OK
    job_id = capsys.readouterr().out.strip().splitlines()[-1]
    gov_dir = load_party_config(fed.configs["gov"]).state_dir
    _wait_for(lambda: (gov_dir / "jobs" / job_id / "w" / "started").exists())
    t0 = time.monotonic()
    assert main(["cancel", job_id, "--party", str(fed.configs["bank"]), "--reason", "test"]) == ExitCode.OK
    for party in PARTIES:
        state, reason, _ = _wait_state(fed, party, job_id, {"cancelled", "failed"}, timeout=10)
        assert state == "cancelled" and "test" in reason, (party, state, reason)
    assert time.monotonic() - t0 < 10


def _wait_for(pred, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def test_peer_killed_mid_job_then_new_job_succeeds(own_fed, capsys):
    fed = own_fed
    job = _job(fed, "crash", [("wait", "w", {"seconds": 60})])
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedcredit.cli", "run", str(job), "--party", str(fed.configs["bank"])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, **fed.env),
    )
    gov_dir = load_party_config(fed.configs["gov"]).state_dir
    try:
        _wait_for(lambda: any(gov_dir.glob("jobs/crash-*/w/started")))
        job_id = next(gov_dir.glob("jobs/crash-*/w/started")).parent.parent.name
        t0 = time.monotonic()
        fed.kill("gov")
        out, _ = proc.communicate(timeout=DEADLINE + 20)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - t0
    assert proc.returncode == ExitCode.JOB_FAILED, out
    assert "'gov'" in out.splitlines()[-1], out
    assert elapsed < DEADLINE + 10, f"took {elapsed:.1f}s"
    for party in ("bank", "chain"):
        state, reason, _ = _wait_state(fed, party, job_id, {"failed"})
        assert "gov" in reason, (party, reason)
    # restart gov: it lists its past jobs (the interrupted one as failed), and a new job succeeds
    fed.start(["gov"], timeout=60)
    assert _store_row(fed, "gov", job_id)[0] == "failed"
    code, out = _run(fed, _job(fed, "after-crash", [("handshake", "hello", {})]), capsys)
    assert code == ExitCode.OK, out
