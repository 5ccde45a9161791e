"""`fedcredit model export --format pmml|onnx|json` (issue 16, item 6).

The federation (bank guest; chain, gov hosts; SecureBoost, standardized LR and
a WOE scorecard LR) scores applicants; the exported files, after every
party's approval, are scored by independent evaluators and must give the same
scores: onnxruntime for ONNX (to 1e-6), sklearn-pmml-model for the PMML
MiningModel (rows without missing values: it refuses NaN), and for every
PMML file validation against the PMML 4.4 XSD (``tests/vectors/pmml-4-4.xsd``)
plus :class:`SpecEvaluator` below, written from the PMML 4.4 specification
for the elements the exporter emits (missing values, derived fields, the
Scorecard's ``pointsBelow`` reason codes), since no pure-Python PMML consumer
supports those.
"""

from __future__ import annotations

import json
import math
import pathlib
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import onnxruntime
import pandas as pd
import pytest
import xmlschema
from conftest import data_path

from fedcredit.cli import main
from fedcredit.errors import DataError
from fedcredit.models import explain
from fedcredit.models.export import to_onnx, to_pmml
from fedcredit.serving import predict_merged

from _scoring_fixture import HOSTS, LR, SBT, WOE, Fed, columns, missing_at_gov, scoring_policy, tables, train, train_woe

AUTH = {"consent_id": "consent-2024-000123", "purpose": "loan-application"}
XSD = pathlib.Path(__file__).parent / "vectors" / "pmml-4-4.xsd"
NS = {"p": "http://www.dmg.org/PMML-4_4"}


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    data = data_path("credit3", "bank.csv").parents[1]
    root = tmp_path_factory.mktemp("export")
    host_pol = scoring_policy(requesters=["bank"], purposes=["loan-application"], max_requests_per_minute=100000,
                              head_exchange_seconds=0.0)
    f = Fed(root, data, {"bank": scoring_policy(purposes=["loan-application"], head_exchange_seconds=0.0),
                         "chain": host_pol, "gov": host_pol})
    f.tables = tables(data)
    f.info = train(root, f.tables)
    f.woe = train_woe(root, f.tables)
    f.start()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(str(XSD))


def _ids(fed):
    new = sorted(set(fed.tables["bank"].ids) & set(fed.tables["chain"].ids) & set(fed.tables["gov"].ids))[2000:2150]
    return fed.info["ids"][:100] + new + missing_at_gov(fed.tables)


def _federation(fed, model, ids, k=0):
    return fed.parties["bank"].scoring.score_full("bank", model, ids, AUTH, reasons=k)


def _export(fed, capsys, tmp_path, model, fmt, *extra) -> pathlib.Path:
    for h in HOSTS:
        fed.parties[h].scoring.approve_export(h, model, "bank", "test")
    out = tmp_path / f"{model.replace('/', '_')}.{fmt}"
    code = main(["model", "export", "--party", str(fed.configs["bank"]), "--model", model, "--out", str(out),
                 "--format", fmt, *extra])
    assert code == 0, capsys.readouterr().err
    return out


def _matrix(model_json: dict, cols: dict, features=None) -> np.ndarray:
    feats = features or model_json.get("features") or [f for p in model_json["parties"].values() for f in p["features"]]
    return np.stack([cols[f] for f in feats], axis=1)


# ------------------------------------------------------------------ approval
def test_every_format_needs_every_partys_approval(fed, capsys, tmp_path):
    model = WOE
    for h in HOSTS:  # a fresh model id: nobody approved yet
        p = fed.parties[h].scoring._approvals_path
        if p.exists():
            d = json.loads(p.read_text())
            d.pop(model, None)
            p.write_text(json.dumps(d))
    for fmt in ("pmml", "onnx", "json"):
        code = main(["model", "export", "--party", str(fed.configs["bank"]), "--model", model, "--out",
                     str(tmp_path / f"x.{fmt}"), "--format", fmt])
        assert code != 0 and "has not approved" in capsys.readouterr().err
        assert not (tmp_path / f"x.{fmt}").exists()


