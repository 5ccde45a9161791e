"""Vertical SecureBoost: lossless gradient-boosted trees across a label holder and N hosts.

Roles: the **guest** holds the labels and its own features and drives the
protocol (:mod:`.guest`; each host's features reach its grower through
:mod:`.remote`, federated scoring is :mod:`.predict`); each **host** holds
features only (:mod:`.host`).
Messages are listed in :mod:`.spec`; the per-party model parts and their JSON
files are in :mod:`.model`. The trees equal those of
:class:`fedcredit.models.tree.GBDTReference` trained on the joined table with
``gh_bits=spec.GH_BITS`` (see ``docs/secureboost.md``).

Entry points
------------
:class:`VerticalSecureBoost`
    The estimator; ``fit(channel, X, y)`` on the guest, ``fit(channel, X)`` on a host.
:func:`run`
    The job step ``kind = "secureboost"``.
:func:`predict_guest`, :func:`predict_host`
    Federated scoring of a stored model.
"""

from __future__ import annotations


import numpy as np

from ...errors import ConfigError, DataError
from ...models._base import _BaseEstimator
from ...models.tree.gbdt import categorical_mask
from ...models.tree.grower import check_monotone
from ...transport.base import Channel
from .guest import SecureBoostGuest
from .he import DEFAULT_HE
from .host import SecureBoostHost, predict_host
from .model import GUEST_FILE, HOST_FILE, GuestModel, HostModel
from .params import ESTIMATOR_CONSTRAINTS, SecureBoostParams
from .predict import predict_guest
from .spec import MIN_NODE_ROWS

__all__ = ["VerticalSecureBoost", "run", "predict_guest", "predict_host", "GuestModel", "HostModel",
           "monotone_array"]


def monotone_array(monotonic_cst, feature_names: list[str]) -> np.ndarray | None:
    """A party's constraints as one sign per feature (None: no constraint).

    ``monotonic_cst`` is None, a sequence of -1/0/1 per feature, or a dict
    ``{name: sign}`` whose names are raw column names or ``<party>.<column>``.

    Raises
    ------
    ConfigError
        An unknown feature name or a sign other than -1, 0 and 1.
    """
    if monotonic_cst is None:
        return None
    if not isinstance(monotonic_cst, dict):
        return check_monotone(np.asarray(monotonic_cst), len(feature_names))
    out = np.zeros(len(feature_names), dtype=np.int8)
    index = {f: j for j, f in enumerate(feature_names)}
    index.update({f.split(".", 1)[-1]: j for j, f in enumerate(feature_names) if "." in f})
    for name, sign in monotonic_cst.items():
        if name not in index:
            raise ConfigError(f"monotone: no feature {name!r} in this party's table")
        if type(sign) is not int or sign not in (-1, 0, 1):
            raise ConfigError(f"monotone: the constraint of {name!r} must be 1, -1 or 0, got {sign!r}")
        out[index[name]] = sign
    return out if np.any(out != 0) else None


def _metrics(y, score) -> dict:
    from ...models.metrics import auc, ks

    y = np.asarray(y)
    if len(y) == 0 or len(np.unique(y)) < 2:
        return {"auc": None, "ks": None}
    return {"auc": float(auc(y, score)), "ks": float(ks(y, score))}


