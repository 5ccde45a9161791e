"""PMML 4.4 documents of merged models, written with :mod:`xml.etree` (no PMML writer dependency).

* SecureBoost → a ``MiningModel`` chain (the layout JPMML and sklearn2pmml
  use for gradient boosting): a regression ``MiningModel`` summing one
  ``TreeModel`` per tree (``Targets/rescaleConstant`` = the base score), then
  a ``RegressionModel`` with ``normalizationMethod="logit"`` turning the
  log-odds into probabilities. Each split is ``x <= threshold`` (left) /
  ``x > threshold`` (right), or for a categorical feature a
  ``SimpleSetPredicate`` over its category codes (``isIn`` one side's codes,
  ``isNotIn`` them on the side that also takes categories unseen in
  training); a missing value follows the node's ``defaultChild``
  (``missingValueStrategy="defaultChild"``), the training-time missing direction.
* LR → ``RegressionModel`` (``logit``) over derived fields that reproduce the
  federation's design exactly: WOE features as ``Discretize`` (numeric) or
  ``MapValues`` (categorical) to the WOE value on the model's fixed-point
  grid, the missing bin through ``mapMissingTo``; standardized features as
  ``round(clip((x - mean) / scale) * 2^8) / 2^8`` with a missing value at the
  mean (0).
* WOE LR as a scorecard → ``Scorecard`` with one ``Characteristic`` per
  feature: each bin's points, ``initialScore`` = the base points, and reason
  codes by the ``pointsBelow`` rule (``baselineScore`` = the feature's best
  bin), i.e. exactly the points lost that ``fedcredit score --reasons``
  reports.

Numbers are written with ``repr`` (shortest round-trip form), so a double
read back is the double written.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

from ...errors import ConfigError, DataError

__all__ = ["to_pmml", "NS", "TARGET"]

NS = "http://www.dmg.org/PMML-4_4"
#: Name of the target field (the label: 1 = default).
TARGET = "default"

_TREE_FORMAT = "fedcredit.secureboost.merged.v1"
_LR_FORMAT = "fedcredit.hetero_lr.merged.v1"


def _no_onehot(model: dict, fmt: str) -> None:
    """Refuse an LR with one-hot features (not translated to PMML/ONNX yet: export the merged JSON instead)."""
    for name, p in model.get("parties", {}).items():
        if p.get("preprocess") == "onehot":
            raise ConfigError(f"{fmt} export of an LR trained with features = \"onehot\" (party {name!r}) is not "
                              f"supported; export the merged JSON model (format json), or train with "
                              f"features = \"standardized\" or \"woe\"")


def _num(v) -> str:
    v = float(v)
    if not math.isfinite(v):
        raise DataError(f"cannot export a non-finite number ({v}) to PMML")
    return repr(v)


def _el(parent, tag, **attrs):
    return ET.SubElement(parent, tag, {k.rstrip("_"): str(v) for k, v in attrs.items() if v is not None})


def _root(description: str, fields: list[str], model_id: str, *, points_target: bool = False):
    pmml = ET.Element("PMML", {"xmlns": NS, "version": "4.4"})
    h = _el(pmml, "Header", description=description[:500])
    _el(h, "Application", name="fedcredit", version="0.1.0")
    if model_id:
        _el(h, "Annotation").text = f"federated model {model_id}; exported after every party's approval"
    dd = _el(pmml, "DataDictionary", numberOfFields=len(fields) + 1)
    for f in fields:
        _el(dd, "DataField", name=f, optype="continuous", dataType="double")
    if points_target:
        _el(dd, "DataField", name="points", optype="continuous", dataType="double")
    else:
        t = _el(dd, "DataField", name=TARGET, optype="categorical", dataType="integer")
        _el(t, "Value", value="0")
        _el(t, "Value", value="1")
    return pmml


def _schema(parent, fields, *, target: bool):
    ms = _el(parent, "MiningSchema")
    if target:
        _el(ms, "MiningField", name=TARGET, usageType="target")
    for f in fields:
        _el(ms, "MiningField", name=f)
    return ms


def _proba_output(parent):
    out = _el(parent, "Output")
    for c in ("0", "1"):
        _el(out, "OutputField", name=f"probability({c})", optype="continuous", dataType="double",
            feature="probability", value=c)
    return out


def _logit_table(model, predictors, intercept: float):
    """Two regression tables: category 1 gets the log-odds, category 0 is the reference."""
    t = _el(model, "RegressionTable", intercept=_num(intercept), targetCategory="1")
    for name, coef in predictors:
        _el(t, "NumericPredictor", name=name, coefficient=_num(coef))
    _el(model, "RegressionTable", intercept="0.0", targetCategory="0")


# --------------------------------------------------------------------------- trees
def _tree_node(parent, nodes: dict, i: int, t: int, predicate):
    d = nodes[i]
    attrs = {"id": f"t{t}n{i}", "score": _num(d["value"])}
    if d.get("n_rows"):
        attrs["recordCount"] = d["n_rows"]
    if not d["is_leaf"]:
        attrs["defaultChild"] = f"t{t}n{d['left'] if d['missing_left'] else d['right']}"
    node = _el(parent, "Node", **attrs)
    predicate(node)
    if d["is_leaf"]:
        return
    f = d["feature"]
    if d.get("categories") is not None:
        # category subset: the side missing values take also takes every code unseen in training ("isNotIn"
        # the other side's codes); a missing value makes both predicates UNKNOWN -> defaultChild
        left, right = d["categories"], d.get("categories_right") or []
        lop, rop = ("isNotIn", "isIn") if d["missing_left"] else ("isIn", "isNotIn")
        codes = right if d["missing_left"] else left
        _tree_node(node, nodes, d["left"], t, lambda n: _set_predicate(n, f, lop, codes))
        _tree_node(node, nodes, d["right"], t, lambda n: _set_predicate(n, f, rop, codes))
        return
    thr = _num(d["threshold"])
    _tree_node(node, nodes, d["left"], t,
               lambda n: _el(n, "SimplePredicate", field=f, operator="lessOrEqual", value=thr))
    _tree_node(node, nodes, d["right"], t,
               lambda n: _el(n, "SimplePredicate", field=f, operator="greaterThan", value=thr))


def _set_predicate(parent, field: str, operator: str, codes):
    """``SimpleSetPredicate``: ``field`` is (not) one of the category ``codes`` (an ``Array`` of reals)."""
    p = _el(parent, "SimpleSetPredicate", field=field, booleanOperator=operator)
    arr = _el(p, "Array", n=len(codes), type="real")
    arr.text = " ".join(_num(c) for c in codes)


def _trees_pmml(model: dict, model_id: str):
    fields = list(model["features"])
    pmml = _root("SecureBoost (vertical federated gradient boosting), merged", fields, model_id)
    mm = _el(pmml, "MiningModel", functionName="classification", modelName=model_id or "secureboost")
    _schema(mm, fields, target=True)
    _proba_output(mm)
    seg = _el(mm, "Segmentation", multipleModelMethod="modelChain")
    s1 = _el(seg, "Segment", id="1")
    _el(s1, "True")
    inner = _el(s1, "MiningModel", functionName="regression")
    _schema(inner, fields, target=False)
    out = _el(inner, "Output")
    _el(out, "OutputField", name="log_odds", optype="continuous", dataType="double", feature="predictedValue",
        isFinalResult="false")
    tg = _el(inner, "Targets")
    _el(tg, "Target", rescaleConstant=_num(model["base_score"]))
    sums = _el(inner, "Segmentation", multipleModelMethod="sum")
    for t, tree in enumerate(model["trees"]):
        nodes = {d["id"]: d for d in tree}
        s = _el(sums, "Segment", id=str(t + 1))
        _el(s, "True")
        used = sorted({d["feature"] for d in tree if not d["is_leaf"]})
        tm = _el(s, "TreeModel", functionName="regression", missingValueStrategy="defaultChild",
                 noTrueChildStrategy="returnLastPrediction", splitCharacteristic="binarySplit")
        _schema(tm, used, target=False)
        _tree_node(tm, nodes, tree[0]["id"], t, lambda n: _el(n, "True"))
    s2 = _el(seg, "Segment", id="2")
    _el(s2, "True")
    rm = _el(s2, "RegressionModel", functionName="classification", normalizationMethod="logit")
    ms = _el(rm, "MiningSchema")
    _el(ms, "MiningField", name=TARGET, usageType="target")
    _el(ms, "MiningField", name="log_odds")
    _proba_output(rm)
    _logit_table(rm, [("log_odds", 1.0)], 0.0)
    return pmml


# --------------------------------------------------------------------------- LR
def _q(v: float, frac_bits: int) -> float:
    s = float(1 << frac_bits)
    return float(np.round(float(v) * s) / s)


def _bin_intervals(edges):
    """(leftMargin, rightMargin, closure) of each value bin: ``edges[i-1] < x <= edges[i]``."""
    out, lo = [], None
    for e in edges:
        out.append((lo, float(e), "openClosed"))
        lo = float(e)
    out.append((lo, None, "openOpen"))
    return out


def _woe_field(parent, f: str, b: dict, frac_bits: int, name: str):
    woe = [_q(w, frac_bits) for w in b["woe"]]
    n_value = len(b["categories"]) if b["categorical"] else len(b["edges"]) + 1
    miss = n_value if b["missing_merged_into"] is None else int(b["missing_merged_into"])
    df = _el(parent, "DerivedField", name=name, optype="continuous", dataType="double")
    if b["categorical"]:
        mv = _el(df, "MapValues", outputColumn="woe", mapMissingTo=_num(woe[miss]), defaultValue=_num(woe[miss]),
                 dataType="double")
        _el(mv, "FieldColumnPair", field=f, column="value")
        tab = _el(mv, "InlineTable")
        for i, cats in enumerate(b["categories"]):
            for c in cats:
                row = _el(tab, "row")
                _el(row, "value").text = _num(c)
                _el(row, "woe").text = _num(woe[i])
    else:
        d = _el(df, "Discretize", field=f, mapMissingTo=_num(woe[miss]), dataType="double")
        for i, (lo, hi, closure) in enumerate(_bin_intervals(b["edges"])):
            db = _el(d, "DiscretizeBin", binValue=_num(woe[i]))
            _el(db, "Interval", closure=closure, leftMargin=None if lo is None else _num(lo),
                rightMargin=None if hi is None else _num(hi))


def _apply(parent, fn, *args, **attrs):
    a = _el(parent, "Apply", function=fn, **attrs)
    for x in args:
        if callable(x):
            x(a)
        elif isinstance(x, str):
            _el(a, "FieldRef", field=x)
        else:
            _el(a, "Constant", dataType="double").text = _num(x)
    return a


def _std_field(parent, f: str, mean: float, scale: float, clip, frac_bits: int, name: str):
    df = _el(parent, "DerivedField", name=name, optype="continuous", dataType="double")
    s = float(1 << frac_bits)

    def z(p):
        _apply(p, "/", lambda q: _apply(q, "-", f, mean), scale)

    def zc(p):
        if clip is None:
            z(p)
        else:
            _apply(p, "max", lambda q: _apply(q, "min", z, float(clip)), -float(clip))

    # a missing value is at the training mean: 0 after centering
    _apply(df, "/", lambda p: _apply(p, "round", lambda q: _apply(q, "*", zc, s)), s, mapMissingTo="0.0")


def _lr_design(parent, model: dict, frac_bits: int) -> list[tuple[str, float]]:
    """Derived fields of every party's design; returns ``[(derived field, coefficient)]``."""
    lt = _el(parent, "LocalTransformations")
    preds = []
    for p in model["parties"].values():
        for j, (f, w) in enumerate(zip(p["features"], p["coef"])):
            if p["preprocess"] == "woe":
                name = f"woe({f})"
                _woe_field(lt, f, p["bins"][f], frac_bits, name)
            else:
                st = p["standardizer"]
                name = f"z({f})"
                _std_field(lt, f, st["mean"][j], st["scale"][j], st.get("clip"), frac_bits, name)
            preds.append((name, float(w)))
    return preds


