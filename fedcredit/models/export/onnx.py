"""ONNX graphs of merged models, built with the ``onnx`` package's helpers (``fedcredit[export]``).

Input ``X``: double, shape ``(N, F)``, the columns in the order of the
model's ``features`` metadata property (NaN = missing). Outputs ``label``
(int64, 1 = default at PD >= 0.5) and ``probabilities`` (``(N, 2)``; column 1
is the probability of default).

* SecureBoost → ``ai.onnx.ml.TreeEnsembleClassifier`` (opset 3, thresholds,
  leaf weights and base score as double tensors), ``BRANCH_LEQ`` splits with
  ``nodes_missing_value_tracks_true`` = the training-time missing direction,
  ``post_transform = "LOGISTIC"``. A categorical split becomes a chain of
  ``BRANCH_EQ`` nodes over the category codes of the side missing values do
  not take (opset 3 has no set membership); NaN and categories unseen in
  training fall through to the missing side.
* LR → the federation's design in standard ONNX ops (double), then
  ``ai.onnx.ml.LinearClassifier`` (``LOGISTIC``): WOE features as bin look-ups
  (``Greater``/``ReduceSum``/``Gather`` for numeric bins, ``Equal`` one-hot for
  categories; a missing or unseen value takes the missing bin's WOE), on the
  model's fixed-point grid; standardized features as
  ``Round(Clip((x - mean) / scale) * 2^8) / 2^8``, missing at the mean.
  ``LinearClassifier`` keeps coefficients as float32 (an ONNX-ML limit): the
  log-odds move by at most ``sum |w_j z_j| * 2^-24``, far below 1e-6 in
  probability for credit models.
"""

from __future__ import annotations

import json

import numpy as np

from ...errors import ConfigError, DataError
from .pmml import _no_onehot

__all__ = ["to_onnx"]

_TREE_FORMAT = "fedcredit.secureboost.merged.v1"
_LR_FORMAT = "fedcredit.hetero_lr.merged.v1"
_OPSET = 17
_ML_OPSET = 3


def _onnx():
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:  # the optional extra
        raise ConfigError("ONNX export needs the 'onnx' package: pip install 'fedcredit[export]'") from None
    return onnx, TensorProto, helper, numpy_helper


def _trees(model: dict, helper, numpy_helper):
    col = {f: j for j, f in enumerate(model["features"])}
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_truenodeids",
                         "nodes_falsenodeids", "nodes_missing_value_tracks_true", "class_treeids", "class_nodeids",
                         "class_ids")}
    thresholds, weights = [], []
    next_id = [1 + max(int(d["id"]) for d in tree) for tree in model["trees"]]  # ids of categorical chain nodes
    for t, tree in enumerate(model["trees"]):
        for d in tree:
            a["nodes_treeids"].append(t)
            a["nodes_nodeids"].append(int(d["id"]))
            if d["is_leaf"]:
                a["nodes_featureids"].append(0)
                a["nodes_modes"].append("LEAF")
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                a["nodes_missing_value_tracks_true"].append(0)
                thresholds.append(0.0)
                # one weight per leaf, on class id 0: with two class labels this is ONNX-ML's binary case
                # (as skl2onnx writes gradient boosting), probabilities = [1 - sigmoid(z), sigmoid(z)]
                a["class_treeids"].append(t)
                a["class_nodeids"].append(int(d["id"]))
                a["class_ids"].append(0)
                weights.append(float(d["value"]))
            elif d.get("categories") is not None:
                # a category subset as a chain of BRANCH_EQ nodes over one side's codes (ai.onnx.ml opset 3
                # has no set membership): a code of that side goes there; NaN and every other code run to the
                # end of the chain, the side of missing values (which also takes unseen categories)
                ml = bool(d["missing_left"])
                codes = (d.get("categories_right") or []) if ml else d["categories"]
                hit, rest = (int(d["right"]), int(d["left"])) if ml else (int(d["left"]), int(d["right"]))
                if not codes:  # every known category on the missing side: one always-true test
                    codes, hit = [float("nan")], rest
                ids = [int(d["id"])] + [next_id[t] + k for k in range(len(codes) - 1)]
                next_id[t] += len(codes) - 1
                for k, c in enumerate(codes):
                    if k:
                        a["nodes_treeids"].append(t)
                        a["nodes_nodeids"].append(ids[k])
                    a["nodes_featureids"].append(col[d["feature"]])
                    a["nodes_modes"].append("BRANCH_EQ")
                    a["nodes_truenodeids"].append(hit)
                    a["nodes_falsenodeids"].append(ids[k + 1] if k + 1 < len(codes) else rest)
                    a["nodes_missing_value_tracks_true"].append(0)
                    thresholds.append(float(c))
            else:
                a["nodes_featureids"].append(col[d["feature"]])
                a["nodes_modes"].append("BRANCH_LEQ")
                a["nodes_truenodeids"].append(int(d["left"]))
                a["nodes_falsenodeids"].append(int(d["right"]))
                a["nodes_missing_value_tracks_true"].append(int(bool(d["missing_left"])))
                thresholds.append(float(d["threshold"]))
    node = helper.make_node(
        "TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain="ai.onnx.ml", post_transform="LOGISTIC",
        classlabels_int64s=[0, 1],
        nodes_values_as_tensor=numpy_helper.from_array(np.array(thresholds, dtype=np.float64), "nodes_values"),
        class_weights_as_tensor=numpy_helper.from_array(np.array(weights, dtype=np.float64), "class_weights"),
        base_values_as_tensor=numpy_helper.from_array(np.array([float(model["base_score"])], dtype=np.float64),
                                                      "base_values"),
        **a)
    return [node], [], list(model["features"])


