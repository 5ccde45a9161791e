"""A party's policy decision on a proposed job: accept, or refuse with a reason."""

from __future__ import annotations

from ..config import JobSpec, PartyConfig, PrivacyPolicy, StepSpec, known_step_kinds

__all__ = ["check_job", "check_privacy", "DATA_ROLES", "effective_columns"]

# roles that work on one of the party's own tables
DATA_ROLES = ("guest", "host", "client")


def effective_columns(config: PartyConfig, job: JobSpec, proposer: str) -> tuple[str, ...] | None:
    """Columns this party loads for ``job``: the job's list, else what the policy allows ``proposer``, else the table's."""
    me = job.parties[config.name]
    if me.columns is not None:
        return me.columns
    allowed = config.policy.columns_for(proposer)
    if allowed is not None:
        return allowed
    t = config.tables.get(me.table) if me.table else None
    return t.columns if t else None


def check_job(config: PartyConfig, job: JobSpec, proposer: str, *, running_jobs: int = 0) -> str | None:
    """Why this party refuses ``job`` proposed by ``proposer``, or None to accept.

    Checks, in order: the proposer may propose; this party takes part; every
    other participant is a known peer; each step kind is known and allowed;
    the purpose is allowed; the table exists (for data roles); the columns are
    allowed for the proposer; every step meets ``[policy.privacy]``
    (:func:`check_privacy`); the party is not at its concurrency limit.
    """
    pol = config.policy
    me = config.name
    if proposer != me and proposer not in pol.proposers:
        return f"{proposer!r} may not propose jobs to {me!r} (policy proposers: {', '.join(pol.proposers) or 'none'})"
    if me not in job.parties:
        return f"{me!r} is not one of the job's parties ({', '.join(job.parties)})"
    if proposer not in job.parties:
        return f"the proposer {proposer!r} is not one of the job's parties"
    strangers = [p for p in job.parties if p != me and p not in config.peers]
    if strangers:
        return f"{', '.join(map(repr, strangers))} {'is' if len(strangers) == 1 else 'are'} not a peer of {me!r}"
    kinds = known_step_kinds()
    for s in job.steps:
        if s.kind not in kinds:
            return f"step {s.name!r}: kind {s.kind!r} is unknown to {me!r} (known: {', '.join(kinds)})"
        if pol.allowed_steps is not None and s.kind not in pol.allowed_steps:
            return (f"step {s.name!r}: kind {s.kind!r} is not allowed by {me!r}'s policy "
                    f"(allowed: {', '.join(pol.allowed_steps) or 'none'})")
    if pol.purposes is not None and job.purpose not in pol.purposes:
        return f"purpose {job.purpose!r} is not allowed by {me!r}'s policy (allowed: {', '.join(pol.purposes)})"
    mine = job.parties[me]
    if mine.role in DATA_ROLES and mine.table is None:
        return f"the job gives no table for {me!r} (role {mine.role!r} needs one)"
    if mine.table is not None and mine.table not in config.tables:  # other roles may hold one (held-out data)
        return f"{me!r} has no table {mine.table!r} (tables: {', '.join(config.tables) or 'none'})"
    allowed = pol.columns_for(proposer)
    if allowed is not None and mine.columns is not None:
        bad = [c for c in mine.columns if c not in allowed]
        if bad:
            return f"columns {', '.join(map(repr, bad))} of {me!r} are not allowed for jobs from {proposer!r}"
    if allowed is not None and mine.table is not None and not allowed:
        return f"{me!r}'s policy allows no columns for jobs from {proposer!r}"
    for s in job.steps:
        why = check_privacy(pol.privacy, s)
        if why:
            return f"step {s.name!r}: {why} ({me!r}'s [policy.privacy])"
    if running_jobs >= pol.max_concurrent_jobs:
        return f"{me!r} is busy: {running_jobs} job(s) running (policy max_concurrent_jobs = {pol.max_concurrent_jobs})"
    return None


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def check_privacy(req: PrivacyPolicy, step: StepSpec) -> str | None:
    """Why ``step`` offers less protection than ``req`` requires, or None.

    Reads the step's typed parameters (``StepSpec.typed_params``: checked when the job was loaded, defaults
    applied), so a policy and the step it guards always see the same values.
    """
    kind, prm = step.kind, step.typed_params

    def get(key):
        return prm.get(key) if isinstance(prm, dict) else getattr(prm, key, None)

    if kind in ("secureboost", "binning") and req.max_label_epsilon is not None:
        eps = _num(get("label_epsilon"))
        if eps is None:
            return f"{kind} without label DP (label_epsilon); required: label_epsilon <= {req.max_label_epsilon}"
        if eps > req.max_label_epsilon:
            return f"label_epsilon {eps} is above the maximum {req.max_label_epsilon}"
    if kind == "secureboost":
        rows = _num(get("min_node_rows"))
        if req.min_node_rows is not None and rows is not None and rows < req.min_node_rows:
            return f"min_node_rows {rows} is below the minimum {req.min_node_rows}"
        k = max(_num(get("guest_only_trees")) or 0, 1 if get("guest_only_first_tree") is True else 0)
        if req.min_guest_only_trees is not None and k < req.min_guest_only_trees:
            return f"{k} guest-only trees, below the minimum {req.min_guest_only_trees} (guest_only_trees)"
    if kind == "binning" and req.min_bin_count is not None:
        n = _num(get("min_bin_count"))
        if n is not None and n < req.min_bin_count:
            return f"min_bin_count {n} is below the minimum {req.min_bin_count}"
    if kind == "hetero_lr" and req.min_batch_size is not None:
        b = _num(get("batch_size"))
        if b is not None and b < req.min_batch_size:
            return f"batch_size {b} is below the minimum {req.min_batch_size} (hetero LR gradients per batch)"
    return None
