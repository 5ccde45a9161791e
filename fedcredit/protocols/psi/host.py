"""PSI, host side (a feature holder): blinds its ids in a secret order, re-blinds the guest's.

What the host sends: its own ``H(b)^beta`` in a shuffled order only it knows
(the permutation stays here), and the guest's points raised to ``beta``. What
it receives: the guest's set size, the guest's blinded points ``H(a)^alpha``
(pseudorandom without ``alpha``: no guest id can be recovered or tested from
them), the intersection size, and the positions in its own shuffled list of
the intersection members, which it maps back to its rows. See
:mod:`fedcredit.protocols.psi.guest` for the whole flow.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np

from ...crypto.psi import get_group, normalize_ids, secure_permutation
from ...errors import ProtocolError
from ...transport.base import Channel
from . import spec
from .spec import Stage
from ._common import PSIResult, check_min, n_chunks, no_progress, refuse

__all__ = ["run_host"]

_MAX_CHUNK = 1 << 20


def run_host(
    channel: Channel,
    ids: Sequence,
    *,
    guest: str,
    hosts: Sequence[str] | None = None,
    mode: str = "intersection",
    group: str = "curve25519",
    min_intersection: int | None = None,
    source: str = "<host ids>",
    progress=no_progress,
) -> PSIResult:
    """Run a host's side of PSI with ``guest``.

    Parameters
    ----------
    channel : Channel
        Namespaced to this PSI run.
    ids : sequence of str
        This host's ids in row order (normalized here: strip + casefold).
    guest : str
        The guest party.
    hosts : sequence of str, optional
        All hosts of the run (this one included); needed in cardinality mode
        with several hosts, which share a shuffle seed. Default: just this one.
    mode, group : str
        Must equal what the guest announces (the job file gives both sides
        the same values); a mismatch is a :class:`ProtocolError`.
    min_intersection : int or None
        This party's policy floor; ``None`` means no check.
    source : str
        Names the party and file in data errors.
    progress : callable(message, fraction)

    Returns
    -------
    PSIResult
        ``index`` holds this host's rows of the intersection in the agreed
        order (``None`` in cardinality mode).
    """
    me = channel.party
    hosts = sorted(hosts or [me])
    grp = get_group(group)
    norm = normalize_ids(ids, source=source)
    m = len(norm)

    s = spec.session(me, guest, hosts)
    hello = s.recv(channel, guest, Stage.GUEST_HELLO)
    if hello["version"] != spec.VERSION:
        raise ProtocolError(f"PSI: guest {guest!r} speaks version {hello['version']}, this party {spec.VERSION}")
    if hello["group"] != group or hello["mode"] != mode:
        raise ProtocolError(
            f"PSI: guest {guest!r} asks for group {hello['group']!r} / mode {hello['mode']!r}; "
            f"this party's job says {group!r} / {mode!r}"
        )
    n, chunk, salt = hello["n"], hello["chunk"], hello["salt"]
    if n < 0 or not 1 <= chunk <= _MAX_CHUNK or not 16 <= len(salt) <= 64:
        raise ProtocolError(f"PSI: guest {guest!r} sent an invalid hello (n={n}, chunk={chunk}, salt of {len(salt)} bytes)")
    reason = (check_min("its own set size", m, min_intersection, me)
              or check_min(f"the set size of {guest!r}", n, min_intersection, me))
    s.send(channel, guest, Stage.HOST_HELLO, {"n": m, "accept": not reason, "reason": reason})
    if reason:
        raise refuse(reason)

    seed = None
    if mode == "cardinality" and len(hosts) > 1:
        # every host shuffles the guest's points the same way, so the guest can
        # count N-way matches position by position without knowing which are its own
        if me == hosts[0]:
            seed = secrets.token_bytes(32)
            s.broadcast(channel, hosts[1:], Stage.SHUFFLE_SEED, {"seed": seed})
        else:
            msg = s.recv(channel, hosts[0], Stage.SHUFFLE_SEED)
            seed = msg["seed"]
            if len(seed) != 32:
                raise ProtocolError(f"PSI: shuffle seed from {hosts[0]!r} is {len(seed)} bytes, expected 32")

    key = grp.new_key()
    try:
        # 1) own points, in a secret order
        perm = secure_permutation(m)
        km = n_chunks(m, chunk)
        for c in range(km):
            rows = perm[c * chunk : (c + 1) * chunk]
            s.send(channel, guest, Stage.H2G, grp.blind(key, [norm[r] for r in rows], salt), i=c)
            progress(f"PSI: blinded {min(m, (c + 1) * chunk)}/{m} own ids", 0.45 * (c + 1) / max(km, 1))

        # 2) the guest's points raised to beta
        kn = n_chunks(n, chunk)
        back = bytearray() if mode == "cardinality" else None
        for c in range(kn):
            cnt = min(chunk, n - c * chunk)
            pts = spec.check_points(Stage.G2H, s.recv(channel, guest, Stage.G2H, i=c), peer=guest, count=cnt)
            out = grp.exp(key, pts)
            if back is None:
                s.send(channel, guest, Stage.BACK, out, i=c)
            else:
                back += out
            progress(f"PSI: blinded {min(n, (c + 1) * chunk)}/{n} points of {guest}", 0.45 + 0.45 * (c + 1) / max(kn, 1))
        if back is not None:
            shuffle = secure_permutation(n, seed)
            arr = np.frombuffer(bytes(back), dtype=np.uint8).reshape(n, -1)[shuffle]
            del back
            for c in range(kn):
                s.send(channel, guest, Stage.BACK, arr[c * chunk : (c + 1) * chunk].tobytes(), i=c)
            del arr
    finally:
        key.destroy()

    # 3) policy on the size
    sz = s.recv(channel, guest, Stage.SIZE)
    if not sz["accept"]:
        raise refuse(f"party {guest!r} refuses: {sz['reason']}")
    size = sz["size"]
    if not 0 <= size <= min(n, m):
        raise ProtocolError(f"PSI: guest {guest!r} announced an intersection of {size} rows (sets of {n} and {m})")
    reason = check_min("the intersection size", size, min_intersection, me)
    s.send(channel, guest, Stage.VERDICT, {"accept": not reason, "reason": reason})
    if reason:
        raise refuse(reason)

    # 4) which of our rows are members, in the agreed order
    msg = s.recv(channel, guest, Stage.MEMBERS)
    if msg["status"] != "ok":
        raise refuse(msg["reason"] or f"party {guest!r} ended the run")
    if mode == "cardinality":
        progress(f"PSI: intersection of {size} rows", 1.0)
        return PSIResult(size=size, index=None, mode=mode)
    positions = msg["positions"]
    if positions.dtype.kind not in "iu" or positions.ndim != 1 or len(positions) != size:
        raise ProtocolError(f"PSI: guest {guest!r} sent {positions.shape} positions of {positions.dtype} for {size} members")
    positions = positions.astype(np.int64)
    if size and (positions.min() < 0 or positions.max() >= m or len(np.unique(positions)) != size):
        raise ProtocolError(f"PSI: guest {guest!r} sent positions out of range or repeated")
    index = perm[positions]
    if any(norm[a] >= norm[b] for a, b in zip(index[:-1].tolist(), index[1:].tolist())):
        raise ProtocolError(f"PSI: guest {guest!r} sent members out of the agreed (ascending id) order")
    progress(f"PSI: intersection of {size} rows", 1.0)
    return PSIResult(size=size, index=index, mode=mode)
