"""The example party configs (parties/*.toml) load, with their [policy.scoring] as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcredit.config import ScoringPolicy, load_party_config

PARTIES = Path(__file__).resolve().parents[1] / "parties"


@pytest.mark.parametrize("name", ["bank", "chain", "gov"])
def test_example_config_loads_with_its_scoring_policy(name):
    cfg = load_party_config(PARTIES / f"{name}.toml", check_files=False)  # certificates are created by the operator
    sc = cfg.policy.scoring
    assert cfg.name == name
    assert sc.purposes == ("loan-application", "credit-line-review")
    assert sc != ScoringPolicy()  # the section is really read, not the defaults
    assert (sc.max_requests_per_minute, sc.max_ids_per_minute, sc.max_batch, sc.head_exchange_seconds) == \
        (600, 1_000_000, 100_000, 60.0)
    # the bank scores through its own operator and serves nobody else; the platforms serve the bank only
    assert sc.requesters == (() if name == "bank" else ("bank",))
