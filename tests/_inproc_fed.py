"""In-process parties over real mTLS for tests that drive a party's own API (approvals, console, rotation).

:func:`running_parties` starts one :class:`~fedcredit.party.Party` per config in this process and stops
them at the end; :func:`submit` writes a job file and submits it to the bank; :func:`wait_for` polls a
condition with a deadline and says what it waited for when it times out.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager

from fedcredit.config import load_job, load_party_config
from fedcredit.launcher import write_job
from fedcredit.party import Party


@contextmanager
def running_parties(root, configs):
    """Yield ``(root, configs, {name: Party})`` with every party started; stopped afterwards."""
    parties = {n: Party(load_party_config(p)) for n, p in configs.items()}
    for p in parties.values():
        p.start()
    try:
        yield root, configs, parties
    finally:
        for p in parties.values():
            p.stop(grace=0.5)


def submit(fed, name: str, steps, *, parties, purpose: str = "credit-risk-model") -> str:
    """Write job ``name`` (``steps`` over ``parties``, with ``purpose``) and submit it to the bank; its job id."""
    root, _, running = fed
    job = write_job(root / f"{name}.toml", steps, name=name, parties=parties)
    job.write_text(re.sub(r'(?m)^purpose = .*$', f'purpose = "{purpose}"', job.read_text()))
    return running["bank"].submit_job("bank", load_job(job).to_json(), str(job))


def wait_for(pred, timeout: float = 30.0, what: str = "condition", interval: float = 0.05):
    """Poll ``pred`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
