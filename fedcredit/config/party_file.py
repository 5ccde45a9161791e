"""Loading a party config file: one function per section, every problem collected with its file and key."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import ids as _ids
from ..errors import ConfigError
from ._checker import _addr_check, _check_name, _Checker, _parse_toml, _tname, parse_address
from .party import (
    ApprovalRule,
    ComputeConfig,
    ConsoleConfig,
    PartyConfig,
    Policy,
    PrivacyPolicy,
    ScoringPolicy,
    TableConfig,
    TlsConfig,
    TransportConfig,
)

__all__ = ["COMPUTE_BACKENDS", "load_party_config"]

COMPUTE_BACKENDS = ("local", "dask")
_KIND_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=\-]{0,63}")  # step kinds in [policy].allowed_steps (never paths)
_PARTY_TOP = {"party", "tls", "peers", "tables", "policy", "transport", "compute", "console"}
_PARTY_KEYS = {"name", "listen", "state_dir", "insecure", "log_level", "log_format"}
_TLS_KEYS = {"ca", "cert", "key"}
_TABLE_KEYS = {"path", "id_column", "label_column", "columns", "categorical", "pos_label", "aligned_by"}
_POLICY_KEYS = {"proposers", "allowed_steps", "columns", "min_intersection", "purposes", "max_concurrent_jobs", "scoring",
                "reasons", "privacy", "approval", "approval_rules", "approval_expiry_hours"}
_PRIVACY_KEYS = {"max_label_epsilon", "min_node_rows", "min_guest_only_trees", "min_bin_count", "min_batch_size"}
_APPROVAL_RULE_KEYS = {"proposer", "purpose", "max_steps", "approval"}
_APPROVALS = ("auto", "manual")
_SCORING_KEYS = {"requesters", "purposes", "max_requests_per_minute", "max_ids_per_minute", "max_batch",
                 "head_exchange_seconds", "reveal_reasons"}
_TRANSPORT_KEYS = {"deadline", "retries", "recv_timeout", "max_message_mib", "peer_messages_per_second",
                   "peer_burst", "peer_inflight", "orphan_seconds", "peer_proposals_per_minute", "max_proposal_kib"}
_COMPUTE_KEYS = {"backend", "workers", "scheduler", "tls_ca", "tls_cert", "tls_key", "insecure", "retries",
                 "connect_timeout", "task_timeout", "partition_rows"}
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# SecureBoost: an owner's monotone constraints, and the feature names it publishes to the label holder
_TABLE_KEYS = _TABLE_KEYS | {"monotone"}
_POLICY_KEYS = _POLICY_KEYS | {"share_feature_names"}


def load_party_config(path: str | os.PathLike, *, check_files: bool = True) -> PartyConfig:
    """Load and check a party config file.

    Parameters
    ----------
    path : path
        The TOML file.
    check_files : bool, default=True
        Also check that the TLS files and table files exist.

    Returns
    -------
    PartyConfig

    Raises
    ------
    ConfigError
        Listing every problem, each naming the file and the key.
    """
    path = Path(path).resolve() if Path(path).exists() else Path(path)
    data = _parse_toml(path)
    c = _Checker(str(path), path.parent)
    c.table(data, "", _PARTY_TOP, {"party"})
    name, me, listen, state_dir, insecure, log_level, log_format = _party_section(c, data)
    tls = _tls_section(c, data, insecure, check_files)
    peers, praw = _peers_section(c, data, me)
    tables = _tables_section(c, data, check_files)
    policy = _policy_section(c, data.get("policy", {}), name, praw)
    transport = _transport_section(c, data.get("transport", {}))
    compute = _compute_config(c, data.get("compute", {}), check_files)
    console = _console_section(c, data.get("console", {}), tls)
    c.raise_if_any()
    return PartyConfig(
        path=path, name=name, listen=listen, state_dir=state_dir, tls=tls, insecure=bool(insecure),
        peers=MappingProxyType(peers), tables=MappingProxyType(tables), policy=policy, transport=transport,
        compute=compute, log_level=log_level.upper(), log_format=log_format, console=console,
    )


def _party_section(c: _Checker, data: dict) -> tuple:
    """``[party]``: name (checked), name as written, listen, state_dir, insecure, log level and format."""
    party = c.table(data.get("party", {}), "[party]", _PARTY_KEYS, {"name", "listen", "state_dir"})
    name = c.get(party, "[party]", "name", str, check=_check_name)
    me = party.get("name")  # as written, so a bad name is reported once, not again by every check that uses it
    listen = c.get(party, "[party]", "listen", str, check=_addr_check(True))
    state_dir = c.path(party, "[party]", "state_dir", must_exist=False)
    insecure = c.get(party, "[party]", "insecure", bool, False)
    log_level = c.get(party, "[party]", "log_level", str, "INFO",
                      check=lambda s: None if s.upper() in _LOG_LEVELS else f"must be one of {', '.join(_LOG_LEVELS)}")
    log_format = c.get(party, "[party]", "log_format", str, "text",
                       check=lambda s: None if s in ("text", "json") else "must be \"text\" or \"json\"")
    return name, me, listen, state_dir, insecure, log_level, log_format


def _tls_section(c: _Checker, data: dict, insecure, check_files: bool) -> TlsConfig | None:
    """``[tls]``: the three PEM files (required unless ``[party].insecure``)."""
    tls = None
    if "tls" in data:
        t = c.table(data["tls"], "[tls]", _TLS_KEYS, set(_TLS_KEYS))
        hint = " (create it with `fedcredit certs init` / `fedcredit certs issue`)"
        ca, cert, key = (c.path(t, "[tls]", k, must_exist=check_files, hint=hint) for k in ("ca", "cert", "key"))
        if ca and cert and key:
            tls = TlsConfig(ca=ca, cert=cert, key=key)
    elif not insecure:
        c.add("[tls]", "missing table: mutual TLS is required (give ca, cert and key, or set [party].insecure = true for a local test)")

    return tls


def _peers_section(c: _Checker, data: dict, me) -> tuple[dict[str, str], dict]:
    """``[peers]``: name -> address (checked), and the table as written."""
    peers: dict[str, str] = {}
    praw = c.table(data.get("peers", {}), "[peers]", None)
    for pname, addr in praw.items():
        key = f"[peers].{pname}"
        msg = _check_name(pname)
        if msg:
            c.add(key, msg)
            continue
        if pname == me:
            c.add(key, f"a party cannot list itself ({me!r}) as a peer")
            continue
        if not isinstance(addr, str):
            c.add(key, f"must be a string host:port, got {_tname(addr)} {addr!r}")
            continue
        m = _addr_check(False)(addr)
        if m:
            c.add(key, m)
            continue
        peers[pname] = addr

    return peers, praw


def _tables_section(c: _Checker, data: dict, check_files: bool) -> dict[str, TableConfig]:
    """``[tables.*]``: each table's file, columns, label and SecureBoost monotone constraints."""
    tables: dict[str, TableConfig] = {}
    traw = c.table(data.get("tables", {}), "[tables]", None)
    for tname, tdata in traw.items():
        key = f"[tables.{tname}]"
        if not _ids.is_name(tname):
            c.add(key, "table name must be 1-63 characters of [a-z0-9_-]")
            continue
        td = c.table(tdata, key, _TABLE_KEYS, {"path"})
        if not isinstance(tdata, dict):
            continue
        tpath = c.path(td, key, "path", must_exist=check_files)
        id_col = c.get(td, key, "id_column", str, "id")
        label = c.get(td, key, "label_column", str, None)
        cols = c.str_list(td, key, "columns")
        if cols is not None and len(cols) == 0:
            c.add(f"{key}.columns", "must list at least one column (leave it out to use every column)")
        cats = c.str_list(td, key, "categorical") or ()
        pos = td.get("pos_label") if isinstance(td, dict) else None
        if pos is not None and (isinstance(pos, bool) or not isinstance(pos, (str, int, float))):
            c.add(f"{key}.pos_label", f"must be a string or a number, got {_tname(pos)}")
            pos = None
        if pos is not None and not label:
            c.add(f"{key}.pos_label", "is only used with a label_column")
        aligned = c.get(td, key, "aligned_by", str, None, check=_ids.name_problem)
        if tpath is not None:
            tables[tname] = TableConfig(tname, tpath, id_col or "id", label, cols or None, tuple(cats), pos, aligned)

    for tname, tdata in traw.items():  # SecureBoost: the owner's monotone constraints on its columns
        if tname not in tables or not isinstance(tdata, dict) or "monotone" not in tdata:
            continue
        key = f"[tables.{tname}].monotone"
        mono = {}
        for col, sign in c.table(tdata["monotone"], key, None).items():
            if type(sign) is not int or sign not in (-1, 1):
                c.add(f"{key}.{col}", f"must be 1 (increasing) or -1 (decreasing), got {sign!r}")
            else:
                mono[col] = sign
        tables[tname] = replace(tables[tname], monotone=MappingProxyType(mono))
    return tables


