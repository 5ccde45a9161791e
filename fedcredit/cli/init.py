"""``fedcredit init party|federation``: scaffold a party config, or a whole local federation."""

from __future__ import annotations

from ._common import pairs
from ._console import out
from .exit_codes import ExitCode

__all__ = ["add_commands", "cmd_init_party", "cmd_init_federation"]


def cmd_init_party(args) -> int:
    from ..scaffold import init_party

    path, info, steps = init_party(args.name, listen=args.listen, table=args.table, out=args.out,
                                   label_column=args.label, pos_label=args.pos_label, id_column=args.id_column,
                                   table_name=args.table_name, peers=pairs(args.peer, "--peer"), force=args.force)
    out(f"party config written: {path}")
    out(f"table {info.path}: {len(info.columns)} columns ({len(info.numeric)} numeric features"
        + (f", {len(info.text)} text" if info.text else "")
        + (f", label {args.label!r} with values {', '.join(info.label_values)}" if args.label else "")
        + f"; first {info.rows_sampled} rows checked)")
    for w in info.warnings:
        out(f"warning: {w}")
    out()
    out("next steps:")
    for s in steps:
        out(s)
    return ExitCode.OK


def cmd_init_federation(args) -> int:
    from ..scaffold import init_federation

    parties = [p.strip() for p in args.parties.split(",") if p.strip()]
    configs, job, steps = init_federation(args.dir, parties, tables=pairs(args.table, "--table"),
                                          labels=pairs(args.label, "--label"), base_port=args.base_port)
    out(f"federation for a local trial written to {args.dir}: a CA (certs/ca.crt), a certificate and a config per "
        f"party ({', '.join(str(c) for c in configs.values())})" + (f", a starter job {job}" if job else ""))
    out()
    out("next steps:")
    for s in steps:
        out(s)
    return ExitCode.OK


def add_commands(sub, *, epilog: str, fmt) -> None:
    """Register ``init party`` and ``init federation``."""
    init = sub.add_parser("init", help="scaffold a party config, or a whole local federation",
                          description="Write a commented party config (checking its table first), or a CA, "
                                      "certificates and configs for a federation on this machine.",
                          epilog=epilog, formatter_class=fmt)
    isub = init.add_subparsers(dest="init_command", metavar="SUBCOMMAND")
    isub.required = True
    c = isub.add_parser("party", help="write a commented party config NAME.toml after checking the table",
                        description="Check TABLE (file, id column, label column and its values, column types), "
                                    "write a commented party config and print the next steps (certificates, "
                                    "peers, serve, health).", epilog=epilog, formatter_class=fmt)
    c.add_argument("name", metavar="NAME", help="the party's name ([a-z0-9_-], also its certificate's name)")
    c.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to serve on")
    c.add_argument("--table", required=True, metavar="PATH", help="the party's table (CSV, CSV.gz or Parquet)")
    c.add_argument("--label", metavar="COL", help="label column (the label holder only)")
    c.add_argument("--pos-label", metavar="V", help="the label's event value (default: the label is 0/1)")
    c.add_argument("--id-column", default="id", metavar="COL", help="id column (default id)")
    c.add_argument("--table-name", default="credit", metavar="T", help="the name jobs use for it (default credit)")
    c.add_argument("--peer", action="append", metavar="NAME=HOST:PORT", help="a peer (repeatable)")
    c.add_argument("--out", metavar="PATH", help="config file or directory to write (default ./NAME.toml)")
    c.add_argument("--force", action="store_true", help="replace an existing config")
    c.set_defaults(func=cmd_init_party)
    c = isub.add_parser("federation", help="a CA, certificates and configs for a local trial in DIR",
                        description="Write certs/ (CA and one certificate per party), one config per party on "
                                    "127.0.0.1, and a starter job. Without --table, parties named bank, chain and "
                                    "gov get the credit3 tables shipped with fedcredit.",
                        epilog=epilog, formatter_class=fmt)
    c.add_argument("dir", metavar="DIR", help="directory to write (must not hold a federation already)")
    c.add_argument("--parties", required=True, metavar="A,B,C", help="comma-separated party names")
    c.add_argument("--table", action="append", metavar="NAME=PATH", help="a party's table (repeatable)")
    c.add_argument("--label", action="append", metavar="NAME=COL", help="the label holder's label column")
    c.add_argument("--base-port", type=int, default=7301, metavar="PORT",
                   help="party i listens on 127.0.0.1:PORT+i (default 7301)")
    c.set_defaults(func=cmd_init_federation)
