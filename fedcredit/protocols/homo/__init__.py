"""Horizontal federated training (FedAvg) with secure aggregation or CKKS aggregation.

Several banks (``client`` role) hold the same features about different
customers; an ``aggregator`` (any party, possibly holding a held-out table)
drives FedAvg rounds of logistic regression or a small MLP. Updates are
summed in one of three modes (see ``docs/homo.md``):

``secagg``
    Bonawitz et al. (2017) secure aggregation with X25519, ChaCha20 masks,
    Shamir-shared per-round seeds; tolerates up to ``n - t`` dropouts at any
    stage. The aggregator learns only the sum.
``ckks``
    Updates encrypted under a CKKS key that only the clients hold.
``plain``
    Updates in the clear, for comparison only (**not private**).

Entry points: :func:`run` (the ``kind = "homo"`` job step) and the estimator
:class:`FedAvgClassifier`.
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError, DataError
from ...models._base import _BaseEstimator
from ...models import mlp
from ...transport.base import Channel
from .aggregator import HomoAggregator, RoundFailed
from .client import HomoClient
from .params import HomoParams, HomoStepParams
from .spec import Stage

__all__ = ["run", "FedAvgClassifier", "HomoParams", "RoundFailed", "Stage", "MODEL_FILE", "load_model"]

#: The global model as each party of a ``homo`` step keeps it in its artifacts (JSON).
MODEL_FILE = "homo_model.json"


def load_model(path) -> "FedAvgClassifier":
    """A fitted :class:`FedAvgClassifier` from a saved :data:`MODEL_FILE` (a path) or its dict.

    For scoring or evaluation after the step (tools read it by path; the step itself saves it through
    ``ctx.artifacts``).
    """
    from ...artifacts import read_json  # the one reader of step outputs (fedcredit/artifacts.py)

    d = path if isinstance(path, dict) else read_json(path, "homo model file")
    if d.get("kind") != "homo" or d.get("n_features") is None:
        raise DataError("not a homo model file" if isinstance(path, dict) else f"{path}: not a homo model file")
    est = FedAvgClassifier(model=d["model"], hidden=tuple(d["hidden"]) or (16,), mode=d["mode"])
    shape = mlp.MLPShape(int(d["n_features"]), tuple(d["hidden"]))
    est._set_fitted(np.asarray(d["params"], dtype=np.float64), shape)
    return est


def run(ctx) -> dict:
    """The ``homo`` job step: a client trains on ``ctx.data``; the aggregator drives the rounds.

    Parameters (``ctx.params``): see :class:`HomoParams`, plus ``n_features``
    (int) when the aggregator has no table of its own.

    Returns
    -------
    dict
        Aggregator: ``rounds``, ``seconds``, ``round_seconds`` (per-round
        overhead), ``history``, ``dropped`` and, with a held-out table,
        ``test_auc``/``test_ks``/``metrics``. Client: rounds and how many
        included its update. The fitted parameters are left in
        ``ctx.state["homo"]`` (not in the report).
    """
    step_params = HomoStepParams.coerce(ctx.params, f"step {ctx.step!r} (homo)")
    n_features = step_params.n_features  # the aggregator's model size when it has no table
    params = step_params.model_params()
    clients = ctx.parties_with("client")
    aggs = ctx.parties_with("aggregator")
    if len(aggs) != 1 or len(clients) < 2:
        raise ConfigError(f"step {ctx.step!r} (homo) needs one aggregator and at least two clients; "
                          f"got {len(aggs)} and {len(clients)}")
    est = FedAvgClassifier(**{k: v for k, v in params.as_dict().items()})
    est.fit(ctx.channel, ctx.data, role=ctx.role, clients=clients, aggregator=aggs[0],
            n_features=n_features, progress=ctx.progress, check_cancelled=ctx.check_cancelled,
            checkpoint=ctx.checkpoint)
    report = {k: v for k, v in est.report_.items() if k != "params"}
    if ctx.role == "client":  # the global model on this bank's own rows (the bank's view only)
        from ...models import metrics

        report["train_auc"] = float(metrics.auc(ctx.data.y, est.predict_proba(ctx.data.X)[:, 1]))
    ctx.state["homo"] = {"params": est.params_, "model": params.model, "hidden": list(est.hidden_)}
    if ctx.artifacts is not None:  # every party holds the same global model: this party's copy
        ctx.artifacts.save_json(MODEL_FILE, {
            "kind": "homo", "model": params.model, "hidden": list(est.hidden_), "n_features": est._shape.n_features,
            "feature_names": list(ctx.data.feature_names) if ctx.data is not None else None,
            "mode": params.mode, "rounds": report.get("rounds"), "params": est.params_.tolist()})
        report["model_file"] = MODEL_FILE
    return report


class FedAvgClassifier(_BaseEstimator):
    """FedAvg binary classifier trained across parties; each party fits its own instance.

    Parameters
    ----------
    All keyword-only, as in :class:`HomoParams` (``model``, ``hidden``,
    ``mode``, ``rounds``, ``local_epochs``, ``learning_rate``, ``batch_size``,
    ``l2``, ``threshold``, ``stage_timeout``, ``rejoin_grace``,
    ``client_timeout``, ``clip``, ``frac_bits``, ``patience``,
    ``validation_fraction``, ``ckks_scale_bits``, ``ckks_poly_modulus_degree``,
    ``random_state``).

    Attributes
    ----------
    params_ : ndarray of shape (n_params,)
        The final global model as a flat vector.
    coef_, intercept_ : ndarray
        For ``model="logistic"``: weights (n_features,) and bias (1,).
    hidden_ : tuple of int
    report_ : dict
        What :meth:`fit` measured (rounds, seconds, history...).

    Examples
    --------
    >>> est = FedAvgClassifier(mode="secagg", rounds=10)          # doctest: +SKIP
    >>> est.fit(channel, table, role="client", clients=banks, aggregator="agg")  # doctest: +SKIP
    """

    _parameter_constraints = HomoParams._parameter_constraints
    _fitted_attr = "params_"

    def __init__(self, *, model="logistic", hidden=(16,), mode="secagg", rounds=10, local_epochs=1,
                 learning_rate=0.1, batch_size=64, l2=1e-4, threshold=None, stage_timeout=30.0,
                 rejoin_grace=0.5, client_timeout=600.0, clip=float(2**24), frac_bits=24, patience=None,
                 validation_fraction=0.0, ckks_scale_bits=32, ckks_poly_modulus_degree=4096, random_state=0):
        self.model = model
        self.hidden = hidden
        self.mode = mode
        self.rounds = rounds
        self.local_epochs = local_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.l2 = l2
        self.threshold = threshold
        self.stage_timeout = stage_timeout
        self.rejoin_grace = rejoin_grace
        self.client_timeout = client_timeout
        self.clip = clip
        self.frac_bits = frac_bits
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.ckks_scale_bits = ckks_scale_bits
        self.ckks_poly_modulus_degree = ckks_poly_modulus_degree
        self.random_state = random_state

    def fit(self, channel: Channel, data=None, *, role: str, clients, aggregator: str,
            n_features: int | None = None, progress=None, check_cancelled=None,
            checkpoint=None) -> "FedAvgClassifier":
        """Take part in training as ``role``.

        Parameters
        ----------
        channel : Channel
            This party's channel (clients and aggregator must be its peers).
        data : fedcredit.data.Table or None
            A client's labelled table; the aggregator's optional held-out table.
        role : {"client", "aggregator"}
        clients : list of str
            Every client of the job.
        aggregator : str
        n_features : int, optional
            The aggregator needs it when it has no table.
        checkpoint : fedcredit.protocols.checkpoint.Checkpoint, optional
            Per-round checkpoints (a job step passes ``ctx.checkpoint``): saved after each round; on a
            resumed job, training continues after the round every party agreed on.

        Returns
        -------
        self
        """
        params = HomoParams.from_dict(self.get_params(), "FedAvgClassifier")
        clients = sorted(clients)
        params.threshold_for(len(clients))  # validates threshold and ring headroom up front
        if role == "client":
            if data is None or data.y is None:
                raise DataError(f"homo client {channel.party!r} needs a labelled table")
            node = HomoClient(channel.party, aggregator, clients, params, data.X, data.y)
            self.report_ = node.run(channel, checkpoint=checkpoint)
            theta = self.report_.get("params")
            if theta is None:
                raise DataError(f"homo client {channel.party!r} was excluded from the job (absent at key set-up)")
            shape = node.shape
        elif role == "aggregator":
            X_eval = y_eval = None
            if data is not None:
                X_eval, y_eval = data.X, data.y
                n_features = data.X.shape[1]
            if n_features is None:
                raise ConfigError("the homo aggregator needs n_features when it has no table")
            node = HomoAggregator(channel.party, clients, params, n_features, X_eval, y_eval)
            self.report_ = node.run(channel, progress=progress, check_cancelled=check_cancelled,
                                    checkpoint=checkpoint)
            theta = self.report_["params"]
            shape = node.shape
        else:
            raise ConfigError(f"homo role must be 'client' or 'aggregator'. Got {role!r} instead.")
        self._set_fitted(np.asarray(theta, dtype=np.float64), shape)
        return self

    def _set_fitted(self, params: np.ndarray, shape) -> None:
        if params.shape != (shape.size,):
            raise DataError(f"homo model has {params.shape[0]} parameters, its shape needs {shape.size}")
        self.params_ = params
        self.hidden_ = shape.hidden
        self._shape = shape
        if not shape.hidden:
            self.coef_ = self.params_[:-1].copy()
            self.intercept_ = self.params_[-1:].copy()

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n, 2)."""
        self._check_fitted()
        p1 = mlp.predict_proba(self._shape, self.params_, X)
        return np.column_stack([1.0 - p1, p1])
