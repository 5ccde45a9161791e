"""``fedcredit init``: a checked, commented party config; a local federation that ``party serve`` accepts."""

from __future__ import annotations

import os

import pytest

from conftest import ROOT
from fedcredit.cli import ExitCode, main
from fedcredit.config import load_job, load_party_config
from fedcredit.errors import ConfigError, DataError
from fedcredit.scaffold import init_federation, init_party, inspect_table


def _csv(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_init_federation_writes_configs_that_load(tmp_path, capsys):
    d = tmp_path / "fed"
    assert main(["init", "federation", str(d), "--parties", "bank,chain,gov"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"fedcredit party serve {d.as_posix()}/chain.toml" in out and "party health" in out and "fedcredit run" in out
    for p in ("bank", "chain", "gov"):
        cfg = load_party_config(d / f"{p}.toml")  # certificates and tables exist: what `party serve` checks
        assert cfg.name == p and cfg.tls is not None and cfg.tls.key.is_file()
        assert set(cfg.peers) == {"bank", "chain", "gov"} - {p} and cfg.policy.proposers == ("bank",)
        assert cfg.tables["credit"].path.is_file()
    assert load_party_config(d / "bank.toml").tables["credit"].label_column == "default_next_month"
    job = load_job(d / "job.toml")
    assert [s.kind for s in job.steps] == ["psi", "binning", "select", "secureboost"]
    assert job.roles == {"bank": "guest", "chain": "host", "gov": "host"}
    # a second run refuses to overwrite the CA (and every certificate it signed)
    assert main(["init", "federation", str(d), "--parties", "bank,chain"]) == ExitCode.CONFIG
    assert "already holds a federation" in capsys.readouterr().err


@pytest.mark.slow
def test_party_serve_accepts_a_generated_federation(tmp_path):
    from fedcredit.launcher import Federation, free_ports

    configs, _, _ = init_federation(tmp_path, ["bank", "chain"], base_port=free_ports(1)[0])
    fed = Federation(configs, env={"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    try:
        fed.start(timeout=60)  # both answer their health check over mTLS with the generated certificates
    finally:
        assert set(fed.stop().values()) <= {0}


def test_init_federation_with_own_tables(tmp_path):
    a = _csv(tmp_path / "a.csv", "id,bad,x\n1,0,3\n2,1,4\n")
    b = _csv(tmp_path / "b.csv", "id,z\n1,5\n3,6\n")
    configs, job, _ = init_federation(tmp_path / "f", ["lender", "shop", "arbiter1"],
                                      tables={"lender": a, "shop": b}, labels={"lender": "bad"})
    assert load_party_config(configs["lender"]).tables["credit"].label_column == "bad"
    assert "credit" not in load_party_config(configs["arbiter1"]).tables
    assert load_job(job).roles == {"lender": "guest", "shop": "host"}
    with pytest.raises(ConfigError, match="not in --parties"):
        init_federation(tmp_path / "g", ["lender"], tables={"shop": b})
    with pytest.raises(DataError, match=r"b\.csv: no column 'bad' \(the label column\)"):
        init_federation(tmp_path / "h", ["lender", "shop"], tables={"lender": b, "shop": b}, labels={"lender": "bad"})


def test_init_party_writes_a_commented_config_that_loads(tmp_path, capsys):
    t = _csv(tmp_path / "bank.csv", "cust,default,limit,region\nA1,bad,100,north\nA2,good,200,south\nA3,good,,north\n")
    out = tmp_path / "conf" / "bank.toml"
    rc = main(["init", "party", "bank", "--listen", "0.0.0.0:7301", "--table", str(t), "--id-column", "cust",
               "--label", "default", "--pos-label", "bad", "--peer", "chain=chain.example.org:7302", "--out", str(out)])
    assert rc == ExitCode.OK
    printed = capsys.readouterr().out
    for step in ("fedcredit certs issue CA_DIR bank", "[peers]", f"fedcredit party serve {out.as_posix()}",
                 f"fedcredit party health {out.as_posix()} --all"):
        assert step in printed
    assert "text (non-numeric) column(s) region" in printed and "values bad, good" in printed
    text = out.read_text()
    assert "# " in text.split("[tls]")[1].splitlines()[0]  # commented
    cfg = load_party_config(out, check_files=False)
    assert cfg.name == "bank" and cfg.listen == "0.0.0.0:7301" and dict(cfg.peers) == {"chain": "chain.example.org:7302"}
    tc = cfg.tables["credit"]
    assert tc.path == t.resolve() and tc.id_column == "cust" and tc.label_column == "default"
    assert cfg.policy.proposers == ("bank",)
    assert main(["init", "party", "bank", "--listen", "0.0.0.0:7301", "--table", str(t), "--id-column", "cust",
                 "--out", str(out)]) == ExitCode.CONFIG  # exists: --force to replace
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("header, args, match", [
    ("cid,x\n1,2\n", [], r"t\.csv: no column 'id' \(the id column\); the file has cid, x"),
    ("id,x\n1,2\n", ["--label", "y"], r"t\.csv: no column 'y' \(the label column\); the file has id, x"),
    ("id,y,x\n1,0,2\n2,2,3\n3,1,3\n", ["--label", "y"], r"t\.csv, column 'y': the label must have two values"),
    ("id,y,x\n1,good,2\n2,bad,3\n", ["--label", "y"], r"t\.csv, column 'y': the label is not 0/1 .*--pos-label"),
    ("id,y,x\n1,good,2\n2,bad,3\n", ["--label", "y", "--pos-label", "default"],
     r"t\.csv, column 'y': pos_label 'default' is not one of the label's values \(bad, good\)"),
    ("id,x\n", [], r"t\.csv: the table is empty"),
    ("id,x\n1,2,3\n", [], r"t\.csv, line 2: 3 fields, the header has 2"),
])
def test_a_bad_table_is_a_data_error_naming_file_and_column(tmp_path, capsys, header, args, match):
    t = _csv(tmp_path / "t.csv", header)
    rc = main(["init", "party", "p", "--listen", "127.0.0.1:7000", "--table", str(t), "--out", str(tmp_path / "p.toml"),
               *args])
    assert rc == ExitCode.DATA
    import re

    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "p.toml").exists()  # nothing written


def test_missing_table_and_bad_names(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file not found"):
        inspect_table(tmp_path / "nope.csv")
    t = _csv(tmp_path / "t.csv", "id,x\n1,2\n")
    with pytest.raises(ConfigError, match="invalid party name"):
        init_party("Bank!", listen="127.0.0.1:1", table=t, out=tmp_path / "x.toml")
    with pytest.raises(ConfigError):
        init_party("bank", listen="nowhere", table=t, out=tmp_path / "x.toml")


def test_inspect_reads_gzip_tables():
    from fedcredit.datasets import packaged_file

    info = inspect_table(packaged_file("credit3", "bank"), label_column="default_next_month")
    assert info.label_values == ("0", "1") and "pay_0" in info.numeric and not info.text
