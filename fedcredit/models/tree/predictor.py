"""Inference: route rows through stored trees.

Training-time :class:`~fedcredit.models.tree.grower.Node` objects are stored
as plain dicts; prediction needs, per internal node, a boolean "goes left"
vector over the rows being scored. For a split the predicting party owns, that
is ``x[:, feature] <= threshold`` (missing values follow ``missing_left``);
for a host's split in the federated model it comes from that host
(:func:`fedcredit.protocols.secureboost.predict_guest`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .grower import Node

__all__ = ["local_decision", "split_decision", "CategorySides", "leaf_positions", "predict_tree", "predict_raw"]


def local_decision(X: np.ndarray, node: Node) -> np.ndarray:
    """``True`` where a row of ``X`` goes left at ``node`` (a split whose predicate this party holds)."""
    col = np.asarray(X, dtype=np.float64)[:, node.feature]
    return split_decision(col, node.threshold, node.missing_left, node.left_categories, node.right_categories)


def split_decision(col: np.ndarray, threshold, missing_left: bool, left_categories=None,
                   right_categories=None) -> np.ndarray:
    """Left mask of one split on the values ``col`` of its feature.

    Numeric: ``x <= threshold``. Categorical (``left_categories`` given): the
    code is in ``left_categories`` (left) or ``right_categories`` (right).
    NaN, and a category in neither list (never seen in the training rows),
    follow ``missing_left``: the documented rule for unseen categories.
    """
    col = np.asarray(col, dtype=np.float64)
    missing = np.isnan(col)
    if left_categories is not None:
        is_left = np.isin(col, np.asarray(left_categories, dtype=np.float64))
        known = is_left | np.isin(col, np.asarray(right_categories or [], dtype=np.float64))
        return np.where(missing | ~known, missing_left, is_left)
    with np.errstate(invalid="ignore"):
        return np.where(missing, missing_left, col <= threshold)


class CategorySides:
    """Category-subset predicates of many splits as one lookup table, for vectorized scoring.

    Parameters
    ----------
    partitions : list of (left_categories, right_categories) or None
        Per split, its category codes on each side (None: a numeric split).
    """

    def __init__(self, partitions):
        self.index = np.full(len(partitions), -1, dtype=np.int64)
        cats = [p for p in partitions if p is not None]
        width = 1 + max((int(max(list(lft) + list(rgt), default=-1)) for lft, rgt in cats), default=-1)
        self.side = np.full((len(cats), max(width, 1)), -1, dtype=np.int8)  # -1 unknown, 1 left, 0 right
        k = 0
        for i, p in enumerate(partitions):
            if p is None:
                continue
            self.index[i] = k
            self.side[k, np.asarray(p[0], dtype=np.int64)] = 1
            self.side[k, np.asarray(p[1], dtype=np.int64)] = 0
            k += 1

    def decide(self, at: np.ndarray, x: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray) -> np.ndarray:
        """Left decisions of splits ``at`` (positions in ``partitions``) on values ``x``, one per query.

        Numeric splits compare with ``threshold[at]``; categorical ones look the
        code up, and NaN or a code unseen in training follows ``missing_left[at]``.
        """
        at = np.asarray(at, dtype=np.int64)
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            left = np.where(np.isnan(x), missing_left[at], x <= threshold[at])
        ci = self.index[at] if len(at) else np.zeros(0, dtype=np.int64)
        cat = ci >= 0
        if cat.any():
            xc = x[cat]
            ok = ~np.isnan(xc) & (xc >= 0) & (xc < self.side.shape[1]) & (xc == np.floor(xc))
            side = np.full(len(xc), -1, dtype=np.int8)
            side[ok] = self.side[ci[cat][ok], xc[ok].astype(np.int64)]
            left[cat] = np.where(side < 0, missing_left[at][cat], side == 1)
        return left


def leaf_positions(nodes: Sequence[Node], n_rows: int, decide: Callable[[Node], np.ndarray]) -> np.ndarray:
    """Leaf id of every row; ``decide(node)`` returns the left mask over all rows."""
    pos = np.zeros(n_rows, dtype=np.int64)
    for node in nodes:  # children always have larger ids than their parent
        if node.is_leaf:
            continue
        here = pos == node.id
        if not here.any():
            continue
        left = np.asarray(decide(node), dtype=bool)
        pos[here & left] = node.left
        pos[here & ~left] = node.right
    return pos


def predict_tree(nodes: Sequence[Node], n_rows: int, decide: Callable[[Node], np.ndarray]) -> np.ndarray:
    """Leaf values of one tree for ``n_rows`` rows."""
    values = np.array([n.value for n in nodes], dtype=np.float64)
    return values[leaf_positions(nodes, n_rows, decide)]


def predict_raw(trees: Sequence[Sequence[Node]], base_score: float, X: np.ndarray) -> np.ndarray:
    """Raw scores (log-odds) of trees whose every split has a threshold, on ``X``."""
    X = np.asarray(X, dtype=np.float64)
    raw = np.full(X.shape[0], base_score, dtype=np.float64)
    for nodes in trees:
        raw += predict_tree(nodes, X.shape[0], lambda node: local_decision(X, node))
    return raw
