"""Generated protobuf code is fresh, and the import direction of DESIGN.md §3 holds."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest
from google.protobuf import descriptor_pb2

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "fedcredit"
PROTOS = sorted((ROOT / "protos").glob("fedcredit/v1/*.proto"))


# --------------------------------------------------------------------------- staleness


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """Compile protos/ to a FileDescriptorSet with grpc_tools (no source info: compares what the modules embed)."""
    grpc_tools = pytest.importorskip("grpc_tools")
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("fds") / "all.pb"
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(
        ["protoc", f"-I{ROOT / 'protos'}", f"-I{include}", f"--descriptor_set_out={out}", *map(str, PROTOS)]
    )
    assert rc == 0, "protoc failed on protos/"
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {f.name: f for f in fds.file}


def _normalized(fd: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """Drop what only some protoc versions/outputs fill in (json_name), keep everything that shapes the wire."""
    fd = descriptor_pb2.FileDescriptorProto.FromString(fd.SerializeToString())

    def strip(msgs):
        for m in msgs:
            for f in list(m.field) + list(m.extension):
                f.ClearField("json_name")
            strip(m.nested_type)

    strip(fd.message_type)
    for f in fd.extension:
        f.ClearField("json_name")
    return fd


@pytest.mark.parametrize("proto", [p.name for p in PROTOS])
def test_generated_code_is_fresh(compiled, proto):
    name = f"fedcredit/v1/{proto}"
    module = importlib.import_module(f"fedcredit._proto.{proto[:-len('.proto')]}_pb2")
    committed = _normalized(descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    fresh = _normalized(compiled[name])
    assert committed == fresh, f"fedcredit/_proto is stale for {name}: run python scripts/gen_protos.py"


def test_every_generated_module_has_a_proto():
    protos = {p.stem for p in PROTOS}
    generated = {p.name.split("_pb2")[0] for p in (PKG / "_proto").glob("*_pb2*.py*")}
    assert generated == protos, "orphaned or missing generated files in fedcredit/_proto: run scripts/gen_protos.py"
    for stem in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (PKG / "_proto" / f"{stem}{suffix}").exists()


# --------------------------------------------------------------------------- import direction


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative imports resolved."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # record base.name (not base alone): `from .. import transport` is fedcredit.transport,
            # `from .._proto import control_pb2_grpc` is fedcredit._proto.control_pb2_grpc
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def _sources(under: str = "") -> list[pathlib.Path]:
    return sorted(p for p in (PKG / under).rglob("*.py") if "_proto" not in p.relative_to(PKG).parts)


def _violations(files, forbidden: tuple[str, ...], allow=lambda path, name: False, text: str | None = None) -> list[str]:
    bad = []
    for path in files:
        for line, name in _imports(path, text):
            if any(name == f or name.startswith(f + ".") for f in forbidden) and not allow(path, name):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return sorted(set(bad))


def _party_service_stubs(path: pathlib.Path, name: str) -> bool:
    # fedcredit/party/ hosts the Control and Health servicers, so it may import their
    # generated stubs (agreed with the party engineer); everything else goes through transport/.
    rel = path.relative_to(PKG).parts
    return rel[0] == "party" and name.split(".")[-1].startswith(("control_pb2", "health_pb2"))


def test_only_transport_imports_generated_code():
    files = [p for p in _sources() if p.relative_to(PKG).parts[0] != "transport"]
    assert not _violations(files, ("fedcredit._proto",), _party_service_stubs)


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("models", ("fedcredit.protocols", "fedcredit.transport", "fedcredit.party", "fedcredit.cli")),
        ("crypto", ("fedcredit.compute", "fedcredit.protocols", "fedcredit.transport", "fedcredit.party", "fedcredit.cli")),
    ],
)
def test_lower_layers_do_not_import_higher(layer, forbidden):
    assert (PKG / layer).is_dir()
    assert not _violations(_sources(layer), forbidden)


@pytest.mark.parametrize(
    "where, source, expect_bad",
    [
        ("models", "from .._proto import payload_pb2\n", True),
        ("models", "from .. import _proto\n", True),
        ("models", "import fedcredit._proto.federation_pb2 as pb\n", True),
        ("models/tree", "from ...protocols.context import StepContext\n", True),
        ("models/tree", "from ... import protocols\n", True),
        ("models", "from ..errors import ConfigError\n", False),
        ("models/tree", "from .binning import Bins\n", False),
        ("party", "from .._proto import control_pb2_grpc\n", False),
        ("party", "from .._proto import federation_pb2\n", True),
    ],
)
def test_checker_catches_relative_and_absolute_imports(where, source, expect_bad):
    """The AST walk itself must be able to fail: analyse a planted source as if it lived in the package."""
    probe = PKG / where / "_probe.py"
    found = _violations([probe], ("fedcredit._proto", "fedcredit.protocols"), _party_service_stubs, text=source)
    assert bool(found) == expect_bad, found
