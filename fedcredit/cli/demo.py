"""``fedcredit demo``: a federation on one machine, three jobs, a comparison.

Throwaway certificates and party configs (bank, chain, gov and a data-less
``supervisor``) are written to a temporary directory; four ``fedcredit party serve`` **processes** listen on
free loopback ports with mutual TLS (:func:`fedcredit.launcher.launch_local`); the bank submits the jobs of
:data:`DEMO_JOBS` over the credit3 data and follows them with ``fedcredit run``'s own submit and
watch (:mod:`fedcredit.cli.run`: live progress per party and step); then the demo process trains
the same models centrally on the joined CSVs (:mod:`fedcredit.baselines`: a simulation on one
machine, no real federation could do this) and prints the federated and centralized AUC, KS and
time side by side, with the bytes each step put on the wire (also written as JSON with
``--json``). The parties are stopped unless ``--keep`` is given.

Three jobs. Job ``sbt`` runs PSI → binning → selection → SecureBoost over the three data parties
(SecureBoost takes no arbiter). Job ``lr`` runs PSI → binning → selection → hetero LR on WOE
features → scorecard → evaluation over the same three data parties: vertical LR with two hosts
needs a key holder without data (``mode = "coordinated"``), the supervisor as arbiter, which the
data steps skip. Job ``homo`` is horizontal: bank, chain and gov each play a bank with one of
``default_credit/homo_bank{1,2,3}.csv`` (table ``homo``) and the supervisor aggregates FedAvg
rounds of LR with secure aggregation; the global model every party saved is evaluated on
``homo_test.csv``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..baselines import centralized_baselines, homo_baselines, homo_federated_metrics
from ..launcher import (HOMO_TABLES, HOMO_TEST, PARTIES, QUICK_FRACTION, SUPERVISOR, Federation, find_data_dir,
                        launch_local, subset_credit3, write_job)
from ..progress import EventDisplay, human_bytes, summarize_report, wait_report
from .exit_codes import ExitCode
from .run import job_record, submit, watch

__all__ = ["DEMO_STEPS", "DEMO_LR_STEPS", "DEMO_HOMO_STEPS", "DEMO_JOBS", "DemoJob", "demo_steps", "run_demo",
           "add_commands", "cmd_demo"]

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

#: Job ``lr`` (bank + chain + gov, the supervisor as arbiter): coordinated hetero LR on the WOE values of the
#: features kept by ``select`` (WOE from the ``binning`` step: better than standardized raw values, centrally on the
#: same rows), a scorecard (points per bin), evaluated on a random 20 %. Two hosts need the data-less key holder
#: (``mode = "coordinated"``); PSI, binning, selection and the scorecard skip it.
DEMO_LR_STEPS: list[tuple[str, str, dict, dict]] = [
    ("psi", "psi", {}, {}),
    ("binning", "binning", {"max_bins": 10}, {"max_bins": 10}),
    ("select", "select", {"iv_threshold": 0.02}, {"iv_threshold": 0.02}),
    ("hetero_lr", "hetero_lr",
     {"mode": "coordinated", "features": "woe", "learning_rate": 1.0, "batch_size": 4000, "max_epochs": 3,
      "validation_fraction": 0.2, "n_iter_no_change": 2},
     {"mode": "coordinated", "features": "woe", "learning_rate": 1.0, "batch_size": 4000, "max_epochs": 1,
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
    DemoJob("lr", "hetero LR on WOE features + scorecard over bank + chain + gov (coordinated: supervisor is arbiter)",
            ("bank", "chain", "gov", "supervisor"), DEMO_LR_STEPS, roles={"supervisor": ("arbiter", None)}),
    DemoJob("homo", "horizontal FedAvg LR, secure aggregation: bank, chain, gov as three banks; supervisor aggregates",
            ("bank", "chain", "gov", "supervisor"), DEMO_HOMO_STEPS,
            roles={"bank": ("client", "homo"), "chain": ("client", "homo"), "gov": ("client", "homo"),
                   "supervisor": ("aggregator", None)}),
]


def demo_steps(quick: bool, steps: list[tuple[str, str, dict, dict]] | None = None) -> list[tuple[str, str, dict]]:
    """The steps (default :data:`DEMO_STEPS`) whose kinds are registered, with quick or full params."""
    from ..config import known_step_kinds

    kinds = known_step_kinds()
    return [(k, n, dict(q if quick else p)) for k, n, p, q in (DEMO_STEPS if steps is None else steps) if k in kinds]


def _step_params(steps: list[tuple[str, str, dict]], kind: str) -> dict | None:
    return next((dict(p) for k, _, p in steps if k == kind), None)


def _step_result(job: dict, kind: str) -> dict | None:
    return next((s for s in job["steps"] if s["kind"] == kind), None)


def _sbt_validation_seed(bank_state: Path, job: dict | None) -> int | None:
    """The bank's secret SecureBoost validation seed, from its own model part (None if absent)."""
    from ..protocols.secureboost.model import GUEST_FILE, GuestModel

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
            data_parties = [p for p in m["parties"] if p != SUPERVISOR]
            arbiter = f", {SUPERVISOR} arbiter" if SUPERVISOR in m["parties"] else ""
            where = (f"federated: {' + '.join(data_parties)}{arbiter}, separate processes, mTLS, "
                     f"{f.get('key_bits') or 2048}-bit")
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


