"""`fedcredit score` file handling: input read with the data loader, output in input order."""

import numpy as np
import pytest

from fedcredit.errors import DataError
from fedcredit.cli import score as commands


class _Cfg:
    name = "bank"


class _FakeClient:
    calls = []

    def __init__(self, channel, name, timeout):
        pass

    def score(self, model_id, ids, *, consent_id, purpose, guest_X, feature_names, unknown):
        _FakeClient.calls.append((model_id, list(ids), consent_id, purpose, feature_names, guest_X, unknown))
        held = np.array([i != "b" for i in ids])  # the bank does not hold "b"
        scores = np.arange(len(ids), dtype=float) / 10 + len(_FakeClient.calls)
        return np.where(held | (unknown != "refuse"), scores, np.nan), None, held


class _Ch:
    def close(self):
        pass


@pytest.fixture
def fake(monkeypatch):
    import fedcredit.transport.scoring as scoring

    _FakeClient.calls = []
    monkeypatch.setattr(scoring, "ScoringClient", _FakeClient)
    monkeypatch.setattr(commands, "own_channel", lambda cfg: _Ch())


def test_scores_written_in_input_order_in_batches(tmp_path, fake):
    inp = tmp_path / "applicants.csv"
    inp.write_text("id,limit_bal\n c \n".replace(" c \n", "c,1\nb,\na,3\n"))
    out = tmp_path / "scores.csv"
    n = commands.score_file(_Cfg(), "job/sbt", inp, out, consent="C-1", purpose="credit-risk-model", batch=2)
    assert n == 3
    assert [c[1] for c in _FakeClient.calls] == [["c", "b"], ["a"]]
    assert _FakeClient.calls[0][4] == ["limit_bal"] and np.isnan(_FakeClient.calls[0][5][1, 0])
    assert _FakeClient.calls[0][6] == "flag"  # the default rule for applicants the bank does not hold
    assert out.read_text().splitlines() == ["id,score,held_by,status", "c,1,bank,scored", "b,1.1,,flagged",
                                            "a,2,bank,scored"]


@pytest.mark.parametrize("rule, row", [("refuse", "b,,,refused"), ("score-as-missing", "b,1.1,,scored")])
def test_unknown_applicants_refused_or_scored_as_missing(tmp_path, fake, rule, row):
    inp = tmp_path / "applicants.csv"
    inp.write_text("id\nc\nb\n")
    out = tmp_path / "scores.csv"
    commands.score_file(_Cfg(), "job/sbt", inp, out, consent="C-1", purpose="p", unknown=rule)
    assert out.read_text().splitlines()[2] == row
    with pytest.raises(Exception, match="--unknown must be one of"):
        commands.score_file(_Cfg(), "job/sbt", inp, out, consent="C-1", purpose="p", unknown="ignore")


def test_bad_input_names_the_file(tmp_path, fake):
    inp = tmp_path / "applicants.csv"
    inp.write_text("id,x\na,1\na,2\n")
    with pytest.raises(DataError, match=r"applicants\.csv, column 'id': 1 duplicate"):
        commands.score_file(_Cfg(), "job/sbt", inp, tmp_path / "o.csv", consent="C", purpose="p")
