"""Paillier strategy of vertical LR: exact fixed-point arithmetic on integers mod ``n``.

One class per role (:class:`PaillierGuest`, :class:`PaillierHost`, :class:`PaillierArbiter`), each with the
cipher-specific steps the role's driver (``guest.py``, ``host.py``, ``arbiter.py``) calls: ``setup`` (keys),
the mini-batch gradient and the validation round. Each party's gradient sums go to the key owner packed into few
ciphertexts under one mask uniform mod n each (:func:`~._common.pack_masked`: one uniform ``r^n``
re-randomization per party and batch). Messages are in ``spec.py``; what each role learns is in
``docs/hetero_lr.md``.
"""

from __future__ import annotations

import secrets

import numpy as np
from gmpy2 import mpz

from ...crypto.paillier import generate_keypair
from ...errors import ProtocolError
from ...models.logistic import FEATURE_FRAC_BITS
from .._spec import decode_public_key, encode_public_key
from ._common import (SCORE_FRAC_BITS, WEIGHT_FRAC_BITS, LRParams, check_scores, encode_scores, feature_codes,
                      loss_from_numerator, pack_masked, to_grad, unmask, unpack)
from ._matvec import column_dot, matvec, warm_pool
from .spec import Stage

__all__ = ["PaillierGuest", "PaillierHost", "PaillierArbiter"]


def _unpacked(values, m, pk, item_bits: int, count: int) -> list[int]:
    """The ``count`` gradient sums from the key owner's decryptions of our packed, masked ciphertexts."""
    return unpack(unmask(values, m, pk.n, len(m)), count, pk.bits, item_bits)


def _key(value):
    """A peer's Paillier public key from the one public-key wire shape (``ProtocolError`` otherwise)."""
    return decode_public_key(value, schemes=("paillier",), protocol="hetero_lr")


