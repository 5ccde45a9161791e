"""Typed step parameters (issue #19, item 2): one Params class per step kind, checked when the job is loaded.

A job is checked as a whole before its first step: a typo'd key or an out-of-range value in the *last* step
is refused at submission (and at proposal: the party parses a proposal with the same ``job_from_dict``),
naming the step's index, name and kind and the parameter, and no step (not even PSI) runs. The step then
receives the typed, frozen parameters (defaults applied) instead of a dict it validates itself.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

import fedcredit
from fedcredit import binning, psi, secureboost
from fedcredit._validation import NoParams, Params, validate_params
from fedcredit.config import job_from_dict
from fedcredit.errors import ConfigError, NotFittedError
from fedcredit.models._base import _BaseEstimator
from fedcredit.protocols import registry
from fedcredit.protocols.registry import STEP_KINDS, get_params_class

PARTIES = {"bank": {"role": "guest", "table": "t"}, "chain": {"role": "host", "table": "t"}}


def _tables():
    import pandas as pd

    return {"bank": pd.DataFrame({"id": ["a", "b", "c"], "x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}),
            "chain": pd.DataFrame({"id": ["a", "b", "c"], "z": [4.0, 5.0, 6.0]})}


def _job(last: dict) -> dict:
    steps = [{"kind": "handshake"}, {"kind": "psi"}, {"kind": "binning", "params": {"max_bins": 8}},
             {"kind": "select"}, {"kind": "secureboost", "name": "sbt", "params": last}]
    return {"job": {"name": "j"}, "parties": PARTIES, "steps": steps}


@pytest.mark.parametrize("last, field, words", [
    ({"n_trees": 2, "max_dpeth": 3}, "max_dpeth", "has no parameter 'max_dpeth'"),   # a typo'd key
    ({"n_trees": 2, "max_depth": 99}, "max_depth", "must be an int in [1, 16]. Got 99"),  # out of range
])
def test_bad_parameter_in_the_last_step_names_step_and_field(last, field, words):
    with pytest.raises(ConfigError) as info:
        job_from_dict(_job(last), source="job.toml")
    (problem,) = info.value.problems
    assert problem.startswith("job.toml: steps[4].params: ")  # the step's index in the file
    assert "step 'sbt' (secureboost)" in problem and f"'{field}'" in problem and words in problem


def test_every_problem_of_every_step_is_reported_together():
    d = _job({"n_tress": 2})
    d["steps"][1]["params"] = {"chunk_size": 10}
    with pytest.raises(ConfigError) as info:
        job_from_dict(d)
    keys = sorted(p.split(": ")[1] for p in info.value.problems)
    assert keys == ["steps[1].params", "steps[4].params"]


@pytest.mark.parametrize("step", [
    {"kind": "homo", "params": {"rounds": 0}},                     # out of range
    {"kind": "homo", "params": {"n_features": "many"}},            # wrong type
    {"kind": "secureboost", "params": {"weight_column": 3}},       # a step-only parameter of the wrong type
    {"kind": "handshake", "params": {"rounds": 2}},                # a step without parameters
])
def test_parameters_that_were_read_only_when_the_step_started_are_refused_at_load(step):
    """Attack on the old behaviour: ``job_from_dict`` accepted all of these and the submission check
    (``check_steps``) had no validator for ``homo`` or ``handshake``, so the job ran PSI and failed late (or,
    for ``handshake``, ignored the typo)."""
    d = {"job": {"name": "j"}, "parties": PARTIES, "steps": [{"kind": "psi"}, step]}
    with pytest.raises(ConfigError, match=r"steps\[1\]\.params: "):
        job_from_dict(d)


def test_secureboost_step_only_parameters_pass_submission():
    """The old submission check refused a *valid* ``weight_column``/``monotone`` (it knew only the estimator's
    parameters); the step's own Params class knows them."""
    from fedcredit.party.checks import check_steps

    spec = job_from_dict(_job({"weight_column": "w", "monotone": {"chain": {"z": -1}}}))
    assert check_steps(spec) == []
    assert spec.steps[4].typed_params.weight_column == "w"


