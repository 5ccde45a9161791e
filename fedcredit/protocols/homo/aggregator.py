"""The aggregator side of horizontal training: rounds, deadlines, dropouts and the sum.

The aggregator drives every round: it sends START (the global model) to the
clients, runs the mode's aggregation with a deadline per stage — a client
that has not answered in time, or whose connection failed (``PeerError``),
is dropped for the rest of the round and told so at its next stage — and
turns the sum ``[sum n*theta, sum n, val_loss_sum, val_rows]`` into the
next global model. It never holds a client's data, and in ``secagg`` and
``ckks`` never sees an individual update.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...crypto import secagg as sa
from ...errors import PeerError, ProtocolError
from ...models import metrics, mlp
from ...transport.base import Channel
from .._spec import Session
from . import spec
from ._ckks import public_context, sum_encrypted
from .params import HomoParams
from .spec import Stage

__all__ = ["HomoAggregator", "PlainAggregation", "SecAggAggregation", "CkksAggregation", "RoundFailed"]


_SENDERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="homo-send")
_BACKGROUND = ThreadPoolExecutor(max_workers=4, thread_name_prefix="homo-send-bg")


def send_all(session: Session, ch: Channel, stage: Stage, r: int | None, payloads: dict[str, object], *,
             background=(), timings: dict | None = None) -> None:
    """Send one message per client concurrently (transport latency overlaps); a peer that
    cannot be reached (``PeerError``) is skipped: it will miss the next deadline and be dropped.

    Sends to peers in ``background`` (clients believed gone) are not waited for,
    so a dead peer whose transport retries does not hold up the round. With
    ``timings``, the seconds from the first send to the last delivery are
    recorded under ``"send-<stage>"``. ``r`` None: a set-up message.

    The session's role and order checks run here, in the calling thread, in
    send order; only the transport's work runs in the pool.
    """
    t0 = time.monotonic()
    idx = {} if r is None else {"r": r}
    tags = {p: session.outgoing(p, stage, **idx) for p in payloads}

    def one(item):
        try:
            ch.send(item[0], tags[item[0]], item[1])
        except PeerError:
            pass

    futures = [_SENDERS.submit(one, item) for item in payloads.items() if item[0] not in background]
    for item in payloads.items():
        if item[0] in background:
            _BACKGROUND.submit(one, item)
    for f in futures:
        f.result()
    if timings is not None:
        timings["send-" + stage.value] = time.monotonic() - t0


class RoundFailed(ProtocolError):
    """Too few clients remain at some stage for the round to complete."""


class _Collector:
    """Stage deadlines and drop notices shared by the three modes."""

    def __init__(self, params: HomoParams, clients: list[str], party: str = "aggregator"):
        self.clients = sorted(clients)
        self.session = spec.session(party, party, self.clients, params.mode)
        self.threshold = params.threshold_for(len(clients))
        self.stage_timeout = params.stage_timeout
        self.rejoin_grace = params.rejoin_grace
        self.absent: set[str] = set()  # clients dropped in the previous round (short grace)
        self.log: dict[str, list[str]] = {}
        self.stage_seconds: dict[str, float] = {}  # this round: seconds waiting for each stage ("send-<stage>":
        # waiting for the transport to deliver that stage's messages)

    def collect(self, ch: Channel, peers, stage: Stage, r: int | None, *, grace_for=()) -> dict[str, dict]:
        """Receive ``stage`` from ``peers`` until the deadline; returns ``{peer: payload}`` of those on time."""
        t0 = time.monotonic()
        deadline = t0 + self.stage_timeout
        got: dict[str, dict] = {}
        slow = [p for p in peers if p in grace_for]
        for p in [p for p in peers if p not in grace_for]:
            self._recv_one(ch, p, stage, r, deadline, got)
        grace_deadline = min(deadline, time.monotonic() + self.rejoin_grace)
        for p in slow:
            self._recv_one(ch, p, stage, r, grace_deadline, got)
        self.stage_seconds[stage.value] = time.monotonic() - t0
        dropped = [p for p in peers if p not in got]
        if dropped:
            self.log.setdefault(f"{stage.value}", []).extend(dropped)
        return got

    def _recv_one(self, ch, p, stage, r, deadline, got) -> None:
        idx = {} if r is None else {"r": r}
        try:
            msg = self.session.recv(ch, p, stage, timeout=max(0.001, deadline - time.monotonic()), **idx)
        except PeerError:
            return
        got[p] = msg

    def require(self, alive, stage: Stage, r: int | None, of: int) -> None:
        if len(alive) < self.threshold:
            where = "set-up" if r is None else f"round {r}"
            raise RoundFailed(
                f"homo {where}: only {len(alive)} of {of} clients remain at stage {stage.value!r}; "
                f"at least {self.threshold} (the threshold) are needed"
            )

    def notify_dropped(self, ch: Channel, peers, stage: Stage, r: int | None) -> None:
        send_all(self.session, ch, stage, r, {p: {"dropped": True} for p in peers}, background=set(peers))

    def start_payloads(self, r: int, members: list[str], *, has_next: bool) -> dict[str, dict]:
        """The ``aggregation`` field of each member's START of round ``r`` (empty unless the mode needs one)."""
        return {p: {} for p in members}


