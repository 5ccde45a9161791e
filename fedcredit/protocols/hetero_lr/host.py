"""Host side of vertical LR: keeps its own weights, never sees labels, residuals or gradients of others.

One driver for both ciphers; the cipher-specific steps are a strategy object
(:class:`~._cipher_paillier.PaillierHost`, :class:`~._cipher_ckks.CKKSHost`).
"""

from __future__ import annotations

import time

import numpy as np

from . import _checkpoint, spec
from ._cipher_ckks import CKKSHost
from ._cipher_paillier import PaillierHost
from ._common import LRParams, Plan
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
    me = channel.party
    s = spec.session(me, params.mode, guest=guest, hosts=[me], arbiter=arbiter)
    cipher = (CKKSHost if params.backend == "ckks" else PaillierHost)(
        channel, s, X, params, guest=guest, arbiter=arbiter, keypair=keypair)
    if not cipher.checkpointable:
        checkpoint = None
    plan = Plan(X.shape[0], params)
    t_setup = time.perf_counter()
    cipher.setup(plan)
    setup_seconds = time.perf_counter() - t_setup  # keys/contexts: made, sent, loaded
    w = np.zeros(cipher.n_coef)
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
            grad = cipher.gradient({"e": epoch, "b": b}, rows, w) + params.alpha * w
            w = w - lr * grad
        rec = {"epoch": epoch, "learning_rate": lr}
        stop = False
        if plan.valid.size:
            cipher.validate({"e": epoch}, plan.valid, w)
            dec = s.recv(channel, guest, Stage.DECISION_GH, e=epoch)
            if dec["improved"]:
                best_w, best_epoch = w.copy(), epoch + 1
            stop = bool(dec["stop"])
        else:
            best_w, best_epoch = w.copy(), epoch + 1
        rec["seconds"] = time.perf_counter() - t_epoch
        rec["cpu_seconds"] = time.process_time() - c_epoch  # this process (not pool workers)
        history.append(rec)
        _checkpoint.save(checkpoint, "host", epoch + 1, w=w, best_w=best_w, best_epoch=best_epoch,
                         history=history, stopped=stop)
        if stop:
            break
    return {"coef": best_w, "n_epochs": best_epoch, "history": history, "setup_seconds": setup_seconds}
