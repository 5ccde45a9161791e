"""Helpers every command group uses: the party config, the operator's client, ``NAME=VALUE`` options."""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["load_party", "own_client", "governance_client", "pairs", "config_once"]


def load_party(path: str):
    """The party config at ``path`` (every problem listed, with the file and key)."""
    from ..config import load_party_config

    return load_party_config(path)


def own_client(cfg, timeout: float = 30.0):
    """``(ControlClient, channel)`` to this party, as its operator (:func:`fedcredit.own_party.own_control`)."""
    from ..own_party import own_control

    return own_control(cfg, timeout=timeout)


def governance_client(cfg):
    """``(GovernanceClient, channel)`` to this party, as its operator (revoke, admit, reload, model export)."""
    from ..own_party import own_channel
    from ..transport.scoring import GovernanceClient

    ch = own_channel(cfg)
    return GovernanceClient(ch, cfg.name, timeout=60.0), ch


def pairs(items, what: str) -> dict[str, str]:
    """Repeated ``NAME=VALUE`` options as a dict."""
    result = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k or not v:
            raise ConfigError(f"{what} must be NAME=VALUE, got {it!r}")
        result[k.strip()] = v.strip()
    return result


def config_once(args, command: str) -> str:
    """The party config given either positionally or as ``--party`` (the same path twice is fine)."""
    if bool(args.config) == bool(args.party) and not (args.config and args.config == args.party):
        raise ConfigError(f"give your party's config once: 'fedcredit {command} CONFIG' (or --party CONFIG)")
    return args.config or args.party
