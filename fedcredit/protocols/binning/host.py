"""Host side of federated binning: bins its own features, sums encrypted labels per bin."""

from __future__ import annotations

import numpy as np

from ...errors import ProtocolError
from ...models.woe import Bins, fit_bins
from .._spec import decode_public_key
from . import spec
from .spec import Stage

__all__ = ["run_host", "local_bins"]


def local_bins(X, names, columns, params) -> list[Bins]:
    """Label-free bins of every feature (min count enforced), shared by guest and host."""
    cat = set(params.categorical)
    return [
        fit_bins(X[:, j], name=names[j], max_bins=params.max_bins,
                 categorical=(names[j] in cat or columns[j] in cat), min_bin_count=params.min_bin_count)
        for j in range(X.shape[1])
    ]


def _bin_sums(pk, enc, assigned, bins):
    """Encrypted sums of ``enc`` per bin of every feature, concatenated feature by feature.

    One batch :meth:`histogram` over all features (``max n_bins`` buckets each), then
    each feature's own ``n_bins`` buckets; the result is re-randomized when it is sent
    (``to_blob``: uniform ``r^n`` for Paillier, ``rho^n`` for OU).
    """
    if not bins:
        return pk.encrypt_ints([])
    width = max(b.n_bins for b in bins)
    hist = enc.histogram(assigned, width)
    return hist[np.concatenate([j * width + np.arange(b.n_bins) for j, b in enumerate(bins)])]


def run_host(channel, guest: str, table, params) -> dict:
    """Run the host side; returns ``{feature: Bins}`` with WOE and IV set (thresholds stay here).

    What the host learns: the guest's public key, encrypted labels, and for
    its own features the WOE and IV per bin (and the monotonic merge).
    """
    s = spec.session(channel.party, guest, [channel.party])
    key = s.recv(channel, guest, Stage.KEY)
    # only the scheme the job names (both parties hold the same step parameters); a malformed key
    # (too small a modulus, OU's h != g^n, wrong shape) is refused here, before anything is encrypted under it
    pk = decode_public_key(key["public_key"], schemes=(params.he,), protocol="binning")
    if key["n_rows"] != len(table):
        raise ProtocolError(f"binning: guest has {key['n_rows']} aligned rows, this host {len(table)}")
    names = list(table.feature_names)
    bins = local_bins(table.X, names, list(table.columns), params)
    assigned = np.stack([b.assign(table.X[:, j]) for j, b in enumerate(bins)], axis=1) if bins else None
    msg = s.recv(channel, guest, Stage.LABELS)
    enc_y = pk.vector_from_blob(msg["labels"])
    if len(enc_y) != len(table):
        raise ProtocolError(f"binning: {len(enc_y)} encrypted labels for {len(table)} rows")
    # Every bin's total is >= min_bin_count or 0 (merged before any sum is formed).
    events = _bin_sums(pk, enc_y, assigned, bins)
    weights = None
    if msg["weights"] is not None:  # weighted WOE: also the weighted row count per bin (encrypted)
        enc_w = pk.vector_from_blob(msg["weights"])
        if len(enc_w) != len(table):
            raise ProtocolError(f"binning: {len(enc_w)} encrypted weights for {len(table)} rows")
        weights = _bin_sums(pk, enc_w, assigned, bins)
    s.send(channel, guest, Stage.COUNTS, {
        "features": names,
        "n_bins": np.array([b.n_bins for b in bins], dtype=np.int64),
        "totals": np.concatenate([b.counts for b in bins]).astype(np.int64) if bins else np.empty(0, np.int64),
        "categorical": [bool(b.categorical) for b in bins],
        "events": events,
        "weights": weights,
    })
    res = s.recv(channel, guest, Stage.RESULT)
    if not (len(res["groups"]) == len(res["woe"]) == len(res["iv"]) == len(bins)):
        raise ProtocolError("binning: result does not cover every host feature")
    out = {}
    for b, groups, woe, iv in zip(bins, res["groups"], res["woe"], res["iv"]):
        if groups is not None:
            b = b.merge([list(map(int, g)) for g in groups])
        out[b.name] = b.with_woe(np.asarray(woe, dtype=np.float64), np.asarray(iv, dtype=np.float64))
    return out
