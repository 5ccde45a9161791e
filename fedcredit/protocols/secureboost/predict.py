"""SecureBoost, guest side: federated scoring with a stored or growing model.

The guest asks each host for the left/right decisions of that host's splits on
the aligned rows (one request and one bit-packed answer per host) and walks the
trees, deciding its own splits locally. Used by training (the per-tree round on
out-of-bag and validation rows, and the resume round) and by
:func:`predict_guest` for a stored model.
"""

from __future__ import annotations

import numpy as np

from ...errors import ProtocolError
from ...models.tree.gbdt import sigmoid
from ...models.tree.predictor import local_decision, predict_tree
from ...transport.base import Channel
from . import spec
from .model import GuestModel
from .spec import Stage

__all__ = ["predict_guest", "host_decisions", "raw_scores"]


def host_decisions(channel: Channel, session, hosts: list[str], trees, rows: np.ndarray, req: Stage, rep: Stage,
                   **idx) -> dict:
    """Ask every host for its decisions at its splits in ``trees`` on aligned ``rows``: {(host, split_id): mask}.

    ``req``/``rep`` are the request and reply stages of the round (training's per-tree or resume round, or
    scoring), ``idx`` their tag index.
    """
    asked = {}
    for h in hosts:
        ids = np.array([n.split_id for nodes in trees for n in nodes if not n.is_leaf and n.party == h],
                       dtype=np.int64)
        session.send(channel, h, req, {"split_ids": ids, "rows": np.asarray(rows, dtype=np.int64)}, **idx)
        asked[h] = ids
    out = {}
    for h in hosts:
        msg = session.recv(channel, h, rep, **idx)
        ids = asked[h]
        need = len(ids) * len(rows)
        bits = np.unpackbits(msg["left"])
        if len(msg["left"]) != (need + 7) // 8:
            raise ProtocolError(f"secureboost predict from {h!r}: wrong number of decisions")
        dec = bits[:need].astype(bool).reshape(len(ids), len(rows))
        for i, sid in enumerate(ids.tolist()):
            out[(h, sid)] = dec[i]
    return out


def raw_scores(trees, base: float, X_guest: np.ndarray, decisions: dict) -> np.ndarray:
    """Log-odds of ``trees`` on the guest's rows: own splits locally, host splits from ``decisions``."""
    raw = np.full(len(X_guest), base, dtype=np.float64)
    for nodes in trees:
        raw += predict_tree(nodes, len(X_guest), lambda n: local_decision(X_guest, n) if n.local
                            else decisions[(n.party, n.split_id)])
    return raw


def predict_guest(channel: Channel, guest_model: GuestModel, X_guest, *, hosts: list[str] | None = None,
                  raw: bool = False) -> np.ndarray:
    """Federated scoring: probabilities of default for the rows of ``X_guest``.

    Each host must run :func:`~fedcredit.protocols.secureboost.host.predict_host`
    on the same channel namespace with its features of the same rows in the
    same order. Every host receives the list of its split ids and the row
    positions and returns its left/right decision for each; the guest walks
    the trees. Hosts learn nothing; the guest learns each host split's
    decision for each scored row.

    Parameters
    ----------
    channel : Channel
    guest_model : GuestModel
    X_guest : ndarray of shape (n, f_guest)
    hosts : list of str, optional
        Default: the hosts that appear in the model.
    raw : bool, default=False
        Return log-odds instead of probabilities.

    Returns
    -------
    ndarray of shape (n,)
    """
    X = np.asarray(X_guest, dtype=np.float64)
    hosts = list(hosts if hosts is not None else guest_model.hosts)
    rows = np.arange(len(X), dtype=np.int64)
    session = spec.session({channel.party: "guest", **{h: "host" for h in hosts}}, channel.party, "scoring")
    dec = host_decisions(channel, session, hosts, guest_model.trees, rows, Stage.PREDICT_REQ, Stage.PREDICT)
    r = raw_scores(guest_model.trees, guest_model.base_score, X, dec)
    return r if raw else sigmoid(r)
