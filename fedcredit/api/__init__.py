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

from .client import PartyClient, connect
from .local import MODES, LocalFederation, local_federation
from .results import FederatedModel, JobResult, StepResult
from .steps import (Step, binning, build_job, evaluate, fedavg, handshake, hetero_lr, psi, scorecard, secureboost,
                    select)

__all__ = ["MODES", "Step", "StepResult", "JobResult", "FederatedModel", "LocalFederation", "local_federation",
           "PartyClient", "connect", "build_job", "handshake", "psi", "binning", "select", "secureboost", "hetero_lr",
           "scorecard", "evaluate", "fedavg"]
