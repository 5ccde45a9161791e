"""Protocols keep what they produce through ``ctx.artifacts`` (issue #19 item 4); the step runner is shared.

* an AST scan: no module under ``fedcredit/protocols`` opens, writes, renames or removes a file, saves
  numpy arrays or plots to a path, or imports ``_io`` or ``fedcredit.report``;
* the file and in-memory artifacts stores behave alike and refuse names that leave the step's directory;
* a job's steps run through the one runner (``fedcredit.party.runner``): a step's ``ctx.aligned`` is what the
  next step gets as ``ctx.data``, and a step run with in-memory artifacts leaves no file behind.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import fedcredit
from fedcredit.artifacts import SCORES_FILE, FileArtifacts, MemoryArtifacts, load_scores
from fedcredit.config import job_from_dict
from fedcredit.data import Table
from fedcredit.party.runner import StepHooks, run_steps
from fedcredit.protocols.checkpoint import Checkpoint
from fedcredit.protocols.registry import STEP_KINDS, StepKind
from fedcredit.transport.memory import MemoryHub

PROTOCOLS = Path(fedcredit.__file__).parent / "protocols"

#: Calls that touch the file system (by attribute or name) and modules a protocol must not import for it.
_FILE_CALLS = {"open", "write_text", "write_bytes", "read_text", "read_bytes", "mkdir", "unlink", "rename",
               "replace", "rmdir", "touch", "save", "savez", "savez_compressed", "savetxt", "load", "loadtxt",
               "to_csv", "to_parquet", "savefig", "write_json_atomic", "fsync", "glob", "is_file", "exists"}
_FILE_MODULES = {"fedcredit._io", "fedcredit.report", "shutil", "tempfile"}
# the tool-facing loaders/savers of a finished step's parts read by path through fedcredit.artifacts only
# (GuestModel.save/load, load_part); the ``model.save(...)``/``Checkpoint.save`` calls are method calls on
# objects, not on np/os/Path, and are allowed by receiver below
_RECEIVERS = {"np", "numpy", "os", "Path", "pathlib", "json", "pd", "pandas", "fig", "plt", "shutil"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PROTOCOLS.parent.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _resolve(node: ast.ImportFrom, module: str, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def file_io_in(source: str, module: str = "fedcredit.protocols.x", is_pkg: bool = False) -> list[str]:
    """What in ``source`` touches files: ``'open()'``, ``'np.save()'``, ``'import fedcredit._io'``..."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id == "open":
                bad.append("open()")
            elif isinstance(f, ast.Attribute) and f.attr in _FILE_CALLS:
                recv = f.value
                name = recv.id if isinstance(recv, ast.Name) else None
                if name in _RECEIVERS or f.attr in {"write_text", "write_bytes", "read_text", "read_bytes", "mkdir",
                                                   "unlink", "to_csv", "to_parquet", "savefig", "write_json_atomic",
                                                   "touch", "rmdir", "is_file", "glob"}:
                    bad.append(f"{name or '<expr>'}.{f.attr}()")
        elif isinstance(node, ast.Import):
            bad += [f"import {a.name}" for a in node.names if a.name in _FILE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, is_pkg)
            if target in _FILE_MODULES:
                bad.append(f"from {target} import ...")
            bad += [f"from {target} import {a.name}" for a in node.names if f"{target}.{a.name}" in _FILE_MODULES]
    return bad


def test_no_protocol_module_touches_files():
    found = {}
    for path in sorted(PROTOCOLS.rglob("*.py")):
        hits = file_io_in(path.read_text(), _module_name(path), path.name == "__init__.py")
        if hits:
            found[str(path.relative_to(PROTOCOLS))] = hits
    assert found == {}, f"protocol modules doing file I/O (use ctx.artifacts): {found}"


@pytest.mark.parametrize("source, expect", [
    ("open('x').read()", ["open()"]),
    ("from pathlib import Path\nPath('a').write_text('b')", ["<expr>.write_text()"]),
    ("import numpy as np\nnp.savez_compressed('f', y=1)", ["np.savez_compressed()"]),
    ("from ...report import save_scores", ["from fedcredit.report import ..."]),
    ("from ... import _io", ["from fedcredit import _io"]),
    ("fig.savefig(path)", ["fig.savefig()"]),
    ("df.to_csv('x.csv')", ["df.to_csv()"]),
    ("ctx.artifacts.save_json('m.json', {})\nmodel.save_bytes('a', b'')", []),
])
def test_the_scan_catches_file_io(source, expect):
    assert file_io_in(source, "fedcredit.protocols.evaluate", is_pkg=True) == expect


@pytest.mark.parametrize("make", [lambda d: FileArtifacts(d), lambda d: MemoryArtifacts()], ids=["file", "memory"])
def test_artifacts_stores_behave_alike(tmp_path, make):
    store = make(tmp_path / "step")
    assert store.load_json("m.json") is None
    store.save_json("m.json", {"a": [1, 2]})
    assert store.load_json("m.json") == {"a": [1, 2]}
    store.save_scores([0, 1, 1], [0.1, 0.7, 0.9], validation=[2])
    ck = Checkpoint(store)
    for r in (1, 2, 3):
        ck.save(r, {"w": np.arange(3.0) * r})
    assert ck.rounds() == [2, 3]
    np.testing.assert_array_equal(Checkpoint(store, resume_round=3).resume()[1]["w"], np.arange(3.0) * 3)
    for bad in ("../x", "a/b", "", "..", ".hidden"):
        with pytest.raises(ValueError, match="plain file name"):
            store.save_bytes(bad, b"x")


