"""Shared fixtures: where the data sets live, seeded randomness.

The data sets ship inside the package (``fedcredit/datasets/``, written out once as plain CSV files by
:func:`fedcredit.datasets.data_dir`); ``$FEDCREDIT_DATA`` points the tests at another copy instead.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _data_root() -> pathlib.Path:
    env = os.environ.get("FEDCREDIT_DATA")
    if env:
        return pathlib.Path(env).expanduser().resolve()
    from fedcredit.datasets import data_dir

    return data_dir()


DATA = _data_root()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def data_path(*parts: str) -> pathlib.Path:
    """Path under the data directory (:data:`DATA`).

    A missing data set fails the test under CI (``CI=true``: a skipped test proves nothing) and skips it
    elsewhere (e.g. ``FEDCREDIT_DATA`` pointing at a partial copy).
    """
    p = DATA.joinpath(*parts)
    if not p.exists():
        if _in_ci():
            pytest.fail(f"data set missing under CI: {p}", pytrace=False)
        pytest.skip(f"data not present: {p}")
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
