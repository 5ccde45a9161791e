"""The client (bank) side of horizontal training: local SGD and the three ways to submit an update.

A client holds its own labelled table. Each round it receives the global
model, trains ``local_epochs`` on its rows, and submits the row-weighted
vector ``[n * theta, n, val_loss_sum, val_rows]`` through one of

* :class:`PlainSubmitter` — in the clear (**not private**, for comparison);
* :class:`SecAggSubmitter` — pairwise + self masks, Shamir shares (secagg);
* :class:`CkksSubmitter` — encrypted under a CKKS key held by the clients.

Each ``submit`` returns True when this client's update was part of the sum
and False when the aggregator dropped it from the round; either way the
client then waits for the next round's START.

**Key authentication.** In ``secagg`` and ``ckks`` each client checks every
public key the aggregator forwards against the key its owner sent it directly
(see :mod:`._keys`), so the aggregator cannot substitute keys.

Every message goes through the submitter's :attr:`session` (``spec.SPEC``):
derived tags, role, payload and order checks.
"""

from __future__ import annotations

import secrets
import zlib
from dataclasses import dataclass

import numpy as np

from ...crypto import secagg as sa
from ...errors import ConfigError, ProtocolError
from ...models import mlp
from ...transport.base import Channel
from . import spec
from ._ckks import CkksKeys
from ._keys import _authenticated_keys, _check_names, _require_direct_links, _send_direct
from .params import HomoParams
from .spec import Stage

__all__ = ["HomoClient", "PlainSubmitter", "SecAggSubmitter", "CkksSubmitter"]

_SHARE_BYTES = (sa.FIELD_PRIME.bit_length() + 7) // 8  # 66


class PlainSubmitter:
    """Send the update in the clear (the aggregator sees it)."""

    def __init__(self, party: str, aggregator: str, params: HomoParams, clients: list[str]):
        self.party, self.aggregator = party, aggregator
        self.session = spec.session(party, aggregator, clients, "plain")

    def setup(self, ch: Channel, first: int = 0) -> bool:
        return True

    def submit(self, ch: Channel, r: int, vector, extra: dict | None = None) -> bool:
        self.session.send(ch, self.aggregator, Stage.UPDATE, {"vector": _materialize(vector)}, r=r)
        return True


@dataclass
class _Dealt:
    """What a client keeps about the shares it dealt for one round."""

    holders: list[str]  # the share roster S(r) (this client included)
    self_seed: bytes  # b_u(r), fresh from the OS CSPRNG
    pair_seeds: dict[str, bytes]  # v -> k_uv(r) = HKDF(s_uv, "mask", r)
    own_self_share: int  # this client's own share of b_u(r)


