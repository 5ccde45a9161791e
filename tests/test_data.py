"""Table loading: shipped data, and a clear error naming file and column for each bad input."""

import numpy as np
import pytest

from conftest import data_path
from fedcredit.data import Table, load_table
from fedcredit.errors import DataError


def test_load_credit3_bank():
    t = load_table(data_path("credit3", "bank.csv"), party="bank", label_column="default_next_month")
    assert len(t) == 28000 and t.X.shape == (28000, 7)
    assert t.feature_names[0] == "bank.limit_bal"
    assert set(np.unique(t.y)) == {0, 1} and t.y.dtype == np.int8
    assert all(len(i) == 18 for i in t.ids[:100])


def test_feature_names_namespaced_by_party():
    g = load_table(data_path("default_credit", "hetero_guest.csv"), party="guest", label_column="y")
    h = load_table(data_path("default_credit", "hetero_host.csv"), party="host")
    assert "x0" in g.columns and "x0" in h.columns
    assert not set(g.feature_names) & set(h.feature_names)


def _write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_missing_values_become_nan(tmp_path):
    p = _write(tmp_path, "id,a,b\n x1 ,1,\n2,NA,3.5\n")
    t = load_table(p, party="p")
    assert list(t.ids) == ["x1", "2"]
    assert np.isnan(t.X[0, 1]) and np.isnan(t.X[1, 0]) and t.X[1, 1] == 3.5


@pytest.mark.parametrize(
    "text, kwargs, match",
    [
        ("id,a\n1,2\n", {"id_column": "key"}, r"t\.csv: missing column\(s\) 'key'"),
        ("id,a\n1,2\n", {"label_column": "y"}, r"t\.csv: missing column\(s\) 'y'"),
        ("id,a\n1,2\n1,3\n", {}, r"t\.csv, column 'id': 1 duplicate id\(s\), e\.g\. '1'"),
        ("id,a\n1,2\n2,abc\n", {"categorical": ["b"]}, r"t\.csv: categorical column\(s\) .b. not in the table"),
        ("id,a\n1,inf\n", {}, r"t\.csv, line 2, column 'a': infinite value"),
        ("id,a\n", {}, r"t\.csv: the table is empty"),
        ("", {}, r"t\.csv: the file is empty"),
        ("id,a,y\n1,2,0\n2,3,2\n", {"label_column": "y"}, r"t\.csv, column 'y': the label must be binary 0/1, found values 0, 2"),
        ("id,a,y\n1,2,0\n2,3,\n", {"label_column": "y"}, r"column 'y': 1 missing label"),
        ("id,a,y\n1,2,1\n2,3,1\n", {"label_column": "y"}, r"column 'y': the label has a single class"),
        ("id,a\n1,2\n,3\n", {}, r"column 'id': 1 empty id"),
        ("id,a\n1,2,3\n", {}, r"line 2: 3 fields, the header has 2"),
        ("id,a,a\n1,2,3\n", {}, r"duplicate column name\(s\) 'a'"),
    ],
)
def test_bad_input_names_file_and_column(tmp_path, text, kwargs, match):
    with pytest.raises(DataError, match=match):
        load_table(_write(tmp_path, text), party="p", **kwargs)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_table(tmp_path / "nope.csv", party="p")


def test_take_and_select():
    t = Table.from_arrays("p", ["a", "b", "c"], [[1, 10], [2, 20], [3, 30]], ["u", "v"], y=[0, 1, 0])
    s = t.take([2, 0]).select(["p.v"])
    assert list(s.ids) == ["c", "a"] and s.X.tolist() == [[30.0], [10.0]] and s.y.tolist() == [0, 0]
    with pytest.raises(DataError, match="no column"):
        t.select(["w"])


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "x": [1.0, None], "y": [0, 1]}), p)
    t = load_table(p, party="p", label_column="y")
    assert t.y.tolist() == [0, 1] and np.isnan(t.X[1, 0])


# ---------------------------------------------------------------- chunked reading (tables larger than memory)
def _chunked(path, **kw):
    from fedcredit.data import iter_table

    return list(iter_table(path, **kw))


def test_iter_table_csv_chunks_equal_load_table(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["id,y,a,b"] + [f"c{i},{i % 2},{rng.normal():.6g},{'' if i % 7 == 0 else i}" for i in range(25)]
    p = _write(tmp_path, "\n".join(lines) + "\n")
    whole = load_table(p, party="p", label_column="y")
    chunks = _chunked(p, label_column="y", chunk_rows=10)
    assert [len(c) for c in chunks] == [10, 10, 5] and [c.offset for c in chunks] == [0, 10, 20]
    assert chunks[0].columns == whole.columns
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), whole.X)
    assert np.concatenate([c.ids for c in chunks]).tolist() == whole.ids.tolist()
    assert np.concatenate([c.y for c in chunks]).tolist() == whole.y.tolist()