# ------------------------------------------------------------------ ONNX
@pytest.mark.parametrize("model", [SBT, LR, WOE])
def test_onnx_export_scored_by_onnxruntime_equals_the_federation(fed, capsys, tmp_path, model):
    ids = _ids(fed)
    fedscore = _federation(fed, model, ids).scores
    path = _export(fed, capsys, tmp_path, model, "onnx")
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feats = json.loads(sess.get_modelmeta().custom_metadata_map["features"])
    X = _matrix({}, columns(fed.tables, ids), feats)
    assert np.isnan(X).any()  # applicants missing at gov take the missing-value branches / bins
    label, proba = sess.run(None, {"X": X})
    np.testing.assert_allclose(proba[:, 1], fedscore, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(label, (fedscore >= 0.5).astype(np.int64))
    kinds = {n.op_type for n in __import__("onnx").load(str(path)).graph.node}
    assert ("TreeEnsembleClassifier" if model == SBT else "LinearClassifier") in kinds


# ------------------------------------------------------------------ PMML
class SpecEvaluator:
    """The PMML 4.4 elements fedcredit emits, evaluated as the specification defines them (one row at a time)."""

    def __init__(self, path):
        self.root = ET.parse(path).getroot()

    @staticmethod
    def _tag(e):
        return e.tag.split("}", 1)[1]

    def _expr(self, e, row, derived):
        tag = self._tag(e)
        if tag == "FieldRef":
            return self._value(e.get("field"), row, derived)
        if tag == "Constant":
            return float(e.text)
        if tag == "Apply":
            args = [self._expr(c, row, derived) for c in e if self._tag(c) != "Extension"]
            if any(a is None for a in args):
                return float(e.get("mapMissingTo")) if e.get("mapMissingTo") is not None else None
            fn = e.get("function")
            ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
                   "/": lambda a, b: a / b, "min": min, "max": max}
            if fn == "round":
                return float(math.floor(args[0] + 0.5))
            return ops[fn](*args)
        if tag == "Discretize":
            x = self._value(e.get("field"), row, derived)
            if x is None:
                return float(e.get("mapMissingTo"))
            for b in e.findall("p:DiscretizeBin", NS):
                iv = b.find("p:Interval", NS)
                lo, hi, cl = iv.get("leftMargin"), iv.get("rightMargin"), iv.get("closure")
                ok_lo = lo is None or (x >= float(lo) if cl.startswith("closed") else x > float(lo))
                ok_hi = hi is None or (x <= float(hi) if cl.endswith("Closed") else x < float(hi))
                if ok_lo and ok_hi:
                    return float(b.get("binValue"))
            return float(e.get("defaultValue")) if e.get("defaultValue") else None
        if tag == "MapValues":
            x = self._value(e.find("p:FieldColumnPair", NS).get("field"), row, derived)
            if x is None:
                return float(e.get("mapMissingTo"))
            for r in e.find("p:InlineTable", NS):
                if float(r.find("p:value", NS).text) == x:
                    return float(r.find(f"p:{e.get('outputColumn')}", NS).text)
            return float(e.get("defaultValue"))
        raise AssertionError(f"unexpected expression {tag}")

    def _value(self, name, row, derived):
        if name in row:
            v = row[name]
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v
        return self._expr(next(c for c in derived[name] if self._tag(c) != "Extension"), row, derived)

    def _derived(self, model):
        lt = model.find("p:LocalTransformations", NS)
        return {} if lt is None else {d.get("name"): d for d in lt.findall("p:DerivedField", NS)}

    def _pred(self, e, row):
        tag = self._tag(e)
        if tag == "True":
            return True
        x = self._value(e.get("field"), row, {})
        op = e.get("operator") or e.get("booleanOperator")
        if op == "isMissing":
            return x is None
        if x is None:
            return None  # UNKNOWN
        if tag == "SimpleSetPredicate":
            vals = [float(v) for v in e.find("p:Array", NS).text.split()]
            return (x in vals) == (op == "isIn")
        v = float(e.get("value"))
        return {"lessOrEqual": x <= v, "greaterThan": x > v, "lessThan": x < v, "greaterOrEqual": x >= v}[op]

    def _tree(self, tm, row):
        node = tm.find("p:Node", NS)
        assert tm.get("missingValueStrategy") == "defaultChild"
        while True:
            kids = node.findall("p:Node", NS)
            if not kids:
                return float(node.get("score"))
            nxt = None
            for k in kids:
                r = self._pred(k[0], row)
                if r is None:  # a missing value: the default child
                    nxt = next(c for c in kids if c.get("id") == node.get("defaultChild"))
                    break
                if r:
                    nxt = k
                    break
            if nxt is None:
                return float(node.get("score"))
            node = nxt

    def _regression(self, rm, row):
        derived = self._derived(rm)
        t = rm.find("p:RegressionTable[@targetCategory='1']", NS)
        z = float(t.get("intercept"))
        for p in t.findall("p:NumericPredictor", NS):
            z += float(p.get("coefficient")) * self._value(p.get("name"), row, derived)
        assert rm.get("normalizationMethod") == "logit"
        return z

    def proba(self, row) -> float:
        """Probability of default (MiningModel chain or RegressionModel)."""
        mm = self.root.find("p:MiningModel", NS)
        if mm is None:
            return 1 / (1 + math.exp(-self._regression(self.root.find("p:RegressionModel", NS), row)))
        first, second = mm.find("p:Segmentation", NS).findall("p:Segment", NS)
        inner = first.find("p:MiningModel", NS)
        z = float(inner.find("p:Targets/p:Target", NS).get("rescaleConstant"))
        for s in inner.find("p:Segmentation", NS).findall("p:Segment", NS):
            z += self._tree(s.find("p:TreeModel", NS), row)
        return 1 / (1 + math.exp(-self._regression(second.find("p:RegressionModel", NS), {**row, "log_odds": z})))

    def scorecard(self, row):
        """``(points, [(reason code, points below its baseline)] largest first)``."""
        sc = self.root.find("p:Scorecard", NS)
        assert sc.get("reasonCodeAlgorithm") == "pointsBelow"
        total, below = float(sc.get("initialScore")), {}
        for ch in sc.find("p:Characteristics", NS):
            for a in ch.findall("p:Attribute", NS):
                if self._pred(a[0], row):
                    s = float(a.get("partialScore"))
                    total += s
                    code = a.get("reasonCode") or ch.get("reasonCode")
                    below[code] = below.get(code, 0.0) + float(ch.get("baselineScore")) - s
                    break
        return total, sorted(below.items(), key=lambda kv: -kv[1])