class VerticalSecureBoost(_BaseEstimator):
    """Vertical federated gradient-boosted trees (binary logistic loss).

    The same object is created on every party; the guest calls
    ``fit(channel, X, y)`` and each host ``fit(channel, X)`` with its own
    aligned rows (same order on every party, e.g. from PSI).

    Parameters
    ----------
    n_trees : int, default=5
    max_depth : int, default=3
    learning_rate : float, default=0.3
    max_bins : int, default=32
        Codes per feature including the missing-value bin.
    reg_lambda : float, default=1.0
        L2 regularization of leaf weights.
    min_child_weight : float, default=1e-3
        Minimum hessian sum in a child.
    min_split_gain : float, default=0.0
    subsample : float, default=1.0
        Fraction of training rows per tree (without replacement).
    colsample : float, default=1.0
        Fraction of all parties' features per tree.
    min_node_rows : int, default=spec.MIN_NODE_ROWS (20)
        A node is split only when it and its sibling each hold at least this
        many rows; hosts refuse to build any histogram over fewer rows (directly
        or as parent minus sibling) and refuse a value below the floor
        ``spec.MIN_NODE_ROWS``.
    early_stopping_rounds : int or None, default=None
        When set, the guest holds out a random ``validation_fraction`` of the
        aligned rows (its size fixed by the row count, its rows drawn from a
        seed the guest draws from ``secrets`` and keeps: hosts see the split
        but it says nothing about the labels), scores it with the federated
        predict path after every tree, and stops once the log-loss has not
        improved for this many trees (keeping the best prefix).
    validation_fraction : float, default=0.2
    class_weight : None, "balanced" or dict, default=None
        Guest only: weight per class (``{0: a, 1: b}``, or ``"balanced"``:
        ``n / (2 n_c)``), multiplied into ``sample_weight``; weights multiply
        every row's ``g`` and ``h`` (see ``docs/secureboost.md``).
    guest_only_first_tree : bool, default=False
        Build the first tree on the guest's features only ("complete secure"
        mode of SecureBoost): hosts then never see the node membership of the
        first tree, whose leaves are the ones most correlated with the label.
        The same as ``guest_only_trees=1`` (the larger of the two applies).
    guest_only_trees : int, default=0
        Build the first ``guest_only_trees`` trees on the guest's features only:
        hosts receive neither ``(g, h)`` nor any node's rows for them (only the
        tree's sampled rows and, for scoring, no split of theirs).
    label_epsilon : float or None, default=None
        Label differential privacy: the guest trains on labels replaced by
        randomized response (each flipped with probability
        ``1 / (1 + e**label_epsilon)``, drawn once per job from a secret seed
        it keeps), so everything the hosts receive is ``label_epsilon``-label-DP
        (accountant: ``docs/privacy.md``). None: off, the trees of the true labels.
    key_bits : int, default=2048
        Modulus size (``n = p q`` for Paillier, ``n = p^2 q`` for OU; 2048 bits
        is 112-bit security for both).
    gh_part_rows : int or None, default=None
        Rows per message of the encrypted ``(g, h)`` the guest streams to each host per tree.
        None: as many as fit in 64 MiB (131,072 rows at 2048 bits), well under the default
        ``[transport] max_message_mib = 256``; set it lower if a party's limit is lower. It
        changes neither the trees nor the run id (a resumed run may change it).
    he : {"ou", "paillier"}, default="ou"
        The additive scheme of the run (the guest generates the key and names the
        scheme in SETUP; :mod:`.he`). Okamoto-Uchiyama has half-size ciphertexts,
        ~3x faster additions and (short-exponent owner encryption) faster key-owner
        encryption: the faster choice on narrow and wide tables alike; the guest's
        guarded decryption keeps its key-recovery pitfall out of reach
        (``docs/secureboost.md``, "Scheme"). Both give the same trees, with the local
        pool or a distributed (Dask) compute backend on any party.
    random_state : int, default=0
        Seeds per-tree row/feature sampling (public: every party knows it). The
        validation split has its own secret seed (``validation_seed_``).

    Attributes
    ----------
    role_ : {"guest", "host"}
    model_ : GuestModel or HostModel
    validation_seed_ : int
        Guest only: the secret seed of the validation split (also in
        ``model_.validation_seed``); ``GBDTReference(validation_seed=...)``
        with the same parameters reproduces the trees.
    result_ : dict
        The run report (timings, trees, bytes, metrics on the guest).
    """

    _parameter_constraints = ESTIMATOR_CONSTRAINTS
    _fitted_attr = "model_"

    def __init__(self, *, n_trees: int = 5, max_depth: int = 3, learning_rate: float = 0.3, max_bins: int = 32,
                 reg_lambda: float = 1.0, min_child_weight: float = 1e-3, min_split_gain: float = 0.0,
                 subsample: float = 1.0, colsample: float = 1.0, min_node_rows: int = MIN_NODE_ROWS,
                 early_stopping_rounds: int | None = None, class_weight=None,
                 he: str = DEFAULT_HE,
                 validation_fraction: float = 0.2, guest_only_first_tree: bool = False, key_bits: int = 2048,
                 gh_part_rows: int | None = None, random_state: int = 0, guest_only_trees: int = 0,
                 label_epsilon: float | None = None):
        self.n_trees = n_trees
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.max_bins = max_bins
        self.reg_lambda = reg_lambda
        self.min_child_weight = min_child_weight
        self.min_split_gain = min_split_gain
        self.subsample = subsample
        self.colsample = colsample
        self.min_node_rows = min_node_rows
        self.early_stopping_rounds = early_stopping_rounds
        self.class_weight = class_weight
        self.validation_fraction = validation_fraction
        self.guest_only_first_tree = guest_only_first_tree
        self.he = he
        self.key_bits = key_bits
        self.gh_part_rows = gh_part_rows
        self.random_state = random_state
        self.guest_only_trees = guest_only_trees
        self.label_epsilon = label_epsilon

    def fit(self, channel: Channel, X, y=None, *, role: str | None = None, guest: str | None = None,
            hosts: list[str] | None = None, feature_names=None, artifacts=None, progress=None, check_cancelled=None,
            keypair=None, sample_weight=None, monotonic_cst=None, share_feature_names=False,
            categorical_features=None) -> "VerticalSecureBoost":
        """Train this party's side.

        Parameters
        ----------
        channel : Channel
            Connected to the other parties (namespaced to this run).
        X : ndarray of shape (n_rows, n_features)
            This party's aligned features (NaN = missing).
        y : ndarray of shape (n_rows,), optional
            Labels: given on the guest only.
        role : {"guest", "host"}, optional
            Default: "guest" when ``y`` is given, else "host".
        guest : str, optional
            The guest's name (hosts; default: the channel's only peer).
        hosts : list of str, optional
            The hosts (guest; default: every peer of the channel, sorted).
        feature_names : list of str, optional
        artifacts : fedcredit.artifacts.Artifacts, optional
            Where the model part is kept (a step passes ``ctx.artifacts``; a
            script ``FileArtifacts(directory)``): it is saved after every tree
            and a re-run with the same data and parameters resumes from the last
            tree every party finished.
        progress : callable(message, fraction), optional
        check_cancelled : callable(), optional
        keypair : (PublicKey, PrivateKey), optional
            Guest only: use this key pair instead of generating one (tests use
            ``fedcredit.testing.small_keypair`` or ``small_ou_keypair``); its scheme
            is the run's (it overrides ``he``).
        sample_weight : ndarray of shape (n_rows,), optional
            Guest only: row weights (see ``class_weight``).
        monotonic_cst : array-like of int of shape (n_features,) or dict, optional
            This party's monotone constraints on its own features: ``+1``
            (the score may only rise with the feature), ``-1`` or 0, as an
            array or as ``{feature name: sign}``. A host sends only the signs.
        share_feature_names : bool or list of str, default=False
            Host only: publish all (True) or the listed feature names to the
            guest for its importance report (else ``<host>:feature#k``).
        categorical_features : array-like of bool or int, optional
            This party's categorical features (mask or indices); their values
            are category codes (``fedcredit.data.Table``). Split by category
            subsets; NaN and categories unseen in training follow the missing
            branch. A host sends only the flags.

        Returns
        -------
        self
        """
        self._validate_params()
        role = role or ("guest" if y is not None else "host")
        if role not in ("guest", "host"):
            raise ConfigError(f"The 'role' argument of VerticalSecureBoost.fit must be 'guest' or 'host'. Got {role!r}.")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise DataError(f"X must be 2-d (n_rows, n_features); got shape {X.shape}")
        names = list(feature_names or [f"x{j}" for j in range(X.shape[1])])
        monotone = monotone_array(monotonic_cst, names)
        categorical = categorical_mask(categorical_features, X.shape[1])
        if role == "guest":
            if y is None:
                raise DataError("the guest needs labels y")
            y = np.asarray(y)
            if y.shape != (len(X),):
                raise DataError(f"y has shape {y.shape}, X has {len(X)} rows")
            if not np.isin(np.unique(y), (0, 1)).all() or len(np.unique(y)) < 2:
                raise DataError("y must be binary 0/1 with both classes present")
            hosts = sorted(hosts if hosts is not None else channel.peers)
            g = SecureBoostGuest(channel, X, y, params=self.get_params(), hosts=hosts, feature_names=feature_names,
                                 keypair=keypair, artifacts=artifacts, progress=progress, check_cancelled=check_cancelled,
                                 sample_weight=sample_weight, monotone=monotone, categorical=categorical)
            self.model_, result = g.run()
            self.validation_seed_ = g.validation_seed_
            yy = np.asarray(y)
            from ...models.tree.gbdt import sigmoid

            result["train"] = _metrics(yy[g.train_rows_], sigmoid(g.raw_train))
            result["validation"] = _metrics(yy[g.valid_rows_], sigmoid(g.raw_valid)) if len(g.valid_rows_) else None
            rows = np.concatenate([g.train_rows_, g.valid_rows_]).astype(np.int64)
            self.scores_ = {"rows": rows, "score": sigmoid(np.concatenate([g.raw_train, g.raw_valid])),
                            "validation": np.arange(len(rows)) >= len(g.train_rows_)}
        else:
            if y is not None or sample_weight is not None:
                raise DataError("a host has no labels or weights; pass y and sample_weight only on the guest")
            if guest is None:
                if len(channel.peers) != 1:
                    raise ConfigError("a host with several peers must be told which one is the guest (guest=...)")
                guest = channel.peers[0]
            # the host holds the guest to the job's protection (the parameters its policy approved)
            go = max(self.guest_only_trees, 1 if self.guest_only_first_tree else 0)
            h = SecureBoostHost(channel, X, guest=guest, feature_names=feature_names, artifacts=artifacts,
                                progress=progress, check_cancelled=check_cancelled, monotone=monotone,
                                share_feature_names=share_feature_names,
                                min_node_rows=self.min_node_rows, guest_only_trees=go, categorical=categorical)
            self.model_, result = h.run()
        self.role_ = role
        self.result_ = result
        return self

    def predict_proba(self, channel: Channel, X):
        """Federated scoring of ``X`` (this party's features of the rows, same order on every party).

        Returns
        -------
        ndarray of shape (n, 2) on the guest; None on a host (which only answers).
        """
        self._check_fitted()
        if self.role_ == "guest":
            p = predict_guest(channel, self.model_, X)
            return np.stack([1 - p, p], axis=1)
        predict_host(channel, self.model_, X)
        return None


