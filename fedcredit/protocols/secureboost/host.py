"""SecureBoost, host side: a feature holder without labels.

The host bins its own features, receives one packed ciphertext (OU or Paillier,
as the guest's SETUP names it; :mod:`.he`) of
``(g, h)`` per row of each tree — streamed in GH parts of at most
``gh_part_rows`` rows, each checked (part index, first row, count) before it
is used — and answers the guest's requests:

* ``HIST_REQ``: encrypted histograms (node x feature x bin sums) of the
  requested nodes — only the smaller child of each split is ever requested,
  the guest derives the sibling by subtraction — compressed several bin sums
  per ciphertext and re-randomized before they leave;
* ``SPLIT_REQ``: for a split the guest chose on one of this host's features
  (given as feature index and bin index only), record the threshold in the
  host's own table under a fresh split id and return the left/right
  partition of the node's rows;

both only for the nodes of the tree's partition as the host tracks it itself
(:class:`~.partition.NodeTracker`: current leaves with exactly their rows, each
built and split once, the node and its sibling at least ``min_node_rows``
rows); any other request is a :class:`~fedcredit.errors.ProtocolError`;
* ``PREDICT_REQ``: the left/right decisions of some of its splits for some rows.

The host never sees a plaintext gradient, hessian, label or prediction, and
its thresholds never leave it.

With a distributed compute backend (``[compute] backend = "dask"``, see
``docs/compute.md``) the per-row ciphertexts and bin codes of a tree are
scattered to the party's workers as the parts arrive and each histogram is a set of
per-partition tasks returning partial sums
(:class:`~fedcredit.crypto.partitioned.PartitionedCipherVector`); the
messages and the sums are the same as with the local pool.
"""

from __future__ import annotations

import time

import numpy as np

from ... import compute
from ...crypto.binned import binned_from_blobs
from ...errors import ProtocolError
from ...models.tree.binning import BinMapper
from ...models.tree.grower import check_categorical_monotone, check_monotone
from ...models.tree.predictor import split_decision
from ...transport.base import Channel
from .._spec import decode_public_key
from . import he as _he
from . import spec
from .model import HOST_FILE, HostModel, HostSplit
from .partition import NodeTracker
from .spec import Stage

__all__ = ["SecureBoostHost", "predict_host", "host_decisions", "published_names"]


def published_names(feature_names: list[str], share) -> list[str]:
    """Per feature, the name a host publishes to the guest (``""``: not published).

    ``share`` is the policy's ``share_feature_names``: True (all), False (none)
    or a list of column names (raw, or ``<party>.<column>`` as in ``feature_names``).
    """
    if share is True:
        return [str(f)[:spec.MAX_NAME_CHARS] for f in feature_names]
    if not share:
        return [""] * len(feature_names)
    listed = set(share)
    return [str(f)[:spec.MAX_NAME_CHARS] if f in listed or f.split(".", 1)[-1] in listed else ""
            for f in feature_names]