class PaillierGuest:
    """The guest's Paillier steps.

    Parameters
    ----------
    X : ndarray of shape (n, f_g)
    y : ndarray of shape (n,)
    params : LRParams
    hosts : list of str
    arbiter : str or None
    keypair : (PublicKey, PrivateKey) or None
        Two-party mode: the guest's key (default: fresh ``key_bits``).
    q : ndarray of object or None
        Row weights as integers ``round(w 2^16)`` (weighted runs).
    """

    checkpointable = True

    def __init__(self, ch, s, X, y, params: LRParams, *, hosts, arbiter, keypair=None, q=None):
        self.ch, self.s = ch, s
        self.p, self.hosts, self.arbiter, self.keypair, self.q = params, hosts, arbiter, keypair, q
        self.K = np.c_[feature_codes(X), np.full(X.shape[0], 1 << FEATURE_FRAC_BITS, dtype=np.int64)]  # last = 1
        self.Xq = self.K.astype(np.float64) / float(1 << FEATURE_FRAC_BITS)
        self.n_coef = self.K.shape[1]
        self.y = y
        self.Y4 = (2 - 4 * y.astype(np.int64)) << SCORE_FRAC_BITS  # (2 - 4y) 2^F

    def setup(self, plan) -> None:
        """Keys: the arbiter's (coordinated), or this guest's and the host's (two-party)."""
        if self.p.mode == "coordinated":
            self.pk = _key(self.s.recv(self.ch, self.arbiter, Stage.KEY_AG)["public_key"])
            self.hpk = {}
        else:
            h = self.hosts[0]
            self.pk, self.sk = self.keypair or generate_keypair(self.p.key_bits)
            self.s.send(self.ch, h, Stage.KEY_GH, {"public_key": encode_public_key(self.pk)})
            self.hpk = {h: _key(self.s.recv(self.ch, h, Stage.KEY_HG)["public_key"])}
            if self.q is not None:  # the host weights its own scores under encryption: E_g(q) ⊙ z_h
                self.s.send(self.ch, h, Stage.WEIGHTS, {"q": self.sk.encrypt_ints(self.q.tolist())})
        warm_pool(max(len(b) for b in plan.batches(0)), self.pk.bits)

    def gradient(self, at, rows, w) -> np.ndarray:
        """The mean Taylor-loss gradient of the guest's coefficients on batch ``rows`` (no L2 term)."""
        q, K = self.q, self.K
        zg = self.Xq[rows] @ w
        check_scores(zg)
        U = encode_scores(zg) + self.Y4[rows]
        if self.p.mode == "coordinated":
            ez = self._recv_scores(at, self.pk, rows.size)
            S = ez[0]
            for v in ez[1:]:
                S = S + v
            if q is not None:  # weighted: [[q ⊙ 4d]] = q ⊙ [[S]] + q ⊙ U; the guest's own part alike
                S = S.mul_plain(q[rows].tolist())
                U = [int(a) * int(b) for a, b in zip(U.tolist(), q[rows].tolist())]
            # for the hosts, never the key owner (the arbiter): the fast fixed-base re-randomization
            ED = S.add_plain(U).obfuscate(for_key_owner=False)
            for h in self.hosts:
                self.s.send(self.ch, h, Stage.D, {"d": ED}, **at)
            gv, m, ib = pack_masked(matvec(S, K[rows]), K[rows], q is not None)
            self.s.send(self.ch, self.arbiter, Stage.GRAD_GA, {"g": gv}, **at)
            got = self.s.recv(self.ch, self.arbiter, Stage.GRAD_PLAIN_AG, **at)
            Gz = _unpacked(got["g"], m, self.pk, ib, self.n_coef)
        else:
            h = self.hosts[0]
            if q is not None:  # weighted: the host gets E(q ⊙ U) and adds E(q) ⊙ z_h itself
                U = [int(a) * int(b) for a, b in zip(U.tolist(), q[rows].tolist())]
            # U needs nothing from the host: send it first so both encryptions run at the same time
            self.s.send(self.ch, h, Stage.U, {"u": self.sk.encrypt_ints(U)}, **at)
            (EZ,) = self._recv_scores(at, self.hpk[h], rows.size)
            if q is not None:
                EZ = EZ.mul_plain(q[rows].tolist())
            gv, m, ib = pack_masked(matvec(EZ, K[rows]), K[rows], q is not None)
            self.s.send(self.ch, h, Stage.GRAD_GH, {"g": gv}, **at)
            # decrypt the host's packed gradient part X_hᵀ u + m_h (m_h uniform mod n: reveals nothing)
            gh = self.s.recv(self.ch, h, Stage.GRAD_HG, **at)
            vals = self.sk.decrypt_ints(self.pk.vector_from_blob(gh["g"]))
            self.s.send(self.ch, h, Stage.GRAD_PLAIN_GH, {"g": [int(v) for v in vals]}, **at)
            got = self.s.recv(self.ch, h, Stage.GRAD_PLAIN_HG, **at)
            Gz = _unpacked(got["g"], m, self.hpk[h], ib, self.n_coef)
        Gu = K[rows].T.astype(object) @ np.asarray(U, dtype=object)
        G = [int(a) + int(c) for a, c in zip(Gu, Gz)]
        return to_grad(G, rows.size, 0 if q is None else WEIGHT_FRAC_BITS)

    def _recv_scores(self, at, pk, size) -> list:
        out = []
        for h in self.hosts:
            v = pk.vector_from_blob(self.s.recv(self.ch, h, Stage.ZH, **at)["z"])
            if len(v) != size:
                raise ProtocolError(f"hetero_lr: {h!r} sent {len(v)} scores for a batch of {size}")
            out.append(v)
        return out

    def validation_loss(self, at, va, w) -> float:
        """The Taylor loss on the validation rows ``va`` (joint model ``w`` of every party)."""
        y, hosts = self.y, self.hosts
        Zg = encode_scores(self.Xq[va] @ w).astype(object)
        s = (2 * y[va].astype(np.int64) - 1).astype(object)
        kcoef = (2 * encode_scores(self.Xq[va] @ w) - (s.astype(np.int64) << (SCORE_FRAC_BITS + 2))).astype(np.int64)
        num = int(np.dot(Zg, Zg)) - (int(np.dot(s, Zg)) << (SCORE_FRAC_BITS + 2))
        if self.p.mode == "coordinated":
            pk = self.pk
            nsq = mpz(pk.nsquare)
            zs, sqs = {}, {}
            for h in hosts:
                zv = self.s.recv(self.ch, h, Stage.ZV, **at)
                zs[h] = pk.vector_from_blob(zv["z"])
                sqs[h] = pk.vector_from_blob(zv["sq"])
                if len(zs[h]) != va.size or len(sqs[h]) != 1:
                    raise ProtocolError(f"hetero_lr: validation scores from {h!r} have the wrong length")
            acc = pk.encrypt_zeros(1)
            for i, h in enumerate(hosts):
                later = hosts[i + 1 :]
                self.s.send(self.ch, h, Stage.ZX, {"z": [zs[o].obfuscate(for_key_owner=False) for o in later]}, **at)
                acc = acc + sqs[h] + pk.vector_from_raw([column_dot(zs[h].raw_ints(), kcoef, nsq)])
            for i, h in enumerate(hosts):
                cv = pk.vector_from_blob(self.s.recv(self.ch, h, Stage.CROSS, **at)["c"])
                n_later = len(hosts) - i - 1
                if len(cv) != max(n_later, 1):
                    raise ProtocolError(f"hetero_lr: cross terms from {h!r} have the wrong length")
                if n_later:
                    acc = acc + cv.sum().mul_plain(2)
            r = secrets.randbelow(pk.n)
            self.s.send(self.ch, self.arbiter, Stage.LOSS_GA, {"v": acc.add_plain([r])}, **at)
            lp = self.s.recv(self.ch, self.arbiter, Stage.LOSS_PLAIN_AG, **at)
            nn = pk.n
        else:
            h = hosts[0]
            hpk = self.hpk[h]
            EZ = hpk.vector_from_blob(self.s.recv(self.ch, h, Stage.ZV, **at)["z"])
            if len(EZ) != va.size:
                raise ProtocolError(f"hetero_lr: validation scores from {h!r} have the wrong length")
            part = hpk.vector_from_raw([column_dot(EZ.raw_ints(), kcoef, mpz(hpk.nsquare))])
            r = secrets.randbelow(hpk.n)
            self.s.send(self.ch, h, Stage.LOSS_GH, {"v": part.add_plain([r])}, **at)
            lp = self.s.recv(self.ch, h, Stage.LOSS_PLAIN_HG, **at)
            nn = hpk.n
        if not 0 <= lp["v"] < nn:
            raise ProtocolError("hetero_lr: loss value out of range")
        x = (lp["v"] - r) % nn
        x = x - nn if x > nn // 2 else x
        return loss_from_numerator(num + x, va.size)


