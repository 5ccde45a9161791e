"""Per-epoch checkpoints of the hetero LR roles, kept in the step context's
:class:`~fedcredit.protocols.checkpoint.Checkpoint`.

What each role keeps after every finished epoch, and nothing else:

* guest: its weights ``w`` (with the intercept), the best ``(loss, weights,
  epoch)`` so far, the no-improvement counter, the validation history and
  whether it decided to stop;
* host: its weights, its best weights and epoch, its history, stop;
* arbiter: the epoch count and stop (it holds no model).

That is the whole optimizer state: plain mini-batch gradient descent has no
moments, and the batches and learning rate of epoch ``e`` are a function of
``(random_state, e)`` (:class:`~fedcredit.protocols.hetero_lr._common.Plan`), so
there is no RNG state to carry. Masks come from ``secrets`` and cancel
exactly (Paillier arithmetic is exact), and the keys are fresh on every
attempt (no private key is ever written to disk): a resumed Paillier run
ends with the same weights, bit for bit, as an uninterrupted one. The CKKS
backend is not checkpointed (its noise makes no two runs equal anyway): a
resumed CKKS step starts over.
"""

from __future__ import annotations

import numpy as np

__all__ = ["restore", "save"]


def restore(checkpoint, role: str):
    """The saved state of ``role`` to continue from as a dict (with ``epoch``), or None."""
    if checkpoint is None:
        return None
    got = checkpoint.resume()
    if got is None:
        return None
    epoch, state = got
    if state.get("role") != role:
        from ...errors import ProtocolError

        raise ProtocolError(f"hetero_lr checkpoint of round {epoch} is not a {role}'s")
    state["epoch"] = epoch
    for k in ("w", "best_w"):
        if k in state:
            state[k] = np.asarray(state[k], dtype=np.float64)
    return state


def save(checkpoint, role: str, epochs_done: int, **state) -> None:
    """Keep ``state`` as ``role``'s state after ``epochs_done`` epochs (no-op without a checkpoint)."""
    if checkpoint is not None:
        checkpoint.save(epochs_done, {"role": role, **state})
