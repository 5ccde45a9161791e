"""Per-peer rate limits of the control plane (job proposals).

A listed peer that is not allowed to propose (or one that is, gone rogue) could
otherwise send proposals as fast as the network allows, and each refused one
used to cost the party its full body in SQLite and the audit log. Proposals are
now counted per peer *before* they are parsed, stored or logged; over the rate
the call ends with RESOURCE_EXHAUSTED and leaves nothing behind but a
rate-limited log line.
"""

from __future__ import annotations

import logging
import threading
import time

from ..transport.control import Throttled

__all__ = ["PeerRate", "JOB_JSON_MAX"]

#: A job file / proposal as JSON (a job is a few kB; parameters with column lists stay well below).
JOB_JSON_MAX = 256 * 1024

log = logging.getLogger("fedcredit.party")


class PeerRate:
    """A token bucket per peer: ``per_minute`` events, bursts of up to ``per_minute``.

    Parameters
    ----------
    per_minute : int
    what : str
        Named in the refusal ("job proposals").
    clock : callable, default=time.monotonic
    """

    def __init__(self, per_minute: int, what: str, clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self.what = what
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, float]] = {}
        self._refused: dict[str, tuple[float, int]] = {}  # peer -> (last logged, refusals since)

    def take(self, peer: str) -> None:
        """Count one event of ``peer``, or raise :class:`~fedcredit.transport.control.Throttled`."""
        now = self._clock()
        with self._lock:
            tokens, at = self._tokens.get(peer, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._tokens[peer] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
                last, n = self._refused.get(peer, (float("-inf"), 0))
                if now - last >= 60.0:  # one line per peer per minute, however hard it floods
                    log.warning("refused %d of %s from %r in the last minute (limit %g per minute)", n + 1,
                                self.what, peer, self.burst)
                    self._refused[peer] = (now, 0)
                else:
                    self._refused[peer] = (last, n + 1)
                raise Throttled(f"too many {self.what} from {peer!r} (limit {self.burst:g} per minute); "
                                f"retry in {wait:.0f}s", retry_after=wait)
            if len(self._tokens) > 10_000:  # names come from certificates; bound the table anyway
                self._tokens.clear()
            self._tokens[peer] = (tokens - 1.0, now)
