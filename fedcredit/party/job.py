"""A job's in-memory state on one party (:class:`PartyJob`), shared by the party's control, runner and events."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from ..config import JobSpec
from ..errors import FedcreditError
from ..transport.base import Channel
from .store import TERMINAL

__all__ = ["PartyJob", "short"]


def short(exc: BaseException) -> str:
    """``exc`` as one line: a fedcredit error's message, else ``Class: message``."""
    msg = str(exc) or type(exc).__name__
    return msg if isinstance(exc, FedcreditError) else f"{type(exc).__name__}: {msg}"


@dataclass
class PartyJob:
    """In-memory state of one job on this party."""

    job_id: str
    spec: JobSpec
    initiator: str
    role: str
    proposer: str
    state: str = "proposed"
    reason: str = ""
    created: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    cancel_state: str = "cancelled"
    events: list[dict] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    party_state: dict[str, str] = field(default_factory=dict)  # initiator: final state per party
    party_steps: dict[str, dict[str, dict]] = field(default_factory=lambda: defaultdict(dict))
    channel: Channel | None = None
    thread: threading.Thread | None = None
    down_since: dict[str, float] = field(default_factory=dict)
    # approval queue (party/approvals.py): on the data owner, until when the operator may decide and when it
    # approved; on the initiator, the parties it waits for and their decisions {party: (ok, reason, approver)}
    approval_expires: float = 0.0
    approved_at: float = 0.0
    awaiting: dict[str, float] = field(default_factory=dict)
    approvals: dict[str, tuple] = field(default_factory=dict)
    attempt: int = 0  # 0: the original run; n: the n-th resume (party/resume.py)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL
