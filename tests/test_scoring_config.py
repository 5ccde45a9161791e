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


def test_reason_policy_keys_are_read_and_checked(tmp_path):
    from fedcredit.errors import ConfigError

    cfg = load_party_config(PARTIES / "chain.toml", check_files=False)
    assert cfg.policy.scoring.reveal_reasons is False
    assert dict(cfg.policy.reasons) == {"bill_amt1": "recent bills at the retail chain"}
    assert load_party_config(PARTIES / "gov.toml", check_files=False).policy.reasons == {}
    text = (PARTIES / "chain.toml").read_text().replace("reveal_reasons = false", "reveal_reasons = true")
    bad = tmp_path / "chain.toml"
    bad.write_text(text)
    assert load_party_config(bad, check_files=False).policy.scoring.reveal_reasons is True
    bad.write_text(text.replace('bill_amt1 = "recent bills at the retail chain"', 'bill_amt1 = 3'))
    with pytest.raises(ConfigError, match=r"\[policy.reasons\].bill_amt1"):
        load_party_config(bad, check_files=False)
    bad.write_text(text.replace("reveal_reasons = true", 'reveal_reasons = "yes"'))
    with pytest.raises(ConfigError, match="reveal_reasons"):
        load_party_config(bad, check_files=False)
