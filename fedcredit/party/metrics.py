"""Prometheus metrics of one party, served at ``/metrics`` on the console listener (docs/operating.md).

Every figure is derived from a record this party already keeps, so the
metrics agree with the job reports and the audit log by construction:

* jobs by state: the job store;
* step durations (histogram by step kind) and bytes/messages per peer and
  direction: the audit log's ``step.finished`` and ``step.messages`` records
  (the same numbers the step rows of ``report.json`` hold);
* refusals by reason: ``job.decision`` refusals, ``job.approval``
  rejections/expiries and scoring refusals, classified into a small fixed set
  of reasons (peer-chosen text never becomes a label value);
* scoring requests by requester and purpose: ``score.request`` /
  ``score.contribute`` records; scoring latency by requester: timed around the
  scoring service's entry points;
* the audit sequence number, and seconds until this party's certificate and
  CA expire.

The audit log is read incrementally (from the last offset) at each scrape.
Label values are bounded: a requester is a peer name checked by the transport
(or "other"), a purpose is cut to 64 characters and the number of distinct
purposes kept is capped.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

if TYPE_CHECKING:  # pragma: no cover
    from .party import Party

__all__ = ["PartyMetrics", "refusal_reason", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STEP_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))
_MAX_PURPOSES = 50

#: (keyword in the reason text, label) - first match wins; everything else is "other".
_REASON_KEYWORDS = (
    ("expired", "approval_expired"), ("rejected by", "approval_rejected"), ("may not propose", "proposer"),
    ("is not a peer", "not_a_peer"), ("revoked", "revoked"), ("kind", "step_kind"), ("purpose", "purpose"),
    ("column", "columns"), ("busy", "busy"), ("table", "table"), ("malformed", "malformed"),
    ("exceeds", "too_large"), ("rate", "rate_limit"), ("limit", "rate_limit"), ("consent", "consent"),
    ("replay", "replay"), ("already", "replay"), ("authoriz", "authorization"), ("shutting down", "shutting_down"),
)


def refusal_reason(text: str) -> str:
    """The fixed label for a refusal reason text."""
    low = str(text).lower()
    return next((label for key, label in _REASON_KEYWORDS if key in low), "other")


class _Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.sum += v
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1

    def family_rows(self):
        return [("+Inf" if b == float("inf") else repr(float(b)), c) for b, c in zip(self.buckets, self.counts)]


class PartyMetrics:
    """Collects a party's metrics into its own registry (several parties may share one process)."""

    def __init__(self, party: "Party"):
        self.p = party
        self._lock = threading.Lock()
        self._offset = 0
        self.step_seconds: dict[str, _Histogram] = defaultdict(lambda: _Histogram(STEP_BUCKETS))
        self.traffic: dict[tuple[str, str, str], float] = defaultdict(float)  # (peer, direction, unit) -> total
        self.last_traffic: dict[str, float] = {}  # peer -> unix time of its last step.messages record
        self.refusals: dict[tuple[str, str], int] = defaultdict(int)  # (what, reason) -> count
        self.scoring: dict[tuple[str, str, str], int] = defaultdict(int)  # (requester, purpose, outcome)
        self.latency: dict[str, _Histogram] = defaultdict(lambda: _Histogram(LATENCY_BUCKETS))
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # ------------------------------------------------------------------ sources
    def _requester(self, name) -> str:
        name = str(name)
        return name if name == self.p.name or name in self.p.config.peers else "other"

    def _purpose(self, purpose) -> str:
        purpose = str(purpose)[:64]
        known = {k[1] for k in self.scoring}
        return purpose if purpose in known or len(known) < _MAX_PURPOSES else "other"

    def _tail(self) -> None:
        """Fold audit records appended since the last scrape into the counters."""
        path = self.p.audit.path
        if not path.exists():
            return
        with path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a partial last line waits for the next scrape
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            self._fold(rec.get("kind", ""), rec.get("fields") or {}, rec.get("time", ""))
        self._offset += end

    def _fold(self, kind: str, f: dict, when: str) -> None:
        if kind == "step.finished":
            self.step_seconds[str(f.get("kind", ""))].observe(float(f.get("seconds") or 0.0))
        elif kind == "step.messages":
            for peer, row in (f.get("peers") or {}).items():
                for direction in ("sent", "received"):
                    for unit in ("bytes", "messages"):
                        self.traffic[(peer, direction, unit)] += float(row.get(f"{direction}_{unit}", 0) or 0)
                self.last_traffic[peer] = _parse_time(when)
        elif kind == "job.decision" and f.get("accepted") is False and f.get("party") == self.p.name:
            self.refusals[("job", refusal_reason(f.get("reason", "")))] += 1
        elif kind == "job.approval" and f.get("decision") in ("rejected", "expired"):
            self.refusals[("job", "approval_" + f["decision"])] += 1
        elif kind in ("score.request", "score.contribute", "score.decide"):
            decision = str(f.get("decision", ""))
            refused = decision.startswith(("refused", "failed"))
            if kind != "score.decide":
                outcome = "refused" if refused else "answered"
                self.scoring[(self._requester(f.get("requester")), self._purpose(f.get("purpose", "")), outcome)] += 1
            if refused:
                self.refusals[("scoring", refusal_reason(decision))] += 1 + int(f.get("suppressed", 0) or 0)
        elif kind == "export.refused":
            self.refusals[("export", "no_approval")] += 1

    def time_scoring(self, service) -> None:
        """Time the scoring service's entry points (latency by requester)."""
        for name in ("score_full", "contribute"):
            inner = getattr(service, name)

            def timed(caller, *a, _inner=inner, **kw):
                t0 = time.perf_counter()
                try:
                    return _inner(caller, *a, **kw)
                finally:
                    with self._lock:
                        self.latency[self._requester(caller)].observe(time.perf_counter() - t0)

            setattr(service, name, timed)

    # ------------------------------------------------------------------ prometheus
    def collect(self):
        with self._lock:
            self._tail()
            yield from self._families()

    def _families(self):
        p = self.p
        jobs = GaugeMetricFamily("fedcredit_jobs", "Jobs in this party's store by state", labels=["state"])
        for state, n in p.store._exec("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            jobs.add_metric([state], n)
        yield jobs
        h = HistogramMetricFamily("fedcredit_step_duration_seconds", "Duration of this party's steps by kind",
                                  labels=["kind"])
        for kind, hist in sorted(self.step_seconds.items()):
            h.add_metric([kind], hist.family_rows(), hist.sum)
        yield h
        for unit in ("bytes", "messages"):
            c = CounterMetricFamily(f"fedcredit_peer_{unit}", f"Job {unit} exchanged with each peer, by direction",
                                    labels=["peer", "direction"])
            for (peer, direction, u), v in sorted(self.traffic.items()):
                if u == unit:
                    c.add_metric([peer, direction], v)
            yield c
        r = CounterMetricFamily("fedcredit_refusals", "Refusals by what was refused and a fixed reason class",
                                labels=["what", "reason"])
        for (what, reason), n in sorted(self.refusals.items()):
            r.add_metric([what, reason], n)
        yield r
        s = CounterMetricFamily("fedcredit_scoring_requests", "Scoring requests by requester, purpose and outcome",
                                labels=["requester", "purpose", "outcome"])
        for key, n in sorted(self.scoring.items()):
            s.add_metric(list(key), n)
        yield s
        lat = HistogramMetricFamily("fedcredit_scoring_latency_seconds", "Scoring latency by requester",
                                    labels=["requester"])
        for who, hist in sorted(self.latency.items()):
            lat.add_metric([who], hist.family_rows(), hist.sum)
        yield lat
        yield GaugeMetricFamily("fedcredit_audit_sequence", "Sequence number of the audit log's head",
                                value=p.audit.head()[0])
        exp = GaugeMetricFamily("fedcredit_certificate_expiry_seconds", "Seconds until a certificate expires",
                                labels=["certificate"])
        for which, t in cert_expiries(p).items():
            exp.add_metric([which], t - time.time())
        yield exp

    def render(self) -> bytes:
        return generate_latest(self.registry)


def cert_expiries(party) -> dict[str, float]:
    """``{"party": not_after, "ca": not_after}`` (unix seconds) of the TLS material the party serves with now."""
    tls = getattr(party.transport, "_tls", None)
    if tls is None:
        return {}
    from cryptography import x509

    out = {"party": x509.load_pem_x509_certificate(tls.cert_pem).not_valid_after_utc.timestamp()}
    cas = x509.load_pem_x509_certificates(tls.ca_pem)
    for i, ca in enumerate(cas):
        out["ca" if i == 0 else f"ca{i + 1}"] = ca.not_valid_after_utc.timestamp()
    return out


def _parse_time(s: str) -> float:
    import datetime as _dt

    try:
        return _dt.datetime.fromisoformat(s).timestamp()
    except (TypeError, ValueError):
        return time.time()
