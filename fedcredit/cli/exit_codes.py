"""Exit codes of ``fedcredit``, each with the help text ``--help`` shows, and the error -> code mapping."""

from __future__ import annotations

import enum

from ..errors import ConfigError, DataError, FedcreditError, PeerError, PolicyError, StateLocked

__all__ = ["ExitCode", "EXIT_HELP", "exit_code_for", "epilog"]


class ExitCode(enum.IntEnum):
    """Exit codes of ``fedcredit``; :data:`EXIT_HELP` explains each."""

    OK = 0
    JOB_FAILED = 1
    USAGE = 2
    CONFIG = 3
    DATA = 4
    UNREACHABLE = 5
    REFUSED = 6
    AUDIT_BROKEN = 7
    ALREADY_RUNNING = 8
    INTERNAL = 70
    INTERRUPTED = 130


EXIT_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "success (the job succeeded, the check passed)",
    ExitCode.JOB_FAILED: "the job failed or was cancelled (the reason is printed)",
    ExitCode.USAGE: "bad command line (see --help)",
    ExitCode.CONFIG: "a config or job file is invalid (every problem is listed with file and key)",
    ExitCode.DATA: "a data file is unusable (the file and column are named), or a job failed on a party's data",
    ExitCode.UNREACHABLE: "the party or a peer is unreachable or not serving",
    ExitCode.REFUSED: "refused by a party's policy or certificate check (the reason is printed)",
    ExitCode.AUDIT_BROKEN: "the audit log's hash chain is broken (the first bad line is printed)",
    ExitCode.ALREADY_RUNNING: "another process already runs a party on this state directory (party serve)",
    ExitCode.INTERNAL: "internal error (a bug: rerun with --debug and report the traceback)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code an exception maps to."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, StateLocked):
        return ExitCode.ALREADY_RUNNING
    if isinstance(exc, ConfigError):
        return ExitCode.CONFIG
    if isinstance(exc, DataError):
        return ExitCode.DATA
    if isinstance(exc, PeerError):
        return ExitCode.UNREACHABLE
    if isinstance(exc, PolicyError):
        return ExitCode.REFUSED
    if isinstance(exc, FedcreditError):
        return ExitCode.JOB_FAILED
    return ExitCode.INTERNAL


def epilog() -> str:
    """The ``exit codes:`` block every command's ``--help`` ends with."""
    return "exit codes:\n" + "\n".join(f"  {int(c):>3}  {EXIT_HELP[c]}" for c in ExitCode)