class SecAggSubmitter:
    """One client's side of pipelined secure aggregation; key pair and pairwise secrets live for the job.

    Set-up (once per job): send the X25519 public key directly to every other
    client (DIRECT) and ADVERTISE it to the aggregator; on ROSTER ``K`` check
    each member's key against the one it sent directly, derive the pairwise
    secrets ``s_uv`` with every member (cached for the job) and deal the shares
    of round 0 (SHARES).

    Dealing the shares of round ``r`` to the share roster ``S(r)``: draw a
    fresh self-mask seed ``b_u(r)`` (32 bytes, :mod:`secrets`); derive
    ``k_uv(r) = HKDF(s_uv, "mask", r)``; Shamir-share ``b_u(r)`` and every
    ``k_uv(r)`` with threshold ``t`` (evaluation point of ``w``: its index in
    ``K`` + 1) and seal each member's shares with ChaCha20-Poly1305 under
    ``HKDF(s_uw, "share-enc")``, associated data binding round, sender,
    receiver and ``S(r)`` (so members with different views of the roster
    cannot open each other's shares).

    Round ``r``:

    1. START carries FORWARD: whether this client is in round ``r`` (its
       shares for ``r`` arrived), ``U2`` (who shared for ``r``), the sealed
       shares for ``r`` addressed to it, and ``S(r+1)`` (empty in the last
       round). Left out: send standalone SHARES for ``r + 1`` and wait for the
       next START.
    2. MASKED: train, upload ``quantize(x) + PRG(b_u(r)) + sum_v ±PRG(k_uv(r))``
       over ``v`` in ``U2``, together with the sealed shares for ``r + 1``.
    3. On UNMASK (survivors ``U3`` ⊆ ``U2``, lost = ``U2 \\ U3``): reveal its
       shares of ``b_u(r)`` for ``u`` in ``U3`` and of ``k_uv(r)`` for ``u``
       lost and ``v`` in ``U3`` — never both kinds for one client in one
       round (one UNMASK per round, and the two sets must partition ``U2``),
       and only shares of round ``r``.

    Only per-round seeds are ever revealed, so a client dropped in round r is
    exposed neither in earlier nor in later rounds, and its long-term key
    stays valid (no re-keying is needed when it comes back).
    """

    def __init__(self, party: str, aggregator: str, params: HomoParams, clients: list[str]):
        self.party, self.aggregator = party, aggregator
        self.clients = set(clients)
        self.threshold = params.threshold_for(len(clients))
        self.clip, self.frac_bits = params.clip, params.frac_bits
        self.timeout = params.client_timeout
        self.key_timeout = params.stage_timeout  # a member's direct key is sent before it advertises
        self.keys = sa.KeyPair.generate()
        self.roster: list[str] = []  # K: clients with keys for this job
        self._xs: dict[str, int] = {}  # Shamir evaluation point of each member of K
        self._secrets: dict[str, bytes] = {}  # peer -> pairwise secret s_uv (the job's lifetime)
        self._share_keys: dict[str, bytes] = {}  # peer -> HKDF(s_uv, "share-enc")
        self._dealt: dict[int, _Dealt] = {}
        self.session = spec.session(party, aggregator, clients, "secagg")

    def setup(self, ch: Channel, first: int = 0, *, halt_before: Stage | None = None) -> bool:
        """Advertise the key, learn the job's roster, deal the shares of round ``first`` (0 unless resumed).

        Returns False when this client is not part of the job (absent at key
        set-up). ``halt_before`` (fault-injection tests only) makes the client
        stop silently before its key set-up (DIRECT, ADVERTISE), or skip sending SHARES of round 0.
        """
        me, t = self.party, self.threshold
        _require_direct_links(ch, me, self.clients, "secagg")
        if halt_before is Stage.ADVERTISE:
            return False
        s = self.session
        unreached = _send_direct(ch, me, sorted(self.clients), Stage.DIRECT, self.keys.public, s)
        s.send(ch, self.aggregator, Stage.ADVERTISE, {"public_key": self.keys.public})
        roster = s.recv(ch, self.aggregator, Stage.ROSTER, timeout=self.timeout)
        if roster["dropped"]:
            return False
        k = _check_names(roster["clients"], self.clients, "roster")
        if me not in k:
            raise ProtocolError("homo roster: this client is missing from the roster")
        if roster["threshold"] != t:
            raise ProtocolError(f"homo roster: threshold {roster['threshold']} differs from the agreed {t}")
        if len(k) < t:
            raise ProtocolError(f"homo roster: {len(k)} clients is below the threshold {t}")
        keys = _authenticated_keys(ch, me, self.aggregator, Stage.DIRECT, k, roster["public_keys"], self.keys.public,
                                   unreached, self.key_timeout, "roster", s)
        self.roster = k
        self._xs = {c: i + 1 for i, c in enumerate(k)}
        for v in k:
            if v != me:
                self._secrets[v] = self.keys.agree(me, v, keys[v])
                self._share_keys[v] = sa.derive_key(self._secrets[v], "share-enc")
        sealed = self._deal(first, k)
        if halt_before is not Stage.SHARES:
            s.send(ch, self.aggregator, Stage.SHARES, {"sealed": sealed}, r=first)
        return True

    def _deal(self, r: int, holders) -> dict[str, bytes]:
        """Fresh seeds of round ``r``, Shamir-shared among ``holders``; returns ``{holder: sealed shares}``."""
        me, t = self.party, self.threshold
        holders = _check_names(holders, set(self.roster), "share roster")
        if me not in holders or len(holders) < t:
            raise ProtocolError(f"homo share roster of round {r}: {len(holders)} clients (threshold {t}) "
                                f"or this client missing")
        peers = [v for v in holders if v != me]
        self_seed = secrets.token_bytes(sa.SEED_BYTES)
        pair_seeds = {v: sa.mask_seed(self._secrets[v], r) for v in peers}
        xs = [self._xs[w] for w in holders]
        shares = [sa.shamir_split(sa.secret_to_int(s), xs, t) for s in [self_seed, *pair_seeds.values()]]
        aad = _aad(r, holders)
        sealed = {
            w: sa.seal(self._share_keys[w], b"".join(sh[self._xs[w]].to_bytes(_SHARE_BYTES, "big") for sh in shares),
                       aad(me, w))
            for w in peers
        }
        self._dealt[r] = _Dealt(list(holders), self_seed, pair_seeds, shares[0][self._xs[me]])
        return sealed

    def submit(self, ch: Channel, r: int, vector, extra: dict, *, halt_before: Stage | None = None) -> bool:
        """Run round ``r`` of secure aggregation for ``vector``.

        ``extra`` is START's ``aggregation`` field (FORWARD). ``vector`` may be
        a callable returning the array (called only when this client is in
        the round). ``halt_before`` (fault-injection tests only) makes the
        client stop silently before sending that stage's message, as if it
        crashed (SHARES and MASKED travel together: halting either withholds both).
        """
        me, agg, t, s = self.party, self.aggregator, self.threshold, self.session
        fwd = s.check(agg, Stage.FORWARD, extra)
        nxt = fwd["next"]
        dealt = self._dealt.pop(r, None)
        for old in [k for k in self._dealt if k <= r]:
            del self._dealt[old]  # seeds of rounds that are over are never used again
        if not fwd["included"]:
            if fwd["clients"] or fwd["sealed"]:
                raise ProtocolError("homo forward: a client left out of the round gets no shares")
            if nxt and halt_before is not Stage.SHARES:
                s.send(ch, agg, Stage.SHARES, {"sealed": self._deal(r + 1, nxt)}, r=r + 1)
            return False
        if dealt is None:
            raise ProtocolError(f"homo forward: round {r} includes this client, which dealt no shares for it")

        # -- FORWARD → MASKED (+ shares of round r+1) -----------------------
        u2 = _check_names(fwd["clients"], set(dealt.holders), "forward")
        if me not in u2 or len(u2) < t:
            raise ProtocolError(f"homo forward: {len(u2)} clients (threshold {t}) or this client missing")
        if set(fwd["sealed"]) != set(u2) - {me} or not all(isinstance(v, bytes) for v in fwd["sealed"].values()):
            raise ProtocolError("homo forward: expected one sealed share message from each other client")
        aad = _aad(r, dealt.holders)
        held_self = {me: dealt.own_self_share}
        held_pair: dict[str, dict[str, int]] = {}
        for u in u2:
            if u == me:
                continue
            plain = sa.open_sealed(self._share_keys[u], fwd["sealed"][u], aad(u, me))
            u_peers = [c for c in dealt.holders if c != u]
            if len(plain) != _SHARE_BYTES * (1 + len(u_peers)):
                raise ProtocolError(f"homo forward: shares from {u!r} have the wrong length")
            vals = [int.from_bytes(plain[i:i + _SHARE_BYTES], "big") for i in range(0, len(plain), _SHARE_BYTES)]
            held_self[u] = vals[0]
            held_pair[u] = dict(zip(u_peers, vals[1:]))
        vector = _materialize(vector)
        d = vector.shape[0]
        try:
            q = sa.quantize(vector, clip=self.clip, frac_bits=self.frac_bits)
        except ConfigError as exc:  # never clip silently: the sum, and so the model, would be wrong
            raise ConfigError(f"homo secagg round {r}: client {me!r} cannot submit its row-weighted update "
                              f"[n * theta, n, ...] exactly: {exc}") from None
        masked = q + sa.expand_mask(dealt.self_seed, d)
        for v in u2:
            if v != me:
                m = sa.expand_mask(dealt.pair_seeds[v], d)
                masked = masked + m if me < v else masked - m
        next_sealed = self._deal(r + 1, nxt) if nxt else {}
        if halt_before in (Stage.SHARES, Stage.MASKED):
            return False
        s.send(ch, agg, Stage.MASKED, {"masked": masked, "next_sealed": next_sealed}, r=r)

        # -- UNMASK → REVEAL -------------------------------------------------
        un = s.recv(ch, agg, Stage.UNMASK, r=r, timeout=self.timeout)
        if un["dropped"]:
            return False
        u3 = _check_names(un["survivors"], set(u2), "unmask")
        lost = _check_names(un["lost"], set(u2), "unmask")
        if set(u3) & set(lost) or set(u3) | set(lost) != set(u2):
            raise ProtocolError("homo unmask: survivors and lost clients must partition the round's clients")
        if me not in u3 or len(u3) < t:
            raise ProtocolError(f"homo unmask: only {len(u3)} survivors, below the threshold {t}")
        if halt_before is Stage.REVEAL:
            return True  # our masked update is in; the others reconstruct our self mask
        s.send(ch, agg, Stage.REVEAL, {
            "self_shares": {u: held_self[u] for u in u3},
            "pair_shares": {u: {v: held_pair[u][v] for v in u3} for u in lost},
        }, r=r)
        return True


