"""``fedcredit demo``: a federation on one machine, three jobs, a comparison.

Throwaway certificates and party configs (bank, chain, gov and a data-less
``supervisor``) are written to a temporary directory; four ``fedcredit party serve`` **processes** listen on
free loopback ports with mutual TLS; the bank submits the jobs of
:data:`DEMO_JOBS` over the credit3 data and follows them (live progress per
party and step); then the demo process trains the same models centrally on
the joined CSVs (a simulation on one machine: no real federation could do
this) and prints the federated and centralized AUC, KS and time side by
side, with the bytes each step put on the wire (also written as JSON with
``--json``). The parties are stopped unless ``--keep`` is given.

Three jobs. Vertical LR over two hosts needs a key holder without data
(``mode = "coordinated"``, an arbiter) while PSI and SecureBoost take no
arbiter: job ``sbt`` runs PSI → binning → selection → SecureBoost over all
three parties; job ``lr`` runs PSI → binning → selection → hetero LR on WOE
features (``mode = "two_party"``) → scorecard → evaluation over the bank and
chain. Job ``homo`` is horizontal: bank, chain and gov each play a bank with
one of ``default_credit/homo_bank{1,2,3}.csv`` (table ``homo``) and the
supervisor aggregates FedAvg rounds of LR with secure aggregation; the global
model every party saved is evaluated on ``homo_test.csv``.

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

__all__ = ["DEMO_STEPS", "DEMO_LR_STEPS", "DEMO_HOMO_STEPS", "DEMO_JOBS", "DemoJob", "PARTIES", "SUPERVISOR",
           "HOMO_TABLES", "run_demo", "write_federation", "write_job", "Federation", "launch_local", "find_data_dir",
           "free_ports",
           "centralized_baselines", "homo_baselines"]

#: Job ``sbt``, in order: (kind, name, params, params with --quick). Edit this list to extend the demo.
#: SecureBoost holds out a random 20 % drawn from a seed only the guest knows (``early_stopping_rounds`` set to the
#: number of trees: it never stops early, the split only gives the validation AUC/KS and training curve).
DEMO_STEPS: list[tuple[str, str, dict, dict]] = [
    ("handshake", "handshake", {}, {}),
    ("psi", "psi", {}, {}),
    ("binning", "binning", {"max_bins": 10}, {"max_bins": 10}),
    ("select", "select", {"iv_threshold": 0.02}, {"iv_threshold": 0.02}),
    ("secureboost", "secureboost",
     {"n_trees": 5, "max_depth": 3, "learning_rate": 0.3, "max_bins": 32, "early_stopping_rounds": 5,
      "validation_fraction": 0.2},
     {"n_trees": 2, "max_depth": 3, "learning_rate": 0.3, "max_bins": 16, "early_stopping_rounds": 2,
      "validation_fraction": 0.2}),
]

#: Job ``lr`` (bank + chain): hetero LR on the WOE values of the features kept by ``select`` (WOE from the
#: ``binning`` step; AUC 0.775 against 0.721 on standardized raw values, centrally on the same rows), a scorecard
#: (points per bin), evaluated on a random 20 %.
DEMO_LR_STEPS: list[tuple[str, str, dict, dict]] = [
    ("psi", "psi", {}, {}),
    ("binning", "binning", {"max_bins": 10}, {"max_bins": 10}),
    ("select", "select", {"iv_threshold": 0.02}, {"iv_threshold": 0.02}),
    ("hetero_lr", "hetero_lr",
     {"mode": "two_party", "features": "woe", "learning_rate": 1.0, "batch_size": 4000, "max_epochs": 3,
      "validation_fraction": 0.2, "n_iter_no_change": 2},
     {"mode": "two_party", "features": "woe", "learning_rate": 1.0, "batch_size": 4000, "max_epochs": 1,
      "validation_fraction": 0.2, "n_iter_no_change": 2}),
    ("scorecard", "scorecard", {"pdo": 20.0, "base_score": 600.0, "base_odds": 50.0},
     {"pdo": 20.0, "base_score": 600.0, "base_odds": 50.0}),
    ("evaluate", "evaluate", {}, {}),
]

#: Job ``homo`` (bank, chain, gov as three banks; the supervisor aggregates): FedAvg of LR with secure aggregation.
#: The same in --quick (the whole job takes a few seconds). ``n_features`` is filled in from the data.
DEMO_HOMO_STEPS: list[tuple[str, str, dict, dict]] = [
    ("homo", "fedavg",
     {"mode": "secagg", "rounds": 10, "local_epochs": 1, "learning_rate": 0.1, "batch_size": 64, "l2": 1e-4},
     {"mode": "secagg", "rounds": 10, "local_epochs": 1, "learning_rate": 0.1, "batch_size": 64, "l2": 1e-4}),
]


@dataclass(frozen=True)
class DemoJob:
    """One job of the demo: its name, a title, the parties taking part and the steps."""

    name: str
    title: str
    parties: tuple[str, ...]
    steps: list[tuple[str, str, dict, dict]]
    #: party -> (role, table) when not the party's credit3 role and table ``credit``
    roles: dict[str, tuple[str, str | None]] = field(default_factory=dict)


#: The demo's jobs, run one after the other.
DEMO_JOBS: list[DemoJob] = [
    DemoJob("sbt", "SecureBoost over bank + chain + gov", ("bank", "chain", "gov"), DEMO_STEPS),
    DemoJob("lr", "hetero LR on WOE features + scorecard over bank + chain (two-party: no arbiter)",
            ("bank", "chain"), DEMO_LR_STEPS),
    DemoJob("homo", "horizontal FedAvg LR, secure aggregation: bank, chain, gov as three banks; supervisor aggregates",
            ("bank", "chain", "gov", "supervisor"), DEMO_HOMO_STEPS,
            roles={"bank": ("client", "homo"), "chain": ("client", "homo"), "gov": ("client", "homo"),
                   "supervisor": ("aggregator", None)}),
]

#: party -> (role, csv file, label column) of the vertical (credit3) jobs
PARTIES: dict[str, tuple[str, str, str | None]] = {
    "bank": ("guest", "bank.csv", "default_next_month"),
    "chain": ("host", "chain.csv", None),
    "gov": ("host", "gov.csv", None),
}

#: The fourth party: holds no data; aggregates the ``homo`` job.
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
    the demo and by :func:`fedcredit.local_federation`. Stop them with :meth:`Federation.stop`.

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


def demo_steps(quick: bool, steps: list[tuple[str, str, dict, dict]] | None = None) -> list[tuple[str, str, dict]]:
    """The steps (default :data:`DEMO_STEPS`) whose kinds are registered, with quick or full params."""
    from .config import known_step_kinds

    kinds = known_step_kinds()
    return [(k, n, dict(q if quick else p)) for k, n, p, q in (DEMO_STEPS if steps is None else steps) if k in kinds]


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
            "bytes_on_wire": wire, "messages": msgs,
            "bytes_sent": {p: int(v.get("bytes_sent", 0) or 0) for p, v in per_party.items()},
            "result": s["result"],
        })
    return {"job_id": report.get("job_id"), "state": report.get("state"), "reason": report.get("reason"),
            "seconds": round(events_seconds, 3), "steps": steps}


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
                h = int.from_bytes(hashlib.sha256(_norm_id(row[col]).encode()).digest()[:4], "big")
                if h < cut:
                    w.writerow(row)
    return Path(dest)


# --------------------------------------------------------------------------- centralized baselines

def _norm_id(s: str) -> str:
    return str(s).strip().casefold()


def joined_table(data_dir: str | os.PathLike, parties: tuple[str, ...] | list[str]):
    """Join the parties' credit3 CSVs on the id, rows in the PSI-agreed order (ascending normalized id).

    Only a simulation on one machine can do this; it gives the centralized
    baseline. Columns: the guest's features, then each host's (sorted by name).

    Returns
    -------
    X : ndarray of shape (n, f)
    y : ndarray of shape (n,)
    names : list of str
        ``"<party>.<column>"``.
    """
    import numpy as np

    from .data import load_table

    data = Path(data_dir)
    guest = next(p for p in parties if PARTIES[p][0] == "guest")
    order = [guest] + sorted(p for p in parties if p != guest)
    tables = {p: load_table(data / "credit3" / PARTIES[p][1], party=p, label_column=PARTIES[p][2]) for p in order}
    common = None
    for t in tables.values():
        ids = {_norm_id(i) for i in t.ids}
        common = ids if common is None else common & ids
    keys = sorted(common)
    Xs, names = [], []
    for p, t in tables.items():
        pos = {_norm_id(i): k for k, i in enumerate(t.ids)}
        rows = np.fromiter((pos[k] for k in keys), dtype=np.int64, count=len(keys))
        Xs.append(t.X[rows])
        names += list(t.feature_names)
        if p == guest:
            y = t.y[rows].astype(np.int64)
    return np.concatenate(Xs, axis=1), y, names


def _metrics(y, score) -> dict:
    from .models.metrics import auc, ks

    return {"auc": round(float(auc(y, score)), 4), "ks": round(float(ks(y, score)), 4)}


def centralized_baselines(data_dir, sbt_params: dict | None, lr_params: dict | None, *,
                          sbt_parties=("bank", "chain", "gov"), lr_parties=("bank", "chain"),
                          lr_features: list[str] | None = None, binning_params: dict | None = None,
                          sbt_validation_seed: int | None = None) -> dict:
    """Train the demo's models centrally on the joined data, on the validation rows the guest uses.

    Parameters
    ----------
    data_dir : path
        Directory holding ``credit3/``.
    sbt_params : dict or None
        The SecureBoost step's parameters (None: skip).
    lr_params : dict or None
        The hetero_lr step's parameters (None: skip).
    sbt_parties, lr_parties : sequence of str
        Whose tables each job joins.
    lr_features : list of str, optional
        The features ``select`` kept (default: all).
    binning_params : dict, optional
        The binning step's parameters (WOE features when ``lr_params["features"] == "woe"``).
    sbt_validation_seed : int, optional
        The SecureBoost guest's secret validation seed (``GuestModel.validation_seed``, read from the bank's
        own model part: the demo plays every party); None: a split seeded by ``random_state``.

    Returns
    -------
    dict
        ``{"secureboost": [...], "hetero_lr": [...]}``, each a list of
        ``{"name", "auc", "ks", "seconds", "n_train", "n_validation"}``.
    """
    import warnings

    import numpy as np

    out: dict[str, list[dict]] = {}
    if sbt_params is not None:
        from .models.tree.gbdt import GBDTReference, validation_split
        from .protocols.secureboost.spec import GH_BITS, MIN_NODE_ROWS

        X, y, _ = joined_table(data_dir, sbt_parties)
        p = {k: v for k, v in sbt_params.items()
             if k not in ("he", "key_bits", "guest_only_first_tree", "guest_only_trees")}
        p.setdefault("min_node_rows", MIN_NODE_ROWS)  # the federated default
        vf, rs = float(p.get("validation_fraction", 0.2)), int(p.get("random_state", 0))
        seed = rs if sbt_validation_seed is None else int(sbt_validation_seed)
        p["validation_seed"] = seed
        if p.get("early_stopping_rounds") is not None:
            train, valid = validation_split(len(y), vf, seed)  # the reference's split: the guest's, given its seed
        else:
            train, valid = np.arange(len(y)), np.arange(len(y))
        rows = []
        t0 = time.perf_counter()
        ref = GBDTReference(**p, gh_bits=GH_BITS).fit(X, y)
        sec = time.perf_counter() - t0
        rows.append({"name": "GBDTReference (same algorithm)",
                     **_metrics(y[valid], ref.predict_proba(X[valid])[:, 1]), "seconds": round(sec, 3)})
        from sklearn.ensemble import HistGradientBoostingClassifier

        hgb = HistGradientBoostingClassifier(
            max_iter=int(p.get("n_trees", 5)), max_depth=int(p.get("max_depth", 3)),
            learning_rate=float(p.get("learning_rate", 0.3)), max_bins=min(255, int(p.get("max_bins", 32)) - 1),
            l2_regularization=float(p.get("reg_lambda", 1.0)), early_stopping=False, random_state=rs)
        t0 = time.perf_counter()
        hgb.fit(X[train], y[train])
        sec = time.perf_counter() - t0
        rows.append({"name": "sklearn HistGradientBoostingClassifier",
                     **_metrics(y[valid], hgb.predict_proba(X[valid])[:, 1]), "seconds": round(sec, 3)})
        for r in rows:
            r.update(n_train=int(len(train)), n_validation=int(len(valid)))
        out["secureboost"] = rows
    if lr_params is not None:
        from .models.logistic import LogisticRegressionGD, Standardizer, validation_split

        X, y, names = joined_table(data_dir, lr_parties)
        if lr_features is not None:
            keep = [names.index(f) for f in lr_features if f in names]
            X, names = X[:, keep], [names[j] for j in keep]
        p = dict(lr_params)
        vf, rs = float(p.get("validation_fraction", 0.1)), int(p.get("random_state", 0))
        train, valid = validation_split(len(y), vf, rs)
        woe = p.get("features", "standardized") == "woe"
        if woe:  # the binning step's WOE, computed centrally (fit_woe is the reference the protocol equals)
            from .models.woe import fit_woe
            from .protocols.binning.params import BinningParams

            bp = BinningParams.from_dict(dict(binning_params or {}), "binning")
            cat = set(bp.categorical)
            Xs = np.empty_like(X, dtype=np.float64)
            for j, n in enumerate(names):
                b = fit_woe(X[:, j], y, name=n, method=bp.method, max_bins=bp.max_bins,
                            categorical=n in cat or n.split(".", 1)[-1] in cat, min_bin_count=bp.min_bin_count,
                            smoothing=bp.smoothing)
                Xs[:, j] = b.transform(X[:, j])
        else:
            Xs = Standardizer(clip=p.get("clip", 3.0)).fit(X[train]).transform(X)
        on = " on WOE" if woe else ""
        gd_keys = ("learning_rate", "schedule", "decay", "alpha", "batch_size", "max_epochs", "validation_fraction",
                   "n_iter_no_change", "tol", "random_state")
        rows = []
        t0 = time.perf_counter()
        gd = LogisticRegressionGD(**{k: p[k] for k in gd_keys if k in p}).fit(Xs, y)
        sec = time.perf_counter() - t0
        rows.append({"name": f"LogisticRegressionGD{on} (same algorithm)",
                     **_metrics(y[valid], gd.predict_proba(Xs[valid])), "seconds": round(sec, 3)})
        from sklearn.linear_model import LogisticRegression

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk = LogisticRegression(max_iter=1000).fit(Xs[train], y[train])
        sec = time.perf_counter() - t0
        rows.append({"name": f"sklearn LogisticRegression (lbfgs){on}",
                     **_metrics(y[valid], sk.predict_proba(Xs[valid])[:, 1]), "seconds": round(sec, 3)})
        for r in rows:
            r.update(n_train=int(len(train)), n_validation=int(len(valid)))
        out["hetero_lr"] = rows
    return out


def _homo_tables(homo_dir: Path):
    from .data import load_table

    banks = {p: load_table(homo_dir / f, party=p, label_column="y") for p, f in HOMO_TABLES.items()}
    return banks, load_table(homo_dir / HOMO_TEST, party=SUPERVISOR, label_column="y")


def homo_baselines(homo_dir: str | os.PathLike, homo_params: dict) -> list[dict]:
    """The ``homo`` job's comparison rows, evaluated on ``homo_test.csv``.

    * FedAvg with the same parameters simulated in one process (in-memory
      channel, ``mode = "plain"``): the same algorithm; secure aggregation
      must not change the model (its sums are exact to 2^-24 per entry).
    * sklearn ``LogisticRegression`` (lbfgs) trained centrally on the union
      of the three banks' rows — something no bank could do alone.
    """
    import warnings

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from .protocols.homo import FedAvgClassifier
    from .transport.memory import run_local

    banks, test = _homo_tables(Path(homo_dir))
    p = {k: v for k, v in homo_params.items() if k != "n_features"}
    p["mode"] = "plain"
    clients = sorted(banks)

    def role(name):
        def fn(ch):
            est = FedAvgClassifier(**p)
            if name == SUPERVISOR:
                return est.fit(ch, test, role="aggregator", clients=clients, aggregator=SUPERVISOR)
            return est.fit(ch, banks[name], role="client", clients=clients, aggregator=SUPERVISOR)
        return fn

    t0 = time.perf_counter()
    sim = run_local({n: role(n) for n in [SUPERVISOR, *clients]}, timeout=120)[SUPERVISOR]
    rows = [{"name": "FedAvg simulated in one process, plain sums (same algorithm)",
             **_metrics(test.y, sim.predict_proba(test.X)[:, 1]), "seconds": round(time.perf_counter() - t0, 3)}]
    X = np.vstack([banks[c].X for c in clients])
    y = np.concatenate([banks[c].y for c in clients])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = LogisticRegression(max_iter=1000).fit(X, y)
    rows.append({"name": "sklearn LogisticRegression (lbfgs) on the union of the banks",
                 **_metrics(test.y, sk.predict_proba(test.X)[:, 1]), "seconds": round(time.perf_counter() - t0, 3)})
    for r in rows:
        r.update(n_train=int(len(y)), n_validation=int(len(test)))
    return rows


def homo_federated_metrics(model_file: str | os.PathLike, homo_dir: str | os.PathLike) -> dict:
    """AUC/KS on ``homo_test.csv`` of the global model a party saved (``homo_model.json``)."""
    from .protocols.homo import load_model

    _, test = _homo_tables(Path(homo_dir))
    est = load_model(model_file)
    return {**_metrics(test.y, est.predict_proba(test.X)[:, 1]), "n_validation": int(len(test))}


# --------------------------------------------------------------------------- running the demo

def _step_params(steps: list[tuple[str, str, dict]], kind: str) -> dict | None:
    return next((dict(p) for k, _, p in steps if k == kind), None)


def _step_result(job: dict, kind: str) -> dict | None:
    return next((s for s in job["steps"] if s["kind"] == kind), None)


def _sbt_validation_seed(bank_state: Path, job: dict | None) -> int | None:
    """The bank's secret SecureBoost validation seed, from its own model part (None if absent)."""
    from .protocols.secureboost.model import GUEST_FILE, GuestModel

    step = _step_result(job, "secureboost") if job else None
    path = bank_state / "jobs" / str(job["job_id"]) / step["step"] / GUEST_FILE if step else None
    return GuestModel.load(path).validation_seed if path is not None and path.is_file() else None