def _policy_section(c: _Checker, raw: Any, name, praw: dict) -> Policy:
    """``[policy]`` with its sub-tables (scoring, reasons, privacy, approval rules)."""
    pol = c.table(raw, "[policy]", _POLICY_KEYS)
    proposers = c.str_list(pol, "[policy]", "proposers", check_item=_check_name) or ()
    for i, p in enumerate(proposers):
        if name is not None and p != name and p not in praw:
            c.add(f"[policy].proposers[{i}]", f"{p!r} is not this party or one of its [peers]")
    # kinds not installed in this process are allowed here (a policy may name steps a later version adds);
    # the party logs them at start-up
    allowed = c.str_list(
        pol, "[policy]", "allowed_steps",
        check_item=lambda s: None if _KIND_RE.fullmatch(s) else f"{s!r} is not a step kind name",
    )
    columns = None
    if "columns" in pol:
        columns = {}
        craw = c.table(pol["columns"], "[policy.columns]", None)
        for peer, cols in craw.items():
            if name is not None and peer != "*" and peer != name and peer not in praw:
                c.add(f"[policy.columns].{peer}", f"{peer!r} is not this party, one of its [peers] or '*'")
                continue
            lst = c.str_list(craw, "[policy.columns]", peer)
            if lst is not None:
                columns[peer] = lst
        columns = MappingProxyType(columns)
    min_inter = c.get(pol, "[policy]", "min_intersection", int, 1,
                      check=lambda v: None if v >= 1 else f"must be at least 1, got {v}")
    purposes = c.str_list(pol, "[policy]", "purposes")
    max_jobs = c.get(pol, "[policy]", "max_concurrent_jobs", int, 2,
                     check=lambda v: None if 1 <= v <= 64 else f"must be in 1..64, got {v}")
    scoring = _scoring_section(c, pol, name, praw)
    reasons = {}
    for col, text in c.table(pol.get("reasons", {}), "[policy.reasons]", None).items():
        if not isinstance(text, str) or not 0 < len(text) <= 120 or not text.isprintable():
            c.add(f"[policy.reasons].{col}", "must be a printable text of 1..120 characters")
        else:
            reasons[str(col)] = text
    privacy = _privacy_section(c, pol)
    approval, rules, expiry = _approval_config(c, pol, name, praw)
    policy = Policy(
        proposers=tuple(proposers), allowed_steps=allowed, columns=columns, min_intersection=min_inter,
        purposes=purposes, max_concurrent_jobs=max_jobs, scoring=scoring, reasons=MappingProxyType(reasons),
        privacy=privacy, approval=approval, approval_rules=rules, approval_expiry_hours=expiry,
    )

    share = pol.get("share_feature_names", False)
    if isinstance(share, list):
        share = c.str_list(pol, "[policy]", "share_feature_names") or ()
    elif not isinstance(share, bool):
        c.add("[policy].share_feature_names", f"must be true, false or a list of columns, got {_tname(share)}")
        share = False
    policy = replace(policy, share_feature_names=share)
    return policy


