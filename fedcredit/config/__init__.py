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
resolved against the directory of the config file. A job step's ``params``
are checked against the step kind's frozen parameters class when the job is
loaded, submitted or proposed (see :mod:`fedcredit.config.job`).

Modules: ``_checker`` (the problem collector and parsing helpers), ``party``
(the party config's dataclasses), ``party_file`` (loading a party config, one
function per section), ``job`` (the job file and its typed steps).

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

from ._checker import _thaw, parse_address  # noqa: F401 - _thaw: a step's params as written, as a dict
from .job import ROLES, JobParty, JobSpec, StepSpec, job_from_dict, known_step_kinds, load_job
from .party import (
    ApprovalRule,
    ComputeConfig,
    ConsoleConfig,
    PartyConfig,
    Policy,
    PrivacyPolicy,
    ScoringPolicy,
    TableConfig,
    TlsConfig,
    TransportConfig,
)
from .party_file import COMPUTE_BACKENDS, load_party_config

__all__ = [
    "ROLES",
    "COMPUTE_BACKENDS",
    "TlsConfig",
    "TableConfig",
    "Policy",
    "PrivacyPolicy",
    "ScoringPolicy",
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
