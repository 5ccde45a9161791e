"""Command-line commands of the serving side (registered by :mod:`fedcredit.cli`).

``fedcredit score``, ``fedcredit party revoke|admit|reload``, ``fedcredit model
approve-export|export``. Each talks to the operator's own party over mTLS with
the party's own certificate (the party sees "its operator"). Errors are
fedcredit errors; ``fedcredit.cli`` maps them to exit codes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["add_commands", "score_file", "own_channel", "held_heads_summary"]


def own_channel(cfg):
    """An mTLS channel to this party's own port, as its operator."""
    from ..certs import TlsFiles
    from ..transport.control import dial

    tls = TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
    return dial(cfg.connect_address, target=cfg.name, tls=tls, me=cfg.name)


UNKNOWN_RULES = ("flag", "refuse", "score-as-missing")


def score_file(cfg, model_id: str, input_path, out_path, *, consent: str, purpose: str, id_column: str = "id",
               batch: int = 10_000, timeout: float = 120.0, unknown: str = "flag") -> int:
    """Score every row of ``input_path`` (an id column, optionally the bank's own feature columns); returns the count.

    Writes ``id,score,held_by,status`` rows to ``out_path`` in input order:
    ``held_by`` names this party when it holds the applicant (hosts do not
    say whether they hold one: that would tell the bank who a platform's
    customers are), ``status`` is ``scored``, ``flagged`` (scored, but not a
    customer of this party: its own features were all missing) or
    ``refused`` (``unknown="refuse"``: not sent to any host, no score).
    """
    if unknown not in UNKNOWN_RULES:
        raise ConfigError(f"--unknown must be one of {', '.join(UNKNOWN_RULES)}, got {unknown!r}")
    from ..data import load_table
    from ..transport.scoring import ScoringClient

    table = load_table(input_path, party=cfg.name, id_column=id_column)  # errors name the file, line and column
    ids = [str(i) for i in table.ids]
    feats = list(table.columns)
    X = table.X if feats else None
    ch = own_channel(cfg)
    scores, helds = [], []
    try:
        client = ScoringClient(ch, cfg.name, timeout=timeout)
        for k in range(0, len(ids), batch):
            s, _, held = client.score(model_id, ids[k:k + batch], consent_id=consent, purpose=purpose,
                                      guest_X=None if X is None else X[k:k + batch], feature_names=feats,
                                      unknown=unknown)
            scores.append(s)
            helds.append(held)
    finally:
        ch.close()
    values = np.concatenate(scores) if scores else np.empty(0)
    held = np.concatenate(helds) if helds else np.empty(0, dtype=bool)
    with Path(out_path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([id_column, "score", "held_by", "status"])
        w.writerows(_score_row(i, v, h, cfg.name, unknown) for i, v, h in zip(ids, values, held.tolist()))
    return len(ids)


def _score_row(i: str, v: float, held: bool, me: str, unknown: str) -> tuple:
    if held:
        return i, f"{v:.12g}", me, "scored"
    if unknown == "refuse":
        return i, "", "", "refused"
    return i, f"{v:.12g}", "", "flagged" if unknown == "flag" else "scored"


def held_heads_summary(cfg) -> tuple[list[tuple[int, str]], list[str]]:
    """Heads of this party's log held by its peers, and one line per peer for the operator."""
    from .heads import fetch_held_heads

    heads, lines = [], []
    for peer, res in fetch_held_heads(cfg).items():
        if isinstance(res, str):
            lines.append(f"  {peer}: could not ask ({res})")
        else:
            heads += res
            last = f", latest #{res[-1][0]}" if res else ""
            lines.append(f"  {peer}: holds {len(res)} head(s) of this log{last}")
    return heads, lines


# --------------------------------------------------------------------------- commands

def _cfg(path):
    from ..config import load_party_config

    return load_party_config(path)


def cmd_score(args) -> int:
    cfg = _cfg(args.party)
    if bool(args.input) == bool(args.id):
        raise ConfigError("give exactly one of --input CSV or --id ID")
    if args.id:
        from ..transport.scoring import ScoringClient

        ch = own_channel(cfg)
        try:
            s, rid, held = ScoringClient(ch, cfg.name, timeout=args.timeout).score(
                args.model, [args.id], consent_id=args.consent, purpose=args.purpose, unknown=args.unknown)
        finally:
            ch.close()
        print(",".join(_score_row(args.id, s[0], bool(held[0]), cfg.name, args.unknown)), flush=True)
        return 0
    if not args.out:
        raise ConfigError("--out is required with --input")
    n = score_file(cfg, args.model, args.input, args.out, consent=args.consent, purpose=args.purpose,
                   id_column=args.id_column, batch=args.batch, timeout=args.timeout, unknown=args.unknown)
    print(f"scored {n} applicant(s) with {args.model}: {args.out}", flush=True)
    return 0


def _gov(cfg):
    from ..transport.scoring import GovernanceClient

    ch = own_channel(cfg)
    return GovernanceClient(ch, cfg.name, timeout=60.0), ch


def _peer_access(args, action: str) -> int:
    """``party revoke|admit NAME``: ask this party's Governance service, print its answer."""
    g, ch = _gov(_cfg(args.party))
    try:
        print(getattr(g, action)(args.name, args.reason), flush=True)
    finally:
        ch.close()
    return 0


def cmd_revoke(args) -> int:
    return _peer_access(args, "revoke")


def cmd_admit(args) -> int:
    return _peer_access(args, "admit")


def cmd_reload(args) -> int:
    if bool(args.config) == bool(args.party) and not (args.config and args.config == args.party):
        raise ConfigError("give your party's config once: 'fedcredit party reload CONFIG' (or --party CONFIG)")
    cfg = _cfg(args.config or args.party)
    g, ch = _gov(cfg)
    try:
        print(g.reload(), flush=True)
    finally:
        ch.close()
    return 0


def cmd_approve_export(args) -> int:
    cfg = _cfg(args.party)
    g, ch = _gov(cfg)
    try:
        print(g.approve_export(args.model, args.requester, args.note), flush=True)
    finally:
        ch.close()
    return 0


def cmd_export(args) -> int:
    cfg = _cfg(args.party)
    g, ch = _gov(cfg)
    try:
        text = g.export(args.model, args.note)
    finally:
        ch.close()
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"merged model {args.model} written to {args.out}", flush=True)
    return 0


