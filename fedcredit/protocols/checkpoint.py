"""Per-round checkpoints a training step keeps through its step context (issue #21).

A step that trains in rounds (hetero LR epochs, homo rounds) gets
``ctx.checkpoint``: a :class:`Checkpoint` over the step's ``ctx.artifacts``
(files in the step's private directory on a party process). The step never
builds paths or opens files itself; it calls :meth:`Checkpoint.save` after
each finished round and :meth:`Checkpoint.resume` once before the first one::

    start = ctx.checkpoint.resume()          # None on a new job
    ...
    ctx.checkpoint.save(epoch + 1, {"w": w, "history": history, ...})

Which round a resumed step continues from is agreed by every party of the
step *before* the step runs (:func:`agree`, called by the party's job runner
on a resumed job): each sends the rounds it holds, all take the latest round
held by everyone. Parties of a round-synchronous protocol are at most one
round apart when one of them dies (a round ends with a message every party
waits for), so each party keeps its last two rounds (:data:`KEEP`).

A checkpoint holds this party's own state only (plaintext weights, counters,
its validation history): no key, no peer's value. Checkpoints are JSON kept
by the artifacts store (on files: written atomically, temporary file, fsync,
rename); floats round-trip exactly (``repr``), numpy arrays are stored as
``{"__ndarray__": [...], "dtype": ...}``.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import ProtocolError

__all__ = ["Checkpoint", "agree", "KEEP"]

#: Rounds kept per party (the latest and the one before: parties are at most one round apart).
KEEP = 2


def _encode(o):
    if isinstance(o, np.ndarray):
        return {"__ndarray__": o.tolist(), "dtype": o.dtype.str, "shape": list(o.shape)}
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot checkpoint a {type(o).__name__}")


def _decode(d: dict):
    if "__ndarray__" in d:
        return np.asarray(d["__ndarray__"], dtype=np.dtype(d["dtype"])).reshape(d["shape"])
    return d


class Checkpoint:
    """This party's per-round checkpoints of one step.

    Parameters
    ----------
    store : Artifacts
        The step's artifacts (:mod:`fedcredit.artifacts`): the party process
        passes the step context's ``artifacts`` (files in the step's private
        directory); the checkpoint encodes and decodes, the store keeps the text.
    resume_round : int or None
        The round every party agreed to continue from (:func:`agree`); None:
        start from round 0 (a new job, or no common round).
    """

    def __init__(self, store, resume_round: int | None = None):
        self.store = store
        self.resume_round = resume_round
        self.saved = 0

    def rounds(self) -> list[int]:
        """Rounds with a checkpoint on this party, ascending."""
        return self.store.checkpoint_rounds()

    def save(self, round_: int, state: dict) -> None:
        """Keep ``state`` as the state after ``round_`` finished rounds; drop all but the last :data:`KEEP`."""
        text = json.dumps({"round": int(round_), "state": state}, default=_encode, allow_nan=True)
        self.store.save_checkpoint(int(round_), text)  # atomic (temporary file + fsync + rename) on files
        self.saved += 1
        for r in self.rounds()[:-KEEP]:
            self.store.drop_checkpoint(r)

    def load(self, round_: int) -> dict:
        d = json.loads(self.store.load_checkpoint(round_), object_hook=_decode)
        if d.get("round") != round_:
            raise ProtocolError(f"checkpoint of round {round_} is damaged")
        return d["state"]

    def resume(self) -> tuple[int, dict] | None:
        """``(round, state)`` to continue from, or None to start at round 0."""
        if self.resume_round is None:
            return None
        return self.resume_round, self.load(self.resume_round)

    def clear(self) -> None:
        """Remove every checkpoint (the step's job succeeded: nothing is left to resume)."""
        for r in self.rounds():
            self.store.drop_checkpoint(r)


def agree(channel, me: str, parties, rounds: list[int]) -> int | None:
    """The latest round every party of a step holds a checkpoint of (None if there is none).

    Every party sends its rounds to every other party and receives theirs on
    ``channel`` (tag ``rounds``). A peer's list is checked (at most
    :data:`KEEP` non-negative ints): a malformed one is a ProtocolError.
    """
    others = sorted(p for p in parties if p != me)
    mine = [int(r) for r in rounds][-KEEP:]
    channel.broadcast(others, "rounds", {"rounds": mine})
    common = set(mine)
    for p in others:
        msg = channel.recv(p, "rounds")
        got = msg.get("rounds") if isinstance(msg, dict) else None
        if (not isinstance(got, list) or len(got) > KEEP
                or any(type(r) is not int or r < 0 or r > 2**31 for r in got)):
            raise ProtocolError(f"malformed checkpoint rounds from {p!r}")
        common &= set(got)
    return max(common) if common else None

