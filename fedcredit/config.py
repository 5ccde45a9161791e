"""Party and job configuration: TOML files loaded into frozen dataclasses.

Two kinds of file:

* a **party config** (``parties/bank.toml``): who this party is, where it
  listens, its TLS files, its peers, its tables and its policy;
* a **job file** (``jobs/demo.toml``): which parties take part in which role
  with which table, and the ordered steps with their parameters.

Every problem in a file is reported at once in one
:class:`~fedcredit.errors.ConfigError` whose ``problems`` each name the file
and the key (``parties/bank.toml: [peers].chain: ...``). Unknown keys are
errors (a typo must not silently fall back to a default). Relative paths are
resolved against the directory of the config file.

A party config::

    [party]
    name = "bank"
    listen = "127.0.0.1:7301"
    state_dir = "../state/bank"          # SQLite store, audit log, party.log, job dirs

    [tls]                                  # mutual TLS (required unless insecure = true)
    ca = "../certs/ca.crt"
    cert = "../certs/bank.crt"
    key = "../certs/bank.key"

    [peers]                                # every other party this one talks to
    chain = "127.0.0.1:7302"
    gov = "127.0.0.1:7303"

    [tables.credit]
    path = "../fedcredit/datasets/credit3/bank.csv.gz"
    id_column = "id"
    label_column = "default_next_month"
    # columns = ["limit_bal", "pay_0"]     # default: every other column
    # categorical = ["region"]             # integer-coded categories (text columns are categorical anyway)
    # pos_label = "bad"                    # the label's event value (default: the label is 0/1)
    # aligned_by = "applications-2024"     # rows already aligned with the peers' tables (checked; no PSI needed)

    [policy]
    proposers = ["bank"]                   # who may propose jobs to this party
    allowed_steps = ["handshake", "psi"]   # default: every known step kind
    min_intersection = 100
    # purposes = ["credit-risk-model"]     # if set, a job must declare one of these
    # max_concurrent_jobs = 2
    [policy.columns]                       # columns of our tables a job from that peer may use
    bank = ["*"]

    [transport]
    deadline = 60.0        # seconds for one RPC attempt and to give up on an unreachable peer
    retries = 5
    recv_timeout = 600.0   # seconds a step waits for one message
    max_message_mib = 256
    # peer_messages_per_second = 2000.0   # per sending peer (token bucket); over it a push is deferred
    # peer_burst = 4000
    # peer_inflight = 16                  # concurrent pushes per peer (of 64 server threads)
    # orphan_seconds = 120.0              # buffered messages for a job that never starts here expire
    # peer_proposals_per_minute = 30      # job proposals one peer may send (beyond: RESOURCE_EXHAUSTED)
    # max_proposal_kib = 64               # largest job proposal accepted

    [compute]
    backend = "local"      # or "dask" (pip install 'fedcredit[dask]'; see docs/compute.md)
    workers = 2            # local pool size (default: the usable cores); dask without scheduler: local workers
    # scheduler = "tls://10.0.0.5:8786"   # dask: the party's own scheduler
    # tls_ca = "cluster-ca.pem"           # dask, tls:// scheduler: the cluster's CA and this client's cert/key
    # tls_cert = "party-client.pem"
    # tls_key = "party-client.key"
    # retries = 1                         # dask: extra attempts for a task that raised

A job file::

    [job]
    name = "demo"
    purpose = "credit-risk-model"          # optional

    [parties.bank]
    role = "guest"
    table = "credit"                       # a table name from that party's own config
    [parties.chain]
    role = "host"
    table = "credit"

    [[steps]]
    kind = "handshake"
    [[steps]]
    kind = "psi"
    name = "align"                         # default: the kind
    params = { }
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from . import ids as _ids
from .errors import ConfigError

__all__ = [
    "ROLES",
    "COMPUTE_BACKENDS",
    "TlsConfig",
    "TableConfig",
    "Policy",
    "PrivacyPolicy",
    "ApprovalRule",
    "ConsoleConfig",
    "TransportConfig",
    "ComputeConfig",
    "PartyConfig",
    "JobParty",
    "StepSpec",
    "JobSpec",
    "load_party_config",
    "load_job",
    "job_from_dict",
    "parse_address",
    "known_step_kinds",
]

ROLES = ("guest", "host", "arbiter", "client", "aggregator")
COMPUTE_BACKENDS = ("local", "dask")
# party, table, job and step names follow the one identifier grammar of fedcredit.ids (fullmatch)
_KIND_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=\-]{0,63}")  # step kinds in [policy].allowed_steps (never paths)
_HOST_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


# ---------------------------------------------------------------------------
# dataclasses
# ---------------------------------------------------------------------------
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


@dataclass(frozen=True)
class JobParty:
    """One participant of a job: its role, and the table (from its own config) it uses."""

    name: str
    role: str
    table: str | None = None
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StepSpec:
    """One step of a job: ``kind`` picks the protocol; ``name`` namespaces its messages."""

    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class JobSpec:
    """A parsed job file."""

    name: str
    parties: Mapping[str, JobParty]
    steps: tuple[StepSpec, ...]
    purpose: str | None = None
    source: str = "<job>"

    @property
    def roles(self) -> dict[str, str]:
        return {p.name: p.role for p in self.parties.values()}

    def to_dict(self) -> dict:
        """Plain dict in the job-file shape (round-trips through :func:`job_from_dict`)."""
        job: dict[str, Any] = {"name": self.name}
        if self.purpose is not None:
            job["purpose"] = self.purpose
        parties = {}
        for p in self.parties.values():
            d: dict[str, Any] = {"role": p.role}
            if p.table is not None:
                d["table"] = p.table
            if p.columns is not None:
                d["columns"] = list(p.columns)
            parties[p.name] = d
        steps = [{"kind": s.kind, "name": s.name, "params": _thaw(s.params)} for s in self.steps]
        return {"job": job, "parties": parties, "steps": steps}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): what is proposed, stored and hashed."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def _freeze(v):
    if isinstance(v, dict):
        return MappingProxyType({k: _freeze(x) for k, x in v.items()})
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v):
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


# ---------------------------------------------------------------------------
# checking machinery
# ---------------------------------------------------------------------------
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
               dict: "a table"}


def _tname(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, dict):
        return "table"
    if isinstance(v, list):
        return "array"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return type(v).__name__


class _Checker:
    """Collects problems for one file; every message names the file and the key."""

    def __init__(self, source: str, base_dir: Path | None):
        self.source = source
        self.base = base_dir
        self.problems: list[str] = []

    def add(self, key: str, msg: str) -> None:
        self.problems.append(f"{self.source}: {key}: {msg}" if key else f"{self.source}: {msg}")

    def table(self, data: Any, key: str, allowed: set[str] | None, required: set[str] = frozenset()) -> dict:
        """A TOML table; flags unknown and missing keys. Returns {} when it is not a table."""
        if not isinstance(data, dict):
            self.add(key, f"must be a table, got {_tname(data)}")
            return {}
        if allowed is not None:
            for k in data:
                if k not in allowed:
                    self.add(_join(key, k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for k in sorted(required):
            if k not in data:
                self.add(_join(key, k), "missing required key")
        return data

    def get(self, data: dict, key: str, name: str, typ, default=..., *, check=None):
        """Typed value ``data[name]``; returns ``default`` (or None) on problems."""
        full = _join(key, name)
        if name not in data:
            return None if default is ... else default
        v = data[name]
        ok = (isinstance(v, typ) and not (typ in (int, float) and isinstance(v, bool))) or (
            typ is float and isinstance(v, int) and not isinstance(v, bool)
        )
        if not ok:
            self.add(full, f"must be {_TYPE_NAMES.get(typ, typ.__name__)}, got {_tname(v)} {v!r}"[:200])
            return None if default is ... else default
        if typ is float:
            v = float(v)
            if not math.isfinite(v):
                self.add(full, f"must be finite, got {v}")
                return None if default is ... else default
        if check is not None:
            msg = check(v)
            if msg:
                self.add(full, msg)
                return None if default is ... else default
        return v

    def str_list(self, data: dict, key: str, name: str, *, check_item=None) -> tuple[str, ...] | None:
        full = _join(key, name)
        v = self.get(data, key, name, list)
        if v is None:
            return None
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, str):
                self.add(f"{full}[{i}]", f"must be a string, got {_tname(item)} {item!r}")
                continue
            if check_item:
                msg = check_item(item)
                if msg:
                    self.add(f"{full}[{i}]", msg)
                    continue
            out.append(item)
        return tuple(out)

    def path(self, data: dict, key: str, name: str, *, must_exist: bool, hint: str = "") -> Path | None:
        v = self.get(data, key, name, str, check=lambda s: None if s.strip() else "must not be empty")
        if v is None:
            return None
        p = Path(os.path.expanduser(v))
        if not p.is_absolute() and self.base is not None:
            p = self.base / p
        p = Path(os.path.normpath(p))
        if must_exist and not p.is_file():
            what = "is a directory, not a file" if p.is_dir() else "file not found"
            self.add(_join(key, name), f"{what}: {p}{hint}")
        return p

    def raise_if_any(self) -> None:
        if self.problems:
            n = len(self.problems)
            head = self.problems[0] if n == 1 else f"{n} problems in {self.source}:\n  " + "\n  ".join(self.problems)
            raise ConfigError(head, self.problems)


def _join(key: str, name: str) -> str:
    return f"[{name}]" if not key else f"{key}.{name}"


def _check_name(s: str) -> str | None:
    return None if _ids.is_name(s) else "must be a party name: 1-63 characters of [a-z0-9_-], starting with a letter or digit"


def _parse_toml(path: Path) -> dict:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found", [f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file", [f"{path}: is a directory"]) from None
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror or exc}"
        raise ConfigError(msg, [msg]) from None
    try:
        return tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        msg = f"{path}: not UTF-8 text"
        raise ConfigError(msg, [msg]) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: invalid TOML: {exc}"
        raise ConfigError(msg, [msg]) from None


def parse_address(addr: str, *, allow_port_zero: bool = True) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:port`` for IPv6) and check both parts.

    Raises
    ------
    ConfigError
        With a message saying what is wrong (no file or key: callers add them).
    """
    if not isinstance(addr, str) or ":" not in addr:
        raise ConfigError(f"address {addr!r} must look like host:port (e.g. 127.0.0.1:7301)")
    if addr.startswith("["):
        host, sep, port_s = addr[1:].partition("]:")
        if not sep or not host:
            raise ConfigError(f"address {addr!r} must look like [ipv6]:port")
    else:
        host, _, port_s = addr.rpartition(":")
        if not host or ":" in host or not _HOST_RE.fullmatch(host):
            raise ConfigError(f"address {addr!r} must look like host:port (e.g. 127.0.0.1:7301)")
    if not port_s.isdigit():
        raise ConfigError(f"address {addr!r}: port {port_s!r} is not a number")
    port = int(port_s)
    if not (0 if allow_port_zero else 1) <= port <= 65535:
        lo = 0 if allow_port_zero else 1
        raise ConfigError(f"address {addr!r}: port {port} is outside {lo}..65535")
    return host, port


