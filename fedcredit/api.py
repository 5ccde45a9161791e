"""A federation on this machine, from Python: tables in, jobs built in Python, results as objects.

>>> import fedcredit
>>> from fedcredit import psi, binning, secureboost
>>> tables = fedcredit.datasets.load_credit3()                           # doctest: +SKIP
>>> with fedcredit.local_federation(tables, labels={"bank": "default_next_month"}) as fed:  # doctest: +SKIP
...     res = fed.run([psi(), binning(max_bins=10), secureboost(n_trees=5)])
>>> res.metrics["secureboost"]["validation"]["auc"], res.bytes_on_wire   # doctest: +SKIP

:func:`local_federation` starts one ``fedcredit party serve`` **process** per
party on loopback, with mutual TLS and throwaway certificates (the launcher of
``fedcredit demo``, :func:`fedcredit.launcher.launch_local`): the same code path,
policy checks, audit logs and reports as a real deployment, only on one
machine. The tables (pandas DataFrames, numpy structured arrays or file paths)
are written to the federation's working directory as CSV files, because a
party process reads its own files; nothing is pickled or shared between the
processes. Jobs are lists of steps built with :func:`psi`, :func:`binning`,
:func:`select`, :func:`secureboost`, :func:`hetero_lr`, :func:`scorecard`,
:func:`evaluate`, :func:`fedavg` (or a job TOML path, or a
:class:`~fedcredit.config.JobSpec`); they map one to one onto the job file
format (``[[steps]] kind, name, params``), and the parties validate them as
they validate any proposed job.

This is a simulation: the working directory holds every party's tables,
keys and state. Use it for experiments and notebooks, not for data that must
stay apart (for that, each institution runs its own party:
``fedcredit init party``).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from .errors import ConfigError, FedcreditError

#: ``local_federation(mode=...)``: party processes over mTLS, or every role in this process over memory.
MODES = ("processes", "inprocess")

__all__ = ["MODES", "Step", "StepResult", "JobResult", "FederatedModel", "LocalFederation", "local_federation",
           "PartyClient", "connect", "build_job", "handshake", "psi", "binning", "select", "secureboost", "hetero_lr",
           "scorecard", "evaluate", "fedavg"]


# --------------------------------------------------------------------------- steps

@dataclass(frozen=True)
class Step:
    """One step of a job: ``kind`` (the protocol), ``name`` (unique in the job) and its parameters.

    The same fields as a ``[[steps]]`` entry of a job file; the parties check ``params`` when the job
    is proposed (unknown or out-of-range parameters are refused before any step runs).
    """

    kind: str
    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "params": dict(self.params)}


def _step(kind: str, name: str | None, params: dict) -> Step:
    return Step(kind, name or kind, {k: v for k, v in params.items() if v is not None})


def handshake(*, name: str | None = None) -> Step:
    """Every party reports its row count to the initiator (a connectivity check)."""
    return _step("handshake", name, {})


def psi(*, name: str | None = None, **params) -> Step:
    """Private set intersection: align the parties' rows on their ids (ECDH PSI; docs/psi.md)."""
    return _step("psi", name, params)


def binning(*, max_bins: int | None = None, name: str | None = None, **params) -> Step:
    """Bin every feature; WOE and IV from the guest's encrypted labels (docs/secureboost.md, binning)."""
    return _step("binning", name, {"max_bins": max_bins, **params})


def select(*, iv_threshold: float | None = None, name: str | None = None, **params) -> Step:
    """Keep the features whose IV (from ``binning``) is at least ``iv_threshold``."""
    return _step("select", name, {"iv_threshold": iv_threshold, **params})


def secureboost(*, n_trees: int | None = None, max_depth: int | None = None, learning_rate: float | None = None,
                name: str | None = None, **params) -> Step:
    """Vertical SecureBoost (Paillier-encrypted gradients; docs/secureboost.md). Other parameters: ``**params``."""
    return _step("secureboost", name, {"n_trees": n_trees, "max_depth": max_depth, "learning_rate": learning_rate,
                                       **params})


