"""Job-level resume with real party processes (issue #21): kill a host mid-training, restart it, resume, same model.

One module-scoped federation of party processes on loopback with mutual TLS
(bank = guest, chain = host, supervisor = aggregator; ``benchmarks.suites.chaos``
sets it up on a credit3 subset). Each test compares the model of a resumed job
with an uninterrupted run of the same job spec: SecureBoost trees and hetero LR
weights must be equal exactly.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from benchmarks.suites.chaos import Chaos, job_steps
from fedcredit.audit import verify
from fedcredit.cli import ExitCode, main
from fedcredit.errors import PolicyError

from conftest import data_path

pytestmark = pytest.mark.slow

DEADLINE = 2.0


@pytest.fixture(scope="module")
def chaos(tmp_path_factory):
    data_path("credit3", "bank.csv")
    c = Chaos(tmp_path_factory.mktemp("resume"), fraction=0.05, deadline=DEADLINE)
    try:
        yield c
    finally:
        codes = c.close()
    assert all(v == 0 for v in codes.values()), codes


def _wait(pred, timeout=300.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout}s")


def _trees(chaos, job_id) -> int:
    p = chaos.state_dir("bank") / "jobs" / job_id / "sbt" / "sbt_guest.json"
    try:
        return len(json.loads(p.read_text())["trees"])
    except (OSError, ValueError):
        return 0


def _resume_cli(chaos, job_id, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["run", "--resume", job_id, "--party", str(chaos.configs["bank"])])
    out = capsys.readouterr()
    return code, out.out + out.err


def _audit_resumed(chaos, party, job_id) -> list[dict]:
    path = chaos.state_dir(party) / "audit.log"
    assert verify(path).ok
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in recs if r["kind"] == "job.resumed" and r["fields"]["job_id"] == job_id]


def _kill_and_restart(chaos, job_id, victim="chain", *, at_once=False):
    """SIGKILL ``victim``; restart it after the job failed, or ``at_once`` (faster than the liveness deadline:
    the restarted party itself tells the initiator it lost the job)."""
    chaos.fed.kill(victim)
    if at_once:
        chaos.fed.start([victim], timeout=90)
    end = chaos.wait_end(job_id, 30 + 5 * DEADLINE)
    assert end is not None and end[0] == "failed", end
    assert repr(victim) in end[1], end  # the reason names the party that died
    if not at_once:
        chaos.fed.start([victim], timeout=90)
    _wait(lambda: chaos.row(victim, job_id)[0] == "failed", 30, "the job failed on the restarted party")


def test_secureboost_host_killed_after_tree_k_resumes_to_the_same_trees(chaos, capsys):
    steps, roles = job_steps("sbt", trees=5, epochs=0, rounds=0, n_features=0)
    ref = chaos.submit("sbt", steps, roles, "sbt-ref")
    assert chaos.wait_end(ref, 600)[0] == "succeeded"
    job = chaos.submit("sbt", steps, roles, "sbt-kill")
    _wait(lambda: _trees(chaos, job) >= 2, what="two trees")
    _kill_and_restart(chaos, job)
    done_before = _trees(chaos, job)
    code, out = _resume_cli(chaos, job, capsys)
    assert code == ExitCode.OK, out
    assert f"job {job} resumed on bank" in out
    assert chaos.model("sbt", job) == chaos.model("sbt", ref)
    # it continued from the trees every party had finished, not from tree 0
    row = chaos.client.list_jobs(job_id=job)[0]
    sbt = next(s for s in row["detail"]["steps"] if s["party"] == "bank" and s["step"] == "sbt")
    assert sbt["result"]["result"]["resumed_from"] >= min(2, done_before - 1)
    for party in ("bank", "chain"):
        (rec,) = _audit_resumed(chaos, party, job)
        assert rec["fields"]["attempt"] == 1 and rec["fields"]["by"] == "bank"
        assert chaos.row(party, job)[0] == "succeeded"


def test_hetero_lr_host_killed_after_epoch_k_resumes_to_the_same_weights(chaos, capsys):
    steps, roles = job_steps("lr", trees=0, epochs=6, rounds=0, n_features=0)
    ref = chaos.submit("lr", steps, roles, "lr-ref")
    assert chaos.wait_end(ref, 600)[0] == "succeeded"
    job = chaos.submit("lr", steps, roles, "lr-kill")
    ck = chaos.state_dir("chain") / "jobs" / job / "lr"
    _wait(lambda: (ck / "ckpt-2.json").exists() or (ck / "ckpt-3.json").exists(), what="epoch 2 on the host")
    _kill_and_restart(chaos, job, at_once=True)
    code, out = _resume_cli(chaos, job, capsys)
    assert code == ExitCode.OK, out
    assert chaos.model("lr", job) == chaos.model("lr", ref)  # weights and intercept, exactly
    log = (chaos.state_dir("bank") / "party.log").read_text()
    rounds = [int(m) for m in re.findall(rf"job {job} step lr: resuming from round (\d+)", log)]
    assert rounds and rounds[-1] >= 2, rounds
    assert not list(ck.glob("ckpt-*")), "round checkpoints are removed once the job succeeded"
    assert _audit_resumed(chaos, "chain", job)


def test_resume_is_refused_unless_it_is_the_same_job(chaos, capsys, tmp_path):
    steps, roles = job_steps("lr", trees=0, epochs=2, rounds=0, n_features=0)
    done = chaos.submit("lr", steps, roles, "lr-done")
    assert chaos.wait_end(done, 300)[0] == "succeeded"
    code, out = _resume_cli(chaos, done, capsys)
    assert code != ExitCode.OK and "only a failed or cancelled job" in out, out
    # a cancelled job whose host's table changed since: the host refuses, the job stays failed (resumable)
    steps, roles = job_steps("lr", trees=0, epochs=30, rounds=0, n_features=0)
    job = chaos.submit("lr", steps, roles, "lr-tamper")
    _wait(lambda: (chaos.row("chain", job) or ("",))[0] == "running", what="the job running on the host")
    chaos.client.cancel(job, "test")
    assert chaos.wait_end(job, 60)[0] == "cancelled"
    table = chaos.root / "data" / "credit3" / "chain.csv"
    original = table.read_bytes()
    try:
        table.write_bytes(original + b"\n")
        code, out = _resume_cli(chaos, job, capsys)
        assert code == ExitCode.JOB_FAILED and "'chain''s table changed" in out.replace('"', "'"), out
    finally:
        table.write_bytes(original)
    # a peer proposing a different spec under the same job id is refused (spec digest)
    from fedcredit.config import job_from_dict

    spec = job_from_dict(chaos.client.list_jobs(job_id=job)[0]["detail"]["job"], source="t")
    other = json.loads(spec.to_json())
    other["steps"][1]["params"]["learning_rate"] = 5.0
    from fedcredit.certs import TlsFiles
    from fedcredit.config import load_party_config
    from fedcredit.transport.control import ControlClient, dial

    cfg = load_party_config(chaos.configs["bank"])  # as the initiator itself (its certificate)
    peer_ch = dial(load_party_config(chaos.configs["chain"]).connect_address, target="chain",
                   tls=TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key))
    try:
        ok, why = ControlClient(peer_ch, "chain").propose(job, json.dumps(other), attempt=99)
    finally:
        peer_ch.close()
    assert not ok and "spec differs" in why, why
    # the same job, data restored: the resume goes through
    code, out = _resume_cli(chaos, job, capsys)
    assert code == ExitCode.OK, out
    # only the initiator's own operator may resume, and only there
    client, ch = chaos._own("chain")
    try:
        with pytest.raises(PolicyError, match="resume it there"):
            client.resume(job)
    finally:
        ch.close()


def test_a_late_cancel_of_an_earlier_attempt_leaves_the_resumed_one_running(chaos, capsys):
    # attack/race: the initiator's cancel of attempt 0, held while the host was stopped (or sent by a restarted
    # initiator), arrives after the host accepted attempt 1; without the attempt it would fail the live attempt
    steps, roles = job_steps("lr", trees=0, epochs=40, rounds=0, n_features=0)
    job = chaos.submit("lr", steps, roles, "lr-late-cancel")
    _wait(lambda: (chaos.row("chain", job) or ("",))[0] == "running", what="the job running on the host")
    chaos.client.cancel(job, "test")
    assert chaos.wait_end(job, 60)[0] == "cancelled"
    assert chaos.wait_end(job, 60, party="chain") is not None
    capsys.readouterr()
    assert main(["jobs", "resume", job, "--party", str(chaos.configs["bank"]), "--detach"]) == ExitCode.OK
    _wait(lambda: _audit_resumed(chaos, "chain", job) and chaos.row("chain", job)[0] == "running", 60,
          "attempt 1 running on the host")
    from fedcredit.certs import TlsFiles
    from fedcredit.config import load_party_config
    from fedcredit.transport.control import ControlClient, dial

    cfg = load_party_config(chaos.configs["bank"])  # the initiator's own certificate
    peer_ch = dial(load_party_config(chaos.configs["chain"]).connect_address, target="chain",
                   tls=TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key))
    try:
        msg = ControlClient(peer_ch, "chain").cancel(job, "stale", attempt=0)
    finally:
        peer_ch.close()
    assert "attempt 0 is over" in msg
    time.sleep(1.0)
    assert chaos.row("chain", job)[0] == "running" and chaos.row("bank", job)[0] == "running"
    chaos.client.cancel(job, "test over")
    assert chaos.wait_end(job, 60)[0] == "cancelled"
    assert chaos.wait_end(job, 60, party="chain")[0] in ("cancelled", "failed")
