"""Job step kinds → the function that runs them (imported lazily)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..errors import ConfigError

__all__ = ["STEP_KINDS", "get_step"]

# kind -> "module:function"; each function is ``run(ctx: StepContext) -> dict``.
STEP_KINDS: dict[str, str] = {
    "handshake": "fedcredit.protocols.handshake:run",
    "secureboost": "fedcredit.protocols.secureboost:run",
    "binning": "fedcredit.protocols.binning:run",
    "select": "fedcredit.protocols.select:run",
    "hetero_lr": "fedcredit.protocols.hetero_lr:run",
    "scorecard": "fedcredit.protocols.scorecard:run",
    "evaluate": "fedcredit.protocols.evaluate:run",
    "psi": "fedcredit.protocols.psi:run",
    "homo": "fedcredit.protocols.homo:run",
}


def get_step(kind: str) -> Callable:
    try:
        target = STEP_KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown step kind {kind!r}; known kinds: {', '.join(sorted(STEP_KINDS))}") from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)