def _fields(model: dict) -> list[str]:
    return [f for p in model["parties"].values() for f in p["features"]]


def _lr_pmml(model: dict, model_id: str, frac_bits: int):
    fields = _fields(model)
    pmml = _root("Logistic regression (vertical federated), merged", fields, model_id)
    rm = _el(pmml, "RegressionModel", functionName="classification", normalizationMethod="logit",
             modelName=model_id or "hetero_lr")
    _schema(rm, fields, target=True)
    _proba_output(rm)
    preds = _lr_design(rm, model, frac_bits)
    _logit_table(rm, preds, float(model["intercept"]))
    return pmml


def _scorecard_pmml(model: dict, model_id: str, frac_bits: int, scale: dict, reason_codes: dict):
    fields = _fields(model)
    factor = float(scale["pdo"]) / math.log(2.0)
    offset = float(scale["base_score"]) - factor * math.log(float(scale["base_odds"]))
    pmml = _root("Scorecard: logistic regression on WOE features (vertical federated), merged", fields, model_id,
                 points_target=True)
    sc = _el(pmml, "Scorecard", functionName="regression", modelName=model_id or "scorecard",
             initialScore=_num(offset - factor * float(model["intercept"])), useReasonCodes="true",
             reasonCodeAlgorithm="pointsBelow", baselineMethod="max")
    ms = _el(sc, "MiningSchema")
    _el(ms, "MiningField", name="points", usageType="target")
    for f in fields:
        _el(ms, "MiningField", name=f)
    out = _el(sc, "Output")
    _el(out, "OutputField", name="points", optype="continuous", dataType="double", feature="predictedValue")
    for r in range(1, 5):
        _el(out, "OutputField", name=f"reason_{r}", optype="categorical", dataType="string", feature="reasonCode",
            rank=r)
    chars = _el(sc, "Characteristics")
    for p in model["parties"].values():
        if p["preprocess"] != "woe":
            raise DataError("a PMML scorecard needs every party's features WOE-binned")
        for f, w in zip(p["features"], p["coef"]):
            b = p["bins"][f]
            pts = [-factor * float(w) * _q(v, frac_bits) for v in b["woe"]]
            n_value = len(b["categories"]) if b["categorical"] else len(b["edges"]) + 1
            miss = n_value if b["missing_merged_into"] is None else int(b["missing_merged_into"])
            ch = _el(chars, "Characteristic", name=f"points({f})", reasonCode=reason_codes.get(f, f),
                     baselineScore=_num(max(pts)))
            a = _el(ch, "Attribute", partialScore=_num(pts[miss]))
            _el(a, "SimplePredicate", field=f, operator="isMissing")
            if b["categorical"]:
                for i, cats in enumerate(b["categories"]):
                    a = _el(ch, "Attribute", partialScore=_num(pts[i]))
                    sp = _el(a, "SimpleSetPredicate", field=f, booleanOperator="isIn")
                    arr = _el(sp, "Array", n=len(cats), type="real")
                    arr.text = " ".join(_num(c) for c in cats)
                a = _el(ch, "Attribute", partialScore=_num(pts[miss]))  # unseen category: as missing
                _el(a, "True")
            else:
                for i, e in enumerate(b["edges"]):
                    a = _el(ch, "Attribute", partialScore=_num(pts[i]))
                    _el(a, "SimplePredicate", field=f, operator="lessOrEqual", value=_num(e))
                a = _el(ch, "Attribute", partialScore=_num(pts[n_value - 1]))
                _el(a, "True")
    return pmml


