"""Secure-aggregation primitives: key agreement, masks, ring quantization, Shamir, sealed shares."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from fedcredit.crypto import secagg as sa
from fedcredit.errors import ConfigError, DecryptionError, ProtocolError


@pytest.mark.parametrize("n, t", [(2, 2), (3, 2), (5, 3), (7, 4)])
def test_shamir_any_t_shares_recover_the_secret(n, t):
    secret = sa.secret_to_int(b"\xff" * 32)
    shares = sa.shamir_split(secret, list(range(1, n + 1)), t)
    for subset in itertools.combinations(sorted(shares), t):
        assert sa.shamir_combine({x: shares[x] for x in subset}, t) == secret


@pytest.mark.parametrize("n, t", [(3, 2), (5, 3)])
def test_shamir_fewer_than_t_shares_fail_or_mislead(n, t):
    secret = 123456789
    shares = sa.shamir_split(secret, list(range(1, n + 1)), t)
    few = dict(list(shares.items())[: t - 1])
    with pytest.raises(ProtocolError, match=f"need {t} shares"):
        sa.shamir_combine(few, t)
    # interpolating t-1 shares as if the threshold were t-1 gives garbage, not the secret
    if t > 2:
        assert sa.shamir_combine(few, t - 1) != secret


def test_shamir_shares_are_fresh_each_time():
    a = sa.shamir_split(42, [1, 2, 3], 2)
    b = sa.shamir_split(42, [1, 2, 3], 2)
    assert a != b


@pytest.mark.parametrize("bad", [{"threshold": 0}, {"threshold": 4}])
def test_shamir_rejects_bad_threshold(bad):
    with pytest.raises(ConfigError, match="threshold must be in"):
        sa.shamir_split(1, [1, 2, 3], bad["threshold"])


def test_pairwise_secret_is_symmetric_and_pair_specific():
    a, b, c = sa.KeyPair.generate(), sa.KeyPair.generate(), sa.KeyPair.generate()
    ab = a.agree("a", "b", b.public)
    assert ab == b.agree("b", "a", a.public)
    assert ab != a.agree("a", "c", c.public)
    # names are bound in: the same keys under other names give another secret
    assert ab != a.agree("a", "x", b.public)


def test_low_order_public_key_is_refused():
    a = sa.KeyPair.generate()
    with pytest.raises(ProtocolError, match="invalid"):
        a.agree("a", "b", bytes(32))
    with pytest.raises(ProtocolError, match="32 bytes"):
        a.agree("a", "b", b"short")


def test_round_seeds_differ_and_masks_are_deterministic():
    s = b"k" * 32
    assert sa.mask_seed(s, 0) != sa.mask_seed(s, 1)
    m1 = sa.expand_mask(sa.mask_seed(s, 3), 100)
    m2 = sa.expand_mask(sa.mask_seed(s, 3), 100)
    assert m1.dtype == np.uint64 and np.array_equal(m1, m2)
    assert not np.array_equal(m1, sa.expand_mask(sa.mask_seed(s, 4), 100))


def test_expanded_mask_is_uniform():
    m = sa.expand_mask(b"\x01" * 32, 20000)
    top = (m >> np.uint64(56)).astype(np.int64)
    _, p = stats.chisquare(np.bincount(top, minlength=256))
    assert p > 1e-4
    assert stats.kstest(m.astype(np.float64) / 2.0**64, "uniform").pvalue > 1e-4


@pytest.mark.parametrize("frac_bits", [16, 24, 32])
@pytest.mark.parametrize("n", [2, 5])
def test_quantized_ring_sum_is_exact(rng, frac_bits, n):
    clip = 1000.0
    xs = [np.clip(rng.normal(0, 300, 50), -clip, clip) for _ in range(n)]
    q = sum(sa.quantize(x, clip=clip, frac_bits=frac_bits) for x in xs)
    expected = sum(np.rint(np.clip(x, -clip, clip) * 2.0**frac_bits) for x in xs) / 2.0**frac_bits
    assert np.array_equal(sa.dequantize(q, frac_bits=frac_bits), expected)
    assert np.max(np.abs(sa.dequantize(q, frac_bits=frac_bits) - sum(np.clip(x, -clip, clip) for x in xs))) <= n * 2.0 ** -(frac_bits + 1)


def test_quantize_handles_negatives_and_the_bounds():
    q = sa.quantize(np.array([-1.0, 1.0, -0.25]), clip=1.0, frac_bits=8)
    assert np.array_equal(sa.dequantize(q, frac_bits=8), [-1.0, 1.0, -0.25])


@pytest.mark.parametrize("x", [[5.0, 0.0], [0.0, -1.0 - 2.0**-20]])
def test_quantize_refuses_values_beyond_clip_instead_of_clipping_them(x):
    # clipped silently, a bank's row count or n * theta beyond the bound would make the sum (and the model) wrong
    with pytest.raises(ConfigError, match=r"exceeds the clipping bound clip=1 .*raise 'clip'") as exc:
        sa.quantize(np.array(x), clip=1.0, frac_bits=8)
    assert "5" not in str(exc.value)  # no value in the message


@pytest.mark.parametrize("n, clip, frac_bits", [(4, 2.0**40, 24), (2**20, 2.0**24, 24)])
def test_headroom_refuses_overflowing_rings(n, clip, frac_bits):
    with pytest.raises(ConfigError, match="ring overflow"):
        sa.check_headroom(n, clip, frac_bits)


def test_headroom_accepts_defaults():
    sa.check_headroom(1000, 2.0**24, 24)


def test_seal_roundtrip_and_tamper_detection():
    key = b"\x02" * 32
    sealed = sa.seal(key, b"share bytes", b"round-1|a|b")
    assert sa.open_sealed(key, sealed, b"round-1|a|b") == b"share bytes"
    assert b"share bytes" not in sealed
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    for bad_key, blob, aad in [(key, tampered, b"round-1|a|b"), (key, sealed, b"round-2|a|b"),
                               (b"\x03" * 32, sealed, b"round-1|a|b"), (key, b"x", b"round-1|a|b")]:
        with pytest.raises(DecryptionError, match="^decryption failed$"):
            sa.open_sealed(bad_key, blob, aad)