class PaillierHost:
    """A host's Paillier steps (``keypair``: two-party mode, this host's key; default fresh ``key_bits``)."""

    checkpointable = True

    def __init__(self, ch, s, X, params: LRParams, *, guest, arbiter, keypair=None):
        self.ch, self.s = ch, s
        self.p, self.guest, self.arbiter, self.keypair = params, guest, arbiter, keypair
        self.K = feature_codes(X)
        self.Xq = self.K.astype(np.float64) / float(1 << FEATURE_FRAC_BITS)
        self.n_rows, self.n_coef = self.K.shape

    def setup(self, plan) -> None:
        """Keys (the arbiter's, or this host's and the guest's) and, weighted two-party, ``E_g(q)``."""
        g = self.guest
        if self.p.mode == "coordinated":
            self.pk = _key(self.s.recv(self.ch, self.arbiter, Stage.KEY_AH)["public_key"])
            self.own_pk = self.own_sk = None
        else:
            self.own_pk, self.own_sk = self.keypair or generate_keypair(self.p.key_bits)
            self.s.send(self.ch, g, Stage.KEY_HG, {"public_key": encode_public_key(self.own_pk)})
            self.pk = _key(self.s.recv(self.ch, g, Stage.KEY_GH)["public_key"])
        self.EQ = None
        if self.p.weighted and self.p.mode == "two_party":
            # E_g(q) of every row (semantically secure under the guest's key): weights this host's own scores
            self.EQ = self.pk.vector_from_blob(self.s.recv(self.ch, g, Stage.WEIGHTS)["q"])
            if len(self.EQ) != self.n_rows:
                raise ProtocolError(f"hetero_lr: {len(self.EQ)} encrypted weights for {self.n_rows} rows")
        warm_pool(max(len(b) for b in plan.batches(0)), self.pk.bits)

    def gradient(self, at, rows, w) -> np.ndarray:
        """The mean Taylor-loss gradient of this host's coefficients on batch ``rows`` (no L2 term)."""
        g, K, f = self.guest, self.K, self.n_coef
        zh = self.Xq[rows] @ w
        check_scores(zh)
        Z = encode_scores(zh)
        weighted = self.p.weighted
        if self.p.mode == "coordinated":
            self.s.send(self.ch, g, Stage.ZH, {"z": self.pk.encrypt_ints(Z)}, **at)
            ED = self.pk.vector_from_blob(self.s.recv(self.ch, g, Stage.D, **at)["d"])
            if len(ED) != rows.size:
                raise ProtocolError("hetero_lr: residual vector has the wrong length")
            gv, m, ib = pack_masked(matvec(ED, K[rows]), K[rows], weighted)
            self.s.send(self.ch, self.arbiter, Stage.GRAD_HA, {"g": gv}, **at)
            G = _unpacked(self.s.recv(self.ch, self.arbiter, Stage.GRAD_PLAIN_AH, **at)["g"], m, self.pk, ib, f)
        else:
            self.s.send(self.ch, g, Stage.ZH, {"z": self.own_sk.encrypt_ints(Z)}, **at)
            EU = self.pk.vector_from_blob(self.s.recv(self.ch, g, Stage.U, **at)["u"])
            if len(EU) != rows.size:
                raise ProtocolError("hetero_lr: residual vector has the wrong length")
            if self.EQ is not None:  # E(q ⊙ 4d) = E(q ⊙ u) ⊕ E(q) ⊙ z_h: the whole weighted residual, encrypted
                EU = EU + self.EQ[rows].mul_plain(Z.tolist())
            gv, m, ib = pack_masked(matvec(EU, K[rows]), K[rows], weighted)
            self.s.send(self.ch, g, Stage.GRAD_HG, {"g": gv}, **at)
            # decrypt the guest's packed gradient part X_gᵀ z_h + m_g (m_g uniform mod n: reveals nothing)
            gg = self.s.recv(self.ch, g, Stage.GRAD_GH, **at)
            vals = self.own_sk.decrypt_ints(self.own_pk.vector_from_blob(gg["g"]))
            self.s.send(self.ch, g, Stage.GRAD_PLAIN_HG, {"g": [int(v) for v in vals]}, **at)
            Gu = _unpacked(self.s.recv(self.ch, g, Stage.GRAD_PLAIN_GH, **at)["g"], m, self.pk, ib, f)
            if self.EQ is not None:  # the weighted own part was summed under encryption
                G = Gu
            else:  # own part X_hᵀ z_h in the clear: 4d 2^F = U + Z_h
                Gz = K[rows].T.astype(object) @ Z.astype(object)
                G = [int(a) + int(c) for a, c in zip(Gu, Gz)]
        # weighted rows: the guest multiplied the residual by q = round(w 2^16) before sending it
        return to_grad(G, rows.size, WEIGHT_FRAC_BITS if self.p.weighted else 0)

    def validate(self, at, va, w) -> None:
        """This host's part of the validation loss round."""
        g, pk = self.guest, self.pk
        Zv = encode_scores(self.Xq[va] @ w)
        sq = int(np.dot(Zv.astype(object), Zv.astype(object)))
        if self.p.mode == "coordinated":
            self.s.send(self.ch, g, Stage.ZV, {"z": pk.encrypt_ints(Zv), "sq": pk.encrypt_ints([sq])}, **at)
            cross = []
            for blob in self.s.recv(self.ch, g, Stage.ZX, **at)["z"]:
                other = pk.vector_from_blob(blob)
                if len(other) != Zv.size:
                    raise ProtocolError("hetero_lr: cross-term vector has the wrong length")
                cross.append(column_dot(other.raw_ints(), Zv, mpz(pk.nsquare)))
            cv = pk.vector_from_raw(cross) if cross else pk.encrypt_ints([0])
            self.s.send(self.ch, g, Stage.CROSS, {"c": cv}, **at)
        else:
            own_pk, own_sk = self.own_pk, self.own_sk
            self.s.send(self.ch, g, Stage.ZV, {"z": own_sk.encrypt_ints(Zv), "sq": own_sk.encrypt_ints([0])}, **at)
            (v,) = own_sk.decrypt_ints(own_pk.vector_from_blob(self.s.recv(self.ch, g, Stage.LOSS_GH, **at)["v"]))
            self.s.send(self.ch, g, Stage.LOSS_PLAIN_HG, {"v": int((int(v) + sq) % own_pk.n)}, **at)