def hetero_lr(*, mode: str | None = None, backend: str | None = None, features: str | None = None,
              max_epochs: int | None = None, name: str | None = None, **params) -> Step:
    """Vertical logistic regression (docs/hetero_lr.md).

    ``mode`` ``"two_party"`` or ``"coordinated"`` (with an arbiter), ``backend`` ``"paillier"`` or ``"ckks"``,
    ``features`` ``"standardized"`` or ``"woe"`` (after a binning step).
    """
    return _step("hetero_lr", name, {"mode": mode, "backend": backend, "features": features,
                                     "max_epochs": max_epochs, **params})


def scorecard(*, pdo: float | None = None, base_score: float | None = None, base_odds: float | None = None,
              name: str | None = None, **params) -> Step:
    """Points per bin from the LR model (each party keeps its own bins' points)."""
    return _step("scorecard", name, {"pdo": pdo, "base_score": base_score, "base_odds": base_odds, **params})


def evaluate(*, name: str | None = None, **params) -> Step:
    """AUC, KS and score deciles of the latest model on the guest's validation rows."""
    return _step("evaluate", name, params)


def fedavg(*, mode: str | None = None, rounds: int | None = None, name: str | None = None, **params) -> Step:
    """Horizontal FedAvg (``kind = "homo"``; ``mode`` plain, secagg or ckks; docs/homo.md)."""
    return _step("homo", name or "fedavg", {"mode": mode, "rounds": rounds, **params})


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class StepResult:
    """One step of a finished job, as the initiator's report has it.

    Attributes
    ----------
    name, kind, state : str
    seconds : float
        The slowest party's time in the step.
    bytes_on_wire : int
        Bytes every party sent in this step.
    messages : int
    result : dict
        The initiator's result of the step (e.g. ``validation`` AUC/KS, trees, IVs).
    """

    name: str
    kind: str
    state: str
    seconds: float
    bytes_on_wire: int
    messages: int
    result: dict

    @property
    def metrics(self) -> dict:
        """AUC/KS figures of the step (top-level and under ``train``/``validation``/``test``)."""
        return _metrics(self.result)


def _metrics(result: Mapping) -> dict:
    out: dict[str, Any] = {}
    for k, v in result.items():
        if isinstance(v, Mapping) and k in ("train", "validation", "test"):
            sub = {m: v[m] for m in ("auc", "ks", "n") if m in v}
            if sub:
                out[k] = sub
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and ("auc" in k or k == "ks" or k.endswith("_ks")):
            out[k] = v
    return out