def _categorical(table) -> np.ndarray:
    """The table's categorical columns as one flag per feature (text and declared ``categorical`` columns)."""
    is_cat = getattr(table, "is_categorical", None)
    return np.array([bool(is_cat and is_cat(c)) for c in table.columns], dtype=bool)


def run(ctx) -> dict:
    """Job step ``kind = "secureboost"``: train on ``ctx.data`` and keep the model part in ``ctx.artifacts``.

    ``ctx.params`` are :class:`VerticalSecureBoost` parameters, plus
    ``weight_column`` (a column of the guest's table: the row weights, not a
    feature) and ``monotone = { <party> = { <column> = 1 or -1 } }`` (each
    party takes its own entry and adds it to ``monotone`` of its table
    config). A host publishes feature names per its ``[policy]
    share_feature_names``. Returns the run report: trees, seconds, per-step
    timings, bytes, importance, and on the guest the training and validation AUC and KS.
    """
    params = SecureBoostParams.coerce(ctx.params, f"step {ctx.step!r} (secureboost)")
    weight_column, monotone_param = params.weight_column, params.monotone
    est = VerticalSecureBoost(**params.estimator_params())
    table = ctx.data
    if table is None:
        raise DataError(f"secureboost: party {ctx.party!r} has no data")
    table_cfg = getattr(ctx, "table", None)
    monotone = dict(getattr(table_cfg, "monotone", None) or {})
    for name, sign in ((monotone_param or {}).get(ctx.party) or {}).items():
        if monotone.get(name, sign) != sign:
            raise ConfigError(f"secureboost: the job's monotone constraint of {name!r} contradicts {ctx.party!r}'s "
                              "table config")
        monotone[name] = sign
    share = getattr(ctx.policy, "share_feature_names", False) if ctx.policy is not None else False
    if ctx.role == "guest":
        weights = None
        if weight_column is not None:
            if weight_column not in table.columns:
                raise DataError(f"secureboost: weight_column {weight_column!r} is not a column of the guest's table")
            weights = table.X[:, table.columns.index(weight_column)]
            table = table.select([c for c in table.columns if c != weight_column])
        est.fit(ctx.channel, table.X, table.y, role="guest", hosts=ctx.hosts, feature_names=list(table.feature_names),
                artifacts=ctx.artifacts, progress=ctx.progress, check_cancelled=ctx.check_cancelled,
                sample_weight=weights, monotonic_cst=monotone or None, categorical_features=_categorical(table))
        ctx.state["secureboost"] = {"model": GUEST_FILE}
        sc = est.scores_  # for the ROC, KS and score-distribution plots of this party's report.html
        ctx.artifacts.save_scores(np.asarray(table.y)[sc["rows"]], sc["score"], validation=sc["validation"])
    elif ctx.role == "host":
        est.fit(ctx.channel, table.X, role="host", guest=ctx.guest, feature_names=list(table.feature_names),
                artifacts=ctx.artifacts, progress=ctx.progress, check_cancelled=ctx.check_cancelled,
                monotonic_cst=monotone or None, share_feature_names=share, categorical_features=_categorical(table))
        ctx.state["secureboost"] = {"model": HOST_FILE}
    else:
        raise ConfigError(f"secureboost has no role {ctx.role!r}")
    return est.result_
