"""Completeness of every protocol's spec (issue #19): one mechanism, every message declared, typed and used.

The registry is discovered: every protocol under ``fedcredit/protocols`` (a
package's ``spec.py``, or a single-module protocol) that exposes a ``SPEC``
built with :mod:`fedcredit.protocols._spec` joins the parametrization by
itself. For each one: every message has a payload type, exactly one sender
and one receiver role, and is used -- its ``Stage`` member is an argument of
a call in the protocol's code (a send/recv/check site), or, for a protocol
whose messages are gRPC calls (``SITES``), its proto is built or read there;
every stage of the ``Stage`` enum is declared; a declared flow covers every
tagged message; and the protocol's code spells no tag itself (no
``Stage.X.value``, no string literal as the tag of a send/recv).
"""

from __future__ import annotations

import ast
import enum
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import fedcredit.protocols as protocols_pkg
from fedcredit.protocols._spec import PUBLIC_KEY, Spec
from fedcredit.protocols.context import ROLES

ROOT = Path(protocols_pkg.__file__).parent
REPO = ROOT.parent.parent

# Protocols another helper converts in this session (wt-lr: hetero_lr, wt-cat: secureboost); the lead removes
# this list after merging them -- from then on a protocol without a SPEC fails test_every_protocol_has_a_spec.
_MESSAGE_ROLES = set(ROLES) | {"operator", "peer"}  # operator: the guest party's own CLI; peer: see handshake


def _protocols() -> dict[str, object]:
    """``{name: module holding its messages}`` for every protocol package/module (spec.py when there is one)."""
    out = {}
    for info in pkgutil.iter_modules([str(ROOT)]):
        if info.name.startswith("_") or info.name in ("context", "registry", "checkpoint"):
            continue
        base = f"{protocols_pkg.__name__}.{info.name}"
        has_spec = info.ispkg and (ROOT / info.name / "spec.py").exists()
        out[info.name] = importlib.import_module(f"{base}.spec" if has_spec else base)
    return out


PROTOCOLS = _protocols()
SPECS = {name: mod.SPEC for name, mod in PROTOCOLS.items() if isinstance(getattr(mod, "SPEC", None), Spec)}


def _code_files(name: str) -> list[Path]:
    path = ROOT / name
    files = sorted(path.glob("*.py")) if path.is_dir() else [ROOT / f"{name}.py"]
    return [f for f in files if f.name != "spec.py"]


def _stage_attr(node) -> str | None:
    """``X`` for an expression ``Stage.X`` or ``spec.Stage.X``."""
    if isinstance(node, ast.Attribute):
        owner = node.value
        if (isinstance(owner, ast.Name) and owner.id == "Stage") or (
                isinstance(owner, ast.Attribute) and owner.attr == "Stage"):
            return node.attr
    return None


def _valid_type(exp) -> bool:
    if exp is None or exp in ("blob", PUBLIC_KEY) or isinstance(exp, type):
        return True
    if isinstance(exp, tuple) and exp:
        if exp[0] == "any":
            return len(exp) > 2 and all(_valid_type(e) for e in exp[1:])
        if exp[0] in ("ndarray", "ndarray2"):
            return np.dtype(exp[1]) is not None
        if exp[0] == "bytes":
            return type(exp[1]) is int and exp[1] > 0
        if exp[0] == "proto":
            return isinstance(exp[1], str) and exp[1]
    return False


def test_every_protocol_has_a_spec():
    missing = sorted(set(PROTOCOLS) - set(SPECS))
    # a protocol that exchanges no message at all needs no spec (scorecard: local only)
    missing = [m for m in missing if any("channel" in f.read_text() for f in _code_files(m))]
    assert not missing, f"protocols exchanging messages without a protocols/_spec SPEC: {missing}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_message_has_a_payload_type_and_one_sender_and_receiver(name):
    spec = SPECS[name]
    assert spec.messages, name
    for stage, m in spec.messages.items():
        assert m.stage is stage
        for role in (m.sender, m.receiver):
            assert isinstance(role, str) and role in _MESSAGE_ROLES, (name, stage, role)
        if isinstance(m.fields, dict):
            assert m.fields, (name, stage)
            for key, exp in m.fields.items():
                assert isinstance(key, str) and _valid_type(exp), (name, stage, key, exp)
            assert m.notice is None or m.fields.get(m.notice) is bool, (name, stage)
        else:
            assert m.fields is not None and _valid_type(m.fields), (name, stage, m.fields)
        if m.scope is not None:  # the tag names the stage, or the scope is this message's alone
            assert "{stage}" in spec.scopes[m.scope] or \
                sum(spec[o].scope == m.scope for o in spec.messages) == 1, (name, stage)
    enums = {type(s) for s in spec.messages}
    assert len(enums) == 1 and issubclass(enums.pop(), enum.Enum), name
    assert set(spec.messages) == set(type(next(iter(spec.messages)))), f"{name}: a Stage member has no Message"
    assert len({_tag_shape(spec, s) for s in spec.messages if spec[s].scope is not None}) == \
        len([s for s in spec.messages if spec[s].scope is not None]), f"{name}: two messages share a tag"


