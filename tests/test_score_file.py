"""`fedcredit score` file handling: input read with the data loader, output in input order."""

import numpy as np
import pytest

from fedcredit.errors import DataError
from fedcredit.serving import commands


class _Cfg:
    name = "bank"


class _FakeClient:
    calls = []

    def __init__(self, channel, name, timeout):
        pass

    def score(self, model_id, ids, *, consent_id, purpose, guest_X, feature_names):
        _FakeClient.calls.append((model_id, list(ids), consent_id, purpose, feature_names, guest_X))
        return np.arange(len(ids), dtype=float) / 10 + len(_FakeClient.calls), None


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
    assert out.read_text().splitlines() == ["id,score", "c,1", "b,1.1", "a,2"]


def test_bad_input_names_the_file(tmp_path, fake):
    inp = tmp_path / "applicants.csv"
    inp.write_text("id,x\na,1\na,2\n")
    with pytest.raises(DataError, match=r"applicants\.csv, column 'id': 1 duplicate"):
        commands.score_file(_Cfg(), "job/sbt", inp, tmp_path / "o.csv", consent="C", purpose="p")