def _addr_check(allow_zero: bool):
    def check(s: str) -> str | None:
        try:
            parse_address(s, allow_port_zero=allow_zero)
        except ConfigError as exc:
            return str(exc)
        return None

    return check


def known_step_kinds() -> tuple[str, ...]:
    """Step kinds this process can run (the registry plus any plugins registered at start-up)."""
    from .protocols.registry import STEP_KINDS

    return tuple(sorted(STEP_KINDS))


# ---------------------------------------------------------------------------
# party config
# ---------------------------------------------------------------------------
_PARTY_TOP = {"party", "tls", "peers", "tables", "policy", "transport", "compute", "console"}
_PARTY_KEYS = {"name", "listen", "state_dir", "insecure", "log_level", "log_format"}
_TLS_KEYS = {"ca", "cert", "key"}
_TABLE_KEYS = {"path", "id_column", "label_column", "columns", "categorical", "pos_label", "aligned_by"}
_POLICY_KEYS = {"proposers", "allowed_steps", "columns", "min_intersection", "purposes", "max_concurrent_jobs", "scoring",
                "reasons", "privacy", "approval", "approval_rules", "approval_expiry_hours"}
_PRIVACY_KEYS = {"max_label_epsilon", "min_node_rows", "min_guest_only_trees", "min_bin_count", "min_batch_size"}
_APPROVAL_RULE_KEYS = {"proposer", "purpose", "max_steps", "approval"}
_APPROVALS = ("auto", "manual")
_SCORING_KEYS = {"requesters", "purposes", "max_requests_per_minute", "max_ids_per_minute", "max_batch",
                 "head_exchange_seconds", "reveal_reasons"}
