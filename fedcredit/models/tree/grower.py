"""Grow one regression tree level by level from histograms of feature sources.

The grower owns the rows, the gradient statistics and the split decisions; the
*features* live in one or more :class:`FeatureSource` objects. The plaintext
reference uses a single :class:`LocalSource` over all features; the federated
label holder uses a ``LocalSource`` for its own features and one remote source
per host (``fedcredit.protocols.secureboost.guest``) that turns histogram and
split requests into messages. Because both run this same grower, the federated
tree equals the reference tree whenever the sources return the same integer
histograms and partitions.

Per level the grower asks every source for the histograms of the nodes to
split, building only the smaller child of each split and deriving its sibling
by subtraction from the parent (:func:`~fedcredit.models.tree.histogram.subtract`),
then picks the best split over all sources (ties go to the earlier source),
and asks the winning source to partition the node's rows.

Monotone constraints (scikit-learn's ``monotonic_cst``, ``grower.py``): a
source may carry ``monotone``, one of ``+1``/``-1``/``0`` per feature. When
any source has a constraint, every node carries bounds for its children's
values, ``(-inf, inf)`` at the root. A node's value is its Newton step clipped
to its parent's bounds; a split on an unconstrained feature passes the
parent's bounds to both children, a split on a constrained one splits them at
the mid-point ``m`` of the two children's values (``+1``: left ``[lo, m]``,
right ``[m, hi]``; ``-1`` the other way round), so every leaf below the left
child stays on its side of every leaf below the right child, and each tree is
monotone in the feature. Values are shrunk by the learning rate only after
clipping, as in scikit-learn. The label holder needs only the sign per host
feature, never its name or values: the check runs on the (decrypted) sums.

Categorical features: a source may carry ``categorical``, one flag per
feature. Such a feature is split by a set of its bins
(:func:`~fedcredit.models.tree.split.find_best_split`); the node records the
left bins (``left_bins``) and, where the owner is the party holding the model,
the category codes going left and right (``left_categories``,
``right_categories``). A categorical feature may carry no monotone constraint.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ...errors import DataError, ProtocolError
from .binning import BinMapper
from .histogram import as_grid, build_histogram, subtract
from .split import SplitInfo, SplitParams, find_best_split, leaf_value

__all__ = ["Node", "FeatureSource", "LocalSource", "TreeGrower", "grow_tree", "check_monotone",
           "check_categorical_monotone"]


def check_monotone(monotone, n_features: int, owner: str = "") -> np.ndarray:
    """``monotone`` as an int8 array of ``n_features`` values in {-1, 0, 1}.

    Raises
    ------
    DataError
        Wrong length or a value other than -1, 0 and 1.
    """
    arr = np.asarray(monotone)
    if arr.shape != (n_features,) or arr.dtype.kind not in "iub" or not np.isin(arr, (-1, 0, 1)).all():
        who = f" of {owner!r}" if owner else ""
        raise DataError(f"monotone constraints{who} must be {n_features} values in -1, 0, 1")
    return arr.astype(np.int8)


def check_categorical_monotone(categorical, monotone, owner: str = "") -> None:
    """A categorical feature has no order, so no monotone constraint (DataError naming the feature index)."""
    if categorical is None or monotone is None:
        return
    bad = np.flatnonzero(np.asarray(categorical, dtype=bool) & (np.asarray(monotone) != 0))
    if bad.size:
        who = f" of {owner!r}" if owner else ""
        raise DataError(f"feature {int(bad[0])}{who} is categorical and cannot carry a monotone constraint")


@dataclass
class Node:
    """One node of a grown tree (training and storage form).

    ``party`` is the name of the source owning the split (None for a leaf);
    ``feature`` is that party's local feature index, ``bin`` the split bin
    (``x <= threshold(bin)`` goes left). ``threshold`` is filled only when the
    owner is the party holding the model; a host split carries ``split_id``,
    the key of the host's own lookup table.

    A categorical split has ``bin == -1`` and ``left_bins``, the bins sent
    left; its owner fills ``left_categories`` and ``right_categories`` (the
    category codes of the training rows on each side) instead of
    ``threshold``. Missing values and categories in neither list follow
    ``missing_left``.
    """

    id: int
    depth: int
    n_rows: int
    g: float
    h: float
    value: float
    is_leaf: bool = True
    party: str | None = None
    feature: int = -1
    bin: int = -1
    missing_left: bool = False
    threshold: float | None = None
    split_id: int = -1
    gain: float = 0.0
    left: int = -1
    right: int = -1
    left_bins: list | None = None
    left_categories: list | None = None
    right_categories: list | None = None

    @property
    def local(self) -> bool:
        """Whether the party holding this node knows its predicate (own split, not a host's)."""
        return not self.is_leaf and (self.threshold is not None or self.left_categories is not None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Node":
        return cls(**d)


class FeatureSource:
    """Features of one party as the grower sees them.

    Attributes
    ----------
    name : str
        The party (``party`` of the nodes it splits).
    n_features : int
    n_bins_non_missing : ndarray of shape (n_features,)
    monotone : ndarray of int8 of shape (n_features,) or None
        Monotone constraint per feature (``+1``, ``-1`` or 0); None: none.
    categorical : ndarray of bool of shape (n_features,) or None
        Categorical features (category-subset splits); None: none.
    """

    name: str
    n_features: int
    n_bins_non_missing: np.ndarray
    monotone: np.ndarray | None = None
    categorical: np.ndarray | None = None

    def request_histograms(self, depth: int, builds: list[tuple[int, np.ndarray]], feature_mask) -> None:
        """Start building the histograms of ``builds`` = [(node id, rows)]."""
        raise NotImplementedError

    def collect_histograms(self) -> list[np.ndarray]:
        """Integer (or float) grids (n_features, n_bins, 2), one per requested node, in order."""
        raise NotImplementedError

    def request_splits(self, depth: int, splits: list[tuple[Node, np.ndarray]]) -> None:
        """Start applying the splits [(node with party/feature/bin/missing_left set, rows)]."""
        raise NotImplementedError

    def collect_splits(self) -> list[np.ndarray]:
        """Per requested split, a bool mask over its rows: True = left. Fills node.threshold/split_id."""
        raise NotImplementedError

    def finish(self, depth: int) -> None:
        """The tree stopped growing at ``depth`` (``max_depth`` when every level was grown)."""


class LocalSource(FeatureSource):
    """Features held by this process: codes, a fitted BinMapper and the (g, h) values.

    Parameters
    ----------
    name : str
    codes : ndarray of shape (n, f), uint8
    bin_mapper : BinMapper (fitted)
    values : ndarray of shape (n, 2)
        ``(g, h)`` per row (int64 fixed-point or float64).
    monotone : array-like of int of shape (f,), optional
        Monotone constraint per feature (``+1``, ``-1`` or 0).
    """

    def __init__(self, name: str, codes: np.ndarray, bin_mapper: BinMapper, values: np.ndarray, monotone=None):
        self.name = name
        self.monotone = None if monotone is None else check_monotone(monotone, codes.shape[1], name)
        self.codes = codes
        self.mapper = bin_mapper
        self.values = values
        self.n_features = codes.shape[1]
        self.n_bins = bin_mapper.max_bins
        self.n_bins_non_missing = bin_mapper.n_bins_non_missing_
        cat = getattr(bin_mapper, "is_categorical_", None)
        self.categorical = cat if cat is not None and cat.any() else None
        check_categorical_monotone(self.categorical, self.monotone, name)
        self._pending = None

    def request_histograms(self, depth, builds, feature_mask) -> None:
        self._pending = builds

    def collect_histograms(self) -> list[np.ndarray]:
        out = [
            as_grid(build_histogram(self.values, self.codes, rows, self.n_bins), self.n_features, self.n_bins)
            for _, rows in self._pending
        ]
        self._pending = None
        return out

    def request_splits(self, depth, splits) -> None:
        self._pending = splits

    def collect_splits(self) -> list[np.ndarray]:
        out = []
        for node, rows in self._pending:
            codes = self.codes[rows, node.feature]
            missing = codes == self.mapper.missing_values_bin_idx_
            if node.left_bins is not None:
                left = np.where(missing, node.missing_left, np.isin(codes, node.left_bins))
                node.left_categories, node.right_categories = self.mapper.category_partition(
                    node.feature, node.left_bins)
            else:
                left = np.where(missing, node.missing_left, codes <= node.bin)
                node.threshold = self.mapper.threshold(node.feature, node.bin)
            out.append(left)
        self._pending = None
        return out


@dataclass
class GrowStats:
    """Seconds spent per phase while growing one tree."""

    histogram: float = 0.0
    split: float = 0.0
    partition: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TreeGrower:
    """Level-wise growth of one tree.

    Parameters
    ----------
    sources : list of FeatureSource
        In global feature order (the label holder's own features first).
    gh : ndarray of shape (n, 2)
        ``(g, h)`` of every row, int64 fixed-point (``scale`` > 1) or float64.
    rows : ndarray of int
        The rows of this tree (after row subsampling).
    max_depth : int
    learning_rate : float
    split_params : SplitParams
    scale : float
        Fixed-point scale of ``gh`` (1.0 for floats).
    feature_masks : list of (ndarray of bool or None)
        Per source, the features this tree may use (None = all).
    min_node_rows : int, default=1
        A node is split only when it and its sibling each hold at least this
        many rows. Every histogram is then a sum over at least this many rows,
        whether built or derived as ``parent - sibling`` (SecureBoost hosts
        refuse to build any other; see ``protocols/secureboost/host.py``).
    """

    sources: list
    gh: np.ndarray
    rows: np.ndarray
    max_depth: int
    learning_rate: float
    split_params: SplitParams
    scale: float = 1.0
    feature_masks: list | None = None
    min_node_rows: int = 1
    stats: GrowStats = field(default_factory=GrowStats)

    def grow(self) -> tuple[list[Node], dict[int, np.ndarray]]:
        """Grow the tree.

        Returns
        -------
        nodes : list of Node
            Indexed by node id (root = 0, children numbered in creation order).
        leaf_rows : dict of int to ndarray
            Rows of each leaf.
        """
        masks = self.feature_masks or [None] * len(self.sources)
        nodes: list[Node] = []
        rows_of: dict[int, np.ndarray] = {}
        hists: dict[int, list] = {}
        sums: dict[int, tuple] = {}
        csts = [getattr(src, "monotone", None) for src in self.sources]
        constrained = any(c is not None and np.any(c != 0) for c in csts)
        if constrained:
            csts = [np.zeros(src.n_features, dtype=np.int8) if c is None else np.asarray(c, dtype=np.int8)
                    for src, c in zip(self.sources, csts)]
        step: dict[int, float] = {}  # node value before shrinkage (clipped to its bounds)
        bounds: dict[int, tuple[float, float]] = {}  # bounds of each node's children's values

        def new_node(rows: np.ndarray, depth: int, clip: tuple[float, float] = (-np.inf, np.inf)) -> Node:
            s = self.gh[rows].sum(axis=0)
            g, h = float(s[0]) / self.scale, float(s[1]) / self.scale
            v = leaf_value(g, h, self.split_params.reg_lambda)
            if constrained:
                v = min(max(v, clip[0]), clip[1])
            node = Node(id=len(nodes), depth=depth, n_rows=int(len(rows)), g=g, h=h, value=self.learning_rate * v)
            nodes.append(node)
            rows_of[node.id] = rows
            sums[node.id] = (s[0], s[1])
            step[node.id], bounds[node.id] = v, clip
            return node

        root = new_node(np.asarray(self.rows, dtype=np.int64), 0)
        level: list[Node] = [root]
        siblings: dict[int, int] = {}
        parent_of: dict[int, int] = {}
        mcw = self.split_params.min_child_weight
        stopped_at = self.max_depth
        for depth in range(self.max_depth):
            m = self.min_node_rows
            splittable = [n for n in level if n.n_rows >= max(2, m) and n.h >= 2 * mcw
                          and (n.id not in siblings or nodes[siblings[n.id]].n_rows >= m)]
            if not splittable:
                stopped_at = depth
                break
            ids = {n.id for n in splittable}
            # build the smaller child of each split (even when it is a leaf itself) and
            # derive its sibling as parent - child when the sibling is to be split
            build: list[Node] = []
            derive: list[tuple[int, int, int]] = []  # (node, parent, built sibling)
            seen: set[int] = set()
            for n in splittable:
                if n.id in seen:
                    continue
                sib = siblings.get(n.id)
                if sib is None:
                    build.append(n)
                    seen.add(n.id)
                    continue
                seen.update((n.id, sib))
                small, large = sorted((n, nodes[sib]), key=lambda x: (x.n_rows, x.id))
                build.append(small)
                if large.id in ids:
                    derive.append((large.id, parent_of[large.id], small.id))
            t0 = time.perf_counter()
            for src, m in zip(self.sources, masks):
                src.request_histograms(depth, [(n.id, rows_of[n.id]) for n in build], m)
            for src in self.sources:
                for n, grid in zip(build, src.collect_histograms()):
                    hists.setdefault(n.id, []).append(grid)
            for nid, parent, sib in derive:
                hists[nid] = [subtract(p, c) for p, c in zip(hists[parent], hists[sib])]
            self.stats.histogram += time.perf_counter() - t0

            t0 = time.perf_counter()
            chosen: list[tuple[Node, int, SplitInfo]] = []
            for n in splittable:
                best: tuple[int, SplitInfo] | None = None
                for si, (src, m) in enumerate(zip(self.sources, masks)):
                    cons = dict(monotone=csts[si], bounds=bounds[n.id], node_value=step[n.id]) if constrained else {}
                    info = find_best_split(
                        hists[n.id][si], src.n_bins_non_missing, sums[n.id], self.split_params,
                        scale=self.scale, feature_mask=m, categorical=getattr(src, "categorical", None), **cons,
                    )
                    if info is not None and (best is None or info.gain > best[1].gain):
                        best = (si, info)
                if best is not None:
                    chosen.append((n, best[0], best[1]))
            self.stats.split += time.perf_counter() - t0

            t0 = time.perf_counter()
            per_source: dict[int, list] = {}
            for n, si, info in chosen:
                n.is_leaf = False
                n.party = self.sources[si].name
                n.feature, n.bin, n.missing_left, n.gain = info.feature, info.bin, info.missing_left, info.gain
                n.left_bins = None if info.left_bins is None else list(info.left_bins)
                per_source.setdefault(si, []).append((n, rows_of[n.id]))
            for si, src in enumerate(self.sources):
                src.request_splits(depth, per_source.get(si, []))
            lefts: dict[int, np.ndarray] = {}
            for si, src in enumerate(self.sources):
                for (n, rows), left in zip(per_source.get(si, []), src.collect_splits()):
                    left = np.asarray(left, dtype=bool)
                    if left.shape != rows.shape:
                        raise ProtocolError(f"source {src.name!r} partitioned {left.shape} rows, expected {rows.shape}")
                    lefts[n.id] = left
            # children are numbered in node order, whoever owns the split
            next_level: list[Node] = []
            for n, si, _ in sorted(chosen, key=lambda c: c[0].id):
                rows, left = rows_of[n.id], lefts[n.id]
                lc = new_node(rows[left], depth + 1, bounds[n.id])
                rc = new_node(rows[~left], depth + 1, bounds[n.id])
                if constrained and csts[si][n.feature] != 0:  # sklearn's mid-point rule
                    lo, hi = bounds[n.id]
                    mid = (step[lc.id] + step[rc.id]) / 2
                    if csts[si][n.feature] > 0:
                        bounds[lc.id], bounds[rc.id] = (lo, mid), (mid, hi)
                    else:
                        bounds[lc.id], bounds[rc.id] = (mid, hi), (lo, mid)
                n.left, n.right = lc.id, rc.id
                siblings[lc.id], siblings[rc.id] = rc.id, lc.id
                parent_of[lc.id] = parent_of[rc.id] = n.id
                next_level += [lc, rc]
            self.stats.partition += time.perf_counter() - t0
            # a level's histograms are needed only for its children's subtraction
            for nid in [k for k in hists if nodes[k].depth < depth]:
                del hists[nid]
            next_level.sort(key=lambda x: x.id)
            level = next_level
        for src in self.sources:
            src.finish(stopped_at)
        leaf_rows = {n.id: rows_of[n.id] for n in nodes if n.is_leaf}
        return nodes, leaf_rows


def grow_tree(sources, gh, rows, *, max_depth, learning_rate, split_params, scale=1.0, feature_masks=None,
              min_node_rows=1):
    """Convenience wrapper: ``TreeGrower(...).grow()``."""
    return TreeGrower(
        sources=sources, gh=gh, rows=rows, max_depth=max_depth, learning_rate=learning_rate,
        split_params=split_params, scale=scale, feature_masks=feature_masks, min_node_rows=min_node_rows,
    ).grow()
