"""The party process: Control/Health services, job lifecycle, policy, SQLite store, reports.

Public names: :class:`Party`, :func:`serve`, :func:`register_plugin_steps`.
"""

from __future__ import annotations

import os

from .party import Party, PartyJob

__all__ = ["Party", "PartyJob", "register_plugin_steps", "PLUGIN_ENV"]

#: Extra step kinds for this process: ``kind=module:function`` pairs separated by
#: commas (tests register a step that waits; plugins add their own protocols).
PLUGIN_ENV = "FEDCREDIT_STEP_PLUGINS"


def register_plugin_steps(spec: str | None = None) -> list[str]:
    """Add step kinds from ``spec`` (default: the ``FEDCREDIT_STEP_PLUGINS`` env var) to the registry.

    Returns the kinds added. A malformed entry is a :class:`~fedcredit.errors.ConfigError`.
    """
    from ..errors import ConfigError
    from ..protocols.registry import register_step

    spec = os.environ.get(PLUGIN_ENV, "") if spec is None else spec
    added = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, sep, target = item.partition("=")
        if not sep or ":" not in target or not kind:
            raise ConfigError(f"{PLUGIN_ENV}: entry {item!r} must look like kind=module:function")
        register_step(kind, target)
        added.append(kind)
    return added
