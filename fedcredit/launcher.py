"""A local federation of real party processes: certificates, configs, ``fedcredit party serve`` processes.

:func:`launch_local` writes a throwaway CA, a certificate and a config per party
(:func:`write_federation`) and starts one ``fedcredit party serve`` **process** each on free
loopback ports with mutual TLS (:class:`Federation`); :func:`write_job` writes a job file over
them. This is what ``fedcredit demo``, :func:`fedcredit.local_federation`, the integration
tests and the benchmarks run on: the same party code, the same gRPC + mTLS transport as a
real deployment, on one machine.

The default parties are the credit3 data set's (:data:`PARTIES`: bank, the label holder, and
the platforms chain and gov) plus, where a job needs one, the data-less :data:`SUPERVISOR`
(an arbiter or an aggregator). :func:`find_data_dir` locates the data; :func:`subset_credit3`
keeps a hashed share of the customers, the same on every party.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, FedcreditError, PeerError

__all__ = ["PARTIES", "SUPERVISOR", "HOMO_TABLES", "HOMO_TEST", "QUICK_FRACTION", "find_data_dir", "free_ports",
           "write_federation", "write_job", "Federation", "launch_local", "subset_credit3", "norm_id"]

#: party -> (role, csv file, label column) of the vertical (credit3) jobs
PARTIES: dict[str, tuple[str, str, str | None]] = {
    "bank": ("guest", "bank.csv", "default_next_month"),
    "chain": ("host", "chain.csv", None),
    "gov": ("host", "gov.csv", None),
}

#: The fourth party: holds no data; the arbiter of a coordinated LR job, the aggregator of a horizontal one.
SUPERVISOR = "supervisor"

#: Table ``homo`` of each demo party (``default_credit/``, label ``y``): three banks, same features, other customers.
HOMO_TABLES: dict[str, str] = {"bank": "homo_bank1.csv", "chain": "homo_bank2.csv", "gov": "homo_bank3.csv"}
#: Held-out set the ``homo`` job's global model is evaluated on.
HOMO_TEST = "homo_test.csv"


def find_data_dir(data: str | os.PathLike | None = None) -> Path:
    """The data directory holding ``credit3/`` (and ``default_credit/``).

    ``data`` (``--data DIR``), else ``$FEDCREDIT_DATA``, else the data sets shipped inside the package,
    written out once as plain CSV files (:func:`fedcredit.datasets.data_dir`): nothing outside the
    installed package is needed.
    """
    given = data or os.environ.get("FEDCREDIT_DATA")
    if not given:
        from .datasets import data_dir

        return data_dir()
    d = Path(given).expanduser()
    missing = [f for f in ("bank.csv", "chain.csv", "gov.csv") if not (d / "credit3" / f).is_file()]
    if missing:
        raise ConfigError(
            f"demo data not found: {d / 'credit3'} lacks {', '.join(missing)}; pass --data DIR (the directory "
            f"containing credit3/), set FEDCREDIT_DATA, or set neither to use the data sets shipped with fedcredit"
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
    tables: dict[str, dict[str, tuple[str | os.PathLike, str | None]]] | None = None,
) -> dict[str, Path]:
    """Write a CA, party certificates and party configs under ``root``.

    Parameters
    ----------
    root : path
        ``certs/``, ``<party>.toml`` and ``state/<party>/`` go here.
    data_dir : path
        Directory holding ``credit3/``.
    parties : dict, optional
        ``{name: (role, csv, label)}``; default :data:`PARTIES`. ``csv`` None: no ``credit`` table.
    ports : dict, optional
        ``{name: port}``; default free ports.
    policy : dict, optional
        Per party, extra ``[policy]`` keys (TOML-able values) overriding the defaults.
    transport : dict, optional
        ``[transport]`` keys for every party.
    tables : dict, optional
        More tables per party: ``{party: {table: (csv path, label column)}}``.

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
            *_table_lines("credit", Path(data_dir) / "credit3" / csv if csv else None, label),
            *[line for t, (tpath, tlabel) in (tables or {}).get(name, {}).items()
              for line in _table_lines(t, tpath, tlabel)],
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


def _table_lines(table: str, path, label: str | None) -> list[str]:
    if path is None:
        return []
    return [f"[tables.{table}]", f"path = {_toml_str(path)}", 'id_column = "id"',
            *([f"label_column = {_toml_str(label)}"] if label else []), ""]


def write_job(path: str | os.PathLike, steps: list[tuple[str, str, dict]], *, name: str = "demo",
              parties: dict[str, tuple[str, str, str | None]] | None = None,
              roles: dict[str, tuple[str, str | None]] | None = None) -> Path:
    """Write a job file over ``parties`` (each with table ``credit``) with ``steps`` = [(kind, name, params)].

    ``roles`` overrides a party's role and table (``{party: (role, table or None)}``).
    """
    parties = parties or PARTIES
    roles = roles or {}
    lines = ["[job]", f"name = {_toml_str(name)}", 'purpose = "credit-risk-model"', ""]
    for p, (role, _, _) in parties.items():
        role, table = roles.get(p, (role, "credit"))
        lines += [f"[parties.{p}]", f"role = {_toml_str(role)}", *([f"table = {_toml_str(table)}"] if table else []), ""]
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


def launch_local(
    root: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    parties: dict[str, tuple[str, str | None, str | None]] | None = None,
    tables: dict[str, dict[str, tuple[str | os.PathLike, str | None]]] | None = None,
    ports: dict[str, int] | None = None,
    policy: dict[str, dict[str, Any]] | None = None,
    transport: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Federation:
    """Write a throwaway CA, certificates and configs under ``root`` and start one party process each.

    :func:`write_federation` (same parameters) then :meth:`Federation.start`: every party is a
    ``fedcredit party serve`` process on loopback with mutual TLS, healthy when this returns. Used by
    ``fedcredit demo`` and by :func:`fedcredit.local_federation`. Stop them with :meth:`Federation.stop`.

    Returns
    -------
    Federation
        With ``configs`` (``{party: config path}``) and the running processes.
    """
    configs = write_federation(root, data_dir if data_dir is not None else root, parties=parties, ports=ports,
                               policy=policy, transport=transport, tables=tables)
    fed = Federation(configs, env=env)
    try:
        fed.start(timeout=timeout)
    except BaseException:
        fed.stop()
        raise
    return fed


#: Share of the credit3 customers ``--quick`` keeps (the same customers on every party, chosen by a hash of the id).
QUICK_FRACTION = 0.2


def subset_credit3(src: str | os.PathLike, dest: str | os.PathLike, fraction: float = QUICK_FRACTION) -> Path:
    """Copy the credit3 CSVs keeping the customers whose id hashes below ``fraction`` (same ids on every party).

    Returns the new data directory (``dest``, holding ``credit3/``).
    """
    import csv
    import hashlib

    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1]; got {fraction!r}")
    cut = int(fraction * 2**32)
    out = Path(dest) / "credit3"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("bank.csv", "chain.csv", "gov.csv"):
        with open(Path(src) / "credit3" / name, newline="", encoding="utf-8") as fi, \
                open(out / name, "w", newline="", encoding="utf-8") as fo:
            r, w = csv.reader(fi), csv.writer(fo)
            header = next(r)
            w.writerow(header)
            col = header.index("id")
            for row in r:
                h = int.from_bytes(hashlib.sha256(norm_id(row[col]).encode()).digest()[:4], "big")
                if h < cut:
                    w.writerow(row)
    return Path(dest)


def norm_id(s: str) -> str:
    """An id as PSI compares it (stripped, case-folded)."""
    return str(s).strip().casefold()
