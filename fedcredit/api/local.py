"""A federation on this machine: :func:`local_federation` and :class:`LocalFederation`."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .client import PartyClient
from .results import JobResult
from .steps import build_job

__all__ = ["MODES", "LocalFederation", "local_federation"]

#: ``local_federation(mode=...)``: party processes over mTLS, or every role in this process over memory.
MODES = ("processes", "inprocess")


def _write_table(obj, dest: Path) -> Path:
    """A DataFrame, a numpy structured array or a file path, as a CSV (or the file itself) a party can read."""
    if isinstance(obj, (str, os.PathLike)):
        p = Path(obj)
        if not p.is_file():
            raise ConfigError(f"table file not found: {p}")
        return p.resolve()
    if hasattr(obj, "to_csv") and hasattr(obj, "columns"):  # pandas DataFrame
        obj.to_csv(dest, index=False)
        return dest
    import numpy as np

    arr = np.asarray(obj)
    if arr.dtype.names:
        import csv

        with open(dest, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(arr.dtype.names)
            for row in arr.tolist():
                w.writerow(["" if isinstance(v, float) and v != v else v for v in row])
        return dest
    raise ConfigError(f"a table must be a pandas DataFrame, a numpy structured array (with an id column) or a file "
                      f"path; got {type(obj).__name__}")


class LocalFederation:
    """Party processes on this machine (see :func:`local_federation`); use as a context manager.

    Attributes
    ----------
    parties : list of str
    guest : str
        The party that submits jobs (the label holder, else the first party).
    root : Path
        Working directory: ``certs/``, ``<party>.toml``, ``tables/``, ``state/<party>/``, party logs.
    configs : dict of str to Path
    """

    def __init__(self, tables: Mapping[str, Any], *, labels: Mapping[str, str] | None = None, id_column: str = "id",
                 mode: str = "processes", workdir: str | os.PathLike | None = None, keep: bool = False,
                 timeout: float = 60.0, policy: Mapping[str, Mapping[str, Any]] | None = None,
                 transport: Mapping[str, Any] | None = None):
        from ..certs import check_party_name
        from ..scaffold import inspect_table

        if len(tables) < 2:
            raise ConfigError(f"a federation needs at least two parties, got {len(tables)}")
        for p in tables:
            check_party_name(p)
        labels = dict(labels or {})
        unknown = sorted(set(labels) - set(tables))
        if unknown:
            raise ConfigError(f"labels for unknown part(y/ies) {', '.join(unknown)}; parties: {', '.join(tables)}")
        if mode not in MODES:
            raise ConfigError(f"mode {mode!r} is not one of {', '.join(map(repr, MODES))}")
        self.mode = mode
        self.parties = list(tables)
        self.labels = labels
        self.guest = next((p for p in self.parties if p in labels), self.parties[0])
        self._own_root = workdir is None
        self.root = Path(tempfile.mkdtemp(prefix="fedcredit-local-")) if workdir is None else Path(workdir)
        self.keep = keep
        self._fed = None
        self._client: PartyClient | None = None
        self._history: list[dict] = []
        try:
            if id_column != "id":
                raise ConfigError(f"id_column={id_column!r}: local_federation reads the ids from a column named 'id' "
                                  "(rename the column)")
            tdir = self.root / "tables"
            tdir.mkdir(parents=True, exist_ok=True)
            extra: dict[str, dict[str, tuple[Path, str | None]]] = {}
            self.table_paths: dict[str, Path] = {}
            for p, t in tables.items():
                if t is None:
                    continue
                path = _write_table(t, tdir / f"{p}.csv")
                inspect_table(path, id_column=id_column, label_column=labels.get(p))
                self.table_paths[p] = path
                extra[p] = {"credit": (path, labels.get(p))}
            spec = {p: ("guest" if p == self.guest else "host", None, None) for p in self.parties}
            pol = {p: {"min_intersection": 10, **dict((policy or {}).get(p, {}))} for p in self.parties}
            tr = {"deadline": 10.0, "recv_timeout": 300.0, **dict(transport or {})}
            self._min_intersection = {p: int(v["min_intersection"]) for p, v in pol.items()}
            self._recv_timeout = float(tr["recv_timeout"])
            if mode == "inprocess":
                self.configs = {}
                return
            from ..launcher import launch_local

            atexit.register(self.close)  # a forgotten close() (or a notebook kernel shutting down) leaves no process
            self._fed = launch_local(self.root, parties=spec, tables=extra, policy=pol, transport=tr,
                                     env=_child_env(), timeout=timeout)
            self.configs = dict(self._fed.configs)
        except BaseException:
            self.close()
            raise

    # -- jobs
    def _party(self) -> PartyClient:
        if self.mode == "inprocess":
            raise ConfigError("mode='inprocess' runs each job to its end in run(); submit/follow/cancel need "
                              "mode='processes'")
        if self._client is None:
            self._client = PartyClient(self.configs[self.guest])
        return self._client

    def job(self, steps, *, parties: Iterable[str] | None = None, roles: Mapping[str, str] | None = None,
            name: str = "job", purpose: str | None = "credit-risk-model"):
        """A :class:`~fedcredit.config.JobSpec` from steps (or a job TOML path, or a JobSpec as is).

        Parameters
        ----------
        steps : list of Step or (kind, name, params), or path, or JobSpec
        parties : iterable of str, optional
            Who takes part (default: every party with a table, plus any party ``roles`` names).
        roles : dict, optional
            ``{party: role}`` overriding the default (the label holder ``guest``, others ``host``); e.g.
            ``{"supervisor": "arbiter"}`` or, for :func:`fedavg`, ``client``/``aggregator``.
        """
        from ..config import JobSpec, load_job

        if isinstance(steps, JobSpec):
            return steps
        if isinstance(steps, (str, os.PathLike)):
            return load_job(steps)
        roles = dict(roles or {})
        who = list(parties) if parties is not None else [p for p in self.parties if p in self.table_paths or p in roles]
        bad = [p for p in [*who, *roles] if p not in self.parties]
        if bad:
            raise ConfigError(f"unknown part(y/ies) {', '.join(sorted(set(bad)))}; parties: {', '.join(self.parties)}")
        full = {p: roles.get(p, "guest" if p == self.guest else "host") for p in who}
        return build_job(steps, roles=full, tables={p: ("credit" if p in self.table_paths else None) for p in who},
                         name=name, purpose=purpose)

    def submit(self, steps, **kwargs) -> str:
        """Submit a job (see :meth:`job` for the arguments); returns its id without waiting."""
        return self._party().submit(self.job(steps, **kwargs))

    def follow(self, job_id: str, *, progress: bool | Callable[[dict], None] = True) -> JobResult:
        """Wait for job ``job_id`` to end (see :meth:`PartyClient.follow`)."""
        return self._with_workdirs(self._party().follow(job_id, progress=progress))

    def _with_workdirs(self, res: JobResult) -> JobResult:
        # every party's state directory is under this federation's root: show them all
        res.workdirs = {p: d for p in self.parties if (d := self.root / "state" / p / "jobs" / res.job_id).is_dir()}
        return res

    def cancel(self, job_id: str, reason: str = "cancelled from Python") -> str:
        return self._party().cancel(job_id, reason)

    def jobs(self, limit: int = 20) -> list[dict]:
        """The initiator's jobs (newest first)."""
        if self.mode == "inprocess":
            return [dict(j) for j in self._history[:limit]]
        return self._party().jobs(limit)

    def run(self, steps, *, progress: bool | Callable[[dict], None] = True, **kwargs) -> JobResult:
        """Run a job to its end and return its :class:`JobResult`.

        Parameters
        ----------
        steps : list of Step, or a job TOML path, or JobSpec
            E.g. ``[psi(), binning(max_bins=10), secureboost(n_trees=5)]``.
        progress : bool or callable, default=True
            True: print each party's progress lines (live in a notebook's output); a callable gets
            each event dict; False: silent.
        **kwargs
            ``parties``, ``roles``, ``name``, ``purpose`` as in :meth:`job`.
        """
        spec = self.job(steps, **kwargs)
        if self.mode == "inprocess":
            from ..party.checks import check_steps

            problems = check_steps(spec)  # as a party does at submission: every mistake before the first step
            if problems:
                raise ConfigError(f"{spec.source}: " + "; ".join(problems), [f"{spec.source}: {p}" for p in problems])
            return self._run_inprocess(spec, progress)
        return self._with_workdirs(self._party().run(spec, progress=progress))

    def _run_inprocess(self, spec, progress) -> JobResult:
        """Every party's side of every step in its own thread, over the in-memory channel (api/inprocess.py)."""
        from .inprocess import run_inprocess

        return run_inprocess(self, spec, progress)

    # -- life cycle
    def close(self) -> None:
        """Stop the party processes and (unless ``keep`` or a ``workdir`` was given) remove the working directory."""
        atexit.unregister(self.close)
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._fed is not None:
            self._fed.stop()
            self._fed = None
        if self._own_root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalFederation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        running = self._fed is not None
        return (f"LocalFederation(parties={self.parties}, guest={self.guest!r}, mode={self.mode!r}, "
                f"root={str(self.root)!r}, running={running})")


