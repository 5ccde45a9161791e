"""Hetero LR with ``features = "onehot"`` (issue #14, item 3): each party one-hot encodes its own categories.

The federated coefficients equal centralized LR on the same one-hot encoding of the joined table; a
missing or unseen category is all zeros in training, scoring and the merged model; no category name crosses
the wire; a scorecard after a one-hot LR and PMML/ONNX export of one are refused with errors naming the option.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedcredit.artifacts import FileArtifacts
from fedcredit.config.job import step_order_problems
from fedcredit.data import Table, recode_categories
from fedcredit.errors import ConfigError, DataError
from fedcredit.models.logistic import (
    LogisticRegressionGD,
    Standardizer,
    validation_split,
)
from fedcredit.protocols.context import StepContext
from fedcredit.protocols.hetero_lr import LRParams, design_matrix, partial_score
from fedcredit.protocols.registry import get_step
from fedcredit.protocols.scoring.host import lr_partial
from fedcredit.protocols.scoring.parts import LR_FILE, load_lr_part
from fedcredit.serving.export import merge_lr, predict_merged
from fedcredit.transport.memory import MemoryHub, run_local

TOL = 1e-9  # as tests/test_hetero_lr.py: Paillier is exact
REGIONS = ("region-north-xq", "region-south-xq", "region-east-xq", "region-west-xq")
KINDS = ("kind-court-zv", "kind-lien-zv", "kind-none-zv")
LR = {"batch_size": 100, "max_epochs": 3, "learning_rate": 0.5, "alpha": 0.01, "validation_fraction": 0.2}


def _tables(n=300, seed=3):
    r = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(n)]
    a = r.normal(size=n)
    region = r.integers(0, 4, n).astype(float)
    c = r.normal(size=n)
    kind = r.integers(0, 3, n).astype(float)
    kind[r.random(n) < 0.1] = np.nan  # missing categories: all zeros
    z = a + 0.8 * (region == 1) - 0.6 * (region == 3) + 0.5 * c + 0.9 * (kind == 0) - 0.5
    y = (r.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    bank = replace(Table.from_arrays("bank", ids, np.c_[a, region], ["a", "region"], y=y),
                   categories={"region": REGIONS})
    gov = replace(Table.from_arrays("gov", ids, np.c_[c, kind], ["c", "kind"]), categories={"kind": KINDS})
    return {"bank": bank, "gov": gov}, y


def _run(tmp_path, mode, steps, tables):
    roles = {"bank": "guest", "gov": "host"}
    if mode == "coordinated":
        roles["sup"] = "arbiter"
    hub = MemoryHub(list(roles))
    states = {p: {} for p in roles}
    for name, kind, params in steps:
        def make(p):
            def fn(ch):
                ctx = StepContext(job_id="j", step=name, kind=kind, party=p, roles=roles, params=params,
                                  channel=ch.sub("j", name), data=tables.get(p), state=states[p],
                                  artifacts=FileArtifacts(tmp_path / p / name))
                return get_step(kind)(ctx)
            return fn
        run_local({p: make(p) for p in roles}, hub=hub, timeout=300)
    return hub, states


def _reference_design(tables, train):
    """The one-hot encoding of the joined table, written out independently of fedcredit.models.onehot."""
    cols = []
    for t in (tables["bank"], tables["gov"]):
        for j, col in enumerate(t.columns):
            x = t.X[:, j]
            if col in t.categories:
                for code in sorted(set(x[train][~np.isnan(x[train])].astype(int))):
                    cols.append((x == code).astype(float))
            else:
                cols.append(Standardizer(clip=3.0).fit(x[train, None]).transform(x[:, None])[:, 0])
    return np.stack(cols, axis=1)


@pytest.fixture(scope="module", params=["two_party", "coordinated"])
def trained(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    tables, y = _tables()
    hub, states = _run(tmp, request.param, [("lr", "hetero_lr", {"mode": request.param, "features": "onehot",
                                                                   **LR}), ("ev", "evaluate", {})], tables)
    return tables, y, hub, states, tmp


def test_onehot_equals_centralized_on_the_same_encoding(trained):
    tables, y, _, states, _ = trained
    train, _ = validation_split(len(y), LR["validation_fraction"], 0)
    ref = LogisticRegressionGD(**LR).fit(_reference_design(tables, train), y)
    fed = np.concatenate([states["bank"]["hetero_lr"]["coef"], states["gov"]["hetero_lr"]["coef"]])
    np.testing.assert_allclose(fed, ref.coef_, rtol=0, atol=TOL)
    assert states["bank"]["hetero_lr"]["intercept"] == pytest.approx(ref.intercept_, abs=TOL)
    # one column per training category, named column=category; no reference level dropped
    assert states["gov"]["hetero_lr"]["design"] == ["gov.c"] + [f"gov.kind={k}" for k in KINDS]
    assert len(states["bank"]["hetero_lr"]["coef"]) == 1 + len(REGIONS)


def test_wire_carries_no_category_name(trained):
    _, _, hub, _, _ = trained
    assert hub.captured
    for s, r, tag, payload in hub.captured:
        for name in REGIONS + KINDS + ("region", "kind"):
            assert name.encode() not in payload, (s, r, tag, name)


def test_missing_and_unseen_categories_score_as_all_zeros(trained):
    tables, _, _, states, tmp = trained
    part = states["gov"]["hetero_lr"]
    gov = tables["gov"]
    Z = design_matrix(gov, part)
    missing = np.isnan(gov.X[:, 1])
    assert missing.any() and not Z[missing, 1:].any() and (Z[~missing, 1:].sum(axis=1) == 1).all()
    # a scoring file with a category the model never saw, recoded to the training list as scoring does
    names = KINDS[:1] + ("kind-brand-new-zv",) + KINDS[1:]
    X = gov.X.copy()
    X[:5, 1] = 1  # the new category
    X[5:, 1] = np.where(np.isnan(gov.X[5:, 1]), np.nan, np.where(gov.X[5:, 1] >= 1, gov.X[5:, 1] + 1, gov.X[5:, 1]))
    newer = recode_categories(replace(gov, X=X, categories={"kind": names}), {"kind": KINDS})
    assert np.isnan(newer.X[:5, 1]).all()
    np.testing.assert_array_equal(newer.X[5:, 1], gov.X[5:, 1])
    Zn = design_matrix(newer, part)
    assert not Zn[:5, 1:].any()
    np.testing.assert_array_equal(Zn[5:], Z[5:])
    # the saved part (the scoring service's) gives the same partial scores as the step
    saved = load_lr_part(tmp / "gov" / "lr" / LR_FILE)
    assert saved["onehot"]["categories"] == {"gov.kind": list(KINDS)}
    np.testing.assert_allclose(lr_partial(saved, newer.X), partial_score(newer, part), atol=1e-12)


def test_merged_json_model_applies_the_encoding(trained):
    tables, _, _, states, tmp = trained
    guest = load_lr_part(tmp / "bank" / "lr" / LR_FILE)
    host = load_lr_part(tmp / "gov" / "lr" / LR_FILE)
    model = merge_lr(guest, {"gov": host})
    assert set(model["coef"]) == {"bank.a", "gov.c"} | {f"bank.region={r}" for r in REGIONS} | \
        {f"gov.kind={k}" for k in KINDS}
    cols = {f: tables[p].select([f]).X[:, 0] for p in ("bank", "gov") for f in tables[p].feature_names}
    z = partial_score(tables["bank"], states["bank"]["hetero_lr"]) + partial_score(tables["gov"],
                                                                                 states["gov"]["hetero_lr"])
    np.testing.assert_allclose(predict_merged(model, cols, raw=True), z, atol=1e-12)
    from fedcredit.models.export import to_pmml

    with pytest.raises(ConfigError, match='PMML export of an LR trained with features = "onehot"'):
        to_pmml(model)
    pytest.importorskip("onnx")
    from fedcredit.models.export import to_onnx

    with pytest.raises(ConfigError, match='ONNX export of an LR trained with features = "onehot"'):
        to_onnx(model)


def test_evaluate_and_reasons_use_the_encoding(trained):
    from fedcredit.models.explain import lr_contributions, lr_reference
    from fedcredit.models.logistic import quantize
    from fedcredit.protocols.scoring.host import lr_design

    tables, y, _, states, tmp = trained
    assert 0.6 < states["bank"]["evaluate"]["validation"]["auc"] <= 1
    part = load_lr_part(tmp / "gov" / "lr" / LR_FILE)
    C = lr_contributions(part, quantize(lr_design(part, tables["gov"].X)))
    assert C.shape == (len(y), 2)  # one reason per input column (levels summed): no category name needed
    np.testing.assert_allclose(C.sum(axis=1) + lr_reference(part).sum(), partial_score(tables["gov"], part),
                               atol=1e-12)


def test_scorecard_after_onehot_is_refused_before_any_step():
    steps = [(0, "lr", "hetero_lr", LRParams(mode="two_party", features="onehot")), (1, "card", "scorecard", None)]
    (problem,) = [m for i, m in step_order_problems(steps, {"bank": "guest", "gov": "host"}) if i == 1]
    assert 'features = "woe"' in problem and 'features = "onehot"' in problem


def test_standardized_on_a_categorical_column_points_to_onehot(tmp_path):
    tables, _ = _tables(n=120)
    with pytest.raises(DataError, match='features = "onehot"'):
        _run(tmp_path, "two_party", [("lr", "hetero_lr", {"mode": "two_party", "max_epochs": 1})], tables)


def test_onehot_refuses_missing_numeric_values(tmp_path):
    tables, _ = _tables(n=120)
    X = tables["gov"].X.copy()
    X[0, 0] = np.nan
    tables["gov"] = replace(tables["gov"], X=X)
    with pytest.raises(DataError, match="missing values"):
        _run(tmp_path, "two_party", [("lr", "hetero_lr", {"mode": "two_party", "features": "onehot",
                                                          "max_epochs": 1})], tables)


def test_bad_features_option():
    with pytest.raises(ConfigError, match="features"):
        LRParams.coerce({"features": "one-hot"}, "step 'lr' (hetero_lr)")
