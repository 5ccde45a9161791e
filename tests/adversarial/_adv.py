"""Shared pieces of the adversarial suite: a real three-party federation and raw gRPC clients.

The federation is three ``fedcredit party serve`` processes (bank = guest and
the only proposer, chain and gov = hosts) on 127.0.0.1 with mutual TLS, plus
certificates from the same CA for an unlisted ``mallory``. Raw clients are
built from the generated stubs in ``fedcredit._proto`` with a chosen party's
certificate, so a test can say anything a hostile peer could say.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

import grpc
import pytest

from fedcredit.certs import issue, tls_server_name
from fedcredit.config import load_party_config
from fedcredit.launcher import Federation, write_federation, write_job
from fedcredit.party import PLUGIN_ENV, register_plugin_steps

HERE = Path(__file__).resolve().parent
from conftest import DATA  # noqa: E402 - the packaged data sets (or $FEDCREDIT_DATA)
PLUGINS = "adv_wait=_adv_steps:wait,adv_garbage=_adv_steps:garbage,adv_wrongtype=_adv_steps:wrong_type"
KINDS = ["handshake", "psi", "adv_wait", "adv_garbage", "adv_wrongtype"]


def start_federation(root: Path) -> Federation:
    if not (DATA / "credit3" / "bank.csv").exists():
        pytest.fail(f"credit3 data missing under {DATA}")  # in CI missing data is a failure, not a skip
    os.environ[PLUGIN_ENV] = PLUGINS
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    register_plugin_steps(PLUGINS)
    configs = write_federation(
        root, DATA, policy={p: {"allowed_steps": KINDS, "min_intersection": 1} for p in ("bank", "chain", "gov")},
        transport={"deadline": 3.0, "recv_timeout": 20.0},
    )
    issue(root / "certs", "mallory")  # same CA, not in anyone's [peers]
    env = {PLUGIN_ENV: PLUGINS, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    fed = Federation(configs, env=env)
    fed.root = root
    fed.start(timeout=60)
    return fed


def stop_federation(fed: Federation) -> dict:
    return fed.stop()


def cfg(fed, party):
    return load_party_config(fed.configs[party])


def raw_channel(fed, as_party: str, to: str) -> grpc.Channel:
    """An mTLS channel to party ``to`` presenting ``as_party``'s certificate (any party, listed or not)."""
    certs = fed.root / "certs"
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.crt").read_bytes(),
        private_key=(certs / f"{as_party}.key").read_bytes(),
        certificate_chain=(certs / f"{as_party}.crt").read_bytes(),
    )
    addr = cfg(fed, to).connect_address
    return grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", tls_server_name(to))])


def code_of(fn, *args, **kw) -> grpc.StatusCode | None:
    """The status code of a raw call (None when it succeeded)."""
    try:
        fn(*args, **kw)
    except grpc.RpcError as exc:
        return exc.code()
    return None


def store_rows(fed, party: str, sql: str, args=()) -> list:
    db = sqlite3.connect(cfg(fed, party).state_dir / "party.sqlite")
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def job_file(fed, name: str, steps, parties=None) -> Path:
    return write_job(fed.root / f"{name}.toml", steps, name=name, parties=parties)


def wait_state(fed, party, job_id, states, timeout=20.0):
    end = time.monotonic() + timeout
    row = None
    while time.monotonic() < end:
        rows = store_rows(fed, party, "SELECT state, reason FROM jobs WHERE job_id = ?", (job_id,))
        row = rows[0] if rows else None
        if row and row[0] in states:
            return row
        time.sleep(0.1)
    raise AssertionError(f"{party}: job {job_id} is {row}, expected one of {states}")


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (to show nothing was written outside a state directory)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}
