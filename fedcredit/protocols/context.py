"""What a job step gets from the party process, and what it gives back.

A step (``kind = "psi"``, ``"secureboost"``, ...) is a function
``run(ctx: StepContext) -> dict``. The same function runs on every party; it
branches on ``ctx.role``. It talks to peers only through ``ctx.channel``
(already namespaced to ``<job_id>/<step name>``), reads this party's own
table from ``ctx.data``, reads earlier steps' outputs from ``ctx.state`` and
leaves its own there for later steps, keeps what it produces (model parts,
scores, plots, round checkpoints) through ``ctx.artifacts`` (it never builds
a path or opens a file: :mod:`fedcredit.artifacts`), and returns a JSON-able
dict for the run report. A step that changes which rows later steps see (PSI)
sets ``ctx.aligned`` to the new table: the step runner hands it to the next
steps as their ``ctx.data``.

Roles: ``guest`` (the label holder, normally the bank and the initiator),
``host`` (a feature holder), ``arbiter`` (a key holder with no data),
``client`` and ``aggregator`` (horizontal training).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..artifacts import Artifacts, MemoryArtifacts
from ..transport.base import Channel

__all__ = ["StepContext", "ROLES"]

ROLES = ("guest", "host", "arbiter", "client", "aggregator")


def _no_progress(message: str, fraction: float | None = None) -> None:
    pass


def _never_cancelled() -> None:
    pass


@dataclass
class StepContext:
    """Everything one party's side of one job step needs.

    Attributes
    ----------
    job_id, step, kind : str
        The job, this step's name within it, and its kind (``"psi"``...).
    party : str
        This party's name.
    roles : dict of str to str
        Every participating party's role in this job.
    params : Params or dict
        The step's parameters: its kind's frozen parameters class (see
        :mod:`fedcredit.protocols.registry`), checked with defaults applied when
        the job was loaded. A step calls ``ItsParams.coerce(ctx.params, owner)``,
        which also accepts a dict (direct callers, tests); a plugin kind
        without a parameters class gets its ``params`` table as a dict.
    channel : Channel
        Namespaced to this job and step.
    data : fedcredit.data.Table or None
        This party's own table (None for an arbiter or aggregator without data).
    table : object or None
        The config of the table this party uses (``fedcredit.config.TableConfig``), e.g. ``monotone``.
    state : dict
        Per-job, per-party outputs of earlier steps (e.g. ``state["psi"]``).
    artifacts : fedcredit.artifacts.Artifacts
        Where this step keeps model parts, scores, plots and checkpoints on this
        party (files in the step's private directory on a party process; in
        memory by default).
    progress : callable(message, fraction or None)
        Report progress to the initiator's CLI.
    check_cancelled : callable()
        Raises ``JobCancelled`` once the job is cancelled; call it between rounds.
    policy : object or None
        This party's policy (``fedcredit.config.Policy``), e.g. ``min_intersection``.
    checkpoint : fedcredit.protocols.checkpoint.Checkpoint or None
        Per-round checkpoints of this step on this party (steps that train in
        rounds save after each one and resume from the round every party
        agreed on when the job is resumed); None outside a party process.
    aligned : fedcredit.data.Table or None
        Output: the table later steps of the job see (set by a PSI step to this
        party's rows in the agreed order); None leaves ``data`` as it is.
    """

    job_id: str
    step: str
    kind: str
    party: str
    roles: dict[str, str]
    params: Any
    channel: Channel
    data: Any = None
    table: Any = None
    state: dict[str, Any] = field(default_factory=dict)
    artifacts: Artifacts = field(default_factory=MemoryArtifacts)
    progress: Callable[[str, float | None], None] = _no_progress
    check_cancelled: Callable[[], None] = _never_cancelled
    policy: Any = None
    checkpoint: Any = None
    aligned: Any = None

    @property
    def role(self) -> str:
        return self.roles[self.party]

    def parties_with(self, role: str) -> list[str]:
        """Parties holding ``role``, in a stable (sorted) order."""
        return sorted(p for p, r in self.roles.items() if r == role)

    @property
    def guest(self) -> str:
        (g,) = self.parties_with("guest") or [None]
        return g

    @property
    def hosts(self) -> list[str]:
        return self.parties_with("host")