_TRANSPORT_KEYS = {"deadline", "retries", "recv_timeout", "max_message_mib", "peer_messages_per_second",
                   "peer_burst", "peer_inflight", "orphan_seconds", "peer_proposals_per_minute", "max_proposal_kib"}
_COMPUTE_KEYS = {"backend", "workers", "scheduler", "tls_ca", "tls_cert", "tls_key", "insecure", "retries",
                 "connect_timeout", "task_timeout", "partition_rows"}
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# SecureBoost: an owner's monotone constraints, and the feature names it publishes to the label holder
_TABLE_KEYS = _TABLE_KEYS | {"monotone"}
_POLICY_KEYS = _POLICY_KEYS | {"share_feature_names"}


def load_party_config(path: str | os.PathLike, *, check_files: bool = True) -> PartyConfig:
    """Load and check a party config file.

    Parameters
    ----------
    path : path
        The TOML file.
    check_files : bool, default=True
        Also check that the TLS files and table files exist.

    Returns
    -------
    PartyConfig

    Raises
    ------
    ConfigError
        Listing every problem, each naming the file and the key.
    """
    path = Path(path).resolve() if Path(path).exists() else Path(path)
    data = _parse_toml(path)
    c = _Checker(str(path), path.parent)
    c.table(data, "", _PARTY_TOP, {"party"})

    party = c.table(data.get("party", {}), "[party]", _PARTY_KEYS, {"name", "listen", "state_dir"})
    name = c.get(party, "[party]", "name", str, check=_check_name)
    me = party.get("name")  # as written, so a bad name is reported once, not again by every check that uses it
    listen = c.get(party, "[party]", "listen", str, check=_addr_check(True))
    state_dir = c.path(party, "[party]", "state_dir", must_exist=False)
    insecure = c.get(party, "[party]", "insecure", bool, False)
    log_level = c.get(party, "[party]", "log_level", str, "INFO",
                      check=lambda s: None if s.upper() in _LOG_LEVELS else f"must be one of {', '.join(_LOG_LEVELS)}")
    log_format = c.get(party, "[party]", "log_format", str, "text",
                       check=lambda s: None if s in ("text", "json") else "must be \"text\" or \"json\"")

    tls = None
    if "tls" in data:
        t = c.table(data["tls"], "[tls]", _TLS_KEYS, set(_TLS_KEYS))
        hint = " (create it with `fedcredit certs init` / `fedcredit certs issue`)"
        ca, cert, key = (c.path(t, "[tls]", k, must_exist=check_files, hint=hint) for k in ("ca", "cert", "key"))
        if ca and cert and key:
            tls = TlsConfig(ca=ca, cert=cert, key=key)
    elif not insecure:
        c.add("[tls]", "missing table: mutual TLS is required (give ca, cert and key, or set [party].insecure = true for a local test)")

    peers: dict[str, str] = {}
    praw = c.table(data.get("peers", {}), "[peers]", None)
    for pname, addr in praw.items():
        key = f"[peers].{pname}"
        msg = _check_name(pname)
        if msg:
            c.add(key, msg)
            continue
        if pname == me:
            c.add(key, f"a party cannot list itself ({me!r}) as a peer")
            continue
        if not isinstance(addr, str):
            c.add(key, f"must be a string host:port, got {_tname(addr)} {addr!r}")
            continue
        m = _addr_check(False)(addr)
        if m:
            c.add(key, m)
            continue
        peers[pname] = addr

    tables: dict[str, TableConfig] = {}
    traw = c.table(data.get("tables", {}), "[tables]", None)
    for tname, tdata in traw.items():
        key = f"[tables.{tname}]"
        if not _ids.is_name(tname):
            c.add(key, "table name must be 1-63 characters of [a-z0-9_-]")
            continue
        td = c.table(tdata, key, _TABLE_KEYS, {"path"})
        if not isinstance(tdata, dict):
            continue
        tpath = c.path(td, key, "path", must_exist=check_files)
        id_col = c.get(td, key, "id_column", str, "id")
        label = c.get(td, key, "label_column", str, None)
        cols = c.str_list(td, key, "columns")
        if cols is not None and len(cols) == 0:
            c.add(f"{key}.columns", "must list at least one column (leave it out to use every column)")
        cats = c.str_list(td, key, "categorical") or ()
        pos = td.get("pos_label") if isinstance(td, dict) else None
        if pos is not None and (isinstance(pos, bool) or not isinstance(pos, (str, int, float))):
            c.add(f"{key}.pos_label", f"must be a string or a number, got {_tname(pos)}")
            pos = None
        if pos is not None and not label:
            c.add(f"{key}.pos_label", "is only used with a label_column")
        aligned = c.get(td, key, "aligned_by", str, None, check=_ids.name_problem)
        if tpath is not None:
            tables[tname] = TableConfig(tname, tpath, id_col or "id", label, cols or None, tuple(cats), pos, aligned)

    for tname, tdata in traw.items():  # SecureBoost: the owner's monotone constraints on its columns
        if tname not in tables or not isinstance(tdata, dict) or "monotone" not in tdata:
            continue
        key = f"[tables.{tname}].monotone"
        mono = {}
        for col, sign in c.table(tdata["monotone"], key, None).items():
            if type(sign) is not int or sign not in (-1, 1):
                c.add(f"{key}.{col}", f"must be 1 (increasing) or -1 (decreasing), got {sign!r}")
            else:
                mono[col] = sign
        tables[tname] = replace(tables[tname], monotone=MappingProxyType(mono))
    pol = c.table(data.get("policy", {}), "[policy]", _POLICY_KEYS)
    proposers = c.str_list(pol, "[policy]", "proposers", check_item=_check_name) or ()
    for i, p in enumerate(proposers):
        if name is not None and p != name and p not in praw:
            c.add(f"[policy].proposers[{i}]", f"{p!r} is not this party or one of its [peers]")
    # kinds not installed in this process are allowed here (a policy may name steps a later version adds);
    # the party logs them at start-up
    allowed = c.str_list(
        pol, "[policy]", "allowed_steps",
        check_item=lambda s: None if _KIND_RE.fullmatch(s) else f"{s!r} is not a step kind name",
    )
    columns = None
    if "columns" in pol:
        columns = {}
        craw = c.table(pol["columns"], "[policy.columns]", None)
        for peer, cols in craw.items():
            if name is not None and peer != "*" and peer != name and peer not in praw:
                c.add(f"[policy.columns].{peer}", f"{peer!r} is not this party, one of its [peers] or '*'")
                continue
            lst = c.str_list(craw, "[policy.columns]", peer)
            if lst is not None:
                columns[peer] = lst
        columns = MappingProxyType(columns)
    min_inter = c.get(pol, "[policy]", "min_intersection", int, 1,
                      check=lambda v: None if v >= 1 else f"must be at least 1, got {v}")
    purposes = c.str_list(pol, "[policy]", "purposes")
    max_jobs = c.get(pol, "[policy]", "max_concurrent_jobs", int, 2,
                     check=lambda v: None if 1 <= v <= 64 else f"must be in 1..64, got {v}")
    sc = c.table(pol.get("scoring", {}), "[policy.scoring]", _SCORING_KEYS)
    requesters = c.str_list(sc, "[policy.scoring]", "requesters", check_item=_check_name)
    for i, p in enumerate(requesters or ()):
        if name is not None and p not in praw:
            c.add(f"[policy.scoring].requesters[{i}]", f"{p!r} is not one of this party's [peers]")
    scoring = ScoringPolicy(
        requesters=requesters,
        purposes=c.str_list(sc, "[policy.scoring]", "purposes"),
        max_requests_per_minute=c.get(sc, "[policy.scoring]", "max_requests_per_minute", int, 600,
                                      check=lambda v: None if v >= 1 else f"must be at least 1, got {v}"),
        max_ids_per_minute=c.get(sc, "[policy.scoring]", "max_ids_per_minute", int, 1_000_000,
                                 check=lambda v: None if v >= 1 else f"must be at least 1, got {v}"),
        max_batch=c.get(sc, "[policy.scoring]", "max_batch", int, 100_000,
                        check=lambda v: None if 1 <= v <= 10_000_000 else f"must be in 1..10000000, got {v}"),
        head_exchange_seconds=c.get(sc, "[policy.scoring]", "head_exchange_seconds", float, 60.0,
                                    check=lambda v: None if v >= 0 else f"must be >= 0, got {v}"),
        reveal_reasons=c.get(sc, "[policy.scoring]", "reveal_reasons", bool, False),
    )
    reasons = {}
    for col, text in c.table(pol.get("reasons", {}), "[policy.reasons]", None).items():
        if not isinstance(text, str) or not 0 < len(text) <= 120 or not text.isprintable():
            c.add(f"[policy.reasons].{col}", "must be a printable text of 1..120 characters")
        else:
            reasons[str(col)] = text
    pv = c.table(pol.get("privacy", {}), "[policy.privacy]", _PRIVACY_KEYS)
    at_least_1 = lambda v: None if v is None or v >= 1 else f"must be at least 1, got {v}"  # noqa: E731
    privacy = PrivacyPolicy(
        max_label_epsilon=c.get(pv, "[policy.privacy]", "max_label_epsilon", float, None,
                                check=lambda v: None if v is None or v > 0 else f"must be positive, got {v}"),
        min_node_rows=c.get(pv, "[policy.privacy]", "min_node_rows", int, None, check=at_least_1),
        min_guest_only_trees=c.get(pv, "[policy.privacy]", "min_guest_only_trees", int, None, check=at_least_1),
        min_bin_count=c.get(pv, "[policy.privacy]", "min_bin_count", int, None, check=at_least_1),
        min_batch_size=c.get(pv, "[policy.privacy]", "min_batch_size", int, None, check=at_least_1),
    )
    approval, rules, expiry = _approval_config(c, pol, name, praw)
    policy = Policy(
        proposers=tuple(proposers), allowed_steps=allowed, columns=columns, min_intersection=min_inter,
        purposes=purposes, max_concurrent_jobs=max_jobs, scoring=scoring, reasons=MappingProxyType(reasons),
        privacy=privacy, approval=approval, approval_rules=rules, approval_expiry_hours=expiry,
    )

    share = pol.get("share_feature_names", False)
    if isinstance(share, list):
        share = c.str_list(pol, "[policy]", "share_feature_names") or ()
    elif not isinstance(share, bool):
        c.add("[policy].share_feature_names", f"must be true, false or a list of columns, got {_tname(share)}")
        share = False
    policy = replace(policy, share_feature_names=share)
    tr = c.table(data.get("transport", {}), "[transport]", _TRANSPORT_KEYS)
    pos = lambda v: None if v > 0 else f"must be positive, got {v}"  # noqa: E731
    transport = TransportConfig(
        deadline=c.get(tr, "[transport]", "deadline", float, 60.0, check=pos),
        retries=c.get(tr, "[transport]", "retries", int, 5,
                      check=lambda v: None if 0 <= v <= 20 else f"must be in 0..20, got {v}"),
        recv_timeout=c.get(tr, "[transport]", "recv_timeout", float, 600.0, check=pos),
        max_message_mib=c.get(tr, "[transport]", "max_message_mib", int, 256,
                              check=lambda v: None if 1 <= v <= 4096 else f"must be in 1..4096, got {v}"),
        peer_messages_per_second=c.get(tr, "[transport]", "peer_messages_per_second", float, 2000.0, check=pos),
        peer_burst=c.get(tr, "[transport]", "peer_burst", int, 4000, check=pos),
        peer_inflight=c.get(tr, "[transport]", "peer_inflight", int, 16,
                            check=lambda v: None if 1 <= v <= 32 else f"must be in 1..32 (server threads: 64), got {v}"),
        orphan_seconds=c.get(tr, "[transport]", "orphan_seconds", float, 120.0, check=pos),
        peer_proposals_per_minute=c.get(tr, "[transport]", "peer_proposals_per_minute", int, 30,
                                        check=lambda v: None if 1 <= v <= 10_000 else f"must be in 1..10000, got {v}"),
        max_proposal_kib=c.get(tr, "[transport]", "max_proposal_kib", int, 64,
                               check=lambda v: None if 1 <= v <= 1024 else f"must be in 1..1024, got {v}"),
    )
    compute = _compute_config(c, data.get("compute", {}), check_files)
    co = c.table(data.get("console", {}), "[console]", {"listen"})
    console = ConsoleConfig(listen=c.get(co, "[console]", "listen", str, None, check=_addr_check(True)))
    if console.listen and tls is None and parse_address(console.listen)[0] not in _LOOPBACK:
        # without [tls] the console speaks plain HTTP: its token and session cookie must not leave the machine
        c.add("[console].listen", "a party without [tls] serves its console over plain HTTP: listen on loopback only")
    c.raise_if_any()
    return PartyConfig(
        path=path, name=name, listen=listen, state_dir=state_dir, tls=tls, insecure=bool(insecure),
        peers=MappingProxyType(peers), tables=MappingProxyType(tables), policy=policy, transport=transport,
        compute=compute, log_level=log_level.upper(), log_format=log_format, console=console,
    )


