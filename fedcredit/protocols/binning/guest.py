"""Guest side of federated binning: encrypts labels, turns host bin sums into WOE/IV."""

from __future__ import annotations

import secrets

import numpy as np

from ...crypto.paillier import generate_keypair
from ...errors import DataError, ProtocolError
from ...models.tree.gbdt import flip_probability, randomized_response
from ...models.woe import bin_event_counts, monotonic_groups, woe_iv
from . import spec
from .host import local_bins
from .spec import Stage

__all__ = ["run_guest", "finish_feature", "debias_events"]


def finish_feature(events, totals, params, categorical: bool):
    """Monotonic groups (or None), then WOE/IV from per-bin counts (missing bin last)."""
    events = np.asarray(events, dtype=np.int64)
    totals = np.asarray(totals, dtype=np.int64)
    groups = None
    if params.method == "monotonic" and not categorical and totals.size > 2:
        groups = monotonic_groups(events, totals, smoothing=params.smoothing)
        ge = np.array([events[g].sum() for g in groups] + [events[-1]])
        gt = np.array([totals[g].sum() for g in groups] + [totals[-1]])
        events, totals = ge, gt
    woe, iv = woe_iv(events, totals, smoothing=params.smoothing)
    return groups, woe, iv


def debias_events(events, totals, epsilon):
    """Unbiased per-bin event counts from randomized-response sums (post-processing: no extra budget).

    ``E[noisy] = (1 - q) e + q (t - e)``, so ``e = (noisy - q t) / (1 - 2 q)``,
    rounded and clipped to ``[0, t]``. ``epsilon`` None returns ``events``.
    """
    if epsilon is None:
        return np.asarray(events, dtype=np.int64)
    q = flip_probability(epsilon)
    est = (np.asarray(events, dtype=np.float64) - q * np.asarray(totals, dtype=np.float64)) / (1.0 - 2.0 * q)
    return np.clip(np.rint(est), 0, totals).astype(np.int64)


def run_guest(channel, hosts: list[str], table, params, *, keypair=None) -> dict:
    """Run the guest side.

    Returns
    -------
    dict
        ``{"bins": {feature: Bins} for the guest's own features,
        "host_iv": {feature: IV} for every host feature,
        "host_bins": {feature: {"totals", "events", "woe", "iv"}}}`` (what the guest learnt).
    """
    y = table.y
    if y is None:
        raise DataError(f"{table.source}: the guest needs a label column for WOE binning")
    uy = np.unique(y)
    if not np.all(np.isin(uy, (0, 1))) or uy.size < 2:
        raise DataError(f"{table.source}: the label must be binary 0/1 with both classes; got {uy[:5].tolist()}")
    pk, sk = keypair or generate_keypair(params.key_bits)
    channel.broadcast(hosts, spec.tag(Stage.KEY), {"public_key": pk.to_wire(), "n_rows": len(table)})
    # label DP: the hosts' bin sums are over randomized-response labels (a fresh secret seed per job)
    y_sent = randomized_response(np.asarray(y, dtype=np.int64), params.label_epsilon,
                                 np.random.default_rng(secrets.randbits(128)))
    enc = sk.encrypt_ints(np.asarray(y_sent, dtype=np.int64))
    channel.broadcast(hosts, spec.tag(Stage.LABELS), {"labels": enc})

    # own features, locally (same code path as the hosts' bins)
    own = {}
    for j, b in enumerate(local_bins(table.X, list(table.feature_names), list(table.columns), params)):
        ev = bin_event_counts(b.assign(table.X[:, j]), y, b.n_bins)
        groups, woe, iv = finish_feature(ev, b.counts, params, b.categorical)
        if groups is not None:
            b = b.merge(groups)
        own[b.name] = b.with_woe(woe, iv)

    host_iv: dict[str, float] = {}
    host_bins: dict[str, dict] = {}
    for h in hosts:
        msg = spec.expect(Stage.COUNTS, channel.recv(h, spec.tag(Stage.COUNTS)), sender_role="host")
        nb = msg["n_bins"]
        feats = msg["features"]
        if len(feats) != nb.size or len(msg["categorical"]) != nb.size or msg["totals"].size != int(nb.sum()):
            raise ProtocolError(f"binning: inconsistent bin layout from {h!r}")
        if any(not isinstance(f, str) or not f.startswith(f"{h}.") for f in feats):
            raise ProtocolError(f"binning: {h!r} sent feature names outside its namespace")
        small = (msg["totals"] > 0) & (msg["totals"] < params.min_bin_count)
        if small.any():
            raise ProtocolError(f"binning: {h!r} revealed a bin below min_bin_count={params.min_bin_count}")
        events = np.asarray(sk.decrypt_ints(pk.vector_from_blob(msg["events"])), dtype=np.int64)
        if events.size != msg["totals"].size or np.any(events > msg["totals"]):
            raise ProtocolError(f"binning: event counts from {h!r} do not fit the bin totals")
        events = debias_events(events, msg["totals"], params.label_epsilon)
        groups_l, woe_l, iv_l = [], [], []
        off = 0
        for f, k, cat in zip(feats, nb.tolist(), msg["categorical"]):
            ev, tot = events[off : off + k], msg["totals"][off : off + k]
            off += k
            groups, woe, iv = finish_feature(ev, tot, params, bool(cat))
            groups_l.append(groups)
            woe_l.append(woe)
            iv_l.append(iv)
            host_iv[f] = float(iv.sum())
            host_bins[f] = {"totals": tot, "events": ev, "woe": woe, "iv": iv}
        channel.send(h, spec.tag(Stage.RESULT), {"groups": groups_l, "woe": woe_l, "iv": iv_l})
    return {"bins": own, "host_iv": host_iv, "host_bins": host_bins}
