"""SecureBoost, guest side: the label holder drives training and scoring.

Per tree the guest computes ``g = p - y`` and ``h = p (1 - p)``, rounds them to
multiples of ``2**-GH_BITS`` and packs each row's pair into one plaintext
``g * 2**S + h`` (``g`` signed in the top slot, ``h >= 0`` below it, so no
offset and no row count is needed to unpack a sum), encrypts them once with
the key owner's CRT fast path and sends them to every host in parts of at
most ``gh_part_rows`` rows (64 MiB of ciphertexts by default, see
:func:`.spec.gh_part_rows`). It then grows the
tree with the same :class:`~fedcredit.models.tree.grower.TreeGrower` as the
plaintext reference; each host is a :class:`RemoteSource` whose histograms
are decrypted and unpacked into exactly the integer sums the reference would
compute, so the federated tree is the reference tree.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

import numpy as np

from ... import compute
from ...errors import DataError, ProtocolError
from ...models.tree.binning import BinMapper
from ...models.tree.gbdt import (
    EarlyStopping,
    base_score,
    categorical_mask,
    logistic_gh,
    logloss,
    label_dp_rng,
    normalize_weights,
    quantize_gh,
    randomized_response,
    row_weights,
    sample_features,
    sample_rows,
    tree_rng,
    validation_split,
)
from ...models.tree.grower import LocalSource, TreeGrower, check_categorical_monotone, check_monotone
from ...models.tree.importance import feature_importance, host_feature_label
from ...models.tree.split import SplitParams
from ...transport.base import Channel
from .._spec import encode_public_key
from . import he as _he
from . import spec
from .model import GUEST_FILE, GuestModel
from .predict import host_decisions, predict_guest, raw_scores
from .remote import RemoteSource
from .spec import GH_BITS, Stage

__all__ = ["SecureBoostGuest", "RemoteSource", "predict_guest", "GHCodec"]  # the last three re-exported


class GHCodec:
    """Fixed-point packing of ``(g, h)`` into one plaintext, and unpacking of compressed sums.

    Parameters
    ----------
    max_rows : int
        Most rows a sum can hold (the training rows).
    plaintext_bits : int
        Bits of plaintext a packed ciphertext may fill: :func:`.he.plaintext_bits` of the
        public key (OU: the guarded space, 618 bits at 2048; Paillier: ``|n| - 1``).

    Attributes
    ----------
    h_bits : int
        Width of the ``h`` slot (``S``): holds a sum of ``max_rows`` values ``<= 2**(GH_BITS - 2)``.
    item_bits : int
        Width of one packed ``(G, H)`` sum (``S`` + the signed ``G`` slot); the shift used by
        cipher compression.
    per_ciphertext : int
        Packed sums per compressed ciphertext.
    """

    def __init__(self, max_rows: int, plaintext_bits: int):
        nb = int(max_rows).bit_length()
        self.max_rows = int(max_rows)
        self.h_bits = GH_BITS - 2 + nb + 1
        self.item_bits = spec.item_bits(max_rows)  # hosts check it against their own row count
        self.g_bits = self.item_bits - self.h_bits  # signed: GH_BITS + nb + 2
        # k signed items of item_bits have magnitude below 2**(k * item_bits - 1): below 2**plaintext_bits,
        # so a compressed sum never wraps modulo Paillier's n nor reaches OU's guard (nor p)
        self.per_ciphertext = int(plaintext_bits) // self.item_bits
        if self.per_ciphertext < 1:
            raise ProtocolError(f"a {plaintext_bits}-bit plaintext space cannot hold one packed (g, h) sum of "
                                f"{max_rows} rows")

    def pack(self, ghq: np.ndarray) -> list[int]:
        """One int ``g * 2**S + h`` per row of the int64 fixed-point ``(n, 2)`` array."""
        s = self.h_bits
        return [(g << s) + h for g, h in ghq.tolist()]

    def unpack(self, plain: list[int], count: int) -> np.ndarray:
        """Signed decrypted compressed ciphertexts → ``(count, 2)`` int64 sums ``(G, H)``.

        Raises
        ------
        ProtocolError
            If the plaintexts do not hold exactly ``count`` in-range sums.
        """
        w, s = self.item_bits, self.h_bits
        wmask, half, smask = (1 << w) - 1, 1 << (w - 1), (1 << s) - 1
        k = self.per_ciphertext
        if len(plain) != -(-count // k):
            raise ProtocolError("secureboost hist: wrong number of compressed ciphertexts")
        out = np.empty((count, 2), dtype=np.int64)
        gmax, hmax = self.max_rows << GH_BITS, self.max_rows << (GH_BITS - 2)
        i = 0
        for T in plain:
            T = int(T)
            for _ in range(min(k, count - i)):
                r = T & wmask
                if r >= half:
                    r -= 1 << w
                T = (T - r) >> w
                h = r & smask
                g = (r - h) >> s
                if not (-gmax <= g <= gmax and 0 <= h <= hmax):
                    raise ProtocolError("secureboost hist: a histogram sum is out of range")
                out[i] = (g, h)
                i += 1
            if T != 0:
                raise ProtocolError("secureboost hist: compressed ciphertext holds extra data")
        return out


def _run_id(key: bytes, params: dict, n_rows: int, train: np.ndarray, y: np.ndarray, hosts: list[str],
            extra: bytes = b"") -> str:
    """The run id sent to hosts: HMAC-SHA256 under the guest's secret ``key`` of parameters, rows and labels.

    It must change with the labels (a checkpoint resumes only the same run) yet
    tell hosts nothing about them: an unkeyed hash of ``y`` would let a host
    confirm a guess of the labels by recomputing it.
    """
    h = hmac.new(key, json.dumps({"params": params, "n": n_rows, "hosts": hosts}, sort_keys=True).encode(),
                 hashlib.sha256)
    h.update(np.ascontiguousarray(train, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int8).tobytes())
    h.update(extra)  # sample weights and the guest's monotone constraints (they change the trees)
    return h.hexdigest()[:32]


class SecureBoostGuest:
    """One training run on the guest.

    Parameters
    ----------
    channel : Channel
    X : ndarray of shape (n_rows, n_features)
        The guest's aligned features.
    y : ndarray of shape (n_rows,)
        Binary labels.
    params : dict
        The estimator's hyperparameters (``VerticalSecureBoost.get_params()``).
    hosts : list of str
    feature_names : list of str
    keypair : (PublicKey, PrivateKey) or None
        Default: a fresh ``key_bits`` key pair.
    artifacts : fedcredit.artifacts.Artifacts or None
        Where ``sbt_guest.json`` is checkpointed after every tree (the step's ``ctx.artifacts``).
    progress, check_cancelled : callables
    sample_weight : ndarray of shape (n_rows,), optional
        Row weights (multiplied by ``params["class_weight"]``); they multiply
        each row's ``g`` and ``h`` before encryption, so hosts sum weighted
        values without seeing a weight.
    monotone : array-like of int of shape (n_features,), optional
        The guest's own monotone constraints (hosts send theirs at SETUP_REPLY).
    categorical : ndarray of bool of shape (n_features,), optional
        The guest's own categorical features (hosts send their flags at SETUP_REPLY).
    """

    def __init__(self, channel: Channel, X, y, *, params: dict, hosts: list[str], feature_names=None, keypair=None,
                 artifacts=None, progress=None, check_cancelled=None, sample_weight=None, monotone=None,
                 categorical=None):
        self.ch = channel
        self.X = np.asarray(X, dtype=np.float64)
        self.y = np.asarray(y).astype(np.int8)
        self.p = dict(params)
        self.hosts = list(hosts)
        # every message to and from the hosts goes through the spec: tags, roles, payloads and order checked
        self.s = spec.session({channel.party: "guest", **{h: "host" for h in self.hosts}}, channel.party, "training")
        self.feature_names = list(feature_names or [f"x{j}" for j in range(self.X.shape[1])])
        self.keypair = keypair
        self.artifacts = artifacts
        self.progress = progress or (lambda msg, frac=None: None)
        self.check_cancelled = check_cancelled or (lambda: None)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if self.sample_weight is not None and self.sample_weight.shape != self.y.shape:
            raise DataError(f"sample_weight has shape {self.sample_weight.shape}, expected {self.y.shape}")
        self.monotone = None if monotone is None else check_monotone(monotone, self.X.shape[1], "the guest")
        self.categorical = categorical_mask(categorical, self.X.shape[1])
        check_categorical_monotone(self.categorical, self.monotone, "the guest")  # before any message
        self.timings = dict.fromkeys(
            ["keygen", "encrypt", "gh_wait", "histogram_phase", "wait_hosts", "host_histogram", "decrypt",
             "guest_histogram", "split", "partition", "predict", "transfer"], 0.0)

    def _send_gh(self, t: int, remotes: list, sk, codec: GHCodec, ghq_rows: np.ndarray,
                 parts: list[tuple[int, int]]) -> None:
        """Encrypt and send tree ``t``'s packed ``(g, h)`` part by part (GH messages after START).

        Only one part's plaintexts, ciphertexts and wire bytes are in this process at a time, and a
        host starts on part ``k`` while the guest encrypts part ``k + 1``. Part ``k`` goes to a host
        only after its GH_ACK of part ``k - GH_WINDOW``: a host's receive buffer never holds more
        than ``GH_WINDOW`` parts, however much faster the guest encrypts than the host takes them.
        """
        for k, (lo, hi) in enumerate(parts):
            self.check_cancelled()
            t0 = time.perf_counter()
            blob = sk.encrypt_ints(codec.pack(ghq_rows[lo:hi])).to_blob()  # fresh: not re-randomized again
            self.timings["encrypt"] += time.perf_counter() - t0
            for r in remotes:
                if k >= spec.GH_WINDOW:
                    self._gh_ack(r.name, t, k - spec.GH_WINDOW)
                self.s.send(self.ch, r.name, Stage.GH, {"part": k, "start": lo, "gh": blob}, t=t, k=k)
            del blob
        for k in range(max(0, len(parts) - spec.GH_WINDOW), len(parts)):
            for r in remotes:
                self._gh_ack(r.name, t, k)

    def _gh_ack(self, host: str, t: int, k: int) -> None:
        t0 = time.perf_counter()
        msg = self.s.recv(self.ch, host, Stage.GH_ACK, t=t, k=k)
        self.timings["gh_wait"] += time.perf_counter() - t0
        if msg["part"] != k:
            raise ProtocolError(f"secureboost gh-ack from {host!r}: acknowledges part {msg['part']}, expected {k}")

    def _plan(self, seed: int, key: bytes) -> tuple[np.ndarray, np.ndarray, str]:
        """Train and validation rows from the secret ``seed``, and the run id under ``key``."""
        p, n = self.p, len(self.X)
        if p["early_stopping_rounds"] is not None:
            train, valid = validation_split(n, p["validation_fraction"], seed)
        else:
            train, valid = np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
        # parameters that do not change the trees stay out of the run id, so a resumed run may change them
        extra = b"" if self.sample_weight is None else np.ascontiguousarray(self.sample_weight).tobytes()
        extra += b"" if self.monotone is None else b"monotone" + self.monotone.tobytes()
        extra += b"" if self.categorical is None else b"categorical" + self.categorical.tobytes()
        run_id = _run_id(key, {k: v for k, v in p.items() if k not in ("key_bits", "n_trees", "gh_part_rows")}, n,
                         train, self.y, self.hosts, extra)
        return train, valid, run_id

    def run(self) -> tuple[GuestModel, dict]:
        p = self.p
        t_start = time.perf_counter()
        n = len(self.X)
        # Hosts see the train/validation split (they bin on the training rows). It is a uniformly random
        # subset of a size fixed by n alone, seeded by a secret only this guest holds: nothing about the
        # labels, and no public seed a host could replay against label guesses. A checkpoint of the same
        # run keeps its seed and run-id key so the resumed run draws the same split and id.
        store = self.artifacts
        saved = store.load_json(GUEST_FILE) if store is not None else None
        old = GuestModel.from_part(saved, GUEST_FILE) if saved is not None else None
        plan = None
        if old is not None and isinstance(old.validation_seed, int) and old.run_key:
            try:
                seed, key = old.validation_seed, bytes.fromhex(old.run_key)
            except ValueError:  # not this version's checkpoint: start a new run
                key = None
            plan = self._plan(seed, key) if key else None
            if plan is not None and plan[2] != old.run_id:
                plan = None
        if plan is None:
            seed, key = secrets.randbits(128), secrets.token_bytes(32)
            plan = self._plan(seed, key)
        train, valid, run_id = plan
        # Label DP: every value that depends on the labels (g, h, base score, stopping) uses these noisy
        # labels only, drawn from the same secret seed (a resumed run draws the same flips); see docs/privacy.md
        y = randomized_response(self.y, p.get("label_epsilon"), label_dp_rng(seed))
        ytr, yva = y[train].astype(np.float64), y[valid]
        Xtr, Xva = self.X[train], self.X[valid]
        sw = self.sample_weight
        w = row_weights(ytr, None if sw is None else sw[train], p.get("class_weight"))
        w_va = None if w is None or not len(valid) else row_weights(yva, None if sw is None else sw[valid],
                                                                     p.get("class_weight"))
        mapper = BinMapper(max_bins=p["max_bins"], categorical=self.categorical).fit(Xtr)
        codes = mapper.transform(Xtr)
        del Xtr, Xva  # uint8 codes from here on; the float copies of the rows are released
        t0 = time.perf_counter()
        # a key pair given by the caller (tests) brings its own scheme; else a fresh key of ``he``
        pk, sk = self.keypair or _he.generate_keypair(p.get("he", _he.DEFAULT_HE), p["key_bits"])
        self.timings["keygen"] = time.perf_counter() - t0
        codec = GHCodec(len(train), _he.plaintext_bits(pk))
        he_name = _he.scheme_of(pk)
        part_rows = spec.gh_part_rows(pk.width, p.get("gh_part_rows"))

        model = GuestModel(party=self.ch.party, hosts=self.hosts, feature_names=self.feature_names,
                           base_score=base_score(ytr, w), params=p, run_id=run_id, validation_seed=seed,
                           run_key=key.hex())
        if old is not None and old.run_id == run_id:
            model = old
        self.s.broadcast(self.ch, self.hosts, Stage.SETUP, {
            "run_id": run_id, "public_key": encode_public_key(pk), "n_rows": int(n), "train_rows": train,
            "valid_rows": valid, "max_depth": p["max_depth"], "max_bins": p["max_bins"],
            "item_bits": codec.item_bits, "resume_trees": model.n_trees, "gh_part_rows": int(part_rows),
            "min_node_rows": int(p["min_node_rows"]),
        })
        replies = self.s.gather(self.ch, self.hosts, Stage.SETUP_REPLY)
        resume = min([model.n_trees] + [r["resume_trees"] for r in replies.values()])
        model.trees = model.trees[:resume]
        remotes: list[RemoteSource] = []
        names = {self.ch.party: list(self.feature_names)}
        for h in self.hosts:
            nb = replies[h]["n_bins_non_missing"]
            cst, published = spec.check_setup_reply(replies[h], h, p["max_bins"])
            remote = RemoteSource(h, self.ch, self.s, sk, nb, p["max_bins"], codec, p["max_depth"], self.timings)
            remote.monotone = cst.astype(np.int8) if np.any(cst != 0) else None
            remote.categorical = spec.check_categorical_reply(replies[h], h)
            remotes.append(remote)
            names[h] = [x or host_feature_label(h, k) for k, x in enumerate(published)]
        model.host_feature_names = {h: names[h] for h in self.hosts}
        n_guest = self.X.shape[1]
        n_total = n_guest + sum(r.n_features for r in remotes)

        raw = np.full(len(train), model.base_score)
        raw_va = np.full(len(valid), model.base_score)
        stopper = EarlyStopping(p["early_stopping_rounds"])
        snapshots = {0: (raw.copy(), raw_va.copy())}
        stopped = False
        if resume > 0:
            all_rows = np.concatenate([train, valid])
            dec = host_decisions(self.ch, self.s, self.hosts, model.trees, all_rows, Stage.RESUME_PREDICT_REQ,
                                 Stage.RESUME_PREDICT)
            # replay the resumed trees one by one, in the order training added them, so the stopping rule
            # sees the same per-tree validation losses as an uninterrupted run (and may keep fewer trees)
            r_all = np.full(len(all_rows), model.base_score)
            for k, nodes in enumerate(model.trees, start=1):
                r_all += raw_scores([nodes], 0.0, self.X[all_rows], dec)
                raw, raw_va = r_all[: len(train)].copy(), r_all[len(train):].copy()
                snapshots[k] = (raw.copy(), raw_va.copy())
                if len(valid) and not stopped:
                    stopped = stopper.update(k, logloss(yva, raw_va, w_va))

        # weights multiply (g, h); scaled to at most 1 so the packed values stay in range (same trees)
        wn, params = normalize_weights(w, SplitParams(p["reg_lambda"], p["min_child_weight"], p["min_split_gain"]))
        scale = float(2**GH_BITS)
        # the first trees on the guest's features only: hosts get neither (g, h) nor node rows for them
        guest_only = max(int(p.get("guest_only_trees", 0)), 1 if p["guest_only_first_tree"] else 0)
        per_tree = []
        t = resume
        while t < p["n_trees"] and not stopped:
            self.check_cancelled()
            t_tree = time.perf_counter()
            rng = tree_rng(p["random_state"], t)
            rows = sample_rows(rng, np.arange(len(train)), p["subsample"])
            fmask = sample_features(rng, n_total, p["colsample"])
            host_masks, at = [], n_guest
            for r in remotes:
                host_masks.append(fmask[at:at + r.n_features])
                at += r.n_features
            secure = t >= guest_only and any(m.any() for m in host_masks)
            gh = logistic_gh(ytr, raw)
            ghq = quantize_gh(gh if wn is None else gh * wn[:, None], GH_BITS)
            parts = spec.gh_parts(len(rows), part_rows) if secure else []
            for r, m in zip(remotes, host_masks):
                self.s.send(self.ch, r.name, Stage.START, {
                    "mode": "secure" if secure else "guest_only", "gh_parts": len(parts), "rows": rows,
                    "features": m if secure else np.zeros(r.n_features, dtype=bool), "keep_trees": int(t),
                }, t=t)
                r.start_tree(t, m)
            self._send_gh(t, remotes, sk, codec, ghq[rows], parts)
            local = LocalSource(self.ch.party, codes, mapper, ghq, monotone=self.monotone)
            srcs = [local] + (remotes if secure else [])
            masks = [fmask[:n_guest]] + (host_masks if secure else [])
            grower = TreeGrower(sources=srcs, gh=ghq, rows=rows, max_depth=p["max_depth"],
                                learning_rate=p["learning_rate"], split_params=params, scale=scale,
                                feature_masks=masks, min_node_rows=p["min_node_rows"])
            nodes, leaf_rows = grower.grow()
            self.timings["histogram_phase"] += grower.stats.histogram
            self.timings["split"] += grower.stats.split
            self.timings["partition"] += grower.stats.partition
            for nid, lr in leaf_rows.items():
                raw[lr] += nodes[nid].value
            # rows the tree did not see: out-of-bag training rows and validation rows
            t0 = time.perf_counter()
            oob = np.setdiff1d(np.arange(len(train)), rows)
            pred_pos = np.concatenate([train[oob], valid])
            dec = host_decisions(self.ch, self.s, self.hosts, [nodes], pred_pos, Stage.TREE_PREDICT_REQ,
                                 Stage.TREE_PREDICT, t=t)
            upd = raw_scores([nodes], 0.0, self.X[pred_pos], dec)
            raw[oob] += upd[: len(oob)]
            raw_va += upd[len(oob):]
            self.timings["predict"] += time.perf_counter() - t0
            model.trees.append(nodes)
            snapshots[len(model.trees)] = (raw.copy(), raw_va.copy())
            if store is not None:
                store.save_json(GUEST_FILE, model.to_dict())
            sec = time.perf_counter() - t_tree
            info = {"tree": t, "seconds": round(sec, 4), "secure": secure,
                    "train_loss": logloss(ytr, raw, w)}
            t += 1
            if len(valid):
                info["validation_loss"] = logloss(yva, raw_va, w_va)
                stopped = stopper.update(t, info["validation_loss"])
            per_tree.append(info)
            self.progress(f"secureboost: tree {t}/{p['n_trees']} in {sec:.1f}s", t / p["n_trees"])
            if stopped:
                break
        keep = len(model.trees)
        if len(valid) and stopper.history:
            keep = stopper.best_trees
        model.trees = model.trees[:keep]
        raw, raw_va = snapshots[keep]
        self.s.broadcast(self.ch, self.hosts, Stage.START, {
            "mode": "stop", "gh_parts": 0, "rows": np.zeros(0, dtype=np.int64),
            "features": np.zeros(0, dtype=bool), "keep_trees": int(len(model.trees)),
        }, t=t)
        model.importance = feature_importance(model.trees, names)
        if store is not None:
            store.save_json(GUEST_FILE, model.to_dict())
        self.train_rows_, self.valid_rows_, self.validation_seed_ = train, valid, seed
        seconds = time.perf_counter() - t_start
        # the guest's waits that are not host compute: delivering the GH parts (wire and the hosts' intake
        # checks), and any request -> reply time beyond the hosts' own measurement
        self.timings["transfer"] = self.timings["gh_wait"] + max(
            0.0, self.timings["wait_hosts"] - self.timings["host_histogram"])
        # the guest builds its own histograms while the hosts build theirs
        self.timings["guest_histogram"] = max(
            0.0, self.timings["histogram_phase"] - self.timings["wait_hosts"] - self.timings["decrypt"])
        built = len(per_tree)
        result = {
            "role": "guest", "trees": len(model.trees), "trees_built": built, "resumed_from": int(resume),
            "early_stopped": bool(stopped), "he": he_name, "key_bits": pk.bits, "seconds": seconds,
            "seconds_per_tree": (sum(x["seconds"] for x in per_tree) / built) if built else 0.0,
            "timings": {k: round(v, 4) for k, v in self.timings.items()}, "per_tree": per_tree,
            "n_train": int(len(train)), "n_validation": int(len(valid)), "item_bits": codec.item_bits,
            "sums_per_ciphertext": codec.per_ciphertext, "gh_part_rows": int(part_rows),
            "compute": compute.current().name, "importance": model.importance,
            "monotone": {"guest": int(np.count_nonzero(self.monotone)) if self.monotone is not None else 0,
                         **{r.name: int(np.count_nonzero(r.monotone)) if r.monotone is not None else 0
                            for r in remotes}},
            "weighted": w is not None,
            "bytes_sent": self.ch.stats.total("sent"), "bytes_received": self.ch.stats.total("received"),
        }
        self.model = model
        self.raw_train, self.raw_valid = raw, raw_va
        return model, result
