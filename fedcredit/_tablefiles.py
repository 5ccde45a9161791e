"""Reading table files: the header and chunks of rows of a CSV, CSV.gz or Parquet file.

The file-level half of :mod:`fedcredit.data` (which re-exports the public names):
:func:`read_header`, the row batches :func:`fedcredit.data.load_table` fills its float
matrix from, and :func:`iter_table` for tables that do not fit in memory. Every error
names the file (and the column and line where one is at fault).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._columns import TableError, _check_header, _column
from .errors import DataError

__all__ = ["read_header", "TableChunk", "iter_table"]

def _open_text(path: Path):
    """A CSV file as text; ``.gz`` files (e.g. ``bank.csv.gz``) are decompressed on the fly."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return path.open(newline="", encoding="utf-8-sig")


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


def _table_batches(path: Path, chunk_rows: int, *, skip_header: bool = False):
    """The header, then chunks of at most ``chunk_rows`` rows of a CSV (``.csv``/``.csv.gz``) or Parquet file."""
    gen = _parquet_batches(path, chunk_rows) if path.suffix.lower() == ".parquet" else _csv_batches(path, chunk_rows)
    if skip_header:
        next(gen)
    return gen


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
