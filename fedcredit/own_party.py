"""The operator's connection to its own party.

Every operator command (``fedcredit run``, ``jobs``, ``score``, ``party revoke``, ...), the
Python API and the local-federation launcher talk to their **own** party over mTLS with
the party's own certificate: the party sees the call come from itself, i.e. its operator
(``transport/authz.py``). No other credential exists for the control plane.
"""

from __future__ import annotations

__all__ = ["own_channel", "own_control"]


def own_channel(cfg):
    """An mTLS channel to the party of ``cfg`` (a :class:`~fedcredit.config.PartyConfig`), as its operator."""
    from .certs import TlsFiles
    from .transport.control import dial

    tls = TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
    return dial(cfg.connect_address, target=cfg.name, tls=tls, me=cfg.name)


def own_control(cfg, timeout: float = 30.0):
    """``(ControlClient, channel)`` for the party of ``cfg``; close the channel when done."""
    from .transport.control import ControlClient

    ch = own_channel(cfg)
    return ControlClient(ch, cfg.name, timeout=timeout), ch
