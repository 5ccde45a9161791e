"""Chaos: long jobs under process and network faults, then resumed (issue #21).

Three party processes on loopback with mutual TLS (bank = guest / client,
chain = host / client, supervisor = aggregator) run three job kinds: PSI +
SecureBoost on a credit3 subset (``--trees``), PSI + two-party hetero LR
(``--epochs``) and horizontal FedAvg with secure aggregation (``--rounds``).
When a network fault kind is asked for (the default), every party's
``[peers]`` addresses are rewritten to ports of the fault-injecting TCP proxy
of ``benchmarks/linkshaper.py`` (:func:`benchmarks.harness.shape_federation`;
unshaped, or the ``run.py --link`` profile): one proxy per directed party pair
``src->dst`` carries the connections ``src`` dials to ``dst``.
Each kind first runs once without a fault (the reference model and the
duration); then ``--faults`` times: submit the job, at a random moment
(uniform in 10-80 % of the reference duration; a draw that
comes after the job already ended is redrawn, not counted) inject one fault
drawn uniformly from ``--faults-kinds`` (default: all six) on a random party or
link of the job:

* ``kill``: SIGKILL a party, then restart the process at once;
* ``stop``: SIGSTOP a party for twice the transport deadline, then SIGCONT;
* ``reset``: abort every connection of one directed pair ``src->dst`` with a TCP RST;
* ``stall``: half-open: hold every byte one way (``up``: src to dst, ``down``: the
  answers) on ``src->dst`` for twice the transport deadline + 1 s, connections
  kept up, then let them flow again;
* ``truncate``: cut each stream of ``src->dst`` (open, and opened within one
  deadline) after 0-64 KiB more bytes one way, with an RST;
* ``partition``: between two parties, both ways: refuse new connections and
  reset the open ones for 2-5 s, then heal.

Then wait for the job to end on the initiator (bounded: a job that neither ends
nor resumes within ``--hang-seconds`` counts as ``hung``), resume it with
``fedcredit``'s ResumeJob (the same call as ``fedcredit run --resume``) when it
failed, and compare the final model with the reference. A network fault the
transport absorbs (its retries, the liveness grace) ends in a job that
succeeds without a resume: ``completed``, not ``resumed``.

JSON per kind: ``faults``, ``completed`` (succeeded, after a resume where one
was needed), ``resumed`` (how many needed one), ``failed_clean`` (ended
failed with a reason that names a party: the reasons are listed, each after
the fault, which names the party or the link),
``hung`` (must be 0), ``resumed_equal`` (final model equal to the reference:
trees and weights exactly), ``audit_intact`` (every party's audit chain
verifies and records ``job.resumed`` for each resumed job), ``orphan_state``
(left behind after the job ended: a job not in a terminal state on any party,
a round checkpoint or temporary file of a finished job; must be empty), and
``by_fault``: the same counts per fault kind (``{kill: {faults, completed,
resumed, failed_clean, hung, resumed_equal}, stop: ..., reset: ...}``); the
``total`` adds them up over the job kinds. Loopback only; everything is
bounded in time (each fault holds at most ``2 x deadline + 1`` s or 5 s).

``--quick``: 2 faults per kind on smaller jobs (6 trees, 4 epochs; homo keeps its 20 rounds), under 10 minutes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "refused", "cancelled"}
KINDS = ("sbt", "lr", "homo")
PROCESS_FAULTS = ("kill", "stop")
NETWORK_FAULTS = ("reset", "stall", "truncate", "partition")
FAULT_KINDS = PROCESS_FAULTS + NETWORK_FAULTS
COUNTS = ("faults", "completed", "resumed", "failed_clean", "hung", "resumed_equal")


def add_arguments(parser) -> None:
    parser.add_argument("--kinds", default=",".join(KINDS), help="job kinds (sbt, lr, homo)")
    parser.add_argument("--faults", type=int, default=None, help="faults per kind (default 17; 2 with --quick)")
    parser.add_argument("--trees", type=int, default=None, help="SecureBoost trees (default 20; 6 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="hetero LR epochs (default 10; 4 with --quick)")
    parser.add_argument("--rounds", type=int, default=20, help="homo rounds (default 20: a few seconds)")
    parser.add_argument("--fraction", type=float, default=None,
                        help="share of credit3 customers (default 0.2; 0.1 with --quick)")
    parser.add_argument("--deadline", type=float, default=2.0, help="[transport].deadline of every party (s)")
    parser.add_argument("--hang-seconds", type=float, default=None,
                        help="a job not ended this long after a fault or a resume is hung (default 4x reference + 60)")
    parser.add_argument("--faults-kinds", default=",".join(FAULT_KINDS),
                        help="fault kinds to draw from: " + ", ".join(FAULT_KINDS) + " (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the federation's files here")


# ---------------------------------------------------------------------------- faults

@dataclass(frozen=True)
class Fault:
    """One fault to inject.

    Attributes
    ----------
    kind : str
        One of :data:`FAULT_KINDS`.
    party : str or None
        The victim of a process fault.
    link : tuple of (str, str) or None
        The directed pair ``(src, dst)`` of a network fault (``partition``: both ways between the two).
    direction : str
        ``stall`` / ``truncate``: ``up`` (bytes src sends to dst) or ``down`` (dst's answers).
    nbytes : int
        ``truncate``: bytes still forwarded before the cut.
    hold : float
        Seconds the fault lasts (``stop``, ``stall``, ``truncate``, ``partition``).
    """

    kind: str
    party: str | None = None
    link: tuple[str, str] | None = None
    direction: str = "up"
    nbytes: int = 0
    hold: float = 0.0

    def describe(self) -> str:
        """Names the party or the link, e.g. ``kill bank``, ``stall chain->bank down 5.0s``."""
        if self.link is None:
            return f"{self.kind} {self.party}"
        a, b = self.link
        if self.kind == "partition":
            return f"partition {a}<->{b} {self.hold:.1f}s"
        if self.kind == "stall":
            return f"stall {a}->{b} {self.direction} {self.hold:.1f}s"
        if self.kind == "truncate":
            return f"truncate {a}->{b} {self.direction} after {self.nbytes} B"
        return f"{self.kind} {a}->{b}"


def parse_fault_kinds(spec: str) -> list[str]:
    kinds = [k.strip() for k in str(spec).split(",") if k.strip()]
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad or not kinds:
        raise ValueError(f"--faults-kinds: unknown {bad or spec!r}; choose from {', '.join(FAULT_KINDS)}")
    return list(dict.fromkeys(kinds))


def draw_fault(rng: random.Random, kinds, parties, deadline: float) -> Fault:
    """A random fault of a random kind in ``kinds`` on a random party, or directed link, of ``parties``."""
    kind = rng.choice(list(kinds))
    parties = sorted(parties)
    if kind in PROCESS_FAULTS:
        return Fault(kind, party=rng.choice(parties), hold=2 * deadline + 1 if kind == "stop" else 0.0)
    a, b = rng.sample(parties, 2)
    if kind == "reset":
        return Fault(kind, link=(a, b))
    if kind == "stall":
        return Fault(kind, link=(a, b), direction=rng.choice(["up", "down"]), hold=2 * deadline + 1)
    if kind == "truncate":
        return Fault(kind, link=(a, b), direction=rng.choice(["up", "down"]), nbytes=rng.randint(0, 64 * 1024),
                     hold=float(deadline))
    return Fault(kind, link=(a, b), hold=round(rng.uniform(2.0, 5.0), 1))


def link_proxies(shaper, src: str, dst: str) -> list:
    """The proxies carrying the connections ``src`` dials to ``dst``."""
    return [p for p in shaper.proxies if p.src == src and p.dst == dst]


def inject_network(shaper, fault: Fault, sleep=time.sleep) -> None:
    """Inject a network fault through the proxies of ``shaper`` (blocks for ``fault.hold``, then heals)."""
    a, b = fault.link
    proxies = link_proxies(shaper, a, b)
    if fault.kind == "partition":
        proxies += link_proxies(shaper, b, a)
    if not proxies:
        raise ValueError(f"no proxy on the link {a}->{b}")
    if fault.kind == "reset":
        for p in proxies:
            p.reset()
        return
    try:
        for p in proxies:
            if fault.kind == "stall":
                p.stall(fault.direction)
            elif fault.kind == "truncate":
                p.truncate_after(fault.nbytes, fault.direction)
            elif fault.kind == "partition":
                p.refuse(True)  # refuse first, so no new connection slips in between the reset and the refusal
                p.reset()
            else:
                raise ValueError(f"not a network fault: {fault.kind!r}")
        sleep(fault.hold)
    finally:
        for p in proxies:
            p.resume()


# ---------------------------------------------------------------------------- the federation

PARTIES = {"bank": ("guest", "bank.csv", "default_next_month"), "chain": ("host", "chain.csv", None),
           "supervisor": ("aggregator", None, None)}


def job_steps(kind: str, *, trees: int, epochs: int, rounds: int, n_features: int) -> tuple[list, dict]:
    """(steps, roles) of one job kind; roles: party -> (role, table or None)."""
    if kind == "sbt":
        return ([("psi", "psi", {}), ("secureboost", "sbt", {"n_trees": trees, "max_depth": 3, "max_bins": 16,
                                                             "learning_rate": 0.3})],
                {"bank": ("guest", "credit"), "chain": ("host", "credit")})
    if kind == "lr":
        return ([("psi", "psi", {}), ("hetero_lr", "lr", {"mode": "two_party", "batch_size": 1000,
                                                         "max_epochs": epochs, "learning_rate": 0.5,
                                                         "validation_fraction": 0.2, "n_iter_no_change": 1000})],
                {"bank": ("guest", "credit"), "chain": ("host", "credit")})
    if kind == "homo":
        return ([("homo", "fedavg", {"mode": "secagg", "rounds": rounds, "local_epochs": 1, "learning_rate": 0.1,
                                     "batch_size": 64, "l2": 1e-4, "n_features": n_features})],
                {"bank": ("client", "homo"), "chain": ("client", "homo"), "supervisor": ("aggregator", None)})
    raise ValueError(kind)


class Chaos:
    """Party processes of one federation, and what the suite asks of them."""

    def __init__(self, root: Path, fraction: float, deadline: float, network: bool = False):
        from fedcredit.launcher import Federation, find_data_dir, subset_credit3, write_federation

        self.root = root
        src = find_data_dir()
        data = subset_credit3(src, root / "data", fraction) if fraction < 1 else src
        homo = src / "default_credit"
        tables = {"bank": {"homo": (homo / "homo_bank1.csv", "y")}, "chain": {"homo": (homo / "homo_bank2.csv", "y")}}
        self.n_features = _n_features(homo / "homo_bank1.csv")
        self.configs = write_federation(root, data, parties=PARTIES, tables=tables,
                                        transport={"deadline": deadline, "recv_timeout": 120.0})
        self.deadline = deadline
        self.shaper = None
        if network:  # every [peers] address through a proxy of the directed pair (the run.py --link profile, if any)
            from benchmarks import harness

            self.shaper = harness.shape_federation(self.configs, harness._default_link or "proxy")
        self.fed = Federation(self.configs)
        try:
            self.fed.start(timeout=90)
            self.client, self._ch = self._own("bank")
        except BaseException:
            if self.shaper is not None:
                self.shaper.close()
            raise

    def _own(self, party: str):
        from fedcredit.certs import TlsFiles
        from fedcredit.config import load_party_config
        from fedcredit.transport.control import ControlClient, dial

        cfg = load_party_config(self.configs[party])
        ch = dial(cfg.connect_address, target=party, tls=TlsFiles(cfg.tls.ca, cfg.tls.cert, cfg.tls.key))
        return ControlClient(ch, party, timeout=30.0), ch

    def close(self) -> dict:
        self._ch.close()
        try:
            return self.fed.stop()
        finally:
            if self.shaper is not None:
                self.link_stats = self.shaper.stats()
                self.shaper.close()

    def state_dir(self, party: str) -> Path:
        return self.root / "state" / party

    def submit(self, kind: str, steps: list, roles: dict, name: str) -> str:
        from fedcredit.config import load_job
        from fedcredit.launcher import write_job

        parties = {p: PARTIES[p] for p in roles}
        path = write_job(self.root / f"{name}.toml", steps, name=name, parties=parties, roles=roles)
        return self.client.submit(load_job(path).to_json(), source=str(path))

    def row(self, party: str, job_id: str):
        db = sqlite3.connect(self.state_dir(party) / "party.sqlite", timeout=10)
        try:
            return db.execute("SELECT state, reason FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        finally:
            db.close()

    def wait_end(self, job_id: str, timeout: float, party: str = "bank") -> tuple[str, str] | None:
        """(state, reason) once the job is terminal on ``party``; None after ``timeout`` (hung)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                r = self.row(party, job_id)
            except sqlite3.Error:
                r = None
            if r and r[0] in TERMINAL:
                return r
            time.sleep(0.2)
        return None

    def fault(self, fault: Fault) -> None:
        if fault.kind in NETWORK_FAULTS:
            if self.shaper is None:
                raise RuntimeError("network faults need the federation built with network=True")
            inject_network(self.shaper, fault)
            return
        party, how = fault.party, fault.kind
        proc = self.fed.procs[party]
        if how == "kill":
            self.fed.kill(party)
            self.fed.start([party], timeout=90)
        else:
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                time.sleep(fault.hold or 2 * self.deadline + 1)
            finally:
                os.kill(proc.pid, signal.SIGCONT)

    def resume(self, job_id: str, tries: int = 20) -> str:
        """ResumeJob, retried while a party is still restarting or ending its previous attempt."""
        from fedcredit.errors import FedcreditError

        last = ""
        for _ in range(tries):
            try:
                self.client.resume(job_id)
            except FedcreditError as exc:
                last = str(exc)
                time.sleep(1.0)
                continue
            r = self.wait_end(job_id, 30.0 + 10 * self.deadline)
            if r is not None and r[0] == "failed" and ("retry" in r[1] or "no answer" in r[1]
                                                      or "could not propose" in r[1]):
                last = r[1]
                time.sleep(1.0)
                continue
            return ""
        return last or "resume refused"

    # -- what a finished job left
    def model(self, kind: str, job_id: str):
        """The final model of a finished job, in a form that compares exactly across runs."""
        jobs = lambda p: self.state_dir(p) / "jobs" / job_id  # noqa: E731
        if kind == "sbt":
            g = json.loads((jobs("bank") / "sbt" / "sbt_guest.json").read_text())
            h = json.loads((jobs("chain") / "sbt" / "sbt_host.json").read_text())
            splits = h["splits"]
            trees = []
            for nodes in g["trees"]:
                out = []
                for n in nodes:
                    n = dict(n)
                    if n.get("party") == "chain":  # host split ids are the host's own: resolve them
                        s = dict(splits[str(n.pop("split_id"))])
                        s.pop("tree", None)
                        n["host_split"] = s
                    out.append(n)
                trees.append(out)
            return {"base_score": g["base_score"], "trees": trees}
        if kind == "lr":
            return {p: _step_result(self.state_dir(p), job_id, p, "lr") for p in ("bank", "chain")}
        return json.loads((jobs("supervisor") / "fedavg" / "homo_model.json").read_text())["params"]

    def audit_ok(self, resumed: list[str], parties) -> bool:
        """Every party's audit chain verifies, and records ``job.resumed`` for each resumed job it takes part in."""
        from fedcredit.audit import verify

        for p in PARTIES:
            path = self.state_dir(p) / "audit.log"
            if not verify(path).ok:
                return False
            if p not in parties:
                continue
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            for job_id in resumed:
                if not any("job.resumed" in line and job_id in line for line in lines):
                    return False
        return True

    def orphans(self, job_ids: list[str]) -> list[str]:
        out = []
        for p in PARTIES:
            for job_id in job_ids:
                r = self.row(p, job_id)
                if r is not None and r[0] not in TERMINAL:
                    out.append(f"{p}: job {job_id} is {r[0]}")
                d = self.state_dir(p) / "jobs" / job_id
                if r is not None and r[0] == "succeeded" and d.exists():
                    left = [f for f in d.rglob("*") if f.name.startswith("ckpt-") or f.suffix == ".tmp"]
                    out += [f"{p}: {f.relative_to(self.state_dir(p))}" for f in left]
        return out


def _n_features(csv_path: Path) -> int:
    import gzip

    opener = gzip.open if str(csv_path).endswith(".gz") else open
    with opener(csv_path, "rt", encoding="utf-8") as f:
        return len(f.readline().strip().split(",")) - 2  # id and y


def _step_result(state: Path, job_id: str, party: str, step: str) -> dict:
    db = sqlite3.connect(state / "party.sqlite", timeout=10)
    try:
        (res,) = db.execute("SELECT result_json FROM steps WHERE job_id = ? AND party = ? AND step = ?",
                            (job_id, party, step)).fetchone()
    finally:
        db.close()
    r = json.loads(res)["result"]
    return {"coef": r["coef"], "intercept": r.get("intercept")}


# ---------------------------------------------------------------------------- the suite

def run_kind(chaos: Chaos, kind: str, *, faults: int, steps: list, roles: dict, rng: random.Random,
             hang_seconds: float | None, fault_kinds=FAULT_KINDS, log=print) -> dict:
    t0 = time.monotonic()
    ref_id = chaos.submit(kind, steps, roles, f"{kind}-ref")
    ref_end = chaos.wait_end(ref_id, 1800)
    ref_seconds = time.monotonic() - t0
    if ref_end is None or ref_end[0] != "succeeded":
        return {"error": f"the reference job did not succeed: {ref_end}"}
    reference = chaos.model(kind, ref_id)
    hang = hang_seconds or (4 * ref_seconds + 60)
    out = {"reference_seconds": round(ref_seconds, 1), "faults": 0, "completed": 0, "resumed": 0,
           "failed_clean": 0, "hung": 0, "resumed_equal": 0, "audit_intact": True, "orphan_state": [],
           "reasons": [], "trials": [], "by_fault": {f: dict.fromkeys(COUNTS, 0) for f in fault_kinds}}
    job_ids, resumed_ids = [ref_id], []
    out["missed"] = 0  # draws that came after the job had already ended (not counted as faults)
    i = 0
    while out["faults"] < faults and i < 2 * faults:
        i += 1
        fault = draw_fault(rng, fault_kinds, roles, chaos.deadline)
        how, what, by = fault.kind, fault.describe(), out["by_fault"][fault.kind]
        delay = rng.uniform(0.1, 0.8) * ref_seconds
        job_id = chaos.submit(kind, steps, roles, f"{kind}-f{i}")
        job_ids.append(job_id)
        time.sleep(delay)
        if (chaos.row("bank", job_id) or ("",))[0] in TERMINAL:
            out["missed"] += 1
            continue
        t_fault = time.monotonic()
        chaos.fault(fault)
        out["faults"] += 1
        by["faults"] += 1
        trial = {"fault": how, "what": what, "at_seconds": round(delay, 1)}
        if fault.party is not None:
            trial["victim"] = fault.party
        else:
            trial["link"] = "->".join(fault.link) if how != "partition" else "<->".join(fault.link)
        end = chaos.wait_end(job_id, hang)
        if end is None:
            out["hung"] += 1
            by["hung"] += 1
            trial["outcome"] = "hung"
            out["trials"].append(trial)
            log(f"  {kind} fault {i}: {what} at {delay:.1f}s -> HUNG")
            continue
        trial["first_end"] = end[0]
        if end[0] != "succeeded":
            trial["reason"] = end[1][:300]
            out["resumed"] += 1
            by["resumed"] += 1
            why = chaos.resume(job_id)
            end = chaos.wait_end(job_id, hang)
            if end is None:
                out["hung"] += 1
                by["hung"] += 1
                trial["outcome"] = "hung after resume"
                out["trials"].append(trial)
                log(f"  {kind} fault {i}: {what} at {delay:.1f}s -> HUNG after resume")
                continue
            if why:
                trial["resume_refused"] = why[:300]
        trial["outcome"] = end[0]
        trial["seconds"] = round(time.monotonic() - t_fault, 1)
        if end[0] == "succeeded":
            if trial["first_end"] != "succeeded":
                resumed_ids.append(job_id)  # every party must have recorded the resume in its audit log
            out["completed"] += 1
            by["completed"] += 1
            equal = chaos.model(kind, job_id) == reference
            out["resumed_equal"] += int(equal)
            by["resumed_equal"] += int(equal)
            trial["equal"] = equal
        else:
            names = any(f"'{p}'" in end[1] or p in end[1] for p in PARTIES)
            out["failed_clean"] += int(names)
            by["failed_clean"] += int(names)
            out["reasons"].append(f"after {what}: {end[1][:300]}")
        out["trials"].append(trial)
        log(f"  {kind} fault {i}: {what} at {delay:.1f}s -> {trial}")
    time.sleep(1.0)
    out["audit_intact"] = chaos.audit_ok(resumed_ids, roles)
    out["orphan_state"] = chaos.orphans(job_ids)
    out["resumed_equal_share"] = round(out["resumed_equal"] / max(1, out["completed"]), 3)
    return out


def run(args) -> dict:
    import sys

    quick = args.quick
    faults = args.faults if args.faults is not None else (2 if quick else 17)
    trees = args.trees or (6 if quick else 20)
    epochs = args.epochs or (4 if quick else 10)
    rounds = args.rounds
    fraction = args.fraction or (0.1 if quick else 0.2)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    fault_kinds = parse_fault_kinds(getattr(args, "faults_kinds", ",".join(FAULT_KINDS)))
    rng = random.Random(args.seed)
    tmp = None
    if args.keep:
        root = args.keep
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="fedcredit-chaos-")
        root = Path(tmp.name)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.monotonic()
    network = any(f in NETWORK_FAULTS for f in fault_kinds)
    chaos = Chaos(root, fraction, args.deadline, network=network)
    result: dict = {"config": {"faults_per_kind": faults, "trees": trees, "epochs": epochs, "rounds": rounds,
                               "fraction": fraction, "deadline": args.deadline, "seed": args.seed,
                               "fault_kinds": fault_kinds,
                               "link": chaos.shaper.profile.name if chaos.shaper is not None else "lan"}}
    try:
        for kind in kinds:
            steps, roles = job_steps(kind, trees=trees, epochs=epochs, rounds=rounds, n_features=chaos.n_features)
            log(f"chaos: {kind} ({faults} faults)")
            result[kind] = run_kind(chaos, kind, faults=faults, steps=steps, roles=roles, rng=rng,
                                    hang_seconds=args.hang_seconds, fault_kinds=fault_kinds, log=log)
    finally:
        codes = chaos.close()
        if tmp is not None:
            tmp.cleanup()
    per = [result[k] for k in kinds if "faults" in result.get(k, {})]
    result["total"] = {
        "faults": sum(r["faults"] for r in per), "completed": sum(r["completed"] for r in per),
        "hung": sum(r["hung"] for r in per), "failed_clean": sum(r["failed_clean"] for r in per),
        "resumed_equal": sum(r["resumed_equal"] for r in per),
        "orphan_state": sum(len(r["orphan_state"]) for r in per),
        "audit_intact": all(r["audit_intact"] for r in per), "seconds": round(time.monotonic() - t0, 1),
        "party_exit_codes": codes,
        "by_fault": {f: {c: sum(r["by_fault"][f][c] for r in per) for c in COUNTS} for f in fault_kinds},
    }
    if getattr(chaos, "link_stats", None):
        result["total"]["link_connections"] = {f"{st['src']}->{st['dst']}": st["connections"]
                                               for st in chaos.link_stats}
    return result
