"""Merged plaintext models, for export after every party approved (see ``ScoringService.export``).

SecureBoost: one JSON tree format in which every split names its feature
(``party.column``), threshold and missing-value direction. Hetero LR: every
feature's preprocessing (standardizer or WOE bins) and coefficient, and the
intercept. :func:`predict_merged` evaluates either on a joined table, which is
what "the same model evaluated centrally" means in the tests.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..models.logistic import sigmoid
from ..models.onehot import OneHotDesign
from ..models.tree.grower import Node
from ..models.tree.predictor import predict_raw
from ..protocols.scoring.host import lr_partial

__all__ = ["merge_secureboost", "merge_lr", "predict_merged", "TREE_FORMAT", "LR_FORMAT"]

TREE_FORMAT = "fedcredit.secureboost.merged.v1"
LR_FORMAT = "fedcredit.hetero_lr.merged.v1"


def _predicate(threshold, left_categories, right_categories) -> dict:
    """A split's predicate in the merged model: ``threshold`` (``x <= t`` left), or for a categorical
    split the category codes going left (``categories``) and right (``categories_right``); NaN and
    codes in neither follow ``missing_left``."""
    if left_categories is not None:
        return {"categories": [float(c) for c in left_categories],
                "categories_right": [float(c) for c in right_categories or []]}
    return {"threshold": float(threshold)}


def merge_secureboost(guest_model, host_parts: dict) -> dict:
    """Fill each host node of ``guest_model`` with the host's feature and threshold.

    ``host_parts`` maps a host to its ``HostModel.to_dict()``.
    """
    trees = []
    for nodes in guest_model.trees:
        out = []
        for n in nodes:
            # cover = the node's training hessian sum (TreeSHAP weights, PMML recordCount = n_rows)
            d = {"id": n.id, "is_leaf": n.is_leaf, "value": n.value, "left": n.left, "right": n.right,
                 "cover": float(n.h), "n_rows": int(n.n_rows)}
            if not n.is_leaf:
                if n.local:
                    d.update(feature=guest_model.feature_names[n.feature], missing_left=n.missing_left,
                             **_predicate(n.threshold, n.left_categories, n.right_categories))
                else:
                    hp = host_parts.get(n.party)
                    s = None if hp is None else hp["splits"].get(str(n.split_id))
                    if s is None:
                        raise DataError(f"export: {n.party!r} did not provide its split {n.split_id}")
                    name = s.get("feature_name") or hp["feature_names"][s["feature"]]
                    d.update(feature=name, missing_left=bool(s["missing_left"]),
                             **_predicate(s.get("threshold"), s.get("left_categories"), s.get("right_categories")))
            out.append(d)
        trees.append(out)
    return {"format": TREE_FORMAT, "base_score": guest_model.base_score, "trees": trees,
            "features": sorted({d["feature"] for t in trees for d in t if "feature" in d})}


def merge_lr(guest_part: dict, host_parts: dict) -> dict:
    """Per-party preprocessing and coefficients plus the guest's intercept (``host_parts``: host → part JSON)."""
    parties = {guest_part["party"]: _lr_public(guest_part)}
    for h, p in sorted(host_parts.items()):
        parties[h] = _lr_public(p)
    return {"format": LR_FORMAT, "intercept": float(guest_part.get("intercept", 0.0)), "parties": parties,
            "coef": {f: c for p in parties.values() for f, c in zip(_design(p), p["coef"])}}


def _design(part: dict) -> list[str]:
    """Names of a part's design columns (``column=category`` per one-hot level)."""
    if part["preprocess"] == "onehot":
        return OneHotDesign.from_dict(part["features"], part["onehot"]).names()
    return list(part["features"])


def _lr_public(part: dict) -> dict:
    d = {"features": list(part["features"]), "coef": [float(c) for c in part["coef"]], "preprocess": part["preprocess"]}
    if part["preprocess"] == "woe":
        d["bins"] = {f: (b.to_dict() if hasattr(b, "to_dict") else b) for f, b in part["bins"].items()}
    elif part["preprocess"] == "onehot":
        d["onehot"] = part["onehot"]
    else:
        d["standardizer"] = part["standardizer"]
    return d


def predict_merged(model: dict, columns: dict, *, raw: bool = False) -> np.ndarray:
    """Evaluate a merged model on a joined table given as ``{feature name: column array}`` (NaN = missing)."""
    if model.get("format") == TREE_FORMAT:
        names = model["features"]
        X = np.stack([np.asarray(columns[f], dtype=np.float64) for f in names], axis=1)
        col = {f: j for j, f in enumerate(names)}
        trees = [[Node(id=d["id"], depth=0, n_rows=0, g=0.0, h=0.0, value=d["value"], is_leaf=d["is_leaf"],
                       feature=col[d["feature"]] if not d["is_leaf"] else -1,
                       threshold=d.get("threshold"), missing_left=bool(d.get("missing_left", False)),
                       left=d["left"], right=d["right"], left_categories=d.get("categories"),
                       right_categories=d.get("categories_right")) for d in t] for t in model["trees"]]
        r = predict_raw(trees, float(model["base_score"]), X)
        return r if raw else sigmoid(r)
    if model.get("format") == LR_FORMAT:
        from ..models.woe import Bins

        z = np.full(len(next(iter(columns.values()))), float(model["intercept"]))
        for p in model["parties"].values():
            part = dict(p, intercept=0.0)
            if p["preprocess"] == "woe":
                part["bins"] = {f: Bins.from_dict(b) for f, b in p["bins"].items()}
            X = np.stack([np.asarray(columns[f], dtype=np.float64) for f in p["features"]], axis=1) \
                if p["features"] else np.zeros((len(z), 0))
            z = z + lr_partial(part, X)
        return z if raw else sigmoid(z)
    raise DataError(f"unknown merged model format {model.get('format')!r}")
