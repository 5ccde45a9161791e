"""``[party] log_format = "json"`` (issue #18 item 5): one JSON object per line with job, step and peer."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from fedcredit.config import load_party_config
from fedcredit.errors import ConfigError
from fedcredit.party.logfmt import JsonFormatter, set_step


def _record(msg, *args, **extra):
    r = logging.LogRecord("fedcredit.party", logging.INFO, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def test_json_lines_carry_job_step_peer_and_escape_everything():
    fmt = JsonFormatter("bank", peers=("chain", "gov"))
    out = {}

    def worker():
        set_step("psi")
        # a peer-chosen reason with a newline and a fake record must stay inside one line
        out["line"] = fmt.format(_record("could not report to chain: %s", "x\n2026-01-01 INFO forged"))

    t = threading.Thread(target=worker, name="bank-job-demo-20260101-000000-abcdef")
    t.start()
    t.join()
    line = out["line"]
    assert "\n" not in line
    d = json.loads(line)
    assert d["job"] == "demo-20260101-000000-abcdef" and d["step"] == "psi" and d["peer"] == "chain"
    assert d["message"].endswith("x\n2026-01-01 INFO forged") and d["party"] == "bank" and d["level"] == "INFO"
    d = json.loads(fmt.format(_record("hello", job_id="j1", peer="gov")))
    assert d["job"] == "j1" and d["peer"] == "gov" and "step" not in d
    assert "peer" not in json.loads(fmt.format(_record("chainsaw and government")))  # whole names only


def test_log_format_config(tmp_path):
    p = tmp_path / "p.toml"
    base = '[party]\nname = "bank"\nlisten = "127.0.0.1:0"\nstate_dir = "s"\ninsecure = true\n'
    p.write_text(base + 'log_format = "json"\n')
    assert load_party_config(p).log_format == "json"
    p.write_text(base)
    assert load_party_config(p).log_format == "text"
    p.write_text(base + 'log_format = "xml"\n')
    with pytest.raises(ConfigError, match=r"\[party\]\.log_format: must be \"text\" or \"json\""):
        load_party_config(p)