def _scoring_section(c: _Checker, pol: dict, name, praw: dict) -> ScoringPolicy:
    """``[policy.scoring]``: who may score with this party's model parts, and how often."""
    sc = c.table(pol.get("scoring", {}), "[policy.scoring]", _SCORING_KEYS)
    requesters = c.str_list(sc, "[policy.scoring]", "requesters", check_item=_check_name)
    for i, p in enumerate(requesters or ()):
        if name is not None and p not in praw:
            c.add(f"[policy.scoring].requesters[{i}]", f"{p!r} is not one of this party's [peers]")
    scoring = ScoringPolicy(
        requesters=requesters,
        purposes=c.str_list(sc, "[policy.scoring]", "purposes"),
        max_requests_per_minute=c.get(sc, "[policy.scoring]", "max_requests_per_minute", int, 600,
                                      check=lambda v: None if v >= 1 else f"must be at least 1, got {v}"),
        max_ids_per_minute=c.get(sc, "[policy.scoring]", "max_ids_per_minute", int, 1_000_000,
                                 check=lambda v: None if v >= 1 else f"must be at least 1, got {v}"),
        max_batch=c.get(sc, "[policy.scoring]", "max_batch", int, 100_000,
                        check=lambda v: None if 1 <= v <= 10_000_000 else f"must be in 1..10000000, got {v}"),
        head_exchange_seconds=c.get(sc, "[policy.scoring]", "head_exchange_seconds", float, 60.0,
                                    check=lambda v: None if v >= 0 else f"must be >= 0, got {v}"),
        reveal_reasons=c.get(sc, "[policy.scoring]", "reveal_reasons", bool, False),
    )
    return scoring


