"""CKKS strategy of vertical LR: rows in slots, floats, packed products (see ``_ckks.py``).

The same roles and steps as :mod:`._cipher_paillier` (``setup``, the mini-batch gradient, the validation
round), with CKKS vectors instead of Paillier vectors. Not checkpointed: a resumed CKKS step starts over.
"""

from __future__ import annotations

import numpy as np

from ...errors import ProtocolError
from ...models.logistic import FEATURE_FRAC_BITS
from . import _ckks
from ._common import LRParams, feature_codes
from .spec import Stage

__all__ = ["CKKSGuest", "CKKSHost", "CKKSArbiter"]


def _design(X) -> np.ndarray:
    """Features on the fixed-point grid, clipped to what ``packed_products`` multiplies (bounded values)."""
    Xq = feature_codes(X).astype(np.float64) / float(1 << FEATURE_FRAC_BITS)
    return np.clip(Xq, -_ckks.FEATURE_CLIP, _ckks.FEATURE_CLIP)


class CKKSGuest:
    """The guest's CKKS steps (``context``: two-party mode, its private context; default a new one)."""

    checkpointable = False

    def __init__(self, ch, s, X, y, params: LRParams, *, hosts, arbiter, keypair=None, q=None):
        self.ch, self.s = ch, s
        self.p, self.hosts, self.arbiter, self.context = params, hosts, arbiter, keypair
        self.Xq = _design(np.c_[X, np.ones(X.shape[0])])  # last = intercept
        self.n_coef = self.Xq.shape[1]
        self.y = y
        self.Y4 = 2.0 - 4.0 * y.astype(np.float64)

    def setup(self, plan) -> None:
        if self.p.mode == "coordinated":
            self.ctx = _ckks.context_from_wire(self.s.recv(self.ch, self.arbiter, Stage.KEY_AG)["public_key"])
            self.hctx = {}
        else:
            h = self.hosts[0]
            self.ctx = self.context or _ckks.new_context()
            self.s.send(self.ch, h, Stage.KEY_GH, {"public_key": _ckks.context_to_wire(self.ctx)})
            self.hctx = {h: _ckks.context_from_wire(self.s.recv(self.ch, h, Stage.KEY_HG)["public_key"])}
            self.holder = _ckks.KeyHolder(self.ctx, _ckks.decryption_budget(plan, self.p, self.hosts))

    def gradient(self, at, rows, w) -> np.ndarray:
        ctx, Xb = self.ctx, self.Xq[rows]
        U = _ckks.clip_scores(Xb @ w) + self.Y4[rows]  # z_g + 2 - 4y
        if self.p.mode == "coordinated":
            S = None
            for h in self.hosts:
                z = self.s.recv(self.ch, h, Stage.ZH, **at)["z"]
                v = _ckks.recv_vector(ctx, z, rows.size, f"scores from {h!r}")
                S = v if S is None else S + v
            # fresh E(0): the hosts made the ciphertexts in S and must not be able to strip them
            d = (S.add_plain(U) + ctx.encrypt(np.zeros(rows.size))).to_blob()
            for h in self.hosts:
                self.s.send(self.ch, h, Stage.D, {"d": d}, **at)
            blob, rsum = _ckks.packed_products(ctx, S, Xb)
            self.s.send(self.ch, self.arbiter, Stage.GRAD_GA, {"g": blob}, **at)
            got = self.s.recv(self.ch, self.arbiter, Stage.GRAD_PLAIN_AG, **at)
        else:
            h = self.hosts[0]
            self.s.send(self.ch, h, Stage.U, {"u": ctx.encrypt(U).to_blob()}, **at)
            EZ = _ckks.recv_vector(self.hctx[h], self.s.recv(self.ch, h, Stage.ZH, **at)["z"], rows.size,
                                   f"scores from {h!r}")
            blob, rsum = _ckks.packed_products(self.hctx[h], EZ, Xb)
            self.s.send(self.ch, h, Stage.GRAD_GH, {"g": blob}, **at)
            sums = self.holder.packed_sums(h, self.s.recv(self.ch, h, Stage.GRAD_HG, **at)["g"], "the host's gradient")
            self.s.send(self.ch, h, Stage.GRAD_PLAIN_GH, {"g": sums}, **at)
            got = self.s.recv(self.ch, h, Stage.GRAD_PLAIN_HG, **at)
        G = _ckks.unmask(got["g"], rsum) + Xb.T @ U  # X_gᵀ (z_h + z_g + 2 - 4y) = X_gᵀ 4d
        return G / (4.0 * rows.size)

    def validation_loss(self, at, va, w) -> float:
        ctx, hosts = self.ctx, self.hosts
        Zg = _ckks.clip_scores(self.Xq[va] @ w)
        s = 2.0 * self.y[va].astype(np.float64) - 1.0
        kcoef = 2.0 * Zg - 4.0 * s
        num = float(Zg @ Zg) - 4.0 * float(s @ Zg)
        R = _ckks.masks(va.size)
        if self.p.mode == "coordinated":
            zs = {}
            acc = ctx.encrypt(R)
            for h in hosts:
                zv = self.s.recv(self.ch, h, Stage.ZV, **at)
                zs[h] = _ckks.recv_vector(ctx, zv["z"], va.size, f"validation scores from {h!r}")
                acc = acc + _ckks.recv_vector(ctx, zv["sq"], va.size, f"validation squares from {h!r}")
            for i, h in enumerate(hosts):
                self.s.send(self.ch, h, Stage.ZX, {"z": [zs[o].to_blob() for o in hosts[i + 1 :]]}, **at)
                acc = acc + zs[h].mul_plain(kcoef)
            for h in hosts:
                acc = acc + _ckks.recv_vector(ctx, self.s.recv(self.ch, h, Stage.CROSS, **at)["c"], va.size,
                                              f"cross terms from {h!r}",
                                              products=int(h != hosts[-1]))  # the last host has no later ones
            self.s.send(self.ch, self.arbiter, Stage.LOSS_GA, {"v": acc.to_blob()}, **at)
            lp = self.s.recv(self.ch, self.arbiter, Stage.LOSS_PLAIN_AG, **at)
        else:
            h = hosts[0]
            EZ = _ckks.recv_vector(self.hctx[h], self.s.recv(self.ch, h, Stage.ZV, **at)["z"], va.size,
                                   f"validation scores from {h!r}")
            masked = EZ.mul_plain(kcoef) + self.hctx[h].encrypt(R)
            self.s.send(self.ch, h, Stage.LOSS_GH, {"v": masked.to_blob()}, **at)
            lp = self.s.recv(self.ch, h, Stage.LOSS_PLAIN_HG, **at)
        if type(lp["v"]) is not float or not np.isfinite(lp["v"]):
            raise ProtocolError("hetero_lr: the loss value must be a finite float")
        return float(np.log(2.0) + (num + lp["v"] - float(np.sum(R))) / (8.0 * va.size))


