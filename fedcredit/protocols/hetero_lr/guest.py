"""Guest (label holder) side of vertical LR: keeps its coefficients and the intercept, decides early stopping.

One driver (epochs, mini-batches, learning rate, validation, early stopping, checkpoints) for both ciphers:
the cipher-specific steps are a strategy object (:class:`~._cipher_paillier.PaillierGuest`,
:class:`~._cipher_ckks.CKKSGuest`).
"""

from __future__ import annotations

import time

import numpy as np

from ...errors import DataError
from . import _checkpoint, spec
from ._cipher_ckks import CKKSGuest
from ._cipher_paillier import PaillierGuest
from ._common import WEIGHT_BOUND_BITS, WEIGHT_FRAC_BITS, LRParams, Plan
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
        if rw.size and not np.abs(rw).max() < float(1 << WEIGHT_BOUND_BITS):  # bounds the packed gradient slots
            raise DataError(f"hetero_lr: row weights must be below 2^{WEIGHT_BOUND_BITS}")
        q = np.rint(rw * float(1 << WEIGHT_FRAC_BITS)).astype(np.int64).astype(object)
    me = channel.party
    s = spec.session(me, params.mode, guest=me, hosts=hosts, arbiter=arbiter)
    cipher = (CKKSGuest if params.backend == "ckks" else PaillierGuest)(
        channel, s, X, y, params, hosts=hosts, arbiter=arbiter, keypair=keypair, q=q)
    if not cipher.checkpointable:
        checkpoint = None
    plan = Plan(X.shape[0], params)
    t_setup = time.perf_counter()
    if params.mode == "coordinated":  # the arbiter holds no data: it learns the row count from the guest
        s.send(channel, arbiter, Stage.ROWS, {"rows": int(X.shape[0])})
    cipher.setup(plan)
    setup_seconds = time.perf_counter() - t_setup  # keys/contexts: made, sent, loaded
    f = cipher.n_coef
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
    deciders = [(h, Stage.DECISION_GH) for h in hosts] + \
        ([(arbiter, Stage.DECISION_GA)] if params.mode == "coordinated" else [])
    for epoch in range(start, start if stopped else params.max_epochs):
        t_epoch, c_epoch = time.perf_counter(), time.process_time()
        if check_cancelled:
            check_cancelled()
        lr = plan.lr(epoch)
        for b, rows in enumerate(plan.batches(epoch)):
            grad = cipher.gradient({"e": epoch, "b": b}, rows, w) + params.alpha * reg * w
            w = w - lr * grad
        rec = {"epoch": epoch, "learning_rate": lr}
        stop = False
        if plan.valid.size:
            vl = cipher.validation_loss({"e": epoch}, plan.valid, w)
            rec["val_loss"] = vl
            improved = vl < best[0] - params.tol
            if improved:
                best, bad = (vl, w.copy(), epoch + 1), 0
            else:
                bad += 1
            stop = bad >= params.n_iter_no_change or epoch == params.max_epochs - 1
            for peer, stage in deciders:
                s.send(channel, peer, stage, {"improved": bool(improved), "stop": bool(stop)}, e=epoch)
        else:
            best = (np.nan, w.copy(), epoch + 1)
        rec["seconds"] = time.perf_counter() - t_epoch
        rec["cpu_seconds"] = time.process_time() - c_epoch  # this process (not pool workers)
        history.append(rec)
        _checkpoint.save(checkpoint, "guest", epoch + 1, w=w, best_loss=best[0], best_w=best[1],
                         best_epoch=best[2], bad=bad, history=history, stopped=stop)
        if stop:
            break
    _, wb, n_ep = best
    return {"coef": wb[:-1], "intercept": float(wb[-1]), "n_epochs": n_ep, "history": history,
            "setup_seconds": setup_seconds}
