"""Governance of a party's models and log: audit-head exchange, peer access, export approvals and export.

Audit heads are exchanged with every peer every
``[policy.scoring].head_exchange_seconds``; each side stores the head the
other reported for itself (:class:`~fedcredit.serving.heads.PeerHeads`).
Revoking, re-admitting and reloading peers is the party's decision (it
decides who may message the whole party, not only scoring):
:class:`~fedcredit.party.peers.PeerAccess`, which the governance calls
delegate to. A host releases its plaintext model part only to the model's
guest and only after its own operator approved (``export_approvals.json``,
written atomically).

A mixin of :class:`~fedcredit.serving.service.ScoringService`.
"""

from __future__ import annotations

import hashlib
import json
import logging

from .._io import write_json_atomic
from ..errors import ConfigError, FedcreditError, PolicyError, ProtocolError
from ..protocols.scoring import spec
from ..protocols.scoring.parts import load_lr_part
from ..protocols.scoring.spec import Kind
from ..transport.scoring import GovernanceClient
from .authz import RateLimiter
from .export import merge_lr, merge_secureboost

__all__ = ["Governance"]

log = logging.getLogger("fedcredit.serving")


class Governance:
    """Audit heads, peer access (delegated to the party's ``peers``), export approvals and export."""

    def exchange_heads_now(self) -> dict[str, str]:
        """Send our head to every peer and store theirs; returns ``{peer: "ok" | error}``."""
        seq, h = self.audit.head()
        out = {}
        for peer in sorted(self.transport.peers):
            try:
                pseq, ph = GovernanceClient(self.transport.grpc_channel(peer), peer, timeout=min(5.0, self.timeout)) \
                    .exchange_heads(seq, h, self.name)
                self.heads.record(peer, pseq, ph)
                out[peer] = "ok"
            except FedcreditError as exc:
                out[peer] = str(exc)
                log.info("audit head exchange with %s failed: %s", peer, exc)
        return out

    def exchange_heads(self, caller: str, seq: int, hash_: str) -> tuple[int, str]:
        self._require_peer(caller)
        self.heads.record(caller, seq, hash_)
        return self.audit.head()

    def held_heads(self, caller: str) -> list[tuple[int, str]]:
        self._require_peer(caller)
        return self.heads.held_for(caller)

    # -- peers: the party's decision (fedcredit.party.peers.PeerAccess) -------------
    def revoke(self, caller: str, peer: str, reason: str = "") -> str:
        """Refuse ``peer`` from its next message, scoring request or job on (:meth:`PeerAccess.revoke`)."""
        return self.peers.revoke(caller, peer, reason)

    def admit(self, caller: str, peer: str, reason: str = "") -> str:
        """Re-admit a revoked ``peer`` at once, if the config file still lists it (:meth:`PeerAccess.admit`)."""
        return self.peers.admit(caller, peer, reason)

    def reload(self, caller: str) -> str:
        """Re-read the config file: its ``[peers]`` (minus revoked ones) and policies (:meth:`PeerAccess.reload`)."""
        return self.peers.reload(caller)

    def _forget_peer(self, peer: str) -> None:
        """A revoked peer's mask secrets are dropped (a re-admitted one fetches them again)."""
        with self._lock:
            self._pair_secrets = {k: v for k, v in self._pair_secrets.items() if k[1] != peer}

    def _apply_config(self, cfg) -> None:
        """A reloaded config's ``[policy.scoring]``, proposers and reason texts take effect."""
        self.policy = cfg.policy.scoring
        self.proposers = tuple(cfg.policy.proposers)
        self.reason_texts = dict(cfg.policy.reasons)
        self.limiter = RateLimiter(self.policy.max_requests_per_minute, self.policy.max_ids_per_minute)

    # -- export ---------------------------------------------------------------------
    def _approvals(self) -> dict:
        try:
            return json.loads(self._approvals_path.read_text()) if self._approvals_path.exists() else {}
        except (OSError, ValueError):
            return {}

    def approve_export(self, caller: str, model_id: str, requester: str, note: str = "") -> str:
        """Record this party's operator's approval to release its part of ``model_id`` to ``requester``."""
        self._require_self(caller, "approve a model export")
        part = self.registry.get(spec.check_model_id(model_id)).part
        if requester not in (part.guest, self.name):
            raise ConfigError(f"{requester!r} is not the guest of model {model_id!r} ({part.guest!r})")
        approvals = self._approvals()
        approvals.setdefault(model_id, [])
        if requester not in approvals[model_id]:
            approvals[model_id].append(requester)
        write_json_atomic(self._approvals_path, approvals, sort_keys=True)
        rec = self.audit.append("export.approved", model=model_id, requester=requester, note=note[:500], by=caller)
        return f"export of {self.name}'s part of {model_id} to {requester} approved (audit #{rec['seq']})"

    def _approved(self, model_id: str, requester: str) -> bool:
        return requester in self._approvals().get(model_id, [])

    def export_part(self, caller: str, model_id: str) -> str:
        """This host's plaintext part, to the model's guest, only after this party's approval."""
        self._require_peer(caller)
        part = self.registry.get(spec.check_model_id(model_id)).part
        if part.role != "host" or part.guest != caller:
            raise PolicyError(f"{caller!r} is not the guest of model {model_id!r} on {self.name!r}")
        if not self._approved(model_id, caller):
            exc = PolicyError(f"{self.name!r} has not approved exporting its part of {model_id!r} to {caller!r} "
                              f"(its operator runs: fedcredit model approve-export)")
            if self.refusals.take(caller) is not None:  # refusals of a peer are logged at a bounded rate
                self.audit.append("export.refused", model=model_id, requester=caller, reason="no approval")
            raise exc
        text = part.path.read_text(encoding="utf-8")
        self.audit.append("export.released", model=model_id, requester=caller,
                          part_sha256=hashlib.sha256(text.encode()).hexdigest())
        return text

    def export(self, caller: str, model_id: str, note: str = "") -> str:
        """The merged plaintext model (guest only), after every host's recorded approval; records ours."""
        self._require_self(caller, "export models")
        part = self.registry.get(spec.check_model_id(model_id)).part
        if part.role != "guest":
            raise PolicyError(f"{self.name!r} is not the guest of model {model_id!r}")
        if not self._approved(model_id, self.name):
            self.approve_export(caller, model_id, self.name, note or "export requested by the guest's operator")
        parts = {}
        for h in part.hosts:
            text = GovernanceClient(self.transport.grpc_channel(h), h, timeout=self.timeout).export_part(model_id)
            try:
                parts[h] = json.loads(text)
            except ValueError:
                raise ProtocolError(f"{h!r} sent a model part that is not JSON") from None
        if part.kind == Kind.SECUREBOOST:
            merged = merge_secureboost(part.model, parts)
        else:
            merged = merge_lr(load_lr_part(part.path), parts)
        merged["model_id"] = model_id
        scale = self._scale(model_id)
        if scale:  # the job's scorecard step: the scale a PMML Scorecard export uses
            merged["scale"] = scale
        out = json.dumps(merged, sort_keys=True)
        self.audit.append("export.done", model=model_id, hosts=list(part.hosts),
                          model_sha256=hashlib.sha256(out.encode()).hexdigest())
        return out
