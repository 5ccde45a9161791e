"""Run a federation as separate processes on loopback, over mTLS gRPC.

For benchmarks and integration tests: each party is its own ``python``
process with its own :class:`~fedcredit.transport.grpc.GrpcTransport`, a
throwaway CA and party certificates, and ports chosen by the OS.

Example
-------
>>> from benchmarks.harness import run_processes
>>> out = run_processes(
...     {"bank": "benchmarks.suites.mysuite:bank", "gov": "benchmarks.suites.mysuite:gov"},
...     {"bank": {"n": 1000}, "gov": {"n": 1000}},
...     timeout=120,
... )                                                           # doctest: +SKIP
>>> out["bank"]["seconds"], out["bank"]["peak_rss_mb"]          # doctest: +SKIP

Each role is ``"module:function"``; the function is called as
``fn(channel, **kwargs)`` in its party's process and returns a JSON-able dict.
The result for a party is that dict plus the reserved keys ``seconds`` (time
in ``fn``), ``peak_rss_mb`` (the process's peak resident set),
``bytes_sent`` and ``bytes_received`` (payload bytes through the Channel).

How it works: the parent writes the certificates and one JSON config per
party into a temp dir and starts ``python -m benchmarks.harness --child
CONFIG`` per party. Each child starts its transport on ``127.0.0.1:0`` and
prints its port; once every party is listening the parent sends everyone the
peer map on stdin, so no function starts before all its peers are up and no
port is guessed. A failing child aborts its channel (its peers' pending
receives end at once), writes its error, and exits 1; the parent raises
:class:`PartyFailed` naming the party, preferring a root cause over the
``PeerError`` it caused elsewhere. A child killed by a signal is reported as
such.

Wide-area links: with ``link="100mbit:50ms"`` (or :func:`set_default_link`,
which ``benchmarks/run.py --link`` calls) the parent starts one shaping proxy
(:mod:`benchmarks.linkshaper`) per directed party pair ``a -> b`` and gives
``a`` the proxy's port for ``b`` in its peer map, so every byte between two
parties crosses the emulated link (both ways: the requests ``a`` sends and the
acknowledgements ``b`` returns). The proxies run on a thread of the parent and
are closed with the run; what they carried is appended to :data:`LINK_RUNS`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fedcredit.errors import FedcreditError  # noqa: E402

__all__ = ["run_processes", "PartyFailed", "RESERVED_KEYS", "set_default_link", "LINK_RUNS", "shape_federation",
           "record_link"]

RESERVED_KEYS = ("seconds", "peak_rss_mb", "bytes_sent", "bytes_received")
_PORT_LINE = "FEDCREDIT_HARNESS_PORT"
_STARTUP_TIMEOUT = 60.0
_default_link = None
#: One record per :func:`run_processes` call through a link: job id, profile and bytes per directed pair.
LINK_RUNS: list[dict] = []


def set_default_link(link) -> None:
    """The link profile of every later :func:`run_processes` call that does not pass ``link`` (None/'lan': direct)."""
    global _default_link
    from benchmarks.linkshaper import LinkProfile

    _default_link = LinkProfile.parse(link)


class PartyFailed(FedcreditError):
    """One or more party processes failed.

    Attributes
    ----------
    party : str
        The party whose failure is the most likely root cause.
    failures : dict of str to dict
        Per failed party: ``{"kind": "error"|"signal"|"exit"|"timeout", "type": ..., "message": ...,
        "traceback": ..., "log_tail": ...}``.
    """

    def __init__(self, message: str, party: str, failures: dict[str, dict]):
        self.party = party
        self.failures = failures
        super().__init__(message)


def _jsonable(o):
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"result value of type {type(o).__name__} is not JSON-able")


def process_peak_rss_mb(pid="self") -> float | None:
    """Peak resident set (VmHWM, MB) of process ``pid`` (e.g. a party a ``Federation`` started), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """This process's own peak resident set (VmHWM).

    ``getrusage(...).ru_maxrss`` is not used: a forked child starts with its
    parent's high-water mark, so every party would report the launcher's peak.
    """
    mb = process_peak_rss_mb()
    if mb is not None:
        return mb
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024, 1)


