"""Guest side of federated binning: encrypts labels, turns host bin sums into WOE/IV.

With ``he = "ou"`` (Okamoto-Uchiyama) the guest decrypts ciphertexts a host built,
and the WOE/IV it sends back are functions of the decrypted counts: the setting
of OU's key-recovery pitfall (a host that learns ``M mod p`` for a crafted
``M >= p`` factors ``n``; docs/crypto.md, "OU"). :func:`decrypt_counts` closes it:
every vector is decrypted under the tightest bound the guest knows by itself
(events: the largest bin total, at most the events it encrypted; weighted totals:
the sum of its own weight codes), all or nothing; then every count is checked
against its bin's plain total (whose per-feature sum must be the aligned row
count) and each feature's counts must add up to exactly what the guest encrypted,
all before anything derived from them leaves. A crafted ``M >= p`` therefore gets
a RESULT only if ``M mod p`` happens to be the one value that keeps its feature's
sum right, probability about ``1 / p`` (``2^-682`` at 2048 bits); otherwise the
job fails with :class:`~fedcredit.errors.ProtocolError` and the host gets no WOE.
"""

from __future__ import annotations

import secrets

import numpy as np

from ...crypto import ou, paillier
from ...errors import DataError, DecryptionError, ProtocolError
from ...models.tree.gbdt import flip_probability, randomized_response, row_weights
from ...models.woe import bin_event_counts, monotonic_groups, woe_iv
from .._spec import encode_public_key
from . import spec
from .host import local_bins
from .spec import Stage

__all__ = ["run_guest", "finish_feature", "weight_codes", "debias_events", "generate_keypair", "decrypt_counts"]

_SCHEMES = {"paillier": paillier, "ou": ou}


def generate_keypair(he: str, bits: int):
    """A fresh key pair of scheme ``he`` (``"paillier"`` or ``"ou"``), looked up at call time."""
    return _SCHEMES[he].generate_keypair(bits)


def decrypt_counts(sk, pk, blob, bound: int, host: str, what: str) -> np.ndarray:
    """Decrypt a host's per-bin sums, each in ``[0, bound]``, all or nothing.

    ``bound`` comes from the guest's own knowledge (rows, or its own weights), never
    from the host. Under OU the decryption itself is guarded with
    ``bound_bits = bound.bit_length()``, the tightest the guard takes: a value at or
    above ``2^bound_bits`` (e.g. the residue of a crafted plaintext ``>= p``) makes the
    whole vector fail and no value is returned. Paillier (plaintexts modulo the
    public ``n``; no such pitfall) decrypts unguarded and is range-checked here.

    Raises
    ------
    ProtocolError
        Any ciphertext invalid, under another key, or a value outside ``[0, bound]``
        (the message names neither the value nor which bin).
    """
    bound = int(bound)
    try:
        cv = pk.vector_from_blob(blob)
        if isinstance(sk, ou.PrivateKey):
            vals = sk.decrypt_ints(cv, bound_bits=min(bound.bit_length(), pk.plaintext_bits))
        else:
            vals = sk.decrypt_ints(cv)
    except DecryptionError:
        raise ProtocolError(f"binning: {what} from {host!r} are not valid bin sums") from None
    if any(v < 0 or v > bound for v in vals):
        raise ProtocolError(f"binning: {what} from {host!r} are not valid bin sums")
    return np.asarray(vals, dtype=np.int64)


def weight_codes(w) -> np.ndarray:
    """Row weights as the integers the guest encrypts: ``round(w * 2**WEIGHT_BITS)``."""
    return np.rint(np.asarray(w, dtype=np.float64) * float(1 << spec.WEIGHT_BITS)).astype(np.int64)


def finish_feature(events, totals, params, categorical: bool):
    """Monotonic groups (or None), then WOE/IV from per-bin counts (missing bin last).

    Counts are integers, or (weighted) floats: weighted events and weighted rows per bin.
    """
    dt = np.float64 if getattr(params, "weighted", False) else np.int64
    events = np.asarray(events, dtype=dt)
    totals = np.asarray(totals, dtype=dt)
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