class PlainAggregation(_Collector):
    """Sum updates sent in the clear (not private)."""

    def setup(self, ch: Channel, first: int = 0) -> list[str]:
        return list(self.clients)

    def aggregate(self, ch: Channel, r: int, members: list[str], dim: int) -> tuple[np.ndarray, list[str]]:
        got = self.collect(ch, members, Stage.UPDATE, r, grace_for=self.absent)
        self.require(got, Stage.UPDATE, r, len(members))
        for p, m in got.items():
            if m["vector"].shape != (dim,):
                raise ProtocolError(f"homo update from {p!r}: {m['vector'].shape[0]} values, expected {dim}")
        return np.sum([m["vector"] for m in got.values()], axis=0), sorted(got)


class SecAggAggregation(_Collector):
    """The server of pipelined secure aggregation: routes sealed shares, sums masked inputs, removes masks.

    Set-up (once per job): collect ADVERTISE, send ROSTER ``K`` (names, public
    keys, threshold), collect the shares of round 0. Round ``r``: START
    carries FORWARD (the shares for ``r`` of ``U2``, who dealt them in time,
    and the next share roster); collect MASKED from ``U2`` — each carrying the
    sender's shares for ``r + 1`` — and standalone SHARES for ``r + 1`` from
    members left out of ``r``; UNMASK/REVEAL; remove the masks. Two message
    round trips per round (plain FedAvg: one), against four when every round
    re-advertises keys and deals shares in rounds of its own.

    It forwards the clients' public keys in ROSTER but cannot substitute them:
    each client checks every key against the one its owner sent it directly
    over mTLS (see :mod:`.client`) and aborts on a mismatch.

    What it learns per round: the rosters (who took part at each stage), the
    public keys, the sealed (unreadable) shares, masked vectors that are
    uniform in Z/2^64, the self-mask seeds of the survivors and the per-round
    pairwise seeds of clients lost after sharing — which together give only
    the sum of the survivors' quantized updates.
    """

    def __init__(self, params: HomoParams, clients: list[str], party: str = "aggregator"):
        super().__init__(params, clients, party)
        self._frac_bits = params.frac_bits
        self.roster: list[str] = []  # K: clients with keys for this job
        self._holders: dict[int, list[str]] = {}  # round -> share roster S(r)
        self._shares: dict[int, dict[str, dict]] = {}  # round -> {dealer: {holder: sealed}}
        self._round: tuple[int, list[str], dict] | None = None  # (r, U2, shares) of the running round

    def _check_sealed(self, r: int, sealed_by: dict[str, dict]) -> dict[str, dict]:
        holders = set(self._holders[r])
        for p, sealed in sealed_by.items():
            if set(sealed) != holders - {p} or not all(isinstance(v, bytes) for v in sealed.values()):
                raise ProtocolError(f"homo shares from {p!r} for round {r}: one sealed message per roster member expected")
        return sealed_by

    def setup(self, ch: Channel, first: int = 0) -> list[str]:
        """Keys, roster, and the shares of round ``first`` (0; a resumed job's first round after its checkpoint)."""
        adv = self.collect(ch, self.clients, Stage.ADVERTISE, None)
        self.notify_dropped(ch, [p for p in self.clients if p not in adv], Stage.ROSTER, None)
        self.require(adv, Stage.ADVERTISE, None, len(self.clients))
        k = sorted(adv)
        keys = [adv[p]["public_key"] for p in k]
        if any(len(x) != 32 for x in keys):
            raise ProtocolError("homo advertise: public keys must be 32 bytes")
        roster = {"dropped": False, "clients": k, "public_keys": keys, "threshold": self.threshold}
        send_all(self.session, ch, Stage.ROSTER, None, {p: roster for p in k}, timings=self.stage_seconds)
        self.roster, self._holders[first] = k, k
        got = self.collect(ch, k, Stage.SHARES, first)
        self._shares[first] = self._check_sealed(first, {p: m["sealed"] for p, m in got.items()})
        return k

    def start_payloads(self, r: int, members: list[str], *, has_next: bool) -> dict[str, dict]:
        shares = self._shares.pop(r, {})
        self._holders.pop(r - 1, None)
        u2 = sorted(shares)
        self.require(u2, Stage.SHARES, r, len(members))
        nxt = list(self.roster) if has_next else []
        self._holders[r + 1] = nxt
        self._round = (r, u2, shares)
        out = {}
        for p in members:
            if p in shares:
                out[p] = {"included": True, "clients": u2, "sealed": {u: shares[u][p] for u in u2 if u != p},
                          "next": nxt}
            else:
                out[p] = {"included": False, "clients": [], "sealed": {}, "next": nxt}
        return out

    def aggregate(self, ch: Channel, r: int, members: list[str], dim: int) -> tuple[np.ndarray, list[str]]:
        t = self.threshold
        if self._round is None or self._round[0] != r:
            raise ProtocolError(f"homo round {r}: START was not prepared by this aggregation")
        _, u2, _ = self._round
        nxt = self._holders[r + 1]
        masked = self.collect(ch, u2, Stage.MASKED, r)
        # members left out of round r answered START with their shares for r + 1 (a short grace: they may be gone)
        outsiders = [p for p in members if p not in u2] if nxt else []
        rejoin = self.collect(ch, outsiders, Stage.SHARES, r + 1, grace_for=outsiders) if outsiders else {}
        u3 = sorted(masked)
        lost = [p for p in u2 if p not in masked]
        self.notify_dropped(ch, lost, Stage.UNMASK, r)
        self.require(u3, Stage.MASKED, r, len(members))
        for p in u3:
            if masked[p]["masked"].shape != (dim,):
                raise ProtocolError(f"homo masked input from {p!r} round {r}: expected {dim} values")
        if nxt:
            nxt_shares = {p: masked[p]["next_sealed"] for p in u3} | {p: m["sealed"] for p, m in rejoin.items()}
            self._shares[r + 1] = self._check_sealed(r + 1, nxt_shares)
        elif any(masked[p]["next_sealed"] for p in u3):
            raise ProtocolError(f"homo masked input round {r}: shares for a round that will not run")
        send_all(self.session, ch, Stage.UNMASK, r, {p: {"dropped": False, "survivors": u3, "lost": lost} for p in u3},
                 timings=self.stage_seconds)

        reveals = self.collect(ch, u3, Stage.REVEAL, r)
        self.require(reveals, Stage.REVEAL, r, len(members))
        xs = {c: i + 1 for i, c in enumerate(self.roster)}
        self_shares: dict[str, dict[int, int]] = {u: {} for u in u3}
        pair_shares: dict[tuple[str, str], dict[int, int]] = {(u, v): {} for u in lost for v in u3}
        for w, msg in reveals.items():
            ss, ps = msg["self_shares"], msg["pair_shares"]
            if set(ss) != set(u3) or set(ps) != set(lost):
                raise ProtocolError(f"homo reveal from {w!r} round {r}: shares for the wrong clients")
            for u in u3:
                self_shares[u][xs[w]] = _field(ss[u], w)
            for u in lost:
                inner = ps[u]
                if not isinstance(inner, dict) or set(inner) != set(u3):
                    raise ProtocolError(f"homo reveal from {w!r} round {r}: pair shares for the wrong clients")
                for v in u3:
                    pair_shares[(u, v)][xs[w]] = _field(inner[v], w)

        total = np.zeros(dim, dtype=np.uint64)
        for p in u3:
            total += masked[p]["masked"]
        for u in u3:
            seed = sa.int_to_secret(sa.shamir_combine(self_shares[u], t))
            total -= sa.expand_mask(seed, dim)
        for (u, v), sh in pair_shares.items():
            seed = sa.int_to_secret(sa.shamir_combine(sh, t))
            m = sa.expand_mask(seed, dim)
            # v added +m if v < u else -m; undo it
            total = total - m if v < u else total + m
        self._round = None
        return sa.dequantize(total, frac_bits=self._frac_bits), u3