def _models(jobs: list[dict], baselines: dict) -> list[dict]:
    """The side-by-side rows: each federated model next to its centralized baselines."""
    models = []
    for j in jobs:
        sb = _step_result(j, "secureboost")
        if sb is not None and sb["state"] == "succeeded":
            r = sb["result"]
            v = r.get("validation") or r.get("train") or {}
            models.append({
                "model": "SecureBoost", "job": j["name"], "parties": j["parties"],
                "federated": {"auc": _round(v.get("auc")), "ks": _round(v.get("ks")), "seconds": sb["seconds"],
                              "train_auc": _round((r.get("train") or {}).get("auc")),
                              "trees": r.get("trees"), "key_bits": r.get("key_bits"),
                              "n_validation": r.get("n_validation"), "bytes_on_wire": sb["bytes_on_wire"]},
                "centralized": baselines.get("secureboost", []),
            })
        lr, ev = _step_result(j, "hetero_lr"), _step_result(j, "evaluate")
        if lr is not None and lr["state"] == "succeeded":
            v = ((ev or {}).get("result") or {}).get("validation") or {}
            models.append({
                "model": "hetero LR", "job": j["name"], "parties": j["parties"],
                "federated": {"auc": _round(v.get("auc")), "ks": _round(v.get("ks")), "seconds": lr["seconds"],
                              "train_auc": _round((((ev or {}).get("result") or {}).get("train") or {}).get("auc")),
                              "epochs": lr["result"].get("n_epochs"), "features": sorted(lr["result"].get("coef", {})),
                              "n_validation": v.get("n"), "bytes_on_wire": lr["bytes_on_wire"]},
                "centralized": baselines.get("hetero_lr", []),
            })
        ho = _step_result(j, "homo")
        if ho is not None and ho["state"] == "succeeded" and j.get("homo_eval"):
            r, e = ho["result"], j["homo_eval"]
            models.append({
                "model": "homo LR", "job": j["name"], "parties": j["parties"],
                "federated": {"auc": e.get("auc"), "ks": e.get("ks"), "seconds": ho["seconds"],
                              "mode": (j.get("params", {}).get(ho["step"]) or {}).get("mode"),
                              "rounds": r.get("rounds"), "train_auc": _round(r.get("train_auc")),
                              "n_validation": e.get("n_validation"), "bytes_on_wire": ho["bytes_on_wire"]},
                "centralized": baselines.get("homo", []),
            })
    return models