def _rows(cols, ids):
    return [{f: float(v[r]) for f, v in cols.items()} for r in range(len(ids))]


@pytest.mark.parametrize("model,kind,element", [(SBT, "auto", "MiningModel"), (LR, "auto", "RegressionModel"),
                                                (WOE, "regression", "RegressionModel"), (WOE, "auto", "Scorecard")])
def test_pmml_export_is_valid_pmml_4_4_and_scores_like_the_federation(fed, capsys, tmp_path, schema, model, kind,
                                                                      element):
    ids = _ids(fed)
    res = _federation(fed, model, ids)
    path = _export(fed, capsys, tmp_path, model, "pmml", "--pmml-kind", kind)
    schema.validate(str(path))  # the official PMML 4.4 schema (raises on any violation)
    doc = ET.parse(path).getroot()
    assert doc.get("version") == "4.4" and doc.find(f"p:{element}", NS) is not None
    assert "x-" not in path.read_text()  # no JPMML extension attribute: plain PMML 4.4
    ev = SpecEvaluator(path)
    rows = _rows(columns(fed.tables, ids), ids)
    if element == "Scorecard":
        pts = np.array([ev.scorecard(r)[0] for r in rows])
        np.testing.assert_allclose(pts, explain.points(res.log_odds), rtol=0, atol=1e-9)
    else:
        np.testing.assert_allclose([ev.proba(r) for r in rows], res.scores, rtol=0, atol=1e-12)