def _materialize(vector) -> np.ndarray:
    return np.asarray(vector() if callable(vector) else vector, dtype=np.float64)


def _aad(r: int, holders=None):
    """Associated data of sealed shares: round, sender, receiver and (secagg) the share roster."""
    roster = ",".join(holders) if holders is not None else ""

    def aad(sender: str, receiver: str) -> bytes:
        return f"fedcredit/homo/shares|round-{r}|{sender}|{receiver}|{roster}".encode()

    return aad


class CkksSubmitter:
    """Encrypt updates under a CKKS key shared by the clients (not the aggregator).

    Set-up (once per job): every client sends an X25519 public key directly
    to every other client and advertises it to the aggregator; the first
    client of the roster (the *dealer*) generates the CKKS context and sends
    it, sealed with each pairwise key (from keys checked against the direct
    ones), to every other client through the aggregator, and only the public
    context to the aggregator. Clients absent
    at set-up do not take part in this job (they never receive the key).
    Each round every contributing client decrypts the summed ciphertext and
    returns it rounded to ``2**-16`` (the aggregator uses the first answer).
    """

    ROUNDING = 2.0**-16

    def __init__(self, party: str, aggregator: str, params: HomoParams, clients: list[str]):
        self.party, self.aggregator, self.params = party, aggregator, params
        self.clients = set(clients)
        self.timeout = params.client_timeout
        self.keys: CkksKeys | None = None
        self.session = spec.session(party, aggregator, clients, "ckks")

    def setup(self, ch: Channel, first: int = 0, *, halt_before: Stage | None = None) -> bool:
        """Join the key set-up; False when this client is not part of the job's CKKS group."""
        me, agg = self.party, self.aggregator
        _require_direct_links(ch, me, self.clients, "ckks")
        kp = sa.KeyPair.generate()
        if halt_before is Stage.KEY_ADVERTISE:
            return False
        s = self.session
        unreached = _send_direct(ch, me, sorted(self.clients), Stage.KEY_DIRECT, kp.public, s)
        s.send(ch, agg, Stage.KEY_ADVERTISE, {"public_key": kp.public})
        roster = s.recv(ch, agg, Stage.KEY_ROSTER, timeout=self.timeout)
        members = _check_names(roster["clients"], self.clients, "key roster")
        if me not in members:
            return False
        if roster["dealer"] not in members:
            raise ProtocolError("homo key roster: the dealer is not a member")
        # the CKKS secret key is sealed and opened only under keys authenticated by their owners
        pubs = _authenticated_keys(ch, me, agg, Stage.KEY_DIRECT, members, roster["public_keys"], kp.public,
                                   unreached, self.params.stage_timeout, "key roster", s)
        dealer = roster["dealer"]
        if dealer == me:
            self.keys = CkksKeys.generate(poly_modulus_degree=self.params.ckks_poly_modulus_degree,
                                          scale_bits=self.params.ckks_scale_bits)
            secret = self.keys.secret_bytes()
            sealed = {}
            for w in members:
                if w != me:
                    key = sa.derive_key(kp.agree(me, w, pubs[w]), "ckks-key")
                    sealed[w] = sa.seal(key, secret, _aad(-1)(me, w))
            s.send(ch, agg, Stage.CONTEXT, {"public_context": self.keys.public_bytes(), "sealed": sealed})
        else:
            msg = s.recv(ch, agg, Stage.KEY, timeout=self.timeout)
            if msg["dealer"] != dealer:
                raise ProtocolError("homo key: dealer differs from the roster")
            key = sa.derive_key(kp.agree(me, dealer, pubs[dealer]), "ckks-key")
            self.keys = CkksKeys.from_secret_bytes(sa.open_sealed(key, msg["sealed"], _aad(-1)(dealer, me)))
        return True

    def submit(self, ch: Channel, r: int, vector, extra: dict | None = None, *,
               halt_before: Stage | None = None) -> bool:
        agg, s = self.aggregator, self.session
        vector = _materialize(vector)
        if halt_before is Stage.ENCRYPTED:
            return False
        s.send(ch, agg, Stage.ENCRYPTED, {"ciphertext": self.keys.encrypt(vector)}, r=r)
        msg = s.recv(ch, agg, Stage.DECRYPT, r=r, timeout=self.timeout)
        if msg["dropped"]:
            return False
        chunks = msg["ciphertext"]
        if not all(isinstance(c, bytes) for c in chunks):
            raise ProtocolError("homo decrypt: ciphertext chunks must be bytes")
        total = self.keys.decrypt(chunks, vector.shape[0])
        if halt_before is Stage.DECRYPTED:
            return True
        total = np.round(total / self.ROUNDING) * self.ROUNDING
        s.send(ch, agg, Stage.DECRYPTED, {"vector": total}, r=r)
        return True


