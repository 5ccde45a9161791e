"""fedcredit: privacy-preserving joint modeling of credit risk.

Parties (banks, credit-information platforms) each run a party process over
their own data, align customers with private set intersection, and train
shared risk models (vertical SecureBoost and logistic regression with
Paillier/CKKS, horizontal FedAvg with secure aggregation) without raw data
leaving its owner.

From Python (docs/python.md)::

    import fedcredit
    from fedcredit import psi, binning, secureboost

    tables = fedcredit.datasets.load_credit3()
    with fedcredit.local_federation(tables, labels={"bank": "default_next_month"}) as fed:
        result = fed.run([psi(), binning(max_bins=10), secureboost(n_trees=5)])
    result.metrics
"""

__version__ = "0.1.0"

from . import compute as _compute  # noqa: E402,F401 - installs the compute backend as crypto's executor

from .api import (  # noqa: E402 - after __version__, which the CLI and the party read
    FederatedModel,
    JobResult,
    LocalFederation,
    PartyClient,
    Step,
    StepResult,
    binning,
    connect,
    evaluate,
    fedavg,
    handshake,
    hetero_lr,
    local_federation,
    psi,
    scorecard,
    secureboost,
    select,
)

__all__ = [
    "__version__",
    "datasets",
    "local_federation",
    "LocalFederation",
    "connect",
    "PartyClient",
    "JobResult",
    "FederatedModel",
    "StepResult",
    "Step",
    "handshake",
    "psi",
    "binning",
    "select",
    "secureboost",
    "hetero_lr",
    "scorecard",
    "evaluate",
    "fedavg",
]


def __getattr__(name: str):
    # ``fedcredit.datasets`` without importing numpy on ``import fedcredit`` (the CLI starts faster)
    if name == "datasets":
        import importlib

        return importlib.import_module(".datasets", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
