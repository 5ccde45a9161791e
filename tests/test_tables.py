"""Issue #14: typed tables (categorical columns), string labels with pos_label, errors safe to send."""

import numpy as np
import pytest

from fedcredit.config import load_party_config
from fedcredit.data import TableError, load_table
from fedcredit.errors import ConfigError, DataError


def _write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_text_column_is_categorical_with_codes_and_names(tmp_path):
    p = _write(tmp_path, "id,edu,region,x\n1,university,3,1.5\n2,graduate school,10,\n3,NA,2,2\n4,university,null,3\n")
    t = load_table(p, party="p", categorical=["region"])
    assert t.categories == {"edu": ("graduate school", "university"), "region": ("2", "3", "10")}
    assert t.X.dtype == np.float64  # columnar: codes in the float matrix, names once per column
    assert t.X[:, 0].tolist()[:2] == [1.0, 0.0] and np.isnan(t.X[2, 0])
    assert t.X[:, 1].tolist()[:3] == [1.0, 2.0, 0.0] and np.isnan(t.X[3, 1])  # numeric order: 2 < 3 < 10
    assert np.isnan(t.X[1, 2]) and not t.is_categorical("x")
    assert t.is_categorical("p.edu") and t.category_names("p.region") == ("2", "3", "10")
    assert t.categorical_features == ("p.edu", "p.region")
    s = t.take([3, 0]).select(["p.edu", "x"])
    assert s.categories == {"edu": ("graduate school", "university")} and s.X[:, 0].tolist() == [1.0, 1.0]


def test_numeric_column_stays_numeric_unless_forced(tmp_path):
    p = _write(tmp_path, "id,a\n1,1\n2,2.0\n3,1.0\n")
    assert load_table(p, party="p").categories == {}
    t = load_table(p, party="p", categorical=["a"])
    assert t.categories == {"a": ("1", "2")} and t.X[:, 0].tolist() == [0.0, 1.0, 0.0]


def test_categorical_name_not_in_table_names_file_and_column(tmp_path):
    p = _write(tmp_path, "id,a\n1,1\n")
    with pytest.raises(TableError, match=r"t\.csv: categorical column\(s\) 'regoin' not in the table") as ei:
        load_table(p, party="p", categorical=["regoin"])
    assert ei.value.column == "regoin" and str(tmp_path) not in ei.value.public


@pytest.mark.parametrize("pos, y", [("bad", [1, 0, 1]), ("good", [0, 1, 0])])
def test_string_label_with_pos_label(tmp_path, pos, y):
    p = _write(tmp_path, "id,a,y\n1,1,bad\n2,2, good\n3,3,bad\n")
    assert load_table(p, party="p", label_column="y", pos_label=pos).y.tolist() == y


def test_numeric_label_with_pos_label(tmp_path):
    p = _write(tmp_path, "id,a,y\n1,1,2\n2,2,1\n3,3,2.0\n")
    assert load_table(p, party="p", label_column="y", pos_label=2).y.tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "text, pos, match, public",
    [
        ("id,a,y\n1,1,bad\n2,2,good\n", None, r"found values bad, good; set pos_label", "no pos_label is set"),
        ("id,a,y\n1,1,bad\n2,2,good\n", "default", r"pos_label 'default' is not a value of the label \(found bad, good\)",
         "pos_label is not one of"),
        ("id,a,y\n1,1,bad\n2,2,bad\n", "bad", r"single class \(bad\)", "single class"),
        ("id,a,y\n1,1,a\n2,2,b\n3,3,c\n", "a", r"must have two values, found 3: a, b, c", "found 3"),
        ("id,a,y\n1,1,a\n2,2,\n", "a", r"1 missing label", "1 missing label"),
    ],
)
def test_bad_labels_list_values_locally_but_not_publicly(tmp_path, text, pos, match, public):
    p = _write(tmp_path, text)
    with pytest.raises(TableError, match=match) as ei:
        load_table(p, party="p", label_column="y", pos_label=pos)
    assert public in ei.value.public
    for raw in ("bad", "good", "'a'", "csv", str(tmp_path)):
        assert raw not in ei.value.public.replace("label column 'y'", "")


