"""Vertical logistic regression (step kind ``hetero_lr``): 1 guest + N hosts, Paillier or CKKS.

Modes: ``coordinated`` (an arbiter holds the key; hosts and guest mask their
gradient sums before it decrypts) and ``two_party`` (no third party: guest
and host each hold a key; partial scores travel under the host's key,
residuals under the guest's, gradients come back masked). Both train with
the Taylor residual, mini-batches, L2, a learning-rate schedule and early
stopping on a validation split, and reproduce
:class:`fedcredit.models.logistic.LogisticRegressionGD` on the joined data.
What each role learns is in ``docs/hetero_lr.md``.

Scoring helpers for federated scoring: :func:`design_matrix` (a party's
features as the model saw them), :func:`partial_score` (a host's ``X_h w_h``)
and :func:`combine` (the guest's probability from its part and the hosts').
"""

from __future__ import annotations


import numpy as np

from ...errors import DataError
from ...models._base import _BaseEstimator
from ...models.logistic import Standardizer, quantize, sigmoid
from ...models.onehot import OneHotDesign
from ..context import StepContext
from ._common import LRParams, Plan
from .arbiter import run_arbiter
from .guest import run_guest
from .host import run_host

__all__ = [
    "run",
    "VerticalLogisticRegression",
    "LRParams",
    "run_guest",
    "run_host",
    "run_arbiter",
    "design_matrix",
    "partial_score",
    "combine",
]


def design_matrix(table, part: dict, *, unseen: str = "error") -> np.ndarray:
    """This party's features as the model uses them (standardized+clipped, WOE or one-hot), shape (n, f)."""
    names = part["features"]
    sub = table.select(names) if names else table
    if part["preprocess"] == "onehot":  # unseen and missing categories: all zeros (fedcredit.models.onehot)
        return OneHotDesign.from_dict(names, part["onehot"]).transform(sub.X if names else np.zeros((len(table), 0)))
    if part["preprocess"] == "woe":
        bins = part["bins"]
        return np.stack([bins[f].transform(sub.X[:, j], unseen=unseen) for j, f in enumerate(names)], axis=1) \
            if names else np.zeros((len(table), 0))
    return Standardizer.from_dict(part["standardizer"]).transform(sub.X)


def partial_score(table, part: dict, *, unseen: str = "error") -> np.ndarray:
    """``X_p w_p`` (+ intercept on the guest) on the fixed-point feature grid: a party's share of the score.

    A host's partial score must leave the host only masked (see the scoring protocol).
    """
    X = quantize(design_matrix(table, part, unseen=unseen))
    return X @ np.asarray(part["coef"], dtype=np.float64) + float(part.get("intercept", 0.0))


def combine(guest_partial, host_partials) -> np.ndarray:
    """Probability of default from the guest's partial score and the hosts' (sum, then sigmoid)."""
    z = np.asarray(guest_partial, dtype=np.float64).copy()
    for hp in host_partials:
        z = z + np.asarray(hp, dtype=np.float64)
    return sigmoid(z)


