"""Packed, masked gradient sums (issue 23, the cost of item 5): one uniform ``r^n`` re-randomization per party and
batch instead of one per column, and the key owner still sees only values uniform mod n."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit.crypto.paillier import CipherVector, PrivateKey
from fedcredit.errors import DataError, ProtocolError
from fedcredit.models.logistic import LogisticRegressionGD
from fedcredit.protocols.hetero_lr import LRParams, run_arbiter, run_guest, run_host
from fedcredit.protocols.hetero_lr import _cipher_paillier, _common
from fedcredit.testing import small_keypair
from fedcredit.transport.memory import run_local

F_G, F_H = 4, 6  # the guest's features (+ intercept) and the host's: 5 + 6 gradient columns per batch


def _data(n=300, seed=3):
    r = np.random.default_rng(seed)
    Xg, Xh = r.normal(size=(n, F_G)), r.normal(size=(n, F_H))
    z = Xg @ r.normal(size=F_G) * 0.3 + Xh @ r.normal(size=F_H) * 0.3
    y = (r.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return Xg, Xh, y


def _run(mode, p, Xg, Xh, y):
    arb = "a" if mode == "coordinated" else None
    roles = {"g": lambda ch: run_guest(ch, Xg, y, p, hosts=["h"], arbiter=arb, keypair=small_keypair(512, index=0)),
             "h": lambda ch: run_host(ch, Xh, p, guest="g", arbiter=arb, keypair=small_keypair(512, index=1))}
    if arb:
        roles["a"] = lambda ch: run_arbiter(ch, len(y), p, guest="g", hosts=["h"], keypair=small_keypair(512))
    return run_local(roles, timeout=120)


@pytest.mark.parametrize("mode", ["coordinated", "two_party"])
def test_one_uniform_rerandomization_per_party_and_batch(monkeypatch, mode):
    """Before: every gradient column was its own ciphertext, re-randomized with a uniform ``r^n`` on its way to
    the key owner (5 + 6 = 11 per batch here, ~10 ms each at 2048 bits); now each party's sums are packed into
    one ciphertext (512-bit test keys hold 6 slots of ~80 bits; 2048-bit keys about 25)."""
    counted = []
    orig = CipherVector.obfuscate

    def counting(self, *, parallel=None, for_key_owner=True):
        if for_key_owner:
            counted.append(len(self))
        return orig(self, parallel=parallel, for_key_owner=for_key_owner)

    monkeypatch.setattr(CipherVector, "obfuscate", counting)
    Xg, Xh, y = _data()
    kw = dict(batch_size=100, max_epochs=2, learning_rate=0.5, validation_fraction=0.0, alpha=0.01)
    out = _run(mode, LRParams(mode=mode, **kw), Xg, Xh, y)
    n_batches = 2 * 3
    assert sum(counted) == n_batches * 2  # was n_batches * (F_G + 1 + F_H)
    ref = LogisticRegressionGD(**kw).fit(np.hstack([Xg, Xh]), y)  # and still exact
    np.testing.assert_allclose(np.r_[out["g"]["coef"], out["h"]["coef"]], ref.coef_, rtol=0, atol=1e-9)
    assert out["g"]["intercept"] == pytest.approx(ref.intercept_, abs=1e-9)


def test_key_owner_reads_nothing_from_packed_gradients(monkeypatch):
    """Attack: the key owner (two-party: each party for the other's gradient) peels the slots off the packed value
    it decrypts. Packing alone would hand it the other party's sums ``X_hᵀ u`` slot by slot; the mask uniform mod n
    on the whole packed plaintext leaves it values spread over all of Z_n, whose slots match nothing."""
    decrypted, truth = {}, {}
    dec, unp = PrivateKey.decrypt_ints, _cipher_paillier._unpacked

    def spy_decrypt(self, cv, **kw):
        out = dec(self, cv, **kw)
        decrypted.setdefault(cv.public_key.n, []).extend(int(v) for v in out)
        return out

    def spy_unpacked(values, m, pk, item_bits, count):
        out = unp(values, m, pk, item_bits, count)
        truth.setdefault(pk.n, []).append((item_bits, out))
        return out

    monkeypatch.setattr(PrivateKey, "decrypt_ints", spy_decrypt)
    monkeypatch.setattr(_cipher_paillier, "_unpacked", spy_unpacked)
    Xg, Xh, y = _data()
    p = LRParams(mode="two_party", batch_size=100, max_epochs=1, learning_rate=0.5, validation_fraction=0.0)
    _run("two_party", p, Xg, Xh, y)
    assert set(decrypted) == set(truth) and len(truth) == 2
    for n, values in decrypted.items():
        item_bits = truth[n][0][0]
        sums = {tuple(s) for _, s in truth[n]}
        for v in values:
            assert n >> 40 < v < n - (n >> 40)  # uniform mod n: outside this with probability 2^-39 per value
            # the attack: the key owner reads the slots of what it decrypted
            peeled = _common.unpack([v], len(next(iter(sums))), n.bit_length(), item_bits) \
                if _decodes(v, n, item_bits) else None
            assert peeled is None or tuple(peeled) not in sums


def _decodes(v, n, item_bits) -> bool:
    try:
        _common.unpack([v], (n.bit_length() - 1) // item_bits, n.bit_length(), item_bits)
        return True
    except ProtocolError:
        return False


def test_pack_round_trip_signed_and_refuses_overflow():
    pk, sk = small_keypair(512)
    r = np.random.default_rng(4)
    d = r.integers(-(2**50), 2**50, 50)
    K = r.integers(-768, 769, (50, 9))
    from fedcredit.protocols.hetero_lr._matvec import matvec

    want = [int(v) for v in K.T.astype(object) @ d.astype(object)]
    packed, m, item_bits = _common.pack_masked(matvec(pk.encrypt_ints(d), K), K, weighted=False)
    assert len(packed) == len(m) == 2 and len(packed.to_blob().data) == 2 * pk.width  # 9 sums in 2 ciphertexts
    vals = sk.decrypt_ints(pk.vector_from_blob(packed.to_blob()))
    got = _common.unpack(_common.unmask([int(v) for v in vals], m, pk.n, len(m)), 9, pk.bits, item_bits)
    assert got == want
    # a slot value beyond the bound (a party that sent too large a residual) garbles only the requester's decode
    with pytest.raises(ProtocolError, match="does not decode"):
        _common.unpack([1 << (3 * item_bits + 5)], 3, pk.bits, item_bits)


def test_diverged_scores_are_refused_before_encryption():
    _common.check_scores(np.array([1.0, -(2.0**19)]))
    with pytest.raises(DataError, match="diverged"):
        _common.check_scores(np.array([0.0, 2.0**_common.SCORE_BOUND_BITS]))
