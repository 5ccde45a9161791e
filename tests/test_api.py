"""The Python API: step builders map onto the job format; a local federation of party processes runs them."""

from __future__ import annotations

import numpy as np
import pytest

import fedcredit
from fedcredit import binning, evaluate, fedavg, hetero_lr, psi, scorecard, secureboost, select
from fedcredit.config import job_from_dict
from fedcredit.errors import ConfigError, DataError

LABEL = "default_next_month"


@pytest.fixture(scope="module")
def small_credit3():
    """The first 1,500 bank customers and whatever the platforms hold of them (about 1,400 in all three)."""
    t = fedcredit.datasets.load_credit3()
    ids = set(t["bank"]["id"][:1500])
    return {p: df[df["id"].isin(ids)].reset_index(drop=True) for p, df in t.items()}


@pytest.fixture(scope="module")
def fed(small_credit3, tmp_path_factory):
    with fedcredit.local_federation(small_credit3, labels={"bank": LABEL},
                                    workdir=tmp_path_factory.mktemp("local")) as f:
        yield f


def test_public_names_are_exported():
    for name in ("local_federation", "LocalFederation", "JobResult", "psi", "binning", "secureboost", "datasets"):
        assert name in fedcredit.__all__ and getattr(fedcredit, name) is not None


def test_builders_map_onto_the_job_format():
    steps = [psi(), binning(max_bins=10), select(iv_threshold=0.02), secureboost(n_trees=5, max_depth=3, max_bins=32),
             hetero_lr(mode="two_party", features="woe", name="lr"), scorecard(pdo=20.0), evaluate(), fedavg(rounds=3)]
    assert [s.to_dict() for s in steps] == [
        {"kind": "psi", "name": "psi", "params": {}},
        {"kind": "binning", "name": "binning", "params": {"max_bins": 10}},
        {"kind": "select", "name": "select", "params": {"iv_threshold": 0.02}},
        {"kind": "secureboost", "name": "secureboost", "params": {"n_trees": 5, "max_depth": 3, "max_bins": 32}},
        {"kind": "hetero_lr", "name": "lr", "params": {"mode": "two_party", "features": "woe"}},
        {"kind": "scorecard", "name": "scorecard", "params": {"pdo": 20.0}},
        {"kind": "evaluate", "name": "evaluate", "params": {}},
        {"kind": "homo", "name": "fedavg", "params": {"rounds": 3}},
    ]
    # the same dicts a job TOML gives: they load with the job loader
    spec = job_from_dict({"job": {"name": "x"}, "parties": {"bank": {"role": "guest"}, "chain": {"role": "host"}},
                          "steps": [s.to_dict() for s in steps[:4]]})
    assert [s.kind for s in spec.steps] == ["psi", "binning", "select", "secureboost"]


def test_bad_inputs_are_config_errors(tmp_path, small_credit3):
    with pytest.raises(ConfigError, match="at least two parties"):
        fedcredit.local_federation({"bank": small_credit3["bank"]})
    with pytest.raises(ConfigError, match="labels for unknown"):
        fedcredit.local_federation(small_credit3, labels={"nobody": "y"}, workdir=tmp_path / "a")
    with pytest.raises(ConfigError, match="a table must be"):
        fedcredit.local_federation({"bank": [[1, 2]], "chain": small_credit3["chain"]}, workdir=tmp_path / "b")
    with pytest.raises(DataError, match=r"bank\.csv: no column 'y' \(the label column\)"):
        fedcredit.local_federation(small_credit3, labels={"bank": "y"}, workdir=tmp_path / "c")
    with pytest.raises(ConfigError, match="mode 'threads' is not one of"):
        fedcredit.local_federation(small_credit3, mode="threads")


SBT_JOB = [psi(), binning(max_bins=8), select(iv_threshold=0.02),
           secureboost(n_trees=2, max_depth=3, max_bins=16, early_stopping_rounds=2, validation_fraction=0.2)]


