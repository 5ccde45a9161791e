"""``fedcredit certs init|issue``: the federation CA and party certificates."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ._console import out
from .exit_codes import ExitCode

__all__ = ["add_commands", "cmd_certs_init", "cmd_certs_issue"]


def cmd_certs_init(args) -> int:
    from ..certs import init_ca

    if args.rotate:
        from ..certs import rotate_ca

        bundle, cert = rotate_ca(args.dir)
        out(f"new federation CA written: {cert}; {bundle} holds the new and the old CA: make it every party's "
            f"[tls].ca and run 'fedcredit party reload', then re-issue each party's certificate")
        return ExitCode.OK
    cert, key = init_ca(args.dir, overwrite=args.force)
    out(f"federation CA written: {cert} (key {key}, mode 0600: keep it offline)")
    return ExitCode.OK


def cmd_certs_issue(args) -> int:
    from ..certs import issue

    hosts = tuple(args.host) if args.host else ("127.0.0.1", "localhost")
    if args.renew and not (Path(args.dir) / f"{args.name}.crt").exists():
        raise ConfigError(f"--renew: no certificate for party {args.name!r} in {args.dir} to renew")
    tls = issue(args.dir, args.name, hosts=hosts, overwrite=args.force or args.renew)
    out(f"certificate for party {args.name!r}: {tls.cert} (key {tls.key}, mode 0600)")
    return ExitCode.OK


def add_commands(sub, *, epilog: str, fmt) -> None:
    """Register ``certs init`` and ``certs issue``."""
    certs = sub.add_parser("certs", help="create a federation CA and party certificates",
                           description="Create a federation CA and party certificates (EC P-256, PEM).",
                           epilog=epilog, formatter_class=fmt)
    csub = certs.add_subparsers(dest="certs_command", metavar="SUBCOMMAND")
    csub.required = True
    c = csub.add_parser("init", help="create the federation CA in DIR (ca.crt, ca.key)",
                        description="Create the federation CA in DIR: ca.crt (give it to every party) and "
                                    "ca.key (mode 0600; keep it offline).", epilog=epilog, formatter_class=fmt)
    c.add_argument("dir", metavar="DIR", help="directory for ca.crt and ca.key")
    c.add_argument("--force", action="store_true", help="replace an existing CA (invalidates its certificates)")
    c.add_argument("--rotate", action="store_true",
                   help="start a CA rotation: new ca.crt/ca.key, the old CA kept, ca-bundle.crt with both")
    c.set_defaults(func=cmd_certs_init)
    c = csub.add_parser("issue", help="issue NAME.crt and NAME.key signed by the CA in DIR",
                        description="Issue a certificate and key for party NAME, signed by the CA in DIR. "
                                    "The party name is in the certificate (CN and SAN URI fedcredit://party/NAME); "
                                    "peers take the caller's identity from it.", epilog=epilog, formatter_class=fmt)
    c.add_argument("dir", metavar="DIR", help="directory holding ca.crt and ca.key")
    c.add_argument("name", metavar="NAME", help="party name ([a-z0-9_-], e.g. bank)")
    c.add_argument("--host", action="append", metavar="HOST",
                   help="DNS name or IP the party is reached at (repeatable; default 127.0.0.1 and localhost)")
    c.add_argument("--force", action="store_true", help="replace an existing certificate for NAME")
    c.add_argument("--renew", action="store_true",
                   help="renew NAME's existing certificate (new key, from the current CA); then 'fedcredit party "
                        "reload' on that party picks it up without a restart")
    c.set_defaults(func=cmd_certs_issue)
