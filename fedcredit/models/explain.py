"""Reason codes, scorecard points and risk grades for scored applicants.

Reason codes say which features pushed an applicant's score most towards
default. Every contribution is in log-odds of default (higher = riskier);
:func:`points` turns log-odds into scorecard points, and a contribution ``c``
costs the applicant ``factor * c`` points (``factor = pdo / ln 2``).

* **Trees (Saabas).** Every node of a SecureBoost tree carries the value it
  would have as a leaf (``Node.value``, the learning rate times the Newton
  step of its gradient sums, stored for internal nodes too). Along an
  applicant's path, the change ``value(child) - value(parent)`` is attributed
  to the parent's split feature; the raw score is the bias (``base_score`` plus
  every root's value) plus the sum of the contributions, exactly. A path is
  determined by its leaf, so the contributions of a (tree, leaf) are computed
  once per model (:class:`TreeExplainer`) and scoring only sums rows of a small
  table: the guest needs nothing beyond the leaf each applicant reaches, which
  it already knows under path-only scoring.
* **Scorecard / WOE LR (PMML ``pointsBelow``).** A feature's contribution is
  ``w_j * WOE_j[bin(x)] - min_b w_j * WOE_j[b]``: the log-odds the applicant
  carries beyond the feature's best bin, i.e. the points lost against the best
  bin divided by ``factor``. Standardized LR features use the training mean as
  reference (contribution ``w_j * z_j``, negative when better than average).
  Feature values are on the model's fixed-point grid (``quantize``), as in
  the score itself, so the contributions and references add up to it.

:func:`top_reasons` picks the K largest positive contributions per row.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, DataError
from .tree.predictor import split_decision

__all__ = [
    "TreeExplainer",
    "saabas_merged",
    "lr_contributions",
    "lr_reference",
    "top_reasons",
    "points",
    "parse_grades",
    "grade",
    "DEFAULT_GRADES",
    "DEFAULT_SCALE",
]

#: Score scale used when neither the model's scorecard step nor the caller gives one.
DEFAULT_SCALE = {"pdo": 20.0, "base_score": 600.0, "base_odds": 50.0}

#: Risk grades by probability of default: grade ``g`` for PD < its bound; the last grade has none.
DEFAULT_GRADES = (("A", 0.02), ("B", 0.05), ("C", 0.10), ("D", 0.20), ("E", 0.40), ("F", None))


class TreeExplainer:
    """Saabas contributions of a SecureBoost model from the guest's part.

    Parameters
    ----------
    guest_model : GuestModel
        Tree structure and every node's value (internal nodes included); host
        splits carry the host's feature index (``Node.feature``), which the
        guest chose the split by at training.

    Attributes
    ----------
    keys : list of tuple
        One per reason column: ``(guest, j)`` for the guest's feature ``j``,
        ``(host, k)`` for feature ``k`` of a host.
    bias : float
        ``base_score`` plus the root value of every tree.
    table : ndarray of shape (n_nodes, len(keys))
        Per node (all trees concatenated, in :class:`~fedcredit.protocols.scoring.guest.Forest`
        order), the contributions of the path from its tree's root to it.
    """

    def __init__(self, guest_model):
        self.guest = guest_model.party
        keys: dict = {}
        for j in range(len(guest_model.feature_names)):
            keys[(self.guest, j)] = len(keys)
        rows, bias = [], float(guest_model.base_score)
        for nodes in guest_model.trees:
            for n in nodes:
                if not n.is_leaf:
                    k = (n.party if n.threshold is None else self.guest, int(n.feature))
                    keys.setdefault(k, len(keys))
        self.keys = list(keys)
        for nodes in guest_model.trees:
            by_id = {n.id: n for n in nodes}
            acc = {}
            for n in nodes:  # children have larger ids than their parent
                if n.id not in acc:
                    acc[n.id] = np.zeros(len(self.keys))
                    bias += float(n.value)  # a root
                if not n.is_leaf:
                    k = keys[(n.party if n.threshold is None else self.guest, int(n.feature))]
                    for c in (n.left, n.right):
                        v = acc[n.id].copy()
                        v[k] += float(by_id[c].value) - float(n.value)
                        acc[c] = v
            rows += [acc[n.id] for n in nodes]
        self.bias = bias
        self.table = np.array(rows, dtype=np.float64).reshape(-1, len(self.keys))

    def names(self, guest_names, host_texts: dict | None = None) -> list[str]:
        """Reason text of each column: the guest's feature names; a host's published text or ``host:feature#k``."""
        host_texts = host_texts or {}
        out = []
        for p, j in self.keys:
            if p == self.guest:
                out.append(str(guest_names[j]))
            else:
                out.append(host_texts.get(p, {}).get(j) or f"{p}:feature#{j}")
        return out

    def contributions(self, leaves: np.ndarray) -> np.ndarray:
        """``(n, len(keys))`` contributions of rows whose leaf in tree ``t`` is ``leaves[t]`` (node indices)."""
        leaves = np.asarray(leaves)
        out = np.zeros((leaves.shape[1], len(self.keys)))
        for t in range(leaves.shape[0]):
            out += self.table[leaves[t]]
        return out


