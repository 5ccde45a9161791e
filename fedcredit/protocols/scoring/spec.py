"""Messages, constants and checks of federated scoring.

Flow of one request (model ``<job_id>/<step>``, guest = the label holder)::

    operator --ScoreRequest--> guest            ids, authorization, optional guest features
    guest --ContributeRequest--> each host      id digests, request id, authorization, hosts;
                                                secureboost: first round of path queries
    host --ContributeReply--> guest             hetero_lr: masked partial; secureboost: answers
    guest --DecideRequest--> host               secureboost: next round of path queries, only to
    host --DecideReply--> guest                   hosts with pending queries (<= max_depth rounds in all)
    guest --ScoreReply--> operator              probabilities
    host --PairSecretRequest--> host            hetero_lr with >= 2 hosts, once per model

Hetero LR is one round trip per host. SecureBoost is path-only: the guest
walks every tree of every row level by level, decides its own splits locally
and asks a host only "does row ``r`` go left at your split ``s``?" for the
split each row has reached (:class:`TreeQueries`). A round asks every pending
(row, tree) of every host at once, hosts in parallel, so a request takes at
most ``max_depth`` round trips (fewer when a level has no host split on any
path). The guest learns the host decisions on each row's path and nothing off
it; a host learns which of its own split nodes each queried row reaches.

Reason codes (``ScoreRequest.reasons`` = K) add no message: the guest's
Contribute says ``reasons``, and each host's reply adds the reason texts its
``[policy.reasons]`` publishes (SecureBoost: keyed by its feature index) and,
for hetero LR, its reference masked like its partial scores (element ``n``
of the same keystream) and, only if its policy sets ``reveal_reasons``, its
per-feature contributions (``fedcredit.models.explain``, docs/scoring.md).

Ids travel as BLAKE2b-128 digests keyed by the model id (:func:`id_digests`):
a host maps the digests of its own customers back to rows; a digest of a
non-customer tells it nothing it could not get by guessing the id.

Hetero LR partial scores are fixed point on the ``2**-SCORE_FRAC_BITS`` grid
in ``Z/2**64``; a host adds the pairwise masks it shares with every other host
of the request (``+`` towards a host with a larger name, ``-`` towards a
smaller one), so the masks cancel in the guest's sum and each single reply is
uniformly random to the guest (with two or more hosts). The masks are keyed
by the whole request as the host received it (:func:`request_transcript`:
model, request id, host set, ordered digests), so they cancel only when every
host received the same request: a guest that sends hosts different ids (or
orders) under one request id gets noise, not one host's partial score.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ...errors import ProtocolError
from ...ids import is_name
from .._spec import Message, Spec

__all__ = [
    "Kind",
    "Stage",
    "SPEC",
    "SITES",
    "SCORE_FRAC_BITS",
    "DIGEST_BYTES",
    "REQUEST_MAX_AGE",
    "id_digests",
    "new_request_id",
    "check_request_id",
    "check_model_id",
    "request_transcript",
    "encode_partial",
    "decode_sum",
    "TreeQueries",
    "unpack_bits",
    "MAX_ROUNDS",
    "SESSION_TTL",
    "MAX_SESSIONS",
    "MAX_SESSION_ROWS",
]

#: Partial scores are sent as round(z * 2**SCORE_FRAC_BITS) mod 2**64 (|z| < 2**23 is exact).
SCORE_FRAC_BITS = 40
#: Bytes of one id digest on the wire.
DIGEST_BYTES = 16
#: Seconds a request id stays acceptable (hosts remember ids this long and refuse replays).
REQUEST_MAX_AGE = 300.0

#: Most query rounds a host answers for one SecureBoost request (the deepest tree SecureBoost trains).
MAX_ROUNDS = 16
#: Seconds a host keeps an open SecureBoost request (its rows) after the last message about it.
SESSION_TTL = 30.0
#: Open SecureBoost requests a host keeps at once; beyond that the oldest is dropped.
MAX_SESSIONS = 256
#: Rows of all open SecureBoost requests a host keeps at once; beyond that the oldest are dropped.
MAX_SESSION_ROWS = 2_000_000

_REQ_RE = re.compile(r"^([0-9a-f]{1,16})-([0-9a-f]{16})$")


class Kind(str, Enum):
    """Model kinds the scoring service serves (the training step kind)."""

    SECUREBOOST = "secureboost"
    HETERO_LR = "hetero_lr"


class Stage(str, Enum):
    """Messages of federated scoring (each the request or reply of one gRPC call)."""

    SCORE = "score"
    SCORES = "scores"
    CONTRIBUTE = "contribute"
    CONTRIBUTION = "contribution"
    DECIDE = "decide"
    DECISIONS = "decisions"
    PAIR_SECRET = "pair_secret"
    PAIR_SECRET_REPLY = "pair_secret_reply"


def _rpc(stage: Stage, proto: str, sender: str, receiver: str) -> Message:
    # a unary gRPC call, not a channel message: no tag (the method names it); the payload is a typed proto
    return Message(stage, sender, receiver, None, ("proto", proto))


#: Every message of the protocol (``operator`` = the guest party's own CLI/API). They travel as the requests
#: and replies of the ``Scoring`` service, whose typed protos the transport parses
#: (:mod:`fedcredit.transport.scoring`, a layer below the protocols: it cannot call the spec; :data:`SITES`).
SPEC = Spec("scoring", [
    _rpc(Stage.SCORE, "ScoreRequest", "operator", "guest"),
    _rpc(Stage.SCORES, "ScoreReply", "guest", "operator"),
    _rpc(Stage.CONTRIBUTE, "ContributeRequest", "guest", "host"),
    _rpc(Stage.CONTRIBUTION, "ContributeReply", "host", "guest"),
    _rpc(Stage.DECIDE, "DecideRequest", "guest", "host"),
    _rpc(Stage.DECISIONS, "DecideReply", "host", "guest"),
    _rpc(Stage.PAIR_SECRET, "PairSecretRequest", "host", "host"),
    _rpc(Stage.PAIR_SECRET_REPLY, "PairSecretReply", "host", "host"),
])

#: Where the scoring messages are sent and received (the completeness test checks each proto is used there).
SITES = ("fedcredit/transport/scoring.py",)


@dataclass(frozen=True)
class TreeQueries:
    """One round of SecureBoost path queries to one host, grouped by split.

    Split ``split_ids[g]`` is asked for ``counts[g]`` rows; their positions in
    the request follow each other in ``rows``. The answer is one bit per query
    in this order (1 = left).

    Attributes
    ----------
    split_ids : ndarray of int64, shape (n_groups,)
    counts : ndarray of uint32, shape (n_groups,)
    rows : ndarray of uint32, shape (sum(counts),)
    """

    split_ids: np.ndarray
    counts: np.ndarray
    rows: np.ndarray

    @classmethod
    def empty(cls) -> "TreeQueries":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.uint32), np.zeros(0, np.uint32))

    def __len__(self) -> int:
        return len(self.rows)

    def check_shape(self, peer: str = "peer") -> "TreeQueries":
        """ProtocolError unless the groups are consistent: one count per split, counts >= 1 summing to len(rows)."""
        if len(self.split_ids) != len(self.counts):
            raise ProtocolError(f"path queries from {peer!r}: {len(self.split_ids)} split ids but "
                                f"{len(self.counts)} counts")
        if np.any(self.counts == 0) or int(self.counts.sum(dtype=np.int64)) != len(self.rows):
            raise ProtocolError(f"path queries from {peer!r}: counts must be >= 1 and sum to the "
                                f"{len(self.rows)} row positions")
        return self


def unpack_bits(packed: bytes, count: int, peer: str) -> np.ndarray:
    """``count`` booleans from ``np.packbits`` bytes (ProtocolError on a wrong length)."""
    if len(packed) != (count + 7) // 8:
        raise ProtocolError(f"{peer!r} sent {len(packed)} bytes of decisions for {count} queries")
    return np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=count).astype(bool)


def check_model_id(model_id) -> str:
    """``<job_id>/<step>``; raises ProtocolError otherwise (no path tricks: no ``..``, no extra ``/``)."""
    parts = model_id.split("/") if isinstance(model_id, str) else ()
    if len(parts) != 2 or not all(is_name(p) for p in parts):  # the identifier grammar of fedcredit.ids
        raise ProtocolError(f"invalid model id {str(model_id)[:140]!r}: expected '<job_id>/<step>'")
    return model_id


def id_digests(ids, model_id: str) -> bytes:
    """``DIGEST_BYTES`` per id: BLAKE2b of the id keyed by the model id, concatenated in order."""
    key = model_id.encode("utf-8")[:64]
    out = bytearray()
    for i in ids:
        out += hashlib.blake2b(str(i).strip().encode("utf-8"), digest_size=DIGEST_BYTES, key=key).digest()
    return bytes(out)


def split_digests(blob: bytes) -> list[bytes]:
    """The digests of a ``ContributeRequest`` (ProtocolError on a ragged blob)."""
    if not isinstance(blob, bytes) or len(blob) % DIGEST_BYTES:
        raise ProtocolError(f"id digests must be a multiple of {DIGEST_BYTES} bytes")
    return [blob[k:k + DIGEST_BYTES] for k in range(0, len(blob), DIGEST_BYTES)]


def request_transcript(model_id: str, request_id: str, hosts, digests_blob: bytes) -> bytes:
    """SHA-256 of one request as a host sees it: model, request id, sorted host set, ordered id digests.

    The LR masks are derived from it (:func:`~.host.pair_mask`). Two hosts get
    cancelling masks only if they computed the same transcript, i.e. received
    the same rows in the same order for the same model, request and hosts;
    any difference (another id, order, host set or model) gives each an
    independent mask, and the guest's sum is uniformly random. Fields are
    length-prefixed, so no two different requests encode alike.
    """
    h = hashlib.sha256(b"fedcredit-score-request-v1")
    for field in (model_id.encode("utf-8"), request_id.encode("utf-8"),
                  "\n".join(sorted(set(hosts))).encode("utf-8"), digests_blob):
        h.update(len(field).to_bytes(8, "big"))
        h.update(field)
    return h.digest()


def new_request_id(now: float | None = None) -> str:
    """A fresh request id: milliseconds since the epoch (hex) and 64 random bits."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:x}-{secrets.token_hex(8)}"


