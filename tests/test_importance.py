"""SecureBoost feature importance per party: what the guest and each host see, in the model parts and the report."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from conftest import data_path

from fedcredit.artifacts import FileArtifacts
from fedcredit.config import load_party_config
from fedcredit.errors import ConfigError, ProtocolError
from fedcredit.models.tree import GBDTReference, feature_importance
from fedcredit.protocols.secureboost import VerticalSecureBoost, spec
from fedcredit.protocols.secureboost.host import published_names
from fedcredit.protocols.secureboost.model import GuestModel, HostModel
from fedcredit.report import render_html
from fedcredit.testing import small_keypair
from fedcredit.transport.memory import MemoryHub, run_local


@pytest.fixture(scope="module")
def keypair():
    return small_keypair(1024)


def _credit3(n=2000):
    import pandas as pd

    bank = pd.read_csv(data_path("credit3", "bank.csv"))
    chain = pd.read_csv(data_path("credit3", "chain.csv"))
    d = bank.merge(chain, on="id").sort_values("id").iloc[:n]
    return (d[bank.columns[2:]].to_numpy(np.float64), d[chain.columns[1:]].to_numpy(np.float64),
            d["default_next_month"].to_numpy(), [f"bank.{c}" for c in bank.columns[2:]],
            [f"chain.{c}" for c in chain.columns[1:]])


@pytest.mark.parametrize("share", [False, True, ["bill_amt1", "chain.pay_amt1"]])
def test_guest_importance_names_host_features_per_host_policy(keypair, share, tmp_path):
    Xg, Xh, y, gnames, hnames = _credit3()
    kw = dict(n_trees=3, max_depth=3)
    hub = MemoryHub(["bank", "chain"])
    res = run_local({
        "bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, y, keypair=keypair, feature_names=gnames,
                                                         artifacts=FileArtifacts(tmp_path / "bank")),
        "chain": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xh, guest="bank", feature_names=hnames,
                                                          share_feature_names=share,
                                                          artifacts=FileArtifacts(tmp_path / "chain")),
    }, hub=hub, timeout=300)
    fed = res["bank"].model_
    imp = fed.importance
    # against the reference on the joined table: the same per-feature counts and gains
    ref = GBDTReference(**kw, min_node_rows=spec.MIN_NODE_ROWS, gh_bits=spec.GH_BITS).fit(np.hstack([Xg, Xh]), y)
    ref_imp = {d["feature"]: (d["splits"], d["gain"]) for d in ref.feature_importance()}
    off = {"bank": 0, "chain": Xg.shape[1]}
    assert {off[d["party"]] + d["feature"]: (d["splits"], d["gain"]) for d in imp} == ref_imp
    assert [d["gain"] for d in imp] == sorted((d["gain"] for d in imp), reverse=True)
    host_rows = [d for d in imp if d["party"] == "chain"]
    assert host_rows, "the host should win some splits"
    shared = {True: set(hnames), False: set()}.get(share) if not isinstance(share, list) else \
        {"chain.bill_amt1", "chain.pay_amt1"}
    for d in host_rows:
        real = hnames[d["feature"]]
        assert d["name"] == (real if real in shared else f"chain:feature#{d['feature']}")
    for d in imp:
        if d["party"] == "bank":
            assert d["name"] == gnames[d["feature"]]
    # unpublished names never reach the guest
    to_guest = b"".join(p for s, r, t, p in hub.captured if r == "bank")
    for name in hnames:
        assert (name.encode() in to_guest) == (name in shared), name
    # both model parts carry it: the guest's (every party's features) and the host's (its own split counts)
    saved = GuestModel.load(tmp_path / "bank" / "sbt_guest.json")
    assert saved.importance == imp and set(saved.host_feature_names) == {"chain"}
    hm = res["chain"].model_
    counts = {d["feature"]: d["splits"] for d in hm.importance()}
    assert counts == {hnames[j]: sum(d["splits"] for d in host_rows if d["feature"] == j) for j in range(len(hnames))}
    assert HostModel.load(tmp_path / "chain" / "sbt_host.json").importance() == hm.importance()
    assert res["chain"].result_["importance"] == hm.importance()


def test_published_names():
    names = ["chain.a", "chain.b"]
    assert published_names(names, False) == ["", ""]
    assert published_names(names, True) == names
    assert published_names(names, ["b"]) == ["", "chain.b"]


@pytest.mark.parametrize("names, match", [(["ok", "bad\nname"], "printable"), (["x" * 200, ""], "printable"),
                                          (["only-one"], "printable")])
def test_guest_refuses_bad_published_names(names, match):
    msg = {"n_bins_non_missing": np.array([5, 5]), "resume_trees": 0, "monotone": np.zeros(2, np.int8),
           "feature_names": names}
    with pytest.raises(ProtocolError, match=match):
        spec.check_setup_reply(msg, "chain", 32)


def test_importance_helper_labels_unnamed_features():
    from fedcredit.models.tree.grower import Node

    nodes = [Node(0, 0, 10, 0, 1, 0, is_leaf=False, party="bank", feature=1, gain=2.0, left=1, right=2),
             Node(1, 1, 5, 0, 1, 0, is_leaf=False, party="chain", feature=3, gain=5.0, left=3, right=4),
             Node(2, 1, 5, 0, 1, 0), Node(3, 2, 2, 0, 1, 0), Node(4, 2, 3, 0, 1, 0)]
    out = feature_importance([nodes, nodes], {"bank": ["a", "b"]})
    assert out == [{"party": "chain", "feature": 3, "name": "chain:feature#3", "splits": 2, "gain": 10.0},
                   {"party": "bank", "feature": 1, "name": "b", "splits": 2, "gain": 4.0}]


def _report(role, party, imp):
    return {"job_id": "j", "name": "demo", "party": party, "state": "succeeded", "reason": "", "written": 1.0,
            "effective_config": {"party": party, "role": role, "initiator": "bank"},
            "steps": [{"step": "sbt", "kind": "secureboost", "state": "succeeded", "seconds": 1.0,
                       "result": {"importance": imp}, "traffic": None}]}


def test_report_has_importance_chart(tmp_path):
    guest_imp = [{"party": "bank", "feature": 1, "name": "bank.pay_0", "splits": 4, "gain": 12.5},
                 {"party": "chain", "feature": 0, "name": "chain:feature#0", "splits": 2, "gain": 3.0}]
    text = render_html(_report("guest", "bank", guest_imp), job_dir=tmp_path)
    assert "Feature importance" in text and "chain:feature#0" in text and "bank.pay_0" in text
    assert len(re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)) == 1
    host = render_html(_report("host", "chain", [{"feature": "chain.bill_amt1", "splits": 2},
                                                 {"feature": "chain.x", "splits": 0}]), job_dir=tmp_path)
    assert "<td>chain.bill_amt1</td>" in host and "<td>chain.x</td>" not in host and "total gain" not in host
    png = base64.b64decode(re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", host)[0])
    assert png.startswith(b"\x89PNG")


def _party_toml(tmp_path, extra_table="", extra_policy=""):
    (tmp_path / "t.csv").write_text("id,y,a\n1,0,1\n")
    p = tmp_path / "p.toml"
    p.write_text(f"""