def saabas_merged(model: dict, columns: dict) -> tuple[list[str], np.ndarray, float]:
    """Central Saabas on a merged (exported) tree model and the joined data: ``(features, contributions, bias)``.

    The reference the federated reasons are checked against: every split names
    its feature and threshold, every row is routed on the joined data.
    """
    names = list(model["features"])
    col = {f: j for j, f in enumerate(names)}
    n = len(next(iter(columns.values())))
    X = np.stack([np.asarray(columns[f], dtype=np.float64) for f in names], axis=1)
    out = np.zeros((n, len(names)))
    bias = float(model["base_score"])
    for tree in model["trees"]:
        nodes = {d["id"]: d for d in tree}
        root = tree[0]
        bias += float(root["value"])
        pos = np.full(n, root["id"])
        for d in tree:  # children have larger ids than their parent
            if d["is_leaf"]:
                continue
            here = pos == d["id"]
            if not here.any():
                continue
            x = X[here, col[d["feature"]]]
            left = split_decision(x, d.get("threshold"), bool(d["missing_left"]), d.get("categories"),
                                  d.get("categories_right"))
            child = np.where(left, d["left"], d["right"])
            delta = np.array([nodes[c]["value"] for c in child]) - float(d["value"])
            out[here, col[d["feature"]]] += delta
            pos[here] = child
    return names, out, bias


def lr_reference(part: dict) -> np.ndarray:
    """Per feature of an LR part, the reference its contribution is measured from (WOE: the best bin).

    WOE values enter the model on the fixed-point grid the LR was trained on
    (:func:`~fedcredit.models.logistic.quantize`), so the best bin is taken
    on that grid too and contributes exactly 0.
    """
    from .logistic import quantize

    if part["preprocess"] == "woe":
        return np.array([float(np.min(float(w) * quantize(np.asarray(part["bins"][f].woe))))
                         for f, w in zip(part["features"], part["coef"])], dtype=np.float64)
    return np.zeros(len(part["features"]))


def lr_contributions(part: dict, Z: np.ndarray) -> np.ndarray:
    """``(n, f)`` per-feature contributions (log-odds beyond the reference) of one party's LR part.

    ``Z`` is the party's design matrix as scoring computes it (WOE values or
    standardized values, quantized; ``protocols.scoring.host.lr_design``), so
    the contributions plus the reference sum to the party's partial score.
    """
    coef = np.asarray(part["coef"], dtype=np.float64)
    C = np.asarray(Z, dtype=np.float64) * coef
    if part["preprocess"] == "onehot":  # one reason per input column (its levels summed): names stay per column
        levels = part["onehot"]["levels"]
        edges = np.cumsum([0] + [len(levels[f]) if f in levels else 1 for f in part["features"]])
        C = np.stack([C[:, a:b].sum(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1) \
            if len(part["features"]) else C[:, :0]
    return C - lr_reference(part)


def top_reasons(contrib: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of each row's ``k`` largest positive contributions (index -1 = none).

    Ties keep the column order (a stable sort), so the result does not depend
    on floating-point noise in equal contributions.
    """
    contrib = np.asarray(contrib, dtype=np.float64)
    n, f = contrib.shape
    idx = np.full((n, k), -1, dtype=np.int64)
    val = np.zeros((n, k))
    if f == 0 or k == 0:
        return idx, val
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
    v = np.take_along_axis(contrib, order, axis=1)
    m = v > 0
    kk = order.shape[1]
    idx[:, :kk] = np.where(m, order, -1)
    val[:, :kk] = np.where(m, v, 0.0)
    return idx, val


def points(log_odds, *, pdo: float = 20.0, base_score: float = 600.0, base_odds: float = 50.0) -> np.ndarray:
    """Scorecard points ``offset - factor * log_odds`` (``base_odds`` good:bad at ``base_score``)."""
    if not (pdo > 0 and base_odds > 0):
        raise ConfigError("pdo and base_odds must be positive")
    factor = pdo / math.log(2.0)
    return base_score - factor * math.log(base_odds) - factor * np.asarray(log_odds, dtype=np.float64)


def parse_grades(text: str) -> tuple:
    """``"A=0.02,B=0.05,...,F"`` → ``(("A", 0.02), ..., ("F", None))``: PD bounds, increasing; the last has none."""
    out = []
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    for i, it in enumerate(items):
        name, _, bound = it.partition("=")
        name = name.strip()
        if not name or len(name) > 16:
            raise ConfigError(f"grade {it!r}: expected NAME=PD_BOUND (the last grade: NAME)")
        if i == len(items) - 1:
            if bound:
                raise ConfigError(f"the last grade {name!r} takes no bound (it holds every PD above the others)")
            out.append((name, None))
            continue
        try:
            b = float(bound)
        except ValueError:
            raise ConfigError(f"grade {it!r}: the bound must be a probability") from None
        if not 0 < b < 1 or (out and b <= out[-1][1]):
            raise ConfigError(f"grade {it!r}: bounds must be increasing probabilities in (0, 1)")
        out.append((name, b))
    if not out:
        raise ConfigError("no grades given")
    return tuple(out)


def grade(pd, grades=DEFAULT_GRADES) -> np.ndarray:
    """Risk grade of each probability of default: the first grade whose bound exceeds it."""
    pd = np.asarray(pd, dtype=np.float64)
    bounds = np.array([b for _, b in grades[:-1]], dtype=np.float64)
    names = np.array([g for g, _ in grades], dtype=object)
    if np.any(np.isnan(pd)):
        raise DataError("a probability of default is NaN")
    return names[np.searchsorted(bounds, pd, side="right")]
