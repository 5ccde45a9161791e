"""Issue #17 benchmark records: the binning suite (both schemes in one run, IV = centralized fit_woe), hetero LR's OU record,
and the secureboost `tall` path (PSI of the parties' tables first, in the same job)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("benchmarks.run")

from benchmarks.run import _markdown, run_one


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


def test_hetero_lr_suite_says_ou_is_not_offered_and_why():
    # masked decryptions go back to the party that built the ciphertexts: OU's key-recovery pitfall
    out = run_one("hetero_lr", ["--configs", "", "--micro-rows", "0", "--backends", "paillier,ou"])
    ou = out["result"]["ou"]
    assert ou["offered"] is False and ou["requested"] is True and ou["he"] == "ou"
    assert "masked decryptions" in ou["reason"] and "docs/crypto.md" in ou["see"]
    assert out["result"]["configs"] == {}  # nothing ran under OU


@pytest.mark.slow
def test_tall_config_runs_psi_first_then_trains_on_the_aligned_rows(tmp_path):
    """`tall` reduced: three shuffled tables with partial overlap, PSI in the same job, the trees on its rows."""
    out = run_one("secureboost", ["--configs", "tall", "--synth-rows", "800", "--quick", "--he", "ou",
                                  "--max-depth", "2", "--out", str(tmp_path / "t.json")])
    (r,) = out["result"]["runs"]
    assert r["config"] == "tall" and r["he"] == "ou" and r["reduced"] and r["rows_generated"] == 800
    psi = r["psi"]
    # every party holds 90 % of the customers: PSI found the expected intersection (checked by the suite)
    assert set(psi["rows"].values()) == {720} and 0 < psi["intersection"] < 720
    assert psi["intersection"] == r["rows_aligned"] and r["rows_train"] == round(0.8 * r["rows_aligned"])
    assert psi["seconds"] > 0 and set(psi["bytes_sent"]) == {"bank", "chain", "gov"} and psi["bytes_total"] > 0
    assert set(r["peak_rss_mb"]) == {"bank", "chain", "gov"}
    # the federated trees on PSI's rows are the plaintext reference's on the harness's join of the same rows
    assert r["test_auc"] == round(r["centralized_reference"]["test_auc"], 5)
    assert r["seconds_per_tree"] > 0 and r["bytes_per_tree"] > 0 and set(r["phases_per_tree"]) >= {"encrypt", "decrypt"}


def test_write_vertical_csv_partial_overlap_shuffled_and_bounded_memory(tmp_path):
    import csv
    import tracemalloc

    import numpy as np

    from benchmarks.synth import customer_id, write_vertical_csv

    try:
        import pandas  # noqa: F401 - imported before tracing: its import is not the writer's memory
    except ImportError:
        pass
    feats = {"bank": 4, "chain": 50, "gov": 50}
    tracemalloc.start()
    w = write_vertical_csv(20_000, feats, tuple(feats), tmp_path, overlap=0.9, chunk_rows=1_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # one party's float32 matrix (4 MB) plus one chunk's text (~7 MB measured); make_vertical holds every party's
    # float64 population (16.6 MB) and a shuffled copy of it (15 MB) before writing
    assert peak < 14e6, peak
    held = w["rows"]
    for p, width in feats.items():
        with open(w["paths"][p], newline="") as f:
            rows = list(csv.reader(f))
        head, body = rows[0], rows[1:]
        assert head[: 2 if p == "bank" else 1] == (["id", "default"] if p == "bank" else ["id"])
        assert len(head) == 1 + (p == "bank") + width and len(body) == 18_000
        assert [r[0] for r in body] == [customer_id(int(i)) for i in held[p]]  # the file's own order...
        assert not np.all(np.diff(held[p]) > 0)  # ... shuffled
        assert any(r[-1] == "" for r in body)  # missing values in the last column
    common = np.intersect1d(np.intersect1d(held["bank"], held["chain"]), held["gov"])
    assert 0.6 * 20_000 < len(common) < 0.8 * 20_000  # ~0.9^3 of the customers in all three


def test_peak_rss_of_another_process_is_read_from_its_status():
    """What the scoring suite reports per party: VmHWM of each party's process, by pid."""
    import subprocess
    import sys

    from benchmarks.harness import process_peak_rss_mb

    child = subprocess.Popen([sys.executable, "-c", "b = bytearray(80 * 2**20); import time; time.sleep(30)"])
    try:
        import time

        deadline = time.time() + 20
        mb = None
        while time.time() < deadline:
            mb = process_peak_rss_mb(child.pid)
            if mb and mb >= 80:
                break
            time.sleep(0.1)
        assert mb is not None and mb >= 80  # the child's 80 MB buffer, not this process's peak
    finally:
        child.kill()
        child.wait()
    assert process_peak_rss_mb() > 0
    assert process_peak_rss_mb(2**22 + 12345) is None  # no such process
