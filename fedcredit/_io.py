"""Small file helpers shared across the package: atomic, durable, owner-only writes.

Every file fedcredit rewrites in place (model parts, checkpoints, reports,
the revocation list, peer audit heads, the console token, resume records)
goes through :func:`write_bytes_atomic` or its text/JSON siblings:

* written to a fresh temporary file in the same directory (a unique name, so
  two writers of one path never write into the same temporary file), then
  ``os.replace``-d over the target: a reader sees the old file or the new
  one, never half of one;
* the file is fsync-ed before the rename and the directory after it: once
  the call returns, a crash or power loss does not bring back the old file
  (a revoked peer stays revoked) or leave an empty one;
* created with mode 0600 (model parts, scores and tokens: only the party's
  own user may read them); a failed write removes its temporary file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["write_bytes_atomic", "write_text_atomic", "write_json_atomic"]


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:  # e.g. Windows: directories cannot be opened; NTFS journals the rename itself
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; the file itself was synced
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically and durably, mode 0600 (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with open(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path, text: str) -> Path:
    """:func:`write_bytes_atomic` of ``text`` encoded as UTF-8."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj, **dumps_kwargs) -> Path:
    """Write ``obj`` as JSON (``json.dumps(obj, **dumps_kwargs)``) with :func:`write_bytes_atomic`.

    A crash never leaves a half-written file; the file has mode 0600.
    """
    return write_text_atomic(path, json.dumps(obj, **dumps_kwargs))
