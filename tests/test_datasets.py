"""The data sets shipped inside the package: loaders, CSV export, the categorical variant, the lookups."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import fedcredit.datasets as ds
from fedcredit.data import load_table
from fedcredit.errors import ConfigError, DataError


def test_every_packaged_file_is_there_and_small():
    files = sorted(ds._HERE.glob("*/*.csv.gz"))
    assert len(files) == 9
    assert sum(f.stat().st_size for f in files) < 6 * 2**20
    assert "CC BY 4.0" in (ds._HERE / "README.md").read_text() and "Apache" in (ds._HERE / "README.md").read_text()


def test_loaders_return_per_party_tables():
    c3 = ds.load_credit3()
    assert {k: v.shape for k, v in c3.items()} == {"bank": (28000, 9), "chain": (31000, 13), "gov": (29895, 5)}
    common = set(c3["bank"]["id"]) & set(c3["chain"]["id"]) & set(c3["gov"]["id"])
    assert len(common) == 24641 and isinstance(c3["bank"]["id"].iloc[0], str)
    dc = ds.load_default_credit()
    assert list(dc) == ["guest", "host"] and dc["guest"].shape == (30000, 15) and dc["host"].shape == (30000, 11)
    hb = ds.load_homo_banks()
    assert {k: len(v) for k, v in hb.items()} == {"bank1": 8000, "bank2": 8000, "bank3": 8000, "test": 6000}


def test_structured_arrays_without_pandas():
    bank = ds.load_credit3(as_frame=False)["bank"]
    assert isinstance(bank, np.ndarray) and bank.dtype.names[:2] == ("id", "default_next_month")
    assert bank["id"].dtype.kind == "U" and bank["default_next_month"].dtype == np.int64 and len(bank) == 28000
    gov = ds.load_credit3_categorical(as_frame=False)["gov"]
    assert gov["education"].dtype.kind == "U" and gov["age"].dtype == np.int64


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="unknown data set 'nope'"):
        ds.load("nope")
    with pytest.raises(ConfigError, match="has no party 'x'"):
        ds.load("credit3", parties=["x"])


def test_categorical_variant_is_deterministic_text_shuffled_and_partial():
    a = ds.load_credit3_categorical()
    b = ds.load_credit3_categorical()
    raw = ds.load_credit3()
    for p in a:
        assert a[p].equals(b[p])
    assert set(a["bank"]["default_next_month"]) == {"default", "repaid"}
    assert set(a["gov"]["sex"]) == {"male", "female"}
    assert set(a["gov"]["education"]) == {"graduate school", "university", "high school", "others"}
    assert set(a["gov"]["marriage"]) == {"married", "single", "others"}
    for p in ("bank", "chain", "gov"):  # each party has its own row order
        assert list(a[p]["id"][:50]) != list(raw[p]["id"][:50])
    assert list(a["bank"]["id"][:50]) != list(a["chain"]["id"][:50])
    assert len(a["gov"]) == round(ds.CATEGORICAL_GOV_COVERAGE * len(raw["gov"]))
    assert len(a["bank"]) == len(raw["bank"]) and len(a["chain"]) == len(raw["chain"])
    # the same customers keep their values: the label and the codes map one to one
    m = a["bank"].merge(raw["bank"], on="id", suffixes=("", "_raw"))
    assert ((m["default_next_month"] == "default") == (m["default_next_month_raw"] == 1)).all()
    g = a["gov"].merge(raw["gov"], on="id", suffixes=("", "_raw"))
    assert ((g["sex"] == "male") == (g["sex_raw"] == 1)).all()
    assert ((g["education"] == "university") == (g["education_raw"] == 2)).all()


def test_write_csv_then_load_table(tmp_path):
    out = ds.write_csv(tmp_path, ["credit3", "credit3_categorical"])
    assert out["credit3"]["bank"] == tmp_path / "credit3" / "bank.csv"
    with gzip.open(ds.packaged_file("credit3", "gov"), "rb") as f:
        assert out["credit3"]["gov"].read_bytes() == f.read()  # byte-identical to the reference copy
    t = load_table(out["credit3"]["bank"], party="bank", label_column="default_next_month")
    assert len(t) == 28000 and t.y.mean() == pytest.approx(0.22, abs=0.01)
    assert out["credit3_categorical"]["gov"].read_text().splitlines()[0] == "id,sex,education,marriage,age"


def test_load_table_reads_gzip_csv(tmp_path):
    gz = ds.packaged_file("credit3", "bank")
    t = load_table(gz, party="bank", label_column="default_next_month")
    plain = ds.write_csv(tmp_path, ["credit3"])["credit3"]["bank"]
    u = load_table(plain, party="bank", label_column="default_next_month")
    assert np.array_equal(t.ids, u.ids) and np.array_equal(t.X, u.X) and np.array_equal(t.y, u.y)
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="bad.csv.gz: unreadable gzip file"):
        load_table(bad, party="bank")


def test_data_dir_is_written_once_and_reused(tmp_path):
    d = ds.data_dir(tmp_path)
    assert (d / "credit3" / "bank.csv").is_file() and (d / "default_credit" / "homo_test.csv").is_file()
    assert (d / ".complete").is_file() and d.parent == tmp_path
    stamp = (d / "credit3" / "bank.csv").stat().st_mtime_ns
    assert ds.data_dir(tmp_path) == d and (d / "credit3" / "bank.csv").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [d.name]  # no temporary copies left behind


def test_demo_uses_the_packaged_data_by_default(tmp_path, monkeypatch):
    from fedcredit.launcher import find_data_dir

    monkeypatch.delenv("FEDCREDIT_DATA", raising=False)
    monkeypatch.setenv("FEDCREDIT_CACHE", str(tmp_path / "cache"))
    d = find_data_dir()
    assert d.parent == tmp_path / "cache" and (d / "credit3" / "gov.csv").is_file()
    monkeypatch.setenv("FEDCREDIT_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="demo data not found"):
        find_data_dir()
    assert find_data_dir(str(d)) == d.resolve()


def test_a_missing_data_set_fails_under_ci(monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "DATA", conftest.DATA / "nonexistent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="data set missing under CI"):
        conftest.data_path("credit3", "bank.csv")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        conftest.data_path("credit3", "bank.csv")


def test_the_wheel_ships_the_data():
    """``pip install fedcredit`` from a wheel must run the demo: package-data lists every packaged file."""
    import fnmatch

    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - 3.10
        import tomli as tomllib
    from conftest import ROOT

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["fedcredit"]
    pkg = ROOT / "fedcredit"
    shipped = [p.relative_to(pkg).as_posix() for p in (pkg / "datasets").rglob("*") if p.is_file()
               and p.suffix != ".py" and "__pycache__" not in p.parts]
    assert "datasets/README.md" in shipped and len(shipped) == 10
    assert all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in shipped)
