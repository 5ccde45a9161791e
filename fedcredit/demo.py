"""``fedcredit demo``: a three-party federation on one machine, one job, a summary.

Throwaway certificates and party configs (bank, chain, gov) are written to a
temporary directory; three ``fedcredit party serve`` **processes** listen on
free loopback ports with mutual TLS; the bank submits a job over the credit3
data and follows it; a summary per step is printed (and written as JSON with
``--json``); the parties are stopped.

The job's steps are :data:`DEMO_STEPS` (edit that one list to extend the demo);
a step is skipped while its kind is not yet in the registry.

The helpers (:func:`write_federation`, :class:`Federation`) are also used by
the integration tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, FedcreditError, PeerError

__all__ = ["DEMO_STEPS", "PARTIES", "run_demo", "write_federation", "Federation", "find_data_dir", "free_ports"]

#: The demo job, in order: (kind, name, params, params with --quick). Edit this list to extend the demo.
DEMO_STEPS: list[tuple[str, str, dict, dict]] = [
    ("handshake", "handshake", {}, {}),
    ("psi", "psi", {}, {}),
]

#: party -> (role, csv file, label column)
PARTIES: dict[str, tuple[str, str, str | None]] = {
    "bank": ("guest", "bank.csv", "default_next_month"),
    "chain": ("host", "chain.csv", None),
    "gov": ("host", "gov.csv", None),
}

_REPO = Path(__file__).resolve().parents[1]


def find_data_dir(data: str | os.PathLike | None = None) -> Path:
    """The data directory holding ``credit3/`` (``--data``, ``$FEDCREDIT_DATA``, or ``<repo>/../shared/data``)."""
    d = Path(data or os.environ.get("FEDCREDIT_DATA") or _REPO.parent / "shared" / "data").expanduser()
    missing = [f for f in ("bank.csv", "chain.csv", "gov.csv") if not (d / "credit3" / f).is_file()]
    if missing:
        raise ConfigError(
            f"demo data not found: {d / 'credit3'} lacks {', '.join(missing)}; pass --data DIR (the directory "
            f"containing credit3/) or set FEDCREDIT_DATA"
        )
    return d.resolve()


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _toml_str(v: Any) -> str:
    return json.dumps(str(v))


def write_federation(
    root: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    parties: dict[str, tuple[str, str, str | None]] | None = None,
    ports: dict[str, int] | None = None,
    policy: dict[str, dict[str, Any]] | None = None,
    transport: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write a CA, party certificates and party configs under ``root``.

    Parameters
    ----------
    root : path
        ``certs/``, ``<party>.toml`` and ``state/<party>/`` go here.
    data_dir : path
        Directory holding ``credit3/``.
    parties : dict, optional
        ``{name: (role, csv, label)}``; default :data:`PARTIES`.
    ports : dict, optional
        ``{name: port}``; default free ports.
    policy : dict, optional
        Per party, extra ``[policy]`` keys (TOML-able values) overriding the defaults.
    transport : dict, optional
        ``[transport]`` keys for every party.

    Returns
    -------
    dict of str to Path
        ``{party: config path}``.
    """
    from .certs import init_ca, issue
    from .config import known_step_kinds

    root = Path(root)
    parties = parties or PARTIES
    ports = ports or dict(zip(parties, free_ports(len(parties))))
    certs = root / "certs"
    init_ca(certs)
    guest = next(n for n, (role, _, _) in parties.items() if role == "guest")
    out = {}
    for name, (role, csv, label) in parties.items():
        issue(certs, name)
        pol = {"proposers": [guest], "allowed_steps": list(known_step_kinds()), "min_intersection": 100}
        pol.update((policy or {}).get(name, {}))
        lines = [
            "[party]",
            f"name = {_toml_str(name)}",
            f"listen = {_toml_str(f'127.0.0.1:{ports[name]}')}",
            f"state_dir = {_toml_str(f'state/{name}')}",
            "",
            "[tls]",
            'ca = "certs/ca.crt"',
            f"cert = {_toml_str(f'certs/{name}.crt')}",
            f"key = {_toml_str(f'certs/{name}.key')}",
            "",
            "[peers]",
            *[f"{p} = {_toml_str(f'127.0.0.1:{ports[p]}')}" for p in parties if p != name],
            "",
            "[tables.credit]",
            f"path = {_toml_str(Path(data_dir) / 'credit3' / csv)}",
            'id_column = "id"',
            *([f"label_column = {_toml_str(label)}"] if label else []),
            "",
            "[policy]",
            *[f"{k} = {json.dumps(v)}" for k, v in pol.items()],
            "",
            "[transport]",
            *[f"{k} = {json.dumps(v)}" for k, v in (transport or {}).items()],
            "",
        ]
        path = root / f"{name}.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        out[name] = path
    return out


