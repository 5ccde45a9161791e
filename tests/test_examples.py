"""The examples run: the sweep script and the notebook (executed with nbclient), on small data."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT

EXAMPLES = ROOT / "examples"


def _env() -> dict:
    pp = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), pp]) if pp else str(ROOT)}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sweep_script_prints_federated_next_to_centralized(tmp_path):
    out = tmp_path / "sweep.csv"
    proc = subprocess.run([sys.executable, str(EXAMPLES / "sweep.py"), "--rows", "800", "--trees", "1", "--depths", "2",
                           "--epochs", "1", "--csv", str(out)], capture_output=True, text=True, timeout=280,
                          cwd=tmp_path, env=_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "fed AUC" in proc.stdout and "3 federated jobs" in proc.stdout
    import csv

    rows = list(csv.DictReader(out.open()))
    assert [r["model"] for r in rows] == ["SecureBoost", "hetero LR", "hetero LR"]
    assert "paillier" in rows[1]["config"] and "ckks" in rows[2]["config"]
    for r in rows:  # lossless: the federated model equals its centralized twin
        assert float(r["federated_auc"]) == pytest.approx(float(r["central_auc"]), abs=2e-3)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for k, v in {**_env(), "FEDCREDIT_EXAMPLE_ROWS": "800", "FEDCREDIT_EXAMPLE_TREES": "1"}.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(EXAMPLES / "credit_risk.ipynb", as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stored without outputs
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(str(o.get("text") or (o.get("data") or {}).get("text/plain") or "")
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "job scorecard" in text and "succeeded" in text
    assert "central: GBDTReference (same algorithm)" in text and "P(default) SecureBoost" in text
    assert "[bank] step secureboost done" in text  # live progress reached the notebook
