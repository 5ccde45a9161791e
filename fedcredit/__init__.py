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


#: the public names of :mod:`fedcredit.api`, imported on first use (see :func:`__getattr__`)
_API_NAMES = frozenset(__all__) - {"__version__", "datasets"}


def __getattr__(name: str):
    """The top-level exports, imported lazily.

    ``import fedcredit.errors`` (or any other low-layer module) runs this package's
    ``__init__`` first; importing :mod:`fedcredit.api` here eagerly would pull the whole
    stack (config, party, transport, numpy) into every import of a low layer and close an
    import circle through the package. So ``fedcredit.local_federation``, ``fedcredit.psi``,
    ... and ``fedcredit.datasets`` are resolved on first access and cached in the module.
    """
    import importlib

    if name in _API_NAMES:
        value = getattr(importlib.import_module(".api", __name__), name)
    elif name == "datasets":  # without importing numpy on ``import fedcredit`` (the CLI starts faster)
        value = importlib.import_module(".datasets", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
