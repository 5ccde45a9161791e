"""Scoring, guest side: combine the hosts' answers with this party's own part.

The guest learns the final score of each row. For hetero LR it learns only the
masked sum of the hosts' partial scores. For SecureBoost it walks every tree
of every row itself (:class:`TreeWalk`): it decides its own splits locally and
asks a host only for the decision at the host split a row has reached, so it
learns exactly the host decisions on each row's path (what the leaf reached
reveals anyway) and none off the path; never a threshold or feature value.
"""

from __future__ import annotations

import numpy as np

from ...errors import ProtocolError
from ...models.logistic import sigmoid
from ...models.tree.predictor import CategorySides
from . import spec
from .host import lr_partial

__all__ = ["Forest", "TreeWalk", "lr_scores"]

_LEAF = -2
_GUEST = -1


class Forest:
    """The guest's SecureBoost part as flat node arrays (all trees concatenated).

    Parameters
    ----------
    guest_model : GuestModel

    Attributes
    ----------
    hosts : list of str
    roots : ndarray of int64, shape (n_trees,)
    owner : ndarray of int64
        Per node: -2 leaf, -1 a guest split, ``k`` a split of ``hosts[k]``.
    below : ndarray of bool, shape (len(hosts), n_nodes)
        Whether the subtree strictly below a node holds a split of host ``k``.
    """

    def __init__(self, guest_model):
        self.hosts = list(guest_model.hosts)
        self.base_score = float(guest_model.base_score)
        hidx = {h: k for k, h in enumerate(self.hosts)}
        owner, feature, threshold, missing_left, split_id, left, right, value, roots, cats = ([] for _ in range(10))
        for t, nodes in enumerate(guest_model.trees):
            off = len(owner)
            local = {n.id: off + i for i, n in enumerate(nodes)}
            roots.append(local[0] if 0 in local else off)
            for n in nodes:
                if n.is_leaf:
                    owner.append(_LEAF)
                elif n.local:
                    owner.append(_GUEST)
                elif n.party in hidx:
                    owner.append(hidx[n.party])
                else:
                    raise ProtocolError(f"tree {t}, node {n.id}: split of {n.party!r}, not a host of the model")
                feature.append(n.feature if n.local else 0)
                threshold.append(np.nan if n.threshold is None else n.threshold)
                cats.append((n.left_categories, n.right_categories or []) if n.left_categories is not None
                            else None)
                missing_left.append(bool(n.missing_left))
                split_id.append(n.split_id)
                left.append(local.get(n.left, -1))
                right.append(local.get(n.right, -1))
                value.append(n.value)
        self.owner = np.array(owner, dtype=np.int64)
        self.feature = np.array(feature, dtype=np.int64)
        self.threshold = np.array(threshold, dtype=np.float64)
        self.missing_left = np.array(missing_left, dtype=bool)
        self.sides = CategorySides(cats)  # the guest's own category-subset splits
        self.split_id = np.array(split_id, dtype=np.int64)
        self.left = np.array(left, dtype=np.int64)
        self.right = np.array(right, dtype=np.int64)
        self.value = np.array(value, dtype=np.float64)
        self.roots = np.array(roots, dtype=np.int64)
        internal = self.owner != _LEAF
        if np.any((self.left[internal] < 0) | (self.right[internal] < 0)):
            raise ProtocolError("a split node of the model has no children")
        # children have larger ids than their parent: fill "below" from the last node back
        self.below = np.zeros((len(self.hosts), len(self.owner)), dtype=bool)
        for i in range(len(self.owner) - 1, -1, -1):
            if internal[i]:
                for c in (self.left[i], self.right[i]):
                    self.below[:, i] |= self.below[:, c]
                    if self.owner[c] >= 0:
                        self.below[self.owner[c], i] = True
        self.max_depth = self._depth()
        # per host: its split ids (sorted) and each of its nodes' index among them, to group queries by split
        self.dense = np.zeros(len(self.owner), dtype=np.int64)
        self.host_splits = []
        for k in range(len(self.hosts)):
            mine = self.owner == k
            ids, inv = np.unique(self.split_id[mine], return_inverse=True)
            if len(ids) != int(mine.sum()):
                raise ProtocolError(f"the model references a split of {self.hosts[k]!r} from two nodes")
            self.dense[mine] = inv
            self.host_splits.append(ids)

    def _depth(self) -> int:
        depth = np.zeros(len(self.owner), dtype=np.int64)
        for i in range(len(self.owner)):
            if self.owner[i] != _LEAF:
                depth[self.left[i]] = depth[self.right[i]] = depth[i] + 1
        return int(depth.max()) if len(depth) else 0


