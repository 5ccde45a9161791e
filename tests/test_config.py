"""Party and job config: every error class names file and key; all problems are reported together."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fedcredit.config import job_from_dict, load_job, load_party_config, parse_address
from fedcredit.errors import ConfigError

GOOD = """
[party]
name = "bank"
listen = "127.0.0.1:7301"
state_dir = "state"
[tls]
ca = "ca.crt"
cert = "bank.crt"
key = "bank.key"
[peers]
chain = "127.0.0.1:7302"
gov = "localhost:7303"
[tables.credit]
path = "bank.csv"
label_column = "default_next_month"
[policy]
proposers = ["bank"]
allowed_steps = ["handshake"]
min_intersection = 50
[policy.columns]
chain = ["limit_bal"]
"*" = ["*"]
[transport]
deadline = 5
[compute]
backend = "local"
"""


@pytest.fixture
def files(tmp_path):
    for f in ("ca.crt", "bank.crt", "bank.key", "bank.csv"):
        (tmp_path / f).write_text("x")
    return tmp_path


def write(d: Path, text: str, name: str = "bank.toml") -> Path:
    p = d / name
    p.write_text(textwrap.dedent(text))
    return p


def problems(path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_party_config(path)
    return info.value.problems


def test_good_config_loads_into_frozen_dataclasses(files):
    cfg = load_party_config(write(files, GOOD))
    assert cfg.name == "bank" and cfg.peers == {"chain": "127.0.0.1:7302", "gov": "localhost:7303"}
    assert cfg.state_dir == files / "state"  # relative to the config file
    assert cfg.tables["credit"].path == files / "bank.csv" and cfg.tables["credit"].id_column == "id"
    assert cfg.transport.deadline == 5.0 and isinstance(cfg.transport.deadline, float)
    assert (cfg.transport.peer_messages_per_second, cfg.transport.peer_burst, cfg.transport.peer_inflight) == (2000, 4000, 16)
    assert cfg.policy.columns_for("chain") == ("limit_bal",)
    assert cfg.policy.columns_for("gov") is None  # "*" = all
    with pytest.raises(AttributeError):
        cfg.name = "other"
    with pytest.raises(TypeError):
        cfg.peers["x"] = "y"
    assert "key" not in repr(cfg.tls).replace("key=<path hidden>", "")


@pytest.mark.parametrize(
    "edit, key, words",
    [
        (("[compute]", "[compute]\nflavour = 1"), "[compute].flavour", "unknown key"),
        (("[party]\nname = \"bank\"\n", "[party]\n"), "[party].name", "missing required key"),
        (("deadline = 5", "deadline = \"soon\""), "[transport].deadline", "must be a number, got string"),
        (("deadline = 5", "deadline = 5\npeer_inflight = 64"), "[transport].peer_inflight", "must be in 1..32"),
        (("deadline = 5", "deadline = 5\npeer_messages_per_second = 0"), "[transport].peer_messages_per_second",
         "must be positive"),
        (("min_intersection = 50", "min_intersection = true"), "[policy].min_intersection", "must be an integer, got boolean"),
        (('path = "bank.csv"', 'path = "nope.csv"'), "[tables.credit].path", "file not found"),
        (('ca = "ca.crt"', 'ca = "missing/ca.crt"'), "[tls].ca", "file not found"),
        (('chain = "127.0.0.1:7302"', 'chain = "127.0.0.1"'), "[peers].chain", "host:port"),
        (('chain = "127.0.0.1:7302"', 'chain = "127.0.0.1:70000"'), "[peers].chain", "outside 1..65535"),
        (('listen = "127.0.0.1:7301"', 'listen = "nowhere"'), "[party].listen", "host:port"),
        (('name = "bank"', 'name = "Bank!"'), "[party].name", "party name"),
        (('proposers = ["bank"]', 'proposers = ["mallory"]'), "[policy].proposers[0]", "not this party"),
        (('backend = "local"', 'backend = "ray"'), "[compute].backend", "unknown backend"),
        (('chain = ["limit_bal"]', 'chain = "limit_bal"'), "[policy.columns].chain", "must be an array"),
    ],
)
def test_each_error_class_names_file_and_key(files, edit, key, words):
    old, new = edit
    assert old in GOOD
    path = write(files, GOOD.replace(old, new, 1))
    probs = problems(path)
    assert len(probs) == 1, probs
    assert probs[0].startswith(f"{path}: {key}: "), probs[0]
    assert words in probs[0]


def test_many_errors_reported_together(files):
    text = (GOOD.replace("[compute]", "[compute]\nflavour = 1")
            .replace('chain = "127.0.0.1:7302"', 'chain = 7302')
            .replace('path = "bank.csv"', 'path = "nope.csv"')
            .replace("deadline = 5", "deadline = -1"))
    path = write(files, text)
    with pytest.raises(ConfigError) as info:
        load_party_config(path)
    assert len(info.value.problems) == 4
    msg = str(info.value)
    assert msg.startswith(f"4 problems in {path}")
    for key in ("[compute].flavour", "[peers].chain", "[tables.credit].path", "[transport].deadline"):
        assert key in msg


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_party_config(tmp_path / "none.toml")
    p = write(tmp_path, "[party\nname=")
    with pytest.raises(ConfigError, match=r"invalid TOML"):
        load_party_config(p)
    p = write(tmp_path, "[party]\nname = \"bank\"\nlisten = \"127.0.0.1:1\"\nstate_dir = \"s\"\n")
    with pytest.raises(ConfigError, match=r"\[tls\]: missing table: mutual TLS is required"):
        load_party_config(p)


def test_insecure_party_needs_no_tls(tmp_path):
    p = write(tmp_path, "[party]\nname = \"bank\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"s\"\ninsecure = true\n")
    cfg = load_party_config(p)
    assert cfg.tls is None and cfg.insecure and cfg.connect_address == "127.0.0.1:0"


JOB = """
[job]
name = "demo"
[parties.bank]
role = "guest"
table = "credit"
[parties.chain]
role = "host"
table = "credit"
[[steps]]
kind = "handshake"
[[steps]]
kind = "homo"
name = "again"
params = { rounds = 2 }
"""


def test_job_loads_and_round_trips(tmp_path):
    job = load_job(write(tmp_path, JOB, "job.toml"))
    assert job.roles == {"bank": "guest", "chain": "host"}
    assert [s.name for s in job.steps] == ["handshake", "again"]
    assert job.steps[1].params["rounds"] == 2
    assert job.steps[1].typed_params.rounds == 2  # typed, defaults applied
    again = job_from_dict(__import__("json").loads(job.to_json()))
    assert again.to_json() == job.to_json()


@pytest.mark.parametrize(
    "old, new, key, words",
    [
        ('role = "host"', 'role = "spy"', "[parties.chain].role", "unknown role 'spy'"),
        ('kind = "homo"\nname', 'kind = "teleport"\nname', "steps[1].kind", "unknown step kind"),
        ('name = "again"', 'name = "handshake"', "steps[1].name", "duplicate step name"),
        ('name = "demo"', 'name = "demo"\nowner = "x"', "[job].owner", "unknown key"),
        ('table = "credit"\n[parties.chain]', 'table = 3\n[parties.chain]', "[parties.bank].table", "must be a string"),
        ('role = "host"', 'role = "guest"', "[parties]", "at most one party may be the guest"),
    ],
)
def test_job_errors_name_file_and_key(tmp_path, old, new, key, words):
    assert old in JOB
    path = write(tmp_path, JOB.replace(old, new, 1), "job.toml")
    with pytest.raises(ConfigError) as info:
        load_job(path)
    assert any(p.startswith(f"{path}: {key}: ") and words in p for p in info.value.problems), info.value.problems


def test_job_missing_sections_all_reported(tmp_path):
    path = write(tmp_path, "[job]\nname = 'x'\n", "job.toml")
    with pytest.raises(ConfigError) as info:
        load_job(path)
    assert {p.split(": ")[1] for p in info.value.problems} == {"[parties]", "[steps]"}


@pytest.mark.parametrize("addr", ["127.0.0.1:1", "localhost:65535", "[::1]:7301", "0.0.0.0:0"])
def test_parse_address_ok(addr):
    parse_address(addr)


@pytest.mark.parametrize("addr", ["127.0.0.1", ":80", "host:port", "a:b:c", "[::1]", "h:-1", 7301])
def test_parse_address_bad(addr):
    with pytest.raises(ConfigError):
        parse_address(addr)
