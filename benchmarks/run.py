"""One entry point for every benchmark suite.

Usage::

    python benchmarks/run.py SUITE [suite options] --out FILE.json
    python benchmarks/run.py all [--quick] --out results/

Each suite lives in ``benchmarks/suites/<suite>.py`` with ``add_arguments(parser)``
and ``run(args) -> dict``, and measures its centralized or plain baseline in
the same run, so the figures are ratios that survive a noisy machine.
``all`` runs every suite and writes one JSON per suite plus ``summary.md``.
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

SUITES = ["paillier", "psi", "secureboost", "hetero_lr", "homo", "scoring", "transport", "scale", "flood", "chaos"]
ALL_ORDER = ["paillier", "transport", "psi", "secureboost", "hetero_lr", "homo", "scoring", "scale", "flood"]
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


def run_one(name: str, argv: list[str]) -> dict:
    mod = load_suite(name)
    p = argparse.ArgumentParser(prog=f"run.py {name}", conflict_handler="resolve", description=(mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else None)
    p.add_argument("--out", type=Path, help="write the JSON result here")
    p.add_argument("--quick", action="store_true", help="a small configuration for smoke checks")
    mod.add_arguments(p)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    result = mod.run(args)
    out = {"suite": name, "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "seconds": round(time.perf_counter() - t0, 2), "quick": bool(args.quick), "result": result}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, default=float))
        print(f"wrote {args.out}", file=sys.stderr)
    return out


def _markdown(results: dict[str, dict]) -> str:
    lines = ["# Benchmark summary", "", f"Machine: {json.dumps(machine())}", ""]
    for name, out in results.items():
        lines += [f"## {name}", "", "```json", json.dumps(out.get("result", out), indent=1, default=float)[:4000], "```", ""]
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
        p.add_argument("--quick", action="store_true")
        a = p.parse_args(rest)
        results = {}
        for s in ALL_ORDER:
            print(f"== {s}", file=sys.stderr)
            try:
                extra = (["--quick"] + QUICK_ARGS.get(s, [])) if a.quick else []
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
