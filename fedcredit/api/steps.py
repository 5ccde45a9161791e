"""Job steps built in Python (:func:`psi`, :func:`binning`, ...) and :func:`build_job`.

They map one to one onto the job file format (``[[steps]] kind, name, params``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["Step", "build_job", "handshake", "psi", "binning", "select", "secureboost", "hetero_lr", "scorecard",
           "evaluate", "fedavg"]


@dataclass(frozen=True)
class Step:
    """One step of a job: ``kind`` (the protocol), ``name`` (unique in the job) and its parameters.

    The same fields as a ``[[steps]]`` entry of a job file; the parties check ``params`` when the job
    is proposed (unknown or out-of-range parameters are refused before any step runs).
    """

    kind: str
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "params": dict(self.params)}


def _step(kind: str, name: str | None, params: dict) -> Step:
    return Step(kind, name or kind, {k: v for k, v in params.items() if v is not None})


def handshake(*, name: str | None = None) -> Step:
    """Every party reports its row count to the initiator (a connectivity check)."""
    return _step("handshake", name, {})


def psi(*, name: str | None = None, **params) -> Step:
    """Private set intersection: align the parties' rows on their ids (ECDH PSI; docs/psi.md)."""
    return _step("psi", name, params)


def binning(*, max_bins: int | None = None, name: str | None = None, **params) -> Step:
    """Bin every feature; WOE and IV from the guest's encrypted labels (docs/secureboost.md, binning)."""
    return _step("binning", name, {"max_bins": max_bins, **params})


def select(*, iv_threshold: float | None = None, name: str | None = None, **params) -> Step:
    """Keep the features whose IV (from ``binning``) is at least ``iv_threshold``."""
    return _step("select", name, {"iv_threshold": iv_threshold, **params})


def secureboost(*, n_trees: int | None = None, max_depth: int | None = None, learning_rate: float | None = None,
                name: str | None = None, **params) -> Step:
    """Vertical SecureBoost (Paillier-encrypted gradients; docs/secureboost.md). Other parameters: ``**params``."""
    return _step("secureboost", name, {"n_trees": n_trees, "max_depth": max_depth, "learning_rate": learning_rate,
                                       **params})


def hetero_lr(*, mode: str | None = None, backend: str | None = None, features: str | None = None,
              max_epochs: int | None = None, name: str | None = None, **params) -> Step:
    """Vertical logistic regression (docs/hetero_lr.md).

    ``mode`` ``"two_party"`` or ``"coordinated"`` (with an arbiter), ``backend`` ``"paillier"`` or ``"ckks"``,
    ``features`` ``"standardized"`` or ``"woe"`` (after a binning step).
    """
    return _step("hetero_lr", name, {"mode": mode, "backend": backend, "features": features,
                                     "max_epochs": max_epochs, **params})


def scorecard(*, pdo: float | None = None, base_score: float | None = None, base_odds: float | None = None,
              name: str | None = None, **params) -> Step:
    """Points per bin from the LR model (each party keeps its own bins' points)."""
    return _step("scorecard", name, {"pdo": pdo, "base_score": base_score, "base_odds": base_odds, **params})


def evaluate(*, name: str | None = None, **params) -> Step:
    """AUC, KS and score deciles of the latest model on the guest's validation rows."""
    return _step("evaluate", name, params)


def fedavg(*, mode: str | None = None, rounds: int | None = None, name: str | None = None, **params) -> Step:
    """Horizontal FedAvg (``kind = "homo"``; ``mode`` plain, secagg or ckks; docs/homo.md)."""
    return _step("homo", name or "fedavg", {"mode": mode, "rounds": rounds, **params})


def _steps_to_dicts(steps) -> list[dict]:
    out = []
    for s in steps:
        if isinstance(s, Step):
            out.append(s.to_dict())
        elif isinstance(s, (tuple, list)) and len(s) in (2, 3):
            out.append({"kind": s[0], "name": s[1], "params": dict(s[2]) if len(s) == 3 else {}})
        elif isinstance(s, Mapping):
            out.append(dict(s))
        else:
            raise ConfigError(f"a step must be a Step (fedcredit.psi(), ...), (kind, name, params) or a dict; "
                              f"got {type(s).__name__}")
    return out


#: Roles that read a table by default (``table = "credit"``) when a job is built in Python.
_DATA_ROLES = ("guest", "host", "client")


def build_job(steps, *, roles: Mapping[str, str], tables: Mapping[str, str | None] | None = None,
              name: str = "job", purpose: str | None = "credit-risk-model"):
    """A checked :class:`~fedcredit.config.JobSpec` from steps built in Python.

    Parameters
    ----------
    steps : list of Step, (kind, name, params) or dict
    roles : dict
        ``{party: role}`` of every participant.
    tables : dict, optional
        ``{party: table name in that party's config}``; default ``"credit"`` for guest, host and
        client, none for arbiter and aggregator.
    name, purpose : str
    """
    from ..config import job_from_dict

    tables = dict(tables or {})
    parties = {}
    for p, role in roles.items():
        d: dict[str, Any] = {"role": role}
        t = tables.get(p, "credit" if role in _DATA_ROLES else None)
        if t is not None:
            d["table"] = t
        parties[p] = d
    job: dict[str, Any] = {"name": name}
    if purpose:
        job["purpose"] = purpose
    data = json.loads(json.dumps({"job": job, "parties": parties, "steps": _steps_to_dicts(steps)}))
    return job_from_dict(data, source=f"<job {name!r} built in Python>")
