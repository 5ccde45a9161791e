"""Load a party's own table: ids, features, and (for the label holder) the label.

Every error names the file and, where one is at fault, the column (and the
line for a bad value). Feature names are namespaced by party (``bank.x0``),
because two parties may both have a column called ``x0``.

Missing values: an empty cell, ``NA``, ``NaN``, ``null`` or ``None`` becomes
NaN in ``X``; the steps decide what a missing value means (a bin of its own,
a learned default direction). Infinite values are refused.

Column types (issue #14): a column whose non-missing values all parse as
numbers is **numeric**; any other column is **categorical**, and so is every
column named in ``categorical=`` (e.g. an integer-coded region). The table
stays columnar: a categorical column is stored in ``X`` as float codes
``0 .. k-1`` (NaN for missing) with its category names in
``Table.categories[column]`` (sorted: numerically for number-like
categories, else as text). The label may hold any two values when
``pos_label`` names the event value; without it the label must be 0/1.

Errors that may cross to other parties: every :class:`TableError` has a
``public`` text (column, problem and error class, never a cell value or a
path) next to its full message (file, line, value) that stays in the
owner's log.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import math
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import DataError

__all__ = ["Table", "TableChunk", "TableError", "load_table", "read_header", "recode_categories", "iter_table", "MISSING_TOKENS"]

MISSING_TOKENS = frozenset({"", "na", "nan", "null", "none", "n/a"})
#: A non-numeric column with more distinct values than this is not taken as categorical automatically (an id-like
#: column, or numbers in another format such as ``1,000``): an error asks to fix it or to declare it categorical.
MAX_AUTO_CATEGORIES = 256


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
    categories : dict of str to tuple of str
        Categorical columns (raw name) -> category names; column ``j`` of such
        a feature holds the code (index into the names) or NaN.
    """

    party: str
    path: Path | None
    id_column: str
    ids: np.ndarray
    columns: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray | None = None
    label_column: str | None = None
    categories: dict = field(default_factory=dict)

    def is_categorical(self, name: str) -> bool:
        """Whether feature ``name`` (raw or namespaced) is categorical."""
        return _raw(self.party, name) in self.categories

    def category_names(self, name: str) -> tuple[str, ...] | None:
        """Category names of feature ``name`` (raw or namespaced), None for a numeric feature."""
        return self.categories.get(_raw(self.party, name))

    @property
    def categorical_features(self) -> tuple[str, ...]:
        """Namespaced names of the categorical features, in column order."""
        return tuple(f for c, f in zip(self.columns, self.feature_names) if c in self.categories)

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
        cols = tuple(self.columns[i] for i in idx)
        return replace(self, columns=cols, X=self.X[:, idx],
                       categories={c: v for c, v in self.categories.items() if c in cols})

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
        raise TableError(f"{src}: duplicate column name(s) {', '.join(map(repr, dup))}",
                         f"duplicate column name(s) {', '.join(map(repr, dup))}", dup[0])
    need = [id_column] + ([label_column] if label_column else []) + list(columns or [])
    missing = [c for c in need if c not in header]
    if missing:
        raise TableError(f"{src}: missing column(s) {', '.join(map(repr, missing))}; the file has {', '.join(header)}",
                         f"missing column(s) {', '.join(map(repr, missing))}", missing[0])
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
    categorical: Sequence[str] | None = None,
    pos_label: str | int | float | None = None,
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
    categorical : sequence of str, optional
        Columns to treat as categorical even though their values are numbers
        (non-numeric columns are categorical anyway). Each must be a column
        of the file; those not among ``columns`` are ignored.
    pos_label : str or number, optional
        The label value that means the event (default, "bad"); the label
        must then have exactly two values. Without it the label must be 0/1.

    Notes
    -----
    The file is read in chunks of at most :data:`LOAD_CHUNK_ROWS` rows and
    :data:`LOAD_CHUNK_CELLS` cells straight into one float64 matrix: peak
    memory is about that matrix plus one chunk of cells (no Python object per cell is kept; text only for categorical
    columns, ids and the label).

    Raises
    ------
    DataError
        Missing file or column, duplicate or empty ids, infinite values, an
        empty table, a ``categorical`` name the file does not have, or a
        label that is not binary (one or more than two values, or not 0/1
        without ``pos_label``). A :class:`TableError` carries a ``public``
        text without values or paths.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: file not found", "the table's file was not found")
    # Read in chunks of rows and keep columns only: numbers go straight into float64 blocks, so memory is
    # the float matrix plus one chunk of cells, not a Python object per cell of the file. Text is kept
    # only for categorical columns (declared ones from the start; a column found non-numeric in a later
    # chunk is read again from the file) and for the id and label columns (one object per row).
    chunk = _chunk_rows(path)
    batches = _table_batches(path, chunk)
    header = next(batches)
    src = str(path)
    columns = _check_header(src, header, id_column, label_column, columns)
    forced = _check_categorical(src, header, categorical)
    col_idx = [header.index(c) for c in columns]
    id_i = header.index(id_column)
    label_i = header.index(label_column) if label_column else None
    text: dict[int, list] = {j: [] for j, c in enumerate(columns) if c in forced}
    late: list[int] = []  # found non-numeric after the first chunk: read again
    ids_parts, label_cells = [], []
    X, n = None, 0
    for rows in batches:
        bad = next((r for r, row in enumerate(rows) if len(row) != len(header)), None)
        if bad is not None:
            raise TableError(f"{src}, line {n + bad + 2}: {len(rows[bad])} fields, the header has {len(header)}",
                             "a row has more or fewer fields than the header")
        ids_parts.append(np.array([row[id_i].strip() if isinstance(row[id_i], str) else str(row[id_i])
                                   for row in rows], dtype=object))
        # one float matrix, filled in place: sized from the file after the first chunk, grown if that was short
        if X is None:
            X = np.empty((_estimate_rows(path, rows), len(columns)))
        if n + len(rows) > len(X):
            X.resize((max(len(X) * 3 // 2, n + len(rows)), len(columns)), refcheck=False)
        block = X[n:n + len(rows)]
        block[:] = np.nan
        for j, ci in enumerate(col_idx):
            if j in text:
                text[j].extend(row[ci] for row in rows)
            elif j not in late:
                try:
                    block[:, j] = _column(rows, ci, src, columns[j], n + 2)
                except DataError as exc:
                    if "non-numeric" not in str(exc):
                        raise TableError(str(exc), f"column {columns[j]!r}: infinite value", columns[j]) from None
                    if n == 0:
                        text[j] = [row[ci] for row in rows]
                    else:
                        late.append(j)
        if label_i is not None:
            label_cells.extend(row[label_i] for row in rows)
        n += len(rows)
        del rows, block
    if n == 0:
        raise TableError(f"{src}: the table is empty (no data rows)", "the table is empty")
    X.resize((n, len(columns)), refcheck=False)  # in place (no view of X is left)
    ids = np.concatenate(ids_parts)
    if late:
        text.update({j: [] for j in late})
        for rows in _table_batches(path, chunk, skip_header=True):
            for j in late:
                text[j].extend(row[col_idx[j]] for row in rows)
    categories: dict[str, tuple[str, ...]] = {}
    for j in sorted(text):
        X[:, j], cats = _typed_column([(c,) for c in text.pop(j)], 0, src, columns[j], columns[j] in forced)
        if cats is not None:
            categories[columns[j]] = cats
    table = Table(party, path, id_column, ids, tuple(columns), X, None, label_column, categories)
    _check(table)
    if label_column:
        table = replace(table, y=_label([(c,) for c in label_cells], 0, src, label_column, pos_label))
    return table


#: Most rows per chunk when :func:`load_table` reads a file ...
LOAD_CHUNK_ROWS = 16_384
#: ... and most cells (one chunk of a 300-column table is 3,333 rows, about 60 MB of cell strings).
LOAD_CHUNK_CELLS = 1_000_000


def _chunk_rows(path: Path) -> int:
    return max(64, min(LOAD_CHUNK_ROWS, LOAD_CHUNK_CELLS // max(1, len(read_header(path)))))


def _estimate_rows(path: Path, first: list) -> int:
    """Rows of the file, estimated from its size and the first chunk (Parquet: exact; gzip: 4x the size)."""
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            return max(len(first), int(pq.ParquetFile(path).metadata.num_rows))
        except Exception:  # noqa: BLE001 - an estimate only
            return len(first)
    size = path.stat().st_size * (4 if path.suffix.lower() == ".gz" else 1)
    sample = first[:2000]
    per_row = sum(sum(len(str(c)) + 1 for c in row) for row in sample) / max(1, len(sample))
    return max(len(first), int(size / max(per_row, 1.0) * 1.02) + 16)


def _table_batches(path: Path, chunk_rows: int, *, skip_header: bool = False):
    """The header, then chunks of at most ``chunk_rows`` rows of a CSV (``.csv``/``.csv.gz``) or Parquet file."""
    gen = _parquet_batches(path, chunk_rows) if path.suffix.lower() == ".parquet" else _csv_batches(path, chunk_rows)
    if skip_header:
        next(gen)
    return gen


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
        raise TableError(f"{path}: file not found", "the table's file was not found")
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
        raise TableError(f"{src}: the table is empty (no data rows)", "the table is empty")
    empty = np.flatnonzero(table.ids == "")
    if empty.size:
        raise TableError(f"{src}, column {table.id_column!r}: {empty.size} empty id(s), first at row {empty[0] + 1}",
                         f"id column {table.id_column!r}: {empty.size} empty id(s)", table.id_column)
    uniq, counts = np.unique(table.ids.astype(str), return_counts=True)
    if uniq.size != len(table):
        dups = uniq[counts > 1]
        k = int((counts - 1)[counts > 1].sum())
        raise TableError(f"{src}, column {table.id_column!r}: {k} duplicate id(s), e.g. {str(dups[0])!r}",
                         f"id column {table.id_column!r}: {k} duplicate id(s)", table.id_column)
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


# ---------------------------------------------------------------------------
# typed columns, labels with pos_label, errors safe to send (issue #14)
# ---------------------------------------------------------------------------
class TableError(DataError):
    """A :class:`DataError` that also says what may cross to other parties.

    Parameters
    ----------
    message : str
        Full text for the owner (file, line, column, offending value).
    public : str
        The same problem without any cell value or path: column names, counts
        and the kind of problem only. This is what another party sees.
    column : str, optional
        The column at fault.
    """

    def __init__(self, message: str, public: str, column: str | None = None):
        super().__init__(message)
        self.public = public
        self.column = column


def _raw(party: str, name: str) -> str:
    prefix = f"{party}."
    return name[len(prefix):] if name.startswith(prefix) else name


def _check_categorical(src: str, header: list, categorical) -> frozenset:
    """The forced-categorical names; TableError naming the file and column(s) for a name the file lacks."""
    names = list(categorical or ())
    missing = [c for c in names if c not in header]
    if missing:
        cols = ", ".join(map(repr, missing))
        raise TableError(f"{src}: categorical column(s) {cols} not in the table; the file has {', '.join(header)}",
                         f"categorical column(s) {cols} not in the table", missing[0])
    return frozenset(names)


def _cells_as_text(cells) -> np.ndarray:
    """Cells as stripped text (numbers in their canonical form: ``1`` for 1.0), ``""`` for missing."""
    out = np.empty(len(cells), dtype=object)
    for i, c in enumerate(cells):
        if c is None:
            out[i] = ""
        elif isinstance(c, (bool, np.bool_)):
            out[i] = str(int(c))
        elif isinstance(c, (int, float, np.integer, np.floating)):
            out[i] = "" if math.isnan(c) else _num_text(float(c))
        else:
            t = str(c).strip()
            out[i] = "" if t.lower() in MISSING_TOKENS else t
    return out


def _num_text(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _as_number(t: str) -> float | None:
    try:
        v = float(t)
    except ValueError:
        return None
    return None if math.isnan(v) else v


def _typed_column(rows, ci: int, src: str, column: str, forced: bool) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """One feature column: (float64 values, None) if numeric, else (float codes, category names).

    A column is numeric when every non-missing cell parses as a number and it
    is not ``forced`` categorical. Categories are sorted numerically when all
    are numbers (an integer-coded region: ``2`` before ``10``), else as text.
    The codes are held in the float64 matrix (NaN = missing): columnar, no
    Python object per cell is kept.
    """
    if not forced:
        try:
            return _column(rows, ci, src, column), None
        except DataError as exc:
            if "non-numeric" not in str(exc):
                raise TableError(str(exc), f"column {column!r}: infinite value", column) from None
    text = _cells_as_text([row[ci] for row in rows])
    present = text != ""
    values = text[present].astype(str)
    uniq, inverse = np.unique(values, return_inverse=True)
    if not forced and uniq.size > MAX_AUTO_CATEGORIES:
        bad = next(i for i, t in enumerate(text) if t and _as_number(t) is None)
        raise TableError(
            f"{src}, line {bad + 2}, column {column!r}: not numeric ({str(text[bad])[:40]!r}) and {uniq.size} distinct "
            f"values, too many for a category (more than {MAX_AUTO_CATEGORIES}); fix its number format, leave it out "
            f"with columns = [...], or declare it in categorical = [...]",
            f"column {column!r} is not numeric and has {uniq.size} distinct values: not declared categorical", column)
    nums = [_as_number(u) for u in uniq]
    if all(v is not None for v in nums):  # number-like categories: "1" and "1.0" are one, sorted by value
        nums_u, inv2 = np.unique(np.array(nums, dtype=np.float64), return_inverse=True)
        uniq, inverse = np.array([_num_text(float(v)) for v in nums_u], dtype=object), inv2.reshape(-1)[inverse]
    codes = np.full(len(text), np.nan)
    codes[present] = inverse
    return codes, tuple(str(u) for u in uniq)


def _label(rows, ci: int, src: str, column: str, pos_label) -> np.ndarray:
    """The label as int8 0/1: the event is ``pos_label``, or 1 of a 0/1 label when ``pos_label`` is None.

    The full messages list the values found (they stay with the label
    holder); the public texts give only their number.
    """
    if pos_label is None:  # fast path: a clean 0/1 label parses as numbers in one go
        try:
            y = np.array([row[ci] for row in rows], dtype=np.float64)
        except (ValueError, TypeError):
            y = None
        if y is not None and not np.isnan(y).any() and np.isin(y, (0.0, 1.0)).all() and np.unique(y).size == 2:
            return y.astype(np.int8)
    text = _cells_as_text([row[ci] for row in rows])
    miss = text == ""
    if miss.any():
        k = int(miss.sum())
        raise TableError(f"{src}, column {column!r}: {k} missing label(s), first at line {int(np.flatnonzero(miss)[0]) + 2}",
                         f"label column {column!r}: {k} missing label(s)", column)
    values = np.unique(text.astype(str))
    if all(_as_number(v) is not None for v in values):  # "1" and "1.0" are one value
        canon = {v: _num_text(_as_number(v)) for v in values.tolist()}
        text = np.array([canon[v] for v in text], dtype=object)
        values = np.unique(text.astype(str))
    shown = ", ".join(values[:6].tolist()) + (", ..." if values.size > 6 else "")
    if values.size > 2:
        raise TableError(f"{src}, column {column!r}: the label must have two values, found {values.size}: {shown}",
                         f"label column {column!r}: the label must have two values, found {values.size}", column)
    if pos_label is None:
        nums = {_as_number(v) for v in values}
        if not nums <= {0.0, 1.0}:
            raise TableError(
                f"{src}, column {column!r}: the label must be binary 0/1, found values {shown}; "
                f"set pos_label in the table's config ([tables.<name>] pos_label = ...) to the value that "
                f"means the event (e.g. the default)",
                f"label column {column!r}: the label is not 0/1 and no pos_label is set", column)
        y = np.array([_as_number(v) for v in text], dtype=np.float64)
    else:
        pos = _num_text(float(pos_label)) if isinstance(pos_label, (int, float)) and not isinstance(pos_label, bool) \
            else str(pos_label).strip()
        if pos not in set(values.tolist()):
            raise TableError(f"{src}, column {column!r}: pos_label {pos!r} is not a value of the label (found {shown})",
                             f"label column {column!r}: pos_label is not one of the label's values", column)
        y = (text.astype(str) == pos).astype(np.float64)
    if values.size < 2:
        raise TableError(f"{src}, column {column!r}: the label has a single class ({values[0]})",
                         f"label column {column!r}: the label has a single class", column)
    return y.astype(np.int8)


def read_header(path: str | Path) -> list[str]:
    """The column names of a CSV or Parquet file (without reading its rows)."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: file not found", "the table's file was not found")
    batches = _parquet_batches(path, 1) if path.suffix.lower() == ".parquet" else _csv_batches(path, 1)
    try:
        return list(next(batches))
    finally:
        batches.close()


def recode_categories(table: Table, trained: dict) -> Table:
    """``table`` with its categorical codes re-expressed in the category lists a model was trained on.

    Codes are positions in a column's sorted category list, so a file that
    gained a category since training would shift every code after it; a
    model part therefore keeps the lists it saw (``trained``: column ->
    category names) and scoring maps each row's category **name** back to
    the training code. A category the model never saw becomes missing (the
    missing bin of WOE, the learned missing direction of a tree): the
    documented rule for unseen categories.
    """
    if not trained or not table.categories:
        return table
    X = table.X.copy()
    cats = dict(table.categories)
    for j, col in enumerate(table.columns):
        names = table.categories.get(col)
        old = trained.get(col)
        if names is None or old is None or tuple(old) == tuple(names):
            continue
        pos = {n: i for i, n in enumerate(old)}
        lut = np.array([pos.get(n, np.nan) for n in names], dtype=np.float64)
        x = X[:, j]
        ok = ~np.isnan(x)
        x[ok] = lut[x[ok].astype(np.int64)]
        cats[col] = tuple(old)
    return replace(table, X=X, categories=cats)