# --------------------------------------------------------------------------- child

def _prefer_project_package(module_name: str) -> None:
    """Make ``tests.*`` / ``benchmarks.*`` roles resolve to this checkout's folders.

    ``tests/`` is a namespace package (no ``__init__.py``), and a regular
    package of the same name wins over a namespace package wherever it stands
    on ``sys.path``; some wheels install a top-level ``tests`` package into
    site-packages, which would then hide ours from the child process.
    """
    import types

    top = module_name.split(".", 1)[0]
    folder = ROOT / top
    if top in ("tests",) and folder.is_dir() and not (folder / "__init__.py").exists():
        pkg = types.ModuleType(top)
        pkg.__path__ = [str(folder)]
        sys.modules[top] = pkg

#: Benchmark-only experiment (``run.py --connect-timeout-ms``): gRPC C-core uses
#: ``grpc.min_reconnect_backoff_ms`` as the *minimum connect timeout* (TCP connect +
#: TLS handshake must finish within max(it, current backoff)); fedcredit set it to
#: 200 ms until the WAN runs showed that a link with a 100 ms round trip cannot meet
#: it (TCP + TLS take 2-3 round trips); it now leaves gRPC's default (20 s). This
#: variable overrides it in the party processes to measure other values; the
#: product's setting is fedcredit/transport/grpc/options.py's ``CLIENT_OPTIONS``.
_CONNECT_TIMEOUT_ENV = "FEDCREDIT_BENCH_MIN_CONNECT_TIMEOUT_MS"


def _connect_timeout_override(value: str | None) -> None:
    if not value:
        return
    from fedcredit.transport import grpc as fgrpc

    opts = [o for o in fgrpc.CLIENT_OPTIONS if o[0] != "grpc.min_reconnect_backoff_ms"]
    fgrpc.CLIENT_OPTIONS[:] = opts + [("grpc.min_reconnect_backoff_ms", int(value))]


def _child(config_path: str) -> int:
    import importlib

    from fedcredit.certs import TlsFiles
    from fedcredit.errors import PeerError
    from fedcredit.transport.grpc import GrpcTransport

    cfg = json.loads(Path(config_path).read_text())
    party = cfg["party"]
    _connect_timeout_override(os.environ.get(_CONNECT_TIMEOUT_ENV))
    result_path = Path(cfg["result_path"])

    def write(obj: dict) -> None:
        tmp = result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, default=_jsonable))
        tmp.replace(result_path)

    transport = GrpcTransport(
        party=party,
        listen="127.0.0.1:0",
        tls=TlsFiles(**cfg["tls"]),
        peers={},
        **cfg.get("transport", {}),
    )
    channel = None
    try:
        port = transport.start()
        sys.stdout.write(f"{_PORT_LINE} {port}\n")
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            raise SystemExit(f"harness parent closed stdin before sending peers to {party!r}")
        transport.set_peers(json.loads(line))
        sys.stdout = sys.stderr  # the function's prints go to the log
        module_name, _, fn_name = cfg["role"].partition(":")
        _prefer_project_package(module_name)
        fn = getattr(importlib.import_module(module_name), fn_name)
        channel = transport.channel(cfg["job_id"], default_timeout=cfg["timeout"])
        t0 = time.perf_counter()
        try:
            result = fn(channel, **cfg["kwargs"])
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"
            try:
                channel.abort(reason)
            except Exception:  # noqa: BLE001 - best effort, the error below is what matters
                pass
            write({
                "ok": False,
                "type": type(exc).__name__,
                "message": str(exc),
                "peer": getattr(exc, "peer", None) if isinstance(exc, PeerError) else None,
                "is_peer_error": isinstance(exc, PeerError),
                "traceback": traceback.format_exc(),
            })
            return 1
        seconds = time.perf_counter() - t0
        if result is None:
            result = {}
        if not isinstance(result, dict):
            raise TypeError(f"{cfg['role']} returned {type(result).__name__}, expected a dict")
        clash = [k for k in RESERVED_KEYS if k in result]
        if clash:
            raise TypeError(f"{cfg['role']} returned reserved keys {clash}")
        result = dict(result)
        result.update(
            seconds=round(seconds, 6),
            peak_rss_mb=_peak_rss_mb(),
            bytes_sent=channel.stats.total("sent"),
            bytes_received=channel.stats.total("received"),
        )
        write({"ok": True, "result": result})
        return 0
    except BaseException as exc:  # set-up or result errors
        write({"ok": False, "type": type(exc).__name__, "message": str(exc), "is_peer_error": False,
               "traceback": traceback.format_exc()})
        return 1
    finally:
        transport.stop(grace=1.0)


