"""``fedcredit audit verify``: recompute a party's audit-log hash chain, against the heads its peers hold."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ._common import load_party
from ._console import out
from .exit_codes import ExitCode

__all__ = ["add_commands", "cmd_audit_verify", "held_heads_summary"]


def held_heads_summary(cfg) -> tuple[list[tuple[int, str]], list[str]]:
    """Heads of this party's log held by its peers, and one line per peer for the operator."""
    from ..serving.heads import fetch_held_heads

    heads, lines = [], []
    for peer, res in fetch_held_heads(cfg).items():
        if isinstance(res, str):
            lines.append(f"  {peer}: could not ask ({res})")
        else:
            heads += res
            last = f", latest #{res[-1][0]}" if res else ""
            lines.append(f"  {peer}: holds {len(res)} head(s) of this log{last}")
    return heads, lines


def cmd_audit_verify(args) -> int:
    from ..audit import verify

    cfg = load_party(args.party) if args.party else None
    path = Path(args.log) if args.log else Path(cfg.state_dir) / "audit.log"
    heads = []
    for h in args.head or []:
        seq, sep, digest = h.partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise ConfigError(f"--head {h!r} must look like SEQ:SHA256HEX")
        heads.append((int(seq), digest))
    if not path.exists():
        raise ConfigError(f"audit log not found: {path}")
    if cfg is not None and not args.no_peers:  # the heads of this log that peers hold (fedcredit.serving)
        peer_heads, lines = held_heads_summary(cfg)
        heads += peer_heads
        out("heads held by peers:\n" + "\n".join(lines) if lines else "no peers to ask")
    res = verify(path, known_heads=heads)
    if res.ok:
        out(f"{path}: OK, {res.records} records, head #{res.head[0]} {res.head[1]}")
        return ExitCode.OK
    out(f"{path}: BROKEN at line {res.first_bad_line}: {res.reason} ({res.records} valid records before it)")
    return ExitCode.AUDIT_BROKEN


def add_commands(sub, *, epilog: str, fmt) -> None:
    """Register ``audit verify``."""
    audit = sub.add_parser("audit", help="check the audit log", description="Check a party's audit log.",
                           epilog=epilog, formatter_class=fmt)
    asub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    asub.required = True
    c = asub.add_parser("verify", help="recompute the audit log's hash chain",
                        description="Recompute the hash chain of <state_dir>/audit.log and report the first broken "
                                    "line. Heads of this log held by peers (--head SEQ:HASH, from their "
                                    "'peer.head' records) also detect truncation and rewriting.",
                        epilog=epilog, formatter_class=fmt)
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--party", metavar="CONFIG", help="your party's config TOML")
    g.add_argument("--log", metavar="PATH", help="an audit log file")
    c.add_argument("--head", action="append", metavar="SEQ:HASH", help="a known head of this log (repeatable)")
    c.add_argument("--no-peers", action="store_true",
                   help="with --party: do not ask the peers for the heads of this log they hold")
    c.set_defaults(func=cmd_audit_verify)