def test_iter_table_parquet_by_batches(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(9)], "x": [float(i) for i in range(8)] + [None]}), p,
                   row_group_size=4)
    chunks = _chunked(p, chunk_rows=4)
    assert [len(c) for c in chunks] == [4, 4, 1]
    assert np.isnan(chunks[-1].X[0, 0]) and chunks[1].X[:, 0].tolist() == [4.0, 5.0, 6.0, 7.0]


@pytest.mark.parametrize(
    "text, kwargs, match",
    [
        ("id,a\n1,2\n2,3\n3,abc\n", {}, r"t\.csv, line 4, column 'a': non-numeric value 'abc'"),  # line counted across chunks
        ("id,a\n1,2\n2,3\n3,inf\n", {}, r"t\.csv, line 4, column 'a': infinite value"),
        ("id,a\n1,2\n2,3\n1,4\n", {}, r"t\.csv, column 'id': duplicate id"),  # across chunks
        ("id,a\n1,2\n2,3\n3,4,5\n", {}, r"t\.csv, line 4: 3 fields, the header has 2"),
        ("id,a\n1,2\n", {"id_column": "key"}, r"t\.csv: missing column\(s\) 'key'"),
        ("id,a,y\n1,2,0\n2,3,1\n3,3,2\n", {"label_column": "y"}, r"label must be binary 0/1, found 2 at line 4"),
        ("id,a\n", {}, r"t\.csv: the table is empty"),
        ("", {}, r"t\.csv: the file is empty"),
    ],
)
def test_iter_table_errors_name_file_column_and_line(tmp_path, text, kwargs, match):
    with pytest.raises(DataError, match=match):
        _chunked(_write(tmp_path, text), chunk_rows=2, **kwargs)


@pytest.mark.parametrize("chunk", [3, 4, 1000])
def test_load_table_reads_in_chunks_by_column(tmp_path, monkeypatch, chunk):
    """load_table reads chunks of rows into float columns (issue 17); the result does not depend on the chunk
    size, including a column that turns out non-numeric only after the first chunk (read again as text), a
    declared categorical column, missing values and errors that name the right line."""
    import fedcredit.data as data

    lines = ["id,y,a,b,c,d"]
    for i in range(10):
        c = "x" if i == 7 else str(i % 3)  # numeric for the first chunks, text at line 9
        lines.append(f"r{i},{i % 2},{i * 0.5},{'' if i == 4 else i},{c},{i % 4}")
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(data, "LOAD_CHUNK_ROWS", chunk)
    monkeypatch.setattr(data, "LOAD_CHUNK_CELLS", 10**9)
    t = load_table(path, party="p", label_column="y", categorical=["d"])
    assert t.X.dtype == np.float64 and t.X.shape == (10, 4)
    np.testing.assert_array_equal(t.X[:, 0], np.arange(10) * 0.5)
    assert np.isnan(t.X[4, 1]) and t.X[5, 1] == 5
    assert t.categories["c"] == ("0", "1", "2", "x") and t.X[7, 2] == 3 and t.X[8, 2] == 2
    assert t.categories["d"] == ("0", "1", "2", "3") and t.X[3, 3] == 3
    assert t.y.tolist() == [i % 2 for i in range(10)] and t.ids.tolist() == [f"r{i}" for i in range(10)]
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:8] + ["r7,1,inf,7,1,1"] + lines[9:]) + "\n")
    with pytest.raises(DataError, match=r"line 9, column 'a': infinite value"):
        load_table(bad, party="p", label_column="y")


def test_load_table_memory_is_the_float_matrix_not_an_object_per_cell(tmp_path, monkeypatch):
    import tracemalloc

    import fedcredit.data as data

    rng = np.random.default_rng(0)
    X = rng.normal(size=(6000, 40))
    path = tmp_path / "wide.csv"
    with open(path, "w") as f:
        f.write("id," + ",".join(f"x{j}" for j in range(40)) + "\n")
        for i, row in enumerate(X):
            f.write(f"r{i}," + ",".join(f"{v:.6g}" for v in row) + "\n")
    monkeypatch.setattr(data, "LOAD_CHUNK_CELLS", 500 * 41)  # 500 rows of 41 cells
    tracemalloc.start()
    try:
        t = load_table(path, party="p")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(t.X, X, rtol=1e-5)
    # the float matrix (1.9 MB), one id per row and one chunk of cells (2.0x); reading all 240k cells as str
    # objects first (before issue 17) peaked at 10x
    assert peak < 3 * t.X.nbytes, peak
