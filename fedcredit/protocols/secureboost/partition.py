"""A host's own record of a secure tree's node partition: which histogram and split requests it answers.

Without it a malicious guest reads a host's binned features through the two
requests a host answers: a split request listing every row for several
(feature, bin) pairs returns the bin matrix of every host feature, and a
histogram of a one-row node is that row's bin in every feature. The host
therefore tracks the tree itself and answers only what an honest level-wise
grower (:class:`~fedcredit.models.tree.grower.TreeGrower` with
``min_node_rows``) asks for:

* **Histograms** (HIST_REQ of level ``d``) only of a *current node* of
  level ``d``, with exactly its rows: the root at level 0; after that, a child
  of a node split at level ``d - 1`` — exactly one of the two children when
  this host made the split, a proper subset of the parent when the guest (or
  another host) did, which is how the host learns that partition (the split is
  on features it cannot see). One child per split is built; the guest derives
  the sibling by subtraction, so the node and its sibling must both hold at
  least ``min_rows`` rows: no histogram the guest holds, built or derived,
  sums fewer rows.
* **Splits** (SPLIT_REQ of level ``d``) only of a node of level ``d`` whose
  histogram the guest holds (built or derived), with exactly its rows, once:
  the node then has two children and is no longer a leaf, so a second split,
  or a second (feature, bin) pair for the same rows, is refused.

Everything else raises :class:`~fedcredit.errors.ProtocolError` naming the
guest. The tracker works on row positions within the tree (``0 .. n - 1``
over ``START.rows``); a label per row says which current leaf holds it, so
each check costs the size of the request.

What this does not bound: the guest chooses the encrypted ``(g, h)``. A host
cannot read them, so a malicious guest can still encode row identities in the
values it encrypts and read bin membership from the sums of the nodes it is
allowed (see docs/secureboost.md, "Known leakage").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ProtocolError

__all__ = ["NodeTracker"]

_PENDING, _HIST = "pending", "hist"  # children of this host's split (not built yet) / histogram held by the guest


@dataclass
class _Leaf:
    size: int
    depth: int
    state: str
    sibling: int = -1


class NodeTracker:
    """The current leaves of one secure tree, as the host knows them.

    Parameters
    ----------
    n_rows : int
        Rows of the tree (after row subsampling): the root.
    min_rows : int
        Fewest rows a node, or its sibling, may hold for its histogram to be built.
    peer : str
        The guest (named in errors).
    """

    def __init__(self, n_rows: int, min_rows: int, peer: str):
        self.min_rows = int(min_rows)
        self.peer = peer
        self.label = np.zeros(int(n_rows), dtype=np.int64)  # current leaf of every row of the tree
        self.leaves: dict[int, _Leaf] = {0: _Leaf(int(n_rows), 0, _PENDING)}  # the root: built exactly
        self._next = 1

    def _error(self, what: str, msg: str) -> ProtocolError:
        return ProtocolError(f"secureboost {what} from {self.peer!r}: {msg}")

    def _leaf_of(self, what: str, rows: np.ndarray) -> int:
        if len(rows) == 0:
            raise self._error(what, "a node without rows")
        if len(rows) > 1 and np.any(np.diff(rows) <= 0):
            raise self._error(what, "a node's rows must be strictly increasing")
        lab = self.label[rows]
        x = int(lab[0])
        if np.any(lab != x):
            raise self._error(what, "rows are not one current node of the tree (they span several: "
                                    "a node that was split is no longer one)")
        return x

    def _new(self, leaf: _Leaf) -> int:
        k = self._next
        self._next += 1
        self.leaves[k] = leaf
        return k

    def check_histogram(self, depth: int, rows: np.ndarray) -> None:
        """Admit a histogram of ``rows`` (tree positions) at level ``depth``, and record what it implies.

        Raises
        ------
        ProtocolError
            ``rows`` are not a current node of this level (nor a child of a node split by another party at
            the previous level), the node was built already, or it or its sibling has fewer than ``min_rows`` rows.
        """
        what, m = "hist-req", self.min_rows
        x = self._leaf_of(what, rows)
        leaf = self.leaves[x]
        k = len(rows)
        if leaf.state == _PENDING and leaf.depth == depth:
            # the root, or a child of this host's own split: exactly that node
            if k != leaf.size:
                raise self._error(what, f"rows are part of a node of {leaf.size} rows, not a whole node")
            sib = self.leaves.get(leaf.sibling)
            if leaf.size < m or (sib is not None and sib.size < m):
                raise self._error(what, f"a node or its sibling has fewer than {m} rows")
            leaf.state = _HIST
            if sib is not None:
                sib.state = _HIST  # parent - node: the guest holds it too
        elif leaf.state == _HIST and leaf.depth == depth - 1:
            # a child of a node split at the previous level by the guest or another host: a proper subset
            if k < m or leaf.size - k < m:
                raise self._error(what, f"a node or its sibling has fewer than {m} rows")
            c = self._new(_Leaf(k, depth, _HIST, sibling=x))
            self.label[rows] = c
            leaf.size, leaf.depth, leaf.sibling = leaf.size - k, depth, c  # label x now means the sibling
        else:
            raise self._error(what, f"rows are not a node of level {depth} to build "
                                    "(built already, split, or not a current leaf)")

    def check_split(self, depth: int, rows: np.ndarray) -> int:
        """Admit a split of ``rows`` at level ``depth``; returns the node's label for :meth:`record_split`.

        Raises
        ------
        ProtocolError
            ``rows`` are not exactly a node of this level whose histogram the guest holds, or the node was split.
        """
        what = "split-req"
        x = self._leaf_of(what, rows)
        leaf = self.leaves[x]
        if not (leaf.state == _HIST and leaf.depth == depth):
            raise self._error(what, f"rows are not a node of level {depth} whose histogram the guest holds "
                                    "(split already, or not a current leaf)")
        if len(rows) != leaf.size:
            raise self._error(what, f"rows are part of a node of {leaf.size} rows, not a whole node")
        return x

    def record_split(self, x: int, rows: np.ndarray, left: np.ndarray) -> None:
        """Replace node ``x`` (``rows``, admitted by :meth:`check_split`) by its children, split by ``left``."""
        leaf = self.leaves.pop(x)
        a = self._new(_Leaf(int(left.sum()), leaf.depth + 1, _PENDING))
        b = self._new(_Leaf(int(len(rows) - left.sum()), leaf.depth + 1, _PENDING, sibling=a))
        self.leaves[a].sibling = b
        self.label[rows[left]] = a
        self.label[rows[~left]] = b