def test_file_artifacts_are_private_and_readable_by_the_report(tmp_path):
    store = FileArtifacts(tmp_path / "step")
    store.save_scores([0, 1, 1, 0], [0.1, 0.7, 0.9, 0.4], validation=np.array([False, False, True, True]))
    path = tmp_path / "step" / SCORES_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    y, s, v = load_scores(path)
    assert list(y) == [0, 1, 1, 0] and list(v) == [False, False, True, True]


def _table(party: str, ids) -> Table:
    ids = np.asarray(ids, dtype=object)
    return Table.from_arrays(party, ids, np.arange(len(ids), dtype=float), ["row"])


def _seen(ctx):  # a step that records the rows it got
    ctx.artifacts.save_json("seen.json", {"ids": [str(i) for i in ctx.data.ids]})
    return {"rows": len(ctx.data)}


def test_runner_hands_the_psi_output_table_to_the_next_step(tmp_path, monkeypatch):
    monkeypatch.setitem(STEP_KINDS, "seen", StepKind(f"{__name__}:_seen"))
    spec = job_from_dict({"job": {"name": "j"}, "parties": {"bank": {"role": "guest", "table": "t"},
                                                             "chain": {"role": "host", "table": "t"}},
                          "steps": [{"name": "psi", "kind": "psi"}, {"name": "after", "kind": "seen"}]})
    tables = {"bank": _table("bank", [f"id{i}" for i in range(0, 40)]),
              "chain": _table("chain", [f"id{i}" for i in range(25, 70)])}
    hub = MemoryHub(list(tables))
    stores = {p: {} for p in tables}

    class Hooks(StepHooks):
        def __init__(self, p):
            self.p = p

        def artifacts(self, step):
            return stores[self.p].setdefault(step.name, MemoryArtifacts())

    import threading

    out = {}

    def work(p):
        out[p] = run_steps(spec, job_id="j", party=p, data=tables[p], channel=hub.channel(p).sub("j"), hooks=Hooks(p))

    threads = [threading.Thread(target=work, args=(p,)) for p in tables]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r["step"] for r in out["bank"]] == ["psi", "after"]
    seen = {p: stores[p]["after"].load_json("seen.json")["ids"] for p in tables}
    assert seen["bank"] == seen["chain"] == sorted(f"id{i}" for i in range(25, 40))  # the aligned rows, not all
    assert out["bank"][1]["result"] == {"rows": 15}
    assert not any(tmp_path.iterdir())  # in-memory artifacts: nothing on disk


def test_training_steps_keep_everything_in_their_artifacts(tmp_path, monkeypatch):
    """hetero_lr, scorecard and evaluate with in-memory artifacts: every output is in the store, no file anywhere."""
    from fedcredit.protocols.context import StepContext
    from fedcredit.protocols.registry import get_step
    from fedcredit.transport.memory import run_local

    monkeypatch.chdir(tmp_path)  # a relative path written by a step would land here
    r = np.random.default_rng(5)
    n = 300
    ids = [f"c{i}" for i in range(n)]
    xg, xh = r.normal(size=(n, 2)), r.normal(size=(n, 2))
    y = (r.random(n) < 1 / (1 + np.exp(-(xg[:, 0] + xh[:, 0] - 1)))).astype(int)
    tables = {"bank": Table.from_arrays("bank", ids, xg, ["a", "b"], y=y),
              "gov": Table.from_arrays("gov", ids, xh, ["c", "d"])}
    roles = {"bank": "guest", "gov": "host"}
    hub = MemoryHub(list(roles))
    states = {p: {} for p in roles}
    stores = {p: {} for p in roles}
    steps = [("bin", "binning", {"max_bins": 5, "min_bin_count": 30}),
             ("lr", "hetero_lr", {"mode": "two_party", "features": "woe", "batch_size": 150, "max_epochs": 1,
                                  "validation_fraction": 0.2}),
             ("card", "scorecard", {}), ("eval", "evaluate", {})]
    for name, kind, params in steps:
        def make(p, name=name, kind=kind, params=params):
            def fn(ch):
                store = stores[p].setdefault(name, MemoryArtifacts())
                return get_step(kind)(StepContext(job_id="j", step=name, kind=kind, party=p, roles=roles,
                                                  params=params, channel=ch.sub("j", name), data=tables[p],
                                                  state=states[p], artifacts=store))
            return fn
        run_local({p: make(p) for p in roles}, hub=hub, timeout=300)
    assert set(stores["bank"]["lr"].files) == {"lr_part.json"} == set(stores["gov"]["lr"].files)
    assert set(stores["bank"]["card"].files) == {"scorecard.csv", "scorecard.md"}
    assert set(stores["bank"]["eval"].files) == {"roc.png", "ks.png", SCORES_FILE}
    assert stores["bank"]["eval"].files["roc.png"].startswith(b"\x89PNG")
    assert stores["gov"]["eval"].files == {}  # scores and plots stay with the label holder
    assert list(tmp_path.iterdir()) == []
