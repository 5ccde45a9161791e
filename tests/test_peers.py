"""fedcredit.party.peers.PeerAccess: who may message a party (revoke, admit, reload), without a federation."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fedcredit.errors import ConfigError, PolicyError
from fedcredit.party.peers import REVOKED_FILE, PeerAccess


class _Transport:
    def __init__(self, peers):
        self._peers = dict(peers)
        self.calls = 0

    @property
    def peers(self):
        return dict(self._peers)

    def set_peers(self, peers):
        self.calls += 1
        self._peers = dict(peers)


class _Audit:
    def __init__(self):
        self.records = []

    def append(self, kind, **fields):
        self.records.append((kind, fields))


PEERS = {"bank": "127.0.0.1:1", "gov": "127.0.0.1:2"}


def _access(tmp_path, peers=PEERS):
    cfg = SimpleNamespace(name="chain", state_dir=tmp_path, peers=dict(peers), path=tmp_path / "chain.toml")
    t, a = _Transport(peers), _Audit()
    return PeerAccess(cfg, t, a), t, a


def test_revoke_persists_durably_and_refuses_with_the_reason(tmp_path):
    access, t, audit = _access(tmp_path)
    forgotten = []
    access.on_revoke.append(forgotten.append)
    with pytest.raises(PolicyError, match="only 'chain''s own operator may revoke peers"):
        access.revoke("bank", "gov", "mine now")
    with pytest.raises(ConfigError, match="not a peer"):
        access.revoke("chain", "mallory")
    msg = access.revoke("chain", "bank", "contract ended")
    assert msg == "bank revoked on chain; peers now: gov"
    assert "bank" not in t.peers and forgotten == ["bank"]
    saved = json.loads((tmp_path / REVOKED_FILE).read_text())
    assert saved["bank"]["reason"] == "contract ended"
    assert ((tmp_path / REVOKED_FILE).stat().st_mode & 0o777) == 0o600
    assert [x.name for x in tmp_path.iterdir()] == [REVOKED_FILE]  # no temporary file left behind
    assert audit.records[-1][0] == "peer.revoked"
    reason = access.refusal_reason("bank")
    assert reason.startswith("party 'bank' is not a peer of 'chain': revoked by 'chain''s operator at ")
    assert reason.endswith("(reason: contract ended)")
    assert access.refusal_reason("gov") is None
    assert "unknown or revoked" in access.refusal_reason("mallory")


def test_revocation_is_applied_when_the_party_is_built(tmp_path):
    """A restarted party refuses a revoked peer before its server takes any call (not only once serving started)."""
    first, _, _ = _access(tmp_path)
    first.revoke("chain", "bank", "audit finding")
    _, t, _ = _access(tmp_path)  # the next process on this state directory
    assert sorted(t.peers) == ["gov"] and t.calls == 1



@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"bank": "yes"}', "\udcff".encode("utf-8", "surrogateescape")])
def test_an_unreadable_revocation_list_fails_closed(tmp_path, content):
    """A corrupt revoked.json must not read as "nobody is revoked": the party refuses to start."""
    path = tmp_path / REVOKED_FILE
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match="revocation list"):
        _access(tmp_path)


def test_a_reload_with_a_corrupt_list_is_refused_and_revocations_stay(tmp_path, monkeypatch):
    import fedcredit.party.peers as peers_mod

    monkeypatch.setattr(peers_mod, "load_party_config",
                        lambda path, check_files=False: SimpleNamespace(name="chain", peers=dict(PEERS)))
    access, t, _ = _access(tmp_path)
    access.revoke("chain", "bank", "audit finding")
    (tmp_path / REVOKED_FILE).write_text("{truncated")
    with pytest.raises(ConfigError, match="revocation list"):
        access.reload("chain")
    assert "bank" in access.revoked() and "bank" not in t.peers
    with pytest.raises(PolicyError, match="revoked"):
        access.require_peer("bank")
