"""Attacks on federated scoring by a malicious bank or a flooding peer (issue 23 item 2, issue 15 class 6(c)).

Three in-process mTLS parties (bank guest; chain, gov hosts) serving the LR
model of ``_scoring_fixture`` (no SecureBoost training: these attacks are
about the LR masks, the replay cache and the audit log of refusals).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import data_path

from fedcredit.errors import PolicyError, ProtocolError
from fedcredit.protocols.scoring import spec
from fedcredit.protocols.scoring.host import lr_partial
from fedcredit.transport import scoring as tscoring

from _scoring_fixture import HOSTS, LR, Fed, rows, scoring_policy, tables, train_lr

AUTH = {"consent_id": "consent-2024-000123", "purpose": "loan-application"}


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    data = data_path("credit3", "bank.csv").parents[1]
    root = tmp_path_factory.mktemp("scoring-attacks")
    host_pol = scoring_policy(requesters=["bank"], purposes=["loan-application"], max_requests_per_minute=100000,
                              head_exchange_seconds=0.0)
    bank_pol = scoring_policy(purposes=["loan-application"], head_exchange_seconds=0.0)
    f = Fed(root, data, {"bank": bank_pol, "chain": host_pol, "gov": host_pol})
    f.tables = tables(data)
    f.info = train_lr(root, f.tables)
    f.start()
    try:
        yield f
    finally:
        f.stop()


def _client(fed, frm: str, to: str) -> tscoring.ScoringClient:
    return tscoring.ScoringClient(fed.parties[frm].transport.grpc_channel(to), to)


def _contribute(fed, host: str, rid: str, ids, frm: str = "bank"):
    return _client(fed, frm, host).contribute_async(LR, rid, spec.id_digests(ids, LR), AUTH, list(HOSTS))()


# ------------------------------------------------------------------ issue 23 item 2: masks bound to the ids
def test_bank_sending_hosts_different_ids_under_one_request_gets_only_noise(fed):
    """The attack: chain gets its customers' digests, gov digests of non-customers, both under one request id.

    With masks keyed by (model, request id) only, gov's reply is ``0 - m`` and
    chain's ``encode(p_chain) + m``: the sum is chain's partial score, exactly.
    With masks keyed by the whole request (ordered digests included), the two
    masks differ and the sum is uniform noise.
    """
    ids = fed.info["ids"][:16]
    strangers = [f"not-a-customer-{k}" for k in range(len(ids))]
    rid = spec.new_request_id()
    a = _contribute(fed, "chain", rid, ids)
    b = _contribute(fed, "gov", rid, strangers)
    unmasked = spec.decode_sum([a.masked, b.masked])
    p_chain = lr_partial(fed.info["parts"]["chain"], rows(fed.tables["chain"], ids))
    assert np.abs(unmasked - p_chain).min() > 1.0  # was: equal to 1e-11
    assert np.abs(unmasked).min() > 1.0  # not the gov partial (0 for non-customers) either


def test_reordering_the_ids_for_one_host_also_gives_noise(fed):
    """Same rows, other order: masks are per position, so a permuted list must not cancel either."""
    ids = fed.info["ids"][16:32]
    rid = spec.new_request_id()
    a = _contribute(fed, "chain", rid, ids)
    b = _contribute(fed, "gov", rid, ids[::-1])
    honest = sum(lr_partial(fed.info["parts"][h], rows(fed.tables[h], ids)) for h in HOSTS)
    assert np.abs(spec.decode_sum([a.masked, b.masked]) - honest).min() > 1.0


def test_honest_request_masks_still_cancel(fed):
    ids = fed.info["ids"][32:48]
    rid = spec.new_request_id()
    a, b = (_contribute(fed, h, rid, ids) for h in HOSTS)
    want = sum(lr_partial(fed.info["parts"][h], rows(fed.tables[h], ids)) for h in HOSTS)
    np.testing.assert_allclose(spec.decode_sum([a.masked, b.masked]), want, atol=1e-11)


def test_replay_is_refused_across_a_host_restart(fed):
    """The replay cache is in the host's state directory: a restart does not reopen a used request id."""
    ids = fed.info["ids"][48:52]
    rid = spec.new_request_id()
    _contribute(fed, "chain", rid, ids)
    fed.stop("chain")
    fed.start("chain")
    with pytest.raises(ProtocolError, match="replay"):
        _contribute(fed, "chain", rid, ids)
    assert len(_contribute(fed, "chain", spec.new_request_id(), ids).masked) == 4  # serving continues
