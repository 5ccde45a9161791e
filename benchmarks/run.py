"""One entry point for every benchmark suite.

Usage::

    python benchmarks/run.py SUITE [suite options] --out FILE.json
    python benchmarks/run.py all [--quick] [--link 100mbit:50ms] --out results/

Each suite lives in ``benchmarks/suites/<suite>.py`` with ``add_arguments(parser)``
and ``run(args) -> dict``, and measures its centralized or plain baseline in
the same run, so the figures are ratios that survive a noisy machine.
``all`` runs every suite and writes one JSON per suite plus ``summary.md``
(one Markdown table per suite with its headline fields).

``--link PROFILE`` (every suite): ``lan`` (default, parties talk over loopback
directly), ``proxy`` (through the shaping proxy, unshaped: its own cost) or
``RATE:DELAY`` such as ``100mbit:50ms`` / ``10mbit:50ms`` (per direction: a
token-bucket cap and a one-way delay; :mod:`benchmarks.linkshaper`). Every
result records the profile, the proxy's measured overhead on this machine and
the bytes each run put on the wire.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SUITES = ["paillier", "ou", "psi", "secureboost", "binning", "hetero_lr", "homo", "scoring", "transport", "scale", "flood",
          "privacy", "chaos"]
ALL_ORDER = ["paillier", "ou", "transport", "psi", "secureboost", "binning", "hetero_lr", "homo", "scoring", "scale", "flood",
             "privacy"]  # chaos is long: run it on its own
#: Extra options for ``all --quick`` where a suite does not shrink itself under --quick (none today: every suite does).
QUICK_ARGS: dict[str, list[str]] = {}


def machine() -> dict:
    """Where a figure came from."""
    info = {"python": platform.python_version(), "platform": platform.platform(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def load_suite(name: str):
    try:
        return importlib.import_module(f"benchmarks.suites.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"benchmarks.suites.{name}":
            raise SystemExit(f"benchmark suite {name!r} is not available yet (no benchmarks/suites/{name}.py)")
        raise


def _link_arg(spec: str) -> str:
    from benchmarks.linkshaper import LinkProfile

    try:
        LinkProfile.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    return spec


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a small configuration for smoke checks")
    p.add_argument("--link", type=_link_arg, default="lan",
                   help="'lan' (direct loopback), 'proxy' (unshaped proxy) or RATE:DELAY per direction, "
                        "e.g. 100mbit:50ms, 10mbit:50ms")
    p.add_argument("--connect-timeout-ms", type=int, default=None,
                   help="experiment: override the parties' gRPC minimum connect timeout (fedcredit sets "
                        "min_reconnect_backoff_ms=200, which gRPC uses as the connect+TLS deadline); "
                        "harness suites only")


def link_info(spec: str, runs: list[dict]) -> dict:
    """What a result records about its link: the profile, the proxy's own overhead here, bytes per run."""
    from benchmarks.linkshaper import LinkProfile, measure_overhead

    prof = LinkProfile.parse(spec)
    if prof is None:
        return {"profile": "lan", "note": "parties connect to each other directly on 127.0.0.1"}
    return {**prof.as_dict(), "proxy_overhead_unshaped": measure_overhead(), "runs": runs,
            "wire_bytes_total": sum(r["wire_bytes_total"] for r in runs)}