@pytest.fixture(scope="module")
def sbt_result(fed):
    return fed.run(SBT_JOB, progress=False, name="sbt")


@pytest.mark.slow
def test_secureboost_from_python_matches_the_centralized_reference(fed, sbt_result, small_credit3):
    res = sbt_result
    assert res.ok, res.reason
    assert list(res.steps) == ["psi", "binning", "select", "secureboost"]
    m = res.metrics["secureboost"]
    assert set(m) == {"train", "validation"} and 0.6 < m["validation"]["auc"] <= 1
    assert res.bytes_on_wire == sum(s.bytes_on_wire for s in res.steps.values()) > 100_000
    assert res.report_path is not None and res.report_path.name == "report.html"
    assert set(res.workdirs) == {"bank", "chain", "gov"}
    assert "secureboost" in res.summary() and "validation auc=" in res.summary()
    # the same model centrally (the plaintext reference on the joined rows): federated SecureBoost is lossless
    from fedcredit.baselines import centralized_baselines

    data = fed.root / "central"
    (data / "credit3").mkdir(parents=True)
    for p, df in small_credit3.items():
        df.to_csv(data / "credit3" / f"{p}.csv", index=False)
    ref = centralized_baselines(data, {"n_trees": 2, "max_depth": 3, "max_bins": 16, "early_stopping_rounds": 2,
                                       "validation_fraction": 0.2}, None,
                                sbt_validation_seed=res.validation_seed())["secureboost"][0]
    assert res.validation_seed() is not None
    assert m["validation"]["auc"] == pytest.approx(ref["auc"], abs=1e-4)


@pytest.mark.slow
def test_lr_job_on_two_parties_with_live_progress_and_a_failed_job(fed, capsys):
    events = []
    res = fed.run([psi(), binning(max_bins=8), hetero_lr(mode="two_party", features="woe", max_epochs=1,
                                                         batch_size=1000, validation_fraction=0.2),
                   scorecard(), evaluate()], parties=["bank", "chain"], progress=events.append, name="lr")
    assert res.ok, res.reason
    assert "validation" in res.metrics["evaluate"]
    assert {e["party"] for e in events} == {"bank", "chain"} and any(e["kind"] == "progress" for e in events)
    assert (res.workdirs["bank"] / "scorecard").is_dir()
    n_jobs = len(fed.jobs())
    # a bad step parameter is refused at submission, before PSI (issue #14): no job is created anywhere
    with pytest.raises(ConfigError, match="n_trees"):
        fed.run([psi(), secureboost(n_trees=0)], progress=True)
    assert len(fed.jobs()) == n_jobs and fed.jobs()[0]["state"] == "succeeded"  # newest first


def test_structured_arrays_and_paths_as_tables(tmp_path):
    from fedcredit.api.local import _write_table

    arr = np.array([("a", 1.0, 0), ("b", np.nan, 1)], dtype=[("id", "U4"), ("x", "f8"), ("y", "i8")])
    p = _write_table(arr, tmp_path / "t.csv")
    assert p.read_text().splitlines() == ["id,x,y", "a,1.0,0", "b,,1"]
    assert _write_table(str(p), tmp_path / "other.csv") == p.resolve()
    with pytest.raises(ConfigError, match="table file not found"):
        _write_table(tmp_path / "missing.csv", tmp_path / "x.csv")


