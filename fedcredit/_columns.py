"""Typed columns: cells -> numbers or categories, labels with ``pos_label``, errors safe to send (issue #14).

The cell-level half of :mod:`fedcredit.data` (which re-exports the public names): a
column whose non-missing cells all parse as numbers is numeric, any other is
categorical (codes ``0 .. k-1`` in the float matrix, names sorted); the label becomes
int8 0/1. Every :class:`TableError` carries a ``public`` text (column, problem and error
class, never a cell value or a path) next to the full message that stays with the owner.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import DataError

__all__ = ["MISSING_TOKENS", "MAX_AUTO_CATEGORIES", "TableError"]

MISSING_TOKENS = frozenset({"", "na", "nan", "null", "none", "n/a"})


#: A non-numeric column with more distinct values than this is not taken as categorical automatically (an id-like
#: column, or numbers in another format such as ``1,000``): an error asks to fix it or to declare it categorical.
MAX_AUTO_CATEGORIES = 256


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


def _check_categorical(src: str, header: list, categorical) -> frozenset:
    """The forced-categorical names; TableError naming the file and column(s) for a name the file lacks."""
    names = list(categorical or ())
    missing = [c for c in names if c not in header]
    if missing:
        cols = ", ".join(map(repr, missing))
        raise TableError(f"{src}: categorical column(s) {cols} not in the table; the file has {', '.join(header)}",
                         f"categorical column(s) {cols} not in the table", missing[0])
    return frozenset(names)


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
