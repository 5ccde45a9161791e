"""Load a party's own table: ids, features, and (for the label holder) the label.

Every error names the file and, where one is at fault, the column (and the
line for a bad value). Feature names are namespaced by party (``bank.x0``),
because two parties may both have a column called ``x0``.

Missing values: an empty cell, ``NA``, ``NaN``, ``null`` or ``None`` becomes
NaN in ``X``; the steps decide what a missing value means (a bin of its own,
a learned default direction). Infinite values are refused.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["Table", "TableChunk", "load_table", "iter_table", "MISSING_TOKENS"]

MISSING_TOKENS = frozenset({"", "na", "nan", "null", "none", "n/a"})


@dataclass(frozen=True, eq=False)
class Table:
    """One party's rows: ids, numeric features and an optional binary label.

    Attributes
    ----------
    party : str
        Owner of the table; prefixes ``feature_names``.
    path : Path or None
        Where it was read from (None for in-memory tables).
    id_column : str
    ids : ndarray of str objects, shape (n,)
        Ids as in the file, surrounding spaces stripped.
    columns : tuple of str
        Raw feature column names, in file order.
    X : ndarray of float64, shape (n, f)
        Feature values; NaN marks a missing value.
    y : ndarray of int8, shape (n,), or None
        Label (0/1) on the label holder.
    label_column : str or None
    """

    party: str
    path: Path | None
    id_column: str
    ids: np.ndarray
    columns: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray | None = None
    label_column: str | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_features(self) -> int:
        return len(self.columns)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Column names namespaced by party: ``"<party>.<column>"``."""
        return tuple(f"{self.party}.{c}" for c in self.columns)

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else f"<{self.party} table>"

    def take(self, index) -> "Table":
        """Rows ``index`` in that order (e.g. the PSI-agreed order)."""
        index = np.asarray(index, dtype=np.int64)
        return replace(self, ids=self.ids[index], X=self.X[index], y=None if self.y is None else self.y[index])

    def select(self, names: Sequence[str]) -> "Table":
        """Keep the given features (raw or namespaced names), in that order."""
        lookup = {c: i for i, c in enumerate(self.columns)}
        lookup.update({f: i for i, f in enumerate(self.feature_names)})
        missing = [n for n in names if n not in lookup]
        if missing:
            raise DataError(f"{self.source}: no column(s) {', '.join(map(repr, missing))}")
        idx = [lookup[n] for n in names]
        return replace(self, columns=tuple(self.columns[i] for i in idx), X=self.X[:, idx])

    @classmethod
    def from_arrays(cls, party: str, ids, X, columns: Sequence[str], y=None, *, id_column: str = "id",
                    label_column: str | None = None) -> "Table":
        """Build a table from arrays (tests, synthetic data); validated like a file."""
        ids = np.asarray([str(i).strip() for i in ids], dtype=object)
        X = np.asarray(X, dtype=np.float64).reshape(len(ids), -1)
        table = cls(party, None, id_column, ids, tuple(columns), X,
                    None if y is None else np.asarray(y), label_column if y is not None else None)
        _check(table)
        if y is not None:
            table = replace(table, y=_binary_label(np.asarray(y, dtype=np.float64), table.source, label_column or "y"))
        return table


def _check_header(src: str, header: list, id_column: str, label_column, columns) -> list:
    """The feature columns to read; DataError on duplicate or missing columns (naming the file)."""
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise DataError(f"{src}: duplicate column name(s) {', '.join(map(repr, dup))}")
    need = [id_column] + ([label_column] if label_column else []) + list(columns or [])
    missing = [c for c in need if c not in header]
    if missing:
        raise DataError(f"{src}: missing column(s) {', '.join(map(repr, missing))}; the file has {', '.join(header)}")
    if columns is None:
        return [h for h in header if h not in (id_column, label_column)]
    return list(columns)


