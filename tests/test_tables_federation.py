"""Issue #14 end to end: raw tables (text categories, a default/repaid label, shuffled rows, partial coverage).

Four real party processes (mTLS on loopback): bank (guest, label ``default``/``repaid``), chain and gov
(hosts; gov holds SEX/EDUCATION/MARRIAGE as text labels and 90 % of the customers), supervisor (arbiter, no
data). The categorical variant of credit3 is built at test time from the shared CSVs (a subset of the rows,
shuffled per party) and the jobs run from the raw CSVs through ``fedcredit run``.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA
from fedcredit.cli import ExitCode, main
from fedcredit.config import load_party_config
from fedcredit.data import load_table
from fedcredit.launcher import Federation, write_federation, write_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

N = 3000  # bank customers used (gov covers 90 % of them, chain all)
SEX = {"1": "male", "2": "female"}
EDUCATION = {"1": "graduate school", "2": "university", "3": "high school", "4": "others", "5": "unknown",
             "6": "unknown", "0": ""}
MARRIAGE = {"1": "married", "2": "single", "3": "others", "0": ""}
SECRET_ID = "SECRET-ID-4711"
PARTIES = {"bank": ("guest", "bank.csv", "default_next_month"), "chain": ("host", "chain.csv", None),
           "gov": ("host", "gov.csv", None), "supervisor": ("arbiter", None, None)}
VERTICAL = {p: PARTIES[p] for p in ("bank", "chain", "gov")}
SBT = {"n_trees": 2, "max_depth": 3, "learning_rate": 0.3, "max_bins": 16}
BINNING = {"max_bins": 10, "min_bin_count": 50}


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _write(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _build_data(root: Path) -> Path:
    """The categorical variant of credit3 under ``root/data/credit3`` (+ aligned and broken tables)."""
    rng = np.random.default_rng(14)
    d = root / "data" / "credit3"
    src = DATA / "credit3"
    bh, brows = _read(src / "bank.csv")
    ch, crows = _read(src / "chain.csv")
    gh, grows = _read(src / "gov.csv")
    ids = sorted({r[0] for r in brows} & {r[0] for r in crows} & {r[0] for r in grows})
    keep = set(rng.choice(ids, N, replace=False).tolist())
    li = bh.index("default_next_month")
    bank = [r[:li] + [{"1": "default", "0": "repaid"}[r[li]]] + r[li + 1:] for r in brows if r[0] in keep]
    chain = [r for r in crows if r[0] in keep]
    gov_keep = set(rng.choice(sorted(keep), int(0.9 * N), replace=False).tolist())
    cols = {c: gh.index(c) for c in ("sex", "education", "marriage")}
    gov = []
    for r in grows:
        if r[0] in gov_keep:
            r = list(r)
            for c, m in (("sex", SEX), ("education", EDUCATION), ("marriage", MARRIAGE)):
                r[cols[c]] = m[r[cols[c]]]
            gov.append(r)
    for rows in (bank, chain, gov):
        rng.shuffle(rows)
    _write(d / "bank.csv", bh, bank)
    _write(d / "chain.csv", ch, chain)
    _write(d / "gov.csv", gh, gov)
    # pre-aligned tables: bank and chain in one (sorted) order; gov's misaligned copy claims the same
    order = sorted(r[0] for r in bank)
    pos_b = {r[0]: r for r in bank}
    pos_c = {r[0]: r for r in chain}
    _write(d / "bank_aligned.csv", bh, [pos_b[i] for i in order])
    _write(d / "chain_aligned.csv", ch, [pos_c[i] for i in order])
    _write(d / "gov_misaligned.csv", gh, gov)
    # broken host data: a duplicate id (its value must never leave gov)
    bad = [list(r) for r in gov[:200]]
    bad[0][0] = bad[1][0] = SECRET_ID
    _write(d / "gov_dup.csv", gh, bad)
    return root / "data"


def _add_keys(cfg: Path, table: str, lines: list[str]) -> None:
    text = cfg.read_text()
    head = f"[tables.{table}]\n"
    assert head in text, (cfg, table)
    cfg.write_text(text.replace(head, head + "".join(f"{ln}\n" for ln in lines), 1))


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    if not (DATA / "credit3" / "bank.csv").exists():
        pytest.fail("credit3 data not present")
    root = tmp_path_factory.mktemp("tables")
    data = _build_data(root)
    d = data / "credit3"
    configs = write_federation(
        root, data, parties=PARTIES, transport={"deadline": 10.0, "recv_timeout": 120.0},
        tables={"bank": {"aligned": (d / "bank_aligned.csv", "default_next_month")},
                "chain": {"aligned": (d / "chain_aligned.csv", None)},
                "gov": {"misaligned": (d / "gov_misaligned.csv", None), "dup": (d / "gov_dup.csv", None),
                        "badcat": (d / "gov.csv", None)}},
    )
    configs_text = configs["bank"].read_text()
    configs["bank"].write_text(configs_text.replace("[policy]", "\n".join(
        ["[tables.badlabel]", f'path = "{d / "bank.csv"}"', 'label_column = "default_next_month"',
         'pos_label = "bad"', "", "[policy]"]), 1))
    _add_keys(configs["bank"], "credit", ['pos_label = "default"'])
    _add_keys(configs["bank"], "aligned", ['pos_label = "default"', 'aligned_by = "apps"'])
    _add_keys(configs["chain"], "aligned", ['aligned_by = "apps"'])
    _add_keys(configs["gov"], "misaligned", ['aligned_by = "apps"'])
    _add_keys(configs["gov"], "badcat", ['categorical = ["regoin"]'])
    # bank starts without the supervisor among its peers; the LR test adds it back with 'party reload'
    text = configs["bank"].read_text()
    sup = next(ln for ln in text.splitlines() if ln.startswith("supervisor = "))
    configs["bank"].write_text(text.replace(sup + "\n", "", 1))
    f = Federation(configs)
    f.root, f.data, f.supervisor_line = root, data, sup
    try:
        f.start(timeout=60)
        yield f
    finally:
        codes = f.stop()
    assert all(c == 0 for c in codes.values()), f"parties did not stop gracefully: {codes}"


def _run(fed, name, steps, *, parties=None, roles=None, capsys) -> tuple[int, str, str | None]:
    job = write_job(fed.root / f"{name}.toml", steps, name=name, parties=parties or VERTICAL, roles=roles)
    capsys.readouterr()
    code = main(["run", str(job), "--party", str(fed.configs["bank"])])
    out = capsys.readouterr()
    text = out.out + out.err
    job_id = next((ln.split()[1] for ln in text.splitlines() if ln.startswith("job ") and "submitted" in ln), None)
    return code, text, job_id


def _state(fed, party) -> Path:
    return load_party_config(fed.configs[party]).state_dir


def _report(fed, party, job_id, state="succeeded") -> dict:
    path = _state(fed, party) / "jobs" / job_id / "report.json"
    for _ in range(300):
        if path.exists():
            rep = json.loads(path.read_text())
            if rep["state"] == state:
                return rep
        time.sleep(0.1)
    raise AssertionError(f"{party}: no {state} report for job {job_id}")


def _steps_run(fed, job_id) -> list:
    """Every step row any party stored for the job (a step that started leaves one)."""
    rows = []
    for p in fed.configs:
        con = sqlite3.connect(_state(fed, p) / "party.sqlite")
        try:
            rows += con.execute("SELECT * FROM steps WHERE job_id = ?", (job_id,)).fetchall()
        finally:
            con.close()
    return rows


def _joined(fed) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """The centralized reference: the three raw tables joined on the id in PSI order (ascending id)."""
    d = fed.data / "credit3"
    tabs = {"bank": load_table(d / "bank.csv", party="bank", label_column="default_next_month", pos_label="default"),
            "chain": load_table(d / "chain.csv", party="chain"), "gov": load_table(d / "gov.csv", party="gov")}
    common = sorted(set.intersection(*(set(t.ids.tolist()) for t in tabs.values())))
    Xs, names, cats = [], [], {}
    for p, t in tabs.items():
        pos = {i: k for k, i in enumerate(t.ids)}
        rows = np.array([pos[i] for i in common])
        Xs.append(t.X[rows])
        names += list(t.feature_names)
        cats.update({f: t.category_names(f) for f in t.categorical_features})
        if p == "bank":
            y = t.y[rows].astype(np.int64)
    return np.concatenate(Xs, axis=1), y, names, cats


def test_categorical_pipeline_from_raw_csvs_equals_centralized(fed, capsys):
    code, out, job_id = _run(fed, "cat", [("psi", "psi", {}), ("binning", "binning", BINNING),
                                          ("secureboost", "sbt", SBT)], capsys=capsys)
    assert code == ExitCode.OK, out
    assert "sbt: train AUC 0." in out and f"jobs/{job_id}/report.json" in out, out  # headline metrics, report path
    X, y, names, cats = _joined(fed)
    assert set(cats) == {"gov.sex", "gov.education", "gov.marriage"}
    assert cats["gov.education"] == ("graduate school", "high school", "others", "university", "unknown")
    rep = _report(fed, "bank", job_id)
    steps = {s["kind"]: s for s in rep["steps"]}
    assert steps["psi"]["result"]["intersection"] == len(y) == int(0.9 * N)
    # binning: WOE/IV per category equal the centralized reference with the same categorical handling
    from fedcredit.models.woe import fit_woe

    iv = steps["binning"]["result"]["iv"]
    for j, f in enumerate(names):
        ref = fit_woe(X[:, j], y, name=f, max_bins=BINNING["max_bins"], categorical=f in cats,
                      min_bin_count=BINNING["min_bin_count"])
        assert iv[f] == pytest.approx(ref.total_iv, abs=1e-9), f
    # each party's own report shows WOE per category by name (the host's stays with the host)
    gov_bins = next(s for s in _report(fed, "gov", job_id)["steps"] if s["kind"] == "binning")["result"]["woe"]
    labels = [row[0] for row in gov_bins["gov.education"]]
    assert "{university}" in labels and "{graduate school}" in labels and labels[-1].startswith("missing"), labels
    assert "gov.education" not in steps["binning"]["result"]["woe"]  # the guest's own features only
    # SecureBoost with native categorical splits: the plaintext reference with the same categorical handling
    from fedcredit.models.tree.gbdt import GBDTReference
    from fedcredit.protocols.secureboost.model import GUEST_FILE, GuestModel
    from fedcredit.protocols.secureboost.spec import GH_BITS, MIN_NODE_ROWS

    sbt = steps["secureboost"]["result"]
    model = GuestModel.load(_state(fed, "bank") / "jobs" / job_id / "sbt" / GUEST_FILE)
    ref = GBDTReference(**SBT, min_node_rows=MIN_NODE_ROWS, gh_bits=GH_BITS, validation_seed=model.validation_seed,
                        categorical_features=[f in cats for f in names]).fit(X, y)
    assert any(n.left_bins is not None for t in model.trees for n in t), "no category-subset split"
    from fedcredit.models import metrics

    ref_auc = metrics.auc(y, ref.predict_proba(X)[:, 1])
    assert sbt["train"]["auc"] == pytest.approx(ref_auc, abs=1e-9), (sbt, ref_auc)


def _no_step_anywhere(fed, job_id):
    assert _steps_run(fed, job_id) == []
    for p in fed.configs:  # no message of any step (PSI included) was sent or received
        audit = (_state(fed, p) / "audit.log").read_text()
        assert not any(json.loads(ln).get("kind") in ("step.messages", "step.finished", "job.started")
                       and job_id in ln for ln in audit.splitlines()), p


def test_job_without_psi_on_shuffled_tables_is_refused_before_any_step(fed, capsys):
    code, out, job_id = _run(fed, "nopsi", [("binning", "binning", BINNING), ("secureboost", "sbt", SBT)],
                             capsys=capsys)
    assert code == ExitCode.REFUSED, out
    assert "no psi step comes before it" in out and "aligned_by" in out
    for p in ("bank", "chain", "gov"):
        assert f"table 'credit' of '{p}' declares no aligned_by" in out
    _no_step_anywhere(fed, job_id)


def test_aligned_by_on_aligned_tables_runs_and_equals_psi(fed, capsys):
    parties = {p: VERTICAL[p] for p in ("bank", "chain")}
    code, out, job_id = _run(fed, "aligned", [("binning", "binning", BINNING)], parties=parties,
                             roles={"bank": ("guest", "aligned"), "chain": ("host", "aligned")}, capsys=capsys)
    assert code == ExitCode.OK, out
    iv = next(s for s in _report(fed, "bank", job_id)["steps"] if s["kind"] == "binning")["result"]["iv"]
    d = fed.data / "credit3"
    b = load_table(d / "bank_aligned.csv", party="bank", label_column="default_next_month", pos_label="default")
    c = load_table(d / "chain_aligned.csv", party="chain")
    from fedcredit.models.woe import fit_woe

    for t in (b, c):
        for j, f in enumerate(t.feature_names):
            ref = fit_woe(t.X[:, j], b.y, name=f, max_bins=10, min_bin_count=50)
            assert iv[f] == pytest.approx(ref.total_iv, abs=1e-9), f


def test_aligned_by_on_misaligned_tables_fails_before_the_first_step(fed, capsys):
    code, out, job_id = _run(fed, "misaligned", [("binning", "binning", BINNING)],
                             roles={"bank": ("guest", "aligned"), "chain": ("host", "aligned"),
                                    "gov": ("host", "misaligned")}, capsys=capsys)
    assert code != ExitCode.OK, out
    assert "declared aligned (aligned_by) are not" in out and "'gov'" in out, out
    assert "'chain'" not in out.split("are not")[1].split(";")[0]
    assert _steps_run(fed, job_id) == []


def test_every_mistake_comes_back_at_once_before_the_first_step(fed, capsys):
    from fedcredit.errors import ConfigError

    # the initiator's own checks, at submission: parameters and step order, all problems together
    code, out, _ = _run(fed, "badsteps", [("psi", "psi", {"mode": "everything"}), ("select", "select", {}),
                                          ("binning", "binning", {"max_bins": 1000}), ("evaluate", "evaluate", {})],
                        capsys=capsys)
    assert code == ExitCode.CONFIG, out
    for text in ("'mode' parameter", "'max_bins' parameter", "step 'evaluate' (evaluate) needs a hetero_lr step",
                 "step 'select' (select) needs a binning step"):
        assert text in out, (text, out)
    # each party's own data, at proposal: bank's pos_label, gov's categorical name; both reported, no step runs
    code, out, job_id = _run(fed, "baddata", [("psi", "psi", {}), ("binning", "binning", BINNING)],
                             roles={"bank": ("guest", "badlabel"), "gov": ("host", "badcat")}, capsys=capsys)
    assert code == ExitCode.REFUSED, out
    assert "pos_label 'bad' is not a value of the label (found default, repaid)" in out  # bank's own operator
    assert "refused by gov" in out and "categorical column(s) 'regoin' not in the table" in out
    _no_step_anywhere(fed, job_id)
    assert ConfigError  # (imported for the reader: submission problems are ConfigErrors, exit code 3)


def _all_bytes(fed, party) -> bytes:
    out = b""
    for f in sorted(_state(fed, party).rglob("*")):
        if f.is_file():
            out += f.read_bytes()
    return out


def test_host_data_error_reaches_the_initiator_without_value_or_path(fed, capsys):
    code, out, job_id = _run(fed, "dup", [("psi", "psi", {}), ("binning", "binning", BINNING)],
                             roles={"gov": ("host", "dup")}, capsys=capsys)
    assert code == ExitCode.REFUSED, out
    assert "refused by gov" in out and "id column 'id': 1 duplicate id(s) (TableError)" in out, out
    gov_file = str(fed.data / "credit3" / "gov_dup.csv")
    gov_state = str(_state(fed, "gov"))
    for party in ("bank", "chain"):  # everything the initiator (and the other host) received and stored
        blob = _all_bytes(fed, party) + out.encode()
        for secret in (SECRET_ID, gov_file, "gov_dup.csv", gov_state):
            assert secret.encode() not in blob, (party, secret)
    # the full text stays in gov's own log
    assert SECRET_ID in (_state(fed, "gov") / "party.log").read_text()
    # a failure inside a step crosses as party, step, column and class
    code, out, job_id = _run(fed, "lrcat", [("psi", "psi", {}), ("hetero_lr", "lr", {"mode": "two_party",
                             "max_epochs": 1})], parties={p: VERTICAL[p] for p in ("bank", "gov")}, capsys=capsys)
    assert code == ExitCode.DATA, out  # a job that failed on a party's data
    assert "step 'lr' failed on gov" in out and "column 'sex'" in out and "(TableError)" in out, out
    blob = _all_bytes(fed, "bank") + out.encode()
    assert b"gov.csv" not in blob and gov_state.encode() not in blob


LR = {"mode": "coordinated", "features": "woe", "learning_rate": 1.0, "batch_size": 4000, "max_epochs": 2,
      "validation_fraction": 0.2, "n_iter_no_change": 2}


def test_three_data_parties_and_arbiter_lr_job(fed, capsys):
    steps = [("psi", "psi", {}), ("binning", "binning", BINNING), ("select", "select", {"iv_threshold": 0.0}),
             ("hetero_lr", "lr", LR), ("scorecard", "scorecard", {}), ("evaluate", "evaluate", {})]
    code, out, _ = _run(fed, "lr3", steps, parties=PARTIES, roles={"supervisor": ("arbiter", None)}, capsys=capsys)
    assert code == ExitCode.CONFIG and "'supervisor' not in 'bank''s [peers]" in out, out
    # the operator adds the peer and reloads (CONFIG given as for 'party health'): jobs may use it at once
    cfg = fed.configs["bank"]
    cfg.write_text(cfg.read_text().replace("[peers]\n", f"[peers]\n{fed.supervisor_line}\n", 1))
    assert main(["party", "reload", str(cfg)]) == ExitCode.OK
    code, out, job_id = _run(fed, "lr3", steps, parties=PARTIES, roles={"supervisor": ("arbiter", None)},
                             capsys=capsys)
    assert code == ExitCode.OK, out
    rep = _report(fed, "bank", job_id)
    psi = next(s for s in rep["steps"] if s["kind"] == "psi")
    assert psi["result"]["intersection"] == int(0.9 * N)
    ev = next(s for s in rep["steps"] if s["kind"] == "evaluate")["result"]
    assert ev["validation"]["auc"] > 0.7
    card = (_state(fed, "gov") / "jobs" / job_id / "scorecard" / "scorecard.csv").read_text()
    assert "married" in card and "university" in card  # the host's own rows in category names
