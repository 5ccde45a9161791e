"""Append-only, hash-chained audit log (one JSON object per line).

Each line is a record::

    {"seq": 7, "time": "2024-05-01T10:00:00.123456+00:00", "kind": "job.decision",
     "fields": {...}, "prev": "<hash of line 6>", "hash": "<sha256 of this record without 'hash'>"}

``hash`` is the SHA-256 (hex) of the canonical JSON (sorted keys, no spaces,
UTF-8) of the record without its ``hash`` member. ``prev`` of the first record
is :data:`GENESIS` (64 zeros). So:

* changing any byte of a line breaks its hash (or its JSON);
* deleting or reordering lines breaks ``seq`` continuity and ``prev`` links;
* truncating the tail, or rewriting the whole log with fresh hashes, is not
  visible from the log alone — but every party sends its head
  ``(seq, hash)`` to its peers, which log it; :func:`verify` with those
  ``known_heads`` then detects both.

The log never contains key material or raw data: callers pass identifiers,
counts, sizes, digests and reasons.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError

__all__ = ["AuditLog", "VerifyResult", "verify", "GENESIS", "record_hash", "canonical_json"]

GENESIS = "0" * 64
_KEYS = {"seq", "time", "kind", "fields", "prev", "hash"}


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, non-ASCII kept as UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(record: dict) -> str:
    """SHA-256 hex of the canonical JSON of ``record`` without its ``hash`` member."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _jsonable(v: Any) -> Any:
    """Coerce numpy scalars, paths, tuples and sets into JSON types."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        items = [_jsonable(x) for x in v]
        return sorted(items, key=repr) if isinstance(v, (set, frozenset)) else items
    if isinstance(v, (str, bool)) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else str(v)
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "item"):  # numpy scalar
        return _jsonable(v.item())
    return str(v)


class AuditLog:
    """This party's audit log.

    Parameters
    ----------
    path : path
        The JSON-lines file; created (with its directory) on first append.
        An existing log is read once to find its head; appends continue the chain.

    Notes
    -----
    Thread-safe within one process. Each append is one ``write`` of one line
    followed by ``fsync``, so a crash leaves at worst a partial last line,
    which :func:`verify` reports.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seq, self._hash = 0, GENESIS
        if self.path.exists():
            res = verify(self.path)
            if not res.ok:
                raise DataError(
                    f"audit log {self.path} is broken at line {res.first_bad_line}: {res.reason}; "
                    "refusing to append to it (move it aside and keep it for investigation)"
                )
            self._seq, self._hash = res.head

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last record (``(0, GENESIS)`` for an empty log)."""
        with self._lock:
            return self._seq, self._hash

    def append(self, kind: str, /, **fields: Any) -> dict:
        """Append one record and return it.

        Parameters
        ----------
        kind : str
            What happened (``"job.proposed"``, ``"job.decision"``, ``"step.finished"``...).
        **fields
            JSON-able details (ids, counts, digests, reasons; never key material).
        """
        if not isinstance(kind, str) or not kind:
            raise ValueError("audit record kind must be a non-empty string")
        with self._lock:
            rec = {
                "seq": self._seq + 1,
                "time": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                "kind": kind,
                "fields": _jsonable(fields),
                "prev": self._hash,
            }
            rec["hash"] = record_hash(rec)
            line = canonical_json(rec) + "\n"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            self._seq, self._hash = rec["seq"], rec["hash"]
            return rec

    def records(self) -> list[dict]:
        """Every record, in order (no verification; use :func:`verify`)."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`.

    Attributes
    ----------
    ok : bool
    first_bad_line : int or None
        1-based line number of the first broken record (for a truncation
        detected through a known head: the line after the last one present).
    reason : str
        Why it is broken (empty when ok).
    records : int
        Number of valid records read before the first problem.
    head : tuple of (int, str)
        ``(seq, hash)`` of the last valid record.
    """

    ok: bool
    first_bad_line: int | None = None
    reason: str = ""
    records: int = 0
    head: tuple[int, str] = (0, GENESIS)

    def __bool__(self) -> bool:
        return self.ok


def verify(path: str | os.PathLike, *, known_heads: Iterable[tuple[int, str]] = ()) -> VerifyResult:
    """Recompute the chain of an audit log.

    Parameters
    ----------
    path : path
        The log file. A missing file is an empty log.
    known_heads : iterable of (seq, hash)
        Heads of this log that peers recorded earlier. Each must match the
        record with that ``seq``; a head beyond the end of the log means the
        log was truncated, a different hash that it was rewritten.

    Returns
    -------
    VerifyResult
    """
    path = Path(path)
    prev, seq, n = GENESIS, 0, 0
    by_seq: dict[int, str] = {}
    if path.exists():
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, start=1):
                bad = lambda why: VerifyResult(False, lineno, why, n, (seq, prev))  # noqa: E731
                if not raw.endswith(b"\n"):
                    return bad("incomplete last line (no newline): the log was cut or a write was interrupted")
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    return bad(f"not a JSON record ({exc.__class__.__name__})")
                if not isinstance(rec, dict) or set(rec) != _KEYS:
                    return bad(f"record must have exactly the keys {sorted(_KEYS)}")
                if rec["seq"] != seq + 1 or isinstance(rec["seq"], bool):
                    return bad(f"sequence number {rec['seq']!r} where {seq + 1} was expected (a line was deleted, "
                               "inserted or reordered)")
                if rec["prev"] != prev:
                    return bad("'prev' does not match the hash of the previous record (a line was deleted or reordered)")
                try:
                    h = record_hash(rec)
                except (TypeError, ValueError) as exc:
                    return bad(f"record cannot be canonicalised: {exc}")
                if rec["hash"] != h:
                    return bad("hash does not match the record's content (the line was changed)")
                if canonical_json(rec) + "\n" != raw.decode("utf-8"):
                    return bad("line is not in canonical form (the line was changed)")
                prev, seq, n = h, rec["seq"], n + 1
                by_seq[seq] = h
    for kseq, khash in sorted(known_heads):
        if kseq == 0:
            continue
        if kseq > seq:
            return VerifyResult(False, seq + 1, f"a peer holds head #{kseq}, but the log ends at #{seq}: it was "
                                "truncated", n, (seq, prev))
        if by_seq[kseq] != khash:
            return VerifyResult(False, kseq, f"record #{kseq} differs from the head a peer holds: the log was "
                                "rewritten", n, (seq, prev))
    return VerifyResult(True, None, "", n, (seq, prev))