def write_job(path: str | os.PathLike, steps: list[tuple[str, str, dict]], *, name: str = "demo",
              parties: dict[str, tuple[str, str, str | None]] | None = None) -> Path:
    """Write a job file over ``parties`` (each with table ``credit``) with ``steps`` = [(kind, name, params)]."""
    parties = parties or PARTIES
    lines = ["[job]", f"name = {_toml_str(name)}", 'purpose = "credit-risk-model"', ""]
    for p, (role, _, _) in parties.items():
        lines += [f"[parties.{p}]", f"role = {_toml_str(role)}", 'table = "credit"', ""]
    for kind, sname, params in steps:
        lines += ["[[steps]]", f"kind = {_toml_str(kind)}", f"name = {_toml_str(sname)}"]
        if params:
            lines += ["[steps.params]", *[f"{k} = {json.dumps(v)}" for k, v in params.items()]]
        lines.append("")
    path = Path(path)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class Federation:
    """Party processes started from configs; stop them with :meth:`stop` (or use as a context manager)."""

    configs: dict[str, Path]
    env: dict[str, str] | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, names: list[str] | None = None, *, timeout: float = 30.0) -> None:
        env = dict(os.environ, **(self.env or {}))
        env.setdefault("PYTHONUNBUFFERED", "1")
        for name in names or list(self.configs):
            cfg = self.configs[name]
            logf = open(cfg.parent / f"{name}.out", "ab")  # noqa: SIM115 - closed with the process
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "fedcredit.cli", "party", "serve", str(cfg)],
                stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=str(cfg.parent),
            )
            logf.close()
        self.wait_healthy(names or list(self.configs), timeout=timeout)

    def wait_healthy(self, names: list[str], *, timeout: float = 30.0) -> None:
        from .certs import TlsFiles
        from .config import load_party_config
        from .transport.control import ControlClient, dial

        deadline = time.monotonic() + timeout
        for name in names:
            cfg = load_party_config(self.configs[name])
            tls = TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key)
            ch = dial(cfg.connect_address, target=name, tls=tls)
            try:
                while True:
                    proc = self.procs.get(name)
                    if proc is not None and proc.poll() is not None:
                        out = (self.configs[name].parent / f"{name}.out").read_text(errors="replace")[-2000:]
                        raise FedcreditError(f"party {name!r} exited with code {proc.returncode}:\n{out}")
                    try:
                        if ControlClient(ch, name, timeout=2.0).health()["serving"]:
                            break
                    except PeerError:
                        pass
                    if time.monotonic() > deadline:
                        raise PeerError(f"party {name!r} did not become healthy within {timeout:g}s", peer=name)
                    time.sleep(0.1)
            finally:
                ch.close()

    def kill(self, name: str) -> None:
        """Kill a party process abruptly (SIGKILL), as a crash would."""
        p = self.procs.pop(name)
        p.kill()
        p.wait(10)

    def stop(self, names: list[str] | None = None, *, timeout: float = 15.0) -> dict[str, int]:
        """SIGTERM (graceful stop), then SIGKILL after ``timeout``; returns exit codes."""
        codes = {}
        names = names or list(self.procs)
        for n in names:
            p = self.procs.get(n)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for n in names:
            p = self.procs.pop(n, None)
            if p is None:
                continue
            try:
                codes[n] = p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[n] = p.wait(5)
        return codes

    def __enter__(self) -> "Federation":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def demo_steps(quick: bool) -> list[tuple[str, str, dict]]:
    """The :data:`DEMO_STEPS` whose kinds are registered, with quick or full params."""
    from .config import known_step_kinds

    kinds = known_step_kinds()
    return [(k, n, q if quick else p) for k, n, p, q in DEMO_STEPS if k in kinds]