# --------------------------------------------------------------------------- parent

def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def run_processes(
    roles: dict[str, str],
    kwargs: dict[str, dict] | None = None,
    *,
    timeout: float,
    job_id: str = "bench",
    transport: dict | None = None,
    env: dict[str, str] | None = None,
    keep_dir: str | os.PathLike | None = None,
    link=None,
) -> dict[str, dict]:
    """Run one function per party, each in its own process, over mTLS gRPC on 127.0.0.1.

    Parameters
    ----------
    roles : dict of str to str
        ``{party: "module:function"}``; ``function(channel, **kwargs) -> dict``.
        The module must be importable from the repository root.
    kwargs : dict of str to dict, optional
        JSON-able keyword arguments per party.
    timeout : float
        Seconds for the whole run; also each Channel's default recv timeout.
        Parties still running then are killed.
    job_id : str, default="bench"
    transport : dict, optional
        Extra ``GrpcTransport`` keyword arguments (e.g. ``{"chunk_bytes": 2**21}``).
    env : dict, optional
        Extra environment variables for the children.
    keep_dir : path, optional
        Use this directory for certificates, configs and logs (``<party>.log``)
        and keep it; by default a temp dir is removed afterwards.
    link : str or LinkProfile, optional
        ``"lan"`` (direct), ``"proxy"`` (through an unshaped proxy) or ``"RATE:DELAY"``
        such as ``"100mbit:50ms"``; default: :func:`set_default_link`'s, else direct.

    Returns
    -------
    dict of str to dict
        Each party's result with ``seconds``, ``peak_rss_mb``, ``bytes_sent``, ``bytes_received``.

    Raises
    ------
    PartyFailed
        A party raised, exited abnormally, was killed by a signal, or did not
        finish within ``timeout``.
    """
    from fedcredit.certs import init_ca, issue

    kwargs = kwargs or {}
    unknown = set(kwargs) - set(roles)
    if unknown:
        raise ValueError(f"kwargs for parties without a role: {sorted(unknown)}")
    for party, role in roles.items():
        if not isinstance(role, str) or ":" not in role:
            raise ValueError(f"role of {party!r} must be 'module:function', got {role!r}")
    if len(roles) < 1:
        raise ValueError("no parties")

    tmp_ctx = tempfile.TemporaryDirectory(prefix="fedcredit-harness-") if keep_dir is None else None
    d = Path(tmp_ctx.name if tmp_ctx else keep_dir)
    d.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    logs = {}
    from benchmarks.linkshaper import LinkProfile, LinkShaper

    profile = LinkProfile.parse(link) if link is not None else _default_link
    shaper = None
    try:
        init_ca(d, overwrite=True)
        child_env = dict(os.environ)
        child_env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [child_env.get("PYTHONPATH")] if p])
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        child_env.update(env or {})
        for party, role in roles.items():
            tls = issue(d, party, overwrite=True)
            cfg = {
                "party": party,
                "role": role,
                "kwargs": kwargs.get(party, {}),
                "job_id": job_id,
                "timeout": timeout,
                "tls": {"ca": str(tls.ca), "cert": str(tls.cert), "key": str(tls.key)},
                "transport": transport or {},
                "result_path": str(d / f"{party}.result.json"),
            }
            (d / f"{party}.json").write_text(json.dumps(cfg, default=_jsonable))
            logs[party] = open(d / f"{party}.log", "wb")
            procs[party] = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.harness", "--child", str(d / f"{party}.json")],
                cwd=str(ROOT),
                env=child_env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logs[party],
            )
        ports = _collect_ports(procs, d, min(_STARTUP_TIMEOUT, timeout))
        addrs = {p: f"127.0.0.1:{port}" for p, port in ports.items()}
        if profile is not None:
            shaper = LinkShaper(max_connections=16)
            for party in procs:  # one proxy per directed pair: party reaches p through party->p
                for p in procs:
                    if p != party:
                        addrs[(party, p)] = f"127.0.0.1:{shaper.add_proxy(ports[p], profile, src=party, dst=p).port}"
        for party, proc in procs.items():
            peers = {p: addrs.get((party, p), addrs[p]) for p in procs if p != party}
            proc.stdin.write((json.dumps(peers) + "\n").encode())
            proc.stdin.flush()
            proc.stdin.close()
        end = time.monotonic() + timeout
        timed_out = []
        for party, proc in procs.items():
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out.append(party)
        for party in timed_out:
            procs[party].kill()
            procs[party].wait(10)
        return _results(procs, d, timed_out, timeout)
    finally:
        if shaper is not None:
            shaper.close()
            LINK_RUNS.append(_link_record(job_id, profile, shaper))
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            for f in (proc.stdin, proc.stdout):
                if f and not f.closed:
                    f.close()
        for f in logs.values():
            f.close()
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


