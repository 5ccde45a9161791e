"""Authorization of scoring requests: consent reference, purpose, requester, rate limits."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from ..config import ScoringPolicy
from ..errors import PolicyError

__all__ = ["RateLimiter", "RefusalBudget", "check_authorization", "CONSENT_RE", "REFUSALS_PER_MINUTE"]

#: A consent record id: 1-128 characters of letters, digits and ``_.:/-``.
CONSENT_RE = re.compile(r"^[A-Za-z0-9_.:/\-]{1,128}$")
_PURPOSE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


class RateLimiter:
    """Two token buckets per requester: requests per minute and ids per minute.

    Parameters
    ----------
    requests_per_minute, ids_per_minute : int
        Bucket capacities; refilled continuously at that rate.
    clock : callable, default=time.monotonic
        Injected for tests.
    """

    def __init__(self, requests_per_minute: int, ids_per_minute: int, *, clock: Callable[[], float] = time.monotonic):
        self.rpm, self.ipm = float(requests_per_minute), float(ids_per_minute)
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}  # requester -> [requests left, ids left, last refill]

    def take(self, requester: str, n_ids: int) -> None:
        """Consume one request and ``n_ids`` ids of ``requester``'s allowance, or raise PolicyError (nothing consumed)."""
        with self._lock:
            now = self.clock()
            b = self._buckets.setdefault(requester, [self.rpm, self.ipm, now])
            dt = max(0.0, now - b[2])
            b[0] = min(self.rpm, b[0] + dt * self.rpm / 60.0)
            b[1] = min(self.ipm, b[1] + dt * self.ipm / 60.0)
            b[2] = now
            if b[0] < 1.0:
                raise PolicyError(f"rate limit exceeded for {requester!r}: more than {self.rpm:g} scoring requests "
                                  f"per minute")
            if b[1] < n_ids:
                raise PolicyError(f"rate limit exceeded for {requester!r}: more than {self.ipm:g} applicants per "
                                  f"minute ({n_ids} requested, {int(b[1])} left)")
            b[0] -= 1.0
            b[1] -= n_ids


#: Refusals of one peer recorded per minute (audit log and party log); also the burst allowed.
REFUSALS_PER_MINUTE = 60


class RefusalBudget:
    """How many refusals of each peer are written to the audit and party logs: a token bucket per peer.

    A refused request costs the party a log record even though it does no
    work for it, so refusals are themselves rate-limited: a peer gets
    ``per_minute`` recorded refusals per minute (and as a burst); beyond
    that its refusals are still refused, only counted, and the next recorded
    refusal carries the count (``suppressed``). With records of bounded size
    (no id lists, see ``ScoringService._refused``) a flood of refused requests
    from one peer grows the audit log by at most ``per_minute`` records per
    minute plus one burst. Only listed peers reach it (strangers and revoked
    peers are refused before), so it holds one bucket per peer.

    Parameters
    ----------
    per_minute : int, default=REFUSALS_PER_MINUTE
    clock : callable, default=time.monotonic
    """

    def __init__(self, per_minute: int = REFUSALS_PER_MINUTE, *, clock: Callable[[], float] = time.monotonic):
        self.per_minute, self.clock = float(per_minute), clock
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}  # peer -> [tokens, last refill, suppressed since last recorded]

    def take(self, peer: str) -> int | None:
        """``None``: do not record this refusal (counted); otherwise record it, with this many suppressed before it."""
        with self._lock:
            now = self.clock()
            b = self._buckets.setdefault(peer, [self.per_minute, now, 0])
            b[0] = min(self.per_minute, b[0] + max(0.0, now - b[1]) * self.per_minute / 60.0)
            b[1] = now
            if b[0] < 1.0:
                b[2] += 1
                return None
            b[0] -= 1.0
            suppressed, b[2] = int(b[2]), 0
            return suppressed

    def drain(self) -> dict[str, int]:
        """``{peer: refusals suppressed since its last recorded one}`` (non-zero only), and reset the counts."""
        with self._lock:
            out = {p: int(b[2]) for p, b in self._buckets.items() if b[2]}
            for b in self._buckets.values():
                b[2] = 0
            return out


def check_authorization(policy: ScoringPolicy, proposers, requester: str, auth: dict, n_ids: int) -> None:
    """Raise PolicyError with the reason unless ``requester`` may score ``n_ids`` ids under ``auth``.

    The requester must be in ``[policy.scoring].requesters`` (default: ``[policy].proposers``);
    the authorization must carry a well-formed consent record id and a purpose
    in ``[policy.scoring].purposes`` (when set); the batch must not exceed ``max_batch``.
    Rate limits are checked separately (:class:`RateLimiter`), after these.
    """
    allowed = policy.requesters if policy.requesters is not None else tuple(proposers)
    if requester not in allowed:
        raise PolicyError(f"requester {requester!r} is not allowed to score ([policy.scoring].requesters: "
                          f"{', '.join(allowed) or 'none'})")
    consent = auth.get("consent_id", "")
    if not consent:
        raise PolicyError("no authorization: the request carries no consent record id")
    if not CONSENT_RE.fullmatch(consent):  # fullmatch: "$" would accept a trailing newline
        raise PolicyError(f"malformed consent record id {consent[:140]!r}")
    purpose = auth.get("purpose", "")
    if not purpose or not _PURPOSE_RE.fullmatch(purpose):
        raise PolicyError(f"no or malformed purpose {purpose[:80]!r} in the authorization")
    if policy.purposes is not None and purpose not in policy.purposes:
        raise PolicyError(f"purpose {purpose!r} is not allowed ([policy.scoring].purposes: "
                          f"{', '.join(policy.purposes) or 'none'})")
    if n_ids < 1:
        raise PolicyError("an empty scoring request")
    if n_ids > policy.max_batch:
        raise PolicyError(f"batch of {n_ids} applicants exceeds [policy.scoring].max_batch = {policy.max_batch}")
