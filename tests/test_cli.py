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
