"""The layer order of DESIGN.md §3 holds for every module, there are no import cycles, and modules stay small.

Every ``fedcredit`` module belongs to a layer (its top-level package or module under ``fedcredit/``); an import
may only point at the same or a lower layer, including imports inside functions (a lazy import is still an
arrow back up). The cycle check runs on the module graph with every import counted, so two modules of one
package that import each other are a cycle too.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

from test_protos import PKG, ROOT, _imports, _module_name, _sources

#: Layer of each top-level name under fedcredit/, low -> high. Lower layers never import higher ones.
RANK: dict[str, int] = {
    # foundations: no fedcredit imports beyond each other
    "errors": 0, "ids": 0, "_validation": 0, "jsonlimits": 0, "_io": 0, "_proto": 0, "audit": 0, "_executor": 0, "artifacts": 0,
    # party-agnostic math and cryptography
    "models": 1, "crypto": 1,
    # where heavy work runs (pools, Dask) over crypto's vectors
    "compute": 2,
    # the Channel interface and its gRPC/in-memory implementations; certificates
    "transport": 3, "certs": 3,
    # a party's tables and the shipped data sets
    "data": 4, "_columns": 4, "_tablefiles": 4, "datasets": 4,
    # one folder per protocol
    "protocols": 5,
    # party.toml / job.toml, typed step parameters
    "config": 6,
    # run report, model serving
    "report": 7, "serving": 7,
    # the party process
    "party": 8,
    # the Python API, launchers, baselines, demo, scaffolding, test helpers
    "api": 9, "progress": 9, "own_party": 9, "launcher": 9, "baselines": 9, "demo": 9, "scaffold": 9, "testing": 9,
    # the command line
    "cli": 10,
    # the package facade (lazy exports)
    "__init__": 11, "__main__": 11,
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _type_only_lines(path: pathlib.Path) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks: annotations only, never imported at run time."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _edges() -> dict[str, set[tuple[int, str]]]:
    """module -> {(line, imported fedcredit module)} for every fedcredit module (generated code aside)."""
    known = {_module_name(p) for p in _sources()}
    out: dict[str, set[tuple[int, str]]] = {}
    for path in _sources():
        mod = _module_name(path)
        deps = set()
        type_only = _type_only_lines(path)
        for line, name in _imports(path):
            if line in type_only:
                continue
            if name == "fedcredit.__version__":
                continue  # the facade always runs before any submodule: reading its version adds no arrow
            if name.startswith("fedcredit._proto."):
                name = "fedcredit._proto"  # generated code (its own rule: tests/test_protos.py)
            # `from pkg import name` is recorded as pkg.name: use the longest known module prefix
            while name and name not in known and name != "fedcredit._proto":
                name = name.rpartition(".")[0]
            if name.startswith("fedcredit") and name != mod:
                deps.add((line, name))
        out[mod] = deps
    return out


def test_every_top_level_module_has_a_layer():
    tops = {_layer(_module_name(p)) for p in _sources()}
    assert not tops - set(RANK), f"add these to RANK in {pathlib.Path(__file__).name}: {sorted(tops - set(RANK))}"


def _upward(edges) -> list[str]:
    bad = []
    for mod, deps in edges.items():
        src = _layer(mod)
        for line, dep in deps:
            dst = _layer(dep)
            if dep == "fedcredit" and src != "__init__":
                bad.append(f"{mod}:{line} imports the package facade `fedcredit` (import the module itself)")
            elif RANK.get(dst, 99) > RANK.get(src, -1):
                bad.append(f"{mod}:{line} imports {dep} ({src} is below {dst} in DESIGN.md §3)")
    return sorted(bad)


def test_imports_point_down_the_layers():
    assert not _upward(_edges())


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_no_import_cycles():
    graph = {m: {d for _, d in deps} for m, deps in _edges().items()}
    # a package's __init__ re-exporting its submodules is not a cycle with them unless a submodule
    # imports the __init__'s own names back: drop the __init__ -> own submodule arrows only
    for mod, deps in graph.items():
        graph[mod] = {d for d in deps if not d.startswith(mod + ".")}
    assert not _cycles(graph)


#: The largest a hand-written module may grow (issue #19: "no module over ~500 lines").
MAX_LINES = 520


def test_no_module_is_over_the_size_limit():
    big = {str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"split these by responsibility: {big}"


@pytest.mark.parametrize(
    "source, expect",
    [
        ({"fedcredit.models.a": {(1, "fedcredit.protocols.b")}, "fedcredit.protocols.b": set()}, "upward"),
        ({"fedcredit.protocols.b": {(1, "fedcredit.models.a")}, "fedcredit.models.a": set()}, None),
        ({"fedcredit.crypto.a": {(3, "fedcredit")}}, "upward"),
        ({"fedcredit.models.a": {(1, "fedcredit.models.b")}, "fedcredit.models.b": {(1, "fedcredit.models.a")}},
         "cycle"),
    ],
)
def test_the_checks_can_fail(source, expect):
    up = _upward({m: d for m, d in source.items()})
    cyc = _cycles({m: {d for _, d in deps} for m, deps in source.items()})
    assert bool(up) == (expect == "upward") and bool(cyc) == (expect == "cycle"), (up, cyc)