def add_commands(sub, party_sub, *, epilog: str, fmt) -> None:
    """Register ``score``, ``party revoke|admit|reload`` and ``model approve-export|export``."""
    c = sub.add_parser("score", help="federated scoring of new applicants",
                       description="Score applicants with model ID (<job_id>/<step>) through your own party (the "
                                   "model's guest): each host checks the authorization against its policy, logs the "
                                   "request and returns its part (LR: masked; trees: only its decisions on each "
                                   "applicant's path). --input CSV has an id column and, "
                                   "optionally, your own feature columns for the applicants (otherwise they are "
                                   "looked up in your table).", epilog=epilog, formatter_class=fmt)
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--model", required=True, metavar="ID", help="<job_id>/<step> of the training job")
    c.add_argument("--input", metavar="CSV", help="applicants")
    c.add_argument("--id", metavar="ID", help="score one applicant and print 'id,score'")
    c.add_argument("--out", metavar="CSV", help="where to write id,score")
    c.add_argument("--consent", required=True, metavar="REF", help="the enterprise's consent record id")
    c.add_argument("--purpose", required=True, help="purpose of the inquiry (checked against each party's policy)")
    c.add_argument("--id-column", default="id", help="id column of --input (default: id)")
    c.add_argument("--batch", type=int, default=10_000, help="applicants per request (default 10000)")
    c.add_argument("--unknown", choices=UNKNOWN_RULES, default="flag",
                   help="an applicant this party does not hold: flag it (default: scored, status 'flagged'), "
                        "refuse it (never sent to a host, no score) or score it as missing (status 'scored')")
    c.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
    c.set_defaults(func=cmd_score)

    c = party_sub.add_parser("revoke", help="refuse a peer from its next message on (no restart)",
                             description="Revoke peer NAME on your running party: its next message, scoring request "
                                         "or job is refused; persisted in <state_dir>/revoked.json and audited.",
                             epilog=epilog, formatter_class=fmt)
    c.add_argument("name", metavar="NAME")
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--reason", default="", help="recorded in the audit log")
    c.set_defaults(func=cmd_revoke)
    c = party_sub.add_parser("admit", help="re-admit a revoked peer (no restart)",
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
    c = party_sub.add_parser("reload", help="re-read [peers] and [policy.scoring] without a restart",
                             description="Your running party re-reads its config: a peer removed from [peers] is "
                                         "refused from its next message on; [policy.scoring] changes apply at once.",
                             epilog=epilog, formatter_class=fmt)
    c.add_argument("config", nargs="?", metavar="CONFIG", help="your party's config TOML (as for 'party health')")
    c.add_argument("--party", metavar="CONFIG", help="the same, as an option")
    c.set_defaults(func=cmd_reload)

    model = sub.add_parser("model", help="approve and export merged plaintext models",
                           description="Export a model as one plaintext file, only after every party's approval "
                                       "(each recorded in that party's audit log).", epilog=epilog, formatter_class=fmt)
    msub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    msub.required = True
    c = msub.add_parser("approve-export", help="approve releasing your part of a model to its guest",
                        epilog=epilog, formatter_class=fmt)
    c.add_argument("--party", required=True, metavar="CONFIG")
    c.add_argument("--model", required=True, metavar="ID")
    c.add_argument("--for", dest="requester", required=True, metavar="PARTY", help="the model's guest")
    c.add_argument("--note", default="", help="recorded in the audit log")
    c.set_defaults(func=cmd_approve_export)
    c = msub.add_parser("export", help="write the merged model (guest; needs every host's approval)",
                        epilog=epilog, formatter_class=fmt)
    c.add_argument("--party", required=True, metavar="CONFIG")
    c.add_argument("--model", required=True, metavar="ID")
    c.add_argument("--out", required=True, metavar="JSON")
    c.add_argument("--note", default="", help="recorded in the audit log")
    c.set_defaults(func=cmd_export)


