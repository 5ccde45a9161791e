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
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ...errors import ProtocolError
from .binning import BinMapper
from .histogram import as_grid, build_histogram, subtract
from .split import SplitInfo, SplitParams, find_best_split, leaf_value

__all__ = ["Node", "FeatureSource", "LocalSource", "TreeGrower", "grow_tree"]


@dataclass
class Node:
    """One node of a grown tree (training and storage form).

    ``party`` is the name of the source owning the split (None for a leaf);
    ``feature`` is that party's local feature index, ``bin`` the split bin
    (``x <= threshold(bin)`` goes left). ``threshold`` is filled only when the
    owner is the party holding the model; a host split carries ``split_id``,
    the key of the host's own lookup table.
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
    """

    name: str
    n_features: int
    n_bins_non_missing: np.ndarray

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
    """

    def __init__(self, name: str, codes: np.ndarray, bin_mapper: BinMapper, values: np.ndarray):
        self.name = name
        self.codes = codes
        self.mapper = bin_mapper
        self.values = values
        self.n_features = codes.shape[1]
        self.n_bins = bin_mapper.max_bins
        self.n_bins_non_missing = bin_mapper.n_bins_non_missing_
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

        def new_node(rows: np.ndarray, depth: int) -> Node:
            s = self.gh[rows].sum(axis=0)
            g, h = float(s[0]) / self.scale, float(s[1]) / self.scale
            node = Node(
                id=len(nodes), depth=depth, n_rows=int(len(rows)), g=g, h=h,
                value=self.learning_rate * leaf_value(g, h, self.split_params.reg_lambda),
            )
            nodes.append(node)
            rows_of[node.id] = rows
            sums[node.id] = (s[0], s[1])
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
                    info = find_best_split(
                        hists[n.id][si], src.n_bins_non_missing, sums[n.id], self.split_params,
                        scale=self.scale, feature_mask=m,
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
            for n, _, _ in sorted(chosen, key=lambda c: c[0].id):
                rows, left = rows_of[n.id], lefts[n.id]
                lc = new_node(rows[left], depth + 1)
                rc = new_node(rows[~left], depth + 1)
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
