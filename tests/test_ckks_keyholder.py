"""Issue 23 items 6 and 7: the CKKS key holder decrypts only what the protocol sends, flooded, rounded, counted.

Before: ``packed_sums`` decrypted any blob under the key that claimed the strided layout (any level, scale or
stride) and returned the unrounded residue-class sums -- a crafted ciphertext (for instance a fresh encryption
relabelled as a product with stride 4096) returned every slot at full precision, the raw material of the
Li--Micciancio key-recovery attacks -- and a peer could ask for as many decryptions as it liked.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedcredit.crypto.blob import CipherBlob
from fedcredit.errors import ProtocolError
from fedcredit.protocols.hetero_lr import LRParams, _ckks
from fedcredit.protocols.hetero_lr._common import Plan


@pytest.fixture(scope="module")
def pair():
    owner = _ckks.new_context()
    return owner, _ckks.context_from_wire(_ckks.context_to_wire(owner))


def _relabel(blob: CipherBlob, **meta) -> CipherBlob:
    return dataclasses.replace(blob, meta={**blob.meta, **meta})


def _product(peer, X=None, mask_bits=_ckks.MASK_BITS):
    X = np.ones((10, 3)) if X is None else X
    v = peer.encrypt(np.ones(X.shape[0]))
    m = np.random.default_rng(0).uniform(-1, 1, peer.slots) * 2.0**mask_bits
    return v.matvec_strided(X, mask=m + 1j * m).to_blob()


def test_crafted_fresh_ciphertext_claiming_the_strided_layout_is_refused(pair):
    owner, peer = pair
    full = peer.encrypt(np.random.default_rng(1).normal(size=peer.slots)).to_blob()
    crafted = _relabel(full, stride=peer.slots)  # every slot its own residue class: a full-precision decryption
    assert owner.vector_from_blob(crafted).stride == peer.slots  # the layout check alone lets it through
    with pytest.raises(ProtocolError, match="stride"):
        _ckks.KeyHolder(owner, {"p": 5}).packed_sums("p", crafted, "the gradient")
    with pytest.raises(ProtocolError, match="level and scale"):
        _ckks.KeyHolder(owner, {"p": 5}).packed_sums("p", _relabel(full, stride=2), "the gradient")


def test_wrong_scale_at_the_right_level_is_refused(pair):
    owner, peer = pair
    # a TenSEAL plaintext product: one rescale like matvec_strided, but its scale reset to 2^40 (not 2^80/q)
    prod = peer.encrypt(np.ones(peer.slots)).mul_plain(np.full(peer.slots, 3.0)).to_blob()
    with pytest.raises(ProtocolError, match="level and scale"):
        _ckks.KeyHolder(owner, {"p": 5}).packed_sums("p", _relabel(prod, stride=2), "the gradient")


def test_a_peers_stride_may_not_change(pair):
    owner, peer = pair
    holder = _ckks.KeyHolder(owner, {"p": 5})
    holder.packed_sums("p", _product(peer), "the gradient")  # 3 columns: stride 2
    with pytest.raises(ProtocolError, match="stride"):
        holder.packed_sums("p", _product(peer, np.ones((10, 1))), "the gradient")  # stride 1


def test_values_beyond_the_masks_are_refused(pair):
    owner, peer = pair
    with pytest.raises(ProtocolError, match="beyond any masked product"):
        _ckks.KeyHolder(owner, {"p": 5}).packed_sums("p", _product(peer, mask_bits=45), "the gradient")


def test_outputs_are_flooded_and_rounded(pair):
    owner, peer = pair
    blob = _product(peer)
    exact = owner.decrypt_strided(owner.vector_from_blob(blob))
    holder = _ckks.KeyHolder(owner, {"p": 5})
    a, b = holder.packed_sums("p", blob, "g"), holder.packed_sums("p", blob, "g")
    cell = 2.0**-_ckks.ROUND_BITS
    for out in (a, b):
        assert all(v / cell == round(v / cell) for v in out)
        np.testing.assert_allclose(out, exact, rtol=0, atol=cell)
    assert a != b or not np.array_equal(a, exact)  # fresh noise per decryption (equal twice: p = 2^-64)


def test_decryptions_beyond_the_budget_are_refused(pair):
    owner, peer = pair
    p = LRParams(backend="ckks", batch_size=100, max_epochs=2, validation_fraction=0.2)
    plan = Plan(500, p)  # 400 training rows: 4 batches a epoch
    budget = _ckks.decryption_budget(plan, p, ["g", "h"], loss_peers=["g"])
    assert budget == {"g": 4 * 2 + 2, "h": 4 * 2}
    holder = _ckks.KeyHolder(owner, {"h": 2})
    blob = _product(peer)
    holder.packed_sums("h", blob, "g")
    holder.packed_sums("h", blob, "g")
    with pytest.raises(ProtocolError, match="more decryptions than the job's plan allows"):
        holder.packed_sums("h", blob, "g")
    with pytest.raises(ProtocolError, match="more decryptions"):
        holder.packed_sums("stranger", blob, "g")


def test_masked_loss_is_checked_rounded_and_counted(pair):
    owner, peer = pair
    n = 50
    z = np.random.default_rng(2).normal(size=n)
    R = _ckks.masks(n)
    loss = (peer.encrypt(z).mul_plain(z) + peer.encrypt(R)).to_blob()  # what the guest sends (one product)
    holder = _ckks.KeyHolder(owner, {"g": 1})
    v = holder.slot_sum("g", loss, n, "the masked loss")
    assert v / 2.0**-_ckks.ROUND_BITS == round(v / 2.0**-_ckks.ROUND_BITS)
    assert abs(v - float(np.sum(R)) - float(z @ z)) < 1e-3
    with pytest.raises(ProtocolError, match="more decryptions"):
        holder.slot_sum("g", loss, n, "the masked loss")
    with pytest.raises(ProtocolError, match="level and scale"):  # a fresh vector: its slots decrypt unmasked
        _ckks.KeyHolder(owner, {"g": 1}).slot_sum("g", peer.encrypt(z).to_blob(), n, "the masked loss")


def test_received_vectors_must_be_at_the_protocols_level(pair):
    owner, peer = pair
    fresh = peer.encrypt(np.ones(20)).to_blob()
    prod = peer.encrypt(np.ones(20)).mul_plain(2.0).to_blob()
    assert len(_ckks.recv_vector(owner, fresh, 20, "scores")) == 20
    assert len(_ckks.recv_vector(owner, prod, 20, "cross terms", products=1)) == 20
    with pytest.raises(ProtocolError, match="level and scale"):
        _ckks.recv_vector(owner, prod, 20, "scores")
    with pytest.raises(ProtocolError, match="level and scale"):
        _ckks.recv_vector(owner, fresh, 20, "cross terms", products=1)


def test_scores_and_features_are_clipped_to_the_stated_bound(pair):
    """Item 7: the values under the 2^30 masks are bounded by the clips the docs state the statistical
    distance for (|z_p| <= SCORE_CLIP per party, |x| <= FEATURE_CLIP)."""
    owner, peer = pair
    np.testing.assert_array_equal(_ckks.clip_scores([-100.0, 3.0, 9.0]), [-_ckks.SCORE_CLIP, 3.0, _ckks.SCORE_CLIP])
    X = np.ones((10, 1))
    X[0, 0] = 1e6
    blob, rsum = _ckks.packed_products(peer, peer.encrypt(np.ones(10)), X)
    got = _ckks.unmask(_ckks.KeyHolder(owner, {"p": 1}).packed_sums("p", blob, "g"), rsum)
    assert abs(got[0] - (9.0 + _ckks.FEATURE_CLIP)) < 1e-3
