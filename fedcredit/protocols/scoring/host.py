"""Scoring, host side: this party's contribution for the rows of one request.

A host never sees a score: it receives id digests and returns

* SecureBoost: the left/right decision of each of its split nodes for each
  row (a row not in its table takes each split's missing-value branch);
* hetero LR: its partial score ``X_h w_h`` on the fixed-point grid plus the
  pairwise masks it shares with the other hosts of the request (a row not in
  its table contributes 0 after standardization, or the WOE of the missing bin).
"""

from __future__ import annotations

import numpy as np

from ...crypto.secagg import derive_key, expand_mask
from ...errors import ProtocolError
from ...models.logistic import Standardizer, quantize
from . import spec

__all__ = ["tree_contribution", "lr_partial", "lr_contribution", "pair_mask"]


def tree_contribution(host_model, X: np.ndarray, feature_index: dict) -> tuple[np.ndarray, bytes]:
    """Decisions of every split of ``host_model`` for the rows of ``X``.

    Parameters
    ----------
    host_model : HostModel
    X : ndarray of shape (n, f)
        This host's features of the rows (NaN = missing or not a customer here).
    feature_index : dict of str to int
        Column of ``X`` of each feature name the splits use.

    Returns
    -------
    split_ids : ndarray of int64
    decisions : bytes
        ``np.packbits`` of the boolean (len(split_ids), n) matrix, 1 = left.
    """
    ids = np.array(sorted(host_model.splits), dtype=np.int64)
    out = np.zeros((len(ids), X.shape[0]), dtype=bool)
    with np.errstate(invalid="ignore"):
        for i, sid in enumerate(ids.tolist()):
            s = host_model.splits[sid]
            name = s.feature_name or host_model.feature_names[s.feature]
            col = X[:, feature_index[name]]
            out[i] = np.where(np.isnan(col), s.missing_left, col <= s.threshold)
    return ids, np.packbits(out.ravel()).tobytes()


def lr_design(part: dict, X: np.ndarray) -> np.ndarray:
    """This party's design matrix for rows ``X`` (columns = ``part["features"]``; NaN = absent)."""
    if part["preprocess"] == "woe":
        if not part["features"]:
            return np.zeros((X.shape[0], 0))
        return np.stack([part["bins"][f].transform(X[:, j], unseen="missing")
                         for j, f in enumerate(part["features"])], axis=1)
    st = Standardizer.from_dict(part["standardizer"])
    with np.errstate(invalid="ignore"):
        Z = st.transform(X)
    return np.nan_to_num(Z, nan=0.0)  # absent: the training mean, i.e. zero contribution


def lr_partial(part: dict, X: np.ndarray) -> np.ndarray:
    """``quantize(design) @ coef + intercept``: exactly :func:`fedcredit.protocols.hetero_lr.partial_score`."""
    Z = quantize(lr_design(part, X))
    return Z @ np.asarray(part["coef"], dtype=np.float64) + float(part.get("intercept", 0.0))


def pair_mask(secret: bytes, model_id: str, request_id: str, n: int) -> np.ndarray:
    """The mask two hosts share for one request: ChaCha20 keystream under HKDF(secret, model, request)."""
    return expand_mask(derive_key(secret, "score-mask", model_id, request_id), n)


def lr_contribution(part: dict, X: np.ndarray, *, me: str, model_id: str, request_id: str,
                    pair_secrets: dict[str, bytes]) -> np.ndarray:
    """Masked partial scores (uint64): ``encode(partial) + sum_{peer > me} m - sum_{peer < me} m``.

    ``pair_secrets`` maps every *other* host of the request to the secret this
    host shares with it; with no other host the reply is the bare partial score
    (the guest can compute it anyway as score minus its own part).
    """
    u = spec.encode_partial(lr_partial(part, X))
    for peer, secret in pair_secrets.items():
        if peer == me:
            raise ProtocolError("a host cannot share a mask with itself")
        m = pair_mask(secret, model_id, request_id, len(u))
        u = u + m if me < peer else u - m
    return u