def shape_federation(configs: dict, link=None):
    """Route the peers of ``fedcredit party serve`` configs (:func:`fedcredit.launcher.write_federation`) through proxies.

    For suites whose parties are real party processes rather than
    :func:`run_processes` children: rewrites each config's ``[peers]`` line for
    every other party to a proxy port of the directed pair, before the parties
    start. Returns the running :class:`~benchmarks.linkshaper.LinkShaper` (close
    it after the parties stop, then :func:`record_link`), or None for ``lan``.
    """
    import tomllib

    from benchmarks.linkshaper import LinkProfile, LinkShaper

    profile = LinkProfile.parse(link) if link is not None else _default_link
    if profile is None:
        return None
    parsed = {p: tomllib.loads(Path(c).read_text(encoding="utf-8")) for p, c in configs.items()}
    listen = {p: int(cfg["party"]["listen"].rpartition(":")[2]) for p, cfg in parsed.items()}
    shaper = LinkShaper(max_connections=16, profile=profile)
    try:
        for party, path in configs.items():
            text = Path(path).read_text(encoding="utf-8")
            for peer, addr in parsed[party].get("peers", {}).items():
                host, _, port = addr.rpartition(":")
                if peer not in listen or host != "127.0.0.1" or int(port) != listen[peer]:
                    continue  # not a party of this federation on loopback: left as is
                line = f'{peer} = "{addr}"'
                if text.count(line) != 1:
                    raise ValueError(f"cannot find the [peers] line for {peer!r} in {path}")
                proxy = shaper.add_proxy(listen[peer], profile, src=party, dst=peer)
                text = text.replace(line, f'{peer} = "127.0.0.1:{proxy.port}"')
            Path(path).write_text(text, encoding="utf-8")
    except BaseException:
        shaper.close()
        raise
    return shaper


def record_link(job_id: str, shaper) -> None:
    """Close ``shaper`` (from :func:`shape_federation`) and append what it carried to :data:`LINK_RUNS`."""
    if shaper is None:
        return
    shaper.close()
    LINK_RUNS.append(_link_record(job_id, shaper.profile, shaper))


def _link_record(job_id: str, profile, shaper) -> dict:
    """Bytes on the wire (TLS records, HTTP/2 frames) per directed party pair, as the proxies counted them."""
    wire: dict[str, int] = {}
    for st in shaper.stats():
        for a, b, n in ((st["src"], st["dst"], st["bytes_up"]), (st["dst"], st["src"], st["bytes_down"])):
            wire[f"{a}->{b}"] = wire.get(f"{a}->{b}", 0) + n
    return {"job_id": job_id, **profile.as_dict(), "wire_bytes": wire, "wire_bytes_total": sum(wire.values()),
            "connections": sum(st["connections"] for st in shaper.stats())}