def _privacy_section(c: _Checker, pol: dict) -> PrivacyPolicy:
    """``[policy.privacy]``: the least protection this party accepts in a job's steps."""
    pv = c.table(pol.get("privacy", {}), "[policy.privacy]", _PRIVACY_KEYS)
    at_least_1 = lambda v: None if v is None or v >= 1 else f"must be at least 1, got {v}"  # noqa: E731
    privacy = PrivacyPolicy(
        max_label_epsilon=c.get(pv, "[policy.privacy]", "max_label_epsilon", float, None,
                                check=lambda v: None if v is None or v > 0 else f"must be positive, got {v}"),
        min_node_rows=c.get(pv, "[policy.privacy]", "min_node_rows", int, None, check=at_least_1),
        min_guest_only_trees=c.get(pv, "[policy.privacy]", "min_guest_only_trees", int, None, check=at_least_1),
        min_bin_count=c.get(pv, "[policy.privacy]", "min_bin_count", int, None, check=at_least_1),
        min_batch_size=c.get(pv, "[policy.privacy]", "min_batch_size", int, None, check=at_least_1),
    )
    return privacy


def _transport_section(c: _Checker, raw: Any) -> TransportConfig:
    """``[transport]``: deadlines, retries, sizes and per-peer rates."""
    tr = c.table(raw, "[transport]", _TRANSPORT_KEYS)
    pos = lambda v: None if v > 0 else f"must be positive, got {v}"  # noqa: E731
    transport = TransportConfig(
        deadline=c.get(tr, "[transport]", "deadline", float, 60.0, check=pos),
        retries=c.get(tr, "[transport]", "retries", int, 5,
                      check=lambda v: None if 0 <= v <= 20 else f"must be in 0..20, got {v}"),
        recv_timeout=c.get(tr, "[transport]", "recv_timeout", float, 600.0, check=pos),
        max_message_mib=c.get(tr, "[transport]", "max_message_mib", int, 256,
                              check=lambda v: None if 1 <= v <= 4096 else f"must be in 1..4096, got {v}"),
        peer_messages_per_second=c.get(tr, "[transport]", "peer_messages_per_second", float, 2000.0, check=pos),
        peer_burst=c.get(tr, "[transport]", "peer_burst", int, 4000, check=pos),
        peer_inflight=c.get(tr, "[transport]", "peer_inflight", int, 16,
                            check=lambda v: None if 1 <= v <= 32 else f"must be in 1..32 (server threads: 64), got {v}"),
        orphan_seconds=c.get(tr, "[transport]", "orphan_seconds", float, 120.0, check=pos),
        peer_proposals_per_minute=c.get(tr, "[transport]", "peer_proposals_per_minute", int, 30,
                                        check=lambda v: None if 1 <= v <= 10_000 else f"must be in 1..10000, got {v}"),
        max_proposal_kib=c.get(tr, "[transport]", "max_proposal_kib", int, 64,
                               check=lambda v: None if 1 <= v <= 1024 else f"must be in 1..1024, got {v}"),
    )
    return transport


def _console_section(c: _Checker, raw: Any, tls: TlsConfig | None) -> ConsoleConfig:
    """``[console]``: the operator console's address (loopback only without TLS)."""
    co = c.table(raw, "[console]", {"listen"})
    console = ConsoleConfig(listen=c.get(co, "[console]", "listen", str, None, check=_addr_check(True)))
    if console.listen and tls is None and parse_address(console.listen)[0] not in _LOOPBACK:
        # without [tls] the console speaks plain HTTP: its token and session cookie must not leave the machine
        c.add("[console].listen", "a party without [tls] serves its console over plain HTTP: listen on loopback only")
    return console


def _approval_config(c: _Checker, pol: dict, me, peers: dict) -> tuple[str, tuple[ApprovalRule, ...], float]:
    """``[policy] approval``, ``approval_expiry_hours`` and ``[[policy.approval_rules]]`` (see docs/operating.md)."""
    one_of = lambda s: None if s in _APPROVALS else f"must be one of {', '.join(map(repr, _APPROVALS))}, got {s!r}"  # noqa: E731
    approval = c.get(pol, "[policy]", "approval", str, "auto", check=one_of)
    expiry = c.get(pol, "[policy]", "approval_expiry_hours", float, 24.0,
                   check=lambda v: None if 0 < v <= 24 * 365 else f"must be in (0, 8760] hours, got {v}")
    rules = []
    raw = pol.get("approval_rules", [])
    if not isinstance(raw, list):
        c.add("[policy].approval_rules", "must be an array of tables ([[policy.approval_rules]])")
        raw = []
    for i, r in enumerate(raw):
        key = f"[[policy.approval_rules]] #{i + 1}"
        if not isinstance(r, dict):
            c.add(key, f"must be a table, got {_tname(r)}")
            continue
        c.table(r, key, _APPROVAL_RULE_KEYS, {"approval"})
        proposer = c.get(r, key, "proposer", str, None, check=lambda p: None if p == "*" or p == me or p in peers
                         else f"{p!r} is not this party, one of its [peers] or '*'")
        rule = ApprovalRule(
            approval=c.get(r, key, "approval", str, None, check=one_of) or "manual",
            proposer=None if proposer in (None, "*") else proposer,
            purpose=c.get(r, key, "purpose", str, None),
            max_steps=c.get(r, key, "max_steps", int, None,
                            check=lambda v: None if v >= 1 else f"must be at least 1, got {v}"),
        )
        rules.append(rule)
    return approval, tuple(rules), expiry


