"""Smoke test of the ``binning`` benchmark suite (issue #17): both schemes in one run, IV = centralized fit_woe."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("benchmarks.run")

from benchmarks.run import _markdown, run_one  # noqa: E402


def test_binning_suite_quick_reports_paillier_and_ou_side_by_side(tmp_path):
    out = run_one("binning", ["--quick", "--rows", "600", "--min-bin-count", "20", "--out", str(tmp_path / "b.json")])
    res = json.loads((tmp_path / "b.json").read_text())["result"]
    assert res is not None and out["result"]["rows_aligned"] == 600
    runs = {r["he"]: r for r in res["runs"]}
    assert set(runs) == {"paillier", "ou"}
    for r in runs.values():
        # the federated IV of every feature of the three parties is the centralized fit_woe's
        assert r["iv_equal_to_centralized"] and r["max_iv_diff"] <= 1e-9
        assert r["features"] == 23 and set(r["peak_rss_mb"]) == {"bank", "chain", "gov"}
        assert r["seconds"] > 0 and r["bytes_total"] == sum(r["bytes_sent"].values())
    # OU ciphertexts are half of Paillier's (mod n, not n^2): the encrypted labels dominate the bytes
    assert res["ou_over_paillier"]["bytes"] < 0.6
    assert "| ou |" in _markdown({"binning": {"result": res, "seconds": 1.0}})
