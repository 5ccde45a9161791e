"""``local_federation(mode="inprocess")``: every party's side of a job in a thread of this process.

The parties talk over the in-memory channel and run their steps through the
same step runner as a party process (:func:`fedcredit.party.runner.run_steps`):
the same step functions, parameters, artifacts (files in
``state/<party>/jobs/<job_id>/<step>/``) and aligned tables, without
processes, TLS, policy checks, audit logs or reports.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from typing import TYPE_CHECKING

from ..artifacts import FileArtifacts
from ..errors import ConfigError, PeerError
from ..party.runner import StepHooks, run_steps
from .results import JobResult, StepResult

if TYPE_CHECKING:  # pragma: no cover
    from .local import LocalFederation

__all__ = ["run_inprocess"]


class _Hooks(StepHooks):
    """Events to the caller's display, traffic per step, artifacts under the federation's state directory."""

    def __init__(self, fed: "LocalFederation", job_id: str, party: str, ch, emit, per: dict):
        self.fed, self.job_id, self.party, self.ch, self.emit, self.per = fed, job_id, party, ch, emit, per
        self._before: tuple[dict, dict] = ({}, {})

    def before(self, index: int, step) -> None:
        self._before = (dict(self.ch.stats.bytes), dict(self.ch.stats.messages))
        self.emit(self.party, "step", "running", step.name, f"{step.name} ({step.kind}) started",
                  detail={"kind": step.kind})

    def artifacts(self, step) -> FileArtifacts:
        d = self.fed.root / "state" / self.party / "jobs" / self.job_id / step.name
        d.mkdir(parents=True, exist_ok=True)  # every party's step directory, as JobResult.workdirs lists them
        return FileArtifacts(d)

    def progress(self, step, message: str, fraction: float | None) -> None:
        self.emit(self.party, "progress", "running", step.name, message, fraction)

    def after(self, index: int, step, result: dict, seconds: float, table) -> None:
        b0, m0 = self._before
        sent = {k: v - b0.get(k, 0) for k, v in self.ch.stats.bytes.items() if k[0] == "sent"}
        msgs = {k: v - m0.get(k, 0) for k, v in self.ch.stats.messages.items() if k[0] == "sent"}
        row = {"seconds": seconds, "bytes_sent": sum(sent.values()), "messages_sent": sum(msgs.values()),
               "result": result}
        self.per[self.party][step.name] = row
        self.emit(self.party, "step", "succeeded", step.name, f"{step.name} done in {seconds:.2f}s",
                  detail={"kind": step.kind, "seconds": seconds, "bytes_sent": row["bytes_sent"]})


def run_inprocess(fed: "LocalFederation", spec, progress) -> JobResult:
    """Run ``spec`` with every party of ``fed`` in its own thread of this process; a :class:`JobResult`."""
    from ..progress import EventDisplay as _Display
    from ..config import Policy
    from ..data import load_table
    from ..transport.memory import MemoryHub

    job_id = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    roles = spec.roles
    hub = MemoryHub(list(roles))
    lock = threading.Lock()
    display = _Display(sys.stdout).event if progress is True else (progress or None)

    def emit(party: str, kind: str, state: str, step: str = "", message: str = "", fraction=None, detail=None):
        if display is not None:
            with lock:
                display({"job_id": job_id, "party": party, "kind": kind, "state": state, "step": step,
                         "message": message, "fraction": fraction, "detail": detail or {}, "time": time.time()})

    per: dict[str, dict[str, dict]] = {p: {} for p in roles}
    errors: dict[str, tuple[str, BaseException]] = {}

    def work(party: str) -> None:
        ch = hub.channel(party, default_timeout=fed._recv_timeout).sub(job_id)
        current = {"step": ""}
        try:
            me = spec.parties[party]
            data = None
            if me.table is not None:
                if party not in fed.table_paths:
                    raise ConfigError(f"party {party!r} has no table")
                data = load_table(fed.table_paths[party], party=party, label_column=fed.labels.get(party),
                                  columns=me.columns)
            policy = Policy(min_intersection=fed._min_intersection.get(party, 1))
            emit(party, "state", "running", message=f"{party} runs as {me.role}")
            run_steps(spec, job_id=job_id, party=party, data=data, channel=ch,
                      hooks=_Hooks(fed, job_id, party, ch, emit, per), policy=policy,
                      on_step=lambda name: current.update(step=name))
            emit(party, "state", "succeeded")
        except BaseException as exc:  # noqa: BLE001 - reported in the result, peers told at once
            errors[party] = (current["step"], exc)
            ch.abort(f"{type(exc).__name__}: {exc}")
            emit(party, "state", "failed", current["step"], f"{type(exc).__name__}: {exc}")

    t0 = time.time()
    threads = [threading.Thread(target=work, args=(p,), name=f"{job_id}-{p}", daemon=True) for p in roles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    reason = ""
    if errors:
        root = [(p, e) for p, e in errors.items() if not isinstance(e[1], PeerError)] or list(errors.items())
        root.sort(key=lambda item: item[0] != fed.guest)  # the initiator's own error first, as a party reports
        party, (sname, exc) = root[0]
        where = f"step {sname!r} failed on {party}" if sname else f"job failed on {party}"
        reason = f"{where}: {exc}"
    steps = {}
    for st in spec.steps:
        rows = [per[p][st.name] for p in roles if st.name in per[p]]
        done = len(rows) == len(roles)
        failed = any(sname == st.name for sname, _ in errors.values())
        if not rows and not failed:
            continue
        init = per[fed.guest if fed.guest in roles else next(iter(roles))].get(st.name, {})
        steps[st.name] = StepResult(
            st.name, st.kind, "succeeded" if done and not failed else "failed",
            round(max([r["seconds"] for r in rows] or [0.0]), 3), sum(r["bytes_sent"] for r in rows),
            sum(r["messages_sent"] for r in rows), dict(init.get("result") or {}))
    state = "failed" if errors else "succeeded"
    report = {"job_id": job_id, "name": spec.name, "state": state, "reason": reason, "mode": "inprocess",
              "job": spec.to_dict(), "parties": {p: {"steps": per[p]} for p in roles}}
    fed._history.insert(0, {"job_id": job_id, "name": spec.name, "state": state, "reason": reason})
    workdirs = {p: fed.root / "state" / p / "jobs" / job_id for p in roles
                if (fed.root / "state" / p / "jobs" / job_id).is_dir()}
    return JobResult(job_id, spec.name, state, reason, round(elapsed, 3), steps, None, report, workdirs)