_SUBMITTERS = {"plain": PlainSubmitter, "secagg": SecAggSubmitter, "ckks": CkksSubmitter}


class HomoClient:
    """A bank's side of FedAvg: receive the model, train locally, submit, repeat until told to stop.

    Parameters
    ----------
    party, aggregator : str
    clients : list of str
        All clients of the job (for the threshold and roster checks).
    params : HomoParams
    X : ndarray of shape (n, f)
    y : ndarray of shape (n,)
    """

    def __init__(self, party: str, aggregator: str, clients: list[str], params: HomoParams, X, y):
        self.party, self.aggregator, self.params = party, aggregator, params
        self.X = np.asarray(X, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.shape = mlp.MLPShape(self.X.shape[1], params.hidden if params.model == "mlp" else ())
        self.submitter = _SUBMITTERS[params.mode](party, aggregator, params, sorted(clients))
        self._salt = zlib.crc32(party.encode())
        n = self.X.shape[0]
        n_val = int(round(params.validation_fraction * n)) if params.patience is not None else 0
        order = np.random.default_rng([params.random_state or 0, self._salt]).permutation(n)
        self.val_idx, self.train_idx = order[:n_val], order[n_val:]
        if params.mode == "secagg" and max(len(self.train_idx), n_val) > params.clip:
            # the row count is an entry of the secure sum: fail at the start, not with a clipped (wrong) sum
            raise ConfigError(f"homo secagg: client {party!r} has more rows than clip={params.clip:g}, the bound on "
                              f"each entry of its update [n * theta, n, ...]; raise 'clip' (with fewer 'frac_bits' "
                              f"to keep ring headroom: n_clients * clip * 2**frac_bits < 2**63)")

    def local_vector(self, theta: np.ndarray, r: int) -> np.ndarray:
        """``[n * theta_local, n, val_loss_sum(theta), n_val]`` for round ``r``."""
        p = self.params
        seed = None if p.random_state is None else int(
            np.random.SeedSequence([p.random_state, self._salt, r]).generate_state(1)[0])
        Xt, yt = self.X[self.train_idx], self.y[self.train_idx]
        local = mlp.sgd_epochs(self.shape, theta, Xt, yt, epochs=p.local_epochs, learning_rate=p.learning_rate,
                               batch_size=p.batch_size, l2=p.l2, random_state=seed)
        n = float(len(yt))
        if len(self.val_idx):
            pv = mlp.predict_proba(self.shape, theta, self.X[self.val_idx])
            val = mlp.log_loss(self.y[self.val_idx], pv) * len(self.val_idx)
        else:
            val = 0.0
        return np.concatenate([n * local, [n, val, float(len(self.val_idx))]])

    def run(self, ch: Channel, checkpoint=None) -> dict:
        """Take part until the aggregator says stop; returns this client's summary.

        With ``checkpoint`` (the step context's) the round count is saved after each round; a resumed job
        continues at the round every party agreed on, with fresh keys (the client re-keys in ``setup``).
        """
        agg, p = self.aggregator, self.params
        included, r = 0, 0
        got = checkpoint.resume() if checkpoint is not None else None
        if got is not None:
            r, included = got[0], int(got[1]["included"])
        if not self.submitter.setup(ch, r):
            return {"party": self.party, "rounds_included": 0, "excluded": True}
        while True:
            start = self.submitter.session.recv(ch, agg, Stage.START, r=r, timeout=p.client_timeout)
            if start["round"] != r:
                raise ProtocolError(f"homo start: round {start['round']} where {r} was expected")
            theta = start["params"]
            if theta.shape != (self.shape.size,):
                raise ProtocolError(f"homo start: model has {theta.shape[0]} parameters, expected {self.shape.size}")
            if start["stop"]:
                self.coef_ = theta
                return {"party": self.party, "rounds": r, "rounds_included": included, "params": theta}
            included += bool(self.submitter.submit(ch, r, lambda: self.local_vector(theta, r), start["aggregation"]))
            r += 1
            if checkpoint is not None:
                checkpoint.save(r, {"role": "client", "included": included})
