"""Who may message this party: the config's ``[peers]`` minus the peers its operator revoked.

One :class:`PeerAccess` per party process decides the transport's peer list,
which every RPC of every service checks first (the authorization check of
:mod:`fedcredit.transport.grpc.authz`): so revoking a peer here refuses it on
job control, training messages, scoring and governance alike, from its next
message on, without a restart.

* :meth:`PeerAccess.revoke` (operator only) adds the peer to
  ``<state_dir>/revoked.json`` and removes it from the transport's peers;
* :meth:`PeerAccess.admit` (operator only) removes it from the list again, if
  the re-read config file still lists it;
* :meth:`PeerAccess.reload` (operator only) re-reads the config file and
  applies its ``[peers]`` (revoked ones stay out) and, through
  :attr:`PeerAccess.on_reload`, its policy to the services that hold one.

The revocation list is persisted before the transport is told (atomically and
durably: :func:`fedcredit._io.write_json_atomic`), so a revocation survives a
crash or a restart, and it is applied when the party is built, before its
server accepts a call. Each change is recorded in the audit log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from .._io import write_json_atomic
from ..config import load_party_config
from ..errors import ConfigError, PolicyError

__all__ = ["PeerAccess", "REVOKED_FILE"]

log = logging.getLogger("fedcredit.party")

#: The revocation list in the state directory: ``{peer: {"time": unix seconds, "reason": str}}``.
REVOKED_FILE = "revoked.json"


class PeerAccess:
    """Revoke, re-admit and reload the peers of one party (see the module docstring).

    Parameters
    ----------
    config : PartyConfig
        The party's configuration as started (its name, path, state directory and ``[peers]``).
    transport : GrpcTransport
        Its peer list is what this object sets.
    audit : AuditLog
        Every revocation, re-admission and reload is recorded there.
    """

    def __init__(self, config, transport, audit):
        self.config = config
        self.name = config.name
        self.transport = transport
        self.audit = audit
        self.path = Path(config.state_dir) / REVOKED_FILE
        #: called with a peer just revoked (e.g. the scoring service forgets secrets shared with it)
        self.on_revoke: list[Callable[[str], None]] = []
        #: called with the re-read config by :meth:`reload`, before it is audited (policies, job submission)
        self.on_reload: list[Callable] = []
        #: called with the re-read config by :meth:`reload` after it is audited; each returns a sentence for the
        #: operator, or "" (the party: TLS files)
        self.reload_hooks: list[Callable] = []
        self._revoked = self._load()
        self.apply()

    # ------------------------------------------------------------------ state
    def revoked(self) -> dict:
        """``{peer: {"time", "reason"}}`` of every revoked peer, as last read or written."""
        return dict(self._revoked)

    def _load(self) -> dict:
        """Read the revocation list; a missing file is an empty list.

        It fails closed: a file that cannot be read or is not ``{peer: {...}}`` is a ConfigError naming it,
        so the party refuses to start (or a reload is refused and the list in memory stays) instead of
        quietly letting every revoked peer back in.
        """
        if not self.path.exists():
            return {}
        try:
            revoked = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{self.path}: the revocation list cannot be read ({type(e).__name__}); fix or "
                              f"restore it (remove it only to re-admit every revoked peer)") from None
        if not isinstance(revoked, dict) or not all(isinstance(k, str) and isinstance(v, dict)
                                                      for k, v in revoked.items()):
            raise ConfigError(f"{self.path}: the revocation list must be a JSON object {{peer: {{time, reason}}}}; "
                              f"fix or restore it")
        return revoked

    def _save(self, revoked: dict) -> None:
        write_json_atomic(self.path, revoked, sort_keys=True)
        self._revoked = dict(revoked)

    def apply(self) -> None:
        """Remove every revoked peer from the transport's peer list."""
        revoked = self.revoked()
        peers = {p: a for p, a in self.transport.peers.items() if p not in revoked}
        if len(peers) != len(self.transport.peers):
            self.transport.set_peers(peers)

    def require_peer(self, caller: str) -> None:
        """PolicyError unless ``caller`` is a current peer; a revoked one is told when (and why) it was revoked."""
        if caller not in self.transport.peers:
            rec = self.revoked().get(caller)
            if rec is not None:
                when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(rec.get("time", 0)))
                raise PolicyError(f"party {caller!r} is not a peer of {self.name!r}: revoked by {self.name!r}'s "
                                  f"operator at {when}" + (f" (reason: {rec['reason']})" if rec.get("reason") else ""))
            raise PolicyError(f"party {caller!r} is not a peer of {self.name!r} (unknown or revoked)")

    def refusal_reason(self, caller: str) -> str | None:
        """Why ``caller`` is not a peer (revoked: when and why), for the authorization check's refusal."""
        try:
            self.require_peer(caller)
        except PolicyError as exc:
            return str(exc)
        return None

    def _require_self(self, caller: str, what: str) -> None:
        if caller != self.name:
            raise PolicyError(f"only {self.name!r}'s own operator may {what} (caller: {caller!r})")

    # ------------------------------------------------------------------ operator commands
    def revoke(self, caller: str, peer: str, reason: str = "") -> str:
        """Refuse ``peer`` from its next message, scoring request or job on (persisted across restarts)."""
        self._require_self(caller, "revoke peers")
        if peer not in self.transport.peers and peer not in self.config.peers:
            raise ConfigError(f"{peer!r} is not a peer of {self.name!r}")
        revoked = self.revoked()
        revoked[peer] = {"time": time.time(), "reason": reason}
        self._save(revoked)  # persisted (durably) before it takes effect: a restart cannot undo it
        self.apply()
        for hook in self.on_revoke:
            hook(peer)
        self.audit.append("peer.revoked", peer=peer, reason=reason, by=caller)
        log.warning("%s revoked peer %s: %s", self.name, peer, reason)
        return f"{peer} revoked on {self.name}; peers now: {', '.join(sorted(self.transport.peers)) or 'none'}"

    def admit(self, caller: str, peer: str, reason: str = "") -> str:
        """Re-admit a revoked ``peer`` at once (no restart): its next message is accepted again. Audited.

        The peer must still be in ``[peers]`` of the config file (re-read now);
        a peer removed from there is added back by editing the file and
        ``fedcredit party reload``.
        """
        self._require_self(caller, "re-admit peers")
        revoked = self.revoked()
        if peer not in revoked:
            raise ConfigError(f"{peer!r} is not revoked on {self.name!r} (revoked: {', '.join(sorted(revoked)) or 'none'})")
        cfg = load_party_config(self.config.path, check_files=False)
        if peer not in cfg.peers:
            raise ConfigError(f"{peer!r} is not in [peers] of {self.config.path}; add it there, then run "
                              f"'fedcredit party reload' (and admit it if it stays revoked)")
        del revoked[peer]
        self._save(revoked)
        peers = dict(self.transport.peers)
        peers[peer] = cfg.peers[peer]
        self.transport.set_peers(peers)
        self.audit.append("peer.admitted", peer=peer, reason=reason, by=caller)
        log.warning("%s re-admitted peer %s: %s", self.name, peer, reason)
        return f"{peer} re-admitted on {self.name}; peers now: {', '.join(sorted(self.transport.peers))}"

    def reload(self, caller: str) -> str:
        """Re-read the config file: apply its ``[peers]`` (minus revoked ones), then :attr:`on_reload` hooks."""
        self._require_self(caller, "reload the configuration")
        cfg = load_party_config(self.config.path, check_files=False)
        if cfg.name != self.name:
            raise ConfigError(f"{self.config.path}: [party].name changed to {cfg.name!r}; restart the party instead")
        before = set(self.transport.peers)
        self._revoked = self._load()  # an operator may have edited the list; an unreadable one refuses the reload
        revoked = self.revoked()
        self.transport.set_peers({p: a for p, a in cfg.peers.items() if p not in revoked})
        after = set(self.transport.peers)
        for hook in self.on_reload:
            hook(cfg)
        self.audit.append("config.reloaded", path=str(self.config.path), added=sorted(after - before),
                          removed=sorted(before - after))
        extra = [hook(cfg) for hook in self.reload_hooks]
        return (f"reloaded {self.config.path}: peers {', '.join(sorted(after)) or 'none'}"
                + (f"; removed {', '.join(sorted(before - after))}" if before - after else "")
                + "".join(f"; {e}" for e in extra if e))