def _approval_config(c: _Checker, pol: dict, me, peers: dict) -> tuple[str, tuple[ApprovalRule, ...], float]:
    """``[policy] approval``, ``approval_expiry_hours`` and ``[[policy.approval_rules]]`` (see docs/operating.md)."""
    one_of = lambda s: None if s in _APPROVALS else f"must be one of {', '.join(map(repr, _APPROVALS))}, got {s!r}"  # noqa: E731
    approval = c.get(pol, "[policy]", "approval", str, "auto", check=one_of)
    expiry = c.get(pol, "[policy]", "approval_expiry_hours", float, 24.0,
                   check=lambda v: None if 0 < v <= 24 * 365 else f"must be in (0, 8760] hours, got {v}")
    rules = []
    raw = pol.get("approval_rules", [])
    if not isinstance(raw, list):
        c.add("[policy].approval_rules", "must be an array of tables ([[policy.approval_rules]])")
        raw = []
    for i, r in enumerate(raw):
        key = f"[[policy.approval_rules]] #{i + 1}"
        if not isinstance(r, dict):
            c.add(key, f"must be a table, got {_tname(r)}")
            continue
        c.table(r, key, _APPROVAL_RULE_KEYS, {"approval"})
        proposer = c.get(r, key, "proposer", str, None, check=lambda p: None if p == "*" or p == me or p in peers
                         else f"{p!r} is not this party, one of its [peers] or '*'")
        rule = ApprovalRule(
            approval=c.get(r, key, "approval", str, None, check=one_of) or "manual",
            proposer=None if proposer in (None, "*") else proposer,
            purpose=c.get(r, key, "purpose", str, None),
            max_steps=c.get(r, key, "max_steps", int, None,
                            check=lambda v: None if v >= 1 else f"must be at least 1, got {v}"),
        )
        rules.append(rule)
    return approval, tuple(rules), expiry