def load_table(
    path: str | Path,
    *,
    party: str,
    id_column: str = "id",
    label_column: str | None = None,
    columns: Sequence[str] | None = None,
) -> Table:
    """Read a CSV (or Parquet, with pyarrow) file into a :class:`Table`.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (or gzip-compressed ``.csv.gz``) or ``.parquet`` file.
    party : str
        The owner; namespaces feature names.
    id_column : str, default="id"
    label_column : str, optional
        Binary 0/1 label column (label holder only).
    columns : sequence of str, optional
        Feature columns to use (default: all but id and label).

    Raises
    ------
    DataError
        Missing file or column, duplicate or empty ids, non-numeric or
        infinite values, an empty table, or a label that is not binary.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() == ".parquet":
        header, rows = _read_parquet(path)
    else:
        header, rows = _read_csv(path)
    src = str(path)
    columns = _check_header(src, header, id_column, label_column, columns)
    col_idx = [header.index(c) for c in columns]
    n = len(rows)
    if n == 0:
        raise DataError(f"{src}: the table is empty (no data rows)")
    id_i = header.index(id_column)
    bad = next((r for r, row in enumerate(rows) if len(row) != len(header)), None)
    if bad is not None:
        raise DataError(f"{src}, line {bad + 2}: {len(rows[bad])} fields, the header has {len(header)}")
    ids = np.array([row[id_i].strip() if isinstance(row[id_i], str) else str(row[id_i]) for row in rows], dtype=object)
    X = np.empty((n, len(columns)), dtype=np.float64)
    for j, ci in enumerate(col_idx):
        X[:, j] = _column(rows, ci, src, columns[j])
    y_raw = _column(rows, header.index(label_column), src, label_column) if label_column else None
    table = Table(party, path, id_column, ids, tuple(columns), X, None, label_column)
    _check(table)
    if label_column:
        table = replace(table, y=_binary_label(y_raw, src, label_column))
    return table


def _column(rows, ci: int, src: str, column: str, first_line: int = 2) -> np.ndarray:
    """One column as float64: vectorized parse, cell-by-cell only when that fails (to name the line)."""
    cells = [row[ci] for row in rows]
    try:
        out = np.array(cells, dtype=np.float64)
    except (ValueError, TypeError):
        out = np.array([_number(c, src, column, i + first_line) for i, c in enumerate(cells)], dtype=np.float64)
    if np.isinf(out).any():
        line = int(np.flatnonzero(np.isinf(out))[0]) + first_line
        raise DataError(f"{src}, line {line}, column {column!r}: infinite value")
    return out


@dataclass(frozen=True, eq=False)
class TableChunk:
    """Consecutive rows of a table read by :func:`iter_table`.

    Attributes
    ----------
    offset : int
        Position of the first row in the whole table.
    ids : ndarray of str objects, shape (m,)
    X : ndarray of float64, shape (m, f)
    y : ndarray of int8, shape (m,), or None
    columns : tuple of str
    """

    offset: int
    ids: np.ndarray
    X: np.ndarray
    y: np.ndarray | None
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def iter_table(
    path: str | Path,
    *,
    id_column: str = "id",
    label_column: str | None = None,
    columns: Sequence[str] | None = None,
    chunk_rows: int = 100_000,
) -> Iterator[TableChunk]:
    """Read a CSV or Parquet table in chunks of ``chunk_rows`` rows, for tables that do not fit in memory.

    CSV is streamed with the :mod:`csv` module; Parquet is read batch by batch
    (``ParquetFile.iter_batches``, row group by row group) with pyarrow. Each chunk is checked
    like :func:`load_table` checks a whole table (the same messages, with the
    file's line numbers); ids duplicated across chunks are detected with a
    64-bit digest per row (8 bytes a row) and reported after the last chunk.
    A label must be 0/1; a single-class label is not checked (a chunk may hold one class).

    Parameters
    ----------
    path : str or Path
    id_column, label_column, columns
        As for :func:`load_table`.
    chunk_rows : int, default=100000

    Yields
    ------
    TableChunk

    Raises
    ------
    DataError
        As :func:`load_table`, naming the file, the column and the line.
    """
    path = Path(path)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"The 'chunk_rows' parameter of iter_table must be an int >= 1. Got {chunk_rows!r} instead.")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    src = str(path)
    batches = _parquet_batches(path, chunk_rows) if path.suffix.lower() == ".parquet" else _csv_batches(path, chunk_rows)
    header = next(batches)
    columns = tuple(_check_header(src, header, id_column, label_column, columns))
    col_idx = [header.index(c) for c in columns]
    id_i = header.index(id_column)
    digests = []
    offset = 0
    for rows in batches:
        first_line = offset + 2
        bad = next((r for r, row in enumerate(rows) if len(row) != len(header)), None)
        if bad is not None:
            raise DataError(f"{src}, line {first_line + bad}: {len(rows[bad])} fields, the header has {len(header)}")
        ids = np.array([row[id_i].strip() if isinstance(row[id_i], str) else str(row[id_i]) for row in rows],
                       dtype=object)
        empty = np.flatnonzero(ids == "")
        if empty.size:
            raise DataError(f"{src}, column {id_column!r}: empty id at line {first_line + int(empty[0])}")
        X = np.empty((len(rows), len(columns)), dtype=np.float64)
        for j, ci in enumerate(col_idx):
            X[:, j] = _column(rows, ci, src, columns[j], first_line)
        y = None
        if label_column:
            y = _column(rows, header.index(label_column), src, label_column, first_line)
            if np.isnan(y).any():
                raise DataError(f"{src}, column {label_column!r}: missing label at line "
                                f"{first_line + int(np.flatnonzero(np.isnan(y))[0])}")
            if not np.isin(y, (0.0, 1.0)).all():
                raise DataError(f"{src}, column {label_column!r}: the label must be binary 0/1, found "
                                f"{y[~np.isin(y, (0.0, 1.0))][0]:g} at line "
                                f"{first_line + int(np.flatnonzero(~np.isin(y, (0.0, 1.0)))[0])}")
            y = y.astype(np.int8)
        digests.append(np.frombuffer(b"".join(hashlib.blake2b(i.encode(), digest_size=8).digest() for i in ids),
                                     dtype=np.uint64))
        yield TableChunk(offset, ids, X, y, columns)
        offset += len(rows)
    if offset == 0:
        raise DataError(f"{src}: the table is empty (no data rows)")
    allh = np.concatenate(digests)
    if np.unique(allh).size != allh.size:
        raise DataError(f"{src}, column {id_column!r}: duplicate id(s) in the table")


def _csv_batches(path: Path, chunk_rows: int):
    """Yields the header, then lists of at most ``chunk_rows`` rows."""
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: the file is empty (no header)")
            yield [h.strip() for h in header]
            batch = []
            for row in reader:
                if not row:
                    continue
                batch.append(row)
                if len(batch) == chunk_rows:
                    yield batch
                    batch = []
            if batch:
                yield batch
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable gzip file ({exc})") from None


def _open_text(path: Path):
    """A CSV file as text; ``.gz`` files (e.g. ``bank.csv.gz``) are decompressed on the fly."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return path.open(newline="", encoding="utf-8-sig")


def _parquet_batches(path: Path, chunk_rows: int):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install 'fedcredit[parquet]')") from None
    try:
        pf = pq.ParquetFile(path)
        header = [str(c) for c in pf.schema_arrow.names]
    except Exception as exc:  # pyarrow raises many types
        raise DataError(f"{path}: unreadable Parquet file ({exc})") from None
    yield header
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            yield [list(r) for r in zip(*cols)]
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: unreadable Parquet file ({exc})") from None


