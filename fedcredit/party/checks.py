"""Every error before the first step: the job's steps (at submission) and each party's own data (at proposal).

* :func:`check_steps` (the initiator, at submission; every party again at
  proposal): the step order (``select`` needs ``binning`` before it, ``scorecard`` and
  ``evaluate`` a ``hetero_lr``, WOE features a ``binning``...). All problems
  are returned together. (Each step's parameters are checked earlier, when
  the job is loaded: :func:`fedcredit.config.job_from_dict`.)
* :func:`check_party_data` (each party, at proposal, before accepting): its
  table exists and reads (header, label with exactly two values and a usable
  ``pos_label``, ``categorical`` names, ids, values), the job's columns
  exist, and the rows a vertical step sees are aligned
  (:mod:`fedcredit.party.alignment`). Each problem is a pair: the full text
  (file, line, value: stays in this party's log and answers its own
  operator) and a public text (column, problem, error class: what another
  party may read).

Both run before PSI, so a mistake costs no crypto and sends no data.
"""

from __future__ import annotations

import logging

from ..config import JobSpec, PartyConfig
from ..config.job import step_order_problems
from ..errors import DataError
from .alignment import alignment_problem

__all__ = ["check_steps", "step_notes", "check_party_data", "check_table_files", "public_text"]

log = logging.getLogger("fedcredit.party")

#: kinds whose steps need the label holder's label
_LABELLED = frozenset({"binning", "secureboost", "hetero_lr", "evaluate"})


def check_steps(spec: JobSpec) -> list[str]:
    """Every problem with the job's step order and roles (empty: fine).

    The rules are :func:`fedcredit.config.job.step_order_problems`. Each step's
    parameters were already checked when the job was loaded
    (:func:`fedcredit.config.job_from_dict`, which also reports these problems
    together with any parameter problem).
    """
    steps = [(i, s.name, s.kind, s.typed_params) for i, s in enumerate(spec.steps)]
    return [msg for _, msg in step_order_problems(steps, spec.roles)]


def step_notes(spec: JobSpec) -> list[str]:
    """What the job does that its author may not expect (shown at submission; not errors)."""
    notes = []
    kinds = [s.kind for s in spec.steps]
    for i, s in enumerate(spec.steps):
        if s.kind == "secureboost" and "select" in kinds[:i]:
            notes.append(f"step {s.name!r} (secureboost) ignores the features 'select' kept: it trains on every "
                         f"column of the job's tables (list columns per party in the job to restrict it)")
    return notes


def public_text(exc: BaseException) -> str:
    """What another party may read about ``exc`` raised on this party's data: no value, no path."""
    pub = getattr(exc, "public", None)
    if isinstance(pub, str):
        return f"{pub} ({type(exc).__name__})"
    return f"{type(exc).__name__} (details in this party's log)"


def check_party_data(config: PartyConfig, spec: JobSpec, columns) -> list[tuple[str, str]]:
    """This party's own problems with ``spec``: ``[(full text, public text)]`` (empty: fine).

    Parameters
    ----------
    config : PartyConfig
    spec : JobSpec
    columns : tuple of str or None
        The columns this party would load (:func:`~fedcredit.party.policy.effective_columns`).
    """
    me = spec.parties.get(config.name)
    if me is None or me.table is None or me.table not in config.tables:
        return []  # no table: check_job already refused a data role without one
    t = config.tables[me.table]
    out: list[tuple[str, str]] = []
    what = f"{config.name!r} table {me.table!r}"
    kinds = {s.kind for s in spec.steps}
    if me.role == "guest" and kinds & _LABELLED and not t.label_column:
        msg = f"{what} has no label_column, but the guest's label is needed by {', '.join(sorted(kinds & _LABELLED))}"
        out.append((msg, msg))
    from ..data import load_table, read_header

    try:
        header = read_header(t.path)
    except DataError as exc:
        header = None
        out.append((f"{what}: {exc}", f"{what}: {public_text(exc)}"))
    if header is not None:
        # every missing name at once (load_table stops at the first)
        for kind, names in (("id column", [t.id_column]), ("label column", [t.label_column] if t.label_column else []),
                            ("column", list(columns or ())), ("categorical column", list(t.categorical))):
            missing = [c for c in names if c not in header]
            if missing:
                cols = ", ".join(map(repr, missing))
                out.append((f"{what} ({t.path}): {kind}(s) {cols} not in the file; it has {', '.join(header)}",
                            f"{what}: {kind}(s) {cols} not in the table (TableError)"))
        if not out:
            # ids and label only (the proposal answers within one RPC deadline; feature values are checked when
            # the job loads the table, still before its first step)
            try:
                load_table(t.path, party=config.name, id_column=t.id_column, label_column=t.label_column,
                           columns=[], categorical=t.categorical, pos_label=t.pos_label)
            except DataError as exc:
                out.append((f"{what}: {exc}", f"{what}: {public_text(exc)}"))
    msg = alignment_problem(spec, config.name, me.table, t.aligned_by)
    if msg:
        out.append((msg, msg))
    return out


def check_table_files(config: PartyConfig) -> list[str]:
    """Problems with the data files the config names (``fedcredit party health``): one text per table at fault.

    Reads each table's header (every named column, label and categorical
    column present) and its ids and label (two values, a usable
    ``pos_label``); feature values are checked when a job loads them.
    """
    from ..data import load_table, read_header

    out = []
    for name, t in config.tables.items():
        try:
            header = read_header(t.path)
            missing = [c for c in (t.columns or ()) if c not in header]
            if missing:
                out.append(f"table {name!r}: column(s) {', '.join(map(repr, missing))} not in {t.path}")
            load_table(t.path, party=config.name, id_column=t.id_column, label_column=t.label_column, columns=[],
                       categorical=t.categorical, pos_label=t.pos_label)
        except DataError as exc:
            out.append(f"table {name!r}: {exc}")
    return out