class _G:
    """A small graph builder: constants and nodes with fresh names."""

    def __init__(self, helper, numpy_helper):
        self.h, self.nh = helper, numpy_helper
        self.nodes, self.inits, self._k = [], [], 0

    def name(self, base: str) -> str:
        self._k += 1
        return f"{base}_{self._k}"

    def const(self, value, dtype=np.float64) -> str:
        n = self.name("c")
        self.inits.append(self.nh.from_array(np.asarray(value, dtype=dtype), n))
        return n

    def op(self, kind: str, inputs, **attrs) -> str:
        out = self.name(kind.lower())
        self.nodes.append(self.h.make_node(kind, list(inputs), [out], **attrs))
        return out


def _q(v, frac_bits: int) -> np.ndarray:
    s = float(1 << frac_bits)
    return np.round(np.asarray(v, dtype=np.float64) * s) / s


def _woe_column(g: _G, x: str, b: dict, frac_bits: int) -> str:
    woe = _q(b["woe"], frac_bits)
    n_value = len(b["categories"]) if b["categorical"] else len(b["edges"]) + 1
    miss = n_value if b["missing_merged_into"] is None else int(b["missing_merged_into"])
    w_miss = g.const([[woe[miss]]])
    if b["categorical"]:
        cats = [c for cs in b["categories"] for c in cs]
        cat_woe = [woe[i] for i, cs in enumerate(b["categories"]) for _ in cs]
        onehot = g.op("Cast", [g.op("Equal", [x, g.const([cats])])], to=11)  # (N, C) double
        val = g.op("MatMul", [onehot, g.const(np.array(cat_woe).reshape(-1, 1))])
        hit = g.op("Greater", [g.op("ReduceSum", [onehot, g.const([1], np.int64)], keepdims=1), g.const([[0.0]])])
        return g.op("Where", [hit, val, w_miss])  # missing (NaN equals nothing) or unseen: the missing bin
    if len(b["edges"]) == 0:
        binv = g.op("Mul", [x, g.const([[0.0]])])
        idx = g.op("Cast", [g.op("Where", [g.op("IsNaN", [x]), g.const([[0.0]]), binv])], to=7)
    else:
        # value bin i holds edges[i-1] < x <= edges[i]: the number of edges strictly below x
        above = g.op("Cast", [g.op("Greater", [x, g.const([list(map(float, b["edges"]))])])], to=7)
        idx = g.op("ReduceSum", [above, g.const([1], np.int64)], keepdims=1)
    val = g.op("Gather", [g.const(woe[:n_value]), idx], axis=0)
    return g.op("Where", [g.op("IsNaN", [x]), w_miss, val])


def _lr(model: dict, helper, numpy_helper, frac_bits: int):
    g = _G(helper, numpy_helper)
    features, coef, cols = [], [], []
    for p in model["parties"].values():
        for j, (f, w) in enumerate(zip(p["features"], p["coef"])):
            k = len(features)
            features.append(f)
            coef.append(float(w))
            x = g.op("Slice", ["X", g.const([k], np.int64), g.const([k + 1], np.int64), g.const([1], np.int64)])
            if p["preprocess"] == "woe":
                cols.append(_woe_column(g, x, p["bins"][f], frac_bits))
            else:
                st = p["standardizer"]
                z = g.op("Div", [g.op("Sub", [x, g.const([[st["mean"][j]]])]), g.const([[st["scale"][j]]])])
                z = g.op("Where", [g.op("IsNaN", [x]), g.const([[0.0]]), z])  # missing: at the mean
                if st.get("clip") is not None:
                    c = float(st["clip"])
                    z = g.op("Clip", [z, g.const(-c), g.const(c)])
                s = g.const(float(1 << frac_bits))
                cols.append(g.op("Div", [g.op("Round", [g.op("Mul", [z, s])]), s]))
    if not cols:
        raise DataError("the LR model has no features")
    design = g.op("Concat", cols, axis=1) if len(cols) > 1 else cols[0]
    g.nodes.append(helper.make_node("LinearClassifier", [design], ["label", "probabilities"], domain="ai.onnx.ml",
                                    coefficients=coef, intercepts=[float(model["intercept"])],
                                    classlabels_ints=[0, 1], post_transform="LOGISTIC"))
    return g.nodes, g.inits, features


def to_onnx(model: dict, *, model_id: str = "", frac_bits: int = 8) -> bytes:
    """The serialized ONNX model of a merged model (see the module docstring for inputs and outputs)."""
    onnx, TensorProto, helper, numpy_helper = _onnx()
    fmt = model.get("format")
    if fmt == _TREE_FORMAT:
        nodes, inits, features = _trees(model, helper, numpy_helper)
        name = "secureboost"
    elif fmt == _LR_FORMAT:
        _no_onehot(model, "ONNX")
        nodes, inits, features = _lr(model, helper, numpy_helper, frac_bits)
        name = "hetero_lr"
    else:
        raise DataError(f"unknown merged model format {fmt!r}")
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, len(features)])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=inits)
    m = helper.make_model(graph, producer_name="fedcredit", producer_version="0.1.0",
                          opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid("ai.onnx.ml", _ML_OPSET)])
    m.ir_version = 8
    helper.set_model_props(m, {"features": json.dumps(features), "model_id": model_id,
                               "probability_of_default": "probabilities[:, 1]"})
    onnx.checker.check_model(m)
    return m.SerializeToString()
