"""Small file helpers shared across the package."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["write_json_atomic"]


def write_json_atomic(path, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` so a crash never leaves a half-written file (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
