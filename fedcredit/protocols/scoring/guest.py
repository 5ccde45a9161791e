"""Scoring, guest side: combine the hosts' contributions with this party's own part.

The guest learns the final score of each row; for SecureBoost it also learns
the host decisions it receives (see ``docs/scoring.md``: every host split's
left/right bit for each scored row, never a threshold or feature value); for
hetero LR only the masked sum of the hosts' partial scores.
"""

from __future__ import annotations

import numpy as np

from ...errors import ProtocolError
from ...models.logistic import sigmoid
from ...models.tree.predictor import local_decision, predict_tree
from . import spec
from .host import lr_partial

__all__ = ["unpack_decisions", "tree_scores", "lr_scores"]


def unpack_decisions(split_ids: np.ndarray, packed: bytes, n: int, host: str) -> dict:
    """``{(host, split_id): left mask}`` from one host's reply (ProtocolError on a malformed reply)."""
    k = len(split_ids)
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))
    if len(packed) != (k * n + 7) // 8:
        raise ProtocolError(f"{host!r} sent {len(packed)} bytes of decisions for {k} splits x {n} rows")
    bits = bits[: k * n].reshape(k, n).astype(bool)
    return {(host, int(s)): bits[i] for i, s in enumerate(split_ids.tolist())}


def tree_scores(guest_model, X_guest: np.ndarray, decisions: dict, *, raw: bool = False) -> np.ndarray:
    """Walk every tree: own splits on ``X_guest``, host splits from ``decisions``."""
    X = np.asarray(X_guest, dtype=np.float64)
    n = X.shape[0]
    out = np.full(n, guest_model.base_score, dtype=np.float64)
    for nodes in guest_model.trees:
        def decide(node):
            if node.threshold is not None:
                return local_decision(X, node)
            d = decisions.get((node.party, node.split_id))
            if d is None:
                raise ProtocolError(f"no decision of {node.party!r} for its split {node.split_id}")
            return d
        out += predict_tree(nodes, n, decide)
    return out if raw else sigmoid(out)


def lr_scores(part: dict, X_guest: np.ndarray, host_replies: list) -> np.ndarray:
    """Probability of default: own partial (with the intercept) plus the unmasked sum of the hosts'."""
    z = lr_partial(part, X_guest) + spec.decode_sum(host_replies) if host_replies else lr_partial(part, X_guest)
    return sigmoid(z)