def _child_env() -> dict[str, str]:
    """Party processes import this very fedcredit (also when it is not installed, e.g. a checkout on sys.path)."""
    here = str(Path(__file__).resolve().parents[1])
    pp = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join([here, pp]) if pp else here}


def local_federation(tables: Mapping[str, Any], *, labels: Mapping[str, str] | None = None, mode: str = "processes",
                     workdir: str | os.PathLike | None = None, keep: bool = False, timeout: float = 60.0,
                     policy: Mapping[str, Mapping[str, Any]] | None = None,
                     transport: Mapping[str, Any] | None = None) -> LocalFederation:
    """Start a federation on this machine: one party process per entry of ``tables``.

    Parameters
    ----------
    tables : dict
        ``{party: table}``; a table is a pandas DataFrame, a numpy structured array or a CSV / CSV.gz /
        Parquet path, with an ``id`` column. ``None`` makes a party without data (an arbiter or an
        aggregator). E.g. ``fedcredit.datasets.load_credit3()``.
    labels : dict, optional
        ``{party: label column}``: the label holder (guest), who submits the jobs.
    mode : {"processes", "inprocess"}, default="processes"
        ``"processes"``: one ``fedcredit party serve`` process per party over mutual TLS on loopback
        (policy checks, audit logs, HTML reports: a real deployment on one machine). ``"inprocess"``: every
        party's side of each step in a thread of this process over the in-memory channel: the same
        step functions, real key sizes and the same messages (serialized, counted in
        ``bytes_on_wire``), without processes, TLS, policy checks or reports; for fast experiments.
    workdir : path, optional
        Keep certificates, configs, tables, state and logs here (default: a temporary directory,
        removed by :meth:`LocalFederation.close` unless ``keep``).
    timeout : float, default=60
        Seconds to wait for every party to be healthy.
    policy : dict, optional
        Per party, ``[policy]`` keys overriding the defaults (every step kind allowed; the guest proposes).
    transport : dict, optional
        ``[transport]`` keys for every party.

    Returns
    -------
    LocalFederation
        Running; call :meth:`~LocalFederation.run` and finally :meth:`~LocalFederation.close` (or use ``with``).
    """
    return LocalFederation(tables, labels=labels, mode=mode, workdir=workdir, keep=keep, timeout=timeout,
                           policy=policy, transport=transport)