def host_decisions(model: HostModel, X: np.ndarray, split_ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Left decisions ``(len(split_ids), len(rows))`` of this host's splits on rows of ``X``."""
    out = np.zeros((len(split_ids), len(rows)), dtype=bool)
    Xr = X[rows]
    for i, sid in enumerate(split_ids.tolist()):
        s = model.splits.get(int(sid))
        if s is None:
            raise ProtocolError(f"secureboost predict: unknown split id {sid}")
        out[i] = split_decision(Xr[:, s.feature], s.threshold, s.missing_left, s.left_categories,
                                s.right_categories)
    return out


def _answer_predict(channel: Channel, session, guest: str, model: HostModel, X: np.ndarray, req_stage: Stage,
                    rep_stage: Stage, **idx) -> int:
    req = session.recv(channel, guest, req_stage, **idx)
    rows = spec.check_rows(req_stage, req["rows"], len(X))
    dec = host_decisions(model, X, req["split_ids"], rows)
    session.send(channel, guest, rep_stage, {"left": np.packbits(dec.ravel())}, **idx)
    return len(rows)


def predict_host(channel: Channel, host_model: HostModel, X_host, *, guest: str | None = None) -> dict:
    """Answer one federated scoring request of the guest (see ``predict_guest``).

    Parameters
    ----------
    channel : Channel
        The same namespace the guest uses for this request.
    host_model : HostModel
    X_host : ndarray of shape (n, f_host)
        This host's features of the rows being scored, in the guest's row order.
    guest : str, optional
        The guest's name (default: the channel's only peer).

    Returns
    -------
    dict
        ``{"rows": n}`` for the caller's log.
    """
    guest = guest or host_model.guest
    X = np.asarray(X_host, dtype=np.float64)
    session = spec.session({guest: "guest", channel.party: "host"}, channel.party, "scoring")
    n = _answer_predict(channel, session, guest, host_model, X, Stage.PREDICT_REQ, Stage.PREDICT)
    return {"rows": n}


class SecureBoostHost:
    """One training run on a host.

    Parameters
    ----------
    channel : Channel
    X : ndarray of shape (n_rows, n_features)
        This host's aligned features (NaN = missing).
    guest : str
    feature_names : list of str
    artifacts : fedcredit.artifacts.Artifacts or None
        Where ``sbt_host.json`` is checkpointed after every tree (the step's ``ctx.artifacts``).
    progress, check_cancelled : callables
    monotone : array-like of int of shape (n_features,), optional
        The monotone constraint (``+1``/``-1``/0) this host declares for each of
        its features; sent to the guest at SETUP_REPLY (signs only).
    share_feature_names : bool or list of str, default=False
        Publish the names of all (True) or the listed features to the guest
        (for its importance report); the others appear as ``<host>:feature#k``.
    min_node_rows : int, default=spec.MIN_NODE_ROWS
        The job's value: a SETUP asking for fewer rows per node is refused.
    guest_only_trees : int, default=0
        The job's value: a secure START for one of the first ``guest_only_trees``
        trees is refused. With the two checks a guest that deviates from the agreed
        job cannot lower the protection the host's policy approved (docs/privacy.md).
    categorical : ndarray of bool of shape (n_features,), optional
        This host's categorical features (values are category codes): one bin
        per category, split by category subsets the guest names as bin sets;
        the bin → category mapping stays here, like numeric thresholds.
    """

    def __init__(self, channel: Channel, X, *, guest: str, feature_names=None, artifacts=None,
                 progress=None, check_cancelled=None, monotone=None, share_feature_names=False,
                 min_node_rows: int = spec.MIN_NODE_ROWS, guest_only_trees: int = 0, categorical=None):
        self.ch = channel
        self.X = np.asarray(X, dtype=np.float64)
        self.guest = guest
        # every message to and from the guest goes through the spec: tags, roles, payloads and order checked
        self.s = spec.session({guest: "guest", channel.party: "host"}, channel.party, "training")
        self.feature_names = list(feature_names or [f"x{j}" for j in range(self.X.shape[1])])
        n = self.X.shape[1]
        self.monotone = np.zeros(n, dtype=np.int8) if monotone is None else check_monotone(monotone, n, "this host")
        self.published = published_names(self.feature_names, share_feature_names)
        self.categorical = np.zeros(n, dtype=bool) if categorical is None else np.asarray(categorical, dtype=bool)
        if self.categorical.shape != (n,):
            raise ProtocolError(f"categorical must hold one flag per feature ({n})")
        check_categorical_monotone(self.categorical, self.monotone, "this host")
        self.artifacts = artifacts
        self.progress = progress or (lambda msg, frac=None: None)
        self.check_cancelled = check_cancelled or (lambda: None)
        self.min_node_rows, self.guest_only_trees = int(min_node_rows), int(guest_only_trees)
        self.timings = {"gh": 0.0, "histogram": 0.0, "compress": 0.0, "split": 0.0, "predict": 0.0, "wait": 0.0}
        self.gh_parts = 0  # GH messages received (all trees)
        self.partitions = 0  # most partitions of a tree's (g, h) on a distributed backend (0: in-process)

    def _recv(self, stage: Stage, **idx) -> dict:
        t0 = time.perf_counter()
        msg = self.s.recv(self.ch, self.guest, stage, **idx)
        self.timings["wait"] += time.perf_counter() - t0
        return msg

    def run(self) -> tuple[HostModel, dict]:
        t_start = time.perf_counter()
        setup = self._recv(Stage.SETUP)
        if setup["n_rows"] != len(self.X):
            raise ProtocolError(f"secureboost setup: guest has {setup['n_rows']} aligned rows, this host {len(self.X)}")
        # the key's wire shape names its scheme; a host refuses any other scheme and any malformed or small key
        pk = decode_public_key(setup["public_key"], schemes=_he.SCHEMES, protocol="secureboost setup")
        train = spec.check_rows(Stage.SETUP, setup["train_rows"], len(self.X), "train_rows")
        spec.check_rows(Stage.SETUP, setup["valid_rows"], len(self.X), "valid_rows")
        max_depth, max_bins, item_bits = setup["max_depth"], setup["max_bins"], setup["item_bits"]
        if not (1 <= max_depth <= 16 and 3 <= max_bins <= 256 and 1 <= item_bits <= _he.plaintext_bits(pk)):
            raise ProtocolError("secureboost setup: max_depth, max_bins or item_bits out of range")
        if item_bits != spec.item_bits(len(train)):
            # the packing width follows from the row count; a wider one only helps a guest that encrypts
            # crafted values instead of (g, h) read more of each histogram sum
            raise ProtocolError(f"secureboost setup from {self.guest!r}: item_bits {item_bits}, expected "
                                f"{spec.item_bits(len(train))} for {len(train)} training rows")
        part_rows = setup["gh_part_rows"]
        if part_rows < 1:
            raise ProtocolError(f"secureboost setup: gh_part_rows must be at least 1, got {part_rows}")
        min_rows = setup["min_node_rows"]
        if min_rows < spec.MIN_NODE_ROWS:
            # the floor protects this host's bins: a guest may ask for more, never for less
            raise ProtocolError(f"secureboost setup from {self.guest!r}: min_node_rows {min_rows} is below the "
                                f"floor {spec.MIN_NODE_ROWS}")
        if min_rows < self.min_node_rows:
            raise ProtocolError(f"secureboost setup from {self.guest!r}: min_node_rows {min_rows} is below the "
                                f"job's {self.min_node_rows}")
        X_train = self.X[train]
        mapper = BinMapper(max_bins=max_bins, categorical=self.categorical).fit(X_train)
        codes = mapper.transform(X_train)  # uint8 codes from here on; the float copy of the rows is released
        del X_train  # (self.X stays: predictions compare raw values with the host's thresholds)

        model = HostModel(party=self.ch.party, guest=self.guest, feature_names=self.feature_names,
                          run_id=setup["run_id"])
        store = self.artifacts
        saved = store.load_json(HOST_FILE) if store is not None else None
        if saved is not None:
            old = HostModel.from_part(saved, HOST_FILE)
            if old.run_id == setup["run_id"] and old.party == model.party:
                model = old
        resume = min(model.trees_done, setup["resume_trees"])
        model.truncate(resume)
        self.s.send(self.ch, self.guest, Stage.SETUP_REPLY,
                    {"n_bins_non_missing": mapper.n_bins_non_missing_.astype(np.int64), "resume_trees": int(resume),
                     "monotone": self.monotone, "feature_names": list(self.published),
                     "categorical": self.categorical})
        if resume > 0:
            _answer_predict(self.ch, self.s, self.guest, model, self.X, Stage.RESUME_PREDICT_REQ,
                            Stage.RESUME_PREDICT)
        next_id = max(model.splits, default=-1) + 1
        n_feat = self.X.shape[1]
        t = resume
        trees_built = 0
        while True:
            self.check_cancelled()
            start = self._recv(Stage.START, t=t)
            mode = start["mode"]
            if mode not in spec.MODES:
                raise ProtocolError(f"secureboost start: unknown mode {mode!r}")
            if mode == "stop":
                model.truncate(start["keep_trees"])
                break
            if mode == "secure":
                if t < self.guest_only_trees:
                    raise ProtocolError(f"secureboost start from {self.guest!r}: tree {t} is secure, but the job's "
                                        f"first {self.guest_only_trees} trees are guest-only")
                if len(start["features"]) != n_feat:
                    raise ProtocolError("secureboost start: a secure tree needs one feature flag per feature")
                root = spec.check_rows(Stage.START, start["rows"], len(train))
                if len(root) > 1 and np.any(np.diff(root) <= 0):
                    raise ProtocolError(f"secureboost start from {self.guest!r}: the tree's rows must be strictly "
                                        "increasing")
                bounds = spec.gh_parts(len(root), part_rows)
                if start["gh_parts"] != len(bounds):
                    raise ProtocolError(f"secureboost start: {start['gh_parts']} gh parts announced for "
                                        f"{len(root)} rows of {part_rows} per part, expected {len(bounds)}")
                active = np.flatnonzero(start["features"])
                codes_root = codes[root][:, active]
                t0 = time.perf_counter()
                gh = self._receive_gh(t, pk, bounds, codes_root)
                self.timings["gh"] += time.perf_counter() - t0  # receiving, checking and (distributed) scattering
                self.gh_parts += len(bounds)
                self.partitions = max(self.partitions, gh.n_partitions)
                pos = np.full(len(train), -1, dtype=np.int64)
                pos[root] = np.arange(len(root))
                keep = spec.sent_bins(mapper.n_bins_non_missing_[active], max_bins)
                try:
                    nodes = NodeTracker(len(root), min_rows, self.guest)
                    next_id = self._grow_secure(t, gh, codes_root, pos, keep, active, max_depth, max_bins, item_bits,
                                                model, mapper, codes, next_id, len(train), nodes)
                finally:
                    gh.free()
            elif start["gh_parts"] != 0:
                raise ProtocolError(f"secureboost start: a {mode} tree has no gh parts, got {start['gh_parts']}")
            t0 = time.perf_counter()
            _answer_predict(self.ch, self.s, self.guest, model, self.X, Stage.TREE_PREDICT_REQ, Stage.TREE_PREDICT,
                            t=t)
            self.timings["predict"] += time.perf_counter() - t0
            model.trees_done = t + 1
            if store is not None:
                store.save_json(HOST_FILE, model.to_dict())
            trees_built += 1
            self.progress(f"secureboost host: tree {t + 1} done", None)
            t += 1
        if store is not None:
            store.save_json(HOST_FILE, model.to_dict())
        self.model = model
        result = {
            "role": "host", "trees": model.trees_done, "trees_built_here": trees_built, "splits": len(model.splits),
            "resumed_from": int(resume), "seconds": time.perf_counter() - t_start, "compute": compute.current().name,
            "gh_parts": self.gh_parts, "partitions": self.partitions, "importance": model.importance(),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "bytes_sent": self.ch.stats.total("sent"), "bytes_received": self.ch.stats.total("received"),
        }
        return model, result

    def _receive_gh(self, t: int, pk, bounds: list[tuple[int, int]], codes_root: np.ndarray):
        """Receive and check tree ``t``'s GH parts; the tree's ``(g, h)`` as one in-process vector, or
        (distributed backend) partitioned on the party's workers, each partition scattered as soon as
        its rows have arrived."""
        def parts():
            for k in range(len(bounds)):
                msg = self._recv(Stage.GH, t=t, k=k)
                yield spec.check_gh_part(msg, k, bounds)
                # the caller has taken the part in (converted or scattered it): the guest may send part k + GH_WINDOW
                self.s.send(self.ch, self.guest, Stage.GH_ACK, {"part": k}, t=t, k=k)

        # on a distributed backend the ciphertexts stay on the party's workers for the whole tree
        gh = binned_from_blobs(pk, parts(), codes_root)
        if len(gh) != len(codes_root):  # the parts' row ranges cover the rows exactly; a second look
            raise ProtocolError("secureboost gh: the parts do not add up to the tree's rows")
        return gh

    def _grow_secure(self, t, gh, codes_root, pos, keep, active, max_depth, max_bins, item_bits, model, mapper, codes,
                     next_id, n_train, nodes: NodeTracker) -> int:
        """Answer the histogram and split requests of one secure tree; returns the next free split id.

        ``nodes`` is the tree's partition as this host tracks it; every request is checked against it
        before any sum is built or any row is partitioned."""
        for d in range(max_depth):
            req = self._recv(Stage.HIST_REQ, t=t, d=d)
            if req["done"]:
                break
            t0 = time.perf_counter()
            req_nodes, offsets, rows = req["nodes"], req["offsets"], req["rows"]
            spec.check_offsets(Stage.HIST_REQ, offsets, len(req_nodes), len(rows))
            local = pos[spec.check_rows(Stage.HIST_REQ, rows, n_train)]
            if np.any(local < 0):
                raise ProtocolError("secureboost hist-req: rows outside the tree's rows")
            node_rows = [local[offsets[i]:offsets[i + 1]] for i in range(len(req_nodes))]
            for r in node_rows:
                nodes.check_histogram(d, r)
            parts = []
            if len(active):
                parts = gh.histograms(node_rows, max_bins)  # distributed: one task per partition for all nodes
            t1 = time.perf_counter()
            self.timings["histogram"] += t1 - t0
            if parts:
                # only bins that can hold rows: the non-missing bins of each feature and its missing bin
                hist = _he.concat(parts)[np.concatenate([keep + i * len(active) * max_bins
                                                              for i in range(len(parts))])]
                count = len(hist)
                hist = _he.compress(hist, item_bits=item_bits)
                blob = hist.to_blob()  # re-randomized: the guest must not learn how a sum was formed
            else:
                blob, count = None, 0
            self.timings["compress"] += time.perf_counter() - t1
            self.s.send(self.ch, self.guest, Stage.HIST,
                        {"hist": blob, "count": int(count), "seconds": float(time.perf_counter() - t0)}, t=t, d=d)
            sreq = self._recv(Stage.SPLIT_REQ, t=t, d=d)
            t0 = time.perf_counter()
            ids, lefts = self._apply_splits(sreq, model, mapper, codes, t, next_id, n_train, d, pos, active, nodes)
            next_id += len(ids)
            self.timings["split"] += time.perf_counter() - t0
            self.s.send(self.ch, self.guest, Stage.SPLIT,
                        {"split_ids": np.asarray(ids, dtype=np.int64), "left": lefts}, t=t, d=d)
        return next_id

    def _apply_splits(self, sreq, model, mapper, codes, tree, next_id, n_train, depth, pos, active, tracker):
        k = len(sreq["nodes"])
        feats, bins, ml, offsets = sreq["features"], sreq["bins"], sreq["missing_left"], sreq["offsets"]
        if not (len(feats) == len(bins) == len(ml) == k):
            raise ProtocolError("secureboost split-req: nodes, features, bins and missing_left differ in length")
        rows = spec.check_rows(Stage.SPLIT_REQ, sreq["rows"], n_train)
        spec.check_offsets(Stage.SPLIT_REQ, offsets, k, len(rows))
        local = pos[rows]
        if np.any(local < 0):
            raise ProtocolError(f"secureboost split-req from {self.guest!r}: rows outside the tree's rows")
        in_tree = np.zeros(codes.shape[1], dtype=bool)
        in_tree[active] = True
        bad = np.flatnonzero((feats < 0) | (feats >= codes.shape[1]))
        if bad.size:
            raise ProtocolError(f"secureboost split-req: no feature {int(feats[bad[0]])} / bin {int(bins[bad[0]])} "
                                "on this host")
        # a bin index (numeric) or a set of bins (categorical) per split, checked against this host's features
        chosen = spec.split_bins(sreq, k, mapper.n_bins_non_missing_, self.categorical)
        ids, lefts = [], []
        for i in range(k):
            j, b = int(feats[i]), chosen[i]
            if not in_tree[j]:
                raise ProtocolError(f"secureboost split-req from {self.guest!r}: feature {j} is not in this tree")
            node_local = local[offsets[i]:offsets[i + 1]]
            x = tracker.check_split(depth, node_local)  # a current node, exactly its rows, not split before
            r = rows[offsets[i]:offsets[i + 1]]
            c = codes[r, j]
            missing = c == mapper.missing_values_bin_idx_
            if isinstance(b, tuple):  # categorical: the category codes of the bins stay in this host's table
                left = np.where(missing, bool(ml[i]), np.isin(c, b))
                lc, rc = mapper.category_partition(j, b)
                split = HostSplit(tree=int(tree), feature=j, threshold=None, missing_left=bool(ml[i]),
                                  feature_name=self.feature_names[j], left_categories=lc, right_categories=rc)
            else:
                left = np.where(missing, bool(ml[i]), c <= b)
                split = HostSplit(tree=int(tree), feature=j, threshold=mapper.threshold(j, b),
                                  missing_left=bool(ml[i]), feature_name=self.feature_names[j])
            tracker.record_split(x, node_local, left)
            sid = next_id + i
            model.splits[sid] = split
            ids.append(sid)
            lefts.append(left)
        return ids, (np.concatenate(lefts) if lefts else np.zeros(0, dtype=bool))
