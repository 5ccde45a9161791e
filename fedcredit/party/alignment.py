"""Alignment is never silent: rows a training step sees were aligned by PSI, or verified to be aligned.

A vertical step (binning, SecureBoost, hetero LR, evaluation) combines row
``i`` of every party's table. That is only meaningful when row ``i`` is the
same customer everywhere, so a job is accepted only when

* a PSI step (``mode = "intersection"``) comes before the first such step
  (every party then works on the PSI-agreed order), or
* every data party's table declares itself pre-aligned
  (``[tables.<t>] aligned_by = "<name>"``) and the parties verify it before
  the first step runs (:func:`verify_aligned`).

Verification (tag ``_align/...`` of the job channel; no step name starts
with ``_``): the guest draws a 32-byte key per job from :mod:`secrets` and
sends it to each host over the job's mTLS channel; every data party computes
``HMAC-SHA256(key, "fedcredit-align-v1" | name | n | id_1 | ... | id_n)``
over its ordered ids (length-prefixed); each host sends its digest to the
guest, which compares them and tells every host the verdict. A plain hash of
the ids would let anyone who sees it test guessed id lists offline; keyed
with a fresh job key, the digest says nothing outside the job, and inside
it only whether the lists are equal. What each role learns: the guest, for
each host, whether the host's ordered id list (and ``aligned_by`` name)
equals its own; a host, the same verdict for every data party. No id, count
or order is sent. The guest holds the key, so it could test a guess of a
host's *whole ordered* id list against that host's digest: the check
confirms exactly what the declaration claims (the lists are equal) and the
key is fresh per job, so a digest is worth nothing in any other job.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets

from ..config import JobSpec
from ..data import TableError
from ..protocols._spec import Message, Spec, sequence

__all__ = ["ALIGNED_KINDS", "unaligned_steps", "alignment_problem", "verify_aligned", "align_digest"]

#: Step kinds that combine the parties' rows by position.
ALIGNED_KINDS = frozenset({"binning", "secureboost", "hetero_lr", "evaluate"})
#: Roles that hold a vertical table.
_VERTICAL = ("guest", "host")
_DOMAIN = b"fedcredit-align-v1"


class Stage(enum.Enum):
    KEY = "key"
    DIGEST = "digest"
    VERDICT = "verdict"


#: The pre-step alignment check's messages (one spec mechanism: fedcredit/protocols/_spec.py).
SPEC = Spec("alignment", [
    Message(Stage.KEY, "guest", "host", "job", {"key": bytes, "version": int}),
    Message(Stage.DIGEST, "host", "guest", "job", {"digest": bytes}),
    Message(Stage.VERDICT, "guest", "host", "job", {"ok": bool, "mismatched": list}),
], flow=sequence(Stage.KEY, Stage.DIGEST, Stage.VERDICT))


def unaligned_steps(spec: JobSpec) -> list[str]:
    """Names of the steps that combine rows by position with no intersection-mode PSI step before them."""
    aligned = False
    out = []
    for s in spec.steps:
        if s.kind == "psi" and dict(s.params).get("mode", "intersection") == "intersection":
            aligned = True
        elif s.kind in ALIGNED_KINDS and not aligned:
            out.append(s.name)
    return out


def alignment_problem(spec: JobSpec, party: str, table_name: str | None, aligned_by: str | None) -> str | None:
    """Why ``party`` refuses ``spec`` for lack of alignment (its own side only), or None."""
    me = spec.parties.get(party)
    if me is None or me.role not in _VERTICAL or table_name is None:
        return None
    steps = unaligned_steps(spec)
    if not steps or aligned_by:
        return None
    return (f"step {steps[0]!r} combines rows by position but no psi step comes before it, and table "
            f"{table_name!r} of {party!r} declares no aligned_by: add a psi step first, or set "
            f"[tables.{table_name}] aligned_by on every party whose rows are already aligned")


def align_digest(key: bytes, name: str, ids) -> bytes:
    """``HMAC-SHA256(key, domain | name | n | len-prefixed ids in order)``."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    h.update(_DOMAIN + b"\0" + name.encode() + b"\0" + len(ids).to_bytes(8, "big"))
    for i in ids:
        b = str(i).encode("utf-8")
        h.update(len(b).to_bytes(4, "big") + b)
    return h.digest()


def verify_aligned(channel, spec: JobSpec, party: str, table, name: str) -> None:
    """Check, before the first step, that every vertical party holds the same ordered ids.

    Parameters
    ----------
    channel : Channel
        The job channel's ``_align`` view.
    spec : JobSpec
    party : str
        This party.
    table : fedcredit.data.Table
        This party's table, in file order.
    name : str
        This party's ``aligned_by``.

    Raises
    ------
    TableError
        The lists differ (naming the parties, never an id).
    ProtocolError
        A malformed message.
    """
    roles = {p: jp.role for p, jp in spec.parties.items()}
    guest = next((p for p, r in roles.items() if r == "guest"), None)
    hosts = sorted(p for p, r in roles.items() if r == "host")
    if guest is None or not hosts:
        return
    s = SPEC.session({p: r for p, r in roles.items() if r in _VERTICAL}, party)
    if party == guest:
        key = secrets.token_bytes(32)
        s.broadcast(channel, hosts, Stage.KEY, {"key": key, "version": 1})
        mine = align_digest(key, name, table.ids)
        bad = []
        for h in hosts:
            msg = s.recv(channel, h, Stage.DIGEST)
            if not hmac.compare_digest(msg["digest"], mine):
                bad.append(h)
        s.broadcast(channel, hosts, Stage.VERDICT, {"ok": not bad, "mismatched": bad})
    else:
        msg = s.recv(channel, guest, Stage.KEY)
        if len(msg["key"]) != 32:
            from ..errors import ProtocolError

            raise ProtocolError("alignment: the job key must be 32 bytes")
        s.send(channel, guest, Stage.DIGEST, {"digest": align_digest(msg["key"], name, table.ids)})
        verdict = s.recv(channel, guest, Stage.VERDICT)
        if verdict["ok"]:
            return
        # only names of this job's hosts reach the error text (it crosses to the initiator)
        bad = [p for p in verdict["mismatched"] if isinstance(p, str) and p in hosts] or ["(unnamed)"]
    if bad:
        who = ", ".join(map(repr, bad))
        text = (f"tables declared aligned (aligned_by) are not: the ordered ids of {who} differ from the guest "
                f"{guest!r}'s (or their aligned_by names differ); add a psi step to the job")
        raise TableError(text, text)
