"""The step runner: one party's side of a job's steps, in order. The party process and the Python API share it.

For each step the runner builds the :class:`~fedcredit.protocols.context.StepContext`
(the step's channel, this party's current table, the job's state, the
step's artifacts, progress and cancellation), calls the step's function from
the registry, checks its result is a JSON-able dict and carries the step's
explicit output table (``ctx.aligned``, set by PSI) to the next steps. What
happens around a step (the store, the audit log, events, checkpoints of a
resumed job, traffic accounting) is the caller's, through :class:`StepHooks`.

The step's parameters are handed to the step in one place, :func:`step_params`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..artifacts import Artifacts, MemoryArtifacts
from ..errors import FedcreditError
from ..protocols.context import StepContext
from ..protocols import registry

__all__ = ["StepHooks", "run_steps", "step_params", "json_result", "traffic"]


def step_params(step):
    """The parameters a step's function gets as ``ctx.params``: its typed, already validated Params
    (``StepSpec.typed_params``; a plain dict for a plugin kind without a Params class)."""
    return step.typed_params


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def json_result(step_name: str, result) -> dict:
    """A step's return value as plain JSON (numpy values become lists and numbers); FedcreditError if not a dict."""
    if result is None:
        result = {}
    if not isinstance(result, dict):
        raise FedcreditError(f"step {step_name!r} returned {type(result).__name__}, expected a dict")
    return json.loads(json.dumps(result, default=_json_default))


class StepHooks:
    """What the caller does around each step (every method is optional: the defaults do nothing).

    Override the ones you need; the party process records steps in its store
    and audit log and emits events, the Python API's in-process mode only
    emits events.
    """

    def check_cancelled(self) -> None:
        """Raise :class:`~fedcredit.errors.JobCancelled` once the job is cancelled."""

    def before(self, index: int, step) -> None:
        """Step ``index`` is about to start."""

    def artifacts(self, step) -> Artifacts:
        """Where ``step`` keeps what it produces (default: in memory)."""
        return MemoryArtifacts()

    def checkpoint(self, step, channel, artifacts):
        """``ctx.checkpoint`` of ``step`` (None: the step does not checkpoint rounds)."""
        return None

    def progress(self, step, message: str, fraction: float | None) -> None:
        """A progress line of ``step``."""

    def after(self, index: int, step, result: dict, seconds: float, table) -> None:
        """Step ``index`` succeeded with ``result``; ``table`` is what the next steps see."""


def run_steps(spec, *, job_id: str, party: str, data, channel, hooks: StepHooks, policy=None,
              table_config=None, on_step=None) -> list[dict]:
    """Run this party's side of every step of ``spec`` in order; return ``[{step, kind, seconds, result}]``.

    Parameters
    ----------
    spec : fedcredit.config.JobSpec
    job_id, party : str
    data : fedcredit.data.Table or None
        This party's table (None for an arbiter or aggregator without data).
        A step that sets ``ctx.aligned`` (PSI) replaces it for the later steps.
    channel : Channel
        Namespaced to the job; each step gets ``channel.sub(step.name)``.
    hooks : StepHooks
    policy, table_config : optional
        This party's policy and the config of the table it uses (``ctx.policy``, ``ctx.table``).
    on_step : callable(str), optional
        Called with the name of each step before it starts (for failure reports).
    """
    state: dict[str, Any] = {}
    out = []
    for idx, step in enumerate(spec.steps):
        if on_step is not None:
            on_step(step.name)
        hooks.check_cancelled()
        hooks.before(idx, step)
        sub = channel.sub(step.name)
        store = hooks.artifacts(step)

        def progress(message, fraction=None, _step=step):
            frac = None if fraction is None else max(0.0, min(1.0, float(fraction)))
            hooks.progress(_step, str(message)[:500], frac)

        ctx = StepContext(
            job_id=job_id, step=step.name, kind=step.kind, party=party, roles=spec.roles,
            params=step_params(step), channel=sub, data=data, state=state, artifacts=store,
            progress=progress, check_cancelled=hooks.check_cancelled, policy=policy,
            checkpoint=hooks.checkpoint(step, sub, store), table=table_config,
        )
        t0 = time.perf_counter()
        result = registry.get_step(step.kind)(ctx)  # looked up per step (tests and plugins may replace it)
        seconds = time.perf_counter() - t0
        result = json_result(step.name, result)
        if ctx.aligned is not None:  # the step's output table (PSI): the rows every later step sees
            data = ctx.aligned
        hooks.after(idx, step, result, seconds, data)
        out.append({"step": step.name, "kind": step.kind, "seconds": seconds, "result": result})
    return out


def traffic(before: tuple[dict, dict], stats) -> dict:
    """Bytes/messages of one step from channel stats ``(bytes, messages)`` taken before it, per peer and kind."""
    b0, m0 = before
    rows = []
    peers: dict[str, dict] = {}
    for key, total in stats.bytes.items():
        db = total - b0.get(key, 0)
        dm = stats.messages.get(key, 0) - m0.get(key, 0)
        if dm <= 0:
            continue
        direction, peer, kind = key
        rows.append({"direction": direction, "peer": peer, "kind": kind, "bytes": db, "messages": dm})
        p = peers.setdefault(peer, {"sent_bytes": 0, "sent_messages": 0, "received_bytes": 0, "received_messages": 0})
        p[f"{direction}_bytes"] += db
        p[f"{direction}_messages"] += dm
    rows.sort(key=lambda r: (r["direction"], r["peer"], r["kind"]))
    return {
        "rows": rows,
        "peers": dict(sorted(peers.items())),
        "bytes_sent": sum(p["sent_bytes"] for p in peers.values()),
        "messages_sent": sum(p["sent_messages"] for p in peers.values()),
        "bytes_received": sum(p["received_bytes"] for p in peers.values()),
    }