[party]
name = "chain"
listen = "127.0.0.1:0"
state_dir = "st"
insecure = true
[peers]
bank = "127.0.0.1:7301"
[tables.credit]
path = "t.csv"
{extra_table}
[policy]
proposers = ["bank"]
{extra_policy}
""")
    return p


def test_config_share_names_and_monotone(tmp_path):
    cfg = load_party_config(_party_toml(tmp_path, "monotone = { a = 1 }", 'share_feature_names = ["a"]'))
    assert dict(cfg.tables["credit"].monotone) == {"a": 1} and cfg.policy.share_feature_names == ("a",)
    assert load_party_config(_party_toml(tmp_path)).policy.share_feature_names is False
    with pytest.raises(ConfigError, match="monotone.a.*must be 1"):
        load_party_config(_party_toml(tmp_path, "monotone = { a = 2 }"))
    with pytest.raises(ConfigError, match="share_feature_names"):
        load_party_config(_party_toml(tmp_path, "", 'share_feature_names = "yes"'))


def test_guest_refuses_a_host_publishing_unprintable_names_in_a_run(keypair):
    """Names from a peer reach reports and logs: a host sending a control character fails the run at SETUP_REPLY."""
    Xg, Xh, y, gnames, hnames = _credit3(400)
    bad = ["ok"] * (len(hnames) - 1) + ["<script>\x1b[2J"]

    def host(ch):
        h = VerticalSecureBoost(n_trees=1, max_depth=2)
        import fedcredit.protocols.secureboost.host as host_mod

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(host_mod, "published_names", lambda names, share: bad)
            return h.fit(ch, Xh, guest="bank", feature_names=hnames)

    with pytest.raises(Exception) as exc:
        run_local({"bank": lambda ch: VerticalSecureBoost(n_trees=1, max_depth=2).fit(ch, Xg, y, keypair=keypair),
                   "chain": host}, timeout=60)
    assert "feature_names must be one printable string" in str(exc.value)