def test_zero_one_label_still_works_without_pos_label(tmp_path):
    p = _write(tmp_path, "id,a,y\n1,1,0\n2,2,1\n")
    assert load_table(p, party="p", label_column="y").y.tolist() == [0, 1]


def test_parquet_categorical(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "c": ["x", None, "y"], "r": [3, 1, None],
                             "y": ["bad", "good", "good"]}), p)
    t = load_table(p, party="p", label_column="y", categorical=["r"], pos_label="bad")
    assert t.categories == {"c": ("x", "y"), "r": ("1", "3")} and t.y.tolist() == [1, 0, 0]
    assert t.X[0].tolist() == [0.0, 1.0] and np.isnan(t.X[1, 0]) and np.isnan(t.X[2, 1])


def _party_toml(tmp_path, table_lines):
    (tmp_path / "t.csv").write_text("id,y\n1,0\n")
    p = tmp_path / "bank.toml"
    p.write_text("\n".join(['[party]', 'name = "bank"', 'listen = "127.0.0.1:0"', 'state_dir = "st"',
                            'insecure = true', '[tables.credit]', 'path = "t.csv"', *table_lines]) + "\n")
    return p


def test_config_table_keys(tmp_path):
    cfg = load_party_config(_party_toml(tmp_path, ['label_column = "y"', 'pos_label = "bad"',
                                                   'categorical = ["region"]', 'aligned_by = "apps-2024"']))
    t = cfg.tables["credit"]
    assert (t.pos_label, t.categorical, t.aligned_by) == ("bad", ("region",), "apps-2024")
    with pytest.raises(ConfigError, match=r"pos_label: is only used with a label_column"):
        load_party_config(_party_toml(tmp_path, ['pos_label = 1']))
    with pytest.raises(ConfigError, match=r"pos_label: must be a string or a number"):
        load_party_config(_party_toml(tmp_path, ['label_column = "y"', 'pos_label = true']))


def test_party_health_checks_the_data_files(tmp_path, capsys):
    from fedcredit.cli import ExitCode, main

    (tmp_path / "t.csv").write_text("id,y,a\n1,good,x\n2,bad,y\n")
    cfg = _party_toml(tmp_path, ['label_column = "y"', 'categorical = ["regoin"]'])
    (tmp_path / "t.csv").write_text("id,y,a\n1,good,x\n2,bad,y\n")  # _party_toml wrote a 0/1 table
    code = main(["party", "health", str(cfg), "--timeout", "0.3"])
    out = capsys.readouterr().out
    assert code != ExitCode.OK
    assert "table 'credit': " in out and "categorical column(s) 'regoin' not in the table" in out
    cfg = _party_toml(tmp_path, ['label_column = "y"'])
    (tmp_path / "t.csv").write_text("id,y,a\n1,good,x\n2,bad,y\n")
    main(["party", "health", str(cfg), "--timeout", "0.3"])
    assert "set pos_label" in capsys.readouterr().out


def test_check_steps_lists_every_problem():
    from fedcredit.config import job_from_dict
    from fedcredit.party.checks import check_steps

    steps = [{"kind": "scorecard"}, {"kind": "hetero_lr", "params": {"features": "woe"}},
             {"kind": "secureboost", "params": {"n_trees": 0}}, {"kind": "psi"}]
    d = {"job": {"name": "j"}, "parties": {"a": {"role": "guest"}, "b": {"role": "host"}}, "steps": steps}
    with pytest.raises(ConfigError) as info:  # parameters: refused when the job is loaded (issue #19)
        job_from_dict(d)
    assert any("steps[2].params" in p and "'n_trees'" in p for p in info.value.problems)
    steps[2]["params"] = {"n_trees": 1}
    problems = check_steps(job_from_dict(d))
    assert any("'scorecard' (scorecard) needs a hetero_lr step" in p for p in problems)
    assert any("uses WOE features" in p for p in problems)
    assert any("step 'psi' (psi) comes after a step that already used the rows" in p for p in problems)


