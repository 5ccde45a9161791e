"""``fedcredit run`` and ``fedcredit cancel``: submit a job to your own party, follow it, cancel it.

:func:`submit`, :func:`watch` and :func:`job_record` are also what ``fedcredit demo``
(:mod:`fedcredit.cli.demo`) runs its jobs with.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import ConfigError, FedcreditError
from ._common import load_party, own_client
from ._console import EventDisplay, out, print_headlines, print_steps
from .exit_codes import ExitCode

__all__ = ["add_run_command", "add_cancel_command", "cmd_run", "cmd_cancel", "submit", "watch", "job_record"]


def submit(client, spec, source) -> str:
    """Submit job ``spec`` (a :class:`~fedcredit.config.JobSpec`) through ``client``; returns the job id."""
    return client.submit(spec.to_json(), source=str(source))


def watch(client, job_id: str, disp: EventDisplay, *, prefix: str | None = None) -> None:
    """Show the job's events until it ends; Ctrl-C cancels it on every party, then re-raises.

    ``prefix`` is put before step names (``"<prefix>/<step>"``) when several jobs share one screen.
    """
    try:
        for e in client.watch(job_id):
            if prefix and e.get("step"):
                e = dict(e, step=f"{prefix}/{e['step']}")
            disp.event(e)
    except KeyboardInterrupt:
        disp.line(f"cancelling job {job_id} ...")
        client.cancel(job_id, "interrupted from the command line")
        raise


def job_record(client, job_id: str, party: str) -> dict:
    """The job's record in the party's store (state, reason, decisions, per-step results)."""
    rows = client.list_jobs(job_id=job_id)
    if not rows:
        raise FedcreditError(f"job {job_id} vanished from {party}")
    return rows[0]


def cmd_run(args) -> int:
    from ..config import load_job

    if (args.job is None) == (getattr(args, "resume", None) is None):
        raise ConfigError("give either a job file or --resume JOB_ID")
    job = load_job(args.job) if args.job is not None else None
    cfg = load_party(args.party)
    client, ch = own_client(cfg)
    disp = EventDisplay()
    try:
        if job is None:  # continue a failed or interrupted job on every party (docs/party.md, "Resume")
            job_id = client.resume(args.resume)
            disp.line(f"job {job_id} resumed on {cfg.name}")
        else:
            job_id = submit(client, job, args.job)
            disp.line(f"job {job_id} submitted to {cfg.name} ({len(job.parties)} parties, {len(job.steps)} steps)")
        if args.detach:
            out(job_id)
            return ExitCode.OK
        t0 = time.time()
        try:
            watch(client, job_id, disp)
        except KeyboardInterrupt:
            return ExitCode.INTERRUPTED
        row = job_record(client, job_id, cfg.name)
        state, reason = row["state"], row["reason"]
        print_steps(row, disp)
        print_headlines(row, disp)
        disp.line(f"report: {cfg.state_dir / 'jobs' / job_id / 'report.json'}")
        disp.line(f"job {job_id} {state} after {time.time() - t0:.1f}s" + (f": {reason}" if reason else ""))
        if args.json:
            Path(args.json).write_text(json.dumps(row, indent=2, default=str), encoding="utf-8")
        if state == "succeeded":
            return ExitCode.OK
        if state == "failed" and ("(TableError)" in reason or "DataError" in reason):
            return ExitCode.DATA  # a party's data failed inside the job (its own log has the details)
        return ExitCode.REFUSED if state == "refused" else ExitCode.JOB_FAILED
    finally:
        ch.close()


def cmd_cancel(args) -> int:
    cfg = load_party(args.party)
    client, ch = own_client(cfg)
    try:
        out(client.cancel(args.job_id, args.reason or ""))
    finally:
        ch.close()
    return ExitCode.OK


def add_run_command(sub, *, epilog: str, fmt) -> None:
    """Register ``run``."""
    c = sub.add_parser("run", help="submit a job to your own party and follow it",
                       description="Submit JOB to the party of --party (the initiator), which proposes it to every "
                                   "party of the job; follow decisions and progress until it ends. The exit code "
                                   "reflects the outcome. Ctrl-C cancels the job.", epilog=epilog, formatter_class=fmt)
    c.add_argument("job", metavar="JOB", nargs="?", help="job TOML (e.g. jobs/demo.toml)")
    c.add_argument("--resume", metavar="JOB_ID",
                   help="instead of a job file: continue this failed or interrupted job (your party initiated it)")
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--json", metavar="PATH", help="also write the final job record as JSON")
    c.add_argument("--detach", action="store_true", help="print the job id and return without following it")
    c.set_defaults(func=cmd_run)


def add_cancel_command(sub, *, epilog: str, fmt) -> None:
    """Register ``cancel``."""
    c = sub.add_parser("cancel", help="cancel a job",
                       description="Cancel JOB_ID on your party. On the initiator this ends the job on every party; "
                                   "elsewhere it ends this party's part, which fails the job.",
                       epilog=epilog, formatter_class=fmt)
    c.add_argument("job_id", metavar="JOB_ID")
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--reason", default="", help="reason recorded in the audit log and shown to the parties")
    c.set_defaults(func=cmd_cancel)
