"""The party config's frozen dataclasses (loaded by :func:`fedcredit.config.load_party_config`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType

from ._checker import parse_address

__all__ = [
    "TlsConfig",
    "TableConfig",
    "ScoringPolicy",
    "PrivacyPolicy",
    "ApprovalRule",
    "ConsoleConfig",
    "Policy",
    "TransportConfig",
    "ComputeConfig",
    "PartyConfig",
]


@dataclass(frozen=True)
class TlsConfig:
    """PEM files for mutual TLS (see :mod:`fedcredit.certs`)."""

    ca: Path
    cert: Path
    key: Path

    def __repr__(self) -> str:
        return f"TlsConfig(ca={str(self.ca)!r}, cert={str(self.cert)!r}, key=<path hidden>)"


@dataclass(frozen=True)
class TableConfig:
    """One of this party's tables.

    Attributes
    ----------
    name : str
        The name jobs use to pick it.
    path : Path
        CSV or Parquet file.
    id_column : str
    label_column : str or None
        Only the label holder has one.
    columns : tuple of str or None
        Feature columns to load (None: every column but id and label).
    categorical : tuple of str
        Integer-coded columns to treat as categorical (text columns are anyway).
    pos_label : str, int, float or None
        The label value meaning the event (default); None: the label is 0/1.
    aligned_by : str or None
        Declares the table's rows already aligned with the other parties'
        tables (the name of that alignment); the parties verify it before a
        job without PSI runs (see docs/party.md).
    monotone : mapping of str to int, or None
        ``monotone = { pay_0 = 1 }``: this party's monotone constraints on its
        columns (+1 increasing, -1 decreasing), used by SecureBoost.
    """

    name: str
    path: Path
    id_column: str = "id"
    label_column: str | None = None
    columns: tuple[str, ...] | None = None
    categorical: tuple[str, ...] = ()
    pos_label: str | int | float | None = None
    aligned_by: str | None = None
    monotone: Mapping[str, int] | None = None


@dataclass(frozen=True)
class ScoringPolicy:
    """``[policy.scoring]``: who may score applicants with this party's model parts, and how often.

    Attributes
    ----------
    requesters : tuple of str or None
        Peers allowed to send scoring requests; None (key absent) means the
        parties in ``[policy].proposers``.
    purposes : tuple of str or None
        Purposes an authorization may carry; None allows any non-empty purpose.
    max_requests_per_minute : int
        Per requester (token bucket, refilled continuously).
    max_ids_per_minute : int
        Applicants per requester per minute (token bucket).
    max_batch : int
        Largest number of applicants in one request.
    head_exchange_seconds : float
        How often this party exchanges audit heads with its peers (0 = never).
    reveal_reasons : bool
        Send the guest this party's per-applicant, per-feature reason
        contributions (hetero LR; default False: the guest learns only the
        hosts' summed contribution, see docs/scoring.md).
    """

    requesters: tuple[str, ...] | None = None
    purposes: tuple[str, ...] | None = None
    max_requests_per_minute: int = 600
    max_ids_per_minute: int = 1_000_000
    max_batch: int = 100_000
    head_exchange_seconds: float = 60.0
    reveal_reasons: bool = False


@dataclass(frozen=True)
class PrivacyPolicy:
    """``[policy.privacy]``: the least protection this party accepts in a job's steps (docs/privacy.md).

    Checked at proposal time against the step parameters (defaults included);
    a job below any of them is refused with the reason. Unset keys require nothing.

    Attributes
    ----------
    max_label_epsilon : float or None
        ``secureboost`` and ``binning`` steps must use label DP
        (``label_epsilon`` set) with ``label_epsilon`` at most this. (The
        issue's ``min_label_epsilon``: a minimum protection is a maximum epsilon.)
    min_node_rows : int or None
        ``secureboost`` steps: ``min_node_rows`` at least this.
    min_guest_only_trees : int or None
        ``secureboost`` steps: at least this many guest-only first trees.
    min_bin_count : int or None
        ``binning`` steps: ``min_bin_count`` at least this.
    min_batch_size : int or None
        ``hetero_lr`` steps: ``batch_size`` at least this (full batch always passes).
    """

    max_label_epsilon: float | None = None
    min_node_rows: int | None = None
    min_guest_only_trees: int | None = None
    min_bin_count: int | None = None
    min_batch_size: int | None = None


@dataclass(frozen=True)
class ApprovalRule:
    """One ``[[policy.approval_rules]]`` entry: jobs it matches are approved ``approval`` ("auto"/"manual").

    A missing ``proposer``/``purpose``/``max_steps`` matches anything; the first matching rule wins.
    """

    approval: str
    proposer: str | None = None
    purpose: str | None = None
    max_steps: int | None = None

    def matches(self, proposer: str, purpose: str, n_steps: int) -> bool:
        return ((self.proposer is None or self.proposer == proposer)
                and (self.purpose is None or self.purpose == purpose)
                and (self.max_steps is None or n_steps <= self.max_steps))


@dataclass(frozen=True)
class ConsoleConfig:
    """``[console]``: the operator's web console and ``/metrics`` (off unless ``listen`` is set)."""

    listen: str | None = None


@dataclass(frozen=True)
class Policy:
    """What this party agrees to.

    Attributes
    ----------
    proposers : tuple of str
        Parties allowed to propose jobs to this one (this party itself may
        always start its own jobs).
    allowed_steps : tuple of str or None
        Step kinds a job may contain; None allows every known kind.
    columns : mapping of str to tuple of str, or None
        For a proposing peer, the columns of this party's tables a job from it
        may use (``"*"`` = all). Key ``"*"`` applies to peers not listed.
        None (no ``[policy.columns]`` table) puts no restriction.
    min_intersection : int
        Smallest PSI intersection this party accepts (enforced by the PSI step).
    purposes : tuple of str or None
        If set, a job must declare one of these purposes.
    share_feature_names : bool or tuple of str
        Publish the names of all (True) or the listed columns to the label
        holder of a SecureBoost job (its importance report); unpublished
        features appear there as ``<party>:feature#k``.
    max_concurrent_jobs : int
        Proposals beyond this many running jobs are refused (a simple rate limit).
    reasons : mapping of str to str
        ``[policy] reasons = { column = "text" }``: the reason text this party
        publishes for its columns in applicants' reason codes (others appear
        as ``party:feature#k``, or in the hosts' aggregate reason).
    privacy : PrivacyPolicy
        Minimum protection required of the job's steps.
    """

    proposers: tuple[str, ...] = ()
    allowed_steps: tuple[str, ...] | None = None
    columns: Mapping[str, tuple[str, ...]] | None = None
    min_intersection: int = 1
    purposes: tuple[str, ...] | None = None
    share_feature_names: bool | tuple[str, ...] = False
    max_concurrent_jobs: int = 2
    scoring: ScoringPolicy = field(default_factory=ScoringPolicy)
    reasons: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    privacy: PrivacyPolicy = field(default_factory=PrivacyPolicy)
    approval: str = "auto"
    approval_rules: tuple["ApprovalRule", ...] = ()
    approval_expiry_hours: float = 24.0

    def approval_for(self, proposer: str, purpose: str, n_steps: int) -> str:
        """``"auto"`` or ``"manual"`` for a job: the first matching ``[[policy.approval_rules]]``, else ``approval``."""
        for r in self.approval_rules:
            if r.matches(proposer, purpose, n_steps):
                return r.approval
        return self.approval

    def columns_for(self, peer: str) -> tuple[str, ...] | None:
        """Columns a job proposed by ``peer`` may use; None = no restriction, () = none."""
        if self.columns is None:
            return None
        cols = self.columns.get(peer, self.columns.get("*", ()))
        return None if "*" in cols else tuple(cols)


@dataclass(frozen=True)
class TransportConfig:
    """Network limits (seconds, sizes, and per-peer rates on the Federation service)."""

    deadline: float = 60.0
    retries: int = 5
    recv_timeout: float = 600.0
    max_message_mib: int = 256
    peer_messages_per_second: float = 2000.0
    peer_burst: int = 4000
    peer_inflight: int = 16
    orphan_seconds: float = 120.0
    peer_proposals_per_minute: int = 30
    max_proposal_kib: int = 64


@dataclass(frozen=True)
class ComputeConfig:
    """Where one party's heavy computation runs (see ``docs/compute.md``).

    ``local``: this process's pool of ``workers`` processes (default: the usable
    cores). ``dask``: the party's own Dask cluster at ``scheduler``
    (``tcp://`` on loopback or a trusted network with ``insecure``, else
    ``tls://`` with ``tls_ca``/``tls_cert``/``tls_key``); without a scheduler,
    a local cluster of ``workers`` processes on loopback.
    """

    backend: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    retries: int = 1
    connect_timeout: float = 30.0
    task_timeout: float = 3600.0
    partition_rows: int = 100_000

    def summary(self) -> dict:
        """JSON-able view (paths as strings; no key material is ever here)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class PartyConfig:
    """A party's whole configuration (see the module docstring for the TOML)."""

    path: Path
    name: str
    listen: str
    state_dir: Path
    tls: TlsConfig | None
    insecure: bool
    peers: Mapping[str, str]
    tables: Mapping[str, TableConfig]
    policy: Policy
    transport: TransportConfig = field(default_factory=TransportConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    log_level: str = "INFO"
    log_format: str = "text"
    console: ConsoleConfig = field(default_factory=ConsoleConfig)

    @property
    def connect_address(self) -> str:
        """Address a local client dials to reach this party (a wildcard listen becomes loopback)."""
        host, port = parse_address(self.listen)
        if host in ("0.0.0.0", "", "::", "[::]"):
            host = "127.0.0.1"
        return f"{host}:{port}"

    def summary(self) -> dict:
        """JSON-able view without key material (for reports and logs)."""
        return {
            "name": self.name,
            "listen": self.listen,
            "peers": dict(self.peers),
            "tables": {n: {"path": str(t.path), "id_column": t.id_column, "label_column": t.label_column,
                           "columns": list(t.columns) if t.columns else None,
                           **({"categorical": list(t.categorical)} if t.categorical else {}),
                           **({"pos_label": t.pos_label} if t.pos_label is not None else {}),
                           **({"aligned_by": t.aligned_by} if t.aligned_by else {})}
                       for n, t in self.tables.items()},
            "policy": {
                "proposers": list(self.policy.proposers),
                "allowed_steps": None if self.policy.allowed_steps is None else list(self.policy.allowed_steps),
                "columns": None if self.policy.columns is None else {k: list(v) for k, v in self.policy.columns.items()},
                "min_intersection": self.policy.min_intersection,
                "purposes": None if self.policy.purposes is None else list(self.policy.purposes),
                "max_concurrent_jobs": self.policy.max_concurrent_jobs,
                "scoring": asdict(self.policy.scoring),
                "privacy": asdict(self.policy.privacy),
                "approval": self.policy.approval,
                "approval_rules": [asdict(r) for r in self.policy.approval_rules],
                "approval_expiry_hours": self.policy.approval_expiry_hours,
            },
            "transport": asdict(self.transport),
            "compute": self.compute.summary(),
            "tls": self.tls is not None,
        }