class TreeWalk:
    """Every tree of every row, walked level by level; host decisions only on the path.

    Use::

        walk = TreeWalk(forest, X_guest)
        while True:
            queries = walk.queries()          # {host: TreeQueries} of this round (hosts with none omitted)
            if not queries: break
            for host, q in queries.items():   # one round trip per host, in parallel
                walk.apply(host, answer_from(host, q, final=walk.final_for(host)))
            walk.advance()
        scores = walk.scores()

    Parameters
    ----------
    forest : Forest
    X_guest : ndarray of shape (n, f_guest)
        The guest's features of the rows (NaN = missing).
    """

    def __init__(self, forest: Forest, X_guest):
        self.forest = forest
        self.X = np.asarray(X_guest, dtype=np.float64)
        self.n = self.X.shape[0]
        self.pos = np.repeat(forest.roots[:, None], self.n, axis=1)  # (n_trees, n) current node of each row
        self.rounds = 0
        self._pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._queries: dict[str, spec.TreeQueries] | None = None
        self.advance()

    def advance(self) -> None:
        """Take every guest split on the rows' paths until each (tree, row) is at a leaf or a host split."""
        f = self.forest
        if self._pending:
            raise ProtocolError(f"no answer yet from {', '.join(f.hosts[k] for k in self._pending)}")
        self._queries = None
        while True:
            nodes = self.pos
            mine = f.owner[nodes] == _GUEST
            if not mine.any():
                return
            t, r = np.nonzero(mine)
            at = nodes[t, r]
            go_left = f.sides.decide(at, self.X[r, f.feature[at]], f.threshold, f.missing_left)
            self.pos[t, r] = np.where(go_left, f.left[at], f.right[at])

    def queries(self) -> dict[str, spec.TreeQueries]:
        """This round's queries, per host that has any: each (tree, row) at one of its splits."""
        if self._queries is not None:
            return self._queries
        f = self.forest
        own = f.owner[self.pos]
        out = {}
        for k, h in enumerate(f.hosts):
            t, r = np.nonzero(own == k)
            if len(t) == 0:
                continue
            ids = f.host_splits[k]
            d = f.dense[self.pos[t, r]]
            if len(ids) <= 1 << 16:  # a stable sort of small integers is a radix sort
                d = d.astype(np.uint16)
            order = np.argsort(d, kind="stable")  # by split; rows ascending within a split (one tree each)
            t, r = t[order], r[order]
            counts = np.bincount(d, minlength=len(ids))
            used = counts > 0
            out[h] = spec.TreeQueries(ids[used], counts[used].astype(np.uint32), r.astype(np.uint32))
            self._pending[k] = (t, r)
        self._queries = out
        return out

    def final_for(self, host: str) -> bool:
        """True when no path can reach a split of ``host`` after this round (the host may drop its state)."""
        k = self.forest.hosts.index(host)
        return not self.forest.below[k][self.pos].any()

    def apply(self, host: str, packed: bytes) -> None:
        """Move the rows queried at ``host``'s splits this round by its answers (packed bits, 1 = left)."""
        k = self.forest.hosts.index(host)
        if k not in self._pending:
            raise ProtocolError(f"{host!r} answered, but was asked nothing this round")
        t, r = self._pending[k]
        go_left = spec.unpack_bits(packed, len(t), host)
        at = self.pos[t, r]
        self.pos[t, r] = np.where(go_left, self.forest.left[at], self.forest.right[at])
        del self._pending[k]
        if not self._pending:
            self.rounds += 1

    @property
    def done(self) -> bool:
        return bool(np.all(self.forest.owner[self.pos] == _LEAF))

    def scores(self, *, raw: bool = False) -> np.ndarray:
        """Probabilities (or log-odds) once every (tree, row) is at a leaf."""
        if not self.done:
            raise ProtocolError("the tree walk has not reached a leaf on every path")
        z = np.full(self.n, self.forest.base_score, dtype=np.float64)
        for t in range(self.pos.shape[0]):  # tree by tree, as the central predictor adds them (bit-identical)
            z += self.forest.value[self.pos[t]]
        return z if raw else sigmoid(z)


def lr_scores(part: dict, X_guest: np.ndarray, host_replies: list) -> np.ndarray:
    """Probability of default: own partial (with the intercept) plus the unmasked sum of the hosts'."""
    z = lr_partial(part, X_guest) + spec.decode_sum(host_replies) if host_replies else lr_partial(part, X_guest)
    return sigmoid(z)
