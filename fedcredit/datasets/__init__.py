"""The data sets shipped with fedcredit: per-party tables for the demo, the tests and experiments.

Each loader returns ``{party: table}``; a table is a pandas ``DataFrame`` when
pandas is installed (``as_frame=None``, the default) or a numpy structured
array otherwise (``as_frame=False``). Ids are strings, as
:func:`fedcredit.data.load_table` reads them.

The files are gzip-compressed copies inside the package (see the
``README.md`` next to this module for their origin and licences: UCI *default
of credit card clients*, Yeh & Lien 2009, CC BY 4.0; FATE's example splits,
Apache-2.0). Party processes read files, not objects: :func:`write_csv`
writes a data set out as plain CSV files, and :func:`data_dir` keeps one
such copy of every data set in a cache directory, which the demo, the tests
and the benchmarks use unless they are given a directory
(``--data DIR`` or ``$FEDCREDIT_DATA``).

Examples
--------
>>> from fedcredit.datasets import load_credit3
>>> parts = load_credit3()                       # doctest: +SKIP
>>> sorted(parts), parts["bank"].shape           # doctest: +SKIP
(['bank', 'chain', 'gov'], (28000, 9))
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["DATASETS", "Dataset", "load_credit3", "load_default_credit", "load_homo_banks",
           "load_credit3_categorical", "load", "write_csv", "data_dir", "packaged_file"]

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Dataset:
    """A data set: its directory name and, per party, the file stem and the label column.

    Attributes
    ----------
    name : str
        Directory the CSV files go in (``<dir>/<name>/<file>.csv``).
    files : dict of str to (str, str or None)
        ``{party: (file stem, label column or None)}``.
    pos_label : str or None
        The event value of a text label (None: the label is 0/1).
    """

    name: str
    files: dict
    pos_label: str | None = None

    def label(self, party: str) -> str | None:
        return self.files[party][1]


#: The shipped data sets (``credit3_categorical`` is generated from ``credit3``).
DATASETS: dict[str, Dataset] = {
    "credit3": Dataset("credit3", {"bank": ("bank", "default_next_month"), "chain": ("chain", None),
                                   "gov": ("gov", None)}),
    "default_credit": Dataset("default_credit", {
        "guest": ("hetero_guest", "y"), "host": ("hetero_host", None),
        "bank1": ("homo_bank1", "y"), "bank2": ("homo_bank2", "y"), "bank3": ("homo_bank3", "y"),
        "test": ("homo_test", "y")}),
    "credit3_categorical": Dataset("credit3_categorical", {
        "bank": ("bank", "default_next_month"), "chain": ("chain", None), "gov": ("gov", None)},
        pos_label="default"),
}

#: Text labels of the categorical variant (codes as in the UCI data set's documentation).
SEX = {"1": "male", "2": "female"}
EDUCATION = {"1": "graduate school", "2": "university", "3": "high school"}  # 0, 4, 5, 6: others
MARRIAGE = {"1": "married", "2": "single"}  # 0, 3: others
#: Share of its customers ``gov`` keeps in the categorical variant (partial coverage), and the seed.
CATEGORICAL_GOV_COVERAGE = 0.9
_CATEGORICAL_SEED = 2009


def packaged_file(dataset: str, stem: str) -> Path:
    """The compressed file ``<dataset>/<stem>.csv.gz`` inside the package."""
    p = _HERE / dataset / f"{stem}.csv.gz"
    if not p.is_file():
        raise ConfigError(f"packaged data set file missing: {p} (a broken installation? reinstall fedcredit)")
    return p


def _text(dataset: str, stem: str) -> str:
    """One table as CSV text (``credit3_categorical`` is generated)."""
    if dataset == "credit3_categorical":
        return _categorical(stem)
    with gzip.open(packaged_file(dataset, stem), "rt", encoding="utf-8", newline="") as f:
        return f.read()


def _categorical(stem: str) -> str:
    """A ``credit3_categorical`` table: text categories and label, own row order, ``gov`` at partial coverage.

    Deterministic: the same bytes on every machine (a seeded permutation per party; no float formatting).
    """
    rows = list(csv.reader(io.StringIO(_text("credit3", stem))))
    header, body = rows[0], rows[1:]
    col = {c: i for i, c in enumerate(header)}
    if stem == "bank":
        i = col["default_next_month"]
        for r in body:
            r[i] = "default" if r[i] == "1" else "repaid"
    elif stem == "gov":
        for name, labels in (("sex", SEX), ("education", EDUCATION), ("marriage", MARRIAGE)):
            i = col[name]
            for r in body:
                r[i] = labels.get(r[i], "others")
    rng = np.random.default_rng([_CATEGORICAL_SEED, ("bank", "chain", "gov").index(stem)])
    order = rng.permutation(len(body))
    if stem == "gov":
        order = order[: int(round(CATEGORICAL_GOV_COVERAGE * len(body)))]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(body[k] for k in order)
    return out.getvalue()


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def _frame(text: str, as_frame: bool | None):
    if as_frame is None or as_frame:
        try:
            import pandas as pd
        except ImportError:
            if as_frame:
                raise ImportError("as_frame=True needs pandas (pip install pandas)") from None
        else:
            return pd.read_csv(io.StringIO(text), dtype={"id": str}, keep_default_na=False, na_values=[""])
    return _structured(text)


def _structured(text: str) -> np.ndarray:
    """A numpy structured array: ``id`` and text columns as str, numbers as int64 or float64."""
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    cols = list(zip(*body)) if body else [() for _ in header]
    arrays = []
    for name, cells in zip(header, cols):
        arr = None
        if name != "id":
            for dtype in (np.int64, np.float64):
                try:
                    arr = np.array(cells, dtype=dtype)
                    break
                except ValueError:
                    continue
        arrays.append(arr if arr is not None else np.array(cells, dtype=str))
    out = np.empty(len(body), dtype=[(n, a.dtype) for n, a in zip(header, arrays)])
    for n, a in zip(header, arrays):
        out[n] = a
    return out


def load(name: str, *, parties=None, as_frame: bool | None = None) -> dict:
    """Per-party tables of data set ``name`` (a key of :data:`DATASETS`).

    Parameters
    ----------
    name : str
    parties : sequence of str, optional
        Only these parties (default: all).
    as_frame : bool or None, default=None
        True: pandas DataFrames (ImportError without pandas); False: numpy
        structured arrays; None: DataFrames when pandas is installed.

    Returns
    -------
    dict of str to DataFrame or ndarray
    """
    ds = _dataset(name)
    wanted = list(ds.files) if parties is None else list(parties)
    unknown = [p for p in wanted if p not in ds.files]
    if unknown:
        raise ConfigError(f"data set {name!r} has no party {', '.join(map(repr, unknown))}; "
                          f"it has {', '.join(ds.files)}")
    return {p: _frame(_text(ds.name, ds.files[p][0]), as_frame) for p in wanted}


def load_credit3(*, as_frame: bool | None = None) -> dict:
    """credit3: a bank (label ``default_next_month``) and two platforms, raw values, partial overlap.

    Returns
    -------
    dict
        ``{"bank": 28,000 rows, "chain": 31,000 rows, "gov": 29,895 rows}``; 24,641 ids are held by all three.
    """
    return load("credit3", as_frame=as_frame)


def load_default_credit(*, as_frame: bool | None = None) -> dict:
    """default_credit's two-party vertical split (FATE's, standardized features).

    Returns
    -------
    dict
        ``{"guest": id, y, x0..x12; "host": id, x0..x9}``, the same 30,000 ids.
    """
    return load("default_credit", parties=("guest", "host"), as_frame=as_frame)


def load_homo_banks(*, as_frame: bool | None = None) -> dict:
    """default_credit's horizontal split: three banks with the same features, and a test set.

    Returns
    -------
    dict
        ``{"bank1", "bank2", "bank3": 8,000 rows each; "test": 6,000 rows}``, columns ``id, y, x0..x22``.
    """
    return load("default_credit", parties=("bank1", "bank2", "bank3", "test"), as_frame=as_frame)


def load_credit3_categorical(*, as_frame: bool | None = None) -> dict:
    """credit3 as raw bank tables: text categories, a text label, own row orders, partial coverage.

    ``gov``'s ``sex``, ``education`` and ``marriage`` hold text labels (``male``, ``university``,
    ``married``, ..., unknown codes as ``others``); the bank's ``default_next_month`` holds
    ``default``/``repaid`` (the event is ``default``); each party's rows are shuffled with its own
    seeded permutation; ``gov`` keeps :data:`CATEGORICAL_GOV_COVERAGE` of its rows. Generated from
    credit3 on each call, byte for byte the same everywhere.
    """
    return load("credit3_categorical", as_frame=as_frame)


def write_csv(directory: str | os.PathLike, datasets=None) -> dict[str, dict[str, Path]]:
    """Write data sets as plain CSV files: ``<directory>/<dataset>/<file>.csv``.

    This is what party configs (``[tables.<t>] path``) and ``fedcredit demo --data DIR`` read.

    Parameters
    ----------
    directory : path
        Created if absent; existing files of the same names are replaced.
    datasets : sequence of str, optional
        Names from :data:`DATASETS` (default: all).

    Returns
    -------
    dict
        ``{dataset: {party: path}}``.
    """
    root = Path(directory)
    out: dict[str, dict[str, Path]] = {}
    for name in datasets or list(DATASETS):
        ds = _dataset(name)
        d = root / ds.name
        d.mkdir(parents=True, exist_ok=True)
        out[name] = {}
        for party, (stem, _) in ds.files.items():
            dest = d / f"{stem}.csv"
            if ds.name == "credit3_categorical":  # generated, not shipped
                dest.write_text(_text(ds.name, stem), encoding="utf-8", newline="")
            else:
                with gzip.open(packaged_file(ds.name, stem), "rb") as src, open(dest, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
            out[name][party] = dest
    return out


def _fingerprint() -> str:
    """Digest of the packaged files (the cache key: a new release with new data gets a new directory)."""
    h = hashlib.sha256()
    for p in sorted(_HERE.glob("*/*.csv.gz")):
        h.update(p.relative_to(_HERE).as_posix().encode())
        h.update(p.read_bytes())
    h.update(repr((SEX, EDUCATION, MARRIAGE, CATEGORICAL_GOV_COVERAGE, _CATEGORICAL_SEED)).encode())
    return h.hexdigest()[:16]


def _cache_home() -> Path:
    env = os.environ.get("FEDCREDIT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fedcredit"


def data_dir(cache: str | os.PathLike | None = None) -> Path:
    """A directory holding every data set as plain CSV files (``credit3/``, ``default_credit/``, ...).

    Written once per version of the packaged data into ``cache`` (default ``$FEDCREDIT_CACHE``, else
    ``$XDG_CACHE_HOME/fedcredit`` or ``~/.cache/fedcredit``; a temporary directory when that is not
    writable), then reused. Safe when several processes ask at once: each writes a private copy and
    renames it into place; the first rename wins.

    Returns
    -------
    Path
        ``<cache>/data-<digest>``, which has ``credit3/bank.csv`` etc.
    """
    key = f"data-{_fingerprint()}"
    bases = [Path(cache)] if cache is not None else [_cache_home(), Path(tempfile.gettempdir()) / f"fedcredit-{_uid()}"]
    last: OSError | None = None
    for base in bases:
        final = base / key
        if (final / ".complete").is_file():
            return final
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=base))
        except OSError as exc:
            last = exc
            continue
        try:
            write_csv(tmp)
            (tmp / ".complete").write_text(key + "\n", encoding="utf-8")
            try:
                tmp.rename(final)
            except OSError:  # another process renamed its copy first (or a stale incomplete one is there)
                if not (final / ".complete").is_file():
                    shutil.rmtree(final, ignore_errors=True)
                    tmp.rename(final)
            return final
        except OSError as exc:
            last = exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    raise ConfigError(f"cannot write the packaged data sets to a cache directory ({last}); set FEDCREDIT_CACHE "
                      "to a writable directory or pass a data directory explicitly")


def _uid() -> str:
    try:
        return str(os.getuid())
    except AttributeError:  # pragma: no cover - Windows
        return os.environ.get("USERNAME", "user")