class VerticalLogisticRegression(_BaseEstimator):
    """One party's side of vertical logistic regression.

    Parameters
    ----------
    mode : {"coordinated", "two_party"}, default="coordinated"
        Key holder: an arbiter, or none (guest and the single host each hold a key).
    backend : {"paillier", "ckks"}, default="paillier"
        Homomorphic scheme: Paillier (exact, fixed point) or CKKS (TenSEAL/SEAL, approximate: coefficients within
        2e-7 of the exact protocol, rows batched 4,096 per ciphertext, each party's ``Xᵀ[[v]]`` packed into one
        ciphertext per batch, much faster; see ``docs/hetero_lr.md``).
    features : {"standardized", "woe", "onehot"}, default="standardized"
        Informational here (the caller passes the design matrix); used by the step.
    weight_column : str or None, default=None
        The guest's column of row weights (the step takes it out of the guest's
        features; with the estimator, pass the weights as ``sample_weight``).
        Every party must be given it: the residual's fixed-point scale changes.
    class_weight : None, "balanced" or dict, default=None
        Weight per class, multiplied into the row weights. Weighted training
        needs ``backend="paillier"`` (refused otherwise when the parameters are
        checked, see ``docs/hetero_lr.md``).
    learning_rate, schedule, decay, alpha, batch_size, max_epochs, validation_fraction,
    n_iter_no_change, tol, random_state
        As :class:`fedcredit.models.logistic.LogisticRegressionGD` (must be equal on every party).
    key_bits : int, default=2048
        Paillier key size (≥ 2048; unused with CKKS, which uses ``poly_modulus_degree=8192``).
    clip : float or None, default=3.0
        Standardized features are clipped to ``[-clip, clip]`` (the step's preprocessing).
    min_batch_size : int or None, default=None
        Privacy floor: ``batch_size`` must be at least this and a short last
        batch of an epoch joins the one before it, so no party's per-batch
        gradient ``Xᵀd / B`` sums fewer rows (see ``docs/privacy.md``). None: off
        (the batches of ``batch_size`` as before).

    Attributes
    ----------
    coef_ : ndarray of shape (n_own_features,)
        This party's coefficients.
    intercept_ : float
        Guest only.
    n_epochs_ : int
    history_ : list of dict
        Per epoch: ``epoch``, ``learning_rate``, ``val_loss`` (guest), wall ``seconds``, ``cpu_seconds`` (this
        process, not its pool workers).
    setup_seconds_ : float
        One-time setup (keys or CKKS contexts generated, exchanged and loaded), not in any epoch's seconds.
    """

    _parameter_constraints = LRParams._parameter_constraints

    def __init__(self, *, mode="coordinated", backend="paillier", features="standardized", learning_rate=1.0,
                 weight_column=None, class_weight=None,
                 schedule="sqrt", decay=1.0, alpha=0.001, batch_size=2000, max_epochs=10, validation_fraction=0.1,
                 n_iter_no_change=3, tol=1e-4, random_state=0, key_bits=2048, clip=3.0,
                 min_batch_size=None):
        self.mode = mode
        self.backend = backend
        self.features = features
        self.weight_column = weight_column
        self.class_weight = class_weight
        self.learning_rate = learning_rate
        self.schedule = schedule
        self.decay = decay
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.key_bits = key_bits
        self.clip = clip
        self.min_batch_size = min_batch_size

    def fit(self, channel, X=None, y=None, *, role: str, guest: str, hosts: list[str], arbiter: str | None = None,
            n_rows: int | None = None, keypair=None, check_cancelled=None,
            sample_weight=None, checkpoint=None) -> "VerticalLogisticRegression":
        """Train this party's side; every party calls ``fit`` with the same hyperparameters.

        Parameters
        ----------
        channel : Channel
        X : ndarray of shape (n, f), optional
            This party's design matrix (None on the arbiter).
        y : ndarray of shape (n,), optional
            Labels (guest only).
        role : {"guest", "host", "arbiter"}
        guest, hosts, arbiter : peer names
        n_rows : int, optional
            Arbiter only: number of aligned rows (default: as the guest says; checked when given).
        checkpoint : fedcredit.protocols.checkpoint.Checkpoint, optional
            Per-epoch checkpoints (a job step passes ``ctx.checkpoint``; Paillier backend only).
        """
        p = LRParams.from_dict(self.get_params(), type(self).__name__)
        if role == "guest":
            if y is None:
                raise DataError("the guest needs labels")
            res = run_guest(channel, X, y, p, hosts=hosts, arbiter=arbiter, keypair=keypair,
                            check_cancelled=check_cancelled, sample_weight=sample_weight, checkpoint=checkpoint)
            self.intercept_ = res["intercept"]
        elif role == "host":
            res = run_host(channel, X, p, guest=guest, arbiter=arbiter, keypair=keypair,
                           check_cancelled=check_cancelled, checkpoint=checkpoint)
            self.intercept_ = 0.0
        elif role == "arbiter":
            res = run_arbiter(channel, None if n_rows is None else int(n_rows), p, guest=guest, hosts=hosts,
                              keypair=keypair, check_cancelled=check_cancelled, checkpoint=checkpoint)
            self.coef_ = np.empty(0)
            self.intercept_ = 0.0
            self.n_epochs_ = res["epochs"]
            self.history_ = []
            return self
        else:
            raise DataError(f"unknown role {role!r}")
        self.coef_ = np.asarray(res["coef"], dtype=np.float64)
        self.n_epochs_ = res["n_epochs"]
        self.history_ = res["history"]
        self.setup_seconds_ = res["setup_seconds"]
        return self

    def decision_function_part(self, X) -> np.ndarray:
        """This party's share of the score (guest: includes the intercept)."""
        self._check_fitted()
        return quantize(X) @ self.coef_ + self.intercept_