def _summarize(report: dict, events_seconds: float) -> dict:
    steps = []
    parties = report.get("parties", {})
    for s in report.get("steps", []):
        per_party = {p: d["steps"].get(s["step"], {}) for p, d in parties.items()}
        wire = sum(int(v.get("bytes_sent", 0) or 0) for v in per_party.values())
        msgs = sum(int(v.get("messages_sent", 0) or 0) for v in per_party.values())
        secs = max([float(v.get("seconds", 0) or 0) for v in per_party.values()] + [s["seconds"] or 0])
        steps.append({
            "step": s["step"], "kind": s["kind"], "state": s["state"], "seconds": round(secs, 3),
            "bytes_on_wire": wire, "messages": msgs, "result": s["result"],
        })
    return {"job_id": report.get("job_id"), "state": report.get("state"), "reason": report.get("reason"),
            "seconds": round(events_seconds, 3), "steps": steps}


def _result_summary(result: dict) -> str:
    text = json.dumps(result, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def run_demo(*, data_dir: str | None = None, json_path: str | None = None, keep: bool = False,
             quick: bool = False, out=None) -> int:
    """Run the demo; returns an exit code (0 when the job succeeded)."""
    from .cli import ExitCode, _Display, _human_bytes
    from .config import load_job, load_party_config
    from .transport.control import ControlClient, dial
    from .certs import TlsFiles

    out = out or sys.stdout
    say = lambda s="": (out.write(s + "\n"), out.flush())  # noqa: E731
    data = find_data_dir(data_dir)
    root = Path(tempfile.mkdtemp(prefix="fedcredit-demo-"))
    fed = None
    try:
        steps = demo_steps(quick)
        say(f"fedcredit demo: 3 parties (bank = guest, chain and gov = hosts) on {data / 'credit3'}")
        say(f"working directory: {root}" + ("" if keep else " (removed at the end; --keep keeps it)"))
        configs = write_federation(root, data, transport={"deadline": 10.0, "recv_timeout": 300.0})
        job_path = write_job(root / "demo_job.toml", steps)
        fed = Federation(configs)
        t0 = time.time()
        fed.start()
        say(f"parties up in {time.time() - t0:.1f}s: " + ", ".join(
            f"{n} ({load_party_config(c).listen})" for n, c in configs.items()))
        cfg = load_party_config(configs["bank"])
        ch = dial(cfg.connect_address, target="bank", tls=TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key))
        client = ControlClient(ch, "bank")
        job = load_job(job_path)
        t1 = time.time()
        job_id = client.submit(job.to_json(), source=str(job_path))
        say(f"job {job_id}: steps {', '.join(n for _, n, _ in steps)}")
        disp = _Display(out)
        for e in client.watch(job_id):
            disp.event(e)
        elapsed = time.time() - t1
        row = client.list_jobs(job_id=job_id)[0]
        ch.close()
        report_path = Path(cfg.state_dir) / "jobs" / job_id / "report.json"
        for _ in range(50):
            if report_path.exists() and json.loads(report_path.read_text()).get("state") == row["state"]:
                break
            time.sleep(0.1)
        report = json.loads(report_path.read_text()) if report_path.exists() else {"steps": [], "parties": {}}
        report.update(job_id=job_id, state=row["state"], reason=row["reason"])
        summary = _summarize(report, elapsed)
        say()
        say(f"{'step':<14} {'kind':<12} {'state':<10} {'seconds':>8} {'on the wire':>12} {'msgs':>5}  result (bank)")
        for s in summary["steps"]:
            say(f"{s['step']:<14} {s['kind']:<12} {s['state']:<10} {s['seconds']:>8.2f} "
                f"{_human_bytes(s['bytes_on_wire']):>12} {s['messages']:>5}  {_result_summary(s['result'])}")
        say(f"job {summary['state']} in {elapsed:.1f}s" + (f": {summary['reason']}" if summary["reason"] else ""))
        if json_path:
            Path(json_path).write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
            say(f"summary written to {json_path}")
        return ExitCode.OK if summary["state"] == "succeeded" else ExitCode.JOB_FAILED
    finally:
        if fed is not None:
            fed.stop()
        if keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
