"""Small file helpers shared across the package."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["write_json_atomic"]


def write_json_atomic(path, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` so a crash never leaves a half-written file (temp file, fsync, rename).

    The file is created with mode 0600 (model parts and models are written
    through here: only the party's own user may read them).
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older temp file left with wider permissions
    with open(fd, "w", encoding="utf-8") as fh:
        json.dump(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
