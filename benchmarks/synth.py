"""Synthetic vertical credit data with a known signal, for scaling curves.

``make_vertical(n_rows, n_features, parties=("bank", "chain", "gov"))`` draws
one population of ``n_rows`` customers, gives every party ``n_features``
columns of its own, and draws the label (on the first party, the guest) from
a logistic model over *all* parties' columns, so a federated model must use
the hosts' features to reach the known optimum. Each party holds a random
``overlap`` share of the customers (ids are 18-character unified social credit
codes: ``91440100`` + 8 digits + ``XY``), in its own shuffled order.

Command line (CSV files, one per party, label on the guest)::

    python benchmarks/synth.py --rows 100000 --features 10 --out /tmp/synth100k
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["VerticalData", "make_vertical", "write_csv", "write_vertical_csv", "customer_id", "aligned_party"]


@dataclass
class VerticalData:
    """Per-party tables of one synthetic population.

    Attributes
    ----------
    ids : dict of str to list of str
        Each party's ids in its own row order.
    X : dict of str to ndarray of shape (n_party_rows, n_features)
    y : ndarray
        Labels of the guest's rows (in the guest's order).
    columns : dict of str to list of str
    coef : dict of str to ndarray
        The true logistic coefficients of each party's columns.
    intercept : float
    guest : str
    """

    ids: dict[str, list[str]]
    X: dict[str, np.ndarray]
    y: np.ndarray
    columns: dict[str, list[str]]
    coef: dict[str, np.ndarray]
    intercept: float
    guest: str


def customer_id(i: int) -> str:
    """The 18-character id of customer ``i`` (< 10**8)."""
    return f"91440100{i:08d}XY"


def _widths(n_features, parties) -> dict:
    """Columns per party: one int for all, or ``{party: count}`` (e.g. a 30-column guest and a 300-column host)."""
    if isinstance(n_features, dict):
        if set(n_features) != set(parties):
            raise ValueError(f"n_features names {sorted(n_features)}, parties are {list(parties)}")
        return {p: int(n_features[p]) for p in parties}
    return {p: int(n_features) for p in parties}


def _population(n_rows: int, n_features, parties, seed: int):
    rng = np.random.default_rng(seed)
    widths = _widths(n_features, parties)
    X = {p: rng.normal(size=(n_rows, widths[p])) for p in parties}
    coef = {}
    z = np.zeros(n_rows)
    for k, p in enumerate(parties):
        # a few strong columns per party, the rest weak or pure noise
        w = np.zeros(widths[p])
        strong = max(1, widths[p] // 3)
        w[:strong] = rng.uniform(0.4, 0.9, strong) * rng.choice([-1, 1], strong) / (1 + 0.5 * k)
        w[strong: 2 * strong] = rng.uniform(0.0, 0.15, len(w[strong: 2 * strong]))
        coef[p] = w
        z += X[p] @ w
        # 2 % missing values in the last column
        X[p][rng.random(n_rows) < 0.02, -1] = np.nan
    intercept = -1.3
    y = (rng.random(n_rows) < 1 / (1 + np.exp(-(z + intercept)))).astype(np.int8)
    return X, y, coef, intercept


def make_vertical(n_rows: int, n_features: int | dict = 10, parties=("bank", "chain", "gov"), *,
                  overlap: float = 0.9, seed: int = 0) -> VerticalData:
    """Draw a population and split it vertically (see the module docstring).

    ``n_features`` is the column count of every party, or ``{party: count}``.
    """
    if n_rows < 10 or n_rows >= 10**8:
        raise ValueError(f"n_rows must be in [10, 1e8); got {n_rows}")
    if not 0 < overlap <= 1:
        raise ValueError(f"overlap must be in (0, 1]; got {overlap}")
    parties = tuple(parties)
    Xall, yall, coef, intercept = _population(n_rows, n_features, parties, seed)
    rng = np.random.default_rng(seed + 1)
    ids, X, cols = {}, {}, {}
    for p in parties:
        rows = rng.permutation(n_rows)[: int(round(overlap * n_rows))] if overlap < 1 else rng.permutation(n_rows)
        ids[p] = [customer_id(int(i)) for i in rows]
        X[p] = Xall[p][rows]
        cols[p] = [f"{p}_x{j}" for j in range(X[p].shape[1])]
        if p == parties[0]:
            y = yall[rows]
    return VerticalData(ids, X, y, cols, coef, intercept, parties[0])


def aligned_party(n_rows: int, n_features: int, party: str, parties=("bank", "chain", "gov"), *, seed: int = 0):
    """One party's columns for all ``n_rows`` customers in id order (as after PSI), and the label on the guest.

    Every party process can call this with the same arguments and get its own
    aligned share without any file (benchmarks of the training protocols).
    """
    Xall, yall, _, _ = _population(n_rows, n_features, tuple(parties), seed)
    return Xall[party], (yall if party == parties[0] else None)


def write_csv(data: VerticalData, out: str | Path) -> dict[str, Path]:
    """Write ``<party>.csv`` per party (``id``, columns, and ``default`` on the guest) and ``truth.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for p, ids in data.ids.items():
        path = out / f"{p}.csv"
        if _write_fast(path, ids, data.X[p], data.columns[p], data.y if p == data.guest else None):
            paths[p] = path
            continue
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            label = p == data.guest
            w.writerow(["id", *(["default"] if label else []), *data.columns[p]])
            X = data.X[p]
            for i, cid in enumerate(ids):
                vals = ["" if np.isnan(v) else f"{v:.6g}" for v in X[i]]
                w.writerow([cid, *([int(data.y[i])] if label else []), *vals])
        paths[p] = path
    (out / "truth.json").write_text(json.dumps({
        "guest": data.guest, "intercept": data.intercept,
        "coef": {p: dict(zip(data.columns[p], map(float, w))) for p, w in data.coef.items()},
        "rows": {p: len(v) for p, v in data.ids.items()}, "event_rate": float(np.mean(data.y)),
    }, indent=2))
    return paths