@dataclass
class JobResult:
    """A finished job.

    Attributes
    ----------
    job_id, name, state : str
    reason : str
        Why it failed (empty on success).
    seconds : float
        Submission to the end.
    steps : dict of str to StepResult
        In job order.
    report_path : Path or None
        The initiator's ``report.html`` (ROC, KS, deciles, IV, traffic), or None.
    report : dict
        The initiator's ``report.json``.
    workdirs : dict of str to Path
        ``{party: state/<party>/jobs/<job_id>}``: each party's artifacts (model parts, scorecards) by step.
    """

    job_id: str
    name: str
    state: str
    reason: str
    seconds: float
    steps: dict[str, StepResult]
    report_path: Path | None
    report: dict
    workdirs: dict[str, Path]
    client: "PartyClient | None" = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"

    @property
    def metrics(self) -> dict:
        """``{step: metrics}`` for the steps that report AUC/KS."""
        return {n: m for n, s in self.steps.items() if (m := s.metrics)}

    @property
    def bytes_on_wire(self) -> int:
        """Bytes every party sent, over all steps."""
        return sum(s.bytes_on_wire for s in self.steps.values())

    def model(self, step: str | None = None) -> "FederatedModel":
        """The model trained by ``step`` (default: the last secureboost or hetero_lr step), for scoring.

        Scoring goes through the federation's scoring service (each party keeps its model part), so it
        needs a running party: a job run with ``mode="processes"`` or through :func:`connect`.
        """
        models = [n for n, s in self.steps.items() if s.kind in ("secureboost", "hetero_lr") and s.state == "succeeded"]
        name = step if step is not None else (models[-1] if models else None)
        if name is None or name not in models:
            raise ConfigError(f"job {self.name!r} has no trained model step {step!r}" if step else
                              f"job {self.name!r} trained no secureboost or hetero_lr model")
        if self.client is None:
            raise ConfigError("scoring needs a running party: run the job with mode='processes' or through connect()")
        return FederatedModel(f"{self.job_id}/{name}", self.client)

    def validation_seed(self, step: str = "secureboost") -> int | None:
        """The guest's secret validation-split seed of a SecureBoost ``step``, from its own model part.

        The guest draws the seed itself and never sends it (hosts must not be
        able to replay the split, issue #23); to rerun the plaintext reference
        on the same rows, pass it on, e.g. to
        :func:`fedcredit.baselines.centralized_baselines` as ``sbt_validation_seed``.
        None when no guest part of ``step`` is under :attr:`workdirs`.
        """
        from .protocols.secureboost.model import GUEST_FILE, GuestModel

        for d in self.workdirs.values():
            path = Path(d) / step / GUEST_FILE
            if path.is_file():
                return GuestModel.load(path).validation_seed
        return None

    def raise_for_state(self) -> "JobResult":
        """Raise :class:`~fedcredit.errors.FedcreditError` unless the job succeeded; returns ``self``."""
        if not self.ok:
            raise FedcreditError(f"job {self.name!r} ({self.job_id}) {self.state}: {self.reason}")
        return self

    def summary(self) -> str:
        """A plain-text table: one row per step (state, seconds, bytes, AUC/KS)."""
        rows = [f"job {self.name} ({self.job_id}) {self.state} in {self.seconds:.1f}s"
                + (f": {self.reason}" if self.reason else "")]
        rows.append(f"  {'step':<14} {'kind':<12} {'state':<10} {'seconds':>8} {'bytes':>12}  metrics")
        for s in self.steps.values():
            m = ", ".join(f"{k} " + (" ".join(f"{a}={b:.4f}" for a, b in v.items() if isinstance(b, float))
                                     if isinstance(v, dict) else f"{v:.4f}") for k, v in s.metrics.items())
            rows.append(f"  {s.name:<14} {s.kind:<12} {s.state:<10} {s.seconds:>8.2f} {s.bytes_on_wire:>12,}  {m}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (f"JobResult(name={self.name!r}, state={self.state!r}, seconds={self.seconds:.1f}, "
                f"steps={list(self.steps)}, bytes_on_wire={self.bytes_on_wire:,})")

    def _repr_html_(self) -> str:  # notebooks
        import html

        return "<pre>" + html.escape(self.summary()) + "</pre>"


class FederatedModel:
    """A model part held by each party, scored through the federation (the scoring service, docs/scoring.md).

    Every request carries the authorization fields the parties' scoring policies require: a
    ``purpose`` and a ``consent`` id (the applicant's consent record), and is audited by every party.

    Attributes
    ----------
    model_id : str
        ``<job_id>/<step>``, as ``fedcredit score --model`` takes it.
    """

    def __init__(self, model_id: str, client: "PartyClient"):
        self.model_id = model_id
        self.client = client

    def predict_proba(self, applicants, *, purpose: str, consent: str, id_column: str = "id",
                      batch: int = 10_000) -> "np.ndarray":
        """Probabilities of default, shape (n, 2) (columns: repaid, default), sklearn-style.

        Parameters
        ----------
        applicants : list of ids, DataFrame, structured array or CSV path
            Ids, optionally with the label holder's own feature columns for new applicants (without
            them it looks the ids up in its table; hosts always use their own tables).
        purpose, consent : str
            The authorization every party checks and records (e.g. ``"loan-application"``, ``"CR-2024-0001"``).
        """
        import numpy as np

        p = self.client.score(self.model_id, applicants, purpose=purpose, consent=consent, id_column=id_column,
                              batch=batch)
        return np.column_stack([1.0 - p, p])

    def __repr__(self) -> str:
        return f"FederatedModel({self.model_id!r}, via party {self.client.name!r})"


def _applicants(obj, id_column: str):
    """(ids, X or None, feature names) from ids, a DataFrame, a structured array or a file."""
    import numpy as np

    if isinstance(obj, (str, os.PathLike)):
        from .data import load_table

        t = load_table(obj, party="applicants", id_column=id_column)
        return [str(i) for i in t.ids], (t.X if t.columns else None), list(t.columns)
    if hasattr(obj, "to_csv") and hasattr(obj, "columns"):  # DataFrame
        if id_column not in obj.columns:
            raise ConfigError(f"applicants have no {id_column!r} column")
        feats = [c for c in obj.columns if c != id_column]
        X = obj[feats].to_numpy(dtype=np.float64) if feats else None
        return [str(i) for i in obj[id_column]], X, feats
    arr = np.asarray(obj)
    if arr.dtype.names:
        if id_column not in arr.dtype.names:
            raise ConfigError(f"applicants have no {id_column!r} column")
        feats = [c for c in arr.dtype.names if c != id_column]
        X = np.column_stack([arr[c].astype(np.float64) for c in feats]) if feats else None
        return [str(i) for i in arr[id_column]], X, feats
    return [str(i) for i in arr.ravel()], None, []


# --------------------------------------------------------------------------- tables

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


# --------------------------------------------------------------------------- the federation

def _steps_to_dicts(steps) -> list[dict]:
    out = []
    for s in steps:
        if isinstance(s, Step):
            out.append(s.to_dict())
        elif isinstance(s, (tuple, list)) and len(s) in (2, 3):
            out.append({"kind": s[0], "name": s[1], "params": dict(s[2]) if len(s) == 3 else {}})
        elif isinstance(s, Mapping):
            out.append(dict(s))
        else:
            raise ConfigError(f"a step must be a Step (fedcredit.psi(), ...), (kind, name, params) or a dict; "
                              f"got {type(s).__name__}")
    return out


#: Roles that read a table by default (``table = "credit"``) when a job is built in Python.
_DATA_ROLES = ("guest", "host", "client")


def build_job(steps, *, roles: Mapping[str, str], tables: Mapping[str, str | None] | None = None,
              name: str = "job", purpose: str | None = "credit-risk-model"):
    """A checked :class:`~fedcredit.config.JobSpec` from steps built in Python.

    Parameters
    ----------
    steps : list of Step, (kind, name, params) or dict
    roles : dict
        ``{party: role}`` of every participant.
    tables : dict, optional
        ``{party: table name in that party's config}``; default ``"credit"`` for guest, host and
        client, none for arbiter and aggregator.
    name, purpose : str
    """
    from .config import job_from_dict

    tables = dict(tables or {})
    parties = {}
    for p, role in roles.items():
        d: dict[str, Any] = {"role": role}
        t = tables.get(p, "credit" if role in _DATA_ROLES else None)
        if t is not None:
            d["table"] = t
        parties[p] = d
    job: dict[str, Any] = {"name": name}
    if purpose:
        job["purpose"] = purpose
    data = json.loads(json.dumps({"job": job, "parties": parties, "steps": _steps_to_dicts(steps)}))
    return job_from_dict(data, source=f"<job {name!r} built in Python>")


class PartyClient:
    """Jobs through one running party (its own operator's view): submit, follow, run, list, cancel.

    Connects to the party of ``config`` with that party's own certificate, as the ``fedcredit``
    CLI does (see :func:`connect`).
    """

    def __init__(self, config: str | os.PathLike):
        from .config import load_party_config

        self.config_path = Path(config)
        self.config = load_party_config(self.config_path)
        self.name = self.config.name
        self._state_dir = Path(self.config.state_dir)
        self._client = self._ch = None

    def _control(self):
        if self._client is None:
            from .certs import TlsFiles
            from .transport.control import ControlClient, dial

            cfg = self.config
            tls = TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
            self._ch = dial(cfg.connect_address, target=self.name, tls=tls, me=self.name)
            self._client = ControlClient(self._ch, self.name)
        return self._client

    def job(self, steps, *, roles: Mapping[str, str] | None = None, tables: Mapping[str, str | None] | None = None,
            name: str = "job", purpose: str | None = "credit-risk-model", **_ignored):
        """A JobSpec: ``steps`` as a list (with ``roles``), a job TOML path, or a JobSpec as is."""
        from .config import JobSpec, load_job

        if isinstance(steps, JobSpec):
            return steps
        if isinstance(steps, (str, os.PathLike)):
            return load_job(steps)
        if not roles:
            raise ConfigError("a job built in Python needs roles={party: role} (this party is usually the guest)")
        return build_job(steps, roles=roles, tables=tables, name=name, purpose=purpose)

    def submit(self, steps, **kwargs) -> str:
        """Submit a job (see :meth:`job` for the arguments); returns its id without waiting."""
        spec = self.job(steps, **kwargs)
        return self._control().submit(spec.to_json(), source=spec.source)

    def run(self, steps, *, progress: bool | Callable[[dict], None] = True, **kwargs) -> JobResult:
        """Submit a job, follow it to its end, return its :class:`JobResult` (``progress`` as in :meth:`follow`)."""
        spec = self.job(steps, **kwargs)
        t0 = time.time()
        job_id = self._control().submit(spec.to_json(), source=spec.source)
        return self.follow(job_id, progress=progress, _t0=t0)

    def follow(self, job_id: str, *, progress: bool | Callable[[dict], None] = True, _t0: float | None = None
               ) -> JobResult:
        """Wait for job ``job_id`` to end (printing progress), then return its result."""
        from .progress import EventDisplay as _Display
        from .progress import summarize_report as _summarize, wait_report as _wait_report

        client = self._control()
        t0 = time.time() if _t0 is None else _t0
        show = _Display(sys.stdout).event if progress is True else (progress or None)
        for e in client.watch(job_id):
            if show:
                show(e)
        elapsed = time.time() - t0
        row = client.list_jobs(job_id=job_id)[0]
        jdir = self._state_dir / "jobs" / job_id
        report = _wait_report(jdir / "report.json", row["state"]) or {"steps": [], "parties": {}}
        report.update(job_id=job_id, state=row["state"], reason=row["reason"])
        summ = _summarize(report, elapsed)
        steps = {s["step"]: StepResult(s["step"], s["kind"], s["state"], float(s["seconds"]), int(s["bytes_on_wire"]),
                                       int(s["messages"]), dict(s["result"] or {})) for s in summ["steps"]}
        html = jdir / "report.html"
        deadline = time.monotonic() + 60.0  # written (with its plots) right after report.json; slow on a busy machine
        while not html.exists() and (jdir / "report.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return JobResult(job_id, str(report.get("name") or row.get("name") or ""), row["state"], row["reason"] or "",
                         round(elapsed, 3), steps, html if html.exists() else None, report,
                         {self.name: jdir} if jdir.is_dir() else {}, client=self)

    def cancel(self, job_id: str, reason: str = "cancelled from Python") -> str:
        return self._control().cancel(job_id, reason)

    def score(self, model_id: str, applicants, *, purpose: str, consent: str, id_column: str = "id",
              batch: int = 10_000, timeout: float = 120.0) -> "np.ndarray":
        """Scores (probabilities) of ``applicants`` with model ``<job_id>/<step>``, as ``fedcredit score`` does.

        See :meth:`FederatedModel.predict_proba` for ``applicants``, ``purpose`` and ``consent``.
        """
        import numpy as np

        from .operator import own_channel
        from .transport.scoring import ScoringClient

        if not purpose or not consent:
            raise ConfigError("scoring needs purpose= and consent= (the authorization every party checks)")
        ids, X, feats = _applicants(applicants, id_column)
        ch = own_channel(self.config)
        out = []
        try:
            client = ScoringClient(ch, self.name, timeout=timeout)
            for k in range(0, len(ids), batch):
                sc, _ = client.score(model_id, ids[k:k + batch], consent_id=consent, purpose=purpose,
                                     guest_X=None if X is None else X[k:k + batch], feature_names=feats)
                out.append(sc)
        finally:
            ch.close()
        return np.concatenate(out) if out else np.empty(0)

    def jobs(self, limit: int = 20) -> list[dict]:
        """This party's jobs (newest first), as ``fedcredit jobs list`` shows them."""
        return self._control().list_jobs(limit=limit)

    def close(self) -> None:
        if self._ch is not None:
            self._ch.close()
            self._ch = self._client = None

    def __enter__(self) -> "PartyClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PartyClient(party={self.name!r}, address={self.config.connect_address!r})"


def connect(config: str | os.PathLike) -> PartyClient:
    """The job API against your own running party: ``connect("parties/bank.toml").run([...], roles=...)``.

    Parameters
    ----------
    config : path
        Your party's config (its certificate and key authenticate you, as for ``fedcredit run``).

    Returns
    -------
    PartyClient
    """
    return PartyClient(config)


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
        from .certs import check_party_name
        from .scaffold import inspect_table

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
            from .launcher import launch_local

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
        from .config import JobSpec, load_job

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
            from .party.checks import check_steps

            problems = check_steps(spec)  # as a party does at submission: every mistake before the first step
            if problems:
                raise ConfigError(f"{spec.source}: " + "; ".join(problems), [f"{spec.source}: {p}" for p in problems])
            return self._run_inprocess(spec, progress)
        return self._with_workdirs(self._party().run(spec, progress=progress))

    def _run_inprocess(self, spec, progress) -> JobResult:
        """Every party's side of every step in its own thread, over the in-memory channel (same step functions)."""
        import secrets
        import threading

        from .config import Policy
        from .progress import EventDisplay as _Display
        from .data import load_table
        from .protocols.context import StepContext
        from .protocols.registry import get_step
        from .transport.memory import MemoryHub

        job_id = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        roles = spec.roles
        hub = MemoryHub(list(roles))
        lock = threading.Lock()
        display = _Display(sys.stdout).event if progress is True else (progress or None)

        def emit(party: str, kind: str, state: str, step: str = "", message: str = "", fraction=None, detail=None):
            if display is not None:
                with lock:
                    display({"job_id": job_id, "party": party, "kind": kind, "state": state, "step": step,
                             "message": message, "fraction": fraction, "detail": detail or {}, "time": time.time()})

        per: dict[str, dict[str, dict]] = {p: {} for p in roles}
        errors: dict[str, tuple[str, BaseException]] = {}

        def work(party: str) -> None:
            ch = hub.channel(party, default_timeout=self._recv_timeout).sub(job_id)
            state: dict[str, Any] = {}
            step_name = ""
            try:
                me = spec.parties[party]
                data = None
                if me.table is not None:
                    if party not in self.table_paths:
                        raise ConfigError(f"party {party!r} has no table")
                    data = load_table(self.table_paths[party], party=party, label_column=self.labels.get(party),
                                      columns=me.columns)
                policy = Policy(min_intersection=self._min_intersection.get(party, 1))
                emit(party, "state", "running", message=f"{party} runs as {me.role}")
                for idx, st in enumerate(spec.steps):
                    step_name = st.name
                    workdir = self.root / "state" / party / "jobs" / job_id / st.name
                    workdir.mkdir(parents=True, exist_ok=True)
                    before = (dict(ch.stats.bytes), dict(ch.stats.messages))
                    emit(party, "step", "running", st.name, f"{st.name} ({st.kind}) started", detail={"kind": st.kind})
                    ctx = StepContext(
                        job_id=job_id, step=st.name, kind=st.kind, party=party, roles=roles, params=st.typed_params,
                        channel=ch.sub(st.name), data=state.get("table", data), state=state, workdir=workdir,
                        progress=lambda m, f=None, _s=st.name: emit(party, "progress", "running", _s, str(m)[:500], f),
                        policy=policy)
                    t0 = time.perf_counter()
                    result = get_step(st.kind)(ctx) or {}
                    seconds = time.perf_counter() - t0
                    sent = {k: v - before[0].get(k, 0) for k, v in ch.stats.bytes.items() if k[0] == "sent"}
                    msgs = {k: v - before[1].get(k, 0) for k, v in ch.stats.messages.items() if k[0] == "sent"}
                    per[party][st.name] = {"seconds": seconds, "bytes_sent": sum(sent.values()),
                                           "messages_sent": sum(msgs.values()),
                                           "result": json.loads(json.dumps(result, default=_json_default))}
                    emit(party, "step", "succeeded", st.name, f"{st.name} done in {seconds:.2f}s",
                         detail={"kind": st.kind, "seconds": seconds, "bytes_sent": per[party][st.name]["bytes_sent"]})
                emit(party, "state", "succeeded")
            except BaseException as exc:  # noqa: BLE001 - reported in the result, peers told at once
                errors[party] = (step_name, exc)
                ch.abort(f"{type(exc).__name__}: {exc}")
                emit(party, "state", "failed", step_name, f"{type(exc).__name__}: {exc}")

        t0 = time.time()
        threads = [threading.Thread(target=work, args=(p,), name=f"{job_id}-{p}", daemon=True) for p in roles]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        reason = ""
        if errors:
            from .errors import PeerError

            root = [(p, e) for p, e in errors.items() if not isinstance(e[1], PeerError)] or list(errors.items())
            root.sort(key=lambda item: item[0] != self.guest)  # the initiator's own error first, as a party reports
            party, (sname, exc) = root[0]
            where = f"step {sname!r} failed on {party}" if sname else f"job failed on {party}"
            reason = f"{where}: {exc}"
        steps = {}
        for st in spec.steps:
            rows = [per[p][st.name] for p in roles if st.name in per[p]]
            done = len(rows) == len(roles)
            failed = any(sname == st.name for sname, _ in errors.values())
            if not rows and not failed:
                continue
            init = per[self.guest if self.guest in roles else next(iter(roles))].get(st.name, {})
            steps[st.name] = StepResult(
                st.name, st.kind, "succeeded" if done and not failed else "failed",
                round(max([r["seconds"] for r in rows] or [0.0]), 3), sum(r["bytes_sent"] for r in rows),
                sum(r["messages_sent"] for r in rows), dict(init.get("result") or {}))
        state = "failed" if errors else "succeeded"
        report = {"job_id": job_id, "name": spec.name, "state": state, "reason": reason, "mode": "inprocess",
                  "job": spec.to_dict(), "parties": {p: {"steps": per[p]} for p in roles}}
        self._history.insert(0, {"job_id": job_id, "name": spec.name, "state": state, "reason": reason})
        workdirs = {p: self.root / "state" / p / "jobs" / job_id for p in roles
                    if (self.root / "state" / p / "jobs" / job_id).is_dir()}
        return JobResult(job_id, spec.name, state, reason, round(elapsed, 3), steps, None, report, workdirs)

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


def _json_default(o):
    # as the party runtime does for its step results (numpy values become plain JSON)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


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
