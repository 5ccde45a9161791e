"""Identifiers from peers and job files, the paths built from them, and safe log text.

Every name that can reach a file path, a log line or the store — job id, job
name, step name, table name, party name, the two halves of a model id — must
match one grammar, :data:`NAME_PATTERN`::

    [a-z0-9][a-z0-9_-]{0,62}        (1-63 characters)

It is checked at the boundary where the name enters the process (a message
field, a job file, a certificate) with :func:`check_name`, which uses
``re.fullmatch`` (``$`` in ``re.match`` would accept a trailing newline). The
grammar has no ``.``, ``/``, ``\\``, NUL, whitespace or non-ASCII, so a checked
name is always one plain path component and one plain log token; 63 characters
is the DNS label limit, so party names (certificate DNS SANs) fit the same
grammar. Generated job ids (``<job name>-<YYYYmmdd>-<HHMMSS>-<6 hex>``) are
kept within it by truncating the job name.

Paths under a party's state directory are built only by :func:`state_path`,
which checks every component and then that the resolved path is still under
the resolved state directory (a symlink planted inside cannot lead out).

:class:`SafeFormatter` escapes control characters (``\\n``, ``\\r``, NUL, the
C1 range, Unicode line/paragraph separators and bidi overrides) in every
field of a log record, so a peer-chosen string can never start a forged line
in ``party.log``.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from pathlib import Path

from .errors import ProtocolError

__all__ = [
    "NAME_PATTERN",
    "NAME_MAX",
    "is_name",
    "name_problem",
    "check_name",
    "state_path",
    "private_dir",
    "escape_control",
    "SafeFormatter",
]

#: The one grammar of identifiers (see the module docstring).
NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
NAME_MAX = 63
_NAME_RE = re.compile(NAME_PATTERN)
_RULE = "1-63 characters of [a-z0-9_-], starting with a letter or digit"


def is_name(value) -> bool:
    """True if ``value`` is a str matching :data:`NAME_PATTERN` exactly."""
    return isinstance(value, str) and _NAME_RE.fullmatch(value) is not None


def name_problem(value) -> str | None:
    """None if ``value`` is a valid name, else what is wrong (for config checkers)."""
    return None if is_name(value) else f"must be {_RULE}"


def check_name(value, what: str = "identifier", *, error: type[Exception] = ProtocolError):
    """Return ``value`` if it is a valid name, else raise ``error``.

    Parameters
    ----------
    value : object
        The candidate (from a message, a job file, a certificate).
    what : str
        Names the field in the message (``"job id"``, ``"step name"``).
    error : exception class, default=ProtocolError
        ProtocolError for peer input (answered INVALID_ARGUMENT), ConfigError
        for local files.

    Notes
    -----
    The message shows the value through ``repr`` and cut to 80 characters,
    so a rejected value can neither forge a line nor flood a reply.
    """
    if is_name(value):
        return value
    shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
    raise error(f"invalid {what} {shown}: {_RULE}")


def state_path(root, *names: str, what: str = "path component") -> Path:
    """``root / names[0] / names[1] ...``, refusing anything that could leave ``root``.

    Every component must be a valid name (the fixed components the party
    itself uses, like ``"jobs"``, are names too), and the resolved path must
    lie under the resolved ``root``.

    Raises
    ------
    ProtocolError
        A component is not a name, or the path resolves outside ``root``.
    """
    base = Path(root)
    for n in names:
        check_name(n, what)
    p = base.joinpath(*names)
    rb, rp = base.resolve(), p.resolve()
    if rp != rb and rb not in rp.parents:
        raise ProtocolError(f"refused a path outside the state directory (under {names[0]!r})")
    return p


def private_dir(path, *, tighten: bool = False) -> Path:
    """Create directory ``path`` (and parents) with mode 0700; return it.

    ``tighten`` also sets 0700 on an existing ``path`` (a state directory holds
    keys, tokens and model parts: only its owner may read it).
    """
    p = Path(path)
    p.mkdir(mode=0o700, parents=True, exist_ok=True)
    if tighten:
        try:
            os.chmod(p, 0o700)
        except OSError as exc:  # not ours: say so, but do not fail the start
            logging.getLogger("fedcredit").warning("cannot set mode 0700 on %s: %s", p, exc.strerror or exc)
    return p


# --------------------------------------------------------------------------- logs

# C0 and C1 controls (\t included: it can align a forged record), DEL, line/paragraph separators,
# bidi embeddings/overrides/isolates, and lone surrogates (unencodable).
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _esc(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def escape_control(text) -> str:
    """``text`` with every control character written as ``\\xNN`` / ``\\uNNNN`` (one line, always)."""
    s = text if isinstance(text, str) else str(text)
    return _CONTROL_RE.sub(_esc, s)


class SafeFormatter(logging.Formatter):
    """A Formatter that escapes control characters in every field of a record.

    The message (after ``%`` formatting, so peer strings in ``args`` are
    covered), the logger, thread and function names, and the exception and
    stack text are escaped. Exception and stack text keep their line breaks
    for readability, but each of their lines is escaped and indented with
    ``"  | "``, so none can look like the start of a record.
    """

    _FIELDS = ("name", "threadName", "processName", "funcName", "module", "filename", "pathname", "levelname")

    def format(self, record: logging.LogRecord) -> str:
        r = copy.copy(record)  # other handlers see the record unchanged
        r.msg, r.args = escape_control(record.getMessage()), None
        for f in self._FIELDS:
            v = getattr(r, f, None)
            if isinstance(v, str):
                setattr(r, f, escape_control(v))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter.formatException(self, record.exc_info)
        r.exc_info, r.exc_text = None, self._block(record.exc_text) if record.exc_text else None
        r.stack_info = self._block(record.stack_info) if record.stack_info else None
        return super().format(r)

    def formatStack(self, stack_info: str) -> str:  # already escaped in format()
        return stack_info

    @staticmethod
    def _block(text: str) -> str:
        return "\n".join("  | " + escape_control(line) for line in text.split("\n"))
