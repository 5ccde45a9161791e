"""Federated WOE binning equals the centralized computation; small bins are never revealed."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.data import Table
from fedcredit.errors import DataError, ProtocolError
from fedcredit.models.woe import fit_woe
from fedcredit.protocols.binning import BinningParams, run_guest, run_host
from fedcredit.testing import small_keypair
from fedcredit.transport.memory import MemoryHub, run_local


def _tables(seed=0, n=600):
    r = np.random.default_rng(seed)
    ids = [f"id{i}" for i in range(n)]
    xg = r.normal(size=(n, 2))
    xh = np.c_[r.normal(size=n), r.integers(0, 5, n).astype(float), r.exponential(size=n)]
    xh[r.random(n) < 0.05, 2] = np.nan  # ~30 missing: below a min count of 40, merged
    xh[r.random(n) < 0.2, 0] = np.nan  # ~120 missing: own bin
    z = xg[:, 0] + 0.8 * np.nan_to_num(xh[:, 0]) + 0.3 * xh[:, 1]
    y = (r.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    g = Table.from_arrays("bank", ids, xg, ["a", "b"], y=y)
    h = Table.from_arrays("gov", ids, xh, ["c", "cat", "e"])
    return g, h, y


def _run(g, h, params, hub=None):
    kp = small_keypair(512)
    hub = hub or MemoryHub(["bank", "gov"])
    out = run_local(
        {"bank": lambda ch: run_guest(ch, ["gov"], g, params, keypair=kp),
         "gov": lambda ch: run_host(ch, "bank", h, params)},
        hub=hub, timeout=60,
    )
    return out, hub


@pytest.mark.parametrize("method", ["quantile", "monotonic"])
@pytest.mark.parametrize("min_bin_count", [1, 40])
def test_federated_woe_equals_centralized(method, min_bin_count):
    g, h, y = _tables()
    params = BinningParams(method=method, max_bins=8, min_bin_count=min_bin_count, categorical=["cat"])
    out, _ = _run(g, h, params)
    for table, bins in ((g, out["bank"]["bins"]), (h, out["gov"])):
        for j, name in enumerate(table.feature_names):
            ref = fit_woe(table.X[:, j], y, name=name, method=method, max_bins=8,
                          categorical=name.endswith(".cat"), min_bin_count=min_bin_count)
            got = bins[name]
            np.testing.assert_array_equal(got.counts, ref.counts)
            np.testing.assert_array_equal(got.edges, ref.edges)
            np.testing.assert_allclose(got.woe, ref.woe, rtol=0, atol=1e-12)
            np.testing.assert_allclose(got.iv, ref.iv, rtol=0, atol=1e-12)
            if table is h:
                assert out["bank"]["host_iv"][name] == pytest.approx(ref.total_iv, abs=1e-12)


def test_small_bins_are_never_revealed_and_labels_stay_encrypted():
    g, h, y = _tables(1)
    params = BinningParams(max_bins=10, min_bin_count=40, categorical=["cat"])
    out, hub = _run(g, h, params)
    for f, info in out["bank"]["host_bins"].items():
        t = info["totals"]
        assert np.all((t == 0) | (t >= 40)), f
    # the small missing bin of gov.e was merged, not revealed
    e = out["gov"]["gov.e"]
    assert e.missing_merged_into is not None and e.counts[-1] == 0
    # the label vector never crosses the wire in plaintext
    ybytes = np.asarray(y, dtype=np.int8).tobytes()
    for s, r, tag, payload in hub.captured:
        assert ybytes not in payload
        if s == "gov":
            for j in range(h.X.shape[1]):
                col = h.X[:, j]
                assert col[~np.isnan(col)].astype(np.float64).tobytes()[:64] not in payload


def test_guest_refuses_small_bin_from_host():
    g, h, _ = _tables(2)
    lax = BinningParams(min_bin_count=1)
    strict = BinningParams(min_bin_count=400)
    kp = small_keypair(512)
    with pytest.raises(ProtocolError, match="below min_bin_count"):
        run_local({"bank": lambda ch: run_guest(ch, ["gov"], g, strict, keypair=kp),
                   "gov": lambda ch: run_host(ch, "bank", h, lax)}, timeout=60)


def test_non_binary_label_is_refused():
    g, h, _ = _tables(3)
    bad = Table.from_arrays("bank", g.ids, g.X, ["a", "b"])
    object.__setattr__(bad, "y", np.r_[np.zeros(len(g) - 1), 2].astype(np.int8))
    with pytest.raises(DataError, match="binary"):
        run_guest(None, ["gov"], bad, BinningParams())