def _compute_config(c: _Checker, raw: Any, check_files: bool) -> ComputeConfig:
    """``[compute]``: every problem is added to ``c`` with its key."""
    co = c.table(raw, "[compute]", _COMPUTE_KEYS)
    backend = c.get(co, "[compute]", "backend", str, "local",
                    check=lambda s: None if s in COMPUTE_BACKENDS else
                    f"unknown backend {s!r} (available: {', '.join(COMPUTE_BACKENDS)})")
    workers = c.get(co, "[compute]", "workers", int, None,
                    check=lambda v: None if 1 <= v <= 256 else f"must be in 1..256, got {v}")
    pos = lambda v: None if v > 0 else f"must be positive, got {v}"  # noqa: E731
    retries = c.get(co, "[compute]", "retries", int, 1, check=lambda v: None if 0 <= v <= 10 else f"must be in 0..10, got {v}")
    connect_timeout = c.get(co, "[compute]", "connect_timeout", float, 30.0, check=pos)
    task_timeout = c.get(co, "[compute]", "task_timeout", float, 3600.0, check=pos)
    partition_rows = c.get(co, "[compute]", "partition_rows", int, 100_000,
                           check=lambda v: None if 1000 <= v <= 100_000_000 else f"must be in 1000..100000000, got {v}")
    insecure = c.get(co, "[compute]", "insecure", bool, False)
    scheduler = c.get(co, "[compute]", "scheduler", str, None, check=_scheduler_check)
    tls = {}
    for k in ("tls_ca", "tls_cert", "tls_key"):
        if k in co:
            tls[k] = c.path(co, "[compute]", k, must_exist=check_files)
    dask_only = [k for k in ("scheduler", "tls_ca", "tls_cert", "tls_key", "insecure", "retries", "connect_timeout",
                             "task_timeout", "partition_rows") if k in co]
    if backend == "local":
        for k in dask_only:
            c.add(f"[compute].{k}", 'is only used with backend = "dask"')
    if backend == "dask":
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            c.add("[compute].backend", "the Dask backend needs the dask extra: pip install 'fedcredit[dask]'")
        scheme = (scheduler or "").partition("://")[0]
        if scheme == "tls":
            for k in ("tls_ca", "tls_cert", "tls_key"):
                if k not in co:
                    c.add(f"[compute].{k}", "missing: a tls:// scheduler needs tls_ca, tls_cert and tls_key")
        else:
            for k in tls:
                c.add(f"[compute].{k}", "is only used with a tls:// scheduler")
        if scheme == "tcp" and not insecure:
            host = scheduler.partition("://")[2].rpartition(":")[0]
            if host not in _LOOPBACK:
                c.add("[compute].scheduler",
                      f"{scheduler!r} is plain TCP to another host, and the key owner's tasks carry its private key: "
                      "use tls:// with tls_ca, tls_cert and tls_key, or set [compute].insecure = true only inside "
                      "a network the party trusts")
        if insecure and scheme != "tcp":
            c.add("[compute].insecure", "only applies to a tcp:// scheduler")
    return ComputeConfig(
        backend=backend or "local", workers=workers, scheduler=scheduler, tls_ca=tls.get("tls_ca"),
        tls_cert=tls.get("tls_cert"), tls_key=tls.get("tls_key"), insecure=bool(insecure), retries=retries,
        connect_timeout=connect_timeout, task_timeout=task_timeout, partition_rows=partition_rows,
    )