def test_pmml_trees_scored_by_sklearn_pmml_model(fed, capsys, tmp_path):
    from sklearn_pmml_model.ensemble import PMMLGradientBoostingClassifier

    ids = _ids(fed)
    res = _federation(fed, SBT, ids)
    path = _export(fed, capsys, tmp_path, SBT, "pmml")
    merged = json.loads(fed.parties["bank"].scoring.export("bank", SBT))
    X = _matrix(merged, columns(fed.tables, ids))
    full = ~np.isnan(X).any(axis=1)  # sklearn-pmml-model refuses missing values
    assert full.sum() >= 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = PMMLGradientBoostingClassifier(pmml=str(path))
        p = clf.predict_proba(pd.DataFrame(X[full], columns=merged["features"]))[:, 1]
    np.testing.assert_allclose(p, res.scores[full], rtol=0, atol=1e-12)


def test_pmml_scorecard_reason_codes_are_the_federations_points_below(fed, capsys, tmp_path):
    ids = _ids(fed)
    path = _export(fed, capsys, tmp_path, WOE, "pmml", "--pdo", "40")
    factor = 40 / math.log(2)
    res = _federation(fed, WOE, ids, 32)
    merged = json.loads(fed.parties["bank"].scoring.export("bank", WOE))
    ev = SpecEvaluator(path)
    rows = _rows(columns(fed.tables, ids), ids)
    pts = np.array([ev.scorecard(r)[0] for r in rows])
    np.testing.assert_allclose(pts, explain.points(res.log_odds, pdo=40), rtol=0, atol=1e-9)
    bank = set(merged["parties"]["bank"]["features"])
    hosts = [f for h in HOSTS for f in merged["parties"][h]["features"]]
    for r, row in enumerate(rows):
        below = dict(ev.scorecard(row)[1])
        fedr = {res.reason_names[q]: v for q, v in zip(res.reason_index[r], res.reason_values[r]) if q >= 0}
        for f in bank:  # the bank's own features: the same points lost
            assert below[f] == pytest.approx(factor * fedr.get(f, 0.0), abs=1e-9)
        agg = sum(below[f] for f in hosts)  # hosts without opt-in: one aggregate, the sum of their points below
        assert agg == pytest.approx(factor * fedr.get("platform data (all hosts)", 0.0), abs=1e-9)


def test_xsd_rejects_a_broken_document(tmp_path, schema):
    bad = tmp_path / "bad.pmml"
    bad.write_text('<?xml version="1.0"?><PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/>'
                   '<DataDictionary><DataField name="x" optype="sideways" dataType="double"/></DataDictionary></PMML>')
    assert not schema.is_valid(str(bad))


def test_unknown_formats_and_kinds_are_refused():
    with pytest.raises(DataError, match="unknown merged model format"):
        to_pmml({"format": "nope"})
    with pytest.raises(DataError, match="unknown merged model format"):
        to_onnx({"format": "nope"})
    with pytest.raises(DataError, match="cannot be exported as a PMML scorecard"):
        to_pmml({"format": "fedcredit.secureboost.merged.v1", "trees": [], "features": [], "base_score": 0.0},
                kind="scorecard")


def test_json_export_is_the_merged_model(fed, capsys, tmp_path):
    ids = _ids(fed)
    path = _export(fed, capsys, tmp_path, SBT, "json")
    merged = json.loads(path.read_text())
    np.testing.assert_array_equal(predict_merged(merged, columns(fed.tables, ids)), _federation(fed, SBT, ids).scores)
