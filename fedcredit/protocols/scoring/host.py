"""Scoring, host side: this party's contribution for the rows of one request.

A host never sees a score: it receives id digests and returns

* SecureBoost: answers to path queries only. The guest asks, round by round,
  "does row ``r`` go left at your split ``s``?" for exactly the splits of this
  host that the rows' paths reach (:class:`TreeSession`; a row not in its
  table takes the split's missing-value branch). What a host learns: the
  requested digests, and for each queried row which of its own split nodes
  the row's path reaches (so also that the path missed its other splits of
  that tree), in which round (the number of host splits above on the path).
  It learns no guest split, no leaf, no score, nothing of another host
  beyond what reaching its node implies. This is the leakage of FATE's
  SecureBoost prediction.
* hetero LR: its partial score ``X_h w_h`` on the fixed-point grid plus the
  pairwise masks it shares with the other hosts of the request (a row not in
  its table contributes 0 after standardization, or the WOE of the missing bin).
  The masks are keyed by the request as this host received it
  (:func:`~.spec.request_transcript`), so they cancel only against hosts that
  received the same ids in the same order.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import numpy as np

from ...crypto.secagg import derive_key, expand_mask
from ...errors import ProtocolError
from ...models.logistic import Standardizer, quantize
from ...models.onehot import OneHotDesign
from ...models.tree.predictor import CategorySides
from . import spec

__all__ = ["SplitTable", "TreeSession", "SessionTable", "lr_partial", "lr_contribution", "lr_masked_reference",
           "pair_mask"]


#: Largest (rows x trees) bitmap used to check "one query per (row, tree) per round"; beyond it, a sort.
_BITMAP_MAX = 1 << 24


class SplitTable:
    """A host's SecureBoost split table as flat arrays, for answering path queries.

    Parameters
    ----------
    host_model : HostModel
    feature_index : dict of str to int
        Column of this host's feature rows of each feature name the splits use.
    """

    def __init__(self, host_model, feature_index: dict):
        items = sorted(host_model.splits.items())
        self.split_ids = np.array([k for k, _ in items], dtype=np.int64)
        self.tree = np.array([s.tree for _, s in items], dtype=np.int64)
        self.column = np.array([feature_index[s.feature_name or host_model.feature_names[s.feature]]
                                for _, s in items], dtype=np.int64)
        self.threshold = np.array([np.nan if s.threshold is None else s.threshold for _, s in items],
                                  dtype=np.float64)
        self.missing_left = np.array([s.missing_left for _, s in items], dtype=bool)
        # category-subset splits: membership is evaluated here, the categories never leave this host
        self.sides = CategorySides([(s.left_categories, s.right_categories or []) if s.left_categories is not None
                                    else None for _, s in items])
        self.n_trees = int(self.tree.max()) + 1 if len(items) else 0

    def positions(self, split_ids: np.ndarray, peer: str) -> np.ndarray:
        """Index of each split id in the table (ProtocolError naming the first id this host does not own)."""
        pos = np.searchsorted(self.split_ids, split_ids)
        pos = np.minimum(pos, max(len(self.split_ids) - 1, 0))
        bad = ~(self.split_ids[pos] == split_ids) if len(self.split_ids) else np.ones(len(split_ids), bool)
        if bad.any():
            raise ProtocolError(f"path queries from {peer!r} name split {int(split_ids[bad][0])}, which is not a "
                                f"split of this host in this model")
        return pos


class TreeSession:
    """One open SecureBoost scoring request on a host: its rows, and what has been asked so far.

    Every round of queries is checked before any is answered: known split ids
    (this host's own, each once), row positions in range, at most one query
    per (row, tree) in a round, at most :data:`~.spec.MAX_ROUNDS` rounds. A
    host does not know the tree structure, so it cannot check that a queried
    split is on the row's path; these checks bound what a guest that deviates
    from the protocol can ask to one split per (row, tree) per round, and
    ``MAX_ROUNDS`` (the deepest tree) per (row, tree) in all.

    Parameters
    ----------
    table : SplitTable
    X : ndarray of shape (n, f)
        This host's features of the request's rows (NaN = missing or not a customer here).
    requester, model_id : str
    """

    def __init__(self, table: SplitTable, X: np.ndarray, *, requester: str, model_id: str):
        self.table, self.X = table, X
        self.n = X.shape[0]
        self.requester, self.model_id = requester, model_id
        self.rounds = 0
        self.n_answered = 0
        self._lock = threading.Lock()

    def answer(self, q: spec.TreeQueries) -> bytes:
        """Packed decisions (1 = left), one per query in order; ProtocolError (nothing answered) on a bad query."""
        q.check_shape(self.requester)
        if len(q) == 0:
            return b""
        t = self.table
        pos = t.positions(q.split_ids, self.requester)
        if len(pos) > 1 and not np.all(np.diff(np.sort(pos))):
            raise ProtocolError(f"path queries from {self.requester!r} repeat a split id within one round")
        rows = q.rows.astype(np.int64)
        if rows.max() >= self.n:
            raise ProtocolError(f"path queries from {self.requester!r} name row {int(rows.max())}; the request has "
                                f"{self.n} rows")
        sp = np.repeat(pos, q.counts.astype(np.int64))
        keys = rows * t.n_trees + t.tree[sp]  # (row, tree) pairs asked in this round
        if self.n * t.n_trees <= _BITMAP_MAX:
            seen = np.zeros(self.n * t.n_trees, dtype=bool)
            seen[keys] = True
            repeated = np.count_nonzero(seen) != len(keys)
        else:
            keys = np.sort(keys)
            repeated = bool(np.any(keys[1:] == keys[:-1]))
        if repeated:
            raise ProtocolError(f"path queries from {self.requester!r} ask a row at two splits of one tree in one "
                                f"round (a path reaches one node per tree and level)")
        with self._lock:
            if self.rounds >= spec.MAX_ROUNDS:
                raise ProtocolError(f"{self.requester!r} asked more than {spec.MAX_ROUNDS} rounds of path queries")
            self.rounds += 1
            self.n_answered += len(rows)
        left = t.sides.decide(sp, self.X[rows, t.column[sp]], t.threshold, t.missing_left)
        return np.packbits(left).tobytes()


class SessionTable:
    """Open SecureBoost requests of a host, bounded in number, rows and age.

    A request that is never finished (the guest crashed, or never sends
    ``final``) is dropped ``ttl`` seconds after its last message; beyond
    ``max_sessions`` open requests or ``max_rows`` rows in all, the least
    recently used are dropped. A query for a dropped request is refused as
    unknown.

    Parameters
    ----------
    ttl : float, default=spec.SESSION_TTL
    max_sessions : int, default=spec.MAX_SESSIONS
    max_rows : int, default=spec.MAX_SESSION_ROWS
    clock : callable, default=time.monotonic
    """

    def __init__(self, *, ttl: float = spec.SESSION_TTL, max_sessions: int = spec.MAX_SESSIONS,
                 max_rows: int = spec.MAX_SESSION_ROWS, clock=time.monotonic):
        self.ttl, self.max_sessions, self.max_rows, self.clock = ttl, max_sessions, max_rows, clock
        self._lock = threading.Lock()
        self._open: OrderedDict = OrderedDict()  # (requester, request id) -> [session, last used]
        self._rows = 0

    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._open)

    def __contains__(self, key) -> bool:
        with self._lock:
            self._expire(self.clock())
            return key in self._open

    @property
    def rows(self) -> int:
        """Rows held by the open requests."""
        return self._rows

    def _drop(self, key) -> None:
        s, _ = self._open.pop(key)
        self._rows -= s.n

    def _expire(self, now: float) -> None:
        while self._open:
            key, (_, last) = next(iter(self._open.items()))
            if now - last <= self.ttl:
                break
            self._drop(key)

    def open(self, key, session: TreeSession) -> None:
        """Keep ``session`` under ``key`` (evicting expired, then least recently used requests)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            if key in self._open:
                raise ProtocolError(f"request {key[1]!r} is already open")
            while self._open and (len(self._open) >= self.max_sessions or self._rows + session.n > self.max_rows):
                self._drop(next(iter(self._open)))
            self._open[key] = [session, now]
            self._rows += session.n

    def get(self, key) -> TreeSession:
        """The open request ``key`` (ProtocolError if unknown, finished or expired); marks it used."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            entry = self._open.get(key)
            if entry is None:
                raise ProtocolError(f"unknown, finished or expired scoring request {str(key[1])[:40]!r} of "
                                    f"{key[0]!r}")
            entry[1] = now
            self._open.move_to_end(key)
            return entry[0]

    def close(self, key) -> None:
        with self._lock:
            if key in self._open:
                self._drop(key)


def lr_design(part: dict, X: np.ndarray) -> np.ndarray:
    """This party's design matrix for rows ``X`` (columns = ``part["features"]``; NaN = absent)."""
    if part["preprocess"] == "onehot":  # absent or unseen category: all zeros; absent number: the mean
        return OneHotDesign.from_dict(part["features"], part["onehot"]).transform(X, missing_numeric="mean")
    if part["preprocess"] == "woe":
        if not part["features"]:
            return np.zeros((X.shape[0], 0))
        return np.stack([part["bins"][f].transform(X[:, j], unseen="missing")
                         for j, f in enumerate(part["features"])], axis=1)
    st = Standardizer.from_dict(part["standardizer"])
    with np.errstate(invalid="ignore"):
        Z = st.transform(X)
    return np.nan_to_num(Z, nan=0.0)  # absent: the training mean, i.e. zero contribution


def lr_partial(part: dict, X: np.ndarray) -> np.ndarray:
    """``quantize(design) @ coef + intercept``: exactly :func:`fedcredit.protocols.hetero_lr.partial_score`."""
    Z = quantize(lr_design(part, X))
    return Z @ np.asarray(part["coef"], dtype=np.float64) + float(part.get("intercept", 0.0))


def pair_mask(secret: bytes, transcript: bytes, n: int) -> np.ndarray:
    """The mask two hosts share for one request: ChaCha20 keystream under HKDF(secret, request transcript).

    ``transcript`` is :func:`~.spec.request_transcript` of the request as this
    host received it. Keying by it (not by model and request id alone) is what
    stops a guest from sending two hosts different rows under one request id:
    the masks then no longer cancel, and the guest's sum is noise instead of
    one host's partial score for rows of its choice (issue 23, item 2).
    """
    if len(transcript) != 32:
        raise ProtocolError("a request transcript is a 32-byte SHA-256")
    return expand_mask(derive_key(secret, "score-mask-v2", transcript.hex()), n)


def lr_masked_reference(part: dict, n: int, *, me: str, transcript: bytes, pair_secrets: dict[str, bytes]) -> np.ndarray:
    """This host's reason reference (sum of its features' best-bin log-odds), masked: one uint64.

    The mask is element ``n`` of the same pairwise keystream whose first ``n``
    elements mask the partial scores (an element no partial uses), so the
    references cancel only in the guest's sum over all hosts, like the partials.
    """
    from ...models.explain import lr_reference

    u = spec.encode_partial(np.array([float(lr_reference(part).sum())]))
    for peer, secret in pair_secrets.items():
        if peer == me:
            raise ProtocolError("a host cannot share a mask with itself")
        m = pair_mask(secret, transcript, n + 1)[n:]
        u = u + m if me < peer else u - m
    return u


def lr_contribution(part: dict, X: np.ndarray, *, me: str, transcript: bytes,
                    pair_secrets: dict[str, bytes]) -> np.ndarray:
    """Masked partial scores (uint64): ``encode(partial) + sum_{peer > me} m - sum_{peer < me} m``.

    ``pair_secrets`` maps every *other* host of the request to the secret this
    host shares with it; ``transcript`` is the request's
    :func:`~.spec.request_transcript`. With no other host the reply is the bare
    partial score (the guest can compute it anyway as score minus its own part).
    """
    u = spec.encode_partial(lr_partial(part, X))
    for peer, secret in pair_secrets.items():
        if peer == me:
            raise ProtocolError("a host cannot share a mask with itself")
        m = pair_mask(secret, transcript, len(u))
        u = u + m if me < peer else u - m
    return u