def _round(x, nd: int = 4):
    return None if x is None else round(float(x), nd)


def _fmt(x, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def _print_tables(say, jobs: list[dict], models: list[dict], human_bytes) -> None:
    say()
    say("What crossed the wire (all parties' bytes sent, per step)")
    say(f"  {'job':<4} {'step':<12} {'kind':<12} {'state':<10} {'seconds':>8} {'on the wire':>12} {'msgs':>6}")
    for j in jobs:
        for s in j["steps"]:
            say(f"  {j['name']:<4} {s['step']:<12} {s['kind']:<12} {s['state']:<10} {s['seconds']:>8.2f} "
                f"{human_bytes(s['bytes_on_wire']):>12} {s['messages']:>6}")
    if not models:
        return
    say()
    say("Federated vs centralized (SecureBoost, hetero LR: the same validation rows, held out by the guest; "
        "homo LR: homo_test.csv; time = training only)")
    rows = []
    for m in models:
        f = m["federated"]
        if m["model"] == "homo LR":
            banks = [p for p in m["parties"] if p != SUPERVISOR]
            where = (f"federated: {' + '.join(banks)} as banks, {SUPERVISOR} aggregates, {f.get('mode')}, "
                     f"{f.get('rounds')} rounds, mTLS")
            central = "on one machine: "
        else:
            where = f"federated: {' + '.join(m['parties'])}, separate processes, mTLS, {f.get('key_bits') or 2048}-bit"
            central = "centralized on the joined data: "
        rows.append((m["model"], where, f["auc"], f["ks"], f"{f['seconds']:>8.1f}s"))
        rows += [("", central + c["name"], c["auc"], c["ks"], f"{c['seconds']:>8.2f}s") for c in m["centralized"]]
    w = max(72, *(len(r[1]) for r in rows))
    say(f"  {'model':<12} {'trained':<{w}} {'AUC':>7} {'KS':>7} {'time':>9}")
    for model, where, a, k, t in rows:
        say(f"  {model:<12} {where:<{w}} {_fmt(a):>7} {_fmt(k):>7} {t:>9}")


def _machine() -> dict:
    import platform

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on every OS
        pass
    return info


def _wait_report(path: Path, state: str) -> dict | None:
    for _ in range(100):
        if path.exists():
            try:
                rep = json.loads(path.read_text())
            except ValueError:  # being replaced
                rep = None
            if rep is not None and rep.get("state") == state:
                return rep
        time.sleep(0.1)
    return json.loads(path.read_text()) if path.exists() else None


def _submit_job(client, root: Path, job: DemoJob, quick: bool, say, extra_params=None) -> tuple[str, list, float]:
    steps = demo_steps(quick, job.steps)
    steps = [(k, n, {**p, **(extra_params or {}).get(k, {})}) for k, n, p in steps]
    parties = {p: _FED_PARTIES[p] for p in job.parties}
    job_path = write_job(root / f"job_{job.name}.toml", steps, name=job.name, parties=parties, roles=job.roles)
    from .config import load_job

    spec = load_job(job_path)
    t1 = time.time()
    job_id = client.submit(spec.to_json(), source=str(job_path))
    say(f"== job {job.name} ({job_id}): {job.title}")
    say(f"   steps: {' -> '.join(n for _, n, _ in steps)}")
    return job_id, steps, t1


def _follow_job(client, bank_state: Path, root: Path, job: DemoJob, job_id: str, steps: list, t1: float,
                show, say) -> dict:
    for e in client.watch(job_id):
        show(dict(e, step=f"{job.name}/{e['step']}" if e.get("step") else e.get("step")), job.name)
    elapsed = time.time() - t1
    row = client.list_jobs(job_id=job_id)[0]
    report = _wait_report(bank_state / "jobs" / job_id / "report.json", row["state"]) or {"steps": [], "parties": {}}
    report.update(job_id=job_id, state=row["state"], reason=row["reason"])
    summary = _summarize(report, elapsed)
    summary.update(name=job.name, title=job.title, parties=list(job.parties), config=str(root / f"job_{job.name}.toml"),
                   params={n: p for _, n, p in steps})
    say(f"== job {job.name} {summary['state']} in {elapsed:.1f}s" + (f": {summary['reason']}" if summary["reason"] else ""))
    return summary


def _run_jobs(client, bank_state: Path, root: Path, jobs: list[DemoJob], quick: bool, disp, say,
              extra_params=None) -> list[dict]:
    """Submit and follow each job in turn (run concurrently they only compete for the same two cores)."""

    def show(e: dict, _job: str) -> None:
        disp.event(e)

    out = []
    for job in jobs:
        say()
        job_id, steps, t1 = _submit_job(client, root, job, quick, disp.line, (extra_params or {}).get(job.name))
        out.append(_follow_job(client, bank_state, root, job, job_id, steps, t1, show, disp.line))
    return out


#: Every party of the demo federation: the credit3 parties and the data-less supervisor.
_FED_PARTIES: dict[str, tuple[str, str | None, str | None]] = {**PARTIES, SUPERVISOR: ("aggregator", None, None)}


def _homo_dir(data: Path) -> Path | None:
    d = data / "default_credit"
    return d if all((d / f).is_file() for f in [*HOMO_TABLES.values(), HOMO_TEST]) else None


def _n_features(csv_path: Path) -> int:
    with open(csv_path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    return len([c for c in header if c not in ("id", "y")])


def _collect_reports(root: Path, jobs: list[dict], dest: Path) -> dict[str, dict[str, str]]:
    """Copy each party's report.json/report.html of every job to ``dest/<job>/<party>/``."""
    out: dict[str, dict[str, str]] = {}
    for j in jobs:
        for p in j["parties"]:
            src = root / "state" / p / "jobs" / str(j["job_id"])
            if not src.is_dir():
                continue
            d = dest / j["name"] / p
            d.mkdir(parents=True, exist_ok=True)
            for name in ("report.json", "report.html"):
                if (src / name).exists():
                    shutil.copy2(src / name, d / name)
            if (d / "report.html").exists():
                out.setdefault(j["name"], {})[p] = str(d / "report.html")
    return out


def run_demo(*, data_dir: str | None = None, json_path: str | None = None, keep: bool = False,
             quick: bool = False, reports_dir: str | None = None, out=None) -> int:
    """Run the demo; returns an exit code (0 when every job succeeded).

    Parameters
    ----------
    data_dir : str, optional
        Directory holding ``credit3/`` (see :func:`find_data_dir`).
    json_path : str, optional
        Write the summary (per-step results and bytes, federated and centralized metrics) as JSON.
    keep : bool, default=False
        Leave the party processes running (and the working directory) and print how to use them.
    quick : bool, default=False
        The smaller configuration: :data:`QUICK_FRACTION` of the customers, fewer trees
        and epochs; same 2048-bit keys.
    reports_dir : str, optional
        Where each party's ``report.html``/``report.json`` are copied (default ``./fedcredit-demo-reports``).
    out : file, optional
        Where to print (default stdout).
    """
    from .certs import TlsFiles
    from .cli import ExitCode, _Display, _human_bytes
    from .config import load_party_config
    from .transport.control import ControlClient, dial

    out = out or sys.stdout
    say = lambda s="": (out.write(s + "\n"), out.flush())  # noqa: E731
    data = find_data_dir(data_dir)
    homo_dir = _homo_dir(data)
    demo_jobs = [j for j in DEMO_JOBS if j.name != "homo" or homo_dir is not None]
    root = Path(tempfile.mkdtemp(prefix="fedcredit-demo-"))
    fed = None
    kept = False
    t_start = time.time()
    try:
        say(f"fedcredit demo ({'quick' if quick else 'full'} configuration): bank (guest, labels), chain and gov "
            f"(hosts) on {data / 'credit3'}" + (f"; for job homo also {HOMO_TABLES['bank']}, {HOMO_TABLES['chain']}, "
                                               f"{HOMO_TABLES['gov']} and {SUPERVISOR} (aggregator, no data)"
                                               if homo_dir else ""))
        if homo_dir is None:
            say(f"job homo skipped: {data / 'default_credit'} lacks the homo_bank*.csv / {HOMO_TEST} files")
        say(f"working directory: {root}" + ("" if keep else " (removed at the end; --keep keeps it)"))
        if quick:
            data = subset_credit3(data, root / "data")
            say(f"--quick: {QUICK_FRACTION:.0%} of the customers (the same ids on every party), fewer trees and "
                f"epochs, same 2048-bit keys")
        fed_parties = _FED_PARTIES if homo_dir else dict(PARTIES)
        homo_tables = {p: {"homo": (homo_dir / f, "y")} for p, f in HOMO_TABLES.items()} if homo_dir else None
        t0 = time.time()
        fed = launch_local(root, data, parties=fed_parties, tables=homo_tables,
                           transport={"deadline": 10.0, "recv_timeout": 300.0})
        configs = fed.configs
        say(f"{len(configs)} party processes up in {time.time() - t0:.1f}s (mutual TLS, throwaway CA): " + ", ".join(
            f"{n} {load_party_config(c).listen} (pid {fed.procs[n].pid})" for n, c in configs.items()))
        cfg = load_party_config(configs["bank"])
        ch = dial(cfg.connect_address, target="bank", tls=TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key))
        client = ControlClient(ch, "bank")
        disp = _Display(out)
        try:
            extra = {"homo": {"homo": {"n_features": _n_features(homo_dir / HOMO_TABLES["bank"])}}} if homo_dir else {}
            jobs = _run_jobs(client, Path(cfg.state_dir), root, demo_jobs, quick, disp, say, extra)
        finally:
            ch.close()
        fed_seconds = time.time() - t0

        say()
        say("centralized baselines (the demo process joins the CSVs: possible only in a simulation) ...")
        sbt_job = next((j for j in jobs if _step_result(j, "secureboost")), None)
        lr_job = next((j for j in jobs if _step_result(j, "hetero_lr")), None)
        sel = _step_result(lr_job, "select") if lr_job else None
        t0 = time.time()
        baselines = centralized_baselines(
            data,
            sbt_job["params"].get("secureboost") if sbt_job else None,
            lr_job["params"].get("hetero_lr") if lr_job else None,
            sbt_parties=tuple(sbt_job["parties"]) if sbt_job else (),
            lr_parties=tuple(lr_job["parties"]) if lr_job else (),
            lr_features=(sel["result"].get("kept") if sel and sel["state"] == "succeeded" else None),
            binning_params=lr_job["params"].get("binning") if lr_job else None,
            sbt_validation_seed=_sbt_validation_seed(Path(cfg.state_dir), sbt_job),
        )
        homo_job = next((j for j in jobs if _step_result(j, "homo")), None)
        if homo_job is not None:
            baselines["homo"] = homo_baselines(homo_dir, homo_job["params"]["fedavg"])
            step = _step_result(homo_job, "homo")
            model_file = root / "state" / SUPERVISOR / "jobs" / str(homo_job["job_id"]) / step["step"] / "homo_model.json"
            if step["state"] == "succeeded" and model_file.is_file():
                # the aggregator's copy of the global model, on the held-out set (the party runtime gives an
                # aggregator no table of its own, so the demo scores the saved model on homo_test.csv)
                homo_job["homo_eval"] = homo_federated_metrics(model_file, homo_dir)
        base_seconds = time.time() - t0
        models = _models(jobs, baselines)
        _print_tables(say, jobs, models, _human_bytes)

        state = "succeeded" if jobs and all(j["state"] == "succeeded" for j in jobs) else "failed"
        dest = Path(reports_dir or "fedcredit-demo-reports").resolve()
        reports = _collect_reports(root, jobs, dest)
        total = time.time() - t_start
        summary = {
            "configuration": "quick" if quick else "full",
            "state": state,
            "seconds": round(total, 2),
            "seconds_federated": round(fed_seconds, 2),
            "seconds_centralized": round(base_seconds, 2),
            "machine": _machine(),
            "data": str(data / "credit3"),
            "jobs": jobs,
            "steps": [dict(s, job=j["name"]) for j in jobs for s in j["steps"]],
            "bytes_on_wire": {j["name"]: {s["step"]: s["bytes_on_wire"] for s in j["steps"]} for j in jobs},
            "models": models,
            "centralized": baselines,
            "reports": reports,
        }
        say()
        if reports:
            say(f"run reports (open in a browser): {dest}/<job>/<party>/report.html, e.g.")
            for jname, per in reports.items():
                say(f"  {per.get('bank') or next(iter(per.values()))}")
        outcome = "; ".join(f"job {j['name']} {j['state']}" for j in jobs)
        say(f"demo {state} ({outcome}) in {total:.1f}s total, {'quick' if quick else 'full'} configuration, "
            f"2048-bit Paillier keys")
        for j in jobs:
            if j["state"] != "succeeded":
                say(f"job {j['name']} {j['state']}: {j['reason']}")
        if json_path:
            Path(json_path).write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
            say(f"summary written to {json_path}")
        if keep:
            kept = True
            _print_keep(say, root, configs, fed)
        return ExitCode.OK if state == "succeeded" else ExitCode.JOB_FAILED
    finally:
        if fed is not None and not kept:
            fed.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _print_keep(say, root: Path, configs: dict[str, Path], fed: Federation) -> None:
    say()
    say(f"the parties keep running (--keep); working directory {root}")
    for n, c in configs.items():
        say(f"  {n:<6} pid {fed.procs[n].pid:<8} config {c}   log {c.parent / (n + '.out')}")
    say("talk to them:")
    say(f"  fedcredit party health --all {configs['bank']}")
    say(f"  fedcredit jobs list --party {configs['bank']}")
    for p in sorted(root.glob("job_*.toml")):
        say(f"  fedcredit run {p} --party {configs['bank']}")
    say(f"  fedcredit audit verify --party {configs['chain']}")
    say("stop them:")
    say(f"  kill {' '.join(str(p.pid) for p in fed.procs.values())}")
