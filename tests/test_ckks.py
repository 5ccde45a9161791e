"""CKKS companion: precision bounds stated in fedcredit/crypto/ckks.py, key split, blobs."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from fedcredit.crypto.ckks import CKKSContext, CKKSVector
from fedcredit.errors import ConfigError, DecryptionError
from fedcredit.transport import serde


@pytest.fixture(scope="module")
def ctx():
    return CKKSContext.generate()


@pytest.fixture(scope="module")
def pub(ctx):
    return CKKSContext.from_serialized(ctx.public().serialize())


def test_public_copy_has_no_secret_key(ctx, pub):
    assert ctx.is_private and not pub.is_private and not ctx.public().is_private
    assert pub.fingerprint == ctx.fingerprint
    assert not CKKSContext.from_serialized(ctx.serialize()).is_private
    assert CKKSContext.from_serialized(ctx.serialize(save_secret_key=True, save_galois_keys=False)).is_private
    with pytest.raises(TypeError, match="pickling is refused"):
        pickle.dumps(ctx)


@pytest.mark.parametrize("size", [1, 100, 4096, 5000])
def test_round_trip_precision(ctx, pub, rng, size):
    x = rng.uniform(-1, 1, size=size)
    x[0] = 0.0
    v = pub.encrypt(x)
    assert len(v) == size
    np.testing.assert_allclose(ctx.decrypt(v), x, atol=1e-6)


def test_operations_against_numpy(ctx, pub, rng):
    x, y = rng.uniform(-1, 1, size=(2, 5000))
    vx, vy = pub.encrypt(x), pub.encrypt(y)
    np.testing.assert_allclose(ctx.decrypt(vx + vy), x + y, atol=1e-5)
    np.testing.assert_allclose(ctx.decrypt(vx - vy), x - y, atol=1e-5)
    np.testing.assert_allclose(ctx.decrypt(vx.add_plain(y)), x + y, atol=1e-5)
    np.testing.assert_allclose(ctx.decrypt(vx.add_plain(0.5)), x + 0.5, atol=1e-5)
    np.testing.assert_allclose(ctx.decrypt(vx.mul_plain(y)), x * y, atol=1e-5)
    np.testing.assert_allclose(ctx.decrypt(vx.mul_plain(-2.0)), -2 * x, atol=1e-5)
    np.testing.assert_allclose(ctx.decrypt(vx.sum()), [x.sum()], atol=1e-4 * max(1, abs(x.sum())))
    np.testing.assert_allclose(ctx.decrypt(vx.dot(y)), [x @ y], atol=1e-4 * max(1, abs(x @ y)))


def test_sum_of_ten_party_vectors(ctx, pub, rng):
    xs = rng.uniform(-1, 1, size=(10, 300))
    total = pub.encrypt(xs[0])
    for x in xs[1:]:
        total = total + pub.encrypt(x)
    np.testing.assert_allclose(ctx.decrypt(total), xs.sum(axis=0), atol=1e-5)


def test_blob_round_trip(ctx, pub, rng):
    x = rng.uniform(-1, 1, size=5000)
    blob = serde.decode(serde.encode(pub.encrypt(x)))
    assert blob.scheme == "ckks" and blob.count == 1 and blob.width == 0
    v = CKKSVector.from_blob(ctx, blob)
    np.testing.assert_allclose(ctx.decrypt(v), x, atol=1e-6)


def test_blob_from_other_key_rejected(ctx, rng):
    other = CKKSContext.generate(galois_keys=False)
    blob = other.encrypt([1.0, 2.0]).to_blob()
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        ctx.vector_from_blob(blob)
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        ctx.decrypt(other.encrypt([1.0]))


def test_tampered_blob_rejected(ctx):
    blob = ctx.encrypt([1.0, 2.0]).to_blob()
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        ctx.vector_from_blob(dataclasses.replace(blob, data=blob.data[:-10]))


def test_public_context_cannot_decrypt(pub):
    with pytest.raises(DecryptionError, match="^decryption failed$"):
        pub.decrypt(pub.encrypt([1.0]))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"poly_modulus_degree": 4096}, "poly_modulus_degree"),
        ({"coeff_mod_bit_sizes": (60, 60, 60, 60)}, "128-bit security allows"),
    ],
)
def test_insecure_parameters_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CKKSContext.generate(**kwargs)


def test_length_mismatch(pub):
    with pytest.raises(ConfigError, match="length mismatch"):
        pub.encrypt([1.0, 2.0]) + pub.encrypt([1.0])
