"""CLI: --help for every command, exit codes enumerated with help, config errors -> exit code 3, demo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fedcredit.cli import EXIT_HELP, ExitCode, exit_code_for, main
from fedcredit.errors import ConfigError, DataError, FedcreditError, PeerError, PolicyError

from conftest import DATA, data_path

COMMANDS = [
    [], ["certs"], ["certs", "init"], ["certs", "issue"], ["party"], ["party", "serve"], ["party", "health"],
    ["run"], ["jobs"], ["jobs", "list"], ["cancel"], ["audit"], ["audit", "verify"], ["demo"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "fedcredit")
def test_help_for_every_command(cmd, capsys):
    assert main([*cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fedcredit")
    assert "exit codes:" in out and "3  a config or job file is invalid" in out


def test_every_exit_code_has_help_text_and_unique_value():
    assert set(EXIT_HELP) == set(ExitCode)
    assert all(text.strip() for text in EXIT_HELP.values())
    assert len({int(c) for c in ExitCode}) == len(ExitCode)


@pytest.mark.parametrize(
    "exc, code",
    [
        (ConfigError("x"), ExitCode.CONFIG), (DataError("x"), ExitCode.DATA), (PeerError("x"), ExitCode.UNREACHABLE),
        (PolicyError("x"), ExitCode.REFUSED), (FedcreditError("x"), ExitCode.JOB_FAILED),
        (RuntimeError("x"), ExitCode.INTERNAL), (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    ],
)
def test_error_mapping(exc, code):
    assert exit_code_for(exc) == code


def test_usage_error_is_2(capsys):
    assert main(["run"]) == ExitCode.USAGE
    assert main(["frobnicate"]) == ExitCode.USAGE


def test_config_error_exit_code_and_one_line_per_problem(tmp_path, capsys):
    bad = tmp_path / "bank.toml"
    bad.write_text('[party]\nname = "bank"\nlisten = "nowhere"\nstate_dir = "s"\nbogus = 1\n')
    assert main(["party", "serve", str(bad)]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{bad}: [party].listen" in err and f"{bad}: [party].bogus: unknown key" in err and f"{bad}: [tls]" in err
    assert main(["--debug", "party", "health", str(tmp_path / "none.toml")]) == ExitCode.CONFIG
    assert "Traceback" in capsys.readouterr().err
    job = tmp_path / "job.toml"
    job.write_text('[job]\nname = "x"\n[parties.bank]\nrole = "boss"\n')
    assert main(["run", str(job), "--party", str(bad)]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert f"{job}: [parties.bank].role: unknown role 'boss'" in err


def test_certs_and_audit_commands(tmp_path, capsys):
    d = tmp_path / "certs"
    assert main(["certs", "init", str(d)]) == ExitCode.OK
    assert main(["certs", "issue", str(d), "bank", "--host", "10.0.0.5"]) == ExitCode.OK
    assert (d / "bank.crt").exists() and (d / "bank.key").stat().st_mode & 0o077 == 0
    assert main(["certs", "init", str(d)]) == ExitCode.CONFIG  # refuses to replace a CA
    assert main(["certs", "issue", str(d), "Not A Name"]) == ExitCode.CONFIG
    from fedcredit.audit import AuditLog

    log = AuditLog(tmp_path / "audit.log")
    log.append("x", n=1)
    log.append("y", n=2)
    assert main(["audit", "verify", "--log", str(log.path)]) == ExitCode.OK
    seq, h = log.head()
    assert main(["audit", "verify", "--log", str(log.path), "--head", f"{seq + 1}:{h}"]) == ExitCode.AUDIT_BROKEN
    assert main(["audit", "verify", "--log", str(log.path), "--head", "nonsense"]) == ExitCode.CONFIG


def test_party_health_unreachable(tmp_path, capsys):
    from fedcredit.launcher import write_federation, free_ports

    data_path("credit3", "bank.csv")
    configs = write_federation(tmp_path, DATA)
    assert main(["party", "health", str(configs["bank"]), "--timeout", "0.5"]) == ExitCode.UNREACHABLE
    assert main(["party", "health", str(configs["bank"]), "--peer", "nobody"]) == ExitCode.CONFIG


# the end-to-end demo run (--quick --json) is in tests/test_demo.py


def test_demo_without_data_is_a_clear_config_error(tmp_path, capsys):
    assert main(["demo", "--data", str(tmp_path)]) == ExitCode.CONFIG
    assert "demo data not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- the cli/ package's shape (issue #19)

def _command_paths(parser, prefix=()):
    """Every command path of ``parser`` (``("jobs", "pending")``, ...), from its registered subparsers."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _command_paths(sub, (*prefix, name))


