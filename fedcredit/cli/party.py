"""``fedcredit party serve|health|revoke|admit|reload``: run, check and steer a party process."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from ..errors import ConfigError, PeerError, PolicyError
from ._common import config_once, governance_client, load_party
from ._console import out
from .exit_codes import ExitCode, exit_code_for

__all__ = ["add_commands", "cmd_party_serve", "cmd_party_health", "cmd_revoke", "cmd_admit", "cmd_reload"]


def cmd_party_serve(args) -> int:
    from ..party import Party

    cfg = load_party(args.config)
    party = Party(cfg)
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        port = party.start()
        host = cfg.listen.rpartition(":")[0]
        out(f"party {cfg.name} serving on {host}:{port} ({'INSECURE' if cfg.insecure else 'mTLS'}); "
            f"state in {cfg.state_dir}; Ctrl-C to stop")
        if party.console is not None:  # the token is printed here, never written to the log (party/console.py)
            out(f"console: {party.console.url}")
        while not stop.wait(0.5):
            pass
        out(f"party {cfg.name} stopping")
    finally:
        party.stop(grace=args.grace)
        for s, h in old.items():
            signal.signal(s, h)
    _exit_after_stop(ExitCode.OK)
    return ExitCode.OK  # pragma: no cover - not reached


def _exit_after_stop(code: int) -> None:
    """End a stopped party process without interpreter finalization.

    Everything the party owns is closed by :meth:`Party.stop` (store, audit log, log file, transport,
    compute backend); what may remain are daemon threads inside C extensions (gRPC's channel and
    completion-queue threads, a job thread still in a gmpy2 call after the stop's grace), and tearing
    the interpreter down under them occasionally ended the process with SIGSEGV/SIGABRT instead of 0.
    So the process pool is stopped and the streams flushed here, then the process exits at once.
    """
    from ..compute import local as _local

    _local.shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe must not keep the process alive
            pass
    os._exit(int(code))


def cmd_party_health(args) -> int:
    from ..certs import TlsFiles
    from ..transport.control import ControlClient, dial

    cfg = load_party(config_once(args, "party health"))
    targets = [args.peer] if args.peer else [cfg.name]
    if args.all:
        targets = [cfg.name, *cfg.peers]
    tls = TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
    worst = ExitCode.OK
    if not args.peer:  # the data files this config names: header, ids, label and pos_label, categorical names
        from ..party.checks import check_table_files

        for problem in check_table_files(cfg):
            out(f"{cfg.name}: {problem}")
            worst = ExitCode.DATA
    for t in targets:
        if t == cfg.name:
            addr = cfg.connect_address
        elif t in cfg.peers:
            addr = cfg.peers[t]
        else:
            raise ConfigError(f"{cfg.path}: [peers]: no peer named {t!r} (peers: {', '.join(cfg.peers) or 'none'})")
        ch = dial(addr, target=t, tls=tls, me=cfg.name)
        try:
            h = ControlClient(ch, t, timeout=args.timeout).health()
            ok = h["serving"] and h["party"] == t
            out(f"{t} at {addr}: {'SERVING' if h['serving'] else 'NOT SERVING'}, party {h['party']!r}, "
                f"version {h['version']}, {h['running_jobs']} job(s) running; it sees us as {h['caller']!r}")
            if not ok:
                worst = ExitCode.UNREACHABLE
            from ..party.rotation import expiry_warnings

            for w in expiry_warnings(t, {"party": h.get("cert_not_after", 0.0), "CA": h.get("ca_not_after", 0.0)}):
                out(w)
        except (PeerError, PolicyError) as exc:
            out(f"{t} at {addr}: {exc}")
            worst = max(worst, exit_code_for(exc))
        finally:
            ch.close()
    return worst


def _peer_access(args, action: str) -> int:
    """``party revoke|admit NAME``: ask this party's Governance service, print its answer."""
    g, ch = governance_client(load_party(args.party))
    try:
        out(getattr(g, action)(args.name, args.reason))
    finally:
        ch.close()
    return ExitCode.OK


def cmd_revoke(args) -> int:
    return _peer_access(args, "revoke")


def cmd_admit(args) -> int:
    return _peer_access(args, "admit")


def cmd_reload(args) -> int:
    cfg = load_party(config_once(args, "party reload"))
    g, ch = governance_client(cfg)
    try:
        out(g.reload())
    finally:
        ch.close()
    return ExitCode.OK


def add_commands(sub, *, epilog: str, fmt) -> None:
    """Register ``party serve|health|revoke|admit|reload``."""
    party = sub.add_parser("party", help="run or check a party process",
                           description="Run or check a party process.", epilog=epilog, formatter_class=fmt)
    psub = party.add_subparsers(dest="party_command", metavar="SUBCOMMAND")
    psub.required = True
    c = psub.add_parser("serve", help="run the party until SIGINT/SIGTERM",
                        description="Run the party described by CONFIG: serve peers and the local CLI on its mTLS "
                                    "port, accept or refuse proposed jobs by its policy, run accepted jobs. Logs to "
                                    "<state_dir>/party.log; stops gracefully on SIGINT/SIGTERM.",
                        epilog=epilog, formatter_class=fmt)
    c.add_argument("config", metavar="CONFIG", help="party config TOML (e.g. parties/bank.toml)")
    c.add_argument("--grace", type=float, default=3.0, metavar="SECONDS", help="shutdown grace period (default 3)")
    c.set_defaults(func=cmd_party_serve)
    c = psub.add_parser("health", help="check that the party (or a peer) is serving",
                        description="Ask the party of CONFIG (or --peer NAME, or --all) whether it is serving, over "
                                    "mTLS with the party's own certificate.", epilog=epilog, formatter_class=fmt)
    c.add_argument("config", nargs="?", metavar="CONFIG", help="party config TOML")
    c.add_argument("--party", metavar="CONFIG", help="the same, as an option (as for 'party reload')")
    c.add_argument("--peer", metavar="NAME", help="check this peer instead of the party itself")
    c.add_argument("--all", action="store_true", help="check the party and every peer")
    c.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="per-check timeout (default 5)")
    c.set_defaults(func=cmd_party_health)

    c = psub.add_parser("revoke", help="refuse a peer from its next message on (no restart)",
                        description="Revoke peer NAME on your running party: its next message, scoring request "
                                    "or job is refused; persisted in <state_dir>/revoked.json and audited.",
                        epilog=epilog, formatter_class=fmt)
    c.add_argument("name", metavar="NAME")
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--reason", default="", help="recorded in the audit log")
    c.set_defaults(func=cmd_revoke)
    c = psub.add_parser("admit", help="re-admit a revoked peer (no restart)",
                        description="Re-admit peer NAME, revoked earlier with 'fedcredit party revoke', on your "
                                    "running party: its next message, scoring request or job is accepted again. "
                                    "Removed from <state_dir>/revoked.json and recorded in the audit log "
                                    "(peer.admitted). NAME must still be in [peers] of CONFIG; a peer you "
                                    "removed from [peers] comes back by adding it and running 'fedcredit party "
                                    "reload'.", epilog=epilog, formatter_class=fmt)
    c.add_argument("name", metavar="NAME", help="the revoked peer")
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--reason", default="", help="recorded in the audit log")
    c.set_defaults(func=cmd_admit)
    c = psub.add_parser("reload", help="re-read [peers], [policy.scoring] and the TLS files without a restart",
                        description="Your running party re-reads its config: a peer removed from [peers] is "
                                    "refused from its next message on; [policy.scoring] changes apply at once; "
                                    "a renewed certificate/key and a new CA bundle ([tls]) are used for new "
                                    "connections (running jobs continue).",
                        epilog=epilog, formatter_class=fmt)
    c.add_argument("config", nargs="?", metavar="CONFIG", help="your party's config TOML (as for 'party health')")
    c.add_argument("--party", metavar="CONFIG", help="the same, as an option")
    c.set_defaults(func=cmd_reload)