def _party_block(seed: int, k: int, n_rows: int, width: int) -> np.ndarray:
    """Party ``k``'s float32 columns for all customers (the same values on every call)."""
    return np.random.default_rng([seed, k]).standard_normal((n_rows, width), dtype=np.float32)


def write_vertical_csv(n_rows: int, n_features: dict, parties, out: str | Path, *, overlap: float = 0.9,
                       seed: int = 0, chunk_rows: int = 50_000) -> dict:
    """Write ``<party>.csv`` per party for a large population in bounded memory (the ``tall`` configuration).

    The same model as :func:`make_vertical` (a logistic label over all parties'
    columns, a few strong columns per party, 2 % missing values in each party's
    last column), drawn differently so that no step holds more than one party's
    float32 matrix: pass 1 draws each party's columns, adds their part of the
    score and drops them; pass 2 draws them again (same stream), and writes the
    rows the party holds (an ``overlap`` share of the customers, in its own
    shuffled order) in chunks of ``chunk_rows``. 1M rows x 50 columns: 200 MB
    plus one chunk's text.

    Returns
    -------
    dict
        ``{"paths": {party: Path}, "rows": {party: int64 customer numbers in file order}, "label": "default",
        "event_rate": float}``; the first party (the guest) has the label column.
    """
    if not 10 <= n_rows < 10**8:
        raise ValueError(f"n_rows must be in [10, 1e8); got {n_rows}")
    if not 0 < overlap <= 1:
        raise ValueError(f"overlap must be in (0, 1]; got {overlap}")
    parties = tuple(parties)
    widths = _widths(n_features, parties)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    crng = np.random.default_rng([seed, 10_000])
    coef, z = {}, np.zeros(n_rows)
    for k, p in enumerate(parties):  # pass 1: the score
        w = np.zeros(widths[p])
        strong = max(1, widths[p] // 3)
        w[:strong] = crng.uniform(0.4, 0.9, strong) * crng.choice([-1, 1], strong) / (1 + 0.5 * k)
        w[strong: 2 * strong] = crng.uniform(0.0, 0.15, len(w[strong: 2 * strong]))
        coef[p] = w
        z += _party_block(seed, k, n_rows, widths[p]) @ w.astype(np.float32)
    y = (crng.random(n_rows) < 1 / (1 + np.exp(-(z - 1.3)))).astype(np.int8)
    del z
    paths, rows = {}, {}
    for k, p in enumerate(parties):  # pass 2: each party's file
        X = _party_block(seed, k, n_rows, widths[p])
        X[crng.random(n_rows) < 0.02, -1] = np.nan
        held = crng.permutation(n_rows)
        held = held[: int(round(overlap * n_rows))] if overlap < 1 else held
        cols = [f"{p}_x{j}" for j in range(widths[p])]
        path = out / f"{p}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            for start in range(0, len(held), chunk_rows):
                part = held[start: start + chunk_rows]
                _write_chunk(f, [customer_id(int(i)) for i in part], X[part], cols,
                             y[part] if k == 0 else None, header=start == 0)
        del X
        paths[p], rows[p] = path, held
    return {"paths": paths, "rows": rows, "label": "default", "event_rate": float(y.mean())}


def _write_chunk(f, ids, X: np.ndarray, columns, y, *, header: bool) -> None:
    """Append rows to an open CSV file: pandas' C writer when installed, else the csv module."""
    try:
        import pandas as pd
    except ImportError:
        w = csv.writer(f)
        if header:
            w.writerow(["id", *(["default"] if y is not None else []), *columns])
        for i, cid in enumerate(ids):
            vals = ["" if np.isnan(v) else f"{v:.6g}" for v in X[i]]
            w.writerow([cid, *([int(y[i])] if y is not None else []), *vals])
        return
    df = pd.DataFrame(X, columns=columns)
    if y is not None:
        df.insert(0, "default", np.asarray(y, dtype=np.int8))
    df.insert(0, "id", ids)
    df.to_csv(f, index=False, header=header, float_format="%.6g", na_rep="")


def _write_fast(path: Path, ids, X: np.ndarray, columns, y) -> bool:
    """The same CSV through pandas' C writer when pandas is installed (wide tables: minutes -> seconds)."""
    try:
        import pandas as pd
    except ImportError:
        return False
    df = pd.DataFrame(X, columns=columns)
    if y is not None:
        df.insert(0, "default", np.asarray(y, dtype=np.int8))
    df.insert(0, "id", ids)
    df.to_csv(path, index=False, float_format="%.6g", na_rep="", chunksize=20_000)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10000)
    p.add_argument("--features", type=int, default=10, help="features per party")
    p.add_argument("--parties", default="bank,chain,gov", help="the first is the guest (label holder)")
    p.add_argument("--overlap", type=float, default=0.9, help="share of the customers each party holds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    paths = write_csv(make_vertical(a.rows, a.features, a.parties.split(","), overlap=a.overlap, seed=a.seed), a.out)
    for party, path in paths.items():
        print(f"{party}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
