"""Regenerate fedcredit/_proto from protos/ (run after editing any .proto).

Generated code is committed so that ``pip install`` needs no code generator;
``tests/test_protos.py`` fails when the committed code is stale.

Usage: python scripts/gen_protos.py
"""

from __future__ import annotations

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "fedcredit" / "_proto"


def proto_files() -> list[pathlib.Path]:
    return sorted(PROTO_ROOT.glob("fedcredit/v1/*.proto"))


def generate(out_dir: pathlib.Path) -> None:
    from grpc_tools import protoc
    import grpc_tools

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    gen = out_dir / "_gen"
    gen.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={gen}",
        f"--pyi_out={gen}",
        f"--grpc_python_out={gen}",
        *[str(p) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Flatten fedcredit/v1/x_pb2.py into out_dir/x_pb2.py with package-relative imports.
    for src in sorted((gen / "fedcredit" / "v1").glob("*")):
        text = src.read_text()
        text = re.sub(r"^from fedcredit\.v1 import (\w+) as", r"from . import \1 as", text, flags=re.M)
        (out_dir / src.name).write_text(text)
    for p in sorted(gen.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    gen.rmdir()
    (out_dir / "__init__.py").write_text('"""Generated protobuf code. Do not edit: run scripts/gen_protos.py."""\n')


if __name__ == "__main__":
    generate(OUT)
    print(f"generated {len(proto_files())} proto files into {OUT.relative_to(ROOT)}", file=sys.stderr)