def _submit_job(client, root: Path, job: DemoJob, quick: bool, say, extra_params=None) -> tuple[str, list, float]:
    from ..config import load_job

    steps = demo_steps(quick, job.steps)
    steps = [(k, n, {**p, **(extra_params or {}).get(k, {})}) for k, n, p in steps]
    parties = {p: _FED_PARTIES[p] for p in job.parties}
    job_path = write_job(root / f"job_{job.name}.toml", steps, name=job.name, parties=parties, roles=job.roles)
    t1 = time.time()
    job_id = submit(client, load_job(job_path), job_path)  # as 'fedcredit run JOB' does
    say(f"== job {job.name} ({job_id}): {job.title}")
    say(f"   steps: {' -> '.join(n for _, n, _ in steps)}")
    return job_id, steps, t1


def _follow_job(client, bank_state: Path, root: Path, job: DemoJob, job_id: str, steps: list, t1: float,
                disp: EventDisplay) -> dict:
    watch(client, job_id, disp, prefix=job.name)  # as 'fedcredit run' does; Ctrl-C cancels the job
    elapsed = time.time() - t1
    row = job_record(client, job_id, "bank")
    report = wait_report(bank_state / "jobs" / job_id / "report.json", row["state"]) or {"steps": [], "parties": {}}
    report.update(job_id=job_id, state=row["state"], reason=row["reason"])
    summary = summarize_report(report, elapsed)
    summary.update(name=job.name, title=job.title, parties=list(job.parties), config=str(root / f"job_{job.name}.toml"),
                   params={n: p for _, n, p in steps})
    disp.line(f"== job {job.name} {summary['state']} in {elapsed:.1f}s"
              + (f": {summary['reason']}" if summary["reason"] else ""))
    return summary


def _run_jobs(client, bank_state: Path, root: Path, jobs: list[DemoJob], quick: bool, disp: EventDisplay,
              extra_params=None) -> list[dict]:
    """Submit and follow each job in turn (run concurrently they only compete for the same two cores)."""
    summaries = []
    for job in jobs:
        disp.line()
        job_id, steps, t1 = _submit_job(client, root, job, quick, disp.line, (extra_params or {}).get(job.name))
        summaries.append(_follow_job(client, bank_state, root, job, job_id, steps, t1, disp))
    return summaries


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
    from ..config import load_party_config
    from ..own_party import own_control

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
            f"(hosts) on {data / 'credit3'}, {SUPERVISOR} (no data: arbiter of job lr"
            + (f", aggregator of job homo on {HOMO_TABLES['bank']}, {HOMO_TABLES['chain']}, {HOMO_TABLES['gov']})"
               if homo_dir else ")"))
        if homo_dir is None:
            say(f"job homo skipped: {data / 'default_credit'} lacks the homo_bank*.csv / {HOMO_TEST} files")
        say(f"working directory: {root}" + ("" if keep else " (removed at the end; --keep keeps it)"))
        if quick:
            data = subset_credit3(data, root / "data")
            say(f"--quick: {QUICK_FRACTION:.0%} of the customers (the same ids on every party), fewer trees and "
                f"epochs, same 2048-bit keys")
        homo_tables = {p: {"homo": (homo_dir / f, "y")} for p, f in HOMO_TABLES.items()} if homo_dir else None
        t0 = time.time()
        fed = launch_local(root, data, parties=_FED_PARTIES, tables=homo_tables,
                           transport={"deadline": 10.0, "recv_timeout": 300.0})
        configs = fed.configs
        say(f"{len(configs)} party processes up in {time.time() - t0:.1f}s (mutual TLS, throwaway CA): " + ", ".join(
            f"{n} {load_party_config(c).listen} (pid {fed.procs[n].pid})" for n, c in configs.items()))
        cfg = load_party_config(configs["bank"])
        client, ch = own_control(cfg)
        disp = EventDisplay(out)
        try:
            extra = {"homo": {"homo": {"n_features": _n_features(homo_dir / HOMO_TABLES["bank"])}}} if homo_dir else {}
            jobs = _run_jobs(client, Path(cfg.state_dir), root, demo_jobs, quick, disp, extra)
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
            lr_parties=tuple(p for p in lr_job["parties"] if p in PARTIES) if lr_job else (),  # not the arbiter
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
        _print_tables(say, jobs, models, human_bytes)

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
            f"2048-bit keys (SecureBoost: OU; hetero LR: Paillier)")
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


def cmd_demo(args) -> int:
    return run_demo(data_dir=args.data, json_path=args.json, keep=args.keep, quick=args.quick,
                    reports_dir=args.reports)


def add_commands(sub, *, epilog: str, fmt) -> None:
    """Register ``demo``."""
    c = sub.add_parser("demo", help="four local parties on the shipped data: PSI, binning, SecureBoost, LR, "
                                    "scorecard, secure-aggregation FedAvg, reports",
                       description="Start four party processes (bank, chain, gov and a data-less supervisor) on "
                                   "loopback with mutual TLS, throwaway certificates and the shipped data, and run "
                                   "three jobs with live progress: sbt (credit3: PSI -> binning -> selection -> "
                                   "SecureBoost over bank, chain, gov), lr (PSI -> binning -> selection -> "
                                   "coordinated hetero LR on WOE features -> scorecard -> evaluation over bank, chain "
                                   "and gov, the supervisor as arbiter) and homo "
                                   "(default_credit homo_bank1..3 as three banks, secure-aggregation FedAvg LR, the "
                                   "supervisor aggregating, evaluated on homo_test). Print each federated model next "
                                   "to the same model trained centrally on the joined data (AUC, KS, time) and the "
                                   "bytes each step put on the wire; write each party's run report (report.html); "
                                   "stop the parties.", epilog=epilog, formatter_class=fmt)
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
