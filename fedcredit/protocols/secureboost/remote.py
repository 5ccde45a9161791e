"""SecureBoost, guest side: a host's features as a feature source of the guest's grower.

:class:`RemoteSource` turns the grower's histogram and split requests into
HIST_REQ / SPLIT_REQ messages to one host and its answers into the integer
``(G, H)`` grids and row partitions the grower needs: each histogram is
decrypted (the guarded ``decrypt_signed``) and unpacked by the run's
:class:`~.guest.GHCodec` into exactly the sums the plaintext reference would
compute. A categorical host feature's split is sent as its set of left bins.
"""

from __future__ import annotations

import time

import numpy as np

from ...errors import ProtocolError
from ...models.tree.grower import FeatureSource
from ...transport.base import Channel
from . import spec
from .spec import Stage

__all__ = ["RemoteSource"]


class RemoteSource(FeatureSource):
    """A host's features as seen by the guest's grower: requests become messages."""

    def __init__(self, name: str, channel: Channel, session, private_key, n_bins_non_missing: np.ndarray,
                 n_bins: int, codec, max_depth: int, timings: dict):
        self.name = name
        self.ch = channel
        self.s = session
        self.sk = private_key
        self.n_bins_non_missing = n_bins_non_missing
        self.n_features = len(n_bins_non_missing)
        self.n_bins = n_bins
        self.codec = codec
        self.max_depth = max_depth
        self.timings = timings
        self.tree = -1
        self.active = np.ones(self.n_features, dtype=bool)
        self._pending = None
        self._depth = 0

    def start_tree(self, tree: int, active: np.ndarray) -> None:
        self.tree, self.active = tree, np.asarray(active, dtype=bool)

    @staticmethod
    def _csr(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.zeros(len(groups) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(g) for g in groups])
        rows = np.concatenate(groups).astype(np.int64) if groups else np.zeros(0, dtype=np.int64)
        return offsets, rows

    def request_histograms(self, depth, builds, feature_mask) -> None:
        offsets, rows = self._csr([r for _, r in builds])
        self.s.send(self.ch, self.name, Stage.HIST_REQ, {
            "done": False, "nodes": np.array([nid for nid, _ in builds], dtype=np.int64),
            "offsets": offsets, "rows": rows,
        }, t=self.tree, d=depth)
        self._pending, self._depth = len(builds), depth

    def collect_histograms(self) -> list[np.ndarray]:
        t0 = time.perf_counter()
        msg = self.s.recv(self.ch, self.name, Stage.HIST, t=self.tree, d=self._depth)
        t1 = time.perf_counter()
        self.timings["wait_hosts"] += t1 - t0
        self.timings["host_histogram"] += msg["seconds"]
        n_nodes, nb = self._pending, self.n_bins
        active = np.flatnonzero(self.active)
        sent = spec.sent_bins(self.n_bins_non_missing[active], nb)  # flat positions within (active features x bins)
        count = n_nodes * len(sent)
        if msg["count"] != count or (count and msg["hist"] is None):
            raise ProtocolError(f"secureboost hist from {self.name!r}: expected {count} sums, got {msg['count']}")
        grids = [np.zeros((self.n_features, nb, 2), dtype=np.int64) for _ in range(n_nodes)]
        if count:
            cv = self.sk.public_key.vector_from_blob(msg["hist"])
            plain = self.sk.decrypt_signed(cv)
            sums = self.codec.unpack(plain, count).reshape(n_nodes, len(sent), 2)
            for i in range(n_nodes):
                flat = np.zeros((len(active) * nb, 2), dtype=np.int64)
                flat[sent] = sums[i]
                grids[i][active] = flat.reshape(len(active), nb, 2)
        self.timings["decrypt"] += time.perf_counter() - t1
        self._pending = None
        return grids

    def request_splits(self, depth, splits) -> None:
        offsets, rows = self._csr([r for _, r in splits])
        # a categorical split names its left bins (the host maps them to its categories); numeric: none
        left_offsets, left_bins = self._csr([np.asarray(n.left_bins or [], dtype=np.int64) for n, _ in splits])
        self.s.send(self.ch, self.name, Stage.SPLIT_REQ, {
            "left_bins": left_bins, "left_offsets": left_offsets,
            "nodes": np.array([n.id for n, _ in splits], dtype=np.int64),
            "features": np.array([n.feature for n, _ in splits], dtype=np.int64),
            "bins": np.array([n.bin for n, _ in splits], dtype=np.int64),
            "missing_left": np.array([n.missing_left for n, _ in splits], dtype=bool),
            "offsets": offsets, "rows": rows,
        }, t=self.tree, d=depth)
        self._pending, self._depth = splits, depth

    def collect_splits(self) -> list[np.ndarray]:
        msg = self.s.recv(self.ch, self.name, Stage.SPLIT, t=self.tree, d=self._depth)
        splits = self._pending
        sizes = [len(r) for _, r in splits]
        if len(msg["split_ids"]) != len(splits) or len(msg["left"]) != sum(sizes):
            raise ProtocolError(f"secureboost split from {self.name!r}: wrong number of splits or rows")
        out, at = [], 0
        for (node, _), sid, size in zip(splits, msg["split_ids"].tolist(), sizes):
            node.split_id = int(sid)
            out.append(msg["left"][at:at + size])
            at += size
        self._pending = None
        return out

    def finish(self, depth: int) -> None:
        """Tell the host the tree stopped growing before ``max_depth`` levels."""
        if depth < self.max_depth:
            self.s.send(self.ch, self.name, Stage.HIST_REQ, {
                "done": True, "nodes": np.zeros(0, dtype=np.int64), "offsets": np.zeros(1, dtype=np.int64),
                "rows": np.zeros(0, dtype=np.int64),
            }, t=self.tree, d=depth)