class CKKSHost:
    """A host's CKKS steps (``context``: two-party mode, its private context; default a new one)."""

    checkpointable = False

    def __init__(self, ch, s, X, params: LRParams, *, guest, arbiter, keypair=None):
        self.ch, self.s = ch, s
        self.p, self.guest, self.arbiter, self.context = params, guest, arbiter, keypair
        self.Xq = _design(X)
        self.n_rows, self.n_coef = self.Xq.shape

    def setup(self, plan) -> None:
        g = self.guest
        if self.p.mode == "coordinated":
            self.ctx = self.own = _ckks.context_from_wire(
                self.s.recv(self.ch, self.arbiter, Stage.KEY_AH)["public_key"])
        else:
            self.own = self.context or _ckks.new_context()
            self.s.send(self.ch, g, Stage.KEY_HG, {"public_key": _ckks.context_to_wire(self.own)})
            # the guest's context: residuals travel under it
            self.ctx = _ckks.context_from_wire(self.s.recv(self.ch, g, Stage.KEY_GH)["public_key"])
            self.holder = _ckks.KeyHolder(self.own, _ckks.decryption_budget(plan, self.p, [g], loss_peers=[g]))

    def gradient(self, at, rows, w) -> np.ndarray:
        g, ctx, Xb = self.guest, self.ctx, self.Xq[rows]
        Z = _ckks.clip_scores(Xb @ w)
        self.s.send(self.ch, g, Stage.ZH, {"z": self.own.encrypt(Z).to_blob()}, **at)
        if self.p.mode == "coordinated":
            ED = _ckks.recv_vector(ctx, self.s.recv(self.ch, g, Stage.D, **at)["d"], rows.size, "residual vector")
            blob, rsum = _ckks.packed_products(ctx, ED, Xb)
            self.s.send(self.ch, self.arbiter, Stage.GRAD_HA, {"g": blob}, **at)
            G = _ckks.unmask(self.s.recv(self.ch, self.arbiter, Stage.GRAD_PLAIN_AH, **at)["g"], rsum)
        else:
            EU = _ckks.recv_vector(ctx, self.s.recv(self.ch, g, Stage.U, **at)["u"], rows.size, "residual vector")
            blob, rsum = _ckks.packed_products(ctx, EU, Xb)
            self.s.send(self.ch, g, Stage.GRAD_HG, {"g": blob}, **at)
            sums = self.holder.packed_sums(g, self.s.recv(self.ch, g, Stage.GRAD_GH, **at)["g"], "the guest's gradient")
            self.s.send(self.ch, g, Stage.GRAD_PLAIN_HG, {"g": sums}, **at)
            got = self.s.recv(self.ch, g, Stage.GRAD_PLAIN_GH, **at)
            G = _ckks.unmask(got["g"], rsum) + Xb.T @ Z  # X_hᵀ u + X_hᵀ z_h = X_hᵀ 4d
        return G / (4.0 * rows.size)

    def validate(self, at, va, w) -> None:
        g, ctx = self.guest, self.ctx
        Zv = _ckks.clip_scores(self.Xq[va] @ w)
        if self.p.mode == "coordinated":
            zv = {"z": ctx.encrypt(Zv).to_blob(), "sq": ctx.encrypt(Zv * Zv).to_blob()}
            self.s.send(self.ch, g, Stage.ZV, zv, **at)
            # 2 z_h ⊙ (sum of later hosts' z), re-randomized by a fresh encryption of 0
            cross = ctx.encrypt(np.zeros(Zv.size))
            for blob in self.s.recv(self.ch, g, Stage.ZX, **at)["z"]:
                other = _ckks.recv_vector(ctx, blob, Zv.size, "cross-term vector")
                cross = cross + other.mul_plain(2.0 * Zv)
            self.s.send(self.ch, g, Stage.CROSS, {"c": cross.to_blob()}, **at)
        else:
            own = self.own
            zv = {"z": own.encrypt(Zv).to_blob(), "sq": own.encrypt([0.0]).to_blob()}
            self.s.send(self.ch, g, Stage.ZV, zv, **at)
            v = self.holder.slot_sum(g, self.s.recv(self.ch, g, Stage.LOSS_GH, **at)["v"], Zv.size,
                                     "the masked validation loss")
            self.s.send(self.ch, g, Stage.LOSS_PLAIN_HG, {"v": float(v + Zv @ Zv)}, **at)