def _scheduler_check(s: str) -> str | None:
    scheme, sep, rest = s.partition("://")
    if not sep or scheme not in ("tcp", "tls"):
        return f"{s!r} must look like tcp://host:port or tls://host:port"
    try:
        parse_address(rest, allow_port_zero=False)
    except ConfigError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------
# job file
# ---------------------------------------------------------------------------
_JOB_TOP = {"job", "parties", "steps"}
_JOB_KEYS = {"name", "purpose"}
_JOB_PARTY_KEYS = {"role", "table", "columns"}
_STEP_KEYS = {"kind", "name", "params"}


def load_job(path: str | os.PathLike) -> JobSpec:
    """Load and check a job file (see the module docstring for its shape).

    Raises
    ------
    ConfigError
        Listing every problem, each naming the file and the key.
    """
    path = Path(path)
    data = _parse_toml(path)
    return job_from_dict(data, source=str(path))


def job_from_dict(data: Any, *, source: str = "<job>", known_kinds: tuple[str, ...] | None = None) -> JobSpec:
    """Check a job given as a dict (a parsed job file or a received proposal).

    Parameters
    ----------
    data : dict
        The job-file structure.
    source : str
        Names the origin in messages (a file path, ``"proposal from bank"``).
    known_kinds : tuple of str, optional
        Step kinds accepted; default :func:`known_step_kinds`.
    """
    c = _Checker(source, None)
    kinds = known_step_kinds() if known_kinds is None else known_kinds
    top = c.table(data, "", _JOB_TOP, {"job", "parties", "steps"})
    job = c.table(top.get("job", {}), "[job]", _JOB_KEYS, {"name"})
    name = c.get(job, "[job]", "name", str, check=_ids.name_problem)
    purpose = c.get(job, "[job]", "purpose", str, None)

    parties: dict[str, JobParty] = {}
    praw = c.table(top.get("parties", {}), "[parties]", None)
    for pname, pdata in praw.items():
        key = f"[parties.{pname}]"
        msg = _check_name(pname)
        if msg:
            c.add(key, msg)
            continue
        pd = c.table(pdata, key, _JOB_PARTY_KEYS, {"role"})
        role = c.get(pd, key, "role", str,
                     check=lambda s: None if s in ROLES else f"unknown role {s!r} (roles: {', '.join(ROLES)})")
        table = c.get(pd, key, "table", str, None, check=_ids.name_problem)
        cols = c.str_list(pd, key, "columns")
        if role is not None:
            parties[pname] = JobParty(pname, role, table, cols)
    if "parties" in top and isinstance(top["parties"], dict) and len(praw) < 2:
        c.add("[parties]", f"a job needs at least two parties, got {len(praw)}")
    n_guest = sum(1 for p in parties.values() if p.role == "guest")
    if n_guest > 1:
        c.add("[parties]", f"at most one party may be the guest (label holder), got {n_guest}")

    steps: list[StepSpec] = []
    sraw = top.get("steps", [])
    if "steps" in top and not isinstance(sraw, list):
        c.add("[[steps]]", f"must be an array of tables ([[steps]]), got {_tname(sraw)}")
        sraw = []
    if "steps" in top and isinstance(sraw, list) and not sraw:
        c.add("[[steps]]", "a job needs at least one step")
    seen: set[str] = set()
    for i, sdata in enumerate(sraw):
        key = f"steps[{i}]"
        sd = c.table(sdata, key, _STEP_KEYS, {"kind"})
        kind = c.get(sd, key, "kind", str,
                     check=lambda s: None if s in kinds else f"unknown step kind {s!r} (known: {', '.join(kinds)})")
        sname = c.get(sd, key, "name", str, kind, check=_ids.name_problem)
        params = c.get(sd, key, "params", dict, {})
        if sname is not None and sname in seen:
            c.add(f"{key}.name", f"duplicate step name {sname!r} (give each step of the same kind its own name)")
        if sname is not None:
            seen.add(sname)
        if kind is not None and sname is not None and params is not None:
            steps.append(StepSpec(sname, kind, _freeze(params)))
    c.raise_if_any()
    return JobSpec(name=name, parties=MappingProxyType(parties), steps=tuple(steps), purpose=purpose, source=source)
