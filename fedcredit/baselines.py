"""Centralized baselines: the federated models trained on the joined data, on one machine.

Only a simulation can do this (every party's table in one process); it shows what the
federation costs or saves. For each model the first baseline is the **same algorithm**
(:class:`~fedcredit.models.tree.gbdt.GBDTReference`, :class:`~fedcredit.models.logistic.LogisticRegressionGD`,
FedAvg over the in-memory channel) on the guest's validation rows, which the federated model
must equal; the second is scikit-learn's counterpart. Used by ``fedcredit demo``, the tests
and the examples.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .launcher import HOMO_TABLES, HOMO_TEST, PARTIES, SUPERVISOR, norm_id

__all__ = ["joined_table", "centralized_baselines", "homo_baselines", "homo_federated_metrics"]


def joined_table(data_dir: str | os.PathLike, parties: tuple[str, ...] | list[str]):
    """Join the parties' credit3 CSVs on the id, rows in the PSI-agreed order (ascending normalized id).

    Only a simulation on one machine can do this; it gives the centralized
    baseline. Columns: the guest's features, then each host's (sorted by name).

    Returns
    -------
    X : ndarray of shape (n, f)
    y : ndarray of shape (n,)
    names : list of str
        ``"<party>.<column>"``.
    """
    import numpy as np

    from .data import load_table

    data = Path(data_dir)
    guest = next(p for p in parties if PARTIES[p][0] == "guest")
    order = [guest] + sorted(p for p in parties if p != guest)
    tables = {p: load_table(data / "credit3" / PARTIES[p][1], party=p, label_column=PARTIES[p][2]) for p in order}
    common = None
    for t in tables.values():
        ids = {norm_id(i) for i in t.ids}
        common = ids if common is None else common & ids
    keys = sorted(common)
    Xs, names = [], []
    for p, t in tables.items():
        pos = {norm_id(i): k for k, i in enumerate(t.ids)}
        rows = np.fromiter((pos[k] for k in keys), dtype=np.int64, count=len(keys))
        Xs.append(t.X[rows])
        names += list(t.feature_names)
        if p == guest:
            y = t.y[rows].astype(np.int64)
    return np.concatenate(Xs, axis=1), y, names


def _metrics(y, score) -> dict:
    from .models.metrics import auc, ks

    return {"auc": round(float(auc(y, score)), 4), "ks": round(float(ks(y, score)), 4)}


def centralized_baselines(data_dir, sbt_params: dict | None, lr_params: dict | None, *,
                          sbt_parties=("bank", "chain", "gov"), lr_parties=("bank", "chain"),
                          lr_features: list[str] | None = None, binning_params: dict | None = None,
                          sbt_validation_seed: int | None = None) -> dict:
    """Train the demo's models centrally on the joined data, on the validation rows the guest uses.

    Parameters
    ----------
    data_dir : path
        Directory holding ``credit3/``.
    sbt_params : dict or None
        The SecureBoost step's parameters (None: skip).
    lr_params : dict or None
        The hetero_lr step's parameters (None: skip).
    sbt_parties, lr_parties : sequence of str
        Whose tables each job joins.
    lr_features : list of str, optional
        The features ``select`` kept (default: all).
    binning_params : dict, optional
        The binning step's parameters (WOE features when ``lr_params["features"] == "woe"``).
    sbt_validation_seed : int, optional
        The SecureBoost guest's secret validation seed (``GuestModel.validation_seed``, read from the bank's
        own model part: the demo plays every party); None: a split seeded by ``random_state``.

    Returns
    -------
    dict
        ``{"secureboost": [...], "hetero_lr": [...]}``, each a list of
        ``{"name", "auc", "ks", "seconds", "n_train", "n_validation"}``.
    """
    import warnings

    import numpy as np

    out: dict[str, list[dict]] = {}
    if sbt_params is not None:
        from .models.tree.gbdt import GBDTReference, validation_split
        from .protocols.secureboost.spec import GH_BITS, MIN_NODE_ROWS

        X, y, _ = joined_table(data_dir, sbt_parties)
        p = {k: v for k, v in sbt_params.items()
             if k not in ("he", "key_bits", "guest_only_first_tree", "guest_only_trees")}
        p.setdefault("min_node_rows", MIN_NODE_ROWS)  # the federated default
        vf, rs = float(p.get("validation_fraction", 0.2)), int(p.get("random_state", 0))
        seed = rs if sbt_validation_seed is None else int(sbt_validation_seed)
        p["validation_seed"] = seed
        if p.get("early_stopping_rounds") is not None:
            train, valid = validation_split(len(y), vf, seed)  # the reference's split: the guest's, given its seed
        else:
            train, valid = np.arange(len(y)), np.arange(len(y))
        rows = []
        t0 = time.perf_counter()
        ref = GBDTReference(**p, gh_bits=GH_BITS).fit(X, y)
        sec = time.perf_counter() - t0
        rows.append({"name": "GBDTReference (same algorithm)",
                     **_metrics(y[valid], ref.predict_proba(X[valid])[:, 1]), "seconds": round(sec, 3)})
        from sklearn.ensemble import HistGradientBoostingClassifier

        hgb = HistGradientBoostingClassifier(
            max_iter=int(p.get("n_trees", 5)), max_depth=int(p.get("max_depth", 3)),
            learning_rate=float(p.get("learning_rate", 0.3)), max_bins=min(255, int(p.get("max_bins", 32)) - 1),
            l2_regularization=float(p.get("reg_lambda", 1.0)), early_stopping=False, random_state=rs)
        t0 = time.perf_counter()
        hgb.fit(X[train], y[train])
        sec = time.perf_counter() - t0
        rows.append({"name": "sklearn HistGradientBoostingClassifier",
                     **_metrics(y[valid], hgb.predict_proba(X[valid])[:, 1]), "seconds": round(sec, 3)})
        for r in rows:
            r.update(n_train=int(len(train)), n_validation=int(len(valid)))
        out["secureboost"] = rows
    if lr_params is not None:
        from .models.logistic import LogisticRegressionGD, Standardizer, validation_split

        X, y, names = joined_table(data_dir, lr_parties)
        if lr_features is not None:
            keep = [names.index(f) for f in lr_features if f in names]
            X, names = X[:, keep], [names[j] for j in keep]
        p = dict(lr_params)
        vf, rs = float(p.get("validation_fraction", 0.1)), int(p.get("random_state", 0))
        train, valid = validation_split(len(y), vf, rs)
        woe = p.get("features", "standardized") == "woe"
        if woe:  # the binning step's WOE, computed centrally (fit_woe is the reference the protocol equals)
            from .models.woe import fit_woe
            from .protocols.binning.params import BinningParams

            bp = BinningParams.from_dict(dict(binning_params or {}), "binning")
            cat = set(bp.categorical)
            Xs = np.empty_like(X, dtype=np.float64)
            for j, n in enumerate(names):
                b = fit_woe(X[:, j], y, name=n, method=bp.method, max_bins=bp.max_bins,
                            categorical=n in cat or n.split(".", 1)[-1] in cat, min_bin_count=bp.min_bin_count,
                            smoothing=bp.smoothing)
                Xs[:, j] = b.transform(X[:, j])
        else:
            Xs = Standardizer(clip=p.get("clip", 3.0)).fit(X[train]).transform(X)
        on = " on WOE" if woe else ""
        gd_keys = ("learning_rate", "schedule", "decay", "alpha", "batch_size", "max_epochs", "validation_fraction",
                   "n_iter_no_change", "tol", "random_state")
        rows = []
        t0 = time.perf_counter()
        gd = LogisticRegressionGD(**{k: p[k] for k in gd_keys if k in p}).fit(Xs, y)
        sec = time.perf_counter() - t0
        rows.append({"name": f"LogisticRegressionGD{on} (same algorithm)",
                     **_metrics(y[valid], gd.predict_proba(Xs[valid])), "seconds": round(sec, 3)})
        from sklearn.linear_model import LogisticRegression

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk = LogisticRegression(max_iter=1000).fit(Xs[train], y[train])
        sec = time.perf_counter() - t0
        rows.append({"name": f"sklearn LogisticRegression (lbfgs){on}",
                     **_metrics(y[valid], sk.predict_proba(Xs[valid])[:, 1]), "seconds": round(sec, 3)})
        for r in rows:
            r.update(n_train=int(len(train)), n_validation=int(len(valid)))
        out["hetero_lr"] = rows
    return out


def _homo_tables(homo_dir: Path):
    from .data import load_table

    banks = {p: load_table(homo_dir / f, party=p, label_column="y") for p, f in HOMO_TABLES.items()}
    return banks, load_table(homo_dir / HOMO_TEST, party=SUPERVISOR, label_column="y")


def homo_baselines(homo_dir: str | os.PathLike, homo_params: dict) -> list[dict]:
    """The ``homo`` job's comparison rows, evaluated on ``homo_test.csv``.

    * FedAvg with the same parameters simulated in one process (in-memory
      channel, ``mode = "plain"``): the same algorithm; secure aggregation
      must not change the model (its sums are exact to 2^-24 per entry).
    * sklearn ``LogisticRegression`` (lbfgs) trained centrally on the union
      of the three banks' rows — something no bank could do alone.
    """
    import warnings

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from .protocols.homo import FedAvgClassifier
    from .transport.memory import run_local

    banks, test = _homo_tables(Path(homo_dir))
    p = {k: v for k, v in homo_params.items() if k != "n_features"}
    p["mode"] = "plain"
    clients = sorted(banks)

    def role(name):
        def fn(ch):
            est = FedAvgClassifier(**p)
            if name == SUPERVISOR:
                return est.fit(ch, test, role="aggregator", clients=clients, aggregator=SUPERVISOR)
            return est.fit(ch, banks[name], role="client", clients=clients, aggregator=SUPERVISOR)
        return fn

    t0 = time.perf_counter()
    sim = run_local({n: role(n) for n in [SUPERVISOR, *clients]}, timeout=120)[SUPERVISOR]
    rows = [{"name": "FedAvg simulated in one process, plain sums (same algorithm)",
             **_metrics(test.y, sim.predict_proba(test.X)[:, 1]), "seconds": round(time.perf_counter() - t0, 3)}]
    X = np.vstack([banks[c].X for c in clients])
    y = np.concatenate([banks[c].y for c in clients])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = LogisticRegression(max_iter=1000).fit(X, y)
    rows.append({"name": "sklearn LogisticRegression (lbfgs) on the union of the banks",
                 **_metrics(test.y, sk.predict_proba(test.X)[:, 1]), "seconds": round(time.perf_counter() - t0, 3)})
    for r in rows:
        r.update(n_train=int(len(y)), n_validation=int(len(test)))
    return rows


def homo_federated_metrics(model_file: str | os.PathLike, homo_dir: str | os.PathLike) -> dict:
    """AUC/KS on ``homo_test.csv`` of the global model a party saved (``homo_model.json``)."""
    from .protocols.homo import load_model

    _, test = _homo_tables(Path(homo_dir))
    est = load_model(model_file)
    return {**_metrics(test.y, est.predict_proba(test.X)[:, 1]), "n_validation": int(len(test))}
