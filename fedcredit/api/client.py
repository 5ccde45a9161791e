"""The job API against one running party (its own operator's view): :class:`PartyClient`, :func:`connect`."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .results import JobResult, StepResult
from .steps import build_job

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PartyClient", "connect"]


def _applicants(obj, id_column: str):
    """(ids, X or None, feature names) from ids, a DataFrame, a structured array or a file."""
    import numpy as np

    if isinstance(obj, (str, os.PathLike)):
        from ..data import load_table

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


class PartyClient:
    """Jobs through one running party (its own operator's view): submit, follow, run, list, cancel.

    Connects to the party of ``config`` with that party's own certificate, as the ``fedcredit``
    CLI does (see :func:`connect`).
    """

    def __init__(self, config: str | os.PathLike):
        from ..config import load_party_config

        self.config_path = Path(config)
        self.config = load_party_config(self.config_path)
        self.name = self.config.name
        self._state_dir = Path(self.config.state_dir)
        self._client = self._ch = None

    def _control(self):
        if self._client is None:
            from ..certs import TlsFiles
            from ..transport.control import ControlClient, dial

            cfg = self.config
            tls = TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
            self._ch = dial(cfg.connect_address, target=self.name, tls=tls, me=self.name)
            self._client = ControlClient(self._ch, self.name)
        return self._client

    def job(self, steps, *, roles: Mapping[str, str] | None = None, tables: Mapping[str, str | None] | None = None,
            name: str = "job", purpose: str | None = "credit-risk-model", **_ignored):
        """A JobSpec: ``steps`` as a list (with ``roles``), a job TOML path, or a JobSpec as is."""
        from ..config import JobSpec, load_job

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
        from ..progress import EventDisplay as _Display
        from ..progress import summarize_report as _summarize, wait_report as _wait_report

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

        from ..own_party import own_channel
        from ..transport.scoring import ScoringClient

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