def test_help_for_every_registered_command(capsys):
    """Every command group module registers its parsers; each (sub)command's --help works and ends with the codes."""
    from fedcredit.cli import build_parser

    paths = list(_command_paths(build_parser()))
    names = {" ".join(p) for p in paths}
    assert {"score", "model export", "party revoke", "party admit", "party reload", "jobs pending", "jobs approve",
            "init federation", "demo"} <= names  # the groups that used to live in serving/ and party/
    for path in paths:
        assert main([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert out.startswith("usage: fedcredit") and "exit codes:" in out, path


def _imports(path):
    """Absolute module names ``path`` imports (relative imports resolved against its package)."""
    import ast
    from pathlib import Path

    import fedcredit

    root = Path(fedcredit.__file__).parent
    rel = path.relative_to(root.parent).with_suffix("")
    pkg = list(rel.parts[:-1])  # a module's package; for __init__.py the package itself
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def test_nothing_below_the_cli_imports_it():
    """The CLI is the top layer: party, api, the launcher and the demo's helpers import no fedcredit.cli (not even
    lazily inside a function), and the launcher, baselines, progress and operator modules import neither the CLI nor
    the API (the API imports them)."""
    from pathlib import Path

    import fedcredit

    root = Path(fedcredit.__file__).parent
    bad = []
    for f in sorted(root.rglob("*.py")):
        if root / "cli" in f.parents:
            continue
        mods = _imports(f)
        if any(m == "fedcredit.cli" or m.startswith("fedcredit.cli.") for m in mods):
            bad.append(f"{f.relative_to(root)} imports fedcredit.cli")
        if f.stem in ("launcher", "baselines", "progress", "operator") and f.parent == root:
            bad += [f"{f.name} imports {m}" for m in mods if m in ("fedcredit.api", "fedcredit.demo")]
    assert not bad, bad
    assert not (root / "serving" / "commands.py").exists() and not (root / "party" / "commands.py").exists()


def test_low_layers_do_not_pull_in_the_api():
    """fedcredit/__init__.py exports the API lazily: importing a low layer does not import fedcredit.api (no circle
    through the package __init__), and the top-level names still resolve."""
    code = ("import sys, fedcredit.errors, fedcredit.data, fedcredit.launcher\n"
            "assert 'fedcredit.api' not in sys.modules and 'fedcredit.cli' not in sys.modules, sorted(sys.modules)\n"
            "import fedcredit\n"
            "from fedcredit import psi, local_federation\n"
            "assert fedcredit.secureboost is sys.modules['fedcredit.api'].secureboost and callable(psi)\n"
            "ns = {}\nexec('from fedcredit import *', ns)\n"
            "assert {'local_federation', 'datasets', 'fedavg'} <= set(ns)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


class _FakeControl:
    """A ControlClient stand-in: ``watch`` yields two events, then the user presses Ctrl-C."""

    def __init__(self):
        self.cancelled = []

    def watch(self, job_id):
        yield {"party": "bank", "kind": "step", "state": "running", "step": "psi", "message": "",
               "detail": {"kind": "psi"}}
        yield {"party": "chain", "kind": "state", "state": "running", "step": "", "message": ""}
        raise KeyboardInterrupt

    def cancel(self, job_id, reason):
        self.cancelled.append((job_id, reason))
        return "cancelled"


def test_run_watch_prefixes_steps_and_cancels_on_ctrl_c():
    import io

    from fedcredit.cli.run import watch
    from fedcredit.progress import EventDisplay

    client, buf = _FakeControl(), io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        watch(client, "job-1", EventDisplay(buf), prefix="lr")
    assert "[bank] step lr/psi (psi) started" in buf.getvalue() and "[chain] job running" in buf.getvalue()
    assert client.cancelled == [("job-1", "interrupted from the command line")]


def test_demo_follows_jobs_with_runs_watch(tmp_path):
    """The demo has no watch loop of its own: following a job is fedcredit run's (Ctrl-C cancels the job)."""
    import io

    from fedcredit.cli import demo
    from fedcredit.progress import EventDisplay

    client, buf = _FakeControl(), io.StringIO()
    job = next(j for j in demo.DEMO_JOBS if j.name == "lr")
    with pytest.raises(KeyboardInterrupt):
        demo._follow_job(client, tmp_path, tmp_path, job, "job-2", [], 0.0, EventDisplay(buf))
    assert "step lr/psi" in buf.getvalue() and client.cancelled == [("job-2", "interrupted from the command line")]
