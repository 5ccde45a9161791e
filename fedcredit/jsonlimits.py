"""Parsing JSON that crosses a trust boundary, with limits.

Control messages carry JSON (a proposed job, an event's detail, a submitted
job file). :func:`loads_limited` is the one function that parses them. It
refuses, with a typed error that the servicers answer as INVALID_ARGUMENT:

* text over ``max_bytes`` (UTF-8) or bytes that are not valid UTF-8;
* nesting deeper than ``max_depth`` (a 5,000-deep array would otherwise hit
  the interpreter's recursion limit: RecursionError);
* a number literal longer than ``max_number_chars`` (a 5,000-digit integer
  would otherwise hit the int-conversion limit: ValueError), NaN and
  Infinity;
* strings or keys holding lone surrogates (``"\\ud800"`` parses, but cannot be
  encoded as UTF-8: it would fail later, in the audit log or the store,
  after part of the state was written);
* duplicate object keys (two parsers could read different values).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import ProtocolError

__all__ = ["loads_limited", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_NUMBER_CHARS"]

MAX_JSON_BYTES = 1 * 2**20
MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 100
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class _Refused(Exception):
    pass


def loads_limited(
    text: str | bytes,
    *,
    what: str = "JSON",
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    max_number_chars: int = MAX_NUMBER_CHARS,
    error: type[Exception] = ProtocolError,
) -> Any:
    """``json.loads(text)`` within limits; raises ``error`` with a reason otherwise.

    Parameters
    ----------
    text : str or bytes
        The document (bytes must be UTF-8).
    what : str
        Names the document in the error (``"job proposed by 'gov'"``).
    max_bytes, max_depth, max_number_chars : int
        Size of the UTF-8 text, nesting of arrays/objects (a scalar is depth
        0), characters of one number literal.
    error : exception class, default=ProtocolError

    Returns
    -------
    object
        The parsed value.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        if len(raw) > max_bytes:
            raise error(f"{what}: {len(raw)} bytes of JSON exceed the limit of {max_bytes}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{what}: not valid UTF-8 (byte {exc.start})") from None
    elif not isinstance(text, str):
        raise error(f"{what}: expected JSON text, got {type(text).__name__}")
    else:
        if len(text) > max_bytes:  # cheap bound first: a str is at least one UTF-8 byte per character
            raise error(f"{what}: JSON longer than {max_bytes} bytes")
        m = _SURROGATE_RE.search(text)
        if m is not None:
            raise error(f"{what}: not valid UTF-8 (lone surrogate at character {m.start()})")
        size = len(text.encode("utf-8"))
        if size > max_bytes:
            raise error(f"{what}: {size} bytes of JSON exceed the limit of {max_bytes}")

    def number(s: str):
        if len(s) > max_number_chars:
            raise _Refused(f"a number of {len(s)} characters (limit {max_number_chars})")
        if not any(c in s for c in ".eE"):
            return int(s)
        f = float(s)
        if f != f or f in (float("inf"), float("-inf")):
            raise _Refused(f"number {s[:20]!r} is out of range")
        return f

    def constant(s: str):
        raise _Refused(f"{s} is not JSON")

    def pairs(items):
        d = {}
        for k, v in items:
            if k in d:
                raise _Refused(f"duplicate key {k[:40]!r}")
            d[k] = v
        return d

    try:
        value = json.loads(text, parse_int=number, parse_float=number, parse_constant=constant,
                           object_pairs_hook=pairs)
    except _Refused as exc:
        raise error(f"{what}: {exc}") from None
    except RecursionError:
        raise error(f"{what}: nested deeper than {max_depth} levels") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise error(f"{what}: not valid JSON: {str(exc)[:200]}") from None
    _check(value, max_depth, what, error)
    return value


def _check(value: Any, max_depth: int, what: str, error) -> None:
    """Depth and lone surrogates (from ``\\uXXXX`` escapes) of a parsed value, without recursion."""
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, str):
            if _SURROGATE_RE.search(v):
                raise error(f"{what}: a string holds a lone surrogate (not valid UTF-8)")
        elif isinstance(v, (dict, list)):
            if d + 1 > max_depth:
                raise error(f"{what}: nested deeper than {max_depth} levels")
            if isinstance(v, dict):
                for k, x in v.items():
                    if _SURROGATE_RE.search(k):
                        raise error(f"{what}: a key holds a lone surrogate (not valid UTF-8)")
                    stack.append((x, d + 1))
            else:
                stack.extend((x, d + 1) for x in v)
