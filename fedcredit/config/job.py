"""The job file: parties with their roles and tables, and the ordered steps with their typed parameters.

:func:`job_from_dict` checks every step's ``params`` against its kind's
parameters class when the job is loaded, submitted or proposed, so a typo or
an out-of-range value in the last step is refused before the first step (PSI)
runs, with the step's index, name, kind and the parameter in the message.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import ids as _ids
from ..errors import ConfigError
from ..protocols.registry import STEP_KINDS, parse_step_params
from ._checker import _check_name, _Checker, _freeze, _parse_toml, _thaw, _tname

__all__ = ["ROLES", "JobParty", "StepSpec", "JobSpec", "load_job", "job_from_dict", "known_step_kinds",
           "step_order_problems"]

ROLES = ("guest", "host", "arbiter", "client", "aggregator")
#: kind -> kinds of which one must come earlier in the job
_NEEDS = {
    "select": ("binning",),
    "scorecard": ("hetero_lr",),
    "evaluate": ("hetero_lr",),
}


@dataclass(frozen=True)
class JobParty:
    """One participant of a job: its role, and the table (from its own config) it uses."""

    name: str
    role: str
    table: str | None = None
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StepSpec:
    """One step of a job: ``kind`` picks the protocol; ``name`` namespaces its messages.

    Attributes
    ----------
    name, kind : str
    params : mapping
        The ``params`` table as written (frozen): what the job's canonical
        JSON carries, so every party proposes, hashes and shows the same text.
    typed_params : Params or dict
        The same parameters checked against the kind's parameters class
        (:mod:`fedcredit.protocols.registry`), defaults applied: what the step
        receives as ``ctx.params``. Built from ``params`` when not given; a
        plain dict for a plugin kind without a parameters class.
    """

    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    typed_params: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.typed_params is None:
            object.__setattr__(self, "typed_params", _typed(self.kind, _thaw(self.params), self.name))


@dataclass(frozen=True)
class JobSpec:
    """A parsed job file."""

    name: str
    parties: Mapping[str, JobParty]
    steps: tuple[StepSpec, ...]
    purpose: str | None = None
    source: str = "<job>"

    @property
    def roles(self) -> dict[str, str]:
        return {p.name: p.role for p in self.parties.values()}

    def to_dict(self) -> dict:
        """Plain dict in the job-file shape (round-trips through :func:`job_from_dict`)."""
        job: dict[str, Any] = {"name": self.name}
        if self.purpose is not None:
            job["purpose"] = self.purpose
        parties = {}
        for p in self.parties.values():
            d: dict[str, Any] = {"role": p.role}
            if p.table is not None:
                d["table"] = p.table
            if p.columns is not None:
                d["columns"] = list(p.columns)
            parties[p.name] = d
        steps = [{"kind": s.kind, "name": s.name, "params": _thaw(s.params)} for s in self.steps]
        return {"job": job, "parties": parties, "steps": steps}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): what is proposed, stored and hashed."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def _owner(name: str, kind: str) -> str:
    return f"step {name!r} ({kind})"


def _typed(kind: str, params: dict, name: str) -> Any:
    """What the step receives: its kind's frozen parameters, or a plain dict for a kind without a class."""
    if kind not in STEP_KINDS:
        return copy.deepcopy(params)
    return parse_step_params(kind, params, _owner(name, kind))


def known_step_kinds() -> tuple[str, ...]:
    """Step kinds this process can run (the registry plus any plugins registered at start-up)."""
    return tuple(sorted(STEP_KINDS))


_JOB_TOP = {"job", "parties", "steps"}
_JOB_KEYS = {"name", "purpose"}
_JOB_PARTY_KEYS = {"role", "table", "columns"}
_STEP_KEYS = {"kind", "name", "params"}


def load_job(path: str | os.PathLike) -> JobSpec:
    """Load and check a job file (see the module docstring for its shape).

    Raises
    ------
    ConfigError
        Listing every problem, each naming the file and the key.
    """
    path = Path(path)
    data = _parse_toml(path)
    return job_from_dict(data, source=str(path))


