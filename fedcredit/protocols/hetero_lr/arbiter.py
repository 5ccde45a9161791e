"""Arbiter (key holder, no data) of coordinated vertical LR: decrypts masked values only."""

from __future__ import annotations

from ...crypto.paillier import generate_keypair
from . import _checkpoint, _ckks, spec
from ._common import LRParams, Plan
from .spec import Stage

__all__ = ["run_arbiter"]


def run_arbiter(channel, n_rows: int, params: LRParams, *, guest: str, hosts: list[str], keypair=None,
                check_cancelled=None, checkpoint=None) -> dict:
    """Hold the key; decrypt each party's masked gradient sums and the guest's masked validation loss.

    What the arbiter learns: values masked uniformly mod n (nothing), and how
    many rows, batches and epochs there are. With CKKS: values under real
    masks (``_ckks`` module docstring), and it returns only what its
    :class:`~fedcredit.protocols.hetero_lr._ckks.KeyHolder` checked, flooded,
    rounded and counted.
    """
    if params.backend == "ckks":
        return _run_arbiter_ckks(channel, n_rows, params, guest=guest, hosts=hosts, context=keypair,
                                 check_cancelled=check_cancelled)
    pk, sk = keypair or generate_keypair(params.key_bits)
    channel.sub("setup").broadcast([guest, *hosts], Stage.PUBKEY.value, {"public_key": pk.to_wire()})
    plan = Plan(n_rows, params)
    epochs, stopped = 0, False
    ck = _checkpoint.restore(checkpoint, "arbiter")
    if ck is not None:  # a resumed job (the key above is fresh: the weights do not depend on it)
        epochs, stopped = ck["epoch"], ck["stopped"]
    for epoch in range(epochs, epochs if stopped else params.max_epochs):
        if check_cancelled:
            check_cancelled()
        for b, _rows in enumerate(plan.batches(epoch)):
            ch = channel.sub(f"e-{epoch}", f"b-{b}")
            for p, role in [(guest, "guest")] + [(h, "host") for h in hosts]:
                msg = spec.expect(Stage.GRAD, ch.recv(p, Stage.GRAD.value), sender_role=role)
                vals = sk.decrypt_ints(pk.vector_from_blob(msg["g"]))
                ch.send(p, Stage.GRAD_PLAIN.value, {"g": [int(v) for v in vals]})
        epochs = epoch + 1
        stop = False
        if plan.valid.size:
            ch = channel.sub(f"e-{epoch}", "val")
            msg = spec.expect(Stage.LOSS, ch.recv(guest, Stage.LOSS.value), sender_role="guest")
            cv = pk.vector_from_blob(msg["v"])
            (v,) = sk.decrypt_ints(cv[0:1])
            ch.send(guest, Stage.LOSS_PLAIN.value, {"v": int(v)})
            dec = spec.expect(Stage.DECISION, ch.recv(guest, Stage.DECISION.value), sender_role="guest")
            stop = bool(dec["stop"])
        _checkpoint.save(checkpoint, "arbiter", epochs, stopped=stop)
        if stop:
            break
    return {"epochs": epochs}


def _run_arbiter_ckks(channel, n_rows: int, params: LRParams, *, guest, hosts, context, check_cancelled) -> dict:
    """CKKS variant: decrypt each party's packed masked product and return its residue-class sums."""
    ctx = context or _ckks.new_context()
    channel.sub("setup").broadcast([guest, *hosts], Stage.PUBKEY.value, {"public_key": _ckks.context_to_wire(ctx)})
    plan = Plan(n_rows, params)
    # every decryption checked, flooded, rounded and counted against the job's plan (_ckks.KeyHolder)
    holder = _ckks.KeyHolder(ctx, _ckks.decryption_budget(plan, params, [guest, *hosts], loss_peers=[guest]))
    epochs = 0
    for epoch in range(params.max_epochs):
        if check_cancelled:
            check_cancelled()
        for b, _rows in enumerate(plan.batches(epoch)):
            ch = channel.sub(f"e-{epoch}", f"b-{b}")
            for p, role in [(guest, "guest")] + [(h, "host") for h in hosts]:
                msg = spec.expect(Stage.GRAD, ch.recv(p, Stage.GRAD.value), sender_role=role)
                sums = holder.packed_sums(p, msg["g"], f"the gradient of {p!r}")
                ch.send(p, Stage.GRAD_PLAIN.value, {"g": sums})
        epochs = epoch + 1
        if plan.valid.size:
            ch = channel.sub(f"e-{epoch}", "val")
            msg = spec.expect(Stage.LOSS, ch.recv(guest, Stage.LOSS.value), sender_role="guest")
            v = holder.slot_sum(guest, msg["v"], plan.valid.size, "the masked validation loss")
            ch.send(guest, Stage.LOSS_PLAIN.value, {"v": float(v)})
            dec = spec.expect(Stage.DECISION, ch.recv(guest, Stage.DECISION.value), sender_role="guest")
            if dec["stop"]:
                break
    return {"epochs": epochs}
