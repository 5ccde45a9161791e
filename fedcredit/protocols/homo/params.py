"""Parameters of horizontal training: one frozen dataclass passed down to every role."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..._validation import Interval, Params, StrOptions
from ...crypto.secagg import check_headroom
from ...errors import ConfigError
from .spec import MODES

__all__ = ["HomoParams", "HomoStepParams"]


@dataclass(frozen=True)
class HomoParams(Params):
    """Hyperparameters and protocol settings of FedAvg with secure aggregation.

    Parameters
    ----------
    model : {"logistic", "mlp"}, default="logistic"
    hidden : tuple of int, default=(16,)
        Hidden layer widths when ``model="mlp"`` (ignored for ``"logistic"``).
    mode : {"plain", "secagg", "ckks"}, default="secagg"
        How client updates are summed. ``plain`` is **not private** (the
        aggregator sees every update) and exists for comparison.
    rounds : int, default=10
        Maximum FedAvg rounds.
    local_epochs : int, default=1
    learning_rate : float, default=0.1
    batch_size : int, default=64
    l2 : float, default=1e-4
        L2 penalty on weights (not biases) in local training.
    threshold : int or None, default=None
        Minimum number of clients whose contributions make up a sum; Shamir
        threshold in ``secagg``. None means ``n_clients // 2 + 1`` (a strict
        majority, needed so that a curious aggregator cannot collect both the
        self-mask shares and the pairwise-seed shares of one client).
    stage_timeout : float, default=30
        Seconds the aggregator waits for each stage; clients that have not
        answered by then are dropped for this round.
    rejoin_grace : float, default=0.5
        Seconds the aggregator waits, after the others answered, for a client
        that was dropped in the previous round (so a dead client costs this,
        not ``stage_timeout``, per round).
    client_timeout : float, default=600
        Seconds a client waits for the aggregator's next message.
    clip : float, default=2**24
        Bound on each entry of a client's update in ``secagg`` (row-weighted
        parameters ``n * theta``, the row count ``n``); checked with
        ``frac_bits`` against ring overflow. An entry beyond it is refused
        (``ConfigError``), never clipped: a bank with more than ``clip`` rows
        needs a larger ``clip`` and fewer ``frac_bits`` (e.g. 2**32 and 16).
    frac_bits : int, default=24
        Fixed-point fractional bits in ``secagg`` (resolution 2**-24 ≈ 6e-8
        per client and entry, before dividing by the total row count).
    patience : int or None, default=None
        Early stopping: stop after this many rounds without improvement of the
        validation log loss (aggregator's held-out table if it has one, else the
        clients' validation splits, summed securely). None disables it.
    validation_fraction : float, default=0.0
        Share of each client's rows held out for validation when the
        aggregator has no held-out table and ``patience`` is set.
    ckks_scale_bits : int, default=32
    ckks_poly_modulus_degree : int, default=4096
    random_state : int or None, default=0
        Seeds model initialisation and the local row order (statistical
        randomness only; keys and masks always come from the OS CSPRNG).
    """

    _owner = "homo"
    _parameter_constraints = {
        "model": [StrOptions({"logistic", "mlp"})],
        "hidden": [list, tuple],
        "mode": [StrOptions(set(MODES))],
        "rounds": [Interval(int, 1, 10_000)],
        "local_epochs": [Interval(int, 1, 1000)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "batch_size": [Interval(int, 1, None)],
        "l2": [Interval(float, 0, None)],
        "threshold": [None, Interval(int, 1, None)],
        "stage_timeout": [Interval(float, 0, None, closed="neither")],
        "rejoin_grace": [Interval(float, 0, None)],
        "client_timeout": [Interval(float, 0, None, closed="neither")],
        "clip": [Interval(float, 0, None, closed="neither")],
        "frac_bits": [Interval(int, 8, 40)],
        "patience": [None, Interval(int, 1, None)],
        "validation_fraction": [Interval(float, 0, 0.5, closed="left")],
        "ckks_scale_bits": [Interval(int, 20, 40)],
        "ckks_poly_modulus_degree": [Interval(int, 4096, 32768)],
        "random_state": [None, Interval(int, 0, None)],
    }

    model: str = "logistic"
    hidden: tuple = (16,)
    mode: str = "secagg"
    rounds: int = 10
    local_epochs: int = 1
    learning_rate: float = 0.1
    batch_size: int = 64
    l2: float = 1e-4
    threshold: int | None = None
    stage_timeout: float = 30.0
    rejoin_grace: float = 0.5
    client_timeout: float = 600.0
    clip: float = float(2**24)
    frac_bits: int = 24
    patience: int | None = None
    validation_fraction: float = 0.0
    ckks_scale_bits: int = 32
    ckks_poly_modulus_degree: int = 4096
    random_state: int | None = 0

    @classmethod
    def _convert(cls, params: dict, owner: str) -> dict:
        if "hidden" in params:
            hidden = tuple(params["hidden"])
            if any(type(h) is not int or h < 1 for h in hidden):
                raise ConfigError(f"The 'hidden' parameter of {owner} must be a list of ints >= 1. "
                                  f"Got {params['hidden']!r} instead.")
            params = {**params, "hidden": hidden}
        return params

    def threshold_for(self, n_clients: int) -> int:
        """Effective threshold for ``n_clients`` (validated)."""
        t = self.threshold if self.threshold is not None else n_clients // 2 + 1
        if t > n_clients:
            raise ConfigError(f"threshold {t} exceeds the number of clients ({n_clients})")
        if self.mode == "secagg" and 2 * t <= n_clients:
            raise ConfigError(
                f"secagg threshold must be a strict majority of the {n_clients} clients "
                f"(> {n_clients / 2:g}). Got {t} instead."
            )
        if self.mode == "secagg":
            check_headroom(n_clients, self.clip, self.frac_bits)
        return t

    def as_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass(frozen=True)
class HomoStepParams(HomoParams):
    """The ``homo`` job step's parameters: :class:`HomoParams` plus the aggregator's model size.

    Attributes
    ----------
    n_features : int or None, default=None
        The number of features, for an aggregator without a table of its own.
    """

    _parameter_constraints = {**HomoParams._parameter_constraints, "n_features": [None, Interval(int, 1, None)]}

    n_features: int | None = None

    def model_params(self) -> HomoParams:
        """The training hyperparameters alone (what :class:`FedAvgClassifier` takes)."""
        return HomoParams(**{f.name: getattr(self, f.name) for f in fields(HomoParams)})


_NAMES = {f.name for f in fields(HomoParams)}