def test_crossing_text_drops_values_and_paths():
    from fedcredit.party.worker import crossing_text as _crossing_text

    exc = TableError("/srv/bank/data/t.csv, line 7, column 'a': value 'SECRET' ...", "column 'a': bad (x)", "a")
    assert _crossing_text(exc, "bank", []) == "column 'a': bad (x) (TableError)"
    assert _crossing_text(ValueError("could not convert 'SECRET'"), "bank", []) == \
        "ValueError (details in bank's log)"
    t = _crossing_text(DataError("/srv/bank/data/t.csv: the guest needs a label column"), "bank", ["/srv/bank"])
    assert "/srv" not in t and "needs a label column" in t


def _align_run(ids_a, ids_b, name_a="apps", name_b="apps"):
    import threading

    from fedcredit.config import job_from_dict
    from fedcredit.data import Table
    from fedcredit.party.alignment import verify_aligned
    from fedcredit.transport.memory import MemoryHub

    spec = job_from_dict({"job": {"name": "j"}, "parties": {"a": {"role": "guest", "table": "t"},
                                                            "b": {"role": "host", "table": "t"}},
                          "steps": [{"kind": "binning"}]})
    hub = MemoryHub(["a", "b"])
    chans = {p: hub.channel(p, default_timeout=10) for p in ("a", "b")}
    errors = {}

    def run(p, ids, name):
        try:
            verify_aligned(chans[p].sub("_align"), spec, p, Table.from_arrays(p, ids, [[0]] * len(ids), ["x"]), name)
        except Exception as exc:  # noqa: BLE001
            errors[p] = exc

    ts = [threading.Thread(target=run, args=("a", ids_a, name_a)), threading.Thread(target=run, args=("b", ids_b, name_b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors, b"".join(c[3] for c in hub.captured)


def test_alignment_digest_detects_order_ids_and_name_and_sends_no_id():
    ids = [f"cust-{i:04d}" for i in range(50)]
    errors, wire = _align_run(ids, list(ids))
    assert errors == {}
    for i in ids:  # only a key, a keyed digest and a verdict cross
        assert i.encode() not in wire
    for other, name in ((ids[::-1], "apps"), (ids[:-1] + ["cust-9999"], "apps"), (ids, "other")):
        errors, _ = _align_run(ids, other, name_b=name)
        assert set(errors) == {"a", "b"}
        assert all("declared aligned (aligned_by) are not" in str(e) and "'b'" in str(e) for e in errors.values())


def test_scoring_recodes_categories_to_the_training_lists(tmp_path):
    from fedcredit.data import recode_categories

    p = _write(tmp_path, "id,edu\n1,university\n2,arts\n3,graduate school\n4,\n")
    t = load_table(p, party="p")  # the file gained "arts" since training: every code would shift
    assert t.categories["edu"] == ("arts", "graduate school", "university")
    r = recode_categories(t, {"edu": ("graduate school", "university")})
    assert r.categories["edu"] == ("graduate school", "university")
    assert r.X[0, 0] == 1.0 and np.isnan(r.X[1, 0]) and r.X[2, 0] == 0.0 and np.isnan(r.X[3, 0])  # unseen -> missing
    assert recode_categories(t, {}) is t


def test_step_notes_say_secureboost_ignores_select():
    from fedcredit.config import job_from_dict
    from fedcredit.party.checks import step_notes

    job = job_from_dict({"job": {"name": "j"}, "parties": {"a": {"role": "guest"}, "b": {"role": "host"}},
                         "steps": [{"kind": "psi"}, {"kind": "binning"}, {"kind": "select"}, {"kind": "secureboost"}]})
    assert any("ignores the features 'select' kept" in n for n in step_notes(job))


def test_native_categorical_splits_within_0005_auc_of_hgb_categorical():
    """SecureBoost's native category-subset splits against sklearn's native categorical splits on credit3 with
    gov's SEX/EDUCATION/MARRIAGE as text (coded like load_table)."""
    from conftest import data_path
    from sklearn.ensemble import HistGradientBoostingClassifier

    from fedcredit.baselines import joined_table
    from fedcredit.models import metrics
    from fedcredit.models.tree.gbdt import GBDTReference, validation_split
    from fedcredit.protocols.secureboost.spec import GH_BITS, MIN_NODE_ROWS

    X, y, names = joined_table(data_path("credit3", "bank.csv").parents[1], ["bank", "chain", "gov"])
    text = {"gov.sex": {1: "male", 2: "female"},
            "gov.education": {1: "graduate school", 2: "university", 3: "high school", 4: "others", 5: "unknown",
                              6: "unknown"},
            "gov.marriage": {1: "married", 2: "single", 3: "others"}}
    cat = np.zeros(X.shape[1], dtype=bool)
    for f, m in text.items():
        j = names.index(f)
        cats = sorted(set(m.values()))
        X[:, j] = [cats.index(m[int(v)]) if int(v) in m else np.nan for v in X[:, j]]
        cat[j] = True
    train, valid = validation_split(len(y), 0.2, 0)
    ref = GBDTReference(n_trees=5, max_depth=3, learning_rate=0.3, max_bins=32, min_node_rows=MIN_NODE_ROWS,
                        gh_bits=GH_BITS, categorical_features=cat).fit(X[train], y[train])
    hgb = HistGradientBoostingClassifier(max_iter=5, max_depth=3, learning_rate=0.3, max_bins=31, l2_regularization=1.0,
                                         early_stopping=False, categorical_features=cat, random_state=0)
    hgb.fit(X[train], y[train])
    ours = metrics.auc(y[valid], ref.predict_proba(X[valid])[:, 1])
    theirs = metrics.auc(y[valid], hgb.predict_proba(X[valid])[:, 1])
    assert abs(ours - theirs) < 0.005, (ours, theirs)


def test_check_steps_says_how_to_run_lr_with_several_hosts():
    from fedcredit.config import job_from_dict
    from fedcredit.party.checks import check_steps

    parties = {"a": {"role": "guest"}, "b": {"role": "host"}, "c": {"role": "host"}}
    job = job_from_dict({"job": {"name": "j"}, "parties": parties,
                         "steps": [{"kind": "psi"}, {"kind": "hetero_lr", "params": {"mode": "two_party"}}]})
    assert any('for 2 hosts use mode = "coordinated" and add a party with role = "arbiter"' in p
               for p in check_steps(job))
    job = job_from_dict({"job": {"name": "j"}, "parties": parties,
                         "steps": [{"kind": "psi"}, {"kind": "hetero_lr", "params": {"mode": "coordinated"}}]})
    assert any('needs exactly one party with role = "arbiter"' in p for p in check_steps(job))


def test_high_cardinality_text_column_is_an_error_unless_declared(tmp_path):
    from fedcredit.data import MAX_AUTO_CATEGORIES

    n = MAX_AUTO_CATEGORIES + 5
    rows = "".join(f"{i},\"{i},000\"\n" for i in range(n))  # numbers with a thousands separator
    p = _write(tmp_path, "id,amount\n" + rows)
    with pytest.raises(TableError, match=r"line 2, column 'amount': not numeric \('0,000'\) and 261 distinct") as ei:
        load_table(p, party="p")
    assert ei.value.public == "column 'amount' is not numeric and has 261 distinct values: not declared categorical"
    assert len(load_table(p, party="p", categorical=["amount"]).categories["amount"]) == n