def test_parameter_and_step_order_problems_come_back_together():
    """Refusing a job for a parameter must not hide its other mistakes: one round of fixes is enough."""
    d = {"job": {"name": "j"}, "parties": PARTIES,
         "steps": [{"kind": "psi"}, {"kind": "select"}, {"kind": "binning", "params": {"max_bins": 1000}}]}
    with pytest.raises(ConfigError) as info:
        job_from_dict(d, source="job.toml")
    assert sorted(p.split(": ")[1] for p in info.value.problems) == ["steps[1]", "steps[2].params"]
    assert any("step 'select' (select) needs a binning step before it" in p for p in info.value.problems)


def test_handshake_takes_no_parameters():
    d = _job({})
    d["steps"][0]["params"] = {"rounds": 2}
    with pytest.raises(ConfigError, match=r"steps\[0\]\.params: step 'handshake' \(handshake\) has no parameter 'rounds'"):
        job_from_dict(d)


def test_steps_carry_typed_params_with_defaults_and_the_text_as_written():
    spec = job_from_dict(_job({"n_trees": 2, "monotone": {"bank": {"pay_0": 1}}}))
    sbt = spec.steps[4]
    assert type(sbt.typed_params).__name__ == "SecureBoostParams"
    assert sbt.typed_params.n_trees == 2 and sbt.typed_params.max_depth == 3  # default applied
    assert sbt.typed_params.monotone == {"bank": {"pay_0": 1}}
    assert dict(sbt.params) == {"n_trees": 2, "monotone": sbt.params["monotone"]}  # as written: no defaults
    assert spec.to_dict()["steps"][4]["params"] == {"n_trees": 2, "monotone": {"bank": {"pay_0": 1}}}
    assert isinstance(spec.steps[0].typed_params, NoParams)
    again = job_from_dict(spec.to_dict())
    assert again.to_json() == spec.to_json() and again.steps[4].typed_params == sbt.typed_params


def test_a_plugin_kind_without_params_class_gets_a_plain_dict(monkeypatch):
    monkeypatch.setitem(STEP_KINDS, "wait", registry.StepKind("fedcredit.protocols.handshake:run"))
    spec = job_from_dict({"job": {"name": "j"}, "parties": PARTIES,
                          "steps": [{"kind": "wait", "params": {"seconds": 1, "opts": {"a": [1]}}}]})
    assert spec.steps[0].typed_params == {"seconds": 1, "opts": {"a": [1]}}


@pytest.mark.parametrize("last", [{"n_tress": 2}, {"learning_rate": 5.0}])
def test_inprocess_federation_refuses_a_bad_last_step_before_psi_runs(monkeypatch, tmp_path, last):
    """Attack on the old behaviour: the parameters of step 3 were read when step 3 started, after PSI had run
    (and sent data); now the job is refused when it is built, and no step function is even looked up."""
    looked_up = []
    monkeypatch.setattr(registry, "get_step", lambda kind: looked_up.append(kind))
    tables = _tables()
    with fedcredit.local_federation(tables, labels={"bank": "y"}, mode="inprocess", workdir=tmp_path) as fed:
        with pytest.raises(ConfigError) as info:
            fed.run([psi(), binning(max_bins=8), secureboost(name="sbt", **last)], progress=False)
    assert looked_up == []
    (field,) = last
    assert any("steps[2].params" in p and "step 'sbt' (secureboost)" in p and f"'{field}'" in p
               for p in info.value.problems), info.value.problems


def test_the_step_receives_its_typed_params(monkeypatch, tmp_path):
    seen = {}

    def fake_step(kind):
        def run(ctx):
            seen.setdefault(ctx.step, []).append(ctx.params)
            return {}
        return run

    monkeypatch.setattr(registry, "get_step", fake_step)
    tables = _tables()
    with fedcredit.local_federation(tables, labels={"bank": "y"}, mode="inprocess", workdir=tmp_path) as fed:
        res = fed.run([psi(chunk_size=2048), secureboost(n_trees=2)], progress=False)
    assert res.state == "succeeded", res.reason
    (p1, p2), (s1, s2) = seen["psi"], seen["secureboost"]  # guest's and host's
    assert p1 is p2 and s1 is s2  # one checked object for every party (frozen, so none can change it)
    assert type(p1).__name__ == "PSIParams" and p1.chunk_size == 2048 and p1.mode == "intersection"
    assert type(s1).__name__ == "SecureBoostParams" and s1.n_trees == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        s1.n_trees = 3  # frozen: one party's step cannot change what another's sees