class CKKSArbiter:
    """The arbiter's CKKS steps: every decryption checked, flooded, rounded and counted (``_ckks.KeyHolder``)."""

    checkpointable = False

    def __init__(self, ch, s, params: LRParams, *, guest, hosts, keypair=None):
        self.ch, self.s = ch, s
        self.p, self.guest, self.hosts, self.context = params, guest, hosts, keypair

    def setup(self, plan) -> None:
        self.ctx = self.context or _ckks.new_context()
        key = {"public_key": _ckks.context_to_wire(self.ctx)}
        self.s.send(self.ch, self.guest, Stage.KEY_AG, key)
        for h in self.hosts:
            self.s.send(self.ch, h, Stage.KEY_AH, key)
        # every decryption checked, flooded, rounded and counted against the job's plan
        peers = [self.guest, *self.hosts]
        self.holder = _ckks.KeyHolder(self.ctx, _ckks.decryption_budget(plan, self.p, peers, loss_peers=[self.guest]))

    def serve_batch(self, at) -> None:
        """Decrypt each party's packed masked product and return its residue-class sums."""
        for peer, grad, plain in [(self.guest, Stage.GRAD_GA, Stage.GRAD_PLAIN_AG)] + \
                [(h, Stage.GRAD_HA, Stage.GRAD_PLAIN_AH) for h in self.hosts]:
            blob = self.s.recv(self.ch, peer, grad, **at)["g"]
            sums = self.holder.packed_sums(peer, blob, f"the gradient of {peer!r}")
            self.s.send(self.ch, peer, plain, {"g": sums}, **at)

    def serve_loss(self, at, n_val: int) -> None:
        v = self.holder.slot_sum(self.guest, self.s.recv(self.ch, self.guest, Stage.LOSS_GA, **at)["v"], n_val,
                                 "the masked validation loss")
        self.s.send(self.ch, self.guest, Stage.LOSS_PLAIN_AG, {"v": float(v)}, **at)
