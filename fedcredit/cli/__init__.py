"""The ``fedcredit`` command.

One module per command group (``certs``, ``init``, ``party``, ``run``/``cancel``, ``jobs``,
``audit``, ``score``, ``model``, ``demo``), each with its ``cmd_*`` functions and an
``add_commands`` that registers its parsers; :mod:`.exit_codes` holds the exit codes and
:mod:`._console` what the commands print. The CLI is the top layer: nothing else in
fedcredit imports it (party processes are started as ``python -m fedcredit.cli``).

Every command returns an exit code from :class:`ExitCode` (each with its help
text, shown by ``fedcredit --help``). Errors are printed as one line
(``fedcredit: error: ...``); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from .. import __version__
from ..errors import ConfigError
from .exit_codes import EXIT_HELP, ExitCode, epilog, exit_code_for

__all__ = ["main", "build_parser", "ExitCode", "EXIT_HELP", "exit_code_for"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fedcredit`` with every command group registered."""
    from . import audit, certs, demo, init, jobs, model, party, run, score

    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="fedcredit",
        description="Privacy-preserving joint credit-risk modeling: run a party, submit jobs, verify the audit log.",
        epilog=epilog(),
        formatter_class=fmt,
    )
    p.add_argument("--version", action="version", version=f"fedcredit {__version__}")
    p.add_argument("--debug", action="store_true", help="print tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    kw = {"epilog": epilog(), "fmt": fmt}
    certs.add_commands(sub, **kw)
    init.add_commands(sub, **kw)
    party.add_commands(sub, **kw)  # serve, health, revoke, admit, reload
    run.add_run_command(sub, **kw)
    jobs.add_commands(sub, **kw)  # list, resume, pending, approve, reject
    run.add_cancel_command(sub, **kw)
    audit.add_commands(sub, **kw)
    score.add_commands(sub, **kw)
    model.add_commands(sub, **kw)  # approve-export, export
    demo.add_commands(sub, **kw)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``fedcredit`` command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        from ..party import register_plugin_steps

        register_plugin_steps()
        return int(args.func(args))
    except KeyboardInterrupt:
        print("fedcredit: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BaseException as exc:  # noqa: BLE001 - mapped to an exit code
        code = exit_code_for(exc)
        if args.debug or code == ExitCode.INTERNAL:
            traceback.print_exc()
        msg = str(exc)
        if isinstance(exc, ConfigError) and len(exc.problems) > 1:
            msg = f"{len(exc.problems)} problems:\n  " + "\n  ".join(exc.problems)
        print(f"fedcredit: error: {msg}", file=sys.stderr)
        return code
