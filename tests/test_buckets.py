"""The shared histogram kernel (fedcredit/crypto/_buckets.py): grouped passes return exactly the
per-feature bucket products, for both schemes, in this process and in the pool workers."""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from gmpy2 import mpz

from fedcredit.crypto import pool
from fedcredit.crypto._buckets import MAX_JOINT, feature_bucket_sums, plan_groups
from fedcredit.testing import small_keypair as small_paillier_keypair
from fedcredit.testing import small_ou_keypair


def _naive(cs, bins, n_bins, m):
    out = []
    for j in range(bins.shape[1]):
        for b in range(n_bins):
            acc = mpz(1)
            for c in (c for c, x in zip(cs, bins[:, j]) if x == b):
                acc = acc * c % m
            out.append(acc)
    return out


def _is_partition(groups, f):
    flat = sorted(j for g in groups for j in g)
    return flat == list(range(f))


def test_plan_pairs_32_bin_features_on_many_rows_and_keeps_singles_on_few():
    assert all(len(g) == 2 for g in plan_groups(40_000, [32] * 10))
    assert all(len(g) == 1 for g in plan_groups(1_000, [32] * 10))
    # three 32-bin features share a pass only when the rows dwarf 3 x 32^3 joint buckets
    assert max(len(g) for g in plan_groups(800_000, [32] * 9)) == 3
    flags = plan_groups(40_000, [3] * 16)
    assert _is_partition(flags, 16) and max(len(g) for g in flags) >= 4


@pytest.mark.parametrize("n_rows", [0, 1, 5_000, 123_457])
def test_plan_is_a_partition_and_respects_the_joint_cap(n_rows):
    rng = np.random.default_rng(n_rows)
    sizes = rng.integers(1, 257, size=40)
    groups = plan_groups(n_rows, sizes)
    assert _is_partition(groups, 40)
    for g in groups:
        assert int(np.prod([sizes[j] for j in g], dtype=np.int64)) <= MAX_JOINT or len(g) == 1


@pytest.mark.parametrize("rows,feats,n_bins", [(0, 3, 4), (1, 3, 4), (7, 2, 5), (3_000, 6, 32), (2_500, 9, 3),
                                               (2_000, 3, 256)])
def test_grouped_sums_equal_the_per_feature_products(rows, feats, n_bins):
    rng = np.random.default_rng(rows + feats)
    m = mpz(secrets.randbits(256)) | 1
    cs = [mpz(secrets.randbelow(int(m))) for _ in range(rows)]
    bins = rng.integers(0, n_bins, size=(rows, feats)).astype(np.uint8)
    if rows > 10:
        bins[:, 0] = np.minimum(bins[:, 0], 1)  # a feature using 2 of its codes: uneven group sizes
        bins[: rows // 2, -1] = 0  # a skewed feature
    got = feature_bucket_sums(cs, bins, n_bins, m)
    assert len(got) == feats * n_bins
    assert got == _naive(cs, bins, n_bins, m)
    assert feature_bucket_sums(np.asarray(cs + [None], dtype=object)[:-1], bins, n_bins, m) == got
    assert feature_bucket_sums(cs, bins, n_bins, m, grouped=False) == got


def test_grouping_is_engaged_on_the_tested_shapes():
    # guards the test above: the large cases really run joint passes
    assert any(len(g) > 1 for g in plan_groups(3_000, [32] * 6))
    assert any(len(g) > 1 for g in plan_groups(2_500, [3] * 9))


@pytest.mark.parametrize("scheme", ["paillier", "ou"])
@pytest.mark.parametrize("parallel", [False, True])
def test_cipher_histograms_decrypt_to_the_plaintext_bin_sums(scheme, parallel):
    pk, sk = (small_paillier_keypair if scheme == "paillier" else small_ou_keypair)(768)
    rng = np.random.default_rng(3)
    rows, feats, n_bins = 5_000, 4, 32
    g = rng.integers(-(2**20), 2**20, size=rows)
    bins = rng.integers(0, n_bins, size=(rows, feats)).astype(np.uint8)
    assert any(len(x) > 1 for x in plan_groups(rows // (2 if parallel else 1), bins.max(axis=0) + 1))
    cv = sk.encrypt_ints(g.tolist())
    hist = cv.histogram(bins, n_bins, parallel=parallel)
    want = [int(g[bins[:, j] == b].sum()) for j in range(feats) for b in range(n_bins)]
    assert sk.decrypt_signed(hist) == want


def test_pool_workers_return_the_in_process_sums():
    pk, sk = small_paillier_keypair(768)
    rng = np.random.default_rng(4)
    cv = sk.encrypt_ints(rng.integers(0, 1000, size=2_600).tolist())
    bins = rng.integers(0, 32, size=(2_600, 3)).astype(np.uint8)
    w = pk.width
    data = b"".join(int(c).to_bytes(w, "big") for c in cv.ciphertexts())
    out = pool.w_histogram(pk._n_bytes, data, w, bins, 32)
    got = [int.from_bytes(out[i:i + w], "big") for i in range(0, len(out), w)]
    assert got == [int(c) for c in cv.histogram(bins, 32, parallel=False).ciphertexts()]