def _compute_config(c: _Checker, raw: Any, check_files: bool) -> ComputeConfig:
    """``[compute]``: every problem is added to ``c`` with its key."""
    co = c.table(raw, "[compute]", _COMPUTE_KEYS)
    backend = c.get(co, "[compute]", "backend", str, "local",
                    check=lambda s: None if s in COMPUTE_BACKENDS else
                    f"unknown backend {s!r} (available: {', '.join(COMPUTE_BACKENDS)})")
    workers = c.get(co, "[compute]", "workers", int, None,
                    check=lambda v: None if 1 <= v <= 256 else f"must be in 1..256, got {v}")
    pos = lambda v: None if v > 0 else f"must be positive, got {v}"  # noqa: E731
    retries = c.get(co, "[compute]", "retries", int, 1, check=lambda v: None if 0 <= v <= 10 else f"must be in 0..10, got {v}")
    connect_timeout = c.get(co, "[compute]", "connect_timeout", float, 30.0, check=pos)
    task_timeout = c.get(co, "[compute]", "task_timeout", float, 3600.0, check=pos)
    partition_rows = c.get(co, "[compute]", "partition_rows", int, 100_000,
                           check=lambda v: None if 1000 <= v <= 100_000_000 else f"must be in 1000..100000000, got {v}")
    insecure = c.get(co, "[compute]", "insecure", bool, False)
    scheduler = c.get(co, "[compute]", "scheduler", str, None, check=_scheduler_check)
    tls = {}
    for k in ("tls_ca", "tls_cert", "tls_key"):
        if k in co:
            tls[k] = c.path(co, "[compute]", k, must_exist=check_files)
    dask_only = [k for k in ("scheduler", "tls_ca", "tls_cert", "tls_key", "insecure", "retries", "connect_timeout",
                             "task_timeout", "partition_rows") if k in co]
    if backend == "local":
        for k in dask_only:
            c.add(f"[compute].{k}", 'is only used with backend = "dask"')
    if backend == "dask":
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            c.add("[compute].backend", "the Dask backend needs the dask extra: pip install 'fedcredit[dask]'")
        scheme = (scheduler or "").partition("://")[0]
        if scheme == "tls":
            for k in ("tls_ca", "tls_cert", "tls_key"):
                if k not in co:
                    c.add(f"[compute].{k}", "missing: a tls:// scheduler needs tls_ca, tls_cert and tls_key")
        else:
            for k in tls:
                c.add(f"[compute].{k}", "is only used with a tls:// scheduler")
        if scheme == "tcp" and not insecure:
            host = scheduler.partition("://")[2].rpartition(":")[0]
            if host not in _LOOPBACK:
                c.add("[compute].scheduler",
                      f"{scheduler!r} is plain TCP to another host, and the key owner's tasks carry its private key: "
                      "use tls:// with tls_ca, tls_cert and tls_key, or set [compute].insecure = true only inside "
                      "a network the party trusts")
        if insecure and scheme != "tcp":
            c.add("[compute].insecure", "only applies to a tcp:// scheduler")
    return ComputeConfig(
        backend=backend or "local", workers=workers, scheduler=scheduler, tls_ca=tls.get("tls_ca"),
        tls_cert=tls.get("tls_cert"), tls_key=tls.get("tls_key"), insecure=bool(insecure), retries=retries,
        connect_timeout=connect_timeout, task_timeout=task_timeout, partition_rows=partition_rows,
    )


def _scheduler_check(s: str) -> str | None:
    scheme, sep, rest = s.partition("://")
    if not sep or scheme not in ("tcp", "tls"):
        return f"{s!r} must look like tcp://host:port or tls://host:port"
    try:
        parse_address(rest, allow_port_zero=False)
    except ConfigError as exc:
        return str(exc)
    return None

