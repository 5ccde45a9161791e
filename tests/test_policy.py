"""A party's policy decision on a proposed job (fedcredit.party.policy.check_job)."""

from __future__ import annotations

import pytest

from fedcredit.config import job_from_dict, load_party_config
from fedcredit.party.policy import check_job

SUPERVISOR = """
[party]
name = "supervisor"
listen = "127.0.0.1:0"
state_dir = "state"
insecure = true
[peers]
bank = "127.0.0.1:1"
chain = "127.0.0.1:2"
[tables.holdout]
path = "holdout.csv"
label_column = "y"
[policy]
proposers = ["bank"]
"""


@pytest.fixture
def config(tmp_path):
    (tmp_path / "holdout.csv").write_text("id,y\n1,0\n")
    p = tmp_path / "supervisor.toml"
    p.write_text(SUPERVISOR)
    return load_party_config(p)


def _job(table=None, role="aggregator", columns=None):
    me = {"role": role}
    if table is not None:
        me["table"] = table
    if columns is not None:
        me["columns"] = columns
    return job_from_dict({"job": {"name": "h"}, "parties": {"bank": {"role": "client", "table": "t"},
                                                            "chain": {"role": "client", "table": "t"},
                                                            "supervisor": me},
                          "steps": [{"kind": "handshake"}]})


def test_aggregator_without_table_accepted(config):
    assert check_job(config, _job(), "bank") is None


def test_aggregator_with_its_held_out_table_accepted(config):
    assert check_job(config, _job("holdout"), "bank") is None


def test_aggregator_with_unknown_table_refused_with_reason(config):
    assert check_job(config, _job("nope"), "bank") == "'supervisor' has no table 'nope' (tables: holdout)"


@pytest.mark.parametrize("role", ["client", "guest", "host"])
def test_data_roles_need_a_table(config, role):
    assert check_job(config, _job(None, role), "bank") == f"the job gives no table for 'supervisor' (role {role!r} needs one)"


def test_stranger_proposer_refused(config):
    assert "may not propose jobs" in check_job(config, _job(), "chain")
