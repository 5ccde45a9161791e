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

Layout: this module holds :class:`Table` and :func:`load_table`; the cell-level
typing (numbers, categories, labels, :class:`TableError`) is in
:mod:`fedcredit._columns` and the file readers (CSV, CSV.gz, Parquet chunks,
:func:`read_header`, :func:`iter_table`) in :mod:`fedcredit._tablefiles`; both are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ._columns import (MAX_AUTO_CATEGORIES, MISSING_TOKENS, TableError, _binary_label, _check_categorical,
                       _check_header, _column, _label, _typed_column)
from ._tablefiles import TableChunk, _estimate_rows, _table_batches, iter_table, read_header
from .errors import DataError

__all__ = ["Table", "TableChunk", "TableError", "load_table", "read_header", "recode_categories", "iter_table", "MISSING_TOKENS",
           "MAX_AUTO_CATEGORIES"]


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


def _raw(party: str, name: str) -> str:
    prefix = f"{party}."
    return name[len(prefix):] if name.startswith(prefix) else name


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
