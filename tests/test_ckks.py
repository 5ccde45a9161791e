"""CKKS companion: precision bounds stated in fedcredit/crypto/ckks/__init__.py, key split, blobs."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from fedcredit.crypto.ckks import ROTATION_STEPS, CKKSContext, CKKSVector, stride_for
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


# ------------------------------------------------------------------ strided matrix product (rotation keys)
@pytest.fixture(scope="module")
def rot_owner():
    return CKKSContext.generate(galois_keys=False, rotation_steps=ROTATION_STEPS)


@pytest.fixture(scope="module")
def rot_peer(rot_owner):
    peer = CKKSContext.from_serialized(rot_owner.serialize(save_galois_keys=False))
    peer.load_rotation_keys(rot_owner.rotation_keys())
    return peer


@pytest.mark.parametrize("rows, cols", [(1, 1), (300, 2), (3600, 14), (4096, 16), (5000, 3), (700, 17)])
def test_matvec_strided_equals_numpy(rot_owner, rot_peer, rng, rows, cols):
    v = rng.uniform(-8, 8, size=rows)
    X = np.round(rng.uniform(-3, 3, size=(rows, cols)) * 256) / 256
    re, im = rng.uniform(-(2.0**30), 2.0**30, size=(2, rot_peer.slots))
    out = rot_peer.encrypt(v).matvec_strided(X, mask=re + 1j * im)
    F = stride_for(cols)
    assert F == 1 << max((cols + 1) // 2 - 1, 0).bit_length()  # two columns per residue class
    assert out.stride == F and len(out) == rot_peer.slots and len(out._chunks) == 1
    back = rot_owner.vector_from_blob(serde.decode(serde.encode(out.to_blob())))  # the stride survives the wire
    sums = rot_owner.decrypt_strided(back)
    assert sums.shape == (2 * F,)
    msum = np.r_[re.reshape(-1, F).sum(axis=0), im.reshape(-1, F).sum(axis=0)]
    # stated precision (hetero_lr/_ckks.py): with 2^30 masks, ~3e-5 absolute (median) on the sums of 4,000 rows, up to
    # ~2e-4 when 2,048 slots fall into one residue class (measured max over 8 draws: 1.8e-4)
    np.testing.assert_allclose(sums[:cols] - msum[:cols], X.T @ v, rtol=0, atol=5e-4)
    np.testing.assert_allclose(sums[cols:], msum[cols:], rtol=0, atol=5e-4)  # unused residue classes: mask only


def test_matvec_strided_is_rerandomized_and_masked(rot_owner, rot_peer, rng):
    v, X = rng.normal(size=50), rng.normal(size=(50, 3))
    ev = rot_peer.encrypt(v)
    a = ev.matvec_strided(X, mask=np.zeros(rot_peer.slots)).to_blob().data
    b = ev.matvec_strided(X, mask=np.zeros(rot_peer.slots)).to_blob().data
    assert a != b  # fresh randomness in every result
    mask = rng.uniform(-(2.0**30), 2.0**30, size=rot_peer.slots)
    slots = rot_owner.decrypt(ev.matvec_strided(X, mask=mask))  # real parts
    assert np.abs(slots - mask).max() < 100 and np.abs(slots).min() > 1.0  # the key holder sees masked slots


def test_matvec_strided_needs_rotation_keys(ctx, pub, rot_owner, rng):
    bare = CKKSContext.from_serialized(rot_owner.serialize(save_galois_keys=False))
    with pytest.raises(ConfigError, match="no rotation key for step 1"):
        bare.encrypt(rng.normal(size=10)).matvec_strided(rng.normal(size=(10, 3)), mask=np.zeros(bare.slots))
    with pytest.raises(ConfigError, match="rotation keys"):
        bare.load_rotation_keys(b"not keys")
    other = CKKSContext.generate(poly_modulus_degree=16384, galois_keys=False)
    with pytest.raises(ConfigError, match="rotation keys"):
        other.load_rotation_keys(rot_owner.rotation_keys())  # keys for other parameters
    with pytest.raises(ConfigError, match="mask"):
        bare.encrypt([1.0]).matvec_strided([[1.0]], mask=np.zeros(3))
    with pytest.raises(ConfigError, match="shape"):
        bare.encrypt([1.0, 2.0]).matvec_strided([[1.0]], mask=np.zeros(bare.slots))
    with pytest.raises(ConfigError, match="no level left"):  # a product already used the one multiplication
        bare.encrypt([1.0, 2.0]).mul_plain([0.5, 0.5]).matvec_strided([[1.0], [1.0]], mask=np.zeros(bare.slots))
    assert CKKSContext.generate(galois_keys=False).rotation_keys() is None


def test_decrypt_strided_refuses_ordinary_vectors(rot_owner, rng):
    with pytest.raises(DecryptionError):
        rot_owner.decrypt_strided(rot_owner.encrypt(rng.normal(size=10)))
    blob = rot_owner.encrypt(rng.normal(size=10)).to_blob()
    bad = dataclasses.replace(blob, meta={**blob.meta, "stride": 3})
    with pytest.raises(DecryptionError):
        rot_owner.vector_from_blob(bad)
