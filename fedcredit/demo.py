"""Former home of the demo's helpers, kept so that existing imports keep working.

The launcher of local party processes is :mod:`fedcredit.launcher`, the centralized
baselines are :mod:`fedcredit.baselines`, and the ``fedcredit demo`` script is
:mod:`fedcredit.cli.demo`. New code imports those; this module only re-exports.
"""

from __future__ import annotations

from .baselines import centralized_baselines, homo_baselines, homo_federated_metrics, joined_table
from .launcher import (HOMO_TABLES, HOMO_TEST, PARTIES, QUICK_FRACTION, SUPERVISOR, Federation, find_data_dir,
                       free_ports, launch_local, subset_credit3, write_federation, write_job)
from .progress import summarize_report as _summarize  # noqa: F401 - the old private names
from .progress import wait_report as _wait_report  # noqa: F401

__all__ = ["PARTIES", "SUPERVISOR", "HOMO_TABLES", "HOMO_TEST", "QUICK_FRACTION", "find_data_dir", "free_ports",
           "write_federation", "write_job", "Federation", "launch_local", "subset_credit3", "joined_table",
           "centralized_baselines", "homo_baselines", "homo_federated_metrics"]
