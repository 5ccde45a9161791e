"""Where the benchmarks read their data: ``$FEDCREDIT_DATA``, else the data sets shipped with fedcredit."""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """The directory holding ``credit3/`` and ``default_credit/`` as plain CSV files."""
    env = os.environ.get("FEDCREDIT_DATA")
    if env:
        return Path(env).expanduser()
    from fedcredit.datasets import data_dir

    return data_dir()