def _field(v, who: str) -> int:
    if type(v) is not int or not (0 <= v < sa.FIELD_PRIME):
        raise ProtocolError(f"homo reveal from {who!r}: a share is not a field element")
    return v


class CkksAggregation(_Collector):
    """Sum CKKS ciphertexts under the clients' key; a client decrypts the sum."""

    def __init__(self, params: HomoParams, clients: list[str], party: str = "aggregator"):
        super().__init__(params, clients, party)
        self._ctx = None

    def setup(self, ch: Channel, first: int = 0) -> list[str]:
        adv = self.collect(ch, self.clients, Stage.KEY_ADVERTISE, None)
        self.require(adv, Stage.KEY_ADVERTISE, None, len(self.clients))
        members = sorted(adv)
        dealer = members[0]
        roster = {"clients": members, "public_keys": [adv[p]["public_key"] for p in members], "dealer": dealer}
        send_all(self.session, ch, Stage.KEY_ROSTER, None, {p: roster for p in self.clients})
        got = self.collect(ch, [dealer], Stage.CONTEXT, None)
        if dealer not in got:
            raise RoundFailed(f"homo ckks set-up: the key dealer {dealer!r} dropped before sending the key")
        msg = got[dealer]
        if set(msg["sealed"]) != set(members) - {dealer} or not all(isinstance(v, bytes) for v in msg["sealed"].values()):
            raise ProtocolError("homo context: one sealed key per member expected")
        self._ctx = public_context(msg["public_context"])
        send_all(self.session, ch, Stage.KEY, None,
                 {p: {"sealed": msg["sealed"][p], "dealer": dealer} for p in members if p != dealer})
        return members

    def aggregate(self, ch: Channel, r: int, members: list[str], dim: int) -> tuple[np.ndarray, list[str]]:
        got = self.collect(ch, members, Stage.ENCRYPTED, r, grace_for=self.absent)
        self.notify_dropped(ch, [p for p in members if p not in got], Stage.DECRYPT, r)
        self.require(got, Stage.ENCRYPTED, r, len(members))
        contributors = sorted(got)
        for p in contributors:
            if not all(isinstance(c, bytes) for c in got[p]["ciphertext"]):
                raise ProtocolError(f"homo encrypted update from {p!r}: chunks must be bytes")
        total = sum_encrypted(self._ctx, [got[p]["ciphertext"] for p in contributors])
        send_all(self.session, ch, Stage.DECRYPT, r, {p: {"dropped": False, "ciphertext": total} for p in contributors},
                 timings=self.stage_seconds)
        deadline = time.monotonic() + self.stage_timeout
        for p in contributors:  # the first decryptor that answers in time
            res: dict = {}
            self._recv_one(ch, p, Stage.DECRYPTED, r, deadline, res)
            if p in res:
                vec = res[p]["vector"]
                if vec.shape != (dim,):
                    raise ProtocolError(f"homo decrypted sum from {p!r}: expected {dim} values")
                return vec, contributors
        raise RoundFailed(f"homo round {r}: no client returned the decrypted sum in time")


