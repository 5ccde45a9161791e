"""Guest (label holder) side of vertical LR: keeps its coefficients and the intercept, decides early stopping."""

from __future__ import annotations

import secrets
import time

import numpy as np
from gmpy2 import mpz

from ...crypto.paillier import PublicKey, generate_keypair
from ...errors import DataError, ProtocolError
from ...models.logistic import FEATURE_FRAC_BITS
from . import _checkpoint, _ckks, spec
from ._common import (SCORE_FRAC_BITS, WEIGHT_FRAC_BITS, LRParams, Plan, encode_scores, feature_codes,
                      loss_from_numerator, masks, to_grad, unmask)
from ._matvec import column_dot, matvec, warm_pool
from .spec import Stage

__all__ = ["run_guest"]


def run_guest(channel, X, y, params: LRParams, *, hosts: list[str], arbiter: str | None = None, keypair=None,
              check_cancelled=None, sample_weight=None, checkpoint=None) -> dict:
    """Train the guest's coefficients and intercept.

    Parameters
    ----------
    channel : Channel
    X : ndarray of shape (n, f_g)
        The guest's design matrix (standardized or WOE), aligned rows.
    y : ndarray of shape (n,)
        Binary labels.
    params : LRParams
    hosts : list of str
    arbiter : str, optional
        Coordinated mode only.
    keypair : optional
        Two-party mode: the guest's Paillier key pair (default: fresh ``key_bits``), or with
        ``backend="ckks"`` its private :class:`~fedcredit.crypto.ckks.CKKSContext`.
    sample_weight : ndarray of shape (n,), optional
        Row weights (times ``params.class_weight``; Paillier only). Every
        party's gradient becomes ``Xᵀ (w ⊙ d) / b`` with ``q = round(w 2^16)``:
        coordinated, the guest multiplies the encrypted residual ``[[4d]]`` by
        ``q`` before the hosts see it; two-party, it sends ``E_g(q ⊙ U)`` and,
        once, ``E_g(q)``, with which the host weights its own scores under
        encryption. No weight leaves the guest in the clear.
    checkpoint : Checkpoint, optional
        Per-epoch checkpoints (``_checkpoint``): saved after every epoch, resumed from when given a round.

    Returns
    -------
    dict
        ``coef``, ``intercept`` (best epoch), ``n_epochs``, ``history`` (per epoch: ``val_loss`` and wall
        ``seconds``), ``setup_seconds`` (one-time: keys/contexts generated, exchanged and loaded).
    """
    y = np.asarray(y)
    uy = np.unique(y)
    if not np.all(np.isin(uy, (0, 1))) or uy.size < 2:
        raise DataError(f"the label must be binary 0/1 with both classes; got values {uy[:5].tolist()}")
    if params.mode == "two_party" and len(hosts) != 1:
        raise DataError(f"mode='two_party' needs exactly one host (got {len(hosts)}); use mode='coordinated'")
    if params.mode == "coordinated" and arbiter is None:
        raise DataError("mode='coordinated' needs an arbiter party")
    q = None
    if params.weighted or sample_weight is not None:
        if not params.weighted:
            raise DataError("sample_weight needs weight_column or class_weight set on every party (the hosts must "
                            "know the residual is weighted)")
        from ...models.tree.gbdt import row_weights

        rw = row_weights(y, sample_weight, params.class_weight)
        if params.backend == "ckks":
            raise DataError("weights need backend='paillier'")
        q = np.rint(rw * float(1 << WEIGHT_FRAC_BITS)).astype(np.int64).astype(object)
    if params.backend == "ckks":
        return _run_guest_ckks(channel, X, y, params, hosts=hosts, arbiter=arbiter, context=keypair,
                               check_cancelled=check_cancelled)
    K = np.c_[feature_codes(X), np.full(X.shape[0], 1 << FEATURE_FRAC_BITS, dtype=np.int64)]  # last = intercept
    Xq = K.astype(np.float64) / float(1 << FEATURE_FRAC_BITS)
    n, f = K.shape
    plan = Plan(n, params)
    two = 1 << (SCORE_FRAC_BITS + 1)  # 2 * 2^F
    Y4 = (2 - 4 * y.astype(np.int64)) << SCORE_FRAC_BITS  # (2 - 4y) 2^F
    t_setup = time.perf_counter()
    setup = channel.sub("setup")
    if params.mode == "coordinated":
        msg = spec.expect(Stage.PUBKEY, setup.recv(arbiter, Stage.PUBKEY.value), sender_role="arbiter")
        pk = PublicKey.from_wire(msg["public_key"])
        hpk = {}
    else:
        pk, sk = keypair or generate_keypair(params.key_bits)
        setup.send(hosts[0], Stage.PUBKEY.value, {"public_key": pk.to_wire()})
        msg = spec.expect(Stage.PUBKEY, setup.recv(hosts[0], Stage.PUBKEY.value), sender_role="host")
        hpk = {hosts[0]: PublicKey.from_wire(msg["public_key"])}
        if q is not None:  # the host weights its own scores under encryption: E_g(q) ⊙ z_h
            setup.send(hosts[0], Stage.WEIGHTS.value, {"q": sk.encrypt_ints(q.tolist())})
    warm_pool(max(len(b) for b in plan.batches(0)), pk.bits)
    setup_seconds = time.perf_counter() - t_setup  # keys/contexts: made, sent, loaded
    w = np.zeros(f)
    reg = np.r_[np.ones(f - 1), 0.0]  # the intercept is not penalized
    best = (np.inf, w.copy(), 0)
    bad = 0
    history = []
    start, stopped = 0, False
    ck = _checkpoint.restore(checkpoint, "guest")
    if ck is not None:  # a resumed job: continue after the last epoch every party finished
        start, stopped, w, bad, history = ck["epoch"], ck["stopped"], ck["w"], ck["bad"], ck["history"]
        best = (ck["best_loss"], ck["best_w"], ck["best_epoch"])
    for epoch in range(start, start if stopped else params.max_epochs):
        t_epoch, c_epoch = time.perf_counter(), time.process_time()
        if check_cancelled:
            check_cancelled()
        lr = plan.lr(epoch)
        for b, rows in enumerate(plan.batches(epoch)):
            ch = channel.sub(f"e-{epoch}", f"b-{b}")
            U = encode_scores(Xq[rows] @ w) + Y4[rows]
            if params.mode == "coordinated":
                ez = _recv_scores(ch, hosts, pk, rows.size)
                S = ez[0]
                for v in ez[1:]:
                    S = S + v
                if q is not None:  # weighted: [[q ⊙ 4d]] = q ⊙ [[S]] + q ⊙ U; the guest's own part alike
                    S = S.mul_plain(q[rows].tolist())
                    U = [int(a) * int(b) for a, b in zip(U.tolist(), q[rows].tolist())]
                # for the hosts, never the key owner (the arbiter): the fast fixed-base re-randomization
                ED = S.add_plain(U).obfuscate(for_key_owner=False)
                ch.broadcast(hosts, Stage.D.value, {"d": ED})
                m = masks(f, pk.n)
                ch.send(arbiter, Stage.GRAD.value, {"g": matvec(S, K[rows]).add_plain(m)})
                got = spec.expect(Stage.GRAD_PLAIN, ch.recv(arbiter, Stage.GRAD_PLAIN.value), sender_role="arbiter")
                Gz = unmask(got["g"], m, pk.n, f)
            else:
                h = hosts[0]
                if q is not None:  # weighted: the host gets E(q ⊙ U) and adds E(q) ⊙ z_h itself
                    U = [int(a) * int(b) for a, b in zip(U.tolist(), q[rows].tolist())]
                # U needs nothing from the host: send it first so both encryptions run at the same time
                ch.send(h, Stage.U.value, {"u": sk.encrypt_ints(U)})
                (EZ,) = _recv_scores(ch, hosts, hpk[h], rows.size)
                if q is not None:
                    EZ = EZ.mul_plain(q[rows].tolist())
                m = masks(f, hpk[h].n)
                ch.send(h, Stage.GRAD.value, {"g": matvec(EZ, K[rows]).add_plain(m)})
                # decrypt the host's masked gradient part X_hᵀ u + m_h (uniform: reveals nothing)
                gh = spec.expect(Stage.GRAD, ch.recv(h, Stage.GRAD.value), sender_role="host")
                vals = sk.decrypt_ints(pk.vector_from_blob(gh["g"]))
                ch.send(h, Stage.GRAD_PLAIN.value, {"g": [int(v) for v in vals]})
                got = spec.expect(Stage.GRAD_PLAIN, ch.recv(h, Stage.GRAD_PLAIN.value), sender_role="host")
                Gz = unmask(got["g"], m, hpk[h].n, f)
            Gu = K[rows].T.astype(object) @ np.asarray(U, dtype=object)
            G = [int(a) + int(c) for a, c in zip(Gu, Gz)]
            grad = to_grad(G, rows.size, 0 if q is None else WEIGHT_FRAC_BITS) + params.alpha * reg * w
            w = w - lr * grad
        rec = {"epoch": epoch, "learning_rate": lr}
        if plan.valid.size:
            va = plan.valid
            ch = channel.sub(f"e-{epoch}", "val")
            Zg = encode_scores(Xq[va] @ w).astype(object)
            s = (2 * y[va].astype(np.int64) - 1).astype(object)
            kcoef = (2 * encode_scores(Xq[va] @ w) - (s.astype(np.int64) << (SCORE_FRAC_BITS + 2))).astype(np.int64)
            num = int(np.dot(Zg, Zg)) - (int(np.dot(s, Zg)) << (SCORE_FRAC_BITS + 2))
            if params.mode == "coordinated":
                nsq = mpz(pk.nsquare)
                zs, sqs = {}, {}
                for h in hosts:
                    zv = spec.expect(Stage.ZV, ch.recv(h, Stage.ZV.value), sender_role="host")
                    zs[h] = pk.vector_from_blob(zv["z"])
                    sqs[h] = pk.vector_from_blob(zv["sq"])
                    if len(zs[h]) != va.size or len(sqs[h]) != 1:
                        raise ProtocolError(f"hetero_lr: validation scores from {h!r} have the wrong length")
                acc = pk.encrypt_zeros(1)
                for i, h in enumerate(hosts):
                    later = hosts[i + 1 :]
                    ch.send(h, Stage.ZX.value, {"z": [zs[o].obfuscate(for_key_owner=False) for o in later]})
                    acc = acc + sqs[h] + pk.vector_from_raw([column_dot(zs[h].raw_ints(), kcoef, nsq)])
                for i, h in enumerate(hosts):
                    cr = spec.expect(Stage.CROSS, ch.recv(h, Stage.CROSS.value), sender_role="host")
                    cv = pk.vector_from_blob(cr["c"])
                    n_later = len(hosts) - i - 1
                    if len(cv) != max(n_later, 1):
                        raise ProtocolError(f"hetero_lr: cross terms from {h!r} have the wrong length")
                    if n_later:
                        acc = acc + cv.sum().mul_plain(2)
                r = secrets.randbelow(pk.n)
                ch.send(arbiter, Stage.LOSS.value, {"v": acc.add_plain([r])})
                lp = spec.expect(Stage.LOSS_PLAIN, ch.recv(arbiter, Stage.LOSS_PLAIN.value), sender_role="arbiter")
                nn = pk.n
            else:
                h = hosts[0]
                zv = spec.expect(Stage.ZV, ch.recv(h, Stage.ZV.value), sender_role="host")
                EZ = hpk[h].vector_from_blob(zv["z"])
                if len(EZ) != va.size:
                    raise ProtocolError(f"hetero_lr: validation scores from {h!r} have the wrong length")
                part = hpk[h].vector_from_raw([column_dot(EZ.raw_ints(), kcoef, mpz(hpk[h].nsquare))])
                r = secrets.randbelow(hpk[h].n)
                ch.send(h, Stage.LOSS.value, {"v": part.add_plain([r])})
                lp = spec.expect(Stage.LOSS_PLAIN, ch.recv(h, Stage.LOSS_PLAIN.value), sender_role="host")
                nn = hpk[h].n
            if not 0 <= lp["v"] < nn:
                raise ProtocolError("hetero_lr: loss value out of range")
            x = (lp["v"] - r) % nn
            x = x - nn if x > nn // 2 else x
            vl = loss_from_numerator(num + x, va.size)
            rec["val_loss"] = vl
            improved = vl < best[0] - params.tol
            if improved:
                best, bad = (vl, w.copy(), epoch + 1), 0
            else:
                bad += 1
            stop = bad >= params.n_iter_no_change or epoch == params.max_epochs - 1
            ch.broadcast(hosts + ([arbiter] if params.mode == "coordinated" else []), Stage.DECISION.value,
                         {"improved": bool(improved), "stop": bool(stop)})
            rec["seconds"] = time.perf_counter() - t_epoch
            rec["cpu_seconds"] = time.process_time() - c_epoch  # this process (not pool workers)
            history.append(rec)
            _checkpoint.save(checkpoint, "guest", epoch + 1, w=w, best_loss=best[0], best_w=best[1],
                             best_epoch=best[2], bad=bad, history=history, stopped=stop)
            if stop:
                break
        else:
            best = (np.nan, w.copy(), epoch + 1)
            rec["seconds"] = time.perf_counter() - t_epoch
            rec["cpu_seconds"] = time.process_time() - c_epoch  # this process (not pool workers)
            history.append(rec)
            _checkpoint.save(checkpoint, "guest", epoch + 1, w=w, best_loss=best[0], best_w=best[1],
                             best_epoch=best[2], bad=bad, history=history, stopped=False)
    _, wb, n_ep = best
    return {"coef": wb[:-1], "intercept": float(wb[-1]), "n_epochs": n_ep, "history": history,
            "setup_seconds": setup_seconds}


