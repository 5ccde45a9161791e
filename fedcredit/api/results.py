"""A finished job as objects: :class:`JobResult`, :class:`StepResult`, and :class:`FederatedModel` for scoring."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, FedcreditError

if TYPE_CHECKING:
    import numpy as np

    from .client import PartyClient

__all__ = ["StepResult", "JobResult", "FederatedModel"]


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
        from ..protocols.secureboost.model import GUEST_FILE, GuestModel

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