_AGGREGATIONS = {"plain": PlainAggregation, "secagg": SecAggAggregation, "ckks": CkksAggregation}


class HomoAggregator:
    """Drive FedAvg rounds; optionally evaluate on a held-out table.

    Parameters
    ----------
    party : str
    clients : list of str
    params : HomoParams
    n_features : int
    X_eval, y_eval : ndarray or None
        The aggregator's own held-out data (used for early stopping and the
        reported test metrics), if it has any.
    """

    def __init__(self, party: str, clients: list[str], params: HomoParams, n_features: int, X_eval=None, y_eval=None):
        self.party, self.params = party, params
        self.clients = sorted(clients)
        self.shape = mlp.MLPShape(n_features, params.hidden if params.model == "mlp" else ())
        self.aggregation = _AGGREGATIONS[params.mode](params, self.clients, party)
        self.X_eval = None if X_eval is None else np.asarray(X_eval, dtype=np.float64)
        self.y_eval = None if y_eval is None else np.asarray(y_eval)

    def _start(self, ch: Channel, members, r: int, theta: np.ndarray, stop: bool, extras=None) -> None:
        extras = extras or {}
        send_all(self.aggregation.session, ch, Stage.START, r,
                 {p: {"round": r, "stop": stop, "params": theta, "aggregation": extras.get(p, {})} for p in members},
                 background=self.aggregation.absent, timings=self.aggregation.stage_seconds)

    def run(self, ch: Channel, progress=None, check_cancelled=None, checkpoint=None) -> dict:
        """Drive the rounds; with ``checkpoint`` (the step context's), save the global model after each
        round and, on a resumed job, continue after the round every party agreed on (clients re-key)."""
        p, size = self.params, self.shape.size
        t0 = time.perf_counter()
        theta = mlp.init_params(self.shape, p.random_state)
        history, best = [], (np.inf, theta, -1)
        since_best, prev_theta = 0, theta
        first, stopped = 0, False
        got = checkpoint.resume() if checkpoint is not None else None
        if got is not None:
            first, s = got
            theta, prev_theta, history = np.asarray(s["theta"]), np.asarray(s["prev_theta"]), s["history"]
            best, since_best, stopped = (s["best_loss"], np.asarray(s["best_theta"]), s["best_round"]), \
                s["since_best"], s["stopped"]
        members = self.aggregation.setup(ch, first)
        setup_seconds = time.perf_counter() - t0
        r = first
        for r in range(first, first if stopped else p.rounds):
            if check_cancelled:
                check_cancelled()
            tr = time.perf_counter()
            self.aggregation.stage_seconds = {}
            extras = self.aggregation.start_payloads(r, members, has_next=r + 1 < p.rounds)
            self._start(ch, members, r, theta, False, extras)
            total, contributors = self.aggregation.aggregate(ch, r, members, size + 3)
            self.aggregation.absent = set(members) - set(contributors)
            rows = total[size]
            if not rows > 0:
                raise ProtocolError(f"homo round {r}: aggregated row count is {rows}")
            prev_theta, theta = theta, total[:size] / rows
            entry = {"round": r, "clients": contributors, "seconds": time.perf_counter() - tr,
                     "stage_seconds": dict(self.aggregation.stage_seconds)}
            # validation loss: held-out table (new model) or clients' splits (model of the previous round)
            if self.X_eval is not None:
                pe = mlp.predict_proba(self.shape, theta, self.X_eval)
                entry["val_loss"] = mlp.log_loss(self.y_eval, pe)
                entry["val_auc"] = metrics.auc(self.y_eval, pe)
                scored = (entry["val_loss"], theta, r)
            elif total[size + 2] > 0:
                entry["val_loss"] = float(total[size + 1] / total[size + 2])
                scored = (entry["val_loss"], prev_theta, r - 1)
            else:
                scored = None
            history.append(entry)
            if progress:
                progress(f"homo round {r + 1}/{p.rounds}: {len(contributors)} clients", (r + 1) / p.rounds)
            if scored is not None and p.patience is not None:
                if scored[0] < best[0] - 1e-9:
                    best, since_best = scored, 0
                else:
                    since_best += 1
                    stopped = since_best >= p.patience
            if checkpoint is not None:
                checkpoint.save(r + 1, {"role": "aggregator", "theta": theta, "prev_theta": prev_theta,
                                        "history": history, "best_loss": best[0], "best_theta": best[1],
                                        "best_round": best[2], "since_best": since_best, "stopped": stopped})
            if stopped:
                break
        final = best[1] if (p.patience is not None and best[2] >= 0) else theta
        n_rounds = len(history)
        self._start(ch, members, n_rounds, final, True)
        seconds = time.perf_counter() - t0
        out = {
            "mode": p.mode,
            "rounds": n_rounds,
            "best_round": best[2] if p.patience is not None else n_rounds - 1,
            "seconds": seconds,
            "setup_seconds": setup_seconds,
            "round_seconds": [h["seconds"] for h in history],
            "history": history,
            "dropped": self.aggregation.log,
            "params": final,
        }
        if self.X_eval is not None:
            pe = mlp.predict_proba(self.shape, final, self.X_eval)
            out["metrics"] = metrics.evaluate_scores(self.y_eval, pe) if hasattr(metrics, "evaluate_scores") else {}
            out["test_auc"] = metrics.auc(self.y_eval, pe)
            out["test_ks"] = metrics.ks(self.y_eval, pe)
        self.coef_ = final
        return out
