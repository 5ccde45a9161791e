"""The data owner's approval queue (issue #18 item 1): manual jobs wait for the operator of the data owner.

Two parties run in this process (bank = guest and initiator, chain = host with
``[policy] approval = "manual"``), each with its own mTLS gRPC server.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from fedcredit.cli import main
from fedcredit.config import load_party_config
from fedcredit.launcher import write_federation
from fedcredit.errors import ConfigError, PolicyError
from fedcredit.transport.control import ControlClient

from _inproc_fed import running_parties, submit, wait_for
from conftest import DATA, data_path

PARTIES2 = {"bank": ("guest", "bank.csv", "default_next_month"), "chain": ("host", "chain.csv", None)}
PARTIES3 = {**PARTIES2, "gov": ("host", "gov.csv", None)}


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    data_path("credit3", "bank.csv")
    root = tmp_path_factory.mktemp("approval")
    configs = write_federation(root, DATA, parties=PARTIES3,
                               policy={"chain": {"approval": "manual"}, "gov": {"approval": "manual"}},
                               transport={"deadline": 5.0})
    text = configs["chain"].read_text()  # chain logs JSON lines ([party] log_format)
    configs["chain"].write_text(text.replace('state_dir = "state/chain"', 'state_dir = "state/chain"\nlog_format = "json"'))
    with running_parties(root, configs) as fed:
        yield fed


def _submit(fed, name, purpose="credit-risk-model", parties3=False):
    return submit(fed, name, [("handshake", "hello", {})], parties=PARTIES3 if parties3 else PARTIES2,
                  purpose=purpose)


def _wait(pred, timeout=20.0, what="condition"):
    return wait_for(pred, timeout, what)


def _state(party, job_id):
    row = party.store.job(job_id)
    return (row["state"], row["reason"]) if row else (None, None)


def _queued(party, job_id):
    return any(j["job_id"] == job_id for j in party.pending_jobs(party.name))


def _audit(party, kind, job_id):
    return [r["fields"] for r in party.audit.records() if r["kind"] == kind and r["fields"].get("job_id") == job_id]


def _set_policy(party, **kw):
    party.config = dataclasses.replace(party.config, policy=dataclasses.replace(party.config.policy, **kw))


def test_manual_job_waits_for_approval_and_a_peer_cannot_approve(fed, capsys):
    root, configs, parties = fed
    bank, chain = parties["bank"], parties["chain"]
    job_id = _submit(fed, "manual-ok")
    _wait(lambda: _queued(chain, job_id), what="pending-approval on chain")
    # the initiator waits, and says for whom
    _wait(lambda: any("waiting for approval by chain" in e["message"] for e in bank._jobs[job_id].events),
          what="the initiator's waiting message")
    time.sleep(0.5)
    assert _state(bank, job_id)[0] == "proposed" and _state(chain, job_id)[0] == "pending-approval"
    # the queue shows what the operator decides on
    assert main(["jobs", "pending", "--party", str(configs["chain"]), "--json"]) == 0
    queue = json.loads(capsys.readouterr().out)
    (item,) = [j for j in queue if j["job_id"] == job_id]
    assert item["proposer"] == "bank" and item["purpose"] == "credit-risk-model" and item["peers"] == ["bank"]
    # no policy column limit: every column of the table, named from its header (not the id)
    header = (DATA / "credit3" / "chain.csv").read_text().splitlines()[0].split(",")
    assert item["table"] == "credit" and item["columns"] == [c for c in header if c != "id"] and item["columns"]
    assert item["steps"][0]["kind"] == "handshake" and set(item["steps"][0]["reveals"]) == {"bank", "chain"}
    # attack: the initiator (a peer of chain) approves on chain's behalf, or starts the job anyway
    as_bank = ControlClient(bank.transport.grpc_channel("chain"), "chain", timeout=5)
    with pytest.raises(PolicyError, match="only 'chain'"):
        as_bank.decide(job_id, True, "I approve for you")
    with pytest.raises(PolicyError):
        as_bank.pending_jobs()
    with pytest.raises(Exception, match="not pending"):
        as_bank.start(job_id, timeout=5)
    assert _state(chain, job_id)[0] == "pending-approval"
    assert not _audit(chain, "job.approval", job_id)
    # the operator approves through the CLI (its own certificate)
    assert main(["jobs", "approve", job_id, "--party", str(configs["chain"]), "--reason", "looks fine"]) == 0
    for p in (bank, chain):
        _wait(lambda p=p: _state(p, job_id)[0] == "succeeded", what=f"success on {p.name}")
    (rec,) = _audit(chain, "job.approval", job_id)
    assert rec["decision"] == "approved" and rec["approver"] == "operator certificate 'chain'"
    assert rec["reason"] == "looks fine" and rec["proposer"] == "bank"
    # approval precedes the start in the hash chain
    kinds = [r["kind"] for r in chain.audit.records() if r["fields"].get("job_id") == job_id]
    assert kinds.index("job.approval") < kinds.index("job.started")
    # chain's log is JSON lines; its worker's lines name the job and the step
    lines = [json.loads(line) for line in (chain.state_dir / "party.log").read_text().splitlines()]
    assert any(d.get("job") == job_id and d.get("step") == "hello" for d in lines)


def test_rejection_ends_the_job_everywhere_with_the_reason(fed, capsys):
    root, configs, parties = fed
    bank, chain = parties["bank"], parties["chain"]
    job_id = _submit(fed, "manual-no")
    _wait(lambda: _queued(chain, job_id))
    with pytest.raises(ConfigError, match="needs a reason"):
        chain.decide_job("chain", job_id, False, "")
    chain.approvals.decide("chain", job_id, False, "not this quarter", approver="console user 'ops'")
    for p in (bank, chain):
        st, why = _wait(lambda p=p: _state(p, job_id)[0] == "refused" and _state(p, job_id))
        assert "not this quarter" in why and "rejected by chain" in why, why
    (rec,) = _audit(chain, "job.approval", job_id)
    assert rec["decision"] == "rejected" and rec["approver"] == "console user 'ops'"
    assert not _audit(chain, "job.started", job_id) and not _audit(bank, "job.started", job_id)
    with pytest.raises(Exception, match="not waiting for approval"):
        chain.decide_job("chain", job_id, True, "")


def test_undecided_proposal_expires(fed):
    root, configs, parties = fed
    bank, chain = parties["bank"], parties["chain"]
    old = chain.config
    _set_policy(chain, approval_expiry_hours=1.5 / 3600)
    try:
        job_id = _submit(fed, "manual-late")
        for p in (bank, chain):
            st, why = _wait(lambda p=p: _state(p, job_id)[0] == "refused" and _state(p, job_id), timeout=30)
            assert "expired" in why, why
    finally:
        chain.config = old
    (rec,) = _audit(chain, "job.approval", job_id)
    assert rec["decision"] == "expired"


def test_rule_approves_automatically(fed):
    from fedcredit.config import ApprovalRule

    root, configs, parties = fed
    bank, chain = parties["bank"], parties["chain"]
    old = chain.config
    _set_policy(chain, approval_rules=(ApprovalRule("auto", proposer="bank", purpose="credit-risk-model", max_steps=9),))
    try:
        job_id = _submit(fed, "auto-by-rule")
        for p in (bank, chain):
            _wait(lambda p=p: _state(p, job_id)[0] == "succeeded", what="auto-approved job")
        other = _submit(fed, "other-purpose", purpose="marketing")
        _wait(lambda: _queued(chain, other), what="manual for another purpose")
        chain.decide_job("chain", other, False, "not for marketing")
    finally:
        chain.config = old


def test_start_waits_for_every_data_owner(fed):
    root, configs, parties = fed
    bank, chain, gov = parties["bank"], parties["chain"], parties["gov"]
    job_id = _submit(fed, "two-owners", parties3=True)
    _wait(lambda: _queued(chain, job_id) and _queued(gov, job_id), what="both queues")
    chain.decide_job("chain", job_id, True, "")  # the first approval alone starts nothing
    time.sleep(1.5)
    assert {_state(p, job_id)[0] for p in (bank, chain, gov)} == {"proposed", "pending", "pending-approval"}
    msgs = [e["message"] for e in bank._jobs[job_id].events]
    assert any("waiting for approval by gov" in m for m in msgs) and any("waiting for approval by chain" in m for m in msgs)
    gov.decide_job("gov", job_id, True, "")
    for p in (bank, chain, gov):
        _wait(lambda p=p: _state(p, job_id)[0] == "succeeded", what=f"success on {p.name}")


def test_jobs_waiting_for_approval_do_not_block_new_ones(fed):
    root, configs, parties = fed
    bank, chain = parties["bank"], parties["chain"]
    assert bank.config.policy.max_concurrent_jobs == 2
    ids = []
    for i in range(3):  # the third would be refused as "busy" if jobs waiting for approval counted
        ids.append(_submit(fed, f"queued{i}"))
        _wait(lambda: _queued(chain, ids[-1]), what=f"{ids[-1]} in the queue")
    for job_id in ids:
        chain.decide_job("chain", job_id, False, "clearing the queue")
    for job_id in ids:
        _wait(lambda job_id=job_id: _state(bank, job_id)[0] == "refused", what="refusals")


def test_approval_config_shape_and_errors(tmp_path):
    base = """[party]
