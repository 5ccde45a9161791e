"""Class 5 of issue #15: two processes on one state directory (real processes).

Attacks:
1. a second ``party serve`` on a running party's config: refused at once with exit code 8 and a message
   naming the state directory; the first keeps serving and its audit log still verifies;
2. a second party with its *own* state directory on the running party's address: cannot bind (no SO_REUSEPORT);
3. after ``kill -9`` of the first process, a restart is not blocked by a stale lock;
4. in one process, a second :class:`Party` on the same state directory is refused too.
Before the fix, attack 1 started a second server on the same port (SO_REUSEPORT), both appended to
``audit.log`` and the chain broke.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fedcredit.audit import verify
from fedcredit.cli import ExitCode
from fedcredit.config import load_party_config
from fedcredit.launcher import write_federation
from fedcredit.errors import StateLocked
from fedcredit.party.lock import StateLock

from conftest import DATA, data_path


def _serve(config, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fedcredit.cli", "party", "serve", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ), **kw)


@pytest.fixture
def federation(tmp_path):
    data_path("credit3", "bank.csv")  # fails under CI=true when missing, skips elsewhere
    from fedcredit.launcher import Federation

    configs = write_federation(tmp_path, DATA)
    fed = Federation({"bank": configs["bank"]})
    fed.root = tmp_path
    fed.configs_all = configs
    try:
        fed.start(timeout=60)
        yield fed
    finally:
        fed.stop()


@pytest.mark.slow
def test_second_serve_on_same_state_dir_is_refused(federation):
    cfg = load_party_config(federation.configs["bank"])
    second = _serve(federation.configs["bank"], cwd=str(federation.configs["bank"].parent))
    out, _ = second.communicate(timeout=60)
    assert second.returncode == ExitCode.ALREADY_RUNNING, out
    assert "already running on state directory" in out and str(cfg.state_dir) in out, out
    federation.wait_healthy(["bank"], timeout=10)  # the first one still serves
    assert verify(cfg.state_dir / "audit.log")


@pytest.mark.slow
def test_second_party_cannot_share_the_port(federation, tmp_path):
    """Same address, another state directory: the bind fails instead of sharing the port (no SO_REUSEPORT)."""
    src = federation.configs["bank"].read_text()
    other = federation.configs["bank"].with_name("bank-copy.toml")
    other.write_text(src.replace('state_dir = "state/bank"', 'state_dir = "state/bank-copy"'))
    second = _serve(other, cwd=str(other.parent))
    out, _ = second.communicate(timeout=60)
    assert second.returncode == ExitCode.CONFIG, out
    assert "cannot listen" in out, out
    federation.wait_healthy(["bank"], timeout=10)


@pytest.mark.slow
def test_restart_after_kill_9_is_not_blocked(federation):
    cfg = load_party_config(federation.configs["bank"])
    federation.kill("bank")
    assert (cfg.state_dir / "party.lock").exists()  # stale file; the kernel dropped the lock with the process
    federation.start(["bank"], timeout=60)
    assert verify(cfg.state_dir / "audit.log")


def test_lock_in_one_process(tmp_path):
    first = StateLock(tmp_path)
    with pytest.raises(StateLocked, match=f"pid {os.getpid()}"):
        StateLock(tmp_path)
    first.release()
    again = StateLock(tmp_path)
    assert again.held
    again.release()