def _run_guest_ckks(channel, X, y, params: LRParams, *, hosts, arbiter, context, check_cancelled) -> dict:
    """CKKS variant of :func:`run_guest` (same messages, floats; see ``_ckks.py``)."""
    K = feature_codes(X)
    Xq = np.c_[K.astype(np.float64) / float(1 << FEATURE_FRAC_BITS), np.ones(X.shape[0])]  # last = intercept
    Xq = np.clip(Xq, -_ckks.FEATURE_CLIP, _ckks.FEATURE_CLIP)  # what packed_products multiplies (bounded values)
    n, f = Xq.shape
    plan = Plan(n, params)
    Y4 = 2.0 - 4.0 * y.astype(np.float64)
    t_setup = time.perf_counter()
    setup = channel.sub("setup")
    if params.mode == "coordinated":
        msg = spec.expect(Stage.PUBKEY, setup.recv(arbiter, Stage.PUBKEY.value), sender_role="arbiter")
        ctx = _ckks.context_from_wire(msg["public_key"])
        hctx = {}
    else:
        ctx = context or _ckks.new_context()
        setup.send(hosts[0], Stage.PUBKEY.value, {"public_key": _ckks.context_to_wire(ctx)})
        msg = spec.expect(Stage.PUBKEY, setup.recv(hosts[0], Stage.PUBKEY.value), sender_role="host")
        hctx = {hosts[0]: _ckks.context_from_wire(msg["public_key"])}
        holder = _ckks.KeyHolder(ctx, _ckks.decryption_budget(plan, params, hosts))
    setup_seconds = time.perf_counter() - t_setup  # keys/contexts: made, sent, loaded
    w = np.zeros(f)
    reg = np.r_[np.ones(f - 1), 0.0]
    best = (np.inf, w.copy(), 0)
    bad = 0
    history = []
    for epoch in range(params.max_epochs):
        t_epoch, c_epoch = time.perf_counter(), time.process_time()
        if check_cancelled:
            check_cancelled()
        lr = plan.lr(epoch)
        for b, rows in enumerate(plan.batches(epoch)):
            ch = channel.sub(f"e-{epoch}", f"b-{b}")
            Xb = Xq[rows]
            U = _ckks.clip_scores(Xb @ w) + Y4[rows]  # z_g + 2 - 4y
            if params.mode == "coordinated":
                S = None
                for h in hosts:
                    msg = spec.expect(Stage.ZH, ch.recv(h, Stage.ZH.value), sender_role="host")
                    v = _ckks.recv_vector(ctx, msg["z"], rows.size, f"scores from {h!r}")
                    S = v if S is None else S + v
                # fresh E(0): the hosts made the ciphertexts in S and must not be able to strip them
                ch.broadcast(hosts, Stage.D.value, {"d": (S.add_plain(U) + ctx.encrypt(np.zeros(rows.size))).to_blob()})
                blob, rsum = _ckks.packed_products(ctx, S, Xb)
                ch.send(arbiter, Stage.GRAD.value, {"g": blob})
                got = spec.expect(Stage.GRAD_PLAIN, ch.recv(arbiter, Stage.GRAD_PLAIN.value), sender_role="arbiter")
            else:
                h = hosts[0]
                ch.send(h, Stage.U.value, {"u": ctx.encrypt(U).to_blob()})
                msg = spec.expect(Stage.ZH, ch.recv(h, Stage.ZH.value), sender_role="host")
                EZ = _ckks.recv_vector(hctx[h], msg["z"], rows.size, f"scores from {h!r}")
                blob, rsum = _ckks.packed_products(hctx[h], EZ, Xb)
                ch.send(h, Stage.GRAD.value, {"g": blob})
                gh = spec.expect(Stage.GRAD, ch.recv(h, Stage.GRAD.value), sender_role="host")
                sums = holder.packed_sums(h, gh["g"], "the host's gradient")
                ch.send(h, Stage.GRAD_PLAIN.value, {"g": sums})
                got = spec.expect(Stage.GRAD_PLAIN, ch.recv(h, Stage.GRAD_PLAIN.value), sender_role="host")
            Gz = _ckks.unmask(got["g"], rsum)
            G = Gz + Xb.T @ U  # X_gᵀ (z_h + z_g + 2 - 4y) = X_gᵀ 4d
            grad = G / (4.0 * rows.size) + params.alpha * reg * w
            w = w - lr * grad
        rec = {"epoch": epoch, "learning_rate": lr}
        if plan.valid.size:
            va = plan.valid
            ch = channel.sub(f"e-{epoch}", "val")
            Zg = _ckks.clip_scores(Xq[va] @ w)
            s = 2.0 * y[va].astype(np.float64) - 1.0
            kcoef = 2.0 * Zg - 4.0 * s
            num = float(Zg @ Zg) - 4.0 * float(s @ Zg)
            R = _ckks.masks(va.size)
            if params.mode == "coordinated":
                zs = {}
                acc = ctx.encrypt(R)
                for h in hosts:
                    zv = spec.expect(Stage.ZV, ch.recv(h, Stage.ZV.value), sender_role="host")
                    zs[h] = _ckks.recv_vector(ctx, zv["z"], va.size, f"validation scores from {h!r}")
                    acc = acc + _ckks.recv_vector(ctx, zv["sq"], va.size, f"validation squares from {h!r}")
                for i, h in enumerate(hosts):
                    ch.send(h, Stage.ZX.value, {"z": [zs[o].to_blob() for o in hosts[i + 1 :]]})
                    acc = acc + zs[h].mul_plain(kcoef)
                for h in hosts:
                    cr = spec.expect(Stage.CROSS, ch.recv(h, Stage.CROSS.value), sender_role="host")
                    acc = acc + _ckks.recv_vector(ctx, cr["c"], va.size, f"cross terms from {h!r}",
                                                  products=int(h != hosts[-1]))  # the last host has no later ones
                ch.send(arbiter, Stage.LOSS.value, {"v": acc.to_blob()})
                lp = spec.expect(Stage.LOSS_PLAIN, ch.recv(arbiter, Stage.LOSS_PLAIN.value), sender_role="arbiter")
            else:
                h = hosts[0]
                zv = spec.expect(Stage.ZV, ch.recv(h, Stage.ZV.value), sender_role="host")
                EZ = _ckks.recv_vector(hctx[h], zv["z"], va.size, f"validation scores from {h!r}")
                ch.send(h, Stage.LOSS.value, {"v": (EZ.mul_plain(kcoef) + hctx[h].encrypt(R)).to_blob()})
                lp = spec.expect(Stage.LOSS_PLAIN, ch.recv(h, Stage.LOSS_PLAIN.value), sender_role="host")
            if type(lp["v"]) is not float or not np.isfinite(lp["v"]):
                raise ProtocolError("hetero_lr: the loss value must be a finite float")
            vl = float(np.log(2.0) + (num + lp["v"] - float(np.sum(R))) / (8.0 * va.size))
            rec["val_loss"] = vl
            improved = vl < best[0] - params.tol
            if improved:
                best, bad = (vl, w.copy(), epoch + 1), 0
            else:
                bad += 1
            stop = bad >= params.n_iter_no_change or epoch == params.max_epochs - 1
            ch.broadcast(hosts + ([arbiter] if params.mode == "coordinated" else []), Stage.DECISION.value,
                         {"improved": bool(improved), "stop": bool(stop)})
            rec["seconds"] = time.perf_counter() - t_epoch
            rec["cpu_seconds"] = time.process_time() - c_epoch  # this process (not pool workers)
            history.append(rec)
            if stop:
                break
        else:
            best = (np.nan, w.copy(), epoch + 1)
            rec["seconds"] = time.perf_counter() - t_epoch
            rec["cpu_seconds"] = time.process_time() - c_epoch  # this process (not pool workers)
            history.append(rec)
    _, wb, n_ep = best
    return {"coef": wb[:-1], "intercept": float(wb[-1]), "n_epochs": n_ep, "history": history,
            "setup_seconds": setup_seconds}


def _recv_scores(ch, hosts, pk, size):
    out = []
    for h in hosts:
        msg = spec.expect(Stage.ZH, ch.recv(h, Stage.ZH.value), sender_role="host")
        v = pk.vector_from_blob(msg["z"])
        if len(v) != size:
            raise ProtocolError(f"hetero_lr: {h!r} sent {len(v)} scores for a batch of {size}")
        out.append(v)
    return out
