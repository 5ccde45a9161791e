"""PSI, guest side (the label holder): blinds its ids, matches, fixes the agreed order.

Pairwise with each host ``h`` (host key ``beta_h``, guest key ``alpha``):

1. ``guest-hello`` / ``host-hello``: set sizes, group, mode, a fresh salt for
   the hash; each side checks its policy against the sizes first.
2. The guest streams ``H(a)^alpha`` in its row order; the host streams its own
   ``H(b)^beta`` in a secret shuffled order, then returns the guest's points
   raised to ``beta`` (same order in intersection mode; shuffled with a seed
   shared by the hosts in cardinality mode).
3. The guest raises the host's points to ``alpha`` and matches them against
   ``H(a)^(alpha beta)``; the members common to all hosts form the result.
4. ``size`` / ``verdict``: every party checks the size against its policy.
5. ``members``: each host gets the positions (in the shuffled list it sent) of
   the members, in the agreed order: ascending normalized id. Sorting by id
   reveals nothing beyond the member ids themselves, which every party
   already holds, and carries no trace of any party's row order.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np

from ...crypto.psi import get_group, match_points, normalize_ids
from ...errors import ProtocolError
from ...transport.base import Channel
from . import spec
from .spec import Stage
from ._common import DEFAULT_CHUNK, PSIResult, check_min, n_chunks, no_progress, refuse

__all__ = ["run_guest"]


def run_guest(
    channel: Channel,
    ids: Sequence,
    *,
    hosts: Sequence[str],
    mode: str = "intersection",
    group: str = "curve25519",
    chunk_size: int = DEFAULT_CHUNK,
    min_intersection: int | None = None,
    source: str = "<guest ids>",
    progress=no_progress,
) -> PSIResult:
    """Run the guest's side of PSI with ``hosts``.

    Parameters
    ----------
    channel : Channel
        Namespaced to this PSI run.
    ids : sequence of str
        The guest's ids in row order (normalized here: strip + casefold).
    hosts : sequence of str
        Host party names.
    mode : {"intersection", "cardinality"}, default="intersection"
        ``"cardinality"``: every party learns only the size.
    group : {"curve25519", "ristretto255"}, default="curve25519"
    chunk_size : int, default=32768
        Points per message.
    min_intersection : int or None
        This party's policy floor; ``None`` means no check.
    source : str
        Names the party and file in data errors.
    progress : callable(message, fraction)

    Returns
    -------
    PSIResult

    Raises
    ------
    DataError
        Duplicate or empty ids after normalization.
    PolicyError
        A party's ``min_intersection`` is not met (the reason names the party).
    ProtocolError
        A host sent a malformed message.
    """
    hosts = sorted(hosts)
    grp = get_group(group)
    norm = normalize_ids(ids, source=source)
    n = len(norm)
    me = channel.party
    reason = check_min("the guest's own set size", n, min_intersection, me)
    if reason:
        raise refuse(reason)

    key = grp.new_key()
    try:
        salt = secrets.token_bytes(16)
        hello = {"version": spec.VERSION, "group": group, "mode": mode, "n": n, "chunk": chunk_size, "salt": salt}
        s = spec.session(me, me, hosts)
        s.broadcast(channel, hosts, Stage.GUEST_HELLO, hello)
        host_n: dict[str, int] = {}
        for h in hosts:
            msg = s.recv(channel, h, Stage.HOST_HELLO)
            if not msg["accept"]:
                raise refuse(f"party {h!r} refuses: {msg['reason']}")
            if msg["n"] < 0:
                raise ProtocolError(f"PSI: host {h!r} announced a negative set size")
            host_n[h] = msg["n"]
            reason = check_min(f"the set size of {h!r}", msg["n"], min_intersection, me)
            if reason:
                raise refuse(reason)

        # 1) stream H(a)^alpha to every host
        k = n_chunks(n, chunk_size)
        for c in range(k):
            pts = grp.blind(key, norm[c * chunk_size : (c + 1) * chunk_size], salt)
            s.broadcast(channel, hosts, Stage.G2H, pts, i=c)
            progress(f"PSI: blinded {min(n, (c + 1) * chunk_size)}/{n} own ids", 0.4 * (c + 1) / max(k, 1))

        # 2) per host: raise its points to alpha, collect our doubly blinded points, match
        matched: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        masks: dict[str, np.ndarray] = {}
        for hi, h in enumerate(hosts):
            m = host_n[h]
            theirs = bytearray()
            for c in range(n_chunks(m, chunk_size)):
                cnt = min(chunk_size, m - c * chunk_size)
                raw = spec.check_points(Stage.H2G, s.recv(channel, h, Stage.H2G, i=c), peer=h, count=cnt)
                theirs += grp.exp(key, raw)
                progress(f"PSI: blinded {min(m, (c + 1) * chunk_size)}/{m} points of {h}",
                         0.4 + 0.5 * (hi + (c + 1) / n_chunks(m, chunk_size)) / len(hosts))
            mine = bytearray()
            for c in range(k):
                cnt = min(chunk_size, n - c * chunk_size)
                mine += spec.check_points(Stage.BACK, s.recv(channel, h, Stage.BACK, i=c), peer=h, count=cnt)
            i, j = match_points(bytes(mine), bytes(theirs))
            del mine, theirs
            if mode == "cardinality":
                mask = np.zeros(n, dtype=bool)
                mask[i] = True
                masks[h] = mask
            else:
                matched[h] = (i, j)

        # 3) the N-way intersection
        if mode == "cardinality":
            sizes = {h: int(masks[h].sum()) for h in hosts}
            common = np.logical_and.reduce([masks[h] for h in hosts]) if hosts else np.zeros(n, bool)
            size = int(common.sum())
            order = None
        else:
            sizes = {h: int(len(matched[h][0])) for h in hosts}
            members = np.arange(n, dtype=np.int64)
            for h in hosts:
                members = np.intersect1d(members, matched[h][0], assume_unique=True)
            size = int(len(members))
            # agreed order: ascending normalized id (bytewise)
            order = np.array(sorted(members.tolist(), key=norm.__getitem__), dtype=np.int64)

        # 4) policy on the size, every party
        reason = check_min("the intersection size", size, min_intersection, me)
        s.broadcast(channel, hosts, Stage.SIZE, {"size": size, "accept": not reason, "reason": reason})
        if reason:
            raise refuse(reason)
        refusals = []
        for h in hosts:
            v = s.recv(channel, h, Stage.VERDICT)
            if not v["accept"]:
                refusals.append(f"party {h!r} refuses: {v['reason']}")
        status, why = ("refused", "; ".join(refusals)) if refusals else ("ok", "")

        # 5) each host learns only which of its own points are members, in the agreed order
        for h in hosts:
            if status == "ok" and order is not None:
                pos = np.full(n, -1, dtype=np.int64)
                i, j = matched[h]
                pos[i] = j
                positions = pos[order]
            else:
                positions = np.empty(0, dtype=np.int64)
            s.send(channel, h, Stage.MEMBERS, {"status": status, "reason": why, "positions": positions})
        if refusals:
            raise refuse(why)
        progress(f"PSI: intersection of {size} rows", 1.0)
        return PSIResult(size=size, index=order, mode=mode, sizes=sizes)
    finally:
        key.destroy()

