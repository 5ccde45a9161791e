"""Host side of vertical LR: keeps its own weights, never sees labels, residuals or gradients of others."""

from __future__ import annotations

import time

import numpy as np
from gmpy2 import mpz

from ...crypto.paillier import PublicKey, generate_keypair
from ...errors import ProtocolError
from ...models.logistic import FEATURE_FRAC_BITS
from . import _checkpoint, _ckks, spec
from ._common import WEIGHT_FRAC_BITS, LRParams, Plan, encode_scores, feature_codes, masks, to_grad, unmask
from ._matvec import column_dot, matvec, warm_pool
from .spec import Stage

__all__ = ["run_host"]


def run_host(channel, X, params: LRParams, *, guest: str, arbiter: str | None = None, keypair=None,
             check_cancelled=None, checkpoint=None) -> dict:
    """Train this host's coefficients.

    Parameters
    ----------
    channel : Channel
    X : ndarray of shape (n, f_h)
        This host's design matrix (standardized or WOE), rows in the aligned order.
    params : LRParams
    guest, arbiter : str
        Peer names (``arbiter`` only in coordinated mode).
    keypair : (PublicKey, PrivateKey), optional
        Two-party mode: this host's key (default: a fresh ``key_bits`` key).
    checkpoint : Checkpoint, optional
        Per-epoch checkpoints (``_checkpoint``).

    Returns
    -------
    dict
        ``coef`` (ndarray, best epoch), ``n_epochs``, ``history`` (with wall ``seconds`` per epoch),
        ``setup_seconds``.
    """
    if params.backend == "ckks":
        return _run_host_ckks(channel, X, params, guest=guest, arbiter=arbiter, context=keypair,
                              check_cancelled=check_cancelled)
    K = feature_codes(X)
    Xq = K.astype(np.float64) / float(1 << FEATURE_FRAC_BITS)
    n, f = K.shape
    plan = Plan(n, params)
    t_setup = time.perf_counter()
    setup = channel.sub("setup")
    if params.mode == "coordinated":
        msg = spec.expect(Stage.PUBKEY, setup.recv(arbiter, Stage.PUBKEY.value), sender_role="arbiter")
        pk = PublicKey.from_wire(msg["public_key"])
        own_pk = own_sk = None
    else:
        own_pk, own_sk = keypair or generate_keypair(params.key_bits)
        setup.send(guest, Stage.PUBKEY.value, {"public_key": own_pk.to_wire()})
        msg = spec.expect(Stage.PUBKEY, setup.recv(guest, Stage.PUBKEY.value), sender_role="guest")
        pk = PublicKey.from_wire(msg["public_key"])
    EQ = None
    if params.weighted and params.mode == "two_party":
        # E_g(q) of every row (semantically secure under the guest's key): weights this host's own scores
        wmsg = spec.expect(Stage.WEIGHTS, setup.recv(guest, Stage.WEIGHTS.value), sender_role="guest")
        EQ = pk.vector_from_blob(wmsg["q"])
        if len(EQ) != n:
            raise ProtocolError(f"hetero_lr: {len(EQ)} encrypted weights for {n} rows")
    warm_pool(max(len(b) for b in plan.batches(0)), pk.bits)
    N = pk.n
    setup_seconds = time.perf_counter() - t_setup  # keys/contexts: made, sent, loaded
    w = np.zeros(f)
    best_w, best_epoch = w.copy(), 0
    history = []
    start, stopped = 0, False
    ck = _checkpoint.restore(checkpoint, "host")
    if ck is not None:  # a resumed job: continue after the last epoch every party finished
        start, stopped, w, history = ck["epoch"], ck["stopped"], ck["w"], ck["history"]
        best_w, best_epoch = ck["best_w"], ck["best_epoch"]
    for epoch in range(start, start if stopped else params.max_epochs):
        t_epoch, c_epoch = time.perf_counter(), time.process_time()
        if check_cancelled:
            check_cancelled()
        lr = plan.lr(epoch)
        for b, rows in enumerate(plan.batches(epoch)):
            ch = channel.sub(f"e-{epoch}", f"b-{b}")
            Z = encode_scores(Xq[rows] @ w)
            m = masks(f, N)
            if params.mode == "coordinated":
                ch.send(guest, Stage.ZH.value, {"z": pk.encrypt_ints(Z)})
                d = spec.expect(Stage.D, ch.recv(guest, Stage.D.value), sender_role="guest")
                ED = pk.vector_from_blob(d["d"])
                if len(ED) != rows.size:
                    raise ProtocolError("hetero_lr: residual vector has the wrong length")
                ch.send(arbiter, Stage.GRAD.value, {"g": matvec(ED, K[rows]).add_plain(m)})
                got = spec.expect(Stage.GRAD_PLAIN, ch.recv(arbiter, Stage.GRAD_PLAIN.value), sender_role="arbiter")
                G = unmask(got["g"], m, N, f)
            else:
                ch.send(guest, Stage.ZH.value, {"z": own_sk.encrypt_ints(Z)})
                u = spec.expect(Stage.U, ch.recv(guest, Stage.U.value), sender_role="guest")
                EU = pk.vector_from_blob(u["u"])
                if len(EU) != rows.size:
                    raise ProtocolError("hetero_lr: residual vector has the wrong length")
                if EQ is not None:  # E(q ⊙ 4d) = E(q ⊙ u) ⊕ E(q) ⊙ z_h: the whole weighted residual, encrypted
                    EU = EU + EQ[rows].mul_plain(Z.tolist())
                ch.send(guest, Stage.GRAD.value, {"g": matvec(EU, K[rows]).add_plain(m)})
                # decrypt the guest's masked gradient part X_gᵀ z_h + m_g (uniform: reveals nothing)
                gg = spec.expect(Stage.GRAD, ch.recv(guest, Stage.GRAD.value), sender_role="guest")
                vals = own_sk.decrypt_ints(own_pk.vector_from_blob(gg["g"]))
                ch.send(guest, Stage.GRAD_PLAIN.value, {"g": [int(v) for v in vals]})
                got = spec.expect(Stage.GRAD_PLAIN, ch.recv(guest, Stage.GRAD_PLAIN.value), sender_role="guest")
                Gu = unmask(got["g"], m, N, f)
                if EQ is not None:  # the weighted own part was summed under encryption
                    G = Gu
                else:  # own part X_hᵀ z_h in the clear: 4d 2^F = U + Z_h
                    Gz = K[rows].T.astype(object) @ Z.astype(object)
                    G = [int(a) + int(c) for a, c in zip(Gu, Gz)]
            # weighted rows: the guest multiplied the residual by q = round(w 2^16) before sending it
            grad = to_grad(G, rows.size, WEIGHT_FRAC_BITS if params.weighted else 0) + params.alpha * w
            w = w - lr * grad
        rec = {"epoch": epoch, "learning_rate": lr}
        if plan.valid.size:
            ch = channel.sub(f"e-{epoch}", "val")
            Zv = encode_scores(Xq[plan.valid] @ w)
            sq = int(np.dot(Zv.astype(object), Zv.astype(object)))
            if params.mode == "coordinated":
                ch.send(guest, Stage.ZV.value, {"z": pk.encrypt_ints(Zv), "sq": pk.encrypt_ints([sq])})
                zx = spec.expect(Stage.ZX, ch.recv(guest, Stage.ZX.value), sender_role="guest")
                cross = []
                for blob in zx["z"]:
                    other = pk.vector_from_blob(blob)
                    if len(other) != Zv.size:
                        raise ProtocolError("hetero_lr: cross-term vector has the wrong length")
                    cross.append(column_dot(other.raw_ints(), Zv, mpz(pk.nsquare)))
                cv = pk.vector_from_raw(cross) if cross else pk.encrypt_ints([0])
                ch.send(guest, Stage.CROSS.value, {"c": cv})
            else:
                ch.send(guest, Stage.ZV.value, {"z": own_sk.encrypt_ints(Zv), "sq": own_sk.encrypt_ints([0])})
                lm = spec.expect(Stage.LOSS, ch.recv(guest, Stage.LOSS.value), sender_role="guest")
                (v,) = own_sk.decrypt_ints(own_pk.vector_from_blob(lm["v"]))
                ch.send(guest, Stage.LOSS_PLAIN.value, {"v": int((int(v) + sq) % own_pk.n)})
            dec = spec.expect(Stage.DECISION, ch.recv(guest, Stage.DECISION.value), sender_role="guest")
            if dec["improved"]:
                best_w, best_epoch = w.copy(), epoch + 1
            rec["seconds"] = time.perf_counter() - t_epoch
            rec["cpu_seconds"] = time.process_time() - c_epoch  # this process (not pool workers)
            history.append(rec)
            _checkpoint.save(checkpoint, "host", epoch + 1, w=w, best_w=best_w, best_epoch=best_epoch,
                             history=history, stopped=bool(dec["stop"]))
            if dec["stop"]:
                break
        else:
            best_w, best_epoch = w.copy(), epoch + 1
            rec["seconds"] = time.perf_counter() - t_epoch
            rec["cpu_seconds"] = time.process_time() - c_epoch  # this process (not pool workers)
            history.append(rec)
            _checkpoint.save(checkpoint, "host", epoch + 1, w=w, best_w=best_w, best_epoch=best_epoch,
                             history=history, stopped=False)
    return {"coef": best_w, "n_epochs": best_epoch, "history": history,
            "setup_seconds": setup_seconds}