name = "chain"
listen = "127.0.0.1:0"
state_dir = "s"
insecure = true
[peers]
bank = "127.0.0.1:1"
[policy]
proposers = ["bank"]
approval = "manual"
approval_expiry_hours = 48
[[policy.approval_rules]]
proposer = "bank"
purpose = "credit-risk-model"
max_steps = 9
approval = "auto"
"""
    p = tmp_path / "chain.toml"
    p.write_text(base)
    pol = load_party_config(p).policy
    assert pol.approval == "manual" and pol.approval_expiry_hours == 48
    assert pol.approval_for("bank", "credit-risk-model", 9) == "auto"
    assert pol.approval_for("bank", "credit-risk-model", 10) == "manual"
    assert pol.approval_for("bank", "marketing", 2) == "manual"
    p.write_text(base + '[[policy.approval_rules]]\nproposer = "mallory"\napproval = "sometimes"\nsteps = 3\n')
    with pytest.raises(ConfigError) as e:
        load_party_config(p)
    text = str(e.value)
    assert str(p) in text
    assert "[[policy.approval_rules]] #2.proposer: 'mallory' is not this party" in text
    assert "[[policy.approval_rules]] #2.approval: must be one of 'auto', 'manual'" in text
    assert "[[policy.approval_rules]] #2.steps: unknown key" in text
