"""Model registry: a model id ``<job_id>/<step>`` → this party's loaded part and its feature lookup.

Each party loads only its own part, from ``state_dir/jobs/<job_id>/<step>/``,
and the features that part reads from the table it used in that job (from the
job's record in the party's store; a party with a single table uses it). Both
are cached: the first request for a model pays for loading, later ones only
look rows up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import load_table, recode_categories
from ..errors import DataError
from ..ids import state_path
from ..protocols.scoring import spec
from ..protocols.scoring.parts import ModelPart, load_part

__all__ = ["ModelRegistry", "LoadedModel"]


@dataclass
class LoadedModel:
    """A loaded part plus this party's feature rows for it.

    Attributes
    ----------
    part : ModelPart
    X : ndarray of shape (n_rows, len(part.features))
        This party's table, restricted to the features the part reads.
    by_digest : dict of bytes to int
        Row of each customer, keyed by its wire digest under this model id.
    by_id : dict of str to int
    """

    part: ModelPart
    X: np.ndarray
    by_digest: dict = field(default_factory=dict)
    by_id: dict = field(default_factory=dict)

    @property
    def feature_index(self) -> dict:
        return {f: j for j, f in enumerate(self.part.features)}

    def _rows(self, keys, index: dict) -> tuple[np.ndarray, int]:
        rows = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        out = np.full((len(keys), self.X.shape[1]), np.nan)
        hit = rows >= 0
        out[hit] = self.X[rows[hit]]
        return out, int(hit.sum())

    def rows_for_digests(self, digests: list[bytes]) -> tuple[np.ndarray, int]:
        """Feature rows of the digested ids (NaN rows for ids not in this party's table) and the number found."""
        return self._rows(digests, self.by_digest)

    def rows_for_ids(self, ids: list[str]) -> tuple[np.ndarray, int]:
        return self._rows([str(i).strip() for i in ids], self.by_id)

    def holds(self, ids: list[str]) -> np.ndarray:
        """Whether each id is a row of this party's table (bool per id)."""
        return np.fromiter((str(i).strip() in self.by_id for i in ids), dtype=bool, count=len(ids))


class ModelRegistry:
    """Loads and caches this party's model parts.

    Parameters
    ----------
    party : str
    state_dir : path
    tables : mapping of str to TableConfig
        The party's ``[tables]``.
    job_table : callable, optional
        ``job_id -> table name`` this party used in that job (None if unknown).
    """

    def __init__(self, party: str, state_dir, tables, job_table=None):
        self.party = party
        self.state_dir = Path(state_dir)
        self.tables = tables
        self.job_table = job_table or (lambda job_id: None)
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._cache: dict[str, LoadedModel] = {}

    def workdir(self, model_id: str) -> Path:
        spec.check_model_id(model_id)
        job_id, step = model_id.split("/")
        return state_path(self.state_dir, "jobs", job_id, step)  # checked names, never outside state_dir

    def get(self, model_id: str) -> LoadedModel:
        """The loaded model (DataError if this party holds no part of it)."""
        with self._lock:
            m = self._cache.get(model_id)
            if m is not None:
                return m
            lk = self._loading.setdefault(model_id, threading.Lock())
        with lk:
            with self._lock:
                m = self._cache.get(model_id)
            if m is None:
                m = self._load(model_id)
                with self._lock:
                    self._cache[model_id] = m
            return m

    def forget(self, model_id: str | None = None) -> None:
        with self._lock:
            if model_id is None:
                self._cache.clear()
            else:
                self._cache.pop(model_id, None)

    def _table_config(self, job_id: str):
        name = self.job_table(job_id)
        if name is not None and name in self.tables:
            return self.tables[name]
        if len(self.tables) == 1:
            return next(iter(self.tables.values()))
        raise DataError(f"cannot tell which of {self.party!r}'s tables job {job_id!r} used")

    def _load(self, model_id: str) -> LoadedModel:
        wd = self.workdir(model_id)
        part = load_part(wd, model_id)
        if part.party != self.party:
            raise DataError(f"model part in {wd} belongs to {part.party!r}, not {self.party!r}")
        if not part.features and part.role != "guest":
            return LoadedModel(part, np.zeros((0, 0)))
        # the guest loads its ids even without features of its own: scoring reports which applicants it holds
        tc = self._table_config(model_id.split("/")[0])
        cols = [f.split(".", 1)[1] if f.startswith(f"{self.party}.") else f for f in part.features]
        table = load_table(tc.path, party=self.party, id_column=tc.id_column, columns=cols,
                           categorical=getattr(tc, "categorical", ()))
        table = recode_categories(table, _trained_categories(wd.parent))
        X = np.ascontiguousarray(table.X, dtype=np.float64)
        ids = [str(i) for i in table.ids]
        digests = spec.split_digests(spec.id_digests(ids, model_id))
        return LoadedModel(part, X, by_digest=dict(zip(digests, range(len(ids)))), by_id=dict(zip(ids, range(len(ids)))))


def _trained_categories(job_dir: Path) -> dict:
    """The category lists this party's table had when the job ran (``categories.json``; {} if none)."""
    import json

    f = job_dir / "categories.json"
    if not f.is_file():
        return {}
    data = json.loads(f.read_text(encoding="utf-8"))
    return {str(c): tuple(str(n) for n in v) for c, v in data.items()} if isinstance(data, dict) else {}


def job_table_from_store(store, party: str):
    """``job_id -> table name`` from the party's SQLite store (the job's ``[parties.<party>].table``)."""

    def lookup(job_id: str):
        row = store.job(job_id)
        if row is None:
            return None
        try:
            return row["detail"]["job"]["parties"][party].get("table")
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    return lookup
