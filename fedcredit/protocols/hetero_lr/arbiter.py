"""Arbiter (key holder, no data) of coordinated vertical LR: decrypts masked values only."""

from __future__ import annotations

from ...errors import ProtocolError
from . import _checkpoint, spec
from ._cipher_ckks import CKKSArbiter
from ._cipher_paillier import PaillierArbiter
from ._common import LRParams, Plan
from .spec import Stage

__all__ = ["run_arbiter"]


def run_arbiter(channel, n_rows: int | None, params: LRParams, *, guest: str, hosts: list[str], keypair=None,
                check_cancelled=None, checkpoint=None) -> dict:
    """Hold the key; decrypt each party's masked gradient sums and the guest's masked validation loss.

    What the arbiter learns: values masked uniformly mod n (nothing), and how
    many rows, batches and epochs there are. With CKKS: values under real
    masks (``_ckks`` module docstring), and it returns only what its
    :class:`~fedcredit.protocols.hetero_lr._ckks.KeyHolder` checked, flooded,
    rounded and counted.

    ``n_rows``: the number of aligned rows if known (checked against the guest's ``ROWS`` message), or None
    (taken from it).
    """
    s = spec.session(channel.party, params.mode, guest=guest, hosts=hosts, arbiter=channel.party)
    rows = s.recv(channel, guest, Stage.ROWS)["rows"]
    if rows < 1 or (n_rows is not None and rows != n_rows):
        raise ProtocolError("hetero_lr: the guest sent an invalid row count")
    n_rows = rows
    cipher = (CKKSArbiter if params.backend == "ckks" else PaillierArbiter)(
        channel, s, params, guest=guest, hosts=hosts, keypair=keypair)
    if not cipher.checkpointable:
        checkpoint = None
    plan = Plan(n_rows, params)
    cipher.setup(plan)
    epochs, stopped = 0, False
    ck = _checkpoint.restore(checkpoint, "arbiter")
    if ck is not None:  # a resumed job (the key above is fresh: the weights do not depend on it)
        epochs, stopped = ck["epoch"], ck["stopped"]
    for epoch in range(epochs, epochs if stopped else params.max_epochs):
        if check_cancelled:
            check_cancelled()
        for b, _rows in enumerate(plan.batches(epoch)):
            cipher.serve_batch({"e": epoch, "b": b})
        epochs = epoch + 1
        stop = False
        if plan.valid.size:
            cipher.serve_loss({"e": epoch}, plan.valid.size)
            stop = bool(s.recv(channel, guest, Stage.DECISION_GA, e=epoch)["stop"])
        _checkpoint.save(checkpoint, "arbiter", epochs, stopped=stop)
        if stop:
            break
    return {"epochs": epochs}