def _features(ctx: StepContext, p: LRParams, table):
    """Selected features of this party and its design matrix + preprocessing description."""
    sel = ctx.state.get("selected")
    names = list(sel) if sel is not None else list(table.feature_names)
    sub = table.select(names)
    train = Plan(len(table), p).train
    if p.features == "woe":
        binning = ctx.state.get("binning")
        if binning is None:
            raise DataError("features='woe' needs a binning step before hetero_lr")
        bins = {f: binning["bins"][f] for f in names}
        X = np.stack([bins[f].transform(sub.X[:, j]) for j, f in enumerate(names)], axis=1) if names \
            else np.zeros((len(table), 0))
        part = {"features": names, "preprocess": "woe", "bins": bins}
    elif p.features == "onehot":
        # each party encodes its own columns here, before training: the category names never leave it, only
        # the number of design columns (as the feature count of any other LR) is public
        cats = {f: list(table.category_names(f)) for f in names if table.is_categorical(f)}
        enc = OneHotDesign(names, cats, clip=p.clip).fit(sub.X[train])
        X = enc.transform(sub.X)
        part = {"features": names, "preprocess": "onehot", "onehot": enc.to_dict(), "design": enc.names()}
    else:
        cats = [f for f in names if getattr(table, "is_categorical", lambda _: False)(f)]
        if cats:  # codes are not magnitudes: standardizing them would make the model depend on the code order
            from ...data import TableError

            text = (f"hetero_lr: column {cats[0].split('.', 1)[-1]!r} of {ctx.party!r} is categorical; use "
                    f"features = \"onehot\", or features = \"woe\" (after a binning step), or leave it out with "
                    f"select")
            raise TableError(text, text, cats[0])
        st = Standardizer(clip=p.clip).fit(sub.X[train])
        X = st.transform(sub.X)
        part = {"features": names, "preprocess": "standardized", "standardizer": st.to_dict()}
    return X, part


def run(ctx: StepContext) -> dict:
    """Step entry point; leaves ``ctx.state["hetero_lr"]`` (this party's model part)."""
    p = LRParams.coerce(ctx.params, f"step {ctx.step!r} (hetero_lr)")
    arbiters = ctx.parties_with("arbiter")
    arbiter = arbiters[0] if arbiters else None
    est = VerticalLogisticRegression(**p.as_dict())
    if ctx.role == "arbiter":
        est.fit(ctx.channel, role="arbiter", guest=ctx.guest, hosts=ctx.hosts,  # the row count: from the guest
                check_cancelled=ctx.check_cancelled, checkpoint=ctx.checkpoint)
        ctx.state["hetero_lr"] = {"role": "arbiter"}
        return {"epochs": est.n_epochs_}
    table, weights = ctx.data, None
    if p.weight_column is not None and ctx.role == "guest":
        if p.weight_column not in table.columns:
            raise DataError(f"hetero_lr: weight_column {p.weight_column!r} is not a column of the guest's table")
        weights = table.X[:, table.columns.index(p.weight_column)]
        table = table.select([c for c in table.columns if c != p.weight_column])  # weights are no feature
    X, part = _features(ctx, p, table)
    est.fit(ctx.channel, X, ctx.data.y if ctx.role == "guest" else None, role=ctx.role, guest=ctx.guest,
            hosts=ctx.hosts, arbiter=arbiter, check_cancelled=ctx.check_cancelled, sample_weight=weights,
            checkpoint=ctx.checkpoint)
    part.update({"coef": est.coef_.tolist(), "intercept": est.intercept_, "mode": p.mode,
                 "split": {"validation_fraction": p.validation_fraction, "random_state": p.random_state}})
    ctx.state["hetero_lr"] = part
    if ctx.artifacts is not None:  # this party's model part, for federated scoring (fedcredit.serving)
        from ..scoring.parts import LR_FILE, lr_part_dict

        ctx.artifacts.save_json(LR_FILE, lr_part_dict(part, party=ctx.party, role=ctx.role, guest=ctx.guest,
                                                      hosts=ctx.hosts))
    out = {"n_epochs": est.n_epochs_, "history": est.history_, "setup_seconds": est.setup_seconds_,
           "coef": dict(zip(part.get("design", part["features"]), est.coef_.tolist()))}
    if ctx.role == "guest":
        out["intercept"] = est.intercept_
    return out