def _number(cell, src: str, column: str, line: int) -> float:
    if cell is None:
        return math.nan
    if isinstance(cell, (int, float)):
        v = float(cell)
    else:
        s = str(cell).strip()
        if s.lower() in MISSING_TOKENS:
            return math.nan
        try:
            v = float(s)
        except ValueError:
            raise DataError(f"{src}, line {line}, column {column!r}: non-numeric value {s[:40]!r}") from None
    if math.isinf(v):
        raise DataError(f"{src}, line {line}, column {column!r}: infinite value")
    return v


def _check(table: Table) -> None:
    src = table.source
    if len(table) == 0:
        raise DataError(f"{src}: the table is empty (no data rows)")
    empty = np.flatnonzero(table.ids == "")
    if empty.size:
        raise DataError(f"{src}, column {table.id_column!r}: {empty.size} empty id(s), first at row {empty[0] + 1}")
    uniq, counts = np.unique(table.ids.astype(str), return_counts=True)
    if uniq.size != len(table):
        dups = uniq[counts > 1]
        raise DataError(
            f"{src}, column {table.id_column!r}: {int((counts - 1)[counts > 1].sum())} duplicate id(s), e.g. {str(dups[0])!r}"
        )
    if np.isinf(table.X).any():
        raise DataError(f"{src}: infinite feature value(s)")


def _binary_label(y: np.ndarray, src: str, column: str) -> np.ndarray:
    if np.isnan(y).any():
        raise DataError(f"{src}, column {column!r}: {int(np.isnan(y).sum())} missing label(s)")
    values = np.unique(y)
    if not np.isin(values, (0.0, 1.0)).all():
        shown = ", ".join(f"{v:g}" for v in values[:6])
        raise DataError(f"{src}, column {column!r}: the label must be binary 0/1, found values {shown}")
    if values.size < 2:
        raise DataError(f"{src}, column {column!r}: the label has a single class ({values[0]:g})")
    return y.astype(np.int8)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and every non-empty row (one batch of :func:`_csv_batches`)."""
    batches = _csv_batches(path, sys.maxsize)
    header = next(batches)
    return header, next(batches, [])


def _read_parquet(path: Path) -> tuple[list[str], list[list]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install 'fedcredit[parquet]')") from None
    try:
        t = pq.read_table(path)
    except Exception as exc:  # pyarrow raises many types
        raise DataError(f"{path}: unreadable Parquet file ({exc})") from None
    header = [str(c) for c in t.column_names]
    cols = [t.column(c).to_pylist() for c in t.column_names]
    return header, [list(r) for r in zip(*cols)]
