"""Key authentication of the homo clients: keys go peer to peer, and the roster is checked against them.

In ``secagg`` and ``ckks`` the clients agree pairwise keys from X25519 public
keys. The aggregator forwards the key roster, so if clients took the keys from
it, a malicious aggregator could put its own keys in place of theirs and read
every pairwise secret, every share and the CKKS secret key (a man in the
middle; the threshold would then protect nothing). So each client also sends
its public key *directly* to every other client (DIRECT / KEY_DIRECT, over the
existing mTLS links: the transport takes the sender's name from its
certificate, the tag carries the job and step) and uses a key from the roster
only when it equals the key its owner sent directly
(:func:`_authenticated_keys`); a mismatch aborts with a ``ProtocolError``
naming the aggregator, before anything is sealed under the key. Clients must
therefore be able to reach each other (:func:`_require_direct_links` checks it
at the start of the step).
"""

from __future__ import annotations

import hmac
from concurrent.futures import ThreadPoolExecutor

from ...errors import ConfigError, PeerError, ProtocolError
from ...transport.base import Channel
from .._spec import Session
from .spec import Stage

__all__ = ["_check_names", "_require_direct_links", "_send_direct", "_authenticated_keys"]


def _check_names(names, known: set[str], what: str) -> list[str]:
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ProtocolError(f"homo {what}: client list must be distinct names")
    unknown = set(names) - known
    if unknown:
        raise ProtocolError(f"homo {what}: unknown clients {sorted(unknown)}")
    return list(names)


def _require_direct_links(ch: Channel, me: str, clients, mode: str) -> None:
    """Refuse to start when this client has no link to another client (keys travel peer to peer)."""
    missing = sorted(c for c in clients if c != me and c not in ch.peers)
    if missing:
        raise ConfigError(
            f"homo {mode}: client {me!r} cannot reach client(s) {', '.join(map(repr, missing))} directly; in "
            f"{mode} the clients send each other their public keys over mTLS (so the aggregator cannot substitute "
            f"them): add them to the [peers] of {me!r}"
        )


def _send_direct(ch: Channel, me: str, peers, stage: Stage, public: bytes, session: Session) -> dict[str, PeerError]:
    """Send this client's public key straight to each of ``peers``; returns ``{peer: error}`` for those not reached.

    Waits until every send is delivered or failed, so a client that then
    advertises to the aggregator (and so enters the roster) has handed its key
    to every reachable client. A peer that cannot be reached is not an error
    here: it may be a client that is gone (and will not be in the roster).
    """
    peers = [v for v in peers if v != me]
    failed: dict[str, PeerError] = {}

    def one(v: str) -> None:
        try:
            session.send(ch, v, stage, {"public_key": public})
        except PeerError as exc:
            failed[v] = exc

    if peers:
        with ThreadPoolExecutor(max_workers=min(8, len(peers)), thread_name_prefix="homo-direct") as pool:
            list(pool.map(one, peers))
    return failed


def _authenticated_keys(ch: Channel, me: str, agg: str, stage: Stage, members: list[str], forwarded: list,
                        own: bytes, unreached: dict[str, PeerError], timeout: float, what: str,
                        session: Session) -> dict[str, bytes]:
    """The roster's public keys, each checked against the key its owner sent directly; ``{member: key}``.

    ``forwarded`` is what the aggregator sent (one key per member, in order);
    a member's key is accepted only if it equals the one that member sent
    this client over its own mTLS link. A difference means the aggregator
    substituted a key: abort with a ``ProtocolError`` naming it.

    Raises
    ------
    ProtocolError
        A forwarded key differs from its owner's (or this client's own key was altered).
    PeerError
        This client could not send its key to a member, or no key arrived
        directly from one within ``timeout`` (the clients cannot reach each other).
    """
    if len(forwarded) != len(members) or not all(isinstance(x, bytes) for x in forwarded):
        raise ProtocolError(f"homo {what}: one public key (bytes) per client expected")
    keys = dict(zip(members, forwarded))
    if not hmac.compare_digest(keys[me], own):
        raise ProtocolError(f"homo {what}: the aggregator {agg!r} forwarded an altered public key for this client "
                            f"({me!r}): key substitution, aborting")
    for v in members:
        if v == me:
            continue
        if v in unreached:
            raise PeerError(f"homo {what}: client {me!r} could not send its public key to client {v!r} directly "
                            f"({unreached[v]}); the clients must reach each other over mTLS", peer=v)
        try:
            direct = session.recv(ch, v, stage, timeout=timeout)
        except PeerError as exc:
            raise PeerError(f"homo {what}: no public key arrived directly from client {v!r} ({exc}); the clients "
                            f"must reach each other over mTLS", peer=v) from None
        if not hmac.compare_digest(direct["public_key"], keys[v]):
            raise ProtocolError(f"homo {what}: the aggregator {agg!r} forwarded a public key for {v!r} that is not "
                                f"the one {v!r} sent directly: key substitution, aborting")
    return keys