def to_pmml(model: dict, *, kind: str = "auto", scale: dict | None = None, reason_codes: dict | None = None,
            model_id: str = "", frac_bits: int = 8) -> bytes:
    """The PMML 4.4 document (UTF-8 bytes) of a merged model.

    Parameters
    ----------
    model : dict
        A merged model (``fedcredit.serving.export``).
    kind : {"auto", "trees", "regression", "scorecard"}
        ``auto``: a ``Scorecard`` for an LR whose every feature is WOE-binned,
        a ``RegressionModel`` for other LR, a ``MiningModel`` for trees.
    scale : dict, optional
        ``pdo``, ``base_score``, ``base_odds`` of the scorecard (default 20, 600, 50).
    reason_codes : dict, optional
        Reason code (text) per feature; default the feature's name.
    frac_bits : int
        The LR design's fixed-point grid (``fedcredit.models.logistic.FEATURE_FRAC_BITS``).
    """
    fmt = model.get("format")
    if fmt == _TREE_FORMAT:
        if kind not in ("auto", "trees"):
            raise DataError(f"a tree model cannot be exported as a PMML {kind}")
        root = _trees_pmml(model, model_id)
    elif fmt == _LR_FORMAT:
        _no_onehot(model, "PMML")
        woe = all(p["preprocess"] == "woe" for p in model["parties"].values())
        if kind == "auto":
            kind = "scorecard" if woe else "regression"
        if kind == "scorecard":
            sc = {"pdo": 20.0, "base_score": 600.0, "base_odds": 50.0, **(scale or {})}
            root = _scorecard_pmml(model, model_id, frac_bits, sc, reason_codes or {})
        elif kind == "regression":
            root = _lr_pmml(model, model_id, frac_bits)
        else:
            raise DataError(f"an LR model cannot be exported as a PMML {kind}")
    else:
        raise DataError(f"unknown merged model format {fmt!r}")
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")