def check_request_id(request_id, now: float | None = None, max_age: float = REQUEST_MAX_AGE) -> str:
    """Refuse malformed, stale (older than ``max_age``) or future-dated (> 60 s) request ids."""
    m = _REQ_RE.fullmatch(request_id) if isinstance(request_id, str) else None
    if m is None:
        raise ProtocolError(f"invalid request id {str(request_id)[:80]!r}")
    now = time.time() if now is None else now
    age = now - int(m.group(1), 16) / 1000.0
    if age > max_age or age < -60.0:
        raise ProtocolError(f"request id {request_id!r} is {age:.0f}s old: outside the accepted window "
                            f"(clock skew or replay)")
    return request_id


def encode_partial(z) -> np.ndarray:
    """Partial scores → uint64 ring elements (fixed point, two's complement)."""
    z = np.asarray(z, dtype=np.float64)
    if not np.all(np.isfinite(z)) or np.any(np.abs(z) >= 2.0 ** (63 - SCORE_FRAC_BITS)):
        raise ProtocolError("partial scores out of the fixed-point range")
    return np.round(z * float(1 << SCORE_FRAC_BITS)).astype(np.int64).view(np.uint64)


def decode_sum(parts) -> np.ndarray:
    """Sum of ring elements (mod 2**64) → float scores."""
    total = None
    for p in parts:
        p = np.asarray(p, dtype=np.uint64)
        total = p.copy() if total is None else total + p
    if total is None:
        return np.zeros(0)
    return total.view(np.int64).astype(np.float64) / float(1 << SCORE_FRAC_BITS)
