"""Operator commands for the approval queue and certificate reload.

``fedcredit jobs pending|approve ID|reject ID --reason`` talk to the party's
own Control service with the party's own certificate (the operator: see
``transport/grpc/authz.py``); the party records the decision with that identity.
"""

from __future__ import annotations

import json
import time

__all__ = ["add_commands", "format_pending"]


def _client(args):
    from ..cli import _load_party, _own_client

    cfg = _load_party(args.party)
    return cfg, *_own_client(cfg)


def format_pending(jobs: list[dict]) -> str:
    """The approval queue as text (one block per job)."""
    if not jobs:
        return "no jobs waiting for approval"
    out = []
    for j in jobs:
        exp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(j.get("expires") or 0))
        out.append(f"{j['job_id']}  proposed by {j['proposer']}  purpose {j['purpose'] or '-'!r}  expires {exp}")
        out.append(f"  parties: {', '.join(f'{p} ({r})' for p, r in j['parties'].items())}")
        out.append(f"  our table {j['table'] or '-'}; columns it would use: {', '.join(j['columns']) or '-'}")
        for s in j["steps"]:
            out.append(f"  step {s['name']} ({s['kind']}) params {json.dumps(s['params'], sort_keys=True)}")
            for p, text in s["reveals"].items():
                out.append(f"      {p} learns: {text}")
    return "\n".join(out)


def cmd_pending(args) -> int:
    cfg, client, ch = _client(args)
    try:
        jobs = client.pending_jobs()
    finally:
        ch.close()
    print(json.dumps(jobs, indent=2) if args.json else format_pending(jobs), flush=True)
    return 0


def _decide(args, approve: bool) -> int:
    cfg, client, ch = _client(args)
    try:
        print(client.decide(args.job_id, approve, args.reason or ""), flush=True)
    finally:
        ch.close()
    return 0


def cmd_approve(args) -> int:
    return _decide(args, True)


def cmd_reject(args) -> int:
    return _decide(args, False)


def add_commands(jsub, *, epilog: str, fmt) -> None:
    """Register ``jobs pending``, ``jobs approve`` and ``jobs reject``."""
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