class PaillierArbiter:
    """The arbiter's Paillier steps: decrypt what the parties masked (``keypair``: default fresh ``key_bits``)."""

    checkpointable = True

    def __init__(self, ch, s, params: LRParams, *, guest, hosts, keypair=None):
        self.ch, self.s = ch, s
        self.p, self.guest, self.hosts, self.keypair = params, guest, hosts, keypair

    def setup(self, plan) -> None:
        self.pk, self.sk = self.keypair or generate_keypair(self.p.key_bits)
        key = {"public_key": encode_public_key(self.pk)}
        self.s.send(self.ch, self.guest, Stage.KEY_AG, key)
        for h in self.hosts:
            self.s.send(self.ch, h, Stage.KEY_AH, key)

    def serve_batch(self, at) -> None:
        """Decrypt each party's masked gradient sums of one batch."""
        for peer, grad, plain in [(self.guest, Stage.GRAD_GA, Stage.GRAD_PLAIN_AG)] + \
                [(h, Stage.GRAD_HA, Stage.GRAD_PLAIN_AH) for h in self.hosts]:
            vals = self.sk.decrypt_ints(self.pk.vector_from_blob(self.s.recv(self.ch, peer, grad, **at)["g"]))
            self.s.send(self.ch, peer, plain, {"g": [int(v) for v in vals]}, **at)

    def serve_loss(self, at, n_val: int) -> None:
        """Decrypt the guest's masked validation loss numerator."""
        cv = self.pk.vector_from_blob(self.s.recv(self.ch, self.guest, Stage.LOSS_GA, **at)["v"])
        (v,) = self.sk.decrypt_ints(cv[0:1])
        self.s.send(self.ch, self.guest, Stage.LOSS_PLAIN_AG, {"v": int(v)}, **at)