def job_from_dict(data: Any, *, source: str = "<job>", known_kinds: tuple[str, ...] | None = None) -> JobSpec:
    """Check a job given as a dict (a parsed job file or a received proposal).

    Parameters
    ----------
    data : dict
        The job-file structure.
    source : str
        Names the origin in messages (a file path, ``"proposal from bank"``).
    known_kinds : tuple of str, optional
        Step kinds accepted; default :func:`known_step_kinds`.
    """
    c = _Checker(source, None)
    kinds = known_step_kinds() if known_kinds is None else known_kinds
    top = c.table(data, "", _JOB_TOP, {"job", "parties", "steps"})
    job = c.table(top.get("job", {}), "[job]", _JOB_KEYS, {"name"})
    name = c.get(job, "[job]", "name", str, check=_ids.name_problem)
    purpose = c.get(job, "[job]", "purpose", str, None)

    parties: dict[str, JobParty] = {}
    praw = c.table(top.get("parties", {}), "[parties]", None)
    for pname, pdata in praw.items():
        key = f"[parties.{pname}]"
        msg = _check_name(pname)
        if msg:
            c.add(key, msg)
            continue
        pd = c.table(pdata, key, _JOB_PARTY_KEYS, {"role"})
        role = c.get(pd, key, "role", str,
                     check=lambda s: None if s in ROLES else f"unknown role {s!r} (roles: {', '.join(ROLES)})")
        table = c.get(pd, key, "table", str, None, check=_ids.name_problem)
        cols = c.str_list(pd, key, "columns")
        if role is not None:
            parties[pname] = JobParty(pname, role, table, cols)
    if "parties" in top and isinstance(top["parties"], dict) and len(praw) < 2:
        c.add("[parties]", f"a job needs at least two parties, got {len(praw)}")
    n_guest = sum(1 for p in parties.values() if p.role == "guest")
    if n_guest > 1:
        c.add("[parties]", f"at most one party may be the guest (label holder), got {n_guest}")

    steps: list[StepSpec] = []
    sraw = top.get("steps", [])
    if "steps" in top and not isinstance(sraw, list):
        c.add("[[steps]]", f"must be an array of tables ([[steps]]), got {_tname(sraw)}")
        sraw = []
    if "steps" in top and isinstance(sraw, list) and not sraw:
        c.add("[[steps]]", "a job needs at least one step")
    seen: set[str] = set()
    drafts: list[tuple[int, str, str, Any]] = []  # (index, name, kind, typed params or None)
    for i, sdata in enumerate(sraw):
        key = f"steps[{i}]"
        sd = c.table(sdata, key, _STEP_KEYS, {"kind"})
        kind = c.get(sd, key, "kind", str,
                     check=lambda s: None if s in kinds else f"unknown step kind {s!r} (known: {', '.join(kinds)})")
        sname = c.get(sd, key, "name", str, kind, check=_ids.name_problem)
        params = c.get(sd, key, "params", dict, {})
        if sname is not None and sname in seen:
            c.add(f"{key}.name", f"duplicate step name {sname!r} (give each step of the same kind its own name)")
        if sname is not None:
            seen.add(sname)
        if kind is not None and sname is not None and params is not None:
            typed = _step_params(c, key, kind, sname, params)
            drafts.append((i, sname, kind, typed))
            if typed is not None:
                steps.append(StepSpec(sname, kind, _freeze(params), typed))
    if any(typed is None for *_, typed in drafts):
        # the job is refused for its parameters: say at once what else is wrong with its steps (the order and
        # roles, which the initiator checks at submission), so one round of fixes is enough
        for i, problem in step_order_problems(drafts, {p.name: p.role for p in parties.values()}):
            c.add(f"steps[{i}]", problem)
    c.raise_if_any()
    return JobSpec(name=name, parties=MappingProxyType(parties), steps=tuple(steps), purpose=purpose, source=source)


def _step_params(c: _Checker, key: str, kind: str, name: str, params: dict) -> Any:
    """The step's typed parameters, or None after adding every problem (``steps[i].params: ...``) to ``c``."""
    try:
        return _typed(kind, params, name)
    except ConfigError as exc:
        for problem in exc.problems:
            c.add(f"{key}.params", problem)
    except (TypeError, ValueError) as exc:  # a parameters class's own check
        c.add(f"{key}.params", f"{_owner(name, kind)}: {exc}")
    return None


def step_order_problems(steps, roles: Mapping[str, str]) -> list[tuple[int, str]]:
    """Problems of the steps' order and of the roles they need: ``[(index in the file, message)]``.

    ``steps`` holds ``(index, name, kind, typed params)``; typed params may be
    None (parameters refused), and then only the kind's rules are checked.
    ``select`` needs ``binning`` before it; ``scorecard`` and ``evaluate`` a
    ``hetero_lr``; WOE features a ``binning``; a scorecard an LR on WOE
    features; ``psi`` comes before the steps that use rows; LR's mode fits the
    number of hosts and arbiters.
    """
    problems: list[tuple[int, str]] = []
    seen: list[str] = []
    n_hosts = sum(1 for r in roles.values() if r == "host")
    n_arb = sum(1 for r in roles.values() if r == "arbiter")
    last_lr = None
    for i, name, kind, params in steps:
        owner = _owner(name, kind)
        need = _NEEDS.get(kind)
        if need and not any(k in seen for k in need):
            problems.append((i, f"{owner} needs a {' or '.join(need)} step before it"))
        if kind == "hetero_lr" and getattr(params, "features", None) == "woe" and "binning" not in seen:
            problems.append((i, f"{owner} uses WOE features (features = \"woe\"): it needs a binning step before it"))
        if kind == "hetero_lr":
            mode = getattr(params, "mode", None)
            if mode == "two_party" and n_hosts != 1:
                problems.append((i, f"{owner}: mode = \"two_party\" runs one guest with exactly one host (the job has "
                                    f"{n_hosts}); for {n_hosts} hosts use mode = \"coordinated\" and add a party with "
                                    f"role = \"arbiter\" (a key holder without data)"))
            if mode == "coordinated" and n_arb != 1:
                problems.append((i, f"{owner}: mode = \"coordinated\" needs exactly one party with role = \"arbiter\" "
                                    f"(the key holder; it needs no table), the job has {n_arb}"))
            last_lr = params
        if kind == "scorecard" and last_lr is not None and getattr(last_lr, "features", "woe") != "woe":
            problems.append((i, f"{owner} needs the hetero_lr step before it to use features = \"woe\" (it has "
                                f"features = \"{getattr(last_lr, 'features', '?')}\": points come from WOE bins)"))
        if kind == "psi" and any(k in seen for k in ("binning", "secureboost", "hetero_lr", "evaluate")):
            problems.append((i, f"{owner} comes after a step that already used the rows: put psi first"))
        seen.append(kind)
    return problems
