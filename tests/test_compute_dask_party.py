"""Two real party processes (mTLS on loopback) run a SecureBoost job; the host computes on Dask.

The host's config says ``[compute] backend = "dask"`` with no scheduler, so the
host process starts its own ``LocalCluster`` of 2 workers when the step first
needs it; the guest uses the local pool. The same job file then runs again
after the host was restarted with the local backend, and both parties' model
parts must be the same: the same trees, split ids, thresholds and leaf weights.
The job streams each tree's ``(g, h)`` in 50-row GH parts over gRPC. Keys are
the production 2048 bits (the job step has no smaller key; 400 rows keep it fast).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed", reason="the Dask backend needs the dask extra: pip install 'fedcredit[dask]'")

from fedcredit.cli import ExitCode, main  # noqa: E402
from fedcredit.config import load_party_config  # noqa: E402
from fedcredit.launcher import Federation, write_federation, write_job  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PARTIES = {"bank": ("guest", "bank.csv", "y"), "host": ("host", "host.csv", None)}
SBT = {"n_trees": 2, "max_depth": 3, "max_bins": 16, "subsample": 0.9, "gh_part_rows": 50}  # he: the default, OU
DASK = '\n[compute]\nbackend = "dask"\nworkers = 2\n'


def _write_data(root: Path, n: int = 400, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    Xg, Xh = rng.normal(size=(n, 3)), rng.normal(size=(n, 4))
    Xh[rng.random(n) < 0.05, 0] = np.nan
    z = Xg @ [0.8, -0.5, 0.1] + Xh @ [1.0, 0.0, -0.7, 0.3]
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    d = root / "data" / "credit3"  # write_federation reads <data_dir>/credit3/<csv>
    d.mkdir(parents=True)
    ids = [f"c{i:05d}" for i in range(n)]
    with open(d / "bank.csv", "w") as f:
        f.write("id,y,g0,g1,g2\n")
        f.writelines(f"{i},{t},{a:.6f},{b:.6f},{c:.6f}\n" for i, t, (a, b, c) in zip(ids, y, Xg))
    with open(d / "host.csv", "w") as f:
        f.write("id,h0,h1,h2,h3\n")
        f.writelines(f"{i}," + ",".join("" if np.isnan(v) else f"{v:.6f}" for v in row) + "\n"
                     for i, row in zip(ids, Xh))
    return root / "data"


def _run_job(fed: Federation, job: Path, capsys) -> str:
    capsys.readouterr()
    code = main(["run", str(job), "--party", str(fed.configs["bank"])])
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == ExitCode.OK, text
    return next(line.split()[1] for line in text.splitlines() if line.startswith("job ") and "submitted" in line)


def _report(fed: Federation, party: str, job_id: str) -> dict:
    path = load_party_config(fed.configs[party]).state_dir / "jobs" / job_id / "report.json"
    for _ in range(100):
        if path.exists():
            rep = json.loads(path.read_text())
            if rep["state"] == "succeeded":
                return rep
        time.sleep(0.1)
    raise AssertionError(f"{party}: no succeeded report for job {job_id}")


def _outputs(fed: Federation, job_id: str) -> dict:
    out = {}
    for party, model in (("bank", "sbt_guest.json"), ("host", "sbt_host.json")):
        rep = _report(fed, party, job_id)
        step = next(s for s in rep["steps"] if s["kind"] == "secureboost")
        wd = load_party_config(fed.configs[party]).state_dir / "jobs" / job_id / step["step"]
        out[party] = {"result": step["result"], "model": json.loads((wd / model).read_text())}
    return out


def test_secureboost_job_dask_host_process_same_model_as_local(tmp_path, capsys):
    data = _write_data(tmp_path)
    configs = write_federation(tmp_path, data, parties=PARTIES, transport={"deadline": 10.0, "recv_timeout": 120.0})
    local_cfg = configs["host"].read_text()
    configs["host"].write_text(local_cfg + DASK)
    job = write_job(tmp_path / "sbt.toml", [("psi", "psi", {}), ("secureboost", "sbt", SBT)], name="sbt",
                    parties=PARTIES)
    fed = Federation(configs)
    try:
        fed.start(timeout=60)
        t0 = time.monotonic()
        dask_job = _run_job(fed, job, capsys)
        dask_seconds = time.monotonic() - t0
        dask_out = _outputs(fed, dask_job)
        # the same job again, the host restarted on the local pool
        fed.stop(["host"])
        configs["host"].write_text(local_cfg)
        fed.start(["host"], timeout=60)
        local_job = _run_job(fed, job, capsys)
        local_out = _outputs(fed, local_job)
    finally:
        codes = fed.stop()
    assert all(c == 0 for c in codes.values()), f"parties did not stop gracefully: {codes}"
    host_log = (load_party_config(configs["host"]).state_dir / "party.log").read_text()
    assert "'backend': 'dask'" in host_log and "'backend': 'local'" in host_log

    dr, lr = dask_out["host"]["result"], local_out["host"]["result"]
    assert (dr["compute"], lr["compute"]) == ("dask", "local")
    assert (dr["partitions"], lr["partitions"]) == (2, 0)  # the (g, h) of a tree on the 2 workers / in-process
    assert dr["gh_parts"] == lr["gh_parts"] == 2 * 8  # 360 rows a tree (subsample 0.9) in 50-row parts
    assert dask_out["bank"]["result"]["compute"] == "local"
    assert dask_out["bank"]["result"]["gh_part_rows"] == 50 and dask_out["bank"]["result"]["trees"] == 2
    # the same model parts on both parties: trees (guest) and split tables (host); not the run's secrets
    # (the guest draws a fresh validation seed and run-id key per run, so the run ids differ too)
    def same(m):
        return {k: v for k, v in m.items() if k not in ("run_id", "validation_seed", "run_key")}

    dh, lh = dask_out["host"]["model"], local_out["host"]["model"]
    assert dh["splits"] and same(dh) == same(lh)
    dg, lg = dask_out["bank"]["model"], local_out["bank"]["model"]
    assert len(dg["trees"]) == 2 and same(dg) == same(lg) and dg["run_id"] != lg["run_id"]
    assert any(node.get("party") == "host" for tree in dg["trees"] for node in tree), "the host should win splits"
    assert dask_out["bank"]["result"]["train"] == local_out["bank"]["result"]["train"]
    print(f"dask-host job {dask_seconds:.1f}s")