def _collect_ports(procs: dict[str, subprocess.Popen], d: Path, timeout: float) -> dict[str, int]:
    end = time.monotonic() + timeout
    ports: dict[str, int] = {}
    bufs = {p: b"" for p in procs}
    while len(ports) < len(procs):
        waiting = {procs[p].stdout.fileno(): p for p in procs if p not in ports}
        left = end - time.monotonic()
        if left <= 0:
            missing = sorted(set(procs) - set(ports))
            raise PartyFailed(
                f"parties {missing} did not start listening within {timeout:g}s",
                missing[0],
                {p: {"kind": "timeout", "type": "StartupTimeout", "message": "no port", "log_tail": _tail(d / f"{p}.log")} for p in missing},
            )
        ready, _, _ = select.select(list(waiting), [], [], min(left, 0.5))
        for fd in ready:
            party = waiting[fd]
            chunk = os.read(fd, 4096)
            if not chunk:  # child exited before reporting a port
                procs[party].wait(10)
                raise _failed({party: _failure(party, procs[party], d)})
            bufs[party] += chunk
            for line in bufs[party].decode(errors="replace").splitlines():
                if line.startswith(_PORT_LINE):
                    ports[party] = int(line.split()[1])
    return ports


def _failure(party: str, proc: subprocess.Popen, d: Path, timed_out: bool = False, timeout: float = 0) -> dict:
    rc = proc.returncode
    res_path = d / f"{party}.result.json"
    if timed_out:
        return {"kind": "timeout", "type": "Timeout", "message": f"still running after {timeout:g}s; killed",
                "log_tail": _tail(d / f"{party}.log")}
    if rc is not None and rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = str(-rc)
        return {"kind": "signal", "type": "Killed", "message": f"killed by signal {sig}", "log_tail": _tail(d / f"{party}.log")}
    if res_path.exists():
        r = json.loads(res_path.read_text())
        if not r.get("ok"):
            return {"kind": "error", **{k: r.get(k) for k in ("type", "message", "peer", "is_peer_error", "traceback")},
                    "log_tail": _tail(d / f"{party}.log")}
    return {"kind": "exit", "type": "Exit", "message": f"exited with code {rc} without a result",
            "log_tail": _tail(d / f"{party}.log")}


def _failed(failures: dict[str, dict]) -> PartyFailed:
    # the root cause: a crash or a non-peer error beats the PeerErrors it caused in the others
    def rank(item):
        _, f = item
        return {"signal": 0, "exit": 1, "error": 2 if not f.get("is_peer_error") else 3, "timeout": 4}[f["kind"]]

    party, f = sorted(failures.items(), key=rank)[0]
    others = "; ".join(f"{p}: {g['type']}: {g['message']}" for p, g in failures.items() if p != party)
    msg = f"party {party!r} failed: {f['type']}: {f['message']}"
    if f["kind"] == "signal":
        msg = f"party {party!r} was {f['message']}"
    if others:
        msg += f" (also {others})"
    if f["kind"] in ("exit", "error") and f.get("log_tail") and not f.get("traceback"):
        msg += f"\n--- {party} log tail ---\n{f['log_tail']}"
    return PartyFailed(msg, party, failures)


def _results(procs: dict[str, subprocess.Popen], d: Path, timed_out: list[str], timeout: float) -> dict[str, dict]:
    failures, results = {}, {}
    for party, proc in procs.items():
        if party in timed_out:
            failures[party] = _failure(party, proc, d, timed_out=True, timeout=timeout)
            continue
        res_path = d / f"{party}.result.json"
        if proc.returncode == 0 and res_path.exists():
            r = json.loads(res_path.read_text())
            if r.get("ok"):
                results[party] = r["result"]
                continue
        failures[party] = _failure(party, proc, d)
    if failures:
        raise _failed(failures)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fedcredit multi-process harness (child entry point)")
    ap.add_argument("--child", required=True, help="party config JSON written by run_processes")
    args = ap.parse_args(argv)
    return _child(args.child)


if __name__ == "__main__":
    sys.exit(main())