def run_guest(channel, hosts: list[str], table, params, *, keypair=None, sample_weight=None) -> dict:
    """Run the guest side.

    With ``sample_weight`` (default: the table's ``params.weight_column``, which
    is then not binned) or ``params.class_weight``, WOE and IV use weighted
    event and non-event counts: the guest encrypts ``q_i y_i`` and ``q_i`` with
    ``q_i = round(w_i * 2**WEIGHT_BITS)``; hosts sum both per bin.

    Returns
    -------
    dict
        ``{"bins": {feature: Bins} for the guest's own features,
        "host_iv": {feature: IV} for every host feature,
        "host_bins": {feature: {"totals", "events", "woe", "iv"}}}`` (what the guest learnt).
    """
    if params.weight_column is not None and sample_weight is None:
        # the weights are a column of the guest's table, never binned as a feature (no host has the column)
        if params.weight_column not in table.columns:
            raise DataError(f"binning: weight_column {params.weight_column!r} is not a column of the guest's table")
        sample_weight = table.X[:, table.columns.index(params.weight_column)]
        table = table.select([c for c in table.columns if c != params.weight_column])
    y = table.y
    if y is None:
        raise DataError(f"{table.source}: the guest needs a label column for WOE binning")
    uy = np.unique(y)
    if not np.all(np.isin(uy, (0, 1))) or uy.size < 2:
        raise DataError(f"{table.source}: the label must be binary 0/1 with both classes; got {uy[:5].tolist()}")
    w = row_weights(y, sample_weight, params.class_weight) if params.weighted else None
    q = None if w is None else weight_codes(w)
    pk, sk = keypair or generate_keypair(params.he, params.key_bits)
    s = spec.session(channel.party, channel.party, hosts)
    s.broadcast(channel, hosts, Stage.KEY, {"public_key": encode_public_key(pk), "n_rows": len(table)})
    y64 = np.asarray(y, dtype=np.int64)  # the guest's own bins use its true labels (nothing of them leaves)
    # label DP: the hosts' bin sums are over randomized-response labels (a fresh secret seed per job)
    y_sent = np.asarray(randomized_response(y64, params.label_epsilon,
                                            np.random.default_rng(secrets.randbits(128))), dtype=np.int64)
    enc = sk.encrypt_ints(y_sent if q is None else q * y_sent)
    ev_total = int(y_sent.sum()) if q is None else int((q * y_sent).sum())  # every host feature's events add up to it
    s.broadcast(channel, hosts, Stage.LABELS, {"labels": enc, "weights": None if q is None else sk.encrypt_ints(q)})
    unit = float(1 << spec.WEIGHT_BITS)

    # own features, locally (same code path as the hosts' bins)
    own = {}
    for j, b in enumerate(local_bins(table.X, list(table.feature_names), list(table.columns), params)):
        a = b.assign(table.X[:, j])
        if q is None:
            ev, tot = bin_event_counts(a, y, b.n_bins), b.counts
        else:
            ev = np.bincount(a, weights=q * y64, minlength=b.n_bins) / unit
            tot = np.bincount(a, weights=q, minlength=b.n_bins) / unit
        groups, woe, iv = finish_feature(ev, tot, params, b.categorical)
        if groups is not None:
            b = b.merge(groups)
        own[b.name] = b.with_woe(woe, iv)

    host_iv: dict[str, float] = {}
    host_bins: dict[str, dict] = {}
    for h in hosts:
        msg = s.recv(channel, h, Stage.COUNTS)
        nb = msg["n_bins"]
        feats = msg["features"]
        if len(feats) != nb.size or len(msg["categorical"]) != nb.size or msg["totals"].size != int(nb.sum()):
            raise ProtocolError(f"binning: inconsistent bin layout from {h!r}")
        if any(not isinstance(f, str) or not f.startswith(f"{h}.") for f in feats):
            raise ProtocolError(f"binning: {h!r} sent feature names outside its namespace")
        small = (msg["totals"] > 0) & (msg["totals"] < params.min_bin_count)
        if small.any():
            raise ProtocolError(f"binning: {h!r} revealed a bin below min_bin_count={params.min_bin_count}")
        if (msg["weights"] is None) != (q is None):
            raise ProtocolError(f"binning: {h!r} sent {'no ' if q is not None else ''}weighted bin totals")
        # Every row lies in exactly one bin of each feature: a feature's plain totals add up to the aligned
        # rows (and its weighted totals to the guest's own weight sum). Checked before anything derived from a
        # decryption is used, so the bounds below are the guest's, not the host's.
        totals = msg["totals"]
        cuts = np.cumsum(nb)[:-1]
        if np.any(nb < 1) or np.any(totals < 0) or any(int(t.sum()) != len(table) for t in np.split(totals, cuts)):
            raise ProtocolError(f"binning: bin totals from {h!r} do not add up to the aligned rows")
        if q is not None:
            qsum = int(q.sum())
            totals = decrypt_counts(sk, pk, msg["weights"], qsum, h, "weighted bin totals")
            if totals.size != msg["totals"].size or any(int(t.sum()) != qsum for t in np.split(totals, cuts)):
                raise ProtocolError(f"binning: weighted bin totals from {h!r} are malformed")
        # events per bin: in [0, min(max total, encrypted events)] under the guard, then each against its
        # own bin's total, and a feature's events add up to what the guest encrypted
        bound = min(int(totals.max()) if totals.size else 0, ev_total)
        events = decrypt_counts(sk, pk, msg["events"], bound, h, "event counts")
        if events.size != totals.size or np.any(events > totals) or any(
                int(e.sum()) != ev_total for e in np.split(events, cuts)):
            raise ProtocolError(f"binning: event counts from {h!r} do not fit the bin totals")
        events = debias_events(events, totals, params.label_epsilon)  # weighted counts: same formula, in units
        if q is not None:
            events, totals = events / unit, totals / unit
        groups_l, woe_l, iv_l = [], [], []
        off = 0
        for f, k, cat in zip(feats, nb.tolist(), msg["categorical"]):
            ev, tot = events[off : off + k], totals[off : off + k]
            off += k
            groups, woe, iv = finish_feature(ev, tot, params, bool(cat))
            groups_l.append(groups)
            woe_l.append(woe)
            iv_l.append(iv)
            host_iv[f] = float(iv.sum())
            host_bins[f] = {"totals": msg["totals"][off - k : off], "events": ev, "woe": woe, "iv": iv}
            if q is not None:
                host_bins[f]["weighted_totals"] = tot
        s.send(channel, h, Stage.RESULT, {"groups": groups_l, "woe": woe_l, "iv": iv_l})
    return {"bins": own, "host_iv": host_iv, "host_bins": host_bins}
