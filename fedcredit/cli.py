"""The ``fedcredit`` command.

Every command returns an exit code from :class:`ExitCode` (each with its help
text, shown by ``fedcredit --help``). Errors are printed as one line
(``fedcredit: error: ...``); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from . import __version__
from .errors import ConfigError, DataError, FedcreditError, PeerError, PolicyError, StateLocked

__all__ = ["main", "ExitCode"]


class ExitCode(enum.IntEnum):
    """Exit codes of ``fedcredit``; :data:`EXIT_HELP` explains each."""

    OK = 0
    JOB_FAILED = 1
    USAGE = 2
    CONFIG = 3
    DATA = 4
    UNREACHABLE = 5
    REFUSED = 6
    AUDIT_BROKEN = 7
    ALREADY_RUNNING = 8
    INTERNAL = 70
    INTERRUPTED = 130


EXIT_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "success (the job succeeded, the check passed)",
    ExitCode.JOB_FAILED: "the job failed or was cancelled (the reason is printed)",
    ExitCode.USAGE: "bad command line (see --help)",
    ExitCode.CONFIG: "a config or job file is invalid (every problem is listed with file and key)",
    ExitCode.DATA: "a data file is unusable (the file and column are named), or a job failed on a party's data",
    ExitCode.UNREACHABLE: "the party or a peer is unreachable or not serving",
    ExitCode.REFUSED: "refused by a party's policy or certificate check (the reason is printed)",
    ExitCode.AUDIT_BROKEN: "the audit log's hash chain is broken (the first bad line is printed)",
    ExitCode.ALREADY_RUNNING: "another process already runs a party on this state directory (party serve)",
    ExitCode.INTERNAL: "internal error (a bug: rerun with --debug and report the traceback)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code an exception maps to."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, StateLocked):
        return ExitCode.ALREADY_RUNNING
    if isinstance(exc, ConfigError):
        return ExitCode.CONFIG
    if isinstance(exc, DataError):
        return ExitCode.DATA
    if isinstance(exc, PeerError):
        return ExitCode.UNREACHABLE
    if isinstance(exc, PolicyError):
        return ExitCode.REFUSED
    if isinstance(exc, FedcreditError):
        return ExitCode.JOB_FAILED
    return ExitCode.INTERNAL


def _epilog() -> str:
    return "exit codes:\n" + "\n".join(f"  {int(c):>3}  {EXIT_HELP[c]}" for c in ExitCode)


# --------------------------------------------------------------------------- helpers

def _out(msg: str = "") -> None:
    print(msg, flush=True)


def _load_party(path: str):
    from .config import load_party_config

    return load_party_config(path)


def _own_client(cfg, timeout: float = 30.0):
    from .certs import TlsFiles
    from .transport.control import ControlClient, dial

    tls = TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
    ch = dial(cfg.connect_address, target=cfg.name, tls=tls, me=cfg.name)
    return ControlClient(ch, cfg.name, timeout=timeout), ch


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


# --------------------------------------------------------------------------- commands

def cmd_certs_init(args) -> int:
    from .certs import init_ca

    if args.rotate:
        from .certs import rotate_ca

        bundle, cert = rotate_ca(args.dir)
        _out(f"new federation CA written: {cert}; {bundle} holds the new and the old CA: make it every party's "
             f"[tls].ca and run 'fedcredit party reload', then re-issue each party's certificate")
        return ExitCode.OK
    cert, key = init_ca(args.dir, overwrite=args.force)
    _out(f"federation CA written: {cert} (key {key}, mode 0600: keep it offline)")
    return ExitCode.OK


def cmd_certs_issue(args) -> int:
    from .certs import issue

    hosts = tuple(args.host) if args.host else ("127.0.0.1", "localhost")
    if args.renew and not (Path(args.dir) / f"{args.name}.crt").exists():
        raise ConfigError(f"--renew: no certificate for party {args.name!r} in {args.dir} to renew")
    tls = issue(args.dir, args.name, hosts=hosts, overwrite=args.force or args.renew)
    _out(f"certificate for party {args.name!r}: {tls.cert} (key {tls.key}, mode 0600)")
    return ExitCode.OK


def cmd_party_serve(args) -> int:
    from .party import Party

    cfg = _load_party(args.config)
    party = Party(cfg)
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        port = party.start()
        host = cfg.listen.rpartition(":")[0]
        _out(f"party {cfg.name} serving on {host}:{port} ({'INSECURE' if cfg.insecure else 'mTLS'}); "
             f"state in {cfg.state_dir}; Ctrl-C to stop")
        if party.console is not None:  # the token is printed here, never written to the log (party/console.py)
            _out(f"console: {party.console.url}")
        while not stop.wait(0.5):
            pass
        _out(f"party {cfg.name} stopping")
    finally:
        party.stop(grace=args.grace)
        for s, h in old.items():
            signal.signal(s, h)
    _exit_after_stop(ExitCode.OK)
    return ExitCode.OK  # pragma: no cover - not reached


def _exit_after_stop(code: int) -> None:
    """End a stopped party process without interpreter finalization.

    Everything the party owns is closed by :meth:`Party.stop` (store, audit log, log file, transport,
    compute backend); what may remain are daemon threads inside C extensions (gRPC's channel and
    completion-queue threads, a job thread still in a gmpy2 call after the stop's grace), and tearing
    the interpreter down under them occasionally ended the process with SIGSEGV/SIGABRT instead of 0.
    So the process pool is stopped and the streams flushed here, then the process exits at once.
    """
    from .compute import local as _local

    _local.shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe must not keep the process alive
            pass
    os._exit(int(code))


def cmd_party_health(args) -> int:
    from .certs import TlsFiles
    from .transport.control import ControlClient, dial

    if bool(args.config) == bool(args.party) and not (args.config and args.config == args.party):
        raise ConfigError("give your party's config once: 'fedcredit party health CONFIG' (or --party CONFIG)")
    cfg = _load_party(args.config or args.party)
    targets = [args.peer] if args.peer else [cfg.name]
    if args.all:
        targets = [cfg.name, *cfg.peers]
    tls = TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
    worst = ExitCode.OK
    if not args.peer:  # the data files this config names: header, ids, label and pos_label, categorical names
        from .party.checks import check_table_files

        for problem in check_table_files(cfg):
            _out(f"{cfg.name}: {problem}")
            worst = ExitCode.DATA
    for t in targets:
        if t == cfg.name:
            addr = cfg.connect_address
        elif t in cfg.peers:
            addr = cfg.peers[t]
        else:
            raise ConfigError(f"{cfg.path}: [peers]: no peer named {t!r} (peers: {', '.join(cfg.peers) or 'none'})")
        ch = dial(addr, target=t, tls=tls, me=cfg.name)
        try:
            h = ControlClient(ch, t, timeout=args.timeout).health()
            ok = h["serving"] and h["party"] == t
            _out(f"{t} at {addr}: {'SERVING' if h['serving'] else 'NOT SERVING'}, party {h['party']!r}, "
                 f"version {h['version']}, {h['running_jobs']} job(s) running; it sees us as {h['caller']!r}")
            if not ok:
                worst = ExitCode.UNREACHABLE
            from .party.rotation import expiry_warnings

            for w in expiry_warnings(t, {"party": h.get("cert_not_after", 0.0), "CA": h.get("ca_not_after", 0.0)}):
                _out(w)
        except (PeerError, PolicyError) as exc:
            _out(f"{t} at {addr}: {exc}")
            worst = max(worst, exit_code_for(exc))
        finally:
            ch.close()
    return worst


class _Display:
    """Progress lines: a live, rewritten status line on a terminal; plain lines otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._live = False

    def line(self, text: str) -> None:
        if self._live:
            self.stream.write("\r\033[K")
            self._live = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def live(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text[: shutil.get_terminal_size().columns - 1])
            self.stream.flush()
            self._live = True
        else:
            self.line(text)

    def event(self, e: dict) -> None:
        p = f"[{e['party']}]"
        kind, state = e["kind"], e["state"]
        if kind == "decision":
            self.line(f"{p} {state}" + (f": {e['message']}" if e["message"] else ""))
        elif kind == "state":
            self.line(f"{p} job {state}" + (f": {e['message']}" if e["message"] else ""))
        elif kind == "step":
            d = e.get("detail") or {}
            if state == "succeeded":
                extra = f", {_human_bytes(d['bytes_sent'])} sent" if "bytes_sent" in d else ""
                self.line(f"{p} step {e['step']} done in {d.get('seconds', 0):.2f}s{extra}")
            elif state == "running":
                self.line(f"{p} step {e['step']} ({d.get('kind', '')}) started")
            else:
                self.line(f"{p} step {e['step']} {state}: {e['message']}")
        elif kind == "progress":
            frac = e.get("fraction")
            pct = f" {frac * 100:3.0f}%" if frac is not None else ""
            self.live(f"{p} {e['step']}{pct} {e['message']}")


def cmd_run(args) -> int:
    from .config import load_job

    if (args.job is None) == (getattr(args, "resume", None) is None):
        raise ConfigError("give either a job file or --resume JOB_ID")
    job = load_job(args.job) if args.job is not None else None
    cfg = _load_party(args.party)
    client, ch = _own_client(cfg)
    disp = _Display()
    try:
        if job is None:  # continue a failed or interrupted job on every party (docs/party.md, "Resume")
            job_id = client.resume(args.resume)
            disp.line(f"job {job_id} resumed on {cfg.name}")
        else:
            job_id = client.submit(job.to_json(), source=str(args.job))
            disp.line(f"job {job_id} submitted to {cfg.name} ({len(job.parties)} parties, {len(job.steps)} steps)")
        if args.detach:
            _out(job_id)
            return ExitCode.OK
        t0 = time.time()
        try:
            for e in client.watch(job_id):
                disp.event(e)
        except KeyboardInterrupt:
            disp.line(f"cancelling job {job_id} ...")
            client.cancel(job_id, "interrupted from the command line")
            return ExitCode.INTERRUPTED
        rows = client.list_jobs(job_id=job_id)
        if not rows:
            raise FedcreditError(f"job {job_id} vanished from {cfg.name}")
        row = rows[0]
        state, reason = row["state"], row["reason"]
        _print_steps(row, disp)
        _print_headlines(row, disp)
        disp.line(f"report: {cfg.state_dir / 'jobs' / job_id / 'report.json'}")
        disp.line(f"job {job_id} {state} after {time.time() - t0:.1f}s" + (f": {reason}" if reason else ""))
        if args.json:
            Path(args.json).write_text(json.dumps(row, indent=2, default=str), encoding="utf-8")
        if state == "succeeded":
            return ExitCode.OK
        if state == "failed" and ("(TableError)" in reason or "DataError" in reason):
            return ExitCode.DATA  # a party's data failed inside the job (its own log has the details)
        return ExitCode.REFUSED if state == "refused" else ExitCode.JOB_FAILED
    finally:
        ch.close()


def _print_headlines(row: dict, disp: _Display) -> None:
    """One line per model step of the initiator: AUC and KS on the validation rows (else the training rows)."""
    for s in row["detail"].get("steps", []):
        if s.get("state") != "succeeded" or s.get("party") != row.get("initiator", s.get("party")):
            continue
        res = (s.get("result") or {}).get("result") or {}
        for key in ("validation", "train"):
            m = res.get(key)
            if isinstance(m, dict) and isinstance(m.get("auc"), (int, float)):
                ks = m.get("ks")
                disp.line(f"{s['step']}: {key} AUC {m['auc']:.4f}" +
                          (f", KS {ks:.4f}" if isinstance(ks, (int, float)) else ""))
                break


def _print_steps(row: dict, disp: _Display) -> None:
    steps = [s for s in row["detail"].get("steps", []) if s["state"] in ("succeeded", "failed", "cancelled")]
    if not steps:
        return
    disp.line(f"{'party':<10} {'step':<16} {'state':<10} {'seconds':>8} {'sent':>10}")
    for s in steps:
        res = s.get("result") or {}
        traffic = res.get("traffic") or {}
        sent = traffic.get("bytes_sent", res.get("bytes_sent"))
        sec = s.get("seconds")
        sec_text = "" if sec is None else f"{sec:.2f}"
        disp.line(f"{s['party']:<10} {s['step']:<16} {s['state']:<10} {sec_text:>8} "
                  f"{'' if sent is None else _human_bytes(sent):>10}")


def cmd_jobs_list(args) -> int:
    cfg = _load_party(args.party)
    client, ch = _own_client(cfg)
    try:
        rows = client.list_jobs(limit=args.limit)
    finally:
        ch.close()
    if args.json:
        _out(json.dumps(rows, indent=2, default=str))
        return ExitCode.OK
    if not rows:
        _out(f"no jobs on {cfg.name}")
        return ExitCode.OK
    _out(f"{'job id':<40} {'role':<8} {'initiator':<10} {'state':<10} {'created':<19}  reason")
    for r in rows:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"]))
        _out(f"{r['job_id']:<40} {r['role']:<8} {r['initiator']:<10} {r['state']:<10} {created:<19}  {r['reason'][:120]}")
    return ExitCode.OK


def cmd_cancel(args) -> int:
    cfg = _load_party(args.party)
    client, ch = _own_client(cfg)
    try:
        _out(client.cancel(args.job_id, args.reason or ""))
    finally:
        ch.close()
    return ExitCode.OK


def cmd_audit_verify(args) -> int:
    from .audit import verify

    cfg = _load_party(args.party) if args.party else None
    path = Path(args.log) if args.log else Path(cfg.state_dir) / "audit.log"
    heads = []
    for h in args.head or []:
        seq, sep, digest = h.partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise ConfigError(f"--head {h!r} must look like SEQ:SHA256HEX")
        heads.append((int(seq), digest))
    if not path.exists():
        raise ConfigError(f"audit log not found: {path}")
    if cfg is not None and not args.no_peers:  # the heads of this log that peers hold (fedcredit.serving)
        from .serving.commands import held_heads_summary

        peer_heads, lines = held_heads_summary(cfg)
        heads += peer_heads
        _out("heads held by peers:\n" + "\n".join(lines) if lines else "no peers to ask")
    res = verify(path, known_heads=heads)
    if res.ok:
        _out(f"{path}: OK, {res.records} records, head #{res.head[0]} {res.head[1]}")
        return ExitCode.OK
    _out(f"{path}: BROKEN at line {res.first_bad_line}: {res.reason} ({res.records} valid records before it)")
    return ExitCode.AUDIT_BROKEN


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(data_dir=args.data, json_path=args.json, keep=args.keep, quick=args.quick,
                    reports_dir=args.reports)


def _pairs(items, what: str) -> dict[str, str]:
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k or not v:
            raise ConfigError(f"{what} must be NAME=VALUE, got {it!r}")
        out[k.strip()] = v.strip()
    return out


def cmd_init_party(args) -> int:
    from .scaffold import init_party

    path, info, steps = init_party(args.name, listen=args.listen, table=args.table, out=args.out,
                                   label_column=args.label, pos_label=args.pos_label, id_column=args.id_column,
                                   table_name=args.table_name, peers=_pairs(args.peer, "--peer"), force=args.force)
    _out(f"party config written: {path}")
    _out(f"table {info.path}: {len(info.columns)} columns ({len(info.numeric)} numeric features"
         + (f", {len(info.text)} text" if info.text else "")
         + (f", label {args.label!r} with values {', '.join(info.label_values)}" if args.label else "")
         + f"; first {info.rows_sampled} rows checked)")
    for w in info.warnings:
        _out(f"warning: {w}")
    _out()
    _out("next steps:")
    for s in steps:
        _out(s)
    return ExitCode.OK


def cmd_init_federation(args) -> int:
    from .scaffold import init_federation

    parties = [p.strip() for p in args.parties.split(",") if p.strip()]
    configs, job, steps = init_federation(args.dir, parties, tables=_pairs(args.table, "--table"),
                                          labels=_pairs(args.label, "--label"), base_port=args.base_port)
    _out(f"federation for a local trial written to {args.dir}: a CA (certs/ca.crt), a certificate and a config per "
         f"party ({', '.join(str(c) for c in configs.values())})" + (f", a starter job {job}" if job else ""))
    _out()
    _out("next steps:")
    for s in steps:
        _out(s)
    return ExitCode.OK


# --------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="fedcredit",
        description="Privacy-preserving joint credit-risk modeling: run a party, submit jobs, verify the audit log.",
        epilog=_epilog(),
        formatter_class=fmt,
    )
    p.add_argument("--version", action="version", version=f"fedcredit {__version__}")
    p.add_argument("--debug", action="store_true", help="print tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    certs = sub.add_parser("certs", help="create a federation CA and party certificates",
                           description="Create a federation CA and party certificates (EC P-256, PEM).",
                           epilog=_epilog(), formatter_class=fmt)
    csub = certs.add_subparsers(dest="certs_command", metavar="SUBCOMMAND")
    csub.required = True
    c = csub.add_parser("init", help="create the federation CA in DIR (ca.crt, ca.key)",
                        description="Create the federation CA in DIR: ca.crt (give it to every party) and "
                                    "ca.key (mode 0600; keep it offline).", epilog=_epilog(), formatter_class=fmt)
    c.add_argument("dir", metavar="DIR", help="directory for ca.crt and ca.key")
    c.add_argument("--force", action="store_true", help="replace an existing CA (invalidates its certificates)")
    c.add_argument("--rotate", action="store_true",
                   help="start a CA rotation: new ca.crt/ca.key, the old CA kept, ca-bundle.crt with both")
    c.set_defaults(func=cmd_certs_init)
    c = csub.add_parser("issue", help="issue NAME.crt and NAME.key signed by the CA in DIR",
                        description="Issue a certificate and key for party NAME, signed by the CA in DIR. "
                                    "The party name is in the certificate (CN and SAN URI fedcredit://party/NAME); "
                                    "peers take the caller's identity from it.", epilog=_epilog(), formatter_class=fmt)
    c.add_argument("dir", metavar="DIR", help="directory holding ca.crt and ca.key")
    c.add_argument("name", metavar="NAME", help="party name ([a-z0-9_-], e.g. bank)")
    c.add_argument("--host", action="append", metavar="HOST",
                   help="DNS name or IP the party is reached at (repeatable; default 127.0.0.1 and localhost)")
    c.add_argument("--force", action="store_true", help="replace an existing certificate for NAME")
    c.add_argument("--renew", action="store_true",
                   help="renew NAME's existing certificate (new key, from the current CA); then 'fedcredit party "
                        "reload' on that party picks it up without a restart")
    c.set_defaults(func=cmd_certs_issue)

    init = sub.add_parser("init", help="scaffold a party config, or a whole local federation",
                          description="Write a commented party config (checking its table first), or a CA, "
                                      "certificates and configs for a federation on this machine.",
                          epilog=_epilog(), formatter_class=fmt)
    isub = init.add_subparsers(dest="init_command", metavar="SUBCOMMAND")
    isub.required = True
    c = isub.add_parser("party", help="write a commented party config NAME.toml after checking the table",
                        description="Check TABLE (file, id column, label column and its values, column types), "
                                    "write a commented party config and print the next steps (certificates, "
                                    "peers, serve, health).", epilog=_epilog(), formatter_class=fmt)
    c.add_argument("name", metavar="NAME", help="the party's name ([a-z0-9_-], also its certificate's name)")
    c.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to serve on")
    c.add_argument("--table", required=True, metavar="PATH", help="the party's table (CSV, CSV.gz or Parquet)")
    c.add_argument("--label", metavar="COL", help="label column (the label holder only)")
    c.add_argument("--pos-label", metavar="V", help="the label's event value (default: the label is 0/1)")
    c.add_argument("--id-column", default="id", metavar="COL", help="id column (default id)")
    c.add_argument("--table-name", default="credit", metavar="T", help="the name jobs use for it (default credit)")
    c.add_argument("--peer", action="append", metavar="NAME=HOST:PORT", help="a peer (repeatable)")
    c.add_argument("--out", metavar="PATH", help="config file or directory to write (default ./NAME.toml)")
    c.add_argument("--force", action="store_true", help="replace an existing config")
    c.set_defaults(func=cmd_init_party)
    c = isub.add_parser("federation", help="a CA, certificates and configs for a local trial in DIR",
                        description="Write certs/ (CA and one certificate per party), one config per party on "
                                    "127.0.0.1, and a starter job. Without --table, parties named bank, chain and "
                                    "gov get the credit3 tables shipped with fedcredit.",
                        epilog=_epilog(), formatter_class=fmt)
    c.add_argument("dir", metavar="DIR", help="directory to write (must not hold a federation already)")
    c.add_argument("--parties", required=True, metavar="A,B,C", help="comma-separated party names")
    c.add_argument("--table", action="append", metavar="NAME=PATH", help="a party's table (repeatable)")
    c.add_argument("--label", action="append", metavar="NAME=COL", help="the label holder's label column")
    c.add_argument("--base-port", type=int, default=7301, metavar="PORT",
                   help="party i listens on 127.0.0.1:PORT+i (default 7301)")
    c.set_defaults(func=cmd_init_federation)

    party = sub.add_parser("party", help="run or check a party process",
                           description="Run or check a party process.", epilog=_epilog(), formatter_class=fmt)
    psub = party.add_subparsers(dest="party_command", metavar="SUBCOMMAND")
    psub.required = True
    c = psub.add_parser("serve", help="run the party until SIGINT/SIGTERM",
                        description="Run the party described by CONFIG: serve peers and the local CLI on its mTLS "
                                    "port, accept or refuse proposed jobs by its policy, run accepted jobs. Logs to "
                                    "<state_dir>/party.log; stops gracefully on SIGINT/SIGTERM.",
                        epilog=_epilog(), formatter_class=fmt)
    c.add_argument("config", metavar="CONFIG", help="party config TOML (e.g. parties/bank.toml)")
    c.add_argument("--grace", type=float, default=3.0, metavar="SECONDS", help="shutdown grace period (default 3)")
    c.set_defaults(func=cmd_party_serve)
    c = psub.add_parser("health", help="check that the party (or a peer) is serving",
                        description="Ask the party of CONFIG (or --peer NAME, or --all) whether it is serving, over "
                                    "mTLS with the party's own certificate.", epilog=_epilog(), formatter_class=fmt)
    c.add_argument("config", nargs="?", metavar="CONFIG", help="party config TOML")
    c.add_argument("--party", metavar="CONFIG", help="the same, as an option (as for 'party reload')")
    c.add_argument("--peer", metavar="NAME", help="check this peer instead of the party itself")
    c.add_argument("--all", action="store_true", help="check the party and every peer")
    c.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="per-check timeout (default 5)")
    c.set_defaults(func=cmd_party_health)

    c = sub.add_parser("run", help="submit a job to your own party and follow it",
                       description="Submit JOB to the party of --party (the initiator), which proposes it to every "
                                   "party of the job; follow decisions and progress until it ends. The exit code "
                                   "reflects the outcome. Ctrl-C cancels the job.", epilog=_epilog(), formatter_class=fmt)
    c.add_argument("job", metavar="JOB", nargs="?", help="job TOML (e.g. jobs/demo.toml)")
    c.add_argument("--resume", metavar="JOB_ID",
                   help="instead of a job file: continue this failed or interrupted job (your party initiated it)")
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--json", metavar="PATH", help="also write the final job record as JSON")
    c.add_argument("--detach", action="store_true", help="print the job id and return without following it")
    c.set_defaults(func=cmd_run)

    jobs = sub.add_parser("jobs", help="list jobs", description="Jobs known to your party.",
                          epilog=_epilog(), formatter_class=fmt)
    jsub = jobs.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND")
    jsub.required = True
    c = jsub.add_parser("list", help="list past and running jobs (newest first)",
                        description="List the jobs in your party's store (newest first), with state and reason.",
                        epilog=_epilog(), formatter_class=fmt)
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--limit", type=int, default=50, help="at most this many jobs (default 50; 0: all)")
    c.add_argument("--json", action="store_true", help="print JSON (with decisions and per-step results)")
    c.set_defaults(func=cmd_jobs_list)
    c = jsub.add_parser("resume", help="continue a failed or interrupted job on every party and follow it",
                        description="Resume JOB_ID (a failed or cancelled job your party initiated) on every party: "
                                    "each checks it is the same job, completed steps are recomputed and checked, "
                                    "training continues from the last tree/epoch/round every party finished. "
                                    "Same as 'fedcredit run --resume JOB_ID'.",
                        epilog=_epilog(), formatter_class=fmt)
    c.add_argument("resume", metavar="JOB_ID")
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--json", metavar="PATH", help="also write the final job record as JSON")
    c.add_argument("--detach", action="store_true", help="print the job id and return without following it")
    c.set_defaults(func=cmd_run, job=None)

    from .party.commands import add_commands as add_operator_commands  # jobs pending|approve|reject

    add_operator_commands(jsub, epilog=_epilog(), fmt=fmt)

    c = sub.add_parser("cancel", help="cancel a job",
                       description="Cancel JOB_ID on your party. On the initiator this ends the job on every party; "
                                   "elsewhere it ends this party's part, which fails the job.",
                       epilog=_epilog(), formatter_class=fmt)
    c.add_argument("job_id", metavar="JOB_ID")
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--reason", default="", help="reason recorded in the audit log and shown to the parties")
    c.set_defaults(func=cmd_cancel)

    audit = sub.add_parser("audit", help="check the audit log", description="Check a party's audit log.",
                           epilog=_epilog(), formatter_class=fmt)
    asub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    asub.required = True
    c = asub.add_parser("verify", help="recompute the audit log's hash chain",
                        description="Recompute the hash chain of <state_dir>/audit.log and report the first broken "
                                    "line. Heads of this log held by peers (--head SEQ:HASH, from their "
                                    "'peer.head' records) also detect truncation and rewriting.",
                        epilog=_epilog(), formatter_class=fmt)
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--party", metavar="CONFIG", help="your party's config TOML")
    g.add_argument("--log", metavar="PATH", help="an audit log file")
    c.add_argument("--head", action="append", metavar="SEQ:HASH", help="a known head of this log (repeatable)")
    c.add_argument("--no-peers", action="store_true",
                   help="with --party: do not ask the peers for the heads of this log they hold")
    c.set_defaults(func=cmd_audit_verify)

    from .serving.commands import add_commands  # score, party revoke|reload, model approve-export|export

    add_commands(sub, psub, epilog=_epilog(), fmt=fmt)

    c = sub.add_parser("demo", help="four local parties on the shipped data: PSI, binning, SecureBoost, LR, "
                                    "scorecard, secure-aggregation FedAvg, reports",
                       description="Start four party processes (bank, chain, gov and a data-less supervisor) on "
                                   "loopback with mutual TLS, throwaway certificates and the shipped data, and run "
                                   "three jobs with live progress: sbt (credit3: PSI -> binning -> selection -> "
                                   "SecureBoost over bank, chain, gov), lr (PSI -> binning -> selection -> hetero LR "
                                   "on WOE features -> scorecard -> evaluation over bank and chain) and homo "
                                   "(default_credit homo_bank1..3 as three banks, secure-aggregation FedAvg LR, the "
                                   "supervisor aggregating, evaluated on homo_test). Print each federated model next "
                                   "to the same model trained centrally on the joined data (AUC, KS, time) and the "
                                   "bytes each step put on the wire; write each party's run report (report.html); "
                                   "stop the parties.", epilog=_epilog(), formatter_class=fmt)
    c.add_argument("--data", metavar="DIR",
                   help="data directory holding credit3/ and default_credit/ (default: $FEDCREDIT_DATA, else the "
                        "data sets shipped with fedcredit)")
    c.add_argument("--json", metavar="PATH", help="write the summary as JSON")
    c.add_argument("--keep", action="store_true",
                   help="leave the parties running (and their configs, state and logs) and print how to use them")
    c.add_argument("--quick", action="store_true",
                   help="smaller configuration (20%% of the customers, 2 trees, 1 LR epoch; same 2048-bit keys)")
    c.add_argument("--reports", metavar="DIR",
                   help="copy each party's report.html/report.json here (default ./fedcredit-demo-reports)")
    c.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``fedcredit`` command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        from .party import register_plugin_steps

        register_plugin_steps()
        return int(args.func(args))
    except KeyboardInterrupt:
        print("fedcredit: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BaseException as exc:  # noqa: BLE001 - mapped to an exit code
        code = exit_code_for(exc)
        if args.debug or code == ExitCode.INTERNAL:
            traceback.print_exc()
        msg = str(exc)
        if isinstance(exc, ConfigError) and len(exc.problems) > 1:
            msg = f"{len(exc.problems)} problems:\n  " + "\n  ".join(exc.problems)
        print(f"fedcredit: error: {msg}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