def _run_host_ckks(channel, X, params: LRParams, *, guest, arbiter, context, check_cancelled) -> dict:
    """CKKS variant of :func:`run_host` (same messages, floats; see ``_ckks.py``)."""
    Xq = feature_codes(X).astype(np.float64) / float(1 << FEATURE_FRAC_BITS)
    Xq = np.clip(Xq, -_ckks.FEATURE_CLIP, _ckks.FEATURE_CLIP)  # what packed_products multiplies (bounded values)
    n, f = Xq.shape
    plan = Plan(n, params)
    t_setup = time.perf_counter()
    setup = channel.sub("setup")
    if params.mode == "coordinated":
        msg = spec.expect(Stage.PUBKEY, setup.recv(arbiter, Stage.PUBKEY.value), sender_role="arbiter")
        ctx = own = _ckks.context_from_wire(msg["public_key"])
    else:
        own = context or _ckks.new_context()
        setup.send(guest, Stage.PUBKEY.value, {"public_key": _ckks.context_to_wire(own)})
        msg = spec.expect(Stage.PUBKEY, setup.recv(guest, Stage.PUBKEY.value), sender_role="guest")
        ctx = _ckks.context_from_wire(msg["public_key"])  # the guest's (residuals travel under it)
        holder = _ckks.KeyHolder(own, _ckks.decryption_budget(plan, params, [guest], loss_peers=[guest]))
    setup_seconds = time.perf_counter() - t_setup  # keys/contexts: made, sent, loaded
    w = np.zeros(f)
    best_w, best_epoch = w.copy(), 0
    history = []
    for epoch in range(params.max_epochs):
        t_epoch, c_epoch = time.perf_counter(), time.process_time()
        if check_cancelled:
            check_cancelled()
        lr = plan.lr(epoch)
        for b, rows in enumerate(plan.batches(epoch)):
            ch = channel.sub(f"e-{epoch}", f"b-{b}")
            Xb = Xq[rows]
            Z = _ckks.clip_scores(Xb @ w)
            ch.send(guest, Stage.ZH.value, {"z": own.encrypt(Z).to_blob()})
            if params.mode == "coordinated":
                d = spec.expect(Stage.D, ch.recv(guest, Stage.D.value), sender_role="guest")
                ED = _ckks.recv_vector(ctx, d["d"], rows.size, "residual vector")
                blob, rsum = _ckks.packed_products(ctx, ED, Xb)
                ch.send(arbiter, Stage.GRAD.value, {"g": blob})
                got = spec.expect(Stage.GRAD_PLAIN, ch.recv(arbiter, Stage.GRAD_PLAIN.value), sender_role="arbiter")
                G = _ckks.unmask(got["g"], rsum)
            else:
                u = spec.expect(Stage.U, ch.recv(guest, Stage.U.value), sender_role="guest")
                EU = _ckks.recv_vector(ctx, u["u"], rows.size, "residual vector")
                blob, rsum = _ckks.packed_products(ctx, EU, Xb)
                ch.send(guest, Stage.GRAD.value, {"g": blob})
                gg = spec.expect(Stage.GRAD, ch.recv(guest, Stage.GRAD.value), sender_role="guest")
                sums = holder.packed_sums(guest, gg["g"], "the guest's gradient")
                ch.send(guest, Stage.GRAD_PLAIN.value, {"g": sums})
                got = spec.expect(Stage.GRAD_PLAIN, ch.recv(guest, Stage.GRAD_PLAIN.value), sender_role="guest")
                G = _ckks.unmask(got["g"], rsum) + Xb.T @ Z  # X_hᵀ u + X_hᵀ z_h = X_hᵀ 4d
            grad = G / (4.0 * rows.size) + params.alpha * w
            w = w - lr * grad
        rec = {"epoch": epoch, "learning_rate": lr}
        if plan.valid.size:
            ch = channel.sub(f"e-{epoch}", "val")
            Zv = _ckks.clip_scores(Xq[plan.valid] @ w)
            if params.mode == "coordinated":
                ch.send(guest, Stage.ZV.value, {"z": ctx.encrypt(Zv).to_blob(), "sq": ctx.encrypt(Zv * Zv).to_blob()})
                zx = spec.expect(Stage.ZX, ch.recv(guest, Stage.ZX.value), sender_role="guest")
                # 2 z_h ⊙ (sum of later hosts' z), re-randomized by a fresh encryption of 0
                cross = ctx.encrypt(np.zeros(Zv.size))
                for blob in zx["z"]:
                    other = _ckks.recv_vector(ctx, blob, Zv.size, "cross-term vector")
                    cross = cross + other.mul_plain(2.0 * Zv)
                ch.send(guest, Stage.CROSS.value, {"c": cross.to_blob()})
            else:
                ch.send(guest, Stage.ZV.value, {"z": own.encrypt(Zv).to_blob(), "sq": own.encrypt([0.0]).to_blob()})
                lm = spec.expect(Stage.LOSS, ch.recv(guest, Stage.LOSS.value), sender_role="guest")
                v = holder.slot_sum(guest, lm["v"], Zv.size, "the masked validation loss")
                ch.send(guest, Stage.LOSS_PLAIN.value, {"v": float(v + Zv @ Zv)})
            dec = spec.expect(Stage.DECISION, ch.recv(guest, Stage.DECISION.value), sender_role="guest")
            if dec["improved"]:
                best_w, best_epoch = w.copy(), epoch + 1
            rec["seconds"] = time.perf_counter() - t_epoch
            rec["cpu_seconds"] = time.process_time() - c_epoch  # this process (not pool workers)
            history.append(rec)
            if dec["stop"]:
                break
        else:
            best_w, best_epoch = w.copy(), epoch + 1
            rec["seconds"] = time.perf_counter() - t_epoch
            rec["cpu_seconds"] = time.process_time() - c_epoch  # this process (not pool workers)
            history.append(rec)
    return {"coef": best_w, "n_epochs": best_epoch, "history": history,
            "setup_seconds": setup_seconds}