@pytest.mark.parametrize("kind", sorted(STEP_KINDS))
def test_every_kind_has_a_params_class_whose_fields_are_its_constraints(kind):
    cls = get_params_class(kind)
    assert cls is not None and issubclass(cls, Params)
    if cls is NoParams:
        return
    names = {f.name for f in dataclasses.fields(cls)}
    assert names == set(cls._parameter_constraints)
    default = cls()
    validate_params(default.as_dict() if kind != "homo" else {**default.as_dict(), "hidden": list(default.hidden)},
                    cls._parameter_constraints, kind)  # the defaults satisfy the constraints
    assert cls.from_dict({}) == default and cls.coerce(default) is default


def _estimators():
    from fedcredit.models.logistic import LogisticRegressionGD
    from fedcredit.models.tree.binning import BinMapper
    from fedcredit.models.tree.gbdt import GBDTReference
    from fedcredit.protocols.hetero_lr import VerticalLogisticRegression
    from fedcredit.protocols.homo import FedAvgClassifier
    from fedcredit.protocols.secureboost import VerticalSecureBoost

    return [GBDTReference, BinMapper, LogisticRegressionGD, VerticalSecureBoost, VerticalLogisticRegression,
            FedAvgClassifier]


@pytest.mark.parametrize("est_cls", _estimators(), ids=lambda c: c.__name__)
def test_every_estimator_shares_the_one_base(est_cls):
    est = est_cls()
    assert isinstance(est, _BaseEstimator)
    assert set(est.get_params()) == set(est_cls._parameter_constraints)
    est._validate_params()  # the defaults pass
    with pytest.raises(ConfigError, match="has no parameter 'nope'"):
        est.set_params(nope=1)
    with pytest.raises(NotFittedError, match=f"This {est_cls.__name__} is not fitted yet"):
        est._check_fitted()


def test_the_step_params_and_the_estimators_share_their_constraints():
    from fedcredit.protocols.hetero_lr import LRParams, VerticalLogisticRegression
    from fedcredit.protocols.secureboost import VerticalSecureBoost
    from fedcredit.protocols.secureboost.params import STEP_ONLY, SecureBoostParams

    assert VerticalLogisticRegression._parameter_constraints is LRParams._parameter_constraints
    assert set(VerticalSecureBoost._parameter_constraints) == set(SecureBoostParams._parameter_constraints) - set(STEP_ONLY)
    est = VerticalSecureBoost(**SecureBoostParams(n_trees=7).estimator_params())
    assert est.get_params()["n_trees"] == 7


def test_one_spelling_of_constraints():
    """``_parameter_constraints`` only: the older spellings (PARAMETER_CONSTRAINTS, _CONSTRAINTS,
    LRParams.constraints()) are gone from the package (shared fragments like TREE_PARAMETER_CONSTRAINTS stay)."""
    old = re.compile(r"(?<![A-Z_])PARAMETER_CONSTRAINTS\b|(?<![A-Za-z])_CONSTRAINTS\b|def constraints\(")
    root = Path(fedcredit.__file__).parent
    hits = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py") if "_proto" not in p.parts
            for i, line in enumerate(p.read_text().splitlines(), 1) if old.search(line)]
    assert hits == []


def test_coerce_still_accepts_a_dict_for_direct_callers():
    """Tests and the Python API may still call a step with ``params`` as a dict: it is checked the same way."""
    from fedcredit.protocols.select.params import SelectParams

    assert SelectParams.coerce({"top_k": 3}).top_k == 3
    with pytest.raises(ConfigError, match="The 'top_k' parameter of step 's' must be"):
        SelectParams.coerce({"top_k": 0}, "step 's'")
    assert np.isclose(SelectParams.coerce(None).iv_threshold, 0.02)
