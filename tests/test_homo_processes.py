"""End to end with real processes over mTLS gRPC: killing a bank mid-round does not stop training."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, data_path

pytest.importorskip("benchmarks.harness")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killing_one_bank_mid_round_does_not_stop_secagg_training(tmp_path):
    from benchmarks.harness import PartyFailed, run_processes

    data = data_path("default_credit")
    params = {"mode": "secagg", "rounds": 4, "stage_timeout": 5.0}
    banks = ["bank1", "bank2", "bank3"]
    kwargs = {b: {"path": str(data / f"homo_{b}.csv"), "params": params} for b in banks}
    # SIGKILL just before its round-1 upload, after dealing its shares for round 1 (with its round-0 upload)
    kwargs["bank2"]["kill_before"] = "round-1/masked"
    kwargs["agg"] = {"test_path": str(data / "homo_test.csv"), "params": params,
                     "result_path": str(tmp_path / "agg.json")}
    roles = {b: "benchmarks.suites.homo:bank" for b in banks} | {"agg": "benchmarks.suites.homo:aggregator"}
    with pytest.raises(PartyFailed) as exc:
        run_processes(roles, kwargs, timeout=120, job_id="homo-kill")
    assert set(exc.value.failures) == {"bank2"}  # only the killed bank failed; the others finished
    rep = json.loads((tmp_path / "agg.json").read_text())
    assert rep["rounds"] == 4
    assert [h["clients"] for h in rep["history"]] == [banks, ["bank1", "bank3"], ["bank1", "bank3"], ["bank1", "bank3"]]
    # lost at the upload of round 1 (its pairwise seeds reconstructed); its rejoin shares missed in round 2
    assert rep["dropped"] == {"masked": ["bank2"], "shares": ["bank2"]}
    assert rep["test_auc"] > 0.72