@pytest.mark.slow
def test_inprocess_mode_gives_the_same_model_and_the_same_bytes(sbt_result, small_credit3, capsys):
    with fedcredit.local_federation(small_credit3, labels={"bank": LABEL}, mode="inprocess") as fed:
        assert fed.configs == {}  # no party processes, no certificates
        res = fed.run(SBT_JOB, name="sbt")
        assert res.ok, res.reason
        # same protocols and keys' sizes: the same rows and PSI traffic; the validation split is the guest's own
        # secret draw in each run (issue #23), so each run is checked against the plaintext reference on its split
        assert res.steps["psi"].result["intersection"] == sbt_result.steps["psi"].result["intersection"]
        assert res.steps["psi"].bytes_on_wire == sbt_result.steps["psi"].bytes_on_wire
        assert set(res.steps) == set(sbt_result.steps)
        from fedcredit.baselines import centralized_baselines

        data = fed.root / "central"
        (data / "credit3").mkdir(parents=True)
        for p, df in small_credit3.items():
            df.to_csv(data / "credit3" / f"{p}.csv", index=False)
        ref = centralized_baselines(data, {"n_trees": 2, "max_depth": 3, "max_bins": 16, "early_stopping_rounds": 2,
                                           "validation_fraction": 0.2}, None,
                                    sbt_validation_seed=res.validation_seed())["secureboost"][0]
        assert res.metrics["secureboost"]["validation"]["auc"] == pytest.approx(ref["auc"], abs=1e-4)
        assert "[chain] step secureboost done" in capsys.readouterr().out
        with pytest.raises(ConfigError, match="n_trees"):  # refused before the first step, as a party does
            fed.run([psi(), secureboost(n_trees=0)], progress=False)
        assert [j["state"] for j in fed.jobs()] == ["succeeded"]
        with pytest.raises(ConfigError, match="need mode='processes'"):
            fed.submit(SBT_JOB)
        with pytest.raises(ConfigError, match="scoring needs a running party"):
            res.model()


@pytest.mark.slow
def test_connect_runs_lists_and_cancels_jobs_on_a_running_party(fed):
    with fedcredit.connect(fed.configs["bank"]) as bank:
        assert bank.name == "bank"
        with pytest.raises(ConfigError, match="needs roles"):
            bank.job([psi()])
        res = bank.run([psi()], roles={"bank": "guest", "chain": "host"}, name="align", progress=False)
        assert res.ok and res.steps["psi"].result["intersection"] > 1000 and set(res.workdirs) == {"bank"}
        assert bank.jobs(limit=1)[0]["job_id"] == res.job_id
        job_id = bank.submit([psi(), secureboost(n_trees=200, max_depth=3)], roles={"bank": "guest", "chain": "host"},
                             name="long")
        bank.cancel(job_id, "changed my mind")
        res = bank.follow(job_id, progress=False)
        assert res.state == "cancelled" and "changed my mind" in res.reason


@pytest.mark.slow
def test_a_trained_model_scores_applicants_through_the_federation(sbt_result, small_credit3):
    model = sbt_result.model()
    assert model.model_id == f"{sbt_result.job_id}/secureboost"
    ids = small_credit3["bank"]["id"][:20].tolist()
    p = model.predict_proba(ids, purpose="loan-application", consent="CR-2026-0001")
    assert p.shape == (20, 2) and np.allclose(p.sum(axis=1), 1) and ((p > 0) & (p < 1)).all()
    # new applicants bring the bank's own features: the same rows give the same scores
    apps = small_credit3["bank"].drop(columns=[LABEL]).head(20)
    assert np.allclose(model.predict_proba(apps, purpose="loan-application", consent="CR-2026-0002"), p)
    with pytest.raises(ConfigError, match="purpose= and consent="):
        model.predict_proba(ids, purpose="", consent="CR-1")
    with pytest.raises(ConfigError, match="has no trained model step 'psi'"):
        sbt_result.model("psi")


@pytest.mark.slow
def test_party_processes_stop_when_python_exits_without_close(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text("id,y,x\n" + "".join(f"{i},{i % 2},{i}\n" for i in range(20)))
    b.write_text("id,z\n" + "".join(f"{i},{i * 2}\n" for i in range(20)))
    code = ("import fedcredit\n"
            f"fed = fedcredit.local_federation({{'a': {str(a)!r}, 'b': {str(b)!r}}}, labels={{'a': 'y'}})\n"
            "print(' '.join(str(p.pid) for p in fed._fed.procs.values()), flush=True)\n")  # and no close()
    pp = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": pp})
    assert proc.returncode == 0, proc.stderr[-2000:]
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2
    for pid in pids:  # reaped by the exiting interpreter: no such process any more
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
