"""`fedcredit score`, `party revoke|admit` and `model approve-export|export` against three real party processes.

One federation for the module: a SecureBoost model (4 trees, depth 3, trained
in memory with a small test key, as in ``_scoring_fixture``) is written into
the parties' state dirs, then bank, chain and gov run as separate
``fedcredit party serve`` processes with mutual TLS on loopback. The commands
run through ``fedcredit.cli.main`` as an operator would type them; the tests
run in order (score, revoke, admit, export) on the same federation.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from fedcredit.cli import ExitCode, main
from fedcredit.config import load_party_config
from fedcredit.launcher import Federation, write_federation
from fedcredit.protocols.secureboost.model import GuestModel
from fedcredit.serving import merge_secureboost, predict_merged

from _scoring_fixture import HOSTS, PARTIES, SBT, columns, missing_at_gov, scoring_policy, tables, train
from conftest import DATA, ROOT, data_path

pytestmark = pytest.mark.slow

PURPOSE = "loan-application"


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    data_path("credit3", "bank.csv")
    root = tmp_path_factory.mktemp("scoring-cli")
    configs = write_federation(root, DATA, transport={"deadline": 10.0})
    pol = {"bank": scoring_policy(purposes=[PURPOSE], head_exchange_seconds=0.0),
           **{h: scoring_policy(requesters=["bank"], purposes=[PURPOSE], head_exchange_seconds=0.0) for h in HOSTS}}
    for p, extra in pol.items():
        with open(configs[p], "a", encoding="utf-8") as fh:
            fh.write(extra)
    t = tables(DATA)
    info = train(root, t)  # the parties' model parts, in state/<party>/jobs/<job>/
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    f = Federation(configs, env=env)
    f.root, f.tables, f.info = root, t, info
    try:
        f.start(timeout=60)
        yield f
    finally:
        codes = f.stop()
    assert all(c == 0 for c in codes.values()), f"parties did not stop gracefully: {codes}"


def _cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _applicants(fed) -> list[str]:
    return fed.info["ids"][:150] + missing_at_gov(fed.tables)


def _central(fed, ids) -> np.ndarray:
    """The model evaluated on the joined data, from the parts on disk (not through the federation)."""
    jobs = {p: fed.root / "state" / p / "jobs" / SBT for p in PARTIES}
    guest = GuestModel.load(jobs["bank"] / "sbt_guest.json")
    hosts = {h: json.loads((jobs[h] / "sbt_host.json").read_text()) for h in HOSTS}
    return predict_merged(merge_secureboost(guest, hosts), columns(fed.tables, ids))


def _score_csv(fed, capsys, tmp_path, ids) -> tuple[int, str, dict]:
    inp, out = tmp_path / "applicants.csv", tmp_path / "scores.csv"
    inp.write_text("id\n" + "".join(f"{i}\n" for i in ids))
    code, stdout, err = _cli(capsys, "score", "--party", fed.configs["bank"], "--model", SBT, "--input", inp,
                             "--out", out, "--consent", "CR-2024-000123", "--purpose", PURPOSE, "--batch", 64)
    if code != 0:
        return code, err, {}
    with out.open(newline="") as fh:
        got = {r["id"]: float(r["score"]) for r in csv.DictReader(fh)}
    assert f"scored {len(ids)} applicant(s)" in stdout
    return code, err, got


def test_score_csv_equals_central_scores(fed, capsys, tmp_path):
    ids = _applicants(fed)
    code, err, got = _score_csv(fed, capsys, tmp_path, ids)
    assert code == 0, err
    assert list(got) == ids  # input order, every applicant
    central = _central(fed, ids)
    # the file holds 12 significant digits
    np.testing.assert_allclose([got[i] for i in ids], central, rtol=1e-11, atol=0)
    code, out, err = _cli(capsys, "score", "--party", fed.configs["bank"], "--model", SBT, "--id", ids[0],
                          "--consent", "CR-2024-000124", "--purpose", PURPOSE)
    assert code == 0, err
    assert out.strip() == f"{ids[0]},{central[0]:.12g},bank,scored"


def test_applicant_the_bank_does_not_hold_is_flagged_or_refused(fed, capsys, tmp_path):
    ids = fed.info["ids"][:3] + ["not-a-customer-1"]
    inp, out = tmp_path / "applicants.csv", tmp_path / "scores.csv"
    inp.write_text("id\n" + "".join(f"{i}\n" for i in ids))
    base = ["score", "--party", fed.configs["bank"], "--model", SBT, "--input", inp, "--out", out,
            "--consent", "CR-2024-000125", "--purpose", PURPOSE]
    for rule, expect in (("flag", "flagged"), ("refuse", "refused"), ("score-as-missing", "scored")):
        code, stdout, err = _cli(capsys, *base, *(["--unknown", rule] if rule != "flag" else []))
        assert code == 0, err
        with out.open(newline="") as fh:
            rows = {r["id"]: r for r in csv.DictReader(fh)}
        assert set(rows) == set(ids), (rule, stdout, err, out.read_text())
        assert all(rows[i]["held_by"] == "bank" and rows[i]["status"] == "scored" for i in ids[:3])
        last = rows["not-a-customer-1"]
        assert (last["held_by"], last["status"]) == ("", expect), rule
        assert (last["score"] == "") == (rule == "refuse")


def test_revoked_bank_is_refused_with_the_reason_then_admitted_again(fed, capsys, tmp_path):
    from fedcredit.certs import TlsFiles
    from fedcredit.transport.control import dial
    from fedcredit.transport.scoring import GovernanceClient

    chain = fed.configs["chain"]
    ids = fed.info["ids"][:10]
    code, out, err = _cli(capsys, "party", "revoke", "bank", "--party", chain, "--reason", "contract ended")
    assert code == 0, err
    assert "bank revoked on chain" in out
    code, err, _ = _score_csv(fed, capsys, tmp_path, ids)
    assert code == ExitCode.REFUSED
    assert "'bank' is not a peer of 'chain': revoked" in err and "contract ended" in err
    # chain keeps serving its other peers: gov's certificate still gets an answer
    certs = fed.root / "certs"
    cfg_chain = load_party_config(chain)
    ch = dial(cfg_chain.connect_address, target="chain", tls=TlsFiles(certs / "ca.crt", certs / "gov.crt",
                                                                      certs / "gov.key"))
    try:
        assert GovernanceClient(ch, "chain", timeout=10).held_heads() == []
    finally:
        ch.close()
    code, out, err = _cli(capsys, "party", "admit", "bank", "--party", chain, "--reason", "contract renewed")
    assert code == 0, err
    assert "bank re-admitted on chain" in out
    code, err, got = _score_csv(fed, capsys, tmp_path, ids)
    assert code == 0, err
    np.testing.assert_allclose([got[i] for i in ids], _central(fed, ids), rtol=1e-11, atol=0)
    log = (fed.root / "state" / "chain" / "audit.log").read_text()
    assert '"kind":"peer.revoked"' in log and '"kind":"peer.admitted"' in log


def test_export_after_every_partys_approval_scores_like_the_federation(fed, capsys, tmp_path):
    bank, out = fed.configs["bank"], tmp_path / "model.json"
    code, _, err = _cli(capsys, "model", "export", "--party", bank, "--model", SBT, "--out", out)
    assert code == ExitCode.REFUSED and "has not approved exporting" in err
    for p in PARTIES:
        code, stdout, err = _cli(capsys, "model", "approve-export", "--party", fed.configs[p], "--model", SBT,
                                 "--for", "bank", "--note", "model review 2024-Q1")
        assert code == 0, err
        assert f"export of {p}'s part of {SBT} to bank approved" in stdout
    code, stdout, err = _cli(capsys, "model", "export", "--party", bank, "--model", SBT, "--out", out)
    assert code == 0, err
    merged = json.loads(out.read_text())
    ids = _applicants(fed)
    code, err, got = _score_csv(fed, capsys, tmp_path, ids)
    assert code == 0, err
    np.testing.assert_allclose(predict_merged(merged, columns(fed.tables, ids)), [got[i] for i in ids], rtol=1e-11, atol=0)
    # and exactly, against the federation's own float64 scores (not rounded through the CSV)
    from fedcredit.own_party import own_channel
    from fedcredit.transport.scoring import ScoringClient

    ch = own_channel(load_party_config(bank))
    try:
        fed_scores, _ = ScoringClient(ch, "bank", timeout=30).score(SBT, ids, consent_id="CR-2024-000125",
                                                                    purpose=PURPOSE)
    finally:
        ch.close()
    np.testing.assert_array_equal(predict_merged(merged, columns(fed.tables, ids)), fed_scores)
