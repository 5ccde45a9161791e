"""party/report.py writes report.json from what it is given (job, store row, config summary, directory), no Party."""

from __future__ import annotations

import json

from fedcredit.config import job_from_dict
from fedcredit.party.job import PartyJob
from fedcredit.party.report import REPORT_NAME, write_report


def test_write_report_needs_no_party(tmp_path):
    spec = job_from_dict({"job": {"name": "j"}, "parties": {"bank": {"role": "guest", "table": "t"},
                                                             "chain": {"role": "host", "table": "t"}},
                          "steps": [{"name": "psi", "kind": "psi"}]})
    job = PartyJob("j-1", spec, initiator="bank", role="guest", proposer="bank", state="succeeded")
    job.party_state.update(bank="succeeded", chain="succeeded")
    row = {"detail": {"steps": [
        {"party": "bank", "step": "psi", "kind": "psi", "state": "succeeded", "seconds": 1.5,
         "result": {"result": {"intersection": 9}, "traffic": {"bytes_sent": 10}}},
        {"party": "chain", "step": "psi", "kind": "psi", "state": "succeeded", "seconds": 1.0, "result": {}}],
        "decisions": {"chain": {"accepted": True}}}}
    summary = {"policy": {"min_intersection": 5}, "transport": {"deadline": 10}, "compute": {"backend": "local"},
               "tls": {"key": "/secret/key.pem"}}
    path = write_report(job, party="bank", row=row, summary=summary, columns=["a"], directory=tmp_path / "j-1")
    assert path == tmp_path / "j-1" / REPORT_NAME and path.stat().st_mode & 0o777 == 0o600
    rep = json.loads(path.read_text())
    assert [s["step"] for s in rep["steps"]] == ["psi"]  # this party's steps only
    assert rep["steps"][0]["result"] == {"intersection": 9}
    eff = rep["effective_config"]
    assert eff["columns"] == ["a"] and eff["policy"] == {"min_intersection": 5} and "tls" not in eff
    assert set(rep["parties"]) == {"bank", "chain"}  # the initiator's view of every party
    assert (tmp_path / "j-1" / "report.html").is_file()
