"""``fedcredit model approve-export|export``: a merged plaintext model, only after every party's approval.

Each approval is recorded in that party's audit log; the guest's party releases the merged
model JSON, which :func:`convert_export` writes as JSON, PMML or ONNX on the operator's side.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ._common import governance_client, load_party
from ._console import out
from .exit_codes import ExitCode

__all__ = ["add_commands", "cmd_approve_export", "cmd_export", "convert_export"]


def cmd_approve_export(args) -> int:
    cfg = load_party(args.party)
    g, ch = governance_client(cfg)
    try:
        out(g.approve_export(args.model, args.requester, args.note))
    finally:
        ch.close()
    return ExitCode.OK


def convert_export(text: str, fmt: str, *, model_id: str = "", kind: str = "auto", scale: dict | None = None) -> bytes:
    """The merged model JSON ``text`` (what the guest's party releases) in ``fmt``: json, pmml or onnx."""
    import json

    from ..models.export import to_onnx, to_pmml

    if fmt == "json":
        return text.encode("utf-8")
    model = json.loads(text)
    if fmt == "pmml":
        return to_pmml(model, kind=kind, scale={**(model.get("scale") or {}), **(scale or {})}, model_id=model_id)
    if fmt == "onnx":
        return to_onnx(model, model_id=model_id)
    raise ConfigError(f"unknown export format {fmt!r} (json, pmml or onnx)")


def cmd_export(args) -> int:
    cfg = load_party(args.party)
    g, ch = governance_client(cfg)
    try:
        text = g.export(args.model, args.note)  # the party releases it only after every party's approval
    finally:
        ch.close()
    scale = {k: v for k, v in (("pdo", args.pdo), ("base_score", args.base_score), ("base_odds", args.base_odds))
             if v is not None}
    data = convert_export(text, args.format, model_id=args.model, kind=args.pmml_kind, scale=scale)
    Path(args.out).write_bytes(data)
    out(f"merged model {args.model} written to {args.out} ({args.format})")
    return ExitCode.OK


def add_commands(sub, *, epilog: str, fmt) -> None:
    """Register ``model approve-export`` and ``model export``."""
    model = sub.add_parser("model", help="approve and export merged plaintext models",
                           description="Export a model as one plaintext file, only after every party's approval "
                                       "(each recorded in that party's audit log).", epilog=epilog, formatter_class=fmt)
    msub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    msub.required = True
    c = msub.add_parser("approve-export", help="approve releasing your part of a model to its guest",
                        epilog=epilog, formatter_class=fmt)
    c.add_argument("--party", required=True, metavar="CONFIG")
    c.add_argument("--model", required=True, metavar="ID")
    c.add_argument("--for", dest="requester", required=True, metavar="PARTY", help="the model's guest")
    c.add_argument("--note", default="", help="recorded in the audit log")
    c.set_defaults(func=cmd_approve_export)
    c = msub.add_parser("export", help="write the merged model (guest; needs every host's approval)",
                        epilog=epilog, formatter_class=fmt)
    c.add_argument("--party", required=True, metavar="CONFIG")
    c.add_argument("--model", required=True, metavar="ID")
    c.add_argument("--out", required=True, metavar="FILE")
    c.add_argument("--format", choices=("json", "pmml", "onnx"), default="json",
                   help="json (fedcredit's merged format, default), pmml (PMML 4.4: MiningModel for SecureBoost, "
                        "Scorecard with reason codes for a WOE LR, RegressionModel for other LR) or onnx "
                        "(TreeEnsembleClassifier / LinearClassifier); pmml and onnx need fedcredit[export]")
    c.add_argument("--pmml-kind", choices=("auto", "scorecard", "regression", "trees"), default="auto",
                   help="PMML model element (auto: as above; 'regression' writes a WOE LR as RegressionModel)")
    c.add_argument("--pdo", type=float, help="scorecard scale (default: the model's scorecard step, else 20)")
    c.add_argument("--base-score", type=float, help="scorecard scale (default: scorecard step, else 600)")
    c.add_argument("--base-odds", type=float, help="scorecard scale (default: scorecard step, else 50)")
    c.add_argument("--note", default="", help="recorded in the audit log")
    c.set_defaults(func=cmd_export)