def _tag_shape(spec, stage) -> str:
    return spec.scopes[spec[stage].scope].replace("{stage}", stage.value)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_message_is_used(name):
    spec = SPECS[name]
    sites = getattr(PROTOCOLS[name], "SITES", None)
    if sites:  # gRPC calls: each proto is built or parsed at its site
        text = "".join((REPO / s).read_text() for s in sites)
        unused = [s.value for s, m in spec.messages.items() if m.fields[1] not in text]
        assert not unused, f"{name}: messages declared but never sent or received: {unused}"
        return
    used = set()
    for f in _code_files(name):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    if (member := _stage_attr(arg)) is not None:
                        used.add(member)
    unused = [s.name for s in spec.messages if s.name not in used]
    assert not unused, f"{name}: messages declared but never sent or received: {unused}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_flows_cover_every_tagged_message(name):
    spec = SPECS[name]
    if not spec.flows:  # gRPC calls (scope None) are ordered by their request/reply; so is one exchange
        tagged = [s for s in spec.messages if spec[s].scope is not None]
        assert len(tagged) <= 2, f"{name}: a protocol of several channel messages declares its order"
        return
    in_flows = {s for fl in spec.flows.values() for a, bs in fl.items() for s in (a, *bs) if s is not None}
    missing = [s.value for s in spec.messages if s not in in_flows]
    assert not missing, f"{name}: messages outside every declared flow: {missing}"
    for fl in spec.flows.values():
        assert fl.get(None), f"{name}: a flow must say which messages start a link"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_no_ad_hoc_tags_at_call_sites(name):
    """Tags come from the spec: no ``Stage.X.value`` and no literal tag handed to send/recv in the protocol code."""
    bad = []
    for f in _code_files(name):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "value" and _stage_attr(node.value):
                bad.append(f"{f.name}:{node.lineno} Stage.X.value")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("send", "recv", "broadcast", "gather")
                    and any(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)):
                bad.append(f"{f.name}:{node.lineno} literal tag")
    assert not bad, f"{name}: {bad}"


# -- the single-module protocols run through their specs ---------------------------------------------------

def _run_step(step, roles, tables=None, params=None, state=None):
    from fedcredit.protocols.context import StepContext
    from fedcredit.transport.memory import run_local

    def role(p):
        def fn(ch):
            ctx = StepContext(job_id="j", step="s", kind="k", party=p, roles=roles, params=params or {}, channel=ch,
                              data=(tables or {}).get(p), state=dict((state or {}).get(p, {})))
            return step(ctx)

        return fn

    return run_local({p: role(p) for p in roles}, timeout=20)


def test_handshake_runs_through_its_spec():
    from fedcredit.protocols import handshake

    out = _run_step(handshake.run, {"bank": "guest", "gov": "host", "arb": "arbiter"})
    assert out["bank"] == {"rows": {"bank": 0, "gov": 0, "arb": 0}}
    assert out["gov"]["parties"] == ["arb", "bank", "gov"]


def test_handshake_refuses_a_row_count_of_the_wrong_type():
    from fedcredit.errors import ProtocolError
    from fedcredit.protocols import handshake
    from fedcredit.protocols.context import StepContext
    from fedcredit.transport.memory import run_local

    def guest(ch):
        return handshake.run(StepContext(job_id="j", step="s", kind="k", party="bank",
                                         roles={"bank": "guest", "gov": "host"}, params={}, channel=ch))

    with pytest.raises(ProtocolError, match="handshake rows from 'gov': payload must be int, got bool"):
        run_local({"bank": guest, "gov": lambda ch: ch.send("bank", "rows", True) or ch.recv("bank", "ack")},
                  timeout=10)


def test_select_tells_each_host_only_its_own_kept_features():
    from fedcredit.protocols import select

    class _T:
        feature_names = ["gov.a", "gov.b"]

    roles = {"bank": "guest", "gov": "host"}
    out = _run_step(select.run, roles, tables={"gov": _T()}, params={"iv_threshold": 0.1},
                    state={"bank": {"binning": {"iv": {"bank.x": 0.5, "gov.a": 0.3, "gov.b": 0.01}}}})
    assert out["gov"] == {"kept": ["gov.a"]}
