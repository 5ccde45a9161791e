"""Prometheus metrics of a party (issue #18 item 3): scraped after a small job, they equal the report's figures.

(``tests/test_metrics.py`` tests the model metrics: AUC, KS...)
"""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fedcredit.config import load_job, load_party_config
from fedcredit.launcher import write_federation, write_job
from fedcredit.party import Party
from fedcredit.party.metrics import refusal_reason

from conftest import DATA, data_path

PARTIES2 = {"bank": ("guest", "bank.csv", "default_next_month"), "chain": ("host", "chain.csv", None)}


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    data_path("credit3", "bank.csv")
    root = tmp_path_factory.mktemp("metrics")
    configs = write_federation(root, DATA, parties=PARTIES2, transport={"deadline": 5.0},
                               policy={"chain": {"purposes": ["credit-risk-model"]}})
    parties = {n: Party(load_party_config(p)) for n, p in configs.items()}
    for p in parties.values():
        p.start()
    try:
        yield root, parties
    finally:
        for p in parties.values():
            p.stop(grace=0.5)


def _samples(party) -> dict:
    out = {}
    for fam in text_string_to_metric_families(party.metrics.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _run(root, bank, name, steps, purpose="credit-risk-model"):
    job = write_job(root / f"{name}.toml", steps, name=name, parties=PARTIES2)
    job.write_text(job.read_text().replace('purpose = "credit-risk-model"', f'purpose = "{purpose}"'))
    return bank.submit_job("bank", load_job(job).to_json(), str(job))


def _wait_report(party, job_id, state="succeeded", timeout=120):
    path = party.state_dir / "jobs" / job_id / "report.json"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            rep = json.loads(path.read_text())
            if rep["state"] == state:
                return rep
        time.sleep(0.1)
    raise AssertionError(f"no {state} report of {job_id} on {party.name}")


def test_counters_equal_the_report_after_a_job(fed):
    root, parties = fed
    bank, chain = parties["bank"], parties["chain"]
    job_id = _run(root, bank, "small", [("handshake", "hello", {}), ("psi", "psi", {})])
    reports = {p.name: _wait_report(p, job_id) for p in (bank, chain)}
    for p in (bank, chain):
        rep, m = reports[p.name], _samples(p)
        other = "chain" if p.name == "bank" else "bank"
        for direction in ("sent", "received"):
            for unit in ("bytes", "messages"):
                want = sum(s["traffic"]["peers"].get(other, {}).get(f"{direction}_{unit}", 0) for s in rep["steps"])
                got = m[(f"fedcredit_peer_{unit}_total", (("direction", direction), ("peer", other)))]
                assert got == want > 0, (p.name, direction, unit)
        for kind in ("handshake", "psi"):
            secs = [s["seconds"] for s in rep["steps"] if s["kind"] == kind]
            assert m[("fedcredit_step_duration_seconds_count", (("kind", kind),))] == len(secs) == 1
            assert m[("fedcredit_step_duration_seconds_sum", (("kind", kind),))] == pytest.approx(sum(secs), abs=1e-5)
        assert m[("fedcredit_jobs", (("state", "succeeded"),))] == 1
        assert m[("fedcredit_audit_sequence", ())] == p.audit.head()[0]
        left = m[("fedcredit_certificate_expiry_seconds", (("certificate", "party"),))]
        assert 700 * 86400 < left < 731 * 86400  # issued for 730 days


def test_refusals_by_reason(fed):
    root, parties = fed
    bank, chain = parties["bank"], parties["chain"]
    before = _samples(chain).get(("fedcredit_refusals_total", (("reason", "purpose"), ("what", "job"))), 0)
    job_id = _run(root, bank, "wrong-purpose", [("handshake", "hello", {})], purpose="marketing<script>")
    end = time.monotonic() + 30
    while (bank.store.job(job_id) or {}).get("state") != "refused" and time.monotonic() < end:
        time.sleep(0.1)
    m = _samples(chain)
    assert m[("fedcredit_refusals_total", (("reason", "purpose"), ("what", "job")))] == before + 1
    # the peer's text never becomes a label value
    assert not any("script" in str(k) for k in m)
    assert refusal_reason("'x' may not propose jobs") == "proposer" and refusal_reason("weird") == "other"


@pytest.fixture(scope="module")
def scoring_fed(tmp_path_factory):
    from _scoring_fixture import Fed, scoring_policy, tables, train

    data = data_path("credit3", "bank.csv").parents[1]
    root = tmp_path_factory.mktemp("metrics-scoring")
    host = scoring_policy(requesters=["bank"], purposes=["loan-application"], head_exchange_seconds=0.0)
    f = Fed(root, data, {"bank": scoring_policy(purposes=["loan-application", "marketing"], head_exchange_seconds=0.0),
                         "chain": host, "gov": host})
    f.tables = tables(data)
    f.info = train(root, f.tables)
    f.start()
    try:
        yield f
    finally:
        f.stop()


def test_scoring_requests_latency_and_refusals(scoring_fed):
    from _scoring_fixture import SBT, joined_ids

    from fedcredit.errors import FedcreditError

    bank, chain = scoring_fed.parties["bank"], scoring_fed.parties["chain"]
    ids = joined_ids(scoring_fed.tables)[:5]
    bank.scoring.score("bank", SBT, ids, {"consent_id": "c-1", "purpose": "loan-application"})
    with pytest.raises(FedcreditError):
        bank.scoring.score("bank", SBT, ids, {"consent_id": "c-2", "purpose": "marketing"})  # the hosts refuse
    mb, mc = _samples(bank), _samples(chain)
    key = lambda who, purpose, outcome: ("fedcredit_scoring_requests_total",  # noqa: E731
                                         (("outcome", outcome), ("purpose", purpose), ("requester", who)))
    assert mb[key("bank", "loan-application", "answered")] == 1
    assert mb[key("bank", "marketing", "refused")] == 1
    assert mc[key("bank", "loan-application", "answered")] == 1
    assert mc[key("bank", "marketing", "refused")] == 1
    assert mc[("fedcredit_refusals_total", (("reason", "purpose"), ("what", "scoring")))] == 1
    assert mb[("fedcredit_scoring_latency_seconds_count", (("requester", "bank"),))] == 2
    assert mc[("fedcredit_scoring_latency_seconds_count", (("requester", "bank"),))] == 2
