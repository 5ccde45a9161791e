"""``fedcredit jobs list|resume|pending|approve|reject``: the jobs your party knows, and its approval queue.

``pending``/``approve``/``reject`` talk to the party's own Control service with the
party's own certificate (the operator: see ``transport/grpc/authz.py``); the party records
the decision with that identity.
"""

from __future__ import annotations

import json
import time

from ._common import load_party, own_client
from ._console import out
from .exit_codes import ExitCode
from .run import cmd_run

__all__ = ["add_commands", "cmd_jobs_list", "cmd_pending", "cmd_approve", "cmd_reject", "format_pending"]


def cmd_jobs_list(args) -> int:
    cfg = load_party(args.party)
    client, ch = own_client(cfg)
    try:
        rows = client.list_jobs(limit=args.limit)
    finally:
        ch.close()
    if args.json:
        out(json.dumps(rows, indent=2, default=str))
        return ExitCode.OK
    if not rows:
        out(f"no jobs on {cfg.name}")
        return ExitCode.OK
    out(f"{'job id':<40} {'role':<8} {'initiator':<10} {'state':<10} {'created':<19}  reason")
    for r in rows:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"]))
        out(f"{r['job_id']:<40} {r['role']:<8} {r['initiator']:<10} {r['state']:<10} {created:<19}  {r['reason'][:120]}")
    return ExitCode.OK


def format_pending(jobs: list[dict]) -> str:
    """The approval queue as text (one block per job)."""
    if not jobs:
        return "no jobs waiting for approval"
    lines = []
    for j in jobs:
        exp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(j.get("expires") or 0))
        lines.append(f"{j['job_id']}  proposed by {j['proposer']}  purpose {j['purpose'] or '-'!r}  expires {exp}")
        lines.append(f"  parties: {', '.join(f'{p} ({r})' for p, r in j['parties'].items())}")
        lines.append(f"  our table {j['table'] or '-'}; columns it would use: {', '.join(j['columns']) or '-'}")
        for s in j["steps"]:
            lines.append(f"  step {s['name']} ({s['kind']}) params {json.dumps(s['params'], sort_keys=True)}")
            for p, text in s["reveals"].items():
                lines.append(f"      {p} learns: {text}")
    return "\n".join(lines)


def cmd_pending(args) -> int:
    client, ch = own_client(load_party(args.party))
    try:
        jobs = client.pending_jobs()
    finally:
        ch.close()
    out(json.dumps(jobs, indent=2) if args.json else format_pending(jobs))
    return ExitCode.OK


def _decide(args, approve: bool) -> int:
    client, ch = own_client(load_party(args.party))
    try:
        out(client.decide(args.job_id, approve, args.reason or ""))
    finally:
        ch.close()
    return ExitCode.OK


def cmd_approve(args) -> int:
    return _decide(args, True)


def cmd_reject(args) -> int:
    return _decide(args, False)


def add_commands(sub, *, epilog: str, fmt) -> None:
    """Register ``jobs list|resume|pending|approve|reject``."""
    jobs = sub.add_parser("jobs", help="list jobs", description="Jobs known to your party.",
                          epilog=epilog, formatter_class=fmt)
    jsub = jobs.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND")
    jsub.required = True
    c = jsub.add_parser("list", help="list past and running jobs (newest first)",
                        description="List the jobs in your party's store (newest first), with state and reason.",
                        epilog=epilog, formatter_class=fmt)
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--limit", type=int, default=50, help="at most this many jobs (default 50; 0: all)")
    c.add_argument("--json", action="store_true", help="print JSON (with decisions and per-step results)")
    c.set_defaults(func=cmd_jobs_list)
    c = jsub.add_parser("resume", help="continue a failed or interrupted job on every party and follow it",
                        description="Resume JOB_ID (a failed or cancelled job your party initiated) on every party: "
                                    "each checks it is the same job, completed steps are recomputed and checked, "
                                    "training continues from the last tree/epoch/round every party finished. "
                                    "Same as 'fedcredit run --resume JOB_ID'.",
                        epilog=epilog, formatter_class=fmt)
    c.add_argument("resume", metavar="JOB_ID")
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--json", metavar="PATH", help="also write the final job record as JSON")
    c.add_argument("--detach", action="store_true", help="print the job id and return without following it")
    c.set_defaults(func=cmd_run, job=None)

    c = jsub.add_parser("pending", help="jobs waiting for your approval ([policy] approval = \"manual\")",
                        description="Proposals your party accepted by policy that wait for its operator: proposer, "
                                    "purpose, steps with parameters, the columns of your tables they would use, the "
                                    "parties, and what each step reveals to whom.", epilog=epilog, formatter_class=fmt)
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_pending)
    for name, func, help_ in (("approve", cmd_approve, "approve a pending job (it starts once every party approved)"),
                              ("reject", cmd_reject, "reject a pending job (it ends on every party with your reason)")):
        c = jsub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ". The decision, your "
                            "identity and the reason go into the audit log.", epilog=epilog, formatter_class=fmt)
        c.add_argument("job_id", metavar="JOB_ID")
        c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
        c.add_argument("--reason", required=name == "reject", default="", help="why (shown to every party)")
        c.set_defaults(func=func)