def run_one(name: str, argv: list[str]) -> dict:
    from benchmarks import harness

    mod = load_suite(name)
    p = argparse.ArgumentParser(prog=f"run.py {name}", conflict_handler="resolve", description=(mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else None)
    p.add_argument("--out", type=Path, help="write the JSON result here")
    _add_common(p)
    mod.add_arguments(p)  # may redefine --quick (its own help text); --link stays common
    args = p.parse_args(argv)
    harness.set_default_link(args.link)
    first = len(harness.LINK_RUNS)
    env_key = harness._CONNECT_TIMEOUT_ENV
    if args.connect_timeout_ms:
        os.environ[env_key] = str(args.connect_timeout_ms)  # inherited by the party processes
    t0 = time.perf_counter()
    try:
        result = mod.run(args)
    finally:
        harness.set_default_link(None)
        os.environ.pop(env_key, None)
    out = {"suite": name, "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "seconds": round(time.perf_counter() - t0, 2), "quick": bool(args.quick),
           "link": link_info(args.link, harness.LINK_RUNS[first:]), "result": result}
    if args.connect_timeout_ms:
        out["link"]["min_connect_timeout_ms_override"] = args.connect_timeout_ms
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, default=float))
        print(f"wrote {args.out}", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- summary.md

def _fmt(v) -> str:
    """A table cell: numbers rounded, per-party dicts as 'a 1 / b 2', lists shortened."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "–"
        a = abs(v)
        return f"{v:.4g}" if a < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, dict):
        return " / ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v[:6]) + (" …" if len(v) > 6 else "")
    if v is None:
        return "–"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _mb(d):
    """Bytes (an int or a per-party dict, possibly of {'sent', 'received'}) as MB (10**6)."""
    if isinstance(d, dict):
        return {k: _mb(x.get("sent") if isinstance(x, dict) else x) for k, x in d.items()}
    return None if d is None else d / 1e6


def _table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(no rows)", ""]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return out + [""]


def _rows(name: str, res: dict) -> list[dict]:
    """The headline fields of one suite's result, one dict per table row."""
    g = res.get
    if name == "paillier":
        return [{k: r.get(k) for k in ("op", "bits", "cores", "ours_per_s", "phe_per_s", "ratio")} for r in g("rows", [])]
    if name == "transport":
        gr = g("grpc", {})
        return [{"payload MB": _mb(gr.get("payload_bytes")), "MB/s median": gr.get("mb_per_s_median"),
                 "MB/s min": gr.get("mb_per_s_min"), "MB/s max": gr.get("mb_per_s_max"),
                 "seconds median": gr.get("seconds_median"),
                 "serde MB/s": g("inprocess", {}).get("serde_mb_per_s")}]
    if name == "psi":
        return [{"size": r["size"], "seconds": r["seconds"], "with process start": r.get("seconds_with_process_start"),
                 "cpu s": r.get("cpu_seconds"), "MB sent": _mb(r.get("bytes_sent")), "peak RSS MB": r.get("peak_rss_mb"),
                 "intersection": r.get("intersection"), "× plain": r.get("slowdown_vs_plain")} for r in g("runs", [])]
    if name == "secureboost":
        return [{"config": r["config"], "he": r.get("he"), "trees": r.get("trees"), "rows": r.get("rows_train"),
                 "PSI s": (r.get("psi") or {}).get("seconds"),
                 "seconds": r.get("seconds_total"), "s/tree": r.get("seconds_per_tree"),
                 "MB sent": _mb(r.get("bytes")), "test AUC": r.get("test_auc"), "AUC gap vs HGB": r.get("auc_gap_vs_hgb"),
                 "peak RSS MB": r.get("peak_rss_mb")} for r in g("runs", [])]
    if name == "binning":
        return [{"he": r["he"], "rows": res.get("rows_aligned"), "seconds": r.get("seconds"),
                 "MB sent": _mb(r.get("bytes_total")), "IV = fit_woe": r.get("iv_equal_to_centralized"),
                 "peak RSS MB": r.get("peak_rss_mb")} for r in g("runs", [])]
    if name == "hetero_lr":
        return [{"config": c, "run": k, "s/epoch": r.get("seconds_per_epoch"), "train s": r.get("train_seconds"),
                 "setup s": r.get("setup_seconds"), "MB sent": _mb(r.get("bytes_sent")), "test AUC": r.get("test_auc"),
                 "peak RSS MB": r.get("peak_rss_mb")}
                for c, cr in g("configs", {}).items() for k, r in cr.get("runs", {}).items()]
    if name == "homo":
        return [{"mode": m, "seconds": r.get("seconds"), "median round s": r.get("median_round_seconds"),
                 "rounds": r.get("rounds"), "MB sent": _mb(r.get("bytes_sent")), "test AUC": r.get("test_auc"),
                 "RSS MB total": r.get("peak_rss_mb_total")} for m, r in g("modes", {}).items()]
    if name == "scoring":
        rows = []
        for m in ("sbt", "lr"):
            r = g(m)
            if not r:
                continue
            row = {"model": m, "first request s": r.get("first_request_seconds")}
            row.update({f"{k} /s": v.get("applicants_per_second") for k, v in r.items() if k.startswith("batch_")})
            row.update({"single p50 ms": r.get("single", {}).get("p50_ms"), "single p99 ms": r.get("single", {}).get("p99_ms")})
            rows.append(row)
        return rows
    if name == "scale":
        return [{"protocol": r.get("protocol"), "rows": r.get("rows"), "seconds": r.get("seconds"),
                 "MB sent": _mb(r.get("bytes_sent")), "peak RSS MB": r.get("peak_rss_mb")} for r in g("runs", [])]
    return [{"field": k, "value": v} for k, v in res.items() if isinstance(v, (int, float, str, bool))]


def _markdown(results: dict[str, dict]) -> str:
    m = machine()
    lines = ["# Benchmark summary", "",
             f"Machine: {m.get('cores')} cores, {m.get('cpu', '?')}, {m.get('mem_gib', '?')} GiB, "
             f"Python {m.get('python')}; load average at the end {_fmt(list(os.getloadavg()))}.", ""]
    for name, out in results.items():
        lines += [f"## {name}", ""]
        if "skipped" in out or "result" not in out:
            lines += [f"Skipped: {out.get('skipped', 'no result')}", ""]
            continue
        link = out.get("link", {})
        head = f"{'quick, ' if out.get('quick') else ''}{out.get('seconds')} s for the suite, link `{link.get('profile', 'lan')}`"
        ov = link.get("proxy_overhead_unshaped")
        if ov:
            head += (f" (proxy overhead here: +{ov['added_rtt_ms']} ms per round trip, "
                     f"{ov['proxied']['throughput_mb_s']} vs {ov['direct']['throughput_mb_s']} MB/s direct; "
                     f"{_fmt(_mb(link.get('wire_bytes_total')))} MB on the wire)")
        lines += [head + ".", ""]
        try:
            lines += _table(_rows(name, out["result"]))
        except Exception as exc:  # noqa: BLE001 - a summary must not lose the other suites
            lines += [f"(no table: {type(exc).__name__}: {exc}; see {name}.json)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("suites:", ", ".join(SUITES + ["all"]))
        return 0
    name, rest = argv[0], argv[1:]
    if name == "all":
        p = argparse.ArgumentParser(prog="run.py all")
        p.add_argument("--out", type=Path, default=Path("results"))
        _add_common(p)
        a = p.parse_args(rest)
        results = {}
        for s in ALL_ORDER:
            print(f"== {s}", file=sys.stderr)
            try:
                extra = (["--quick"] + QUICK_ARGS.get(s, [])) if a.quick else []
                extra += ["--link", a.link]
                if a.connect_timeout_ms:
                    extra += ["--connect-timeout-ms", str(a.connect_timeout_ms)]
                results[s] = run_one(s, ["--out", str(a.out / f"{s}.json")] + extra)
            except SystemExit as exc:
                results[s] = {"skipped": str(exc)}
        (a.out / "summary.md").write_text(_markdown(results))
        print(f"wrote {a.out / 'summary.md'}", file=sys.stderr)
        return 0
    if name not in SUITES:
        print(f"unknown suite {name!r}; suites: {', '.join(SUITES + ['all'])}", file=sys.stderr)
        return 2
    out = run_one(name, rest)
    if "--out" not in rest:
        print(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
