"""Job step kinds: each maps to the function that runs it and the frozen dataclass of its parameters.

Both are named as ``"module:attribute"`` and imported on first use, so that
loading a config does not import every protocol. A kind's parameters class
(a :class:`fedcredit._validation.Params`) is what the job loader checks each
step's ``params`` table against when a job is submitted or proposed; the step
then receives the typed object in ``ctx.params``. A plugin step (registered at
start-up, see :func:`fedcredit.party.register_plugin_steps`) may have no
parameters class: it receives its ``params`` table as a plain dict, unchecked.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["StepKind", "STEP_KINDS", "register_step", "get_step", "get_params_class", "parse_step_params"]


@dataclass(frozen=True)
class StepKind:
    """Where a step kind's code lives: ``run`` and ``params`` as ``"module:attribute"`` (``params`` optional)."""

    run: str
    params: str | None = None


STEP_KINDS: dict[str, StepKind] = {
    "handshake": StepKind("fedcredit.protocols.handshake:run", "fedcredit._validation:NoParams"),
    "secureboost": StepKind("fedcredit.protocols.secureboost:run",
                            "fedcredit.protocols.secureboost.params:SecureBoostParams"),
    "binning": StepKind("fedcredit.protocols.binning:run", "fedcredit.protocols.binning.params:BinningParams"),
    "select": StepKind("fedcredit.protocols.select:run", "fedcredit.protocols.select.params:SelectParams"),
    "hetero_lr": StepKind("fedcredit.protocols.hetero_lr:run", "fedcredit.protocols.hetero_lr.params:LRParams"),
    "scorecard": StepKind("fedcredit.protocols.scorecard:run",
                          "fedcredit.protocols.scorecard.params:ScorecardParams"),
    "evaluate": StepKind("fedcredit.protocols.evaluate:run", "fedcredit.protocols.evaluate.params:EvaluateParams"),
    "psi": StepKind("fedcredit.protocols.psi:run", "fedcredit.protocols.psi.params:PSIParams"),
    "homo": StepKind("fedcredit.protocols.homo:run", "fedcredit.protocols.homo.params:HomoStepParams"),
}


def register_step(kind: str, run: str, params: str | None = None) -> None:
    """Add (or replace) a step kind: ``run`` and ``params`` as ``"module:attribute"``."""
    STEP_KINDS[kind] = StepKind(run, params)


def _entry(kind: str) -> StepKind:
    try:
        return STEP_KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown step kind {kind!r}; known kinds: {', '.join(sorted(STEP_KINDS))}") from None


def _load(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def get_step(kind: str) -> Callable:
    """The function ``run(ctx) -> dict`` of ``kind``."""
    return _load(_entry(kind).run)


def get_params_class(kind: str) -> type | None:
    """The parameters class of ``kind`` (None for a plugin step without one)."""
    target = _entry(kind).params
    return None if target is None else _load(target)


def parse_step_params(kind: str, params: Mapping[str, Any] | None, owner: str) -> Any:
    """Check a step's ``params`` table and return what the step receives in ``ctx.params``.

    Returns
    -------
    Params or dict
        The kind's frozen parameters (defaults applied); a plain copy of
        ``params`` for a plugin kind without a parameters class.

    Raises
    ------
    ConfigError
        Every problem, each message naming ``owner`` and the parameter.
    """
    cls = get_params_class(kind)
    raw = copy.deepcopy(dict(params or {}))
    return raw if cls is None else cls.from_dict(raw, owner)
